//! One instance of a module, running one function for one subtask.
//!
//! Every call moves a whole [`RecordBatch`] across the boundary: the batch's
//! columns are moved (not copied) into the WIT record, lowered into guest
//! memory in one copy per column, and moved back afterwards. Before each call
//! the store's epoch deadline is armed, so a guest that loops traps after its
//! time limit; its memory is capped by the store's limiter.

use std::sync::Arc;

use wasmtime::Store;

use super::Limits;
use super::bindings::exports::weir::udf::{
    join, key_selector, keyed_co_process, keyed_process, library, process_window, transform, watermark_generator,
    window_aggregate, window_evictor, window_trigger,
};
use super::bindings::weir::udf::types as wit;
use super::engine::EPOCH_TICK;
use super::host_state::{HostState, KeyedScope};
use super::module::{FunctionKind, UdfModule};
use crate::record::batch::RecordBatch;
use crate::time::TimeDomain;

mod two_input;
mod window_calls;

pub use two_input::JoinPairs;
pub use window_calls::{TimerChange, TriggerAction, TriggerDecisions, TriggerWindows};

/// Limits used while a module describes itself.
pub const DESCRIBE_LIMITS: Limits = Limits {
    call_timeout_ms: 5_000,
    memory_bytes: 256 << 20,
};

/// What one call produced, in host types.
#[derive(Debug, Default)]
pub struct CallOutput {
    /// Records for the main output.
    pub main: RecordBatch,
    /// Records for named side outputs.
    pub side: Vec<(String, RecordBatch)>,
    /// Rejected input records: index in the input batch, and reason.
    pub errors: Vec<(u32, String)>,
}

/// Where in its input a failing call was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Records the subtask had processed before the failing batch.
    pub records_before: u64,
    /// Size of the failing batch.
    pub batch_len: usize,
    /// The record of the batch being processed, if the guest said.
    pub record_index: Option<u32>,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.record_index {
            Some(index) => write!(
                f,
                "at input record {} (record {index} of a batch of {})",
                self.records_before + u64::from(index) + 1,
                self.batch_len
            ),
            None => write!(
                f,
                "in input records {}..={}",
                self.records_before + 1,
                self.records_before + self.batch_len as u64
            ),
        }
    }
}

/// A user function failed: the task fails and restarts under its strategy.
#[derive(Debug, thiserror::Error)]
pub enum UdfError {
    /// The instance could not be created or refused to start.
    #[error("operator `{operator}` (module {module}, function `{function}`) failed to start: {reason}")]
    Start {
        /// The operator's uid.
        operator: String,
        /// The module.
        module: String,
        /// The function.
        function: String,
        /// Why.
        reason: String,
    },
    /// The guest trapped or was stopped.
    #[error("operator `{operator}` (module {module}, function `{function}`) failed {position}: {cause}")]
    Trap {
        /// The operator's uid.
        operator: String,
        /// The module.
        module: String,
        /// The function.
        function: String,
        /// Where in the input.
        position: Position,
        /// The panic message, time limit or trap.
        cause: String,
    },
}

enum Exports {
    Transform(transform::Guest),
    KeySelector(key_selector::Guest),
    KeyedProcess(keyed_process::Guest),
    WindowAggregate(window_aggregate::Guest),
    Join(join::Guest),
    KeyedCoProcess(keyed_co_process::Guest),
    WatermarkGenerator(watermark_generator::Guest),
    ProcessWindow(process_window::Guest),
    WindowEvictor(window_evictor::Guest),
    WindowTrigger(window_trigger::Guest),
}

/// Accumulators as a flat column (see [`crate::record::batch::span`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accumulators {
    /// All accumulators, back to back.
    pub data: Vec<u8>,
    /// End offset of each accumulator.
    pub ends: Vec<u32>,
}

impl Accumulators {
    /// Appends one accumulator (empty: not created yet).
    pub fn push(&mut self, accumulator: &[u8]) {
        self.data.extend_from_slice(accumulator);
        self.ends.push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
    }

    /// Accumulator `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[crate::record::batch::span(&self.ends, i)]
    }

    /// Number of accumulators.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A store and an instance running one function.
pub struct UdfInstance {
    store: Store<HostState>,
    exports: Exports,
    operator: String,
    module: Arc<UdfModule>,
    function: String,
    limits: Limits,
    records_before: u64,
}

/// Creates a store whose calls trap at their epoch deadline and whose memory
/// is capped by the state's limits. The deadline is armed for instantiation.
pub fn new_store(engine: &wasmtime::Engine, state: HostState, timeout_ms: u64) -> Store<HostState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    store.epoch_deadline_trap();
    arm_deadline(&mut store, timeout_ms);
    store
}

/// Arms the deadline of the next call.
pub fn arm_deadline(store: &mut Store<HostState>, timeout_ms: u64) {
    let tick = EPOCH_TICK.as_millis().max(1) as u64;
    store.set_epoch_deadline(timeout_ms.div_ceil(tick).max(1));
}

/// Who an instance is and what it runs.
#[derive(Debug, Clone)]
pub struct InstanceSpec<'a> {
    /// The operator's uid.
    pub operator: &'a str,
    /// The module.
    pub module: &'a Arc<UdfModule>,
    /// The function to run.
    pub function: &'a str,
    /// Its kind.
    pub kind: FunctionKind,
    /// Parameters from the job file.
    pub params: &'a [(String, String)],
    /// This subtask's index.
    pub subtask: u32,
    /// The operator's parallelism.
    pub parallelism: u32,
    /// The job's max parallelism.
    pub max_parallelism: u32,
    /// Limits of the instance.
    pub limits: Limits,
}

impl UdfInstance {
    /// Instantiates the module and starts the function. A keyed process
    /// function gets `keyed`: its state backend and timers, already restored.
    pub fn start(
        engine: &wasmtime::Engine,
        spec: &InstanceSpec<'_>,
        keyed: Option<KeyedScope>,
    ) -> Result<Self, UdfError> {
        let start_error = |reason: String| UdfError::Start {
            operator: spec.operator.to_string(),
            module: spec.module.display_name(),
            function: spec.function.to_string(),
            reason,
        };
        let mut state = HostState::for_subtask(spec.operator, spec.subtask, spec.limits);
        state.keyed = keyed;
        let mut store = new_store(engine, state, spec.limits.call_timeout_ms);
        let pre = &spec.module.pre;
        let instance = pre.instantiate(&mut store).map_err(|e| start_error(format!("{e:#}")))?;
        let library = library::GuestIndices::new(pre)
            .and_then(|i| i.load(&mut store, &instance))
            .map_err(|e| start_error(format!("{e:#}")))?;
        let exports = match spec.kind {
            FunctionKind::Map | FunctionKind::Filter | FunctionKind::FlatMap => transform::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::Transform),
            FunctionKind::KeySelector => key_selector::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::KeySelector),
            FunctionKind::KeyedProcess => keyed_process::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::KeyedProcess),
            FunctionKind::WindowAggregate => window_aggregate::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::WindowAggregate),
            FunctionKind::Join => join::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::Join),
            FunctionKind::KeyedCoProcess => keyed_co_process::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::KeyedCoProcess),
            FunctionKind::WatermarkGenerator => watermark_generator::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::WatermarkGenerator),
            FunctionKind::ProcessWindow => process_window::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::ProcessWindow),
            FunctionKind::WindowEvictor => window_evictor::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::WindowEvictor),
            FunctionKind::WindowTrigger => window_trigger::GuestIndices::new(pre)
                .and_then(|i| i.load(&mut store, &instance))
                .map(Exports::WindowTrigger),
        }
        .map_err(|e| start_error(format!("{e:#}")))?;
        let task = wit::TaskInfo {
            function: spec.function.to_string(),
            operator_uid: spec.operator.to_string(),
            subtask_index: spec.subtask,
            parallelism: spec.parallelism,
            max_parallelism: spec.max_parallelism,
            params: spec.params.to_vec(),
        };
        arm_deadline(&mut store, spec.limits.call_timeout_ms);
        let init = library.call_init(&mut store, &task);
        let this = Self {
            store,
            exports,
            operator: spec.operator.to_string(),
            module: Arc::clone(spec.module),
            function: spec.function.to_string(),
            limits: spec.limits,
            records_before: 0,
        };
        match init {
            Ok(Ok(())) => Ok(this),
            Ok(Err(reason)) => Err(start_error(reason)),
            Err(e) => Err(start_error(this.cause(&e))),
        }
    }

    /// The keyed scope (state and timers) of a keyed process function.
    pub fn keyed(&mut self) -> Option<&mut KeyedScope> {
        self.store.data_mut().keyed.as_mut()
    }

    /// The earliest registered processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.store.data().keyed.as_ref()?.timers.next_processing_time()
    }

    /// Runs a map, filter or flat-map function over `input`.
    pub fn transform(&mut self, input: &mut RecordBatch) -> Result<CallOutput, UdfError> {
        let Exports::Transform(guest) = &self.exports else {
            return Err(self.misuse("transform", input.len()));
        };
        let guest = guest.clone();
        let batch = take_batch(input);
        self.before_call();
        let result = guest.call_process(&mut self.store, &batch);
        restore_batch(input, batch);
        self.after_call(result, input.len()).map(into_output)
    }

    /// The watermarks a punctuated watermark generator declares after
    /// records of `input`: (record index, watermark), in record order.
    pub fn punctuations(&mut self, input: &mut RecordBatch) -> Result<Vec<(u32, i64)>, UdfError> {
        let Exports::WatermarkGenerator(guest) = &self.exports else {
            return Err(self.misuse("watermark-generator", input.len()));
        };
        let guest = guest.clone();
        let batch = take_batch(input);
        self.before_call();
        let result = guest.call_on_events(&mut self.store, &batch);
        restore_batch(input, batch);
        let punctuations = self.after_call(result, input.len())?;
        Ok(punctuations.into_iter().map(|p| (p.index, p.watermark)).collect())
    }

    /// Computes the key of every record of `input` into its key column.
    pub fn select_keys(&mut self, input: &mut RecordBatch) -> Result<Vec<(u32, String)>, UdfError> {
        let Exports::KeySelector(guest) = &self.exports else {
            return Err(self.misuse("key-selector", input.len()));
        };
        let guest = guest.clone();
        let batch = take_batch(input);
        self.before_call();
        let result = guest.call_select_keys(&mut self.store, &batch);
        restore_batch(input, batch);
        let output = self.after_call(result, input.len())?;
        input.keys = output.keys;
        input.key_ends = output.key_ends;
        Ok(output.errors.into_iter().map(|e| (e.index, e.reason)).collect())
    }

    /// Runs a keyed process function over the keyed records of `input`.
    pub fn process_keyed(&mut self, input: &mut RecordBatch, watermark: i64) -> Result<CallOutput, UdfError> {
        let Exports::KeyedProcess(guest) = &self.exports else {
            return Err(self.misuse("keyed-process", input.len()));
        };
        let guest = guest.clone();
        let now = crate::time::now_ms();
        if let Some(scope) = self.keyed() {
            scope.set_batch_keys(&input.keys, &input.key_ends);
            scope.now_ms = now;
        }
        let batch = wit::KeyedBatch {
            records: take_batch(input),
            keys: std::mem::take(&mut input.keys),
            key_ends: std::mem::take(&mut input.key_ends),
        };
        self.before_call();
        let context = wit::BatchContext {
            watermark,
            processing_time: now,
        };
        let result = guest.call_process(&mut self.store, context, &batch);
        input.keys = batch.keys;
        input.key_ends = batch.key_ends;
        restore_batch(input, batch.records);
        self.after_call(result, input.len()).map(into_output)
    }

    /// Fires the timers of `domain` due at `time`, batch by batch, until none
    /// is due (timers registered while firing fire too if they are due);
    /// `sink` takes each call's output (its error type is the caller's).
    pub fn fire_timers<E: From<UdfError>>(
        &mut self,
        domain: TimeDomain,
        time: i64,
        watermark: i64,
        max_batch: usize,
        mut sink: impl FnMut(CallOutput) -> Result<(), E>,
    ) -> Result<(), E> {
        let guest = match &self.exports {
            Exports::KeyedProcess(guest) => TimerGuest::Keyed(guest.clone()),
            Exports::KeyedCoProcess(guest) => TimerGuest::CoProcess(guest.clone()),
            _ => return Ok(()),
        };
        loop {
            let now = crate::time::now_ms();
            let Some(scope) = self.keyed() else {
                return Ok(());
            };
            let due = scope.timers.take_due(domain, time, max_batch);
            if due.is_empty() {
                return Ok(());
            }
            scope.set_batch_keys(&due.keys, &due.key_ends);
            scope.now_ms = now;
            let count = due.len();
            let timers = wit::TimerBatch {
                domain: match domain {
                    TimeDomain::EventTime => wit::TimeDomain::EventTime,
                    TimeDomain::ProcessingTime => wit::TimeDomain::ProcessingTime,
                },
                keys: due.keys,
                key_ends: due.key_ends,
                timestamps: due.timestamps,
            };
            self.before_call();
            let context = wit::BatchContext {
                watermark,
                processing_time: now,
            };
            let result = match &guest {
                TimerGuest::Keyed(guest) => guest.call_on_timers(&mut self.store, context, &timers),
                TimerGuest::CoProcess(guest) => guest.call_on_timers(&mut self.store, context, &timers),
            };
            let output = self.after_call(result, count)?;
            sink(into_output(output))?;
        }
    }

    /// Folds record `i` of `input` into accumulator `slots[i]`; returns the
    /// accumulators and the rejected records (index in `input`, reason).
    pub fn aggregate_add(
        &mut self,
        accumulators: Accumulators,
        slots: Vec<u32>,
        input: &mut RecordBatch,
    ) -> Result<(Accumulators, Vec<(u32, String)>), UdfError> {
        let Exports::WindowAggregate(guest) = &self.exports else {
            return Err(self.misuse("window-aggregate", input.len()));
        };
        let guest = guest.clone();
        let batch = take_batch(input);
        let state = wit::Accumulators {
            data: accumulators.data,
            ends: accumulators.ends,
        };
        self.before_call();
        let result = guest.call_add(&mut self.store, &state, &slots, &batch);
        restore_batch(input, batch);
        let output = self.after_call(result, input.len())?;
        Ok((
            Accumulators {
                data: output.accumulators.data,
                ends: output.accumulators.ends,
            },
            output.errors.into_iter().map(|e| (e.index, e.reason)).collect(),
        ))
    }

    /// Merges accumulators pairwise: `a[i]` with `b[i]` (merging windows).
    pub fn aggregate_merge(&mut self, a: Accumulators, b: Accumulators) -> Result<Accumulators, UdfError> {
        let Exports::WindowAggregate(guest) = &self.exports else {
            return Err(self.misuse("window-aggregate", a.len()));
        };
        let guest = guest.clone();
        let a = wit::Accumulators {
            data: a.data,
            ends: a.ends,
        };
        let b = wit::Accumulators {
            data: b.data,
            ends: b.ends,
        };
        self.before_call();
        let result = guest.call_merge(&mut self.store, &a, &b);
        let records_before = self.records_before;
        let merged = self.after_call(result, 0)?;
        self.records_before = records_before;
        Ok(Accumulators {
            data: merged.data,
            ends: merged.ends,
        })
    }

    /// One result record per accumulator, for `keys[i]` and `windows[i]`.
    pub fn aggregate_results(
        &mut self,
        accumulators: Accumulators,
        keys: (Vec<u8>, Vec<u32>),
        windows: &[crate::time::windows::Window],
    ) -> Result<RecordBatch, UdfError> {
        let Exports::WindowAggregate(guest) = &self.exports else {
            return Err(self.misuse("window-aggregate", windows.len()));
        };
        let guest = guest.clone();
        let state = wit::Accumulators {
            data: accumulators.data,
            ends: accumulators.ends,
        };
        let windows: Vec<wit::Window> = windows
            .iter()
            .map(|w| wit::Window {
                start: w.start,
                end: w.end,
            })
            .collect();
        self.before_call();
        let result = guest.call_results(&mut self.store, &state, &keys.0, &keys.1, &windows);
        let records_before = self.records_before;
        let batch = self.after_call(result, 0)?;
        self.records_before = records_before;
        Ok(into_batch(batch))
    }

    fn before_call(&mut self) {
        self.store.data_mut().panic = None;
        arm_deadline(&mut self.store, self.limits.call_timeout_ms);
    }

    fn after_call<T>(&mut self, result: wasmtime::Result<T>, batch_len: usize) -> Result<T, UdfError> {
        match result {
            Ok(value) => {
                self.records_before += batch_len as u64;
                Ok(value)
            }
            Err(error) => {
                let record_index = self.store.data().panic.as_ref().and_then(|p| p.record_index);
                let cause = self.cause(&error);
                Err(UdfError::Trap {
                    operator: self.operator.clone(),
                    module: self.module.display_name(),
                    function: self.function.clone(),
                    position: Position {
                        records_before: self.records_before,
                        batch_len,
                        record_index,
                    },
                    cause,
                })
            }
        }
    }

    /// Explains a failed call (see [`super::trap`]).
    fn cause(&self, error: &wasmtime::Error) -> String {
        super::trap::explain(error, &self.limits, self.store.data().panic.as_ref())
    }

    fn misuse(&self, interface: &str, batch_len: usize) -> UdfError {
        UdfError::Trap {
            operator: self.operator.clone(),
            module: self.module.display_name(),
            function: self.function.clone(),
            position: Position {
                records_before: self.records_before,
                batch_len,
                record_index: None,
            },
            cause: format!("internal error: the function was called through `{interface}`, which is not its kind"),
        }
    }
}

/// The export that handles timers, by kind.
enum TimerGuest {
    Keyed(keyed_process::Guest),
    CoProcess(keyed_co_process::Guest),
}

fn take_batch(input: &mut RecordBatch) -> wit::Batch {
    wit::Batch {
        data: std::mem::take(&mut input.data),
        ends: std::mem::take(&mut input.ends),
        timestamps: std::mem::take(&mut input.timestamps),
    }
}

fn restore_batch(input: &mut RecordBatch, batch: wit::Batch) {
    input.data = batch.data;
    input.ends = batch.ends;
    input.timestamps = batch.timestamps;
}

fn into_batch(batch: wit::Batch) -> RecordBatch {
    RecordBatch {
        data: batch.data,
        ends: batch.ends,
        timestamps: batch.timestamps,
        keys: Vec::new(),
        key_ends: Vec::new(),
    }
}

fn into_output(output: wit::Output) -> CallOutput {
    CallOutput {
        main: into_batch(output.main),
        side: output
            .side
            .into_iter()
            .map(|s| (s.tag, into_batch(s.records)))
            .collect(),
        errors: output.errors.into_iter().map(|e| (e.index, e.reason)).collect(),
    }
}
