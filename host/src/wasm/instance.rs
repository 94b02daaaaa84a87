//! Typed handles on user functions: one instance of a module, running one
//! function for one subtask.
//!
//! Each WIT world has its own handle type ([`TransformUdf`],
//! [`KeyedProcessUdf`], [`WindowAggregateUdf`]…), all of them a [`Udf`] over
//! one shared `core::UdfCore` (the store, the limits, the position in the
//! input, the call wrapper) and the one export its kind runs. A handle is
//! obtained by kind (`TransformUdf::start(engine, &spec, None)`) and offers
//! only the calls of its kind, so calling a function through the wrong kind
//! does not compile.
//!
//! Every call moves a whole [`RecordBatch`] across the boundary: the batch's
//! columns are moved (not copied) into the WIT record, lowered into guest
//! memory in one copy per column, and moved back afterwards. Before each call
//! the store's epoch deadline is armed, so a guest that loops traps after its
//! time limit; its memory is capped by the store's limiter.
//!
//! Failures are [`UdfError`]s, the wasm layer's own error; the runtime wraps
//! them in its task error.
//!
//! - `core`: the shared core, [`Udf`] and how a handle starts;
//! - `one_input`: transforms, key selectors, watermark generators;
//! - `keyed`: keyed process and co-process functions, and their timers;
//! - `aggregate`: window aggregates;
//! - `two_input`: join functions and their batches of pairs;
//! - `window_calls`: process-window functions, evictors and triggers;
//! - `partitioner`: Kafka sink partitioners;
//! - `async_map`: async lookup functions (prepare, then complete).

use std::sync::Arc;

use wasmtime::Store;

use super::Limits;
use super::bindings::weir::udf::types as wit;
use super::engine::EPOCH_TICK;
use super::host_state::HostState;
use super::module::UdfModule;
use crate::record::batch::RecordBatch;

mod aggregate;
mod async_map;
mod core;
mod keyed;
mod one_input;
mod partitioner;
mod two_input;
mod window_calls;

pub use self::core::{Export, Udf};
pub use aggregate::WindowAggregateUdf;
pub use async_map::{AsyncMapUdf, LookupRequest, Prepared};
pub use keyed::{CoProcessUdf, KeyedProcessUdf, TimerExport};
pub use one_input::{KeySelectorUdf, TransformUdf, WatermarkGeneratorUdf};
pub use partitioner::PartitionerUdf;
pub use two_input::{JoinPairs, JoinUdf};
pub use window_calls::{
    EvictorUdf, ProcessWindowUdf, TimerChange, TriggerAction, TriggerDecisions, TriggerUdf, TriggerWindows,
};

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
    /// Told the duration of every call (the subtask's metrics record it).
    pub on_call: Option<CallObserver>,
}

/// Told how long each call into the guest took.
#[derive(Clone)]
pub struct CallObserver(pub Arc<dyn Fn(std::time::Duration) + Send + Sync>);

impl std::fmt::Debug for CallObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallObserver")
    }
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

/// What a call tells the guest about time.
fn batch_context(watermark: i64, processing_time: i64) -> wit::BatchContext {
    wit::BatchContext {
        watermark,
        processing_time,
    }
}
