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
//!
//! Session windows live in `sessions`, count triggers in `counted`;
//! processing-time windows and the other built-in time triggers
//! (processing-time, continuous, purging) in `triggers`.

use std::collections::HashMap;

use super::{KeyedContext, Operator, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::operators::window_config::{Trigger, WindowConfig};
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::StateId;
use crate::state::cache::MapStateCache;
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::time::windows::Window;
use crate::wasm::instance::{Accumulators, WindowAggregateUdf};

mod counted;
mod sessions;
mod triggers;

/// The name of the state that holds the accumulators.
pub(crate) const WINDOW_STATE: &str = "window-contents";
/// The name of the state that counts records per window (count triggers).
pub(crate) const WINDOW_COUNTS: &str = "window-counts";

/// A keyed window operator.
pub(crate) struct WindowOperator {
    context: KeyedContext,
    instance: WindowAggregateUdf,
    contents: StateId,
    /// Records per window since it last fired (count triggers).
    counts: StateId,
    config: WindowConfig,
    /// The accumulators of `contents` in use, written back on flush.
    cache: MapStateCache,
    /// Per cache slot: the batch that last touched it and its slot in that
    /// batch's accumulator column.
    batch_slots: Vec<(u64, u32)>,
    /// Counts batches, for `batch_slots`.
    generation: u64,
    /// Next firing time per window (continuous triggers).
    triggers: StateId,
    /// Processing time (the wall clock in jobs).
    clock: Box<dyn crate::time::clock::Clock>,
}

/// The accumulators one batch touches: slot `i` is (key, window). Keys are
/// borrowed from the batch, so a lookup allocates nothing; a slot's key is
/// copied once, when the slot is created.
#[derive(Default)]
struct Slots<'a> {
    of: HashMap<(&'a [u8], Window), u32>,
    list: Vec<(&'a [u8], Window)>,
}

impl<'a> Slots<'a> {
    fn slot(&mut self, key: &'a [u8], window: Window) -> u32 {
        let next = self.list.len() as u32;
        let slot = *self.of.entry((key, window)).or_insert(next);
        if slot == next {
            self.list.push((key, window));
        }
        slot
    }

    /// The slots with owned keys, once the batch is no longer borrowed.
    fn into_owned(self) -> Vec<(Vec<u8>, Window)> {
        self.list
            .into_iter()
            .map(|(key, window)| (key.to_vec(), window))
            .collect()
    }
}

impl WindowOperator {
    /// A window operator in `context` (restored already).
    pub(crate) fn new(
        mut context: KeyedContext,
        instance: WindowAggregateUdf,
        config: WindowConfig,
    ) -> Result<Self, TaskError> {
        let contents = context.register(WINDOW_STATE)?;
        let counts = context.register(WINDOW_COUNTS)?;
        let triggers = context.register(triggers::WINDOW_TRIGGER)?;
        Ok(Self {
            context,
            instance,
            contents,
            counts,
            config,
            cache: MapStateCache::new(contents, CACHE_CAPACITY),
            batch_slots: Vec::new(),
            generation: 0,
            triggers,
            clock: Box::new(crate::time::clock::SystemClock),
        })
    }

    /// Reads processing time from `clock` instead of the wall clock.
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: impl crate::time::clock::Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// A window is late once the watermark has passed its end plus lateness.
    fn is_late(&self, window: Window) -> bool {
        self.config.time == TimeDomain::EventTime && self.context.is_late(window, self.config.allowed_lateness_ms)
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

impl WindowOperator {
    /// Folds record `i` of `input` into accumulator `slots[i]` (one guest
    /// call) and sends the records the guest rejects to the dead letters:
    /// record `origin[i]` of `batch` when given, else record `i` of `input`.
    fn add(
        &mut self,
        accumulators: Accumulators,
        slots: Vec<u32>,
        input: &mut RecordBatch,
        source: Option<(&RecordBatch, &[usize])>,
        out: &mut Output,
    ) -> Result<Accumulators, TaskError> {
        if input.is_empty() {
            return Ok(accumulators);
        }
        let (accumulators, errors) = self.instance.aggregate_add(accumulators, slots, input)?;
        for (index, reason) in &errors {
            let index = *index as usize;
            let record = match source {
                Some((batch, origin)) => origin.get(index).map(|&i| batch.get(i)),
                None => (index < input.len()).then(|| input.get(index)),
            };
            if let Some(record) = record {
                self.context.base.dead_letter(out, record, reason)?;
            }
        }
        Ok(accumulators)
    }
}

/// The operator keeps this many accumulators in its write-back cache
/// between flushes.
const CACHE_CAPACITY: usize = 1 << 18;

impl WindowOperator {
    /// Tumbling and sliding windows with the event-time trigger: each record
    /// is resolved to its accumulators in the write-back cache (one hash
    /// lookup, no allocation), the guest folds the whole batch in one call,
    /// and the accumulators go back into the cache. A window's timers are
    /// registered when its accumulator is created.
    fn process_assigned(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        let assigner = self.config.assigner;
        let tumbling = assigner.is_tumbling();
        let (watermark, lateness) = (self.context.watermark, self.config.allowed_lateness_ms);
        self.generation += 1;
        let generation = self.generation;
        // Cache slot of each accumulator the batch touches, in batch order.
        let mut touched: Vec<u32> = Vec::new();
        let mut record_slots: Vec<u32> = Vec::with_capacity(batch.len());
        let mut origin: Vec<usize> = Vec::with_capacity(batch.len());
        let mut late = RecordBatch::default();
        let mut expanded = RecordBatch::default();
        let mut failure = None;
        for (i, record) in batch.iter().enumerate() {
            let key = record.key.unwrap_or_default();
            let mut placed = false;
            assigner.assign(record.timestamp, |window| {
                if failure.is_some() || window.max_timestamp().saturating_add(lateness) <= watermark {
                    return;
                }
                placed = true;
                let slot = match self.cache.slot(self.context.backend.as_mut(), key, &window.to_key()) {
                    Ok(slot) => slot as usize,
                    Err(e) => {
                        failure = Some(e);
                        return;
                    }
                };
                if self.batch_slots.len() <= slot {
                    self.batch_slots.resize(slot + 1, (0, 0));
                }
                let mark = &mut self.batch_slots[slot];
                if mark.0 != generation {
                    *mark = (generation, touched.len() as u32);
                    touched.push(slot as u32);
                }
                record_slots.push(mark.1);
                origin.push(i);
                if !tumbling {
                    expanded.push(record.payload, record.timestamp);
                }
            });
            if !placed && failure.is_none() {
                late.push_record(record);
            }
        }
        if let Some(e) = failure {
            return Err(self.context.state_error(e));
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
        let mut created = Vec::with_capacity(touched.len());
        for &slot in &touched {
            let stored = self.cache.value(slot);
            created.push(stored.is_empty());
            accumulators.push(stored);
        }
        // `batch` was moved into `input` when nothing was filtered out.
        let source = (!batch.is_empty()).then_some((&batch, origin.as_slice()));
        let accumulators = self.add(accumulators, record_slots, &mut input, source, out)?;
        let mut refire = Vec::new();
        for (i, &slot) in touched.iter().enumerate() {
            let accumulator = accumulators.get(i);
            if accumulator.is_empty() {
                continue; // every record of this window was rejected
            }
            self.cache.set(slot, accumulator);
            let Some(window) = Window::from_key(self.cache.user_key(slot)) else {
                continue;
            };
            if window.max_timestamp() <= watermark {
                // Late but within the allowed lateness: fire again now, and
                // only now (Flink's event-time trigger registers no timer).
                refire.push((self.cache.key(slot).to_vec(), window, accumulator.to_vec()));
            } else if created[i] {
                self.context
                    .timers
                    .register(TimeDomain::EventTime, self.cache.key(slot), window.max_timestamp());
            }
            if created[i] && lateness > 0 {
                let cleanup = window.max_timestamp().saturating_add(lateness);
                self.context
                    .timers
                    .register(TimeDomain::EventTime, self.cache.key(slot), cleanup);
            }
        }
        if self.cache.len() > CACHE_CAPACITY {
            self.cache
                .flush_and_trim(self.context.backend.as_mut())
                .map_err(|e| self.context.state_error(e))?;
        }
        self.fire(refire, out)?;
        self.context.emit_late(late, self.config.late_output.as_deref(), out)
    }
}

impl Operator for WindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.context.base.metrics.add_in(batch.len(), batch.payload_bytes());
        if self.config.assigner.is_merging() {
            return self.process_sessions(batch, out);
        }
        if self.triggered() {
            return self.process_triggered(batch, out);
        }
        if let Trigger::Count { count, purge } = self.config.trigger {
            return self.process_counted(batch, out, count, purge);
        }
        self.process_assigned(batch, out)
    }

    fn restore_watermark(&mut self, watermark: EventTime) {
        self.context.watermark = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        if self.triggered() {
            return self.on_watermark_triggered(watermark, out);
        }
        self.context.watermark = watermark;
        // With a watermark after every batch, most advance past no timer:
        // the accumulators stay in the write-back cache until one is due.
        if self.context.timers.next_event_time().is_none_or(|due| due > watermark) {
            return Ok(());
        }
        let lateness = self.config.allowed_lateness_ms;
        self.cache
            .flush(self.context.backend.as_mut())
            .map_err(|e| self.context.state_error(e))?;
        loop {
            let due = self
                .context
                .timers
                .take_due(TimeDomain::EventTime, watermark, self.context.base.batch_size);
            if due.is_empty() {
                return Ok(());
            }
            let mut fired = Vec::new();
            for i in 0..due.len() {
                let key = &due.keys[crate::record::batch::span(&due.key_ends, i)];
                let time = due.timestamps[i];
                self.context.backend.set_current_key(key);
                for (user_key, accumulator) in self
                    .context
                    .backend
                    .entries(self.contents)
                    .map_err(|e| self.context.state_error(e))?
                {
                    let Some(window) = Window::from_key(&user_key) else {
                        continue;
                    };
                    if window.max_timestamp() == time && self.config.trigger == Trigger::EventTime {
                        fired.push((key.to_vec(), window, accumulator));
                    }
                    if window.max_timestamp().saturating_add(lateness) == time {
                        self.cache
                            .remove(self.context.backend.as_mut(), key, &user_key)
                            .map_err(|e| self.context.state_error(e))?;
                        self.context.backend.set_current_key(key);
                        self.context
                            .backend
                            .delete(self.counts, &user_key)
                            .map_err(|e| self.context.state_error(e))?;
                    }
                }
            }
            self.fire(fired, out)?;
        }
    }

    fn next_processing_time(&self) -> Option<i64> {
        // A processing-time timer fires once the clock has passed it.
        self.context
            .timers
            .next_processing_time()
            .map(|time| time.saturating_add(1))
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<(), TaskError> {
        self.fire_processing_time(now, out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        self.cache
            .flush(self.context.backend.as_mut())
            .map_err(|e| self.context.state_error(e))?;
        self.context.snapshot()
    }
}
