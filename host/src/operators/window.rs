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
//! Processing-time windows and the other built-in time triggers
//! (processing-time, continuous, purging) live in [`triggers`].

use std::collections::HashMap;
use std::sync::Arc;

use super::{KeyedView, Operator, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::operators::window_config::{Trigger, WindowConfig};
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::TimerService;
use crate::state::cache::MapStateCache;
use crate::state::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, StateKind};
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::time::windows::Window;
use crate::wasm::instance::{Accumulators, WindowAggregateUdf};

mod triggers;

pub use triggers::WINDOW_TRIGGER;

/// The name of the state that holds the accumulators.
pub const WINDOW_STATE: &str = "window-contents";
/// The name of the state that counts records per window (count triggers).
pub const WINDOW_COUNTS: &str = "window-counts";

/// A keyed window operator.
pub struct WindowOperator {
    uid: String,
    module: String,
    instance: WindowAggregateUdf,
    metrics: Arc<VertexMetrics>,
    backend: Box<dyn KeyedStateBackend>,
    timers: TimerService,
    contents: StateId,
    /// Records per window since it last fired (count triggers).
    counts: StateId,
    config: WindowConfig,
    watermark: EventTime,
    key_groups: KeyGroupRange,
    timer_batch: usize,
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
    /// A window operator over `backend` and `timers` (restored already).
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor wiring the parts built by the executor"
    )]
    pub fn new(
        uid: &str,
        module: String,
        instance: WindowAggregateUdf,
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
        let state_error = |source| TaskError::State {
            operator: uid.to_string(),
            source,
        };
        let contents = backend.register(&descriptor).map_err(state_error)?;
        let counts_descriptor = StateDescriptor {
            name: WINDOW_COUNTS.into(),
            kind: StateKind::Map,
            ttl: None,
        };
        let counts = backend.register(&counts_descriptor).map_err(state_error)?;
        let triggers = backend.register(&triggers::descriptor()).map_err(state_error)?;
        Ok(Self {
            uid: uid.to_string(),
            module,
            instance,
            metrics,
            backend,
            timers,
            contents,
            counts,
            config,
            watermark: EventTime::MIN,
            key_groups,
            timer_batch,
            cache: MapStateCache::new(contents, CACHE_CAPACITY),
            batch_slots: Vec::new(),
            generation: 0,
            triggers,
            clock: Box::new(crate::time::clock::SystemClock),
        })
    }

    /// Reads processing time from `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: impl crate::time::clock::Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    fn state_error(&self, source: crate::state::StateError) -> TaskError {
        TaskError::State {
            operator: self.uid.clone(),
            source,
        }
    }

    /// A window is late once the watermark has passed its end plus lateness.
    fn is_late(&self, window: Window) -> bool {
        self.config.time == TimeDomain::EventTime
            && window.max_timestamp().saturating_add(self.config.allowed_lateness_ms) <= self.watermark
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
                out.dead_letters().write(&self.uid, &self.module, record, reason)?;
            }
        }
        Ok(accumulators)
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
        let (watermark, lateness) = (self.watermark, self.config.allowed_lateness_ms);
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
                let slot = match self.cache.slot(self.backend.as_mut(), key, &window.to_key()) {
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
            return Err(self.state_error(e));
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
                self.timers
                    .register(TimeDomain::EventTime, self.cache.key(slot), window.max_timestamp());
            }
            if created[i] && lateness > 0 {
                let cleanup = window.max_timestamp().saturating_add(lateness);
                self.timers
                    .register(TimeDomain::EventTime, self.cache.key(slot), cleanup);
            }
        }
        if self.cache.len() > CACHE_CAPACITY {
            self.cache
                .flush_and_trim(self.backend.as_mut())
                .map_err(|e| self.state_error(e))?;
        }
        self.fire(refire, out)?;
        self.side_output_late(late, out)
    }
}

/// One firing's worth of a window's records under a count trigger.
struct Generation {
    key: Vec<u8>,
    window: Window,
    /// Records already counted before this batch (generation 0 only).
    carried: u64,
    /// Records of this batch in the generation.
    records: u64,
    /// The generation reached the trigger's count.
    complete: bool,
    /// The window's first generation in this batch: it continues the
    /// accumulator in state.
    first: bool,
}

impl WindowOperator {
    /// Count triggers (Flink's `CountTrigger`, optionally purging): a window
    /// fires each time it has received `count` more records. The records of
    /// a window in one batch are cut into generations of `count`, so firing
    /// happens exactly at the n-th record even inside a batch; without
    /// purging, generation `g` fires the merge of all generations up to `g`.
    fn process_counted(
        &mut self,
        batch: RecordBatch,
        out: &mut Output,
        count: u64,
        purge: bool,
    ) -> Result<(), TaskError> {
        let mut generations: Vec<Generation> = Vec::new();
        let mut current: HashMap<(Vec<u8>, Window), usize> = HashMap::new();
        let mut slots = Vec::with_capacity(batch.len());
        let mut origin = Vec::with_capacity(batch.len());
        let mut input = RecordBatch::with_capacity(batch.len(), batch.payload_bytes());
        let mut late = RecordBatch::default();
        for (i, record) in batch.iter().enumerate() {
            let key = record.key.unwrap_or_default();
            let mut placed = false;
            let mut windows = Vec::new();
            self.config
                .assigner
                .assign(record.timestamp, |window| windows.push(window));
            for window in windows {
                if self.is_late(window) {
                    continue;
                }
                placed = true;
                let probe = (key.to_vec(), window);
                let slot = match current.get(&probe) {
                    Some(&slot) if !generations[slot].complete => slot,
                    Some(&previous) => {
                        // The window starts a new count after its firing.
                        let carried = generations[previous].carried + generations[previous].records;
                        generations.push(Generation {
                            key: key.to_vec(),
                            window,
                            carried,
                            records: 0,
                            complete: false,
                            first: false,
                        });
                        generations.len() - 1
                    }
                    None => {
                        self.backend.set_current_key(key);
                        let carried = self
                            .backend
                            .get(self.counts, &window.to_key())
                            .map_err(|e| self.state_error(e))?
                            .and_then(|bytes| bytes.try_into().ok().map(u64::from_le_bytes))
                            .unwrap_or(0);
                        generations.push(Generation {
                            key: key.to_vec(),
                            window,
                            carried,
                            records: 0,
                            complete: false,
                            first: true,
                        });
                        generations.len() - 1
                    }
                };
                current.insert(probe, slot);
                let generation = &mut generations[slot];
                generation.records += 1;
                let in_generation = generation.carried % count + generation.records;
                generation.complete = in_generation >= count;
                slots.push(slot as u32);
                origin.push(i);
                input.push(record.payload, record.timestamp);
            }
            if !placed {
                late.push_record(record);
            }
        }
        // Generation 0 of a window continues its stored accumulator.
        let mut accumulators = Accumulators::default();
        for generation in &generations {
            if generation.first {
                self.backend.set_current_key(&generation.key);
                let stored = self
                    .backend
                    .get(self.contents, &generation.window.to_key())
                    .map_err(|e| self.state_error(e))?;
                accumulators.push(stored.as_deref().unwrap_or_default());
            } else {
                accumulators.push(&[]);
            }
        }
        let accumulators = self.add(accumulators, slots, &mut input, Some((&batch, &origin)), out)?;
        // Without purging, each generation's result includes the ones before.
        let mut results: Vec<Vec<u8>> = (0..generations.len()).map(|g| accumulators.get(g).to_vec()).collect();
        if !purge {
            let mut chain: HashMap<(Vec<u8>, Window), usize> = HashMap::new();
            for g in 0..generations.len() {
                let probe = (generations[g].key.clone(), generations[g].window);
                if let Some(&previous) = chain.get(&probe) {
                    let (mut a, mut b) = (Accumulators::default(), Accumulators::default());
                    a.push(&results[previous]);
                    b.push(&results[g]);
                    let merged = self.instance.aggregate_merge(a, b)?;
                    results[g] = merged.get(0).to_vec();
                }
                chain.insert(probe, g);
            }
        }
        let mut fired = Vec::new();
        let mut last: HashMap<(Vec<u8>, Window), (usize, u64)> = HashMap::new();
        for (g, generation) in generations.iter().enumerate() {
            if generation.complete {
                fired.push((generation.key.clone(), generation.window, results[g].clone()));
            }
            last.insert(
                (generation.key.clone(), generation.window),
                (g, generation.carried + generation.records),
            );
        }
        for ((key, window), (g, total)) in last {
            self.backend.set_current_key(&key);
            let window_key = window.to_key();
            let keep = if purge { !generations[g].complete } else { true };
            if keep && !results[g].is_empty() {
                self.backend
                    .put(self.contents, &window_key, &results[g])
                    .map_err(|e| self.state_error(e))?;
            } else {
                self.backend
                    .delete(self.contents, &window_key)
                    .map_err(|e| self.state_error(e))?;
            }
            let remaining = if purge { total % count } else { total };
            self.backend
                .put(self.counts, &window_key, &remaining.to_le_bytes())
                .map_err(|e| self.state_error(e))?;
            if window != Window::GLOBAL {
                let cleanup = window.max_timestamp().saturating_add(self.config.allowed_lateness_ms);
                self.timers.register(TimeDomain::EventTime, &key, cleanup);
            }
        }
        self.fire(fired, out)?;
        self.side_output_late(late, out)
    }
}

impl Operator for WindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
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
        self.watermark = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        if self.triggered() {
            return self.on_watermark_triggered(watermark, out);
        }
        self.watermark = watermark;
        // With a watermark after every batch, most advance past no timer:
        // the accumulators stay in the write-back cache until one is due.
        if self.timers.next_event_time().is_none_or(|due| due > watermark) {
            return Ok(());
        }
        let lateness = self.config.allowed_lateness_ms;
        self.cache
            .flush(self.backend.as_mut())
            .map_err(|e| self.state_error(e))?;
        loop {
            let due = self.timers.take_due(TimeDomain::EventTime, watermark, self.timer_batch);
            if due.is_empty() {
                return Ok(());
            }
            let mut fired = Vec::new();
            for i in 0..due.len() {
                let key = &due.keys[crate::record::batch::span(&due.key_ends, i)];
                let time = due.timestamps[i];
                self.backend.set_current_key(key);
                for (user_key, accumulator) in self.backend.entries(self.contents).map_err(|e| self.state_error(e))? {
                    let Some(window) = Window::from_key(&user_key) else {
                        continue;
                    };
                    if window.max_timestamp() == time && self.config.trigger == Trigger::EventTime {
                        fired.push((key.to_vec(), window, accumulator));
                    }
                    if window.max_timestamp().saturating_add(lateness) == time {
                        self.cache
                            .remove(self.backend.as_mut(), key, &user_key)
                            .map_err(|e| self.state_error(e))?;
                        self.backend.set_current_key(key);
                        self.backend
                            .delete(self.counts, &user_key)
                            .map_err(|e| self.state_error(e))?;
                    }
                }
            }
            self.fire(fired, out)?;
        }
    }

    fn next_processing_time(&self) -> Option<i64> {
        // A processing-time timer fires once the clock has passed it.
        self.timers.next_processing_time().map(|time| time.saturating_add(1))
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<(), TaskError> {
        self.fire_processing_time(now, out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        self.cache
            .flush(self.backend.as_mut())
            .map_err(|e| self.state_error(e))?;
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
