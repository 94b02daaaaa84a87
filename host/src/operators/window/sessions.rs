//! Session windows (merging): each record opens `[t, t + gap)`, and the
//! windows of a key that overlap or touch merge, their accumulators through
//! the guest's `merge`, as Flink's merging window assigners do.

use std::collections::HashMap;

use super::WindowOperator;
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::RecordBatch;
use crate::time::TimeDomain;
use crate::time::windows::Window;
use crate::wasm::instance::Accumulators;

/// A window in state, or the window a record of the batch opens.
struct Member {
    window: Window,
    /// The accumulator of a window in state.
    accumulator: Option<Vec<u8>>,
    /// The record of the batch that opens it.
    record: Option<usize>,
}

/// What a session (merged window) of one batch is made of.
struct Session {
    key: Vec<u8>,
    window: Window,
    /// Windows in state that merge into it, with their accumulators.
    merged: Vec<(Window, Vec<u8>)>,
}

impl WindowOperator {
    /// Session windows: each record opens `[t, t + gap)`; windows of a key
    /// that overlap or touch merge (their accumulators through the guest's
    /// `merge`), as Flink's merging window assigners do. A record whose
    /// session would be late and merges with nothing in state is late.
    pub(super) fn process_sessions(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        let now = self.clock.now_ms();
        let mut keys: Vec<(&[u8], Vec<usize>)> = Vec::new();
        let mut key_index: HashMap<&[u8], usize> = HashMap::new();
        for i in 0..batch.len() {
            let key = batch.key(i).unwrap_or_default();
            let slot = *key_index.entry(key).or_insert_with(|| {
                keys.push((key, Vec::new()));
                keys.len() - 1
            });
            keys[slot].1.push(i);
        }
        let mut sessions: Vec<Session> = Vec::new();
        let mut slots = Vec::with_capacity(batch.len());
        let mut origin = Vec::with_capacity(batch.len());
        let mut input = RecordBatch::with_capacity(batch.len(), batch.payload_bytes());
        let mut late = RecordBatch::default();
        for (key, records) in keys {
            self.context.backend.set_current_key(key);
            let mut items: Vec<Member> = Vec::new();
            for (user_key, accumulator) in self
                .context
                .backend
                .entries(self.contents)
                .map_err(|e| self.context.state_error(e))?
            {
                if let Some(window) = Window::from_key(&user_key) {
                    items.push(Member {
                        window,
                        accumulator: Some(accumulator),
                        record: None,
                    });
                }
            }
            for &i in &records {
                let at = self.assign_time(batch.timestamps[i], now);
                self.config.assigner.assign(at, |window| {
                    items.push(Member {
                        window,
                        accumulator: None,
                        record: Some(i),
                    })
                });
            }
            items.sort_by_key(|member| (member.window.start, member.window.end));
            let mut groups: Vec<(Window, Vec<Member>)> = Vec::new();
            for item in items {
                match groups.last_mut() {
                    Some((window, members)) if window.intersects(item.window) => {
                        *window = window.cover(item.window);
                        members.push(item);
                    }
                    _ => groups.push((item.window, vec![item])),
                }
            }
            for (window, members) in groups {
                let records: Vec<usize> = members.iter().filter_map(|m| m.record).collect();
                if records.is_empty() {
                    // A session in state that no record of this batch
                    // touches stays as it is (and does not fire again).
                    continue;
                }
                let merged: Vec<(Window, Vec<u8>)> = members
                    .into_iter()
                    .filter_map(|m| m.accumulator.map(|acc| (m.window, acc)))
                    .collect();
                if merged.is_empty() && self.is_late(window) {
                    for i in records {
                        late.push_record(batch.get(i));
                    }
                    continue;
                }
                let slot = sessions.len() as u32;
                for i in records {
                    slots.push(slot);
                    origin.push(i);
                    input.push(batch.payload(i), batch.timestamps[i]);
                }
                sessions.push(Session {
                    key: key.to_vec(),
                    window,
                    merged,
                });
            }
        }
        // Fold the accumulators of merged windows into one per session.
        let mut accumulators: Vec<Vec<u8>> = sessions
            .iter()
            .map(|s| s.merged.first().map(|(_, acc)| acc.clone()).unwrap_or_default())
            .collect();
        let mut next = vec![1usize; sessions.len()];
        loop {
            let pending: Vec<usize> = (0..sessions.len())
                .filter(|&s| next[s] < sessions[s].merged.len())
                .collect();
            if pending.is_empty() {
                break;
            }
            let (mut a, mut b) = (Accumulators::default(), Accumulators::default());
            for &s in &pending {
                a.push(&accumulators[s]);
                b.push(&sessions[s].merged[next[s]].1);
                next[s] += 1;
            }
            let merged = self.instance.aggregate_merge(a, b)?;
            for (i, &s) in pending.iter().enumerate() {
                accumulators[s] = merged.get(i).to_vec();
            }
        }
        let mut column = Accumulators::default();
        for accumulator in &accumulators {
            column.push(accumulator);
        }
        let first = if self.triggered() {
            self.first_timestamps(sessions.len(), &slots, &origin, &batch, now)
        } else {
            Vec::new()
        };
        let column = self.add(column, slots, &mut input, Some((&batch, &origin)), out)?;
        let lateness = self.config.allowed_lateness_ms;
        let mut refire = Vec::new();
        for (s, session) in sessions.into_iter().enumerate() {
            if self.triggered() {
                let merged: Vec<Window> = session.merged.iter().map(|(window, _)| *window).collect();
                let element = (first[s], now);
                self.settle_session(
                    &session.key,
                    session.window,
                    &merged,
                    column.get(s),
                    element,
                    &mut refire,
                )?;
                continue;
            }
            self.context.backend.set_current_key(&session.key);
            for (old, _) in &session.merged {
                self.context
                    .backend
                    .delete(self.contents, &old.to_key())
                    .map_err(|e| self.context.state_error(e))?;
                self.context
                    .timers
                    .delete(TimeDomain::EventTime, &session.key, old.max_timestamp());
                if lateness > 0 {
                    self.context.timers.delete(
                        TimeDomain::EventTime,
                        &session.key,
                        old.max_timestamp().saturating_add(lateness),
                    );
                }
            }
            let accumulator = column.get(s);
            if accumulator.is_empty() {
                continue;
            }
            let window = session.window;
            self.context
                .backend
                .put(self.contents, &window.to_key(), accumulator)
                .map_err(|e| self.context.state_error(e))?;
            if lateness > 0 {
                self.context.timers.register(
                    TimeDomain::EventTime,
                    &session.key,
                    window.max_timestamp().saturating_add(lateness),
                );
            }
            if window.max_timestamp() <= self.context.watermark {
                refire.push((session.key, window, accumulator.to_vec()));
            } else {
                self.context
                    .timers
                    .register(TimeDomain::EventTime, &session.key, window.max_timestamp());
            }
        }
        self.fire(refire, out)?;
        self.context.emit_late(late, self.config.late_output.as_deref(), out)
    }
}
