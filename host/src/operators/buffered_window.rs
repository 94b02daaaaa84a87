//! Windows that hand whole windows to Wasm: process-window functions
//! (Flink's `ProcessWindowFunction`), an aggregate or reduce followed by a
//! process-window function (`aggregate(aggFn, processWindowFn)`), and
//! evictors (Flink's `EvictingWindowOperator`).
//!
//! What a window keeps in keyed state (`store`) depends on its functions:
//! - its elements (`elements` encoding, appended in one chunk per batch),
//!   when the function is a process-window function or the window has an
//!   evictor or a per-element trigger (even for an aggregate: at firing, the
//!   remaining elements are folded into a fresh accumulator, as in Flink);
//! - otherwise (aggregate + `process`, no evictor) only the accumulator, and
//!   the aggregate's result is the single element the process-window
//!   function sees.
//!
//! Assignment, merging (`merging`: element lists concatenate,
//! accumulators merge through the guest), the event-time trigger, allowed lateness
//! (a late record within it fires the window again with all its elements)
//! and the late side output follow the incremental window operator
//! ([`super::window`]). All windows that fire together go to the guest in
//! one call per function.
//!
//! At firing: evict-before, the function, evict-after; the buffer then keeps
//! what remains (the elements survive evictions for the next firing within
//! the allowed lateness).
//!
//! With a Wasm trigger (`triggered`), windows buffer their elements (even
//! for an aggregate) and fire, purge or both when the trigger says so; the
//! trigger's state and timers live in a map state `window-trigger`.

mod elements;
mod evict;
mod merging;
mod store;
mod trigger_state;
mod triggered;

use std::collections::HashMap;

use super::{KeyedContext, Operator, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::operators::window_config::{Trigger, WindowConfig};
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::StateId;
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::time::window_set::WindowSet;
use crate::time::windows::Window;
use crate::wasm::instance::{Accumulators, EvictorUdf, ProcessWindowUdf, TriggerUdf, WindowAggregateUdf};

/// The name of the state that holds each window's accumulator, or the
/// number of chunks of its elements.
pub(crate) const BUFFER_STATE: &str = "window-buffer";
/// The name of the state that holds the chunks of each window's elements.
pub(crate) const CHUNK_STATE: &str = "window-chunks";
/// The name of the state that holds each window's Wasm trigger state.
pub(crate) const TRIGGER_STATE: &str = "window-trigger";

/// What a window runs when it fires.
pub(crate) enum WindowFunction {
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
pub(crate) enum Evictor {
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

/// The functions and settings the executor builds for a buffered window
/// operator (its state and timers come in its [`KeyedContext`]).
pub(crate) struct BufferedWindowParts {
    /// Windows and trigger.
    pub config: WindowConfig,
    /// The window function.
    pub function: WindowFunction,
    /// The evictor.
    pub evictor: Option<Evictor>,
    /// The Wasm trigger (else the event-time trigger).
    pub trigger: Option<TriggerUdf>,
}

/// A keyed window operator that buffers whole windows.
pub(crate) struct BufferedWindowOperator {
    context: KeyedContext,
    parts: BufferedWindowParts,
    buffer: StateId,
    store: store::Store,
    trigger_state: StateId,
    /// Windows fire by a per-element trigger (Wasm or count), not by the
    /// event-time trigger; evictors then run as the trigger fires.
    triggered: bool,
    /// Windows keep an accumulator, not their elements.
    accumulating: bool,
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

/// A window that fires.
struct Fired {
    key: Vec<u8>,
    window: Window,
    contents: Vec<u8>,
}

impl BufferedWindowOperator {
    /// A buffered window operator in `context` (restored already) running
    /// `parts`.
    pub(crate) fn new(mut context: KeyedContext, parts: BufferedWindowParts) -> Result<Self, TaskError> {
        let buffer = context.register(BUFFER_STATE)?;
        let chunks = context.register(CHUNK_STATE)?;
        let trigger_state = context.register(TRIGGER_STATE)?;
        let triggered = parts.trigger.is_some() || matches!(parts.config.trigger, Trigger::Count { .. });
        // A custom or count trigger, or an evictor, needs the elements.
        let accumulating =
            matches!(parts.function, WindowFunction::Aggregate { .. }) && parts.evictor.is_none() && !triggered;
        Ok(Self {
            context,
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
        })
    }

    /// A window is late once the watermark has passed its end plus lateness.
    fn is_late(&self, window: Window) -> bool {
        self.context.is_late(window, self.parts.config.allowed_lateness_ms)
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
                self.context.backend.set_current_key(&target.key);
                target.contents = self.load(target.window)?;
                target.whole = true;
            }
        }
        Ok(targets)
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
                self.context.base.dead_letter(out, batch.get(i), reason)?;
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
        let watermark = self.context.watermark;
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
                self.context.base.route(output, &set.elements, out)?;
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
                            self.context.base.dead_letter(out, input.get(index), reason)?;
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
            self.context.backend.set_current_key(&f.key);
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
        let output = process.process_windows(&mut set, self.context.watermark)?;
        self.context.base.route(output, &set.elements, out)
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
                for index in instance.evict(set, before, self.context.watermark)? {
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
}

impl Operator for BufferedWindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.context.base.metrics.add_in(batch.len(), batch.payload_bytes());
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
            self.context.backend.set_current_key(key);
            for old in &target.replaced {
                self.remove(*old)?;
                self.context
                    .timers
                    .delete(TimeDomain::EventTime, key, old.max_timestamp());
                self.context
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
                self.context.timers.register(TimeDomain::EventTime, key, cleanup);
            }
            if window.max_timestamp() <= self.context.watermark {
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
                self.context
                    .timers
                    .register(TimeDomain::EventTime, key, window.max_timestamp());
            }
        }
        self.fire(refire, out)?;
        self.context
            .emit_late(late, self.parts.config.late_output.as_deref(), out)
    }

    fn restore_watermark(&mut self, watermark: EventTime) {
        self.context.watermark = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.context.watermark = watermark;
        if self.triggered {
            return self.fire_trigger_timers(TimeDomain::EventTime, watermark, out);
        }
        let lateness = self.parts.config.allowed_lateness_ms;
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
                for (user_key, value) in self
                    .context
                    .backend
                    .entries(self.buffer)
                    .map_err(|e| self.context.state_error(e))?
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
        self.context.timers.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<(), TaskError> {
        if self.parts.trigger.is_none() {
            return Ok(());
        }
        self.fire_trigger_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        self.context.snapshot()
    }
}
