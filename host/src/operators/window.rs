//! Keyed event-time windows with an incremental aggregate written in Wasm.
//!
//! The operator assigns each record to its windows (tumbling, sliding, or
//! session windows, which merge when they overlap or touch)
//! and keeps one accumulator per key and window in keyed state (a map state
//! `window-contents`, user key = the window). For each batch it reads the
//! accumulators the batch touches once, has the guest fold the whole batch
//! into them in one call, and writes them back: no per-record host call.
//!
//! Firing follows Flink's event-time trigger: a window fires when the
//! watermark reaches its last millisecond (`end - 1`), through an event-time
//! timer. With allowed lateness, its state is kept until `end - 1 +
//! lateness`; a late record inside that bound updates the window and fires
//! it again at once. A record that is too late for every window it belongs
//! to goes to the late side output (if configured) and is counted.

use std::collections::HashMap;
use std::sync::Arc;

use super::{KeyedView, Operator, OperatorSnapshot};
use crate::checkpoint::CheckpointId;
use crate::job::plan::WindowConfig;
use crate::metrics::VertexMetrics;
use crate::runtime::TaskError;
use crate::runtime::batch::{EventTime, RecordBatch};
use crate::runtime::output::Output;
use crate::state::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, StateKind};
use crate::time::windows::Window;
use crate::time::{TimeDomain, TimerService};
use crate::wasm::UdfInstance;
use crate::wasm::instance::Accumulators;

/// The name of the state that holds the accumulators.
pub const WINDOW_STATE: &str = "window-contents";

/// A keyed window operator.
pub struct WindowOperator {
    uid: String,
    module: String,
    instance: UdfInstance,
    metrics: Arc<VertexMetrics>,
    backend: Box<dyn KeyedStateBackend>,
    timers: TimerService,
    contents: StateId,
    config: WindowConfig,
    watermark: EventTime,
    key_groups: KeyGroupRange,
    timer_batch: usize,
}

/// The accumulators one batch touches: slot `i` is (record whose key it
/// is, window).
#[derive(Default)]
struct Slots {
    of: HashMap<(Vec<u8>, Window), u32>,
    list: Vec<(Vec<u8>, Window)>,
}

impl Slots {
    fn slot(&mut self, key: &[u8], window: Window) -> u32 {
        // The lookup key is built once per record and window; the map keeps it.
        let probe = (key.to_vec(), window);
        if let Some(slot) = self.of.get(&probe) {
            return *slot;
        }
        let slot = self.list.len() as u32;
        self.list.push(probe.clone());
        self.of.insert(probe, slot);
        slot
    }
}

impl WindowOperator {
    /// A window operator over `backend` and `timers` (restored already).
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor wiring the parts built by the executor"
    )]
    pub fn new(
        uid: &str,
        module: String,
        instance: UdfInstance,
        metrics: Arc<VertexMetrics>,
        mut backend: Box<dyn KeyedStateBackend>,
        timers: TimerService,
        config: WindowConfig,
        key_groups: KeyGroupRange,
        timer_batch: usize,
    ) -> Result<Self, TaskError> {
        let descriptor = StateDescriptor {
            name: WINDOW_STATE.into(),
            kind: StateKind::Map,
            ttl: None,
        };
        let contents = backend.register(&descriptor).map_err(|source| TaskError::State {
            operator: uid.to_string(),
            source,
        })?;
        Ok(Self {
            uid: uid.to_string(),
            module,
            instance,
            metrics,
            backend,
            timers,
            contents,
            config,
            watermark: EventTime::MIN,
            key_groups,
            timer_batch,
        })
    }

    fn state_error(&self, source: crate::state::StateError) -> TaskError {
        TaskError::State {
            operator: self.uid.clone(),
            source,
        }
    }

    /// A window is late once the watermark has passed its end plus lateness.
    fn is_late(&self, window: Window) -> bool {
        window.max_timestamp().saturating_add(self.config.allowed_lateness_ms) <= self.watermark
    }

    /// Emits the results of `windows` (key, window, accumulator).
    fn fire(&mut self, fired: Vec<(Vec<u8>, Window, Vec<u8>)>, out: &mut Output) -> Result<(), TaskError> {
        if fired.is_empty() {
            return Ok(());
        }
        let mut accumulators = Accumulators::default();
        let mut keys = (Vec::new(), Vec::with_capacity(fired.len()));
        let mut windows = Vec::with_capacity(fired.len());
        for (key, window, accumulator) in &fired {
            accumulators.push(accumulator);
            keys.0.extend_from_slice(key);
            keys.1.push(u32::try_from(keys.0.len()).unwrap_or(u32::MAX));
            windows.push(*window);
        }
        let results = self.instance.aggregate_results(accumulators, keys, &windows)?;
        out.emit(results)
    }
}

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
    fn process_sessions(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
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
            self.backend.set_current_key(key);
            let mut items: Vec<Member> = Vec::new();
            for (user_key, accumulator) in self.backend.entries(self.contents).map_err(|e| self.state_error(e))? {
                if let Some(window) = Window::from_key(&user_key) {
                    items.push(Member {
                        window,
                        accumulator: Some(accumulator),
                        record: None,
                    });
                }
            }
            for &i in &records {
                self.config.assigner.assign(batch.timestamps[i], |window| {
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
        let (column, errors) = if input.is_empty() {
            (column, Vec::new())
        } else {
            self.instance.aggregate_add(column, slots, &mut input)?
        };
        for (index, reason) in &errors {
            if let Some(&i) = origin.get(*index as usize) {
                out.dead_letters()
                    .write(&self.uid, &self.module, batch.get(i), reason)?;
            }
        }
        let lateness = self.config.allowed_lateness_ms;
        let mut refire = Vec::new();
        for (s, session) in sessions.into_iter().enumerate() {
            self.backend.set_current_key(&session.key);
            for (old, _) in &session.merged {
                self.backend
                    .delete(self.contents, &old.to_key())
                    .map_err(|e| self.state_error(e))?;
                self.timers
                    .delete(TimeDomain::EventTime, &session.key, old.max_timestamp());
                if lateness > 0 {
                    self.timers.delete(
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
            self.backend
                .put(self.contents, &window.to_key(), accumulator)
                .map_err(|e| self.state_error(e))?;
            if lateness > 0 {
                self.timers.register(
                    TimeDomain::EventTime,
                    &session.key,
                    window.max_timestamp().saturating_add(lateness),
                );
            }
            if window.max_timestamp() <= self.watermark {
                refire.push((session.key, window, accumulator.to_vec()));
            } else {
                self.timers
                    .register(TimeDomain::EventTime, &session.key, window.max_timestamp());
            }
        }
        self.fire(refire, out)?;
        self.side_output_late(late, out)
    }

    fn side_output_late(&mut self, late: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        if late.is_empty() {
            return Ok(());
        }
        self.metrics.add_late(late.len() as u64);
        match self.config.late_output.clone() {
            Some(tag) => out.emit_side(&tag, late),
            None => Ok(()),
        }
    }
}

impl Operator for WindowOperator {
    fn process_batch(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
        if self.config.assigner.is_merging() {
            return self.process_sessions(batch, out);
        }
        let assigner = self.config.assigner;
        let mut slots = Slots::default();
        let mut record_slots: Vec<u32> = Vec::with_capacity(batch.len());
        let mut origin: Vec<usize> = Vec::with_capacity(batch.len());
        let mut late = RecordBatch::default();
        let mut expanded = RecordBatch::default();
        let tumbling = assigner.is_tumbling();
        for (i, record) in batch.iter().enumerate() {
            let key = record.key.unwrap_or_default();
            let mut placed = false;
            assigner.assign(record.timestamp, |window| {
                if self.is_late(window) {
                    return;
                }
                placed = true;
                record_slots.push(slots.slot(key, window));
                origin.push(i);
                if !tumbling {
                    expanded.push(record.payload, record.timestamp);
                }
            });
            if !placed {
                late.push_record(record);
            }
        }
        // Records that were not placed leave the batch; sliding windows
        // repeat a record once per window.
        let mut input = if tumbling && late.is_empty() {
            std::mem::take(&mut batch)
        } else if tumbling {
            let mut kept = RecordBatch::with_capacity(origin.len(), batch.payload_bytes());
            for &i in &origin {
                let record = batch.get(i);
                kept.push(record.payload, record.timestamp);
            }
            kept
        } else {
            expanded
        };
        input.strip_keys();

        let mut accumulators = Accumulators::default();
        for (key, window) in &slots.list {
            self.backend.set_current_key(key);
            let stored = self
                .backend
                .get(self.contents, &window.to_key())
                .map_err(|e| self.state_error(e))?;
            accumulators.push(stored.as_deref().unwrap_or_default());
        }
        let (accumulators, errors) = if input.is_empty() {
            (accumulators, Vec::new())
        } else {
            self.instance.aggregate_add(accumulators, record_slots, &mut input)?
        };
        for (index, reason) in &errors {
            if let Some(&i) = origin.get(*index as usize) {
                let record = if batch.is_empty() {
                    input.get(*index as usize)
                } else {
                    batch.get(i)
                };
                out.dead_letters().write(&self.uid, &self.module, record, reason)?;
            }
        }
        let mut refire = Vec::new();
        for (slot, (key, window)) in slots.list.into_iter().enumerate() {
            let accumulator = accumulators.get(slot);
            if accumulator.is_empty() {
                continue; // every record of this window was rejected
            }
            self.backend.set_current_key(&key);
            self.backend
                .put(self.contents, &window.to_key(), accumulator)
                .map_err(|e| self.state_error(e))?;
            if self.config.allowed_lateness_ms > 0 {
                let cleanup = window.max_timestamp().saturating_add(self.config.allowed_lateness_ms);
                self.timers.register(TimeDomain::EventTime, &key, cleanup);
            }
            if window.max_timestamp() <= self.watermark {
                // Late but within the allowed lateness: fire again now, and
                // only now (Flink's event-time trigger registers no timer).
                refire.push((key, window, accumulator.to_vec()));
            } else {
                self.timers
                    .register(TimeDomain::EventTime, &key, window.max_timestamp());
            }
        }
        self.fire(refire, out)?;
        self.side_output_late(late, out)
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.watermark = watermark;
        let lateness = self.config.allowed_lateness_ms;
        loop {
            let due = self.timers.take_due(TimeDomain::EventTime, watermark, self.timer_batch);
            if due.is_empty() {
                return Ok(());
            }
            let mut fired = Vec::new();
            for i in 0..due.len() {
                let key = &due.keys[crate::runtime::batch::span(&due.key_ends, i)];
                let time = due.timestamps[i];
                self.backend.set_current_key(key);
                for (user_key, accumulator) in self.backend.entries(self.contents).map_err(|e| self.state_error(e))? {
                    let Some(window) = Window::from_key(&user_key) else {
                        continue;
                    };
                    if window.max_timestamp() == time {
                        fired.push((key.to_vec(), window, accumulator));
                    }
                    if window.max_timestamp().saturating_add(lateness) == time {
                        self.backend
                            .delete(self.contents, &user_key)
                            .map_err(|e| self.state_error(e))?;
                    }
                }
            }
            self.fire(fired, out)?;
        }
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        let state = self.backend.snapshot().map_err(|e| self.state_error(e))?;
        Ok(OperatorSnapshot {
            keyed: Some(KeyedView {
                state,
                timers: self.timers.clone(),
                key_groups: self.key_groups,
            }),
            transactions: Vec::new(),
        })
    }
}
