//! Windows fired by a Wasm trigger (Flink's custom `Trigger`), or by the
//! count trigger when they buffer their elements (Flink's `countWindow` with
//! a process-window function or an evictor): the count trigger runs as a
//! host-side trigger with the same decisions.
//!
//! Built-in evictors run as a window fires, element by element, so a window
//! that fires twice in one batch is evicted twice in order.
//!
//! Session windows that merge get their trigger state from the trigger's
//! `on-merge`, given the merged windows' states; the merged windows' timers
//! are dropped. A batch's merges all happen before its elements are offered
//! to the triggers (with batches of one record, exactly Flink's order).
//!
//! A batch's elements are offered to their windows' triggers in one call, in
//! arrival order; the host then replays the decisions element by element,
//! so a window fires with exactly the elements it had when its trigger said
//! so, even inside a batch. Trigger timers that fire together go to the
//! trigger in one call (a window at most once per call). A window fires only
//! when its trigger says so; it is cleaned up (contents, trigger state and
//! timers) when the watermark passes its end plus the allowed lateness,
//! after its trigger's timers of that same time, as in Flink.

use std::collections::HashSet;

use super::trigger_state::TriggerRecord;
use super::{BufferedWindowOperator, Evictor, Fired, elements, evict};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::operators::window_config::Trigger;
use crate::record::batch::{EventTime, RecordBatch, span};
use crate::state::restore::RestoreError;
use crate::time::TimeDomain;
use crate::time::window_set::WindowSet;
use crate::time::windows::Window;
use crate::wasm::UdfError;
use crate::wasm::instance::{TriggerAction, TriggerDecisions, TriggerUdf, TriggerWindows};

/// Flink's `CountTrigger` (purging or not) as trigger decisions: a
/// window's state is its count since it last fired (8 bytes,
/// little-endian).
fn count_decisions(records: &[TriggerRecord], slots: &[u32], count: u64, purge: bool) -> TriggerDecisions {
    let mut counts: Vec<u64> = records
        .iter()
        .map(|r| r.state.as_slice().try_into().map_or(0, u64::from_le_bytes))
        .collect();
    let actions = slots
        .iter()
        .map(|&slot| {
            let seen = &mut counts[slot as usize];
            *seen += 1;
            if *seen < count {
                return TriggerAction::Continue;
            }
            *seen = 0;
            if purge {
                TriggerAction::FireAndPurge
            } else {
                TriggerAction::Fire
            }
        })
        .collect();
    let mut decisions = TriggerDecisions {
        actions,
        ..TriggerDecisions::default()
    };
    for seen in counts {
        decisions.states.extend_from_slice(&seen.to_le_bytes());
        decisions
            .state_ends
            .push(u32::try_from(decisions.states.len()).unwrap_or(u32::MAX));
    }
    decisions
}

/// Runs a built-in evictor's pass over a window's encoded elements as it
/// fires (a Wasm evictor is refused with a per-element trigger).
fn evict_inline(evictor: Option<&Evictor>, contents: &mut Vec<u8>, before: bool) {
    let applies = match evictor {
        Some(Evictor::Count { after, .. } | Evictor::Time { after, .. }) => *after != before,
        _ => false,
    };
    if !applies {
        return;
    }
    let mut set = WindowSet::default();
    set.begin(&[], Window::GLOBAL);
    for (timestamp, payload) in elements::iter(contents) {
        set.push(payload, timestamp);
    }
    let evict = match evictor {
        Some(Evictor::Count { count, .. }) => evict::by_count(&set, *count),
        Some(Evictor::Time { size_ms, .. }) => evict::by_time(&set, *size_ms),
        _ => return,
    };
    contents.clear();
    for (i, evicted) in evict.into_iter().enumerate() {
        if !evicted {
            elements::append(contents, set.elements.payload(i), set.elements.timestamps[i]);
        }
    }
}

/// A trigger timer that fired for a window.
struct Hit {
    key: Vec<u8>,
    window: Window,
    time: i64,
}

impl BufferedWindowOperator {
    /// The trigger record of `window` of `key` (a new one if none).
    fn trigger_record(&mut self, key: &[u8], window: Window) -> Result<Option<TriggerRecord>, TaskError> {
        self.context.backend.set_current_key(key);
        let stored = self
            .context
            .backend
            .get(self.trigger_state, &window.to_key())
            .map_err(|e| self.context.state_error(e))?;
        match stored {
            None => Ok(None),
            Some(bytes) => TriggerRecord::decode(&bytes)
                .map(Some)
                .ok_or_else(|| TaskError::StateRestore {
                    operator: self.context.base.uid.clone(),
                    source: RestoreError::CorruptTrigger {
                        start: window.start,
                        end: window.end,
                    },
                }),
        }
    }

    /// The cleanup time of a window (never for the global window).
    fn cleanup_time(&self, window: Window) -> Option<EventTime> {
        (window != Window::GLOBAL).then(|| {
            window
                .max_timestamp()
                .saturating_add(self.parts.config.allowed_lateness_ms)
        })
    }

    /// Applies a trigger call's new states and timer changes to `records`
    /// (window `i` of the call belongs to `keys[i]`).
    fn apply_decisions(&mut self, keys: &[&[u8]], records: &mut [TriggerRecord], decisions: &TriggerDecisions) {
        for (i, record) in records.iter_mut().enumerate() {
            record.state = decisions.state(i).to_vec();
        }
        for change in &decisions.timers {
            let w = change.window as usize;
            let (Some(record), Some(key)) = (records.get_mut(w), keys.get(w)) else {
                continue;
            };
            if change.delete {
                record.remove(change.domain, change.timestamp);
            } else if record.register(change.domain, change.timestamp) {
                self.context.timers.register(change.domain, key, change.timestamp);
            }
        }
    }

    fn trigger_call<T>(&mut self, call: impl FnOnce(&mut TriggerUdf) -> Result<T, UdfError>) -> Result<T, TaskError> {
        let Some(trigger) = self.parts.trigger.as_mut() else {
            return Err(TaskError::Internal {
                operator: self.context.base.uid.clone(),
                what: "a triggered window without its trigger",
            });
        };
        Ok(call(trigger)?)
    }

    /// The trigger records of `targets`: stored ones, new ones, and for
    /// windows that merged others (sessions), what the trigger's `on-merge`
    /// made of the merged windows' states (one call for the batch).
    fn merged_trigger_records(&mut self, targets: &[super::Target]) -> Result<Vec<TriggerRecord>, TaskError> {
        let mut records = Vec::with_capacity(targets.len());
        let mut merging = Vec::new();
        let mut windows = TriggerWindows::default();
        let (mut states, mut state_ends, mut merged_ends) = (Vec::new(), Vec::new(), Vec::new());
        for (t, target) in targets.iter().enumerate() {
            let merged = target.replaced.len() > 1 || target.replaced.first().is_some_and(|w| *w != target.window);
            if !merged {
                records.push(self.trigger_record(&target.key, target.window)?.unwrap_or_default());
                continue;
            }
            for old in &target.replaced {
                let record = self.trigger_record(&target.key, *old)?.unwrap_or_default();
                states.extend_from_slice(&record.state);
                state_ends.push(u32::try_from(states.len()).unwrap_or(u32::MAX));
            }
            merged_ends.push(u32::try_from(state_ends.len()).unwrap_or(u32::MAX));
            windows.push(&target.key, target.window, &[]);
            merging.push(t);
            records.push(TriggerRecord::default());
        }
        if merging.is_empty() {
            return Ok(records);
        }
        let watermark = self.context.watermark;
        let decisions =
            self.trigger_call(|t| t.trigger_merge(windows, (states, state_ends), &merged_ends, watermark))?;
        let keys: Vec<&[u8]> = merging.iter().map(|&t| targets[t].key.as_slice()).collect();
        let mut merged: Vec<TriggerRecord> = vec![TriggerRecord::default(); merging.len()];
        self.apply_decisions(&keys, &mut merged, &decisions);
        for (&t, record) in merging.iter().zip(merged) {
            records[t] = record;
        }
        Ok(records)
    }

    /// Adds a batch to its windows, asking their trigger after each element.
    pub(super) fn process_triggered(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        let mut late = RecordBatch::default();
        let mut targets = if self.parts.config.assigner.is_merging() {
            self.merged_targets(&batch, &mut late)?
        } else {
            self.targets(&batch, &mut late)?
        };
        // Every (record, window) pair in arrival order; a record's windows
        // in assignment order.
        let mut pairs: Vec<(usize, u32)> = targets
            .iter()
            .enumerate()
            .flat_map(|(t, target)| target.records.iter().map(move |&i| (i, t as u32)))
            .collect();
        pairs.sort_by_key(|&(i, _)| i);
        if !pairs.is_empty() {
            let mut records = self.merged_trigger_records(&targets)?;
            let mut windows = TriggerWindows::default();
            for (target, record) in targets.iter().zip(&records) {
                windows.push(&target.key, target.window, &record.state);
            }
            let mut input = RecordBatch::with_capacity(pairs.len(), batch.payload_bytes());
            let slots: Vec<u32> = pairs.iter().map(|&(_, t)| t).collect();
            for &(i, _) in &pairs {
                input.push(batch.payload(i), batch.timestamps[i]);
            }
            let watermark = self.context.watermark;
            let decisions = match self.parts.config.trigger {
                Trigger::Count { count, purge } if self.parts.trigger.is_none() => {
                    count_decisions(&records, &slots, count, purge)
                }
                _ => self.trigger_call(|t| t.trigger_elements(windows, &slots, &mut input, watermark))?,
            };
            let keys: Vec<Vec<u8>> = targets.iter().map(|t| t.key.clone()).collect();
            let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            self.apply_decisions(&key_refs, &mut records, &decisions);
            let mut fired = Vec::new();
            for (n, &(i, t)) in pairs.iter().enumerate() {
                let target = &mut targets[t as usize];
                elements::append(&mut target.contents, batch.payload(i), batch.timestamps[i]);
                let action = decisions.actions[n];
                if action.fires() && !target.whole {
                    // The window as it stands: what state holds, then the
                    // batch's elements so far.
                    self.context.backend.set_current_key(&target.key);
                    let mut whole = self.load(target.window)?;
                    whole.extend_from_slice(&target.contents);
                    target.contents = whole;
                    target.whole = true;
                }
                if action.fires() {
                    evict_inline(self.parts.evictor.as_ref(), &mut target.contents, true);
                    fired.push(Fired {
                        key: target.key.clone(),
                        window: target.window,
                        contents: target.contents.clone(),
                    });
                    evict_inline(self.parts.evictor.as_ref(), &mut target.contents, false);
                }
                if action.purges() {
                    target.contents.clear();
                    target.whole = true;
                }
            }
            for (target, record) in targets.iter().zip(&records) {
                let window_key = target.window.to_key();
                self.context.backend.set_current_key(&target.key);
                for old in &target.replaced {
                    self.remove(*old)?;
                    self.context
                        .backend
                        .delete(self.trigger_state, &old.to_key())
                        .map_err(|e| self.context.state_error(e))?;
                }
                if target.whole {
                    self.replace(target.window, &target.contents)?;
                } else {
                    self.append(target.window, &target.contents)?;
                }
                self.context
                    .backend
                    .put(self.trigger_state, &window_key, &record.encode())
                    .map_err(|e| self.context.state_error(e))?;
                if let Some(cleanup) = self.cleanup_time(target.window) {
                    self.context
                        .timers
                        .register(TimeDomain::EventTime, &target.key, cleanup);
                }
            }
            self.fire(fired, out)?;
        }
        self.context
            .emit_late(late, self.parts.config.late_output.as_deref(), out)
    }

    /// Fires the trigger timers of `domain` due at `time` (the watermark or
    /// the wall clock), cleaning up the windows whose time has come.
    pub(super) fn fire_trigger_timers(
        &mut self,
        domain: TimeDomain,
        time: i64,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        loop {
            let due = self.context.timers.take_due(domain, time, self.context.base.batch_size);
            if due.is_empty() {
                return Ok(());
            }
            let mut hits = Vec::new();
            let mut cleanups: Vec<(Vec<u8>, Window)> = Vec::new();
            for i in 0..due.len() {
                let key = &due.keys[span(&due.key_ends, i)];
                let timestamp = due.timestamps[i];
                self.context.backend.set_current_key(key);
                let triggers = self
                    .context
                    .backend
                    .entries(self.trigger_state)
                    .map_err(|e| self.context.state_error(e))?;
                for (user_key, bytes) in &triggers {
                    let (Some(window), Some(mut record)) = (Window::from_key(user_key), TriggerRecord::decode(bytes))
                    else {
                        continue;
                    };
                    let cleanup = self.cleanup_time(window);
                    // A timer after the window's cleanup never fires.
                    let alive = domain == TimeDomain::ProcessingTime || cleanup.is_none_or(|c| timestamp <= c);
                    if alive && record.timers(domain).contains(&timestamp) {
                        hits.push(Hit {
                            key: key.to_vec(),
                            window,
                            time: timestamp,
                        });
                    }
                    if domain == TimeDomain::EventTime && cleanup == Some(timestamp) {
                        cleanups.push((key.to_vec(), window));
                    }
                }
                if domain == TimeDomain::EventTime {
                    for (user_key, _) in self
                        .context
                        .backend
                        .entries(self.buffer)
                        .map_err(|e| self.context.state_error(e))?
                    {
                        if let Some(window) = Window::from_key(&user_key)
                            && self.cleanup_time(window) == Some(timestamp)
                            && !cleanups.iter().any(|(k, w)| k == key && *w == window)
                        {
                            cleanups.push((key.to_vec(), window));
                        }
                    }
                }
            }
            self.run_hits(domain, hits, out)?;
            for (key, window) in cleanups {
                self.context.backend.set_current_key(&key);
                self.remove(window)?;
                self.context
                    .backend
                    .delete(self.trigger_state, &window.to_key())
                    .map_err(|e| self.context.state_error(e))?;
            }
        }
    }

    /// Calls the trigger for fired timers, in rounds in which each window
    /// appears once, and fires or purges what it says.
    fn run_hits(&mut self, domain: TimeDomain, mut pending: Vec<Hit>, out: &mut Output) -> Result<(), TaskError> {
        while !pending.is_empty() {
            let mut seen = HashSet::new();
            let (round, later): (Vec<Hit>, Vec<Hit>) = pending
                .into_iter()
                .partition(|hit| seen.insert((hit.key.clone(), hit.window)));
            pending = later;
            let mut windows = TriggerWindows::default();
            let mut records = Vec::with_capacity(round.len());
            let mut timestamps = Vec::with_capacity(round.len());
            let mut called = Vec::with_capacity(round.len());
            for hit in round {
                let Some(mut record) = self.trigger_record(&hit.key, hit.window)? else {
                    continue; // cleaned up
                };
                if !record.remove(domain, hit.time) {
                    continue; // deleted by an earlier call
                }
                windows.push(&hit.key, hit.window, &record.state);
                records.push(record);
                timestamps.push(hit.time);
                called.push(hit);
            }
            if called.is_empty() {
                continue;
            }
            let watermark = self.context.watermark;
            let decisions = self.trigger_call(|t| t.trigger_timers(domain, windows, &timestamps, watermark))?;
            let keys: Vec<&[u8]> = called.iter().map(|hit| hit.key.as_slice()).collect();
            self.apply_decisions(&keys, &mut records, &decisions);
            let mut fired = Vec::new();
            for ((hit, record), action) in called.iter().zip(&records).zip(&decisions.actions) {
                let window_key = hit.window.to_key();
                self.context.backend.set_current_key(&hit.key);
                if action.fires() {
                    let mut contents = self.load(hit.window)?;
                    evict_inline(self.parts.evictor.as_ref(), &mut contents, true);
                    fired.push(Fired {
                        key: hit.key.clone(),
                        window: hit.window,
                        contents: contents.clone(),
                    });
                    if self.parts.evictor.is_some() && !action.purges() {
                        evict_inline(self.parts.evictor.as_ref(), &mut contents, false);
                        self.replace(hit.window, &contents)?;
                    }
                }
                if action.purges() {
                    self.remove(hit.window)?;
                }
                self.context
                    .backend
                    .put(self.trigger_state, &window_key, &record.encode())
                    .map_err(|e| self.context.state_error(e))?;
            }
            self.fire(fired, out)?;
        }
        Ok(())
    }
}
