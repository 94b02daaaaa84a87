//! Keyed event-time windows with an incremental aggregate written in Wasm.
//!
//! The operator assigns each record to its windows (tumbling or sliding)
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

impl Operator for WindowOperator {
    fn process_batch(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
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
        if !late.is_empty() {
            self.metrics.add_late(late.len() as u64);
            if let Some(tag) = self.config.late_output.clone() {
                out.emit_side(&tag, late)?;
            }
        }
        Ok(())
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
