//! Windows that hand whole windows to Wasm: process-window functions
//! (Flink's `ProcessWindowFunction`), an aggregate or reduce followed by a
//! process-window function (`aggregate(aggFn, processWindowFn)`), and
//! evictors (Flink's `EvictingWindowOperator`).
//!
//! What a window keeps in keyed state ([`store`]) depends on its functions:
//! - its elements ([`elements`] encoding, appended in one chunk per batch),
//!   when the function is a process-window function or the window has an
//!   evictor or a per-element trigger (even for an aggregate: at firing, the
//!   remaining elements are folded into a fresh accumulator, as in Flink);
//! - otherwise (aggregate + `process`, no evictor) only the accumulator, and
//!   the aggregate's result is the single element the process-window
//!   function sees.
//!
//! Assignment, merging (sessions: element lists concatenate, accumulators
//! merge through the guest), the event-time trigger, allowed lateness
//! (a late record within it fires the window again with all its elements)
//! and the late side output follow the incremental window operator
//! ([`super::window`]). All windows that fire together go to the guest in
//! one call per function.
//!
//! At firing: evict-before, the function, evict-after; the buffer then keeps
//! what remains (the elements survive evictions for the next firing within
//! the allowed lateness).
//!
//! With a Wasm trigger ([`triggered`]), windows buffer their elements (even
//! for an aggregate) and fire, purge or both when the trigger says so; the
//! trigger's state and timers live in a map state `window-trigger`.

mod elements;
mod evict;
mod store;
mod trigger_state;
mod triggered;

use std::collections::HashMap;
use std::sync::Arc;

use super::{KeyedView, Operator, OperatorSnapshot, route_call_output};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::operators::window_config::{Trigger, WindowConfig};
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::TimerService;
use crate::state::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, StateKind};
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::time::window_set::WindowSet;
use crate::time::windows::Window;
use crate::wasm::FunctionKind;
use crate::wasm::instance::Accumulators;
use crate::wasm::instance::{EvictorUdf, ProcessWindowUdf, TriggerUdf, WindowAggregateUdf};

/// The name of the state that holds each window's accumulator, or the
/// number of chunks of its elements.
pub const BUFFER_STATE: &str = "window-buffer";
/// The name of the state that holds the chunks of each window's elements.
pub const CHUNK_STATE: &str = "window-chunks";
/// The name of the state that holds each window's Wasm trigger state.
pub const TRIGGER_STATE: &str = "window-trigger";

/// Whether a window operator whose function is of `kind` runs here (rather
/// than in the incremental [`super::window::WindowOperator`]).
pub fn runs_buffered(kind: FunctionKind, config: &WindowConfig) -> bool {
    kind == FunctionKind::ProcessWindow || !config.functions.is_empty()
}

/// What a window runs when it fires.
pub enum WindowFunction {
    /// A process-window function over all the window's elements.
    Process(ProcessWindowUdf),
    /// A window aggregate (or reduce), and the process-window function that
    /// gets its result, if any.
    Aggregate {
        /// The aggregate.
        aggregate: WindowAggregateUdf,
        /// The process-window function.
        process: Option<ProcessWindowUdf>,
    },
}

/// An evictor, ready to run.
pub enum Evictor {
    /// Keep the last `count` elements.
    Count {
        /// Elements kept.
        count: u64,
        /// After the function.
        after: bool,
    },
    /// Keep the elements newer than the newest minus `size_ms`.
    Time {
        /// Span kept, ms.
        size_ms: i64,
        /// After the function.
        after: bool,
    },
    /// A window-evictor function, called before and after.
    Wasm(EvictorUdf),
}

/// Everything the executor builds for a buffered window operator.
pub struct BufferedWindowParts {
    /// The operator's uid.
    pub uid: String,
    /// The module, for dead letters.
    pub module: String,
    /// The vertex's metrics.
    pub metrics: Arc<VertexMetrics>,
    /// The keyed state backend (restored already).
    pub backend: Box<dyn KeyedStateBackend>,
    /// The timers (restored already).
    pub timers: TimerService,
    /// Windows and trigger.
    pub config: WindowConfig,
    /// The key groups of the subtask.
    pub key_groups: KeyGroupRange,
    /// Most timers fired in one go.
    pub timer_batch: usize,
    /// The window function.
    pub function: WindowFunction,
    /// The evictor.
    pub evictor: Option<Evictor>,
    /// The Wasm trigger (else the event-time trigger).
    pub trigger: Option<TriggerUdf>,
}

/// A keyed window operator that buffers whole windows.
pub struct BufferedWindowOperator {
    parts: BufferedWindowParts,
    buffer: StateId,
    store: store::Store,
    trigger_state: StateId,
    /// Windows fire by a per-element trigger (Wasm or count), not by the
    /// event-time trigger; evictors then run as the trigger fires.
    triggered: bool,
    /// Windows keep an accumulator, not their elements.
    accumulating: bool,
    watermark: EventTime,
}

/// A window a batch adds records to.
struct Target {
    key: Vec<u8>,
    window: Window,
    /// With `whole`, the window's contents (merged, for sessions); else the
    /// encoded elements the batch appends to it.
    contents: Vec<u8>,
    /// `contents` is the window's whole contents.
    whole: bool,
    /// The records of the batch it gets.
    records: Vec<usize>,
    /// Windows in state merged into it.
    replaced: Vec<Window>,
}

/// A window of a key's merge: (window, its contents in state, or the
/// record of the batch that opens it).
type Member = (Window, Option<Vec<u8>>, Option<usize>);

/// A window that fires.
struct Fired {
    key: Vec<u8>,
    window: Window,
    contents: Vec<u8>,
}

impl BufferedWindowOperator {
    /// A buffered window operator over `parts`.
    pub fn new(mut parts: BufferedWindowParts) -> Result<Self, TaskError> {
        let descriptor = StateDescriptor {
            name: BUFFER_STATE.into(),
            kind: StateKind::Map,
            ttl: None,
        };
        let state_error = |source| TaskError::State {
            operator: parts.uid.clone(),
            source,
        };
        let buffer = parts.backend.register(&descriptor).map_err(state_error)?;
        let chunk_descriptor = StateDescriptor {
            name: CHUNK_STATE.into(),
            kind: StateKind::Map,
            ttl: None,
        };
        let chunks = parts.backend.register(&chunk_descriptor).map_err(state_error)?;
        let trigger_descriptor = StateDescriptor {
            name: TRIGGER_STATE.into(),
            kind: StateKind::Map,
            ttl: None,
        };
        let trigger_state = parts.backend.register(&trigger_descriptor).map_err(state_error)?;
        let triggered = parts.trigger.is_some() || matches!(parts.config.trigger, Trigger::Count { .. });
        // A custom or count trigger, or an evictor, needs the elements.
        let accumulating =
            matches!(parts.function, WindowFunction::Aggregate { .. }) && parts.evictor.is_none() && !triggered;
        Ok(Self {
            parts,
            buffer,
            store: store::Store {
                buffer,
                chunks,
                accumulating,
            },
            trigger_state,
            triggered,
            accumulating,
            watermark: EventTime::MIN,
        })
    }

    fn state_error(&self, source: crate::state::StateError) -> TaskError {
        TaskError::State {
            operator: self.parts.uid.clone(),
            source,
        }
    }

    /// A window is late once the watermark has passed its end plus lateness.
    fn is_late(&self, window: Window) -> bool {
        window
            .max_timestamp()
            .saturating_add(self.parts.config.allowed_lateness_ms)
            <= self.watermark
    }

    /// The windows of non-merging assigners the records of `batch` go to.
    fn targets(&mut self, batch: &RecordBatch, late: &mut RecordBatch) -> Result<Vec<Target>, TaskError> {
        let assigner = self.parts.config.assigner;
        let mut index: HashMap<(&[u8], Window), usize> = HashMap::new();
        let mut targets: Vec<Target> = Vec::new();
        for (i, record) in batch.iter().enumerate() {
            let key = record.key.unwrap_or_default();
            let mut placed = false;
            assigner.assign(record.timestamp, |window| {
                if self.is_late(window) {
                    return;
                }
                placed = true;
                let t = *index.entry((key, window)).or_insert_with(|| {
                    targets.push(Target {
                        key: key.to_vec(),
                        window,
                        contents: Vec::new(),
                        whole: false,
                        records: Vec::new(),
                        replaced: Vec::new(),
                    });
                    targets.len() - 1
                });
                targets[t].records.push(i);
            });
            if !placed {
                late.push_record(record);
            }
        }
        // Accumulators are folded whole; elements are appended.
        if self.accumulating {
            for target in &mut targets {
                self.parts.backend.set_current_key(&target.key);
                target.contents = self.load(target.window)?;
                target.whole = true;
            }
        }
        Ok(targets)
    }

    /// Session windows: the windows of the batch's records and the windows
    /// in state that overlap or touch merge, as Flink's merging assigners do.
    /// A record whose session would be late and merges with nothing in
    /// state is late.
    fn merged_targets(&mut self, batch: &RecordBatch, late: &mut RecordBatch) -> Result<Vec<Target>, TaskError> {
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
        let mut targets = Vec::new();
        // (target, the contents of the stored windows it merges)
        let mut merges: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        for (key, records) in keys {
            self.parts.backend.set_current_key(key);
            let mut items: Vec<Member> = Vec::new();
            for (user_key, contents) in self
                .parts
                .backend
                .entries(self.buffer)
                .map_err(|e| self.state_error(e))?
            {
                if let Some(window) = Window::from_key(&user_key) {
                    items.push((window, Some(contents), None));
                }
            }
            if self.triggered {
                // A window its trigger purged still exists (empty) while
                // it has trigger state.
                for (user_key, _) in self
                    .parts
                    .backend
                    .entries(self.trigger_state)
                    .map_err(|e| self.state_error(e))?
                {
                    if let Some(window) = Window::from_key(&user_key)
                        && !items.iter().any(|(w, _, _)| *w == window)
                    {
                        items.push((window, Some(Vec::new()), None));
                    }
                }
            }
            for &i in &records {
                self.parts
                    .config
                    .assigner
                    .assign(batch.timestamps[i], |window| items.push((window, None, Some(i))));
            }
            // Stored windows first on equal windows, so their elements come
            // before the batch's.
            items.sort_by_key(|(window, contents, _)| (window.start, window.end, contents.is_none()));
            let mut groups: Vec<(Window, Vec<Member>)> = Vec::new();
            for item in items {
                match groups.last_mut() {
                    Some((window, members)) if window.intersects(item.0) => {
                        *window = window.cover(item.0);
                        members.push(item);
                    }
                    _ => groups.push((item.0, vec![item])),
                }
            }
            for (window, members) in groups {
                let mut target = Target {
                    key: key.to_vec(),
                    window,
                    contents: Vec::new(),
                    whole: self.accumulating,
                    records: Vec::new(),
                    replaced: Vec::new(),
                };
                let mut stored = Vec::new();
                for (member, contents, record) in members {
                    if let Some(contents) = contents {
                        target.replaced.push(member);
                        stored.push(contents);
                    }
                    target.records.extend(record);
                }
                if target.records.is_empty() {
                    continue; // a stored window the batch does not touch
                }
                if stored.is_empty() && self.is_late(window) {
                    for i in target.records {
                        late.push_record(batch.get(i));
                    }
                    continue;
                }
                if target.replaced == [window] {
                    // The batch only adds to a stored window.
                    target.replaced.clear();
                    if self.accumulating {
                        target.contents = stored.pop().unwrap_or_default();
                    }
                } else if !stored.is_empty() {
                    if !self.accumulating {
                        stored.clear();
                        for old in target.replaced.clone() {
                            stored.push(self.load(old)?);
                        }
                    }
                    target.whole = true;
                    merges.push((targets.len(), stored));
                }
                targets.push(target);
            }
        }
        let (slots, lists): (Vec<usize>, Vec<Vec<Vec<u8>>>) = merges.into_iter().unzip();
        let merged = self.merge_contents(lists)?;
        for (t, contents) in slots.into_iter().zip(merged) {
            targets[t].contents = contents;
        }
        Ok(targets)
    }

    /// Merges the contents of windows: element lists concatenate;
    /// accumulators merge pairwise through the guest, one call per round.
    fn merge_contents(&mut self, lists: Vec<Vec<Vec<u8>>>) -> Result<Vec<Vec<u8>>, TaskError> {
        if !self.accumulating {
            return Ok(lists.into_iter().map(|list| list.concat()).collect());
        }
        let WindowFunction::Aggregate { aggregate, .. } = &mut self.parts.function else {
            return Ok(lists.into_iter().map(|list| list.concat()).collect());
        };
        let mut merged: Vec<Vec<u8>> = lists.iter().map(|l| l.first().cloned().unwrap_or_default()).collect();
        let mut next = vec![1usize; lists.len()];
        loop {
            let pending: Vec<usize> = (0..lists.len()).filter(|&t| next[t] < lists[t].len()).collect();
            if pending.is_empty() {
                return Ok(merged);
            }
            let (mut a, mut b) = (Accumulators::default(), Accumulators::default());
            for &t in &pending {
                a.push(&merged[t]);
                b.push(&lists[t][next[t]]);
                next[t] += 1;
            }
            let result = aggregate.aggregate_merge(a, b)?;
            for (i, &t) in pending.iter().enumerate() {
                merged[t] = result.get(i).to_vec();
            }
        }
    }

    /// Adds the records of each target to its contents: appended to its
    /// elements, or folded into its accumulator (one guest call; rejected
    /// records go to the dead letters).
    fn fold(&mut self, targets: &mut [Target], batch: &RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        if !self.accumulating {
            for target in targets.iter_mut() {
                for &i in &target.records {
                    elements::append(&mut target.contents, batch.payload(i), batch.timestamps[i]);
                }
            }
            return Ok(());
        }
        let WindowFunction::Aggregate { aggregate, .. } = &mut self.parts.function else {
            return Ok(());
        };
        let mut accumulators = Accumulators::default();
        let mut slots = Vec::new();
        let mut origin = Vec::new();
        let mut input = RecordBatch::with_capacity(batch.len(), batch.payload_bytes());
        for (t, target) in targets.iter().enumerate() {
            accumulators.push(&target.contents);
            for &i in &target.records {
                slots.push(t as u32);
                origin.push(i);
                input.push(batch.payload(i), batch.timestamps[i]);
            }
        }
        if input.is_empty() {
            return Ok(());
        }
        let (accumulators, errors) = aggregate.aggregate_add(accumulators, slots, &mut input)?;
        for (index, reason) in &errors {
            if let Some(&i) = origin.get(*index as usize) {
                out.dead_letters()
                    .write(&self.parts.uid, &self.parts.module, batch.get(i), reason)?;
            }
        }
        for (t, target) in targets.iter_mut().enumerate() {
            target.contents = accumulators.get(t).to_vec();
        }
        Ok(())
    }

    /// Runs the fired windows through evict-before, the function and
    /// evict-after, and keeps what the evictors leave.
    fn fire(&mut self, fired: Vec<Fired>, out: &mut Output) -> Result<(), TaskError> {
        if fired.is_empty() {
            return Ok(());
        }
        let watermark = self.watermark;
        let mut set = WindowSet::default();
        if self.accumulating {
            let mut accumulators = Accumulators::default();
            for f in &fired {
                accumulators.push(&f.contents);
                set.begin(&f.key, f.window);
            }
            return self.results(accumulators, set, out);
        }
        for f in &fired {
            set.begin(&f.key, f.window);
            for (timestamp, payload) in elements::iter(&f.contents) {
                set.push(payload, timestamp);
            }
        }
        // Triggered windows were evicted as they fired.
        if !self.triggered {
            self.evict(&mut set, true)?;
        }
        match &mut self.parts.function {
            WindowFunction::Process(process) => {
                let output = process.process_windows(&mut set, watermark)?;
                route_call_output(output, &set.elements, &self.parts.uid, &self.parts.module, out)?;
            }
            WindowFunction::Aggregate { aggregate, .. } => {
                let mut accumulators = Accumulators::default();
                let mut slots = Vec::with_capacity(set.elements.len());
                for w in 0..set.len() {
                    accumulators.push(&[]);
                    slots.extend(set.range(w).map(|_| w as u32));
                }
                let mut input = set.elements.clone();
                let accumulators = if input.is_empty() {
                    accumulators
                } else {
                    let (accumulators, errors) = aggregate.aggregate_add(accumulators, slots, &mut input)?;
                    for (index, reason) in &errors {
                        let index = *index as usize;
                        if index < input.len() {
                            out.dead_letters()
                                .write(&self.parts.uid, &self.parts.module, input.get(index), reason)?;
                        }
                    }
                    accumulators
                };
                let windows_only = WindowSet {
                    keys: set.keys.clone(),
                    key_ends: set.key_ends.clone(),
                    windows: set.windows.clone(),
                    ..WindowSet::default()
                };
                self.results(accumulators, windows_only, out)?;
            }
        }
        if self.triggered || self.parts.evictor.is_none() {
            return Ok(());
        }
        self.evict(&mut set, false)?;
        // The buffer keeps what the evictors left.
        for (w, f) in fired.iter().enumerate() {
            if self.is_late(f.window) {
                continue; // cleaned up: its state is gone
            }
            let mut contents = Vec::new();
            for i in set.range(w) {
                elements::append(&mut contents, set.elements.payload(i), set.elements.timestamps[i]);
            }
            self.parts.backend.set_current_key(&f.key);
            self.replace(f.window, &contents)?;
        }
        Ok(())
    }

    /// Emits the aggregate's results for the windows of `set` (which holds
    /// no elements), through the process-window function if there is one.
    fn results(&mut self, accumulators: Accumulators, mut set: WindowSet, out: &mut Output) -> Result<(), TaskError> {
        let WindowFunction::Aggregate { aggregate, process } = &mut self.parts.function else {
            return Ok(());
        };
        let results =
            aggregate.aggregate_results(accumulators, (set.keys.clone(), set.key_ends.clone()), &set.windows)?;
        let Some(process) = process else {
            return out.emit(results);
        };
        // The result of window `i` is its single element.
        set.window_ends = (1..=results.len()).map(|end| end as u32).collect();
        set.elements = results;
        let output = process.process_windows(&mut set, self.watermark)?;
        route_call_output(output, &set.elements, &self.parts.uid, &self.parts.module, out)
    }

    /// Runs the evictor's `before` (or after) pass over `set`.
    fn evict(&mut self, set: &mut WindowSet, before: bool) -> Result<(), TaskError> {
        let evict = match &mut self.parts.evictor {
            None => return Ok(()),
            Some(Evictor::Count { count, after }) if *after != before => evict::by_count(set, *count),
            Some(Evictor::Time { size_ms, after }) if *after != before => evict::by_time(set, *size_ms),
            Some(Evictor::Count { .. } | Evictor::Time { .. }) => return Ok(()),
            Some(Evictor::Wasm(instance)) => {
                let mut evict = vec![false; set.elements.len()];
                for index in instance.evict(set, before, self.watermark)? {
                    if let Some(flag) = evict.get_mut(index as usize) {
                        *flag = true;
                    }
                }
                evict
            }
        };
        if evict.contains(&true) {
            set.retain(|i| !evict[i]);
        }
        Ok(())
    }

    fn side_output_late(&mut self, late: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        if late.is_empty() {
            return Ok(());
        }
        self.parts.metrics.add_late(late.len() as u64);
        match self.parts.config.late_output.clone() {
            Some(tag) => out.emit_side(&tag, late),
            None => Ok(()),
        }
    }
}

impl Operator for BufferedWindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.parts.metrics.add_in(batch.len() as u64);
        if self.triggered {
            return self.process_triggered(batch, out);
        }
        let mut late = RecordBatch::default();
        let mut targets = if self.parts.config.assigner.is_merging() {
            self.merged_targets(&batch, &mut late)?
        } else {
            self.targets(&batch, &mut late)?
        };
        self.fold(&mut targets, &batch, out)?;
        let lateness = self.parts.config.allowed_lateness_ms;
        let mut refire = Vec::new();
        for target in targets {
            let key = &target.key;
            self.parts.backend.set_current_key(key);
            for old in &target.replaced {
                self.remove(*old)?;
                self.parts
                    .timers
                    .delete(TimeDomain::EventTime, key, old.max_timestamp());
                self.parts
                    .timers
                    .delete(TimeDomain::EventTime, key, old.max_timestamp().saturating_add(lateness));
            }
            if target.contents.is_empty() {
                continue; // every record of this window was rejected
            }
            let window = target.window;
            if target.whole {
                self.replace(window, &target.contents)?;
            } else {
                self.append(window, &target.contents)?;
            }
            if lateness > 0 && window != Window::GLOBAL {
                let cleanup = window.max_timestamp().saturating_add(lateness);
                self.parts.timers.register(TimeDomain::EventTime, key, cleanup);
            }
            if window.max_timestamp() <= self.watermark {
                // Late but within the allowed lateness: fire again now, with
                // all the window's elements (Flink's event-time trigger).
                let contents = if target.whole {
                    target.contents
                } else {
                    self.load(window)?
                };
                refire.push(Fired {
                    key: target.key,
                    window,
                    contents,
                });
            } else {
                self.parts
                    .timers
                    .register(TimeDomain::EventTime, key, window.max_timestamp());
            }
        }
        self.fire(refire, out)?;
        self.side_output_late(late, out)
    }

    fn restore_watermark(&mut self, watermark: EventTime) {
        self.watermark = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.watermark = watermark;
        if self.triggered {
            return self.fire_trigger_timers(TimeDomain::EventTime, watermark, out);
        }
        let lateness = self.parts.config.allowed_lateness_ms;
        loop {
            let due = self
                .parts
                .timers
                .take_due(TimeDomain::EventTime, watermark, self.parts.timer_batch);
            if due.is_empty() {
                return Ok(());
            }
            let mut fired = Vec::new();
            for i in 0..due.len() {
                let key = &due.keys[crate::record::batch::span(&due.key_ends, i)];
                let time = due.timestamps[i];
                self.parts.backend.set_current_key(key);
                for (user_key, value) in self
                    .parts
                    .backend
                    .entries(self.buffer)
                    .map_err(|e| self.state_error(e))?
                {
                    let Some(window) = Window::from_key(&user_key) else {
                        continue;
                    };
                    if window.max_timestamp() == time {
                        let contents = if self.accumulating { value } else { self.load(window)? };
                        fired.push(Fired {
                            key: key.to_vec(),
                            window,
                            contents,
                        });
                    }
                    if window.max_timestamp().saturating_add(lateness) == time {
                        self.remove(window)?;
                    }
                }
            }
            self.fire(fired, out)?;
        }
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.parts.trigger.as_ref()?;
        self.parts.timers.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<(), TaskError> {
        if self.parts.trigger.is_none() {
            return Ok(());
        }
        self.fire_trigger_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        let state = self.parts.backend.snapshot().map_err(|e| self.state_error(e))?;
        Ok(OperatorSnapshot {
            keyed: Some(KeyedView {
                state,
                timers: self.parts.timers.clone(),
                key_groups: self.parts.key_groups,
            }),
            transactions: Vec::new(),
        })
    }
}
