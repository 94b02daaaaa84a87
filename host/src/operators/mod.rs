//! Operators: what a non-source subtask does with its input.
//!
//! Every operator implements [`Operator`]. The runtime (`runtime::task`)
//! owns the loop: it receives messages, tracks watermarks across input
//! channels and calls the hooks below; an operator only reacts. One operator
//! kind a file:
//!
//! - [`transform`]: map, filter and flat-map functions in Wasm.
//! - [`keyed_process`]: keyed process functions in Wasm, with state and timers.
//! - [`sink`]: hands records to a sink connector.
//! - [`window`]: keyed windows (event or processing time) with an incremental
//!   Wasm aggregate and the built-in triggers.
//! - [`two_phase_commit`]: hands records to a transactional sink, pre-commits
//!   at each barrier and commits when the checkpoint completes.
//! - [`window_join`], [`interval_join`], [`co_process`]: two-input operators
//!   over two keyed inputs (see [`Operator::process_input`]).
//! - [`async_io`]: async lookups (a Wasm function whose lookups run on a
//!   tokio runtime of the subtask's own; see its design notes).
//! - [`context`]: what every operator running a user function carries
//!   ([`OperatorContext`], [`KeyedContext`]) and [`Side`].
//!
//! State is declared by the operator and handled around it: the runtime
//! restores it before the first record and calls [`Operator::snapshot_state`]
//! when the barriers of a checkpoint are aligned.

pub(crate) mod async_io;
pub(crate) mod buffered_window;
pub(crate) mod co_process;
pub(crate) mod context;
pub(crate) mod interval_join;
pub(crate) mod join_state;
pub(crate) mod keyed_process;
pub(crate) mod sink;
pub(crate) mod transform;
pub(crate) mod two_phase_commit;
pub(crate) mod window;
pub(crate) mod window_config;
pub(crate) mod window_join;

pub(crate) use context::{KeyedContext, OperatorContext, Side};

use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::{EventTime, RecordBatch};
use crate::storage::CheckpointId;

/// A stream operator. Only [`Operator::process_batch`] is required.
pub(crate) trait Operator: Send {
    /// Called once on the subtask's thread before the first record.
    fn open(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    /// Handles a batch of records.
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError>;

    /// Handles a batch of records of input `side` of a two-input operator.
    /// One-input operators keep the default, [`Operator::process_batch`].
    fn process_input(&mut self, side: Side, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        let _ = side;
        self.process_batch(batch, out)
    }

    /// The operator's watermark advanced to `watermark` (the minimum over its
    /// inputs). The runtime forwards the watermark after this returns.
    fn on_watermark(&mut self, _watermark: EventTime, _out: &mut Output) -> Result<(), TaskError> {
        Ok(())
    }

    /// Whether the operator emits watermarks itself, in order with its
    /// records (from [`Operator::on_watermark`] or later), instead of the
    /// runtime forwarding each one after `on_watermark` returns.
    fn holds_watermarks(&self) -> bool {
        false
    }

    /// For an operator that holds watermarks: the last watermark it
    /// emitted. A checkpoint records it as the operator's event-time
    /// progress (not its input's, which records still in the operator are
    /// behind), so a restore tells consumers no more than they had heard.
    fn emitted_watermark(&self) -> Option<EventTime> {
        None
    }

    /// A channel that is ready when the operator has work that came from
    /// elsewhere (answers of async lookups): the runtime selects on it
    /// beside the inputs and then calls [`Operator::on_wakeup`].
    fn wakeup(&self) -> Option<&crossbeam_channel::Receiver<()>> {
        None
    }

    /// The [`Operator::wakeup`] channel was ready (its token is taken).
    fn on_wakeup(&mut self, _out: &mut Output) -> Result<(), TaskError> {
        Ok(())
    }

    /// Whether the operator takes input now; while not, the runtime reads
    /// neither records nor barriers (backpressure) and waits for a wakeup.
    fn accepts_input(&self) -> bool {
        true
    }

    /// The operator starts from a checkpoint whose watermark was
    /// `watermark`: records at or behind it are late, as they were before.
    /// Nothing fires: a timer registered for a time the watermark had
    /// already passed fires at the next advance, as it would have.
    fn restore_watermark(&mut self, _watermark: EventTime) {}

    /// The earliest wall-clock time (ms) at which the operator wants
    /// [`Operator::on_processing_time`] called.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }

    /// The wall clock reached `now` (ms).
    fn on_processing_time(&mut self, _now: i64, _out: &mut Output) -> Result<(), TaskError> {
        Ok(())
    }

    /// Takes a consistent view of the operator's state for checkpoint `id`
    /// (the barrier is aligned). Must be cheap: writing it out happens
    /// elsewhere.
    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        Ok(OperatorSnapshot::default())
    }

    /// Checkpoint `id` is complete (every subtask's state is durable).
    fn notify_checkpoint_complete(&mut self, _id: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }

    /// Checkpoint `id` was abandoned.
    fn notify_checkpoint_aborted(&mut self, _id: CheckpointId) -> Result<(), TaskError> {
        Ok(())
    }

    /// The latest checkpoint whose completion the operator still waits for
    /// (a transactional sink's last pre-commit), if any.
    fn pending_commit(&self) -> Option<CheckpointId> {
        None
    }

    /// The job stops with a savepoint, which the operator's last snapshot
    /// is part of: what it still holds is in that savepoint, and is not to
    /// be emitted now (called before [`Operator::close`]).
    fn on_stop(&mut self) {}

    /// Every input has ended (after the final watermark); flush and finish.
    fn close(&mut self, _out: &mut Output) -> Result<(), TaskError> {
        Ok(())
    }
}

/// An operator's contribution to a checkpoint.
#[derive(Default)]
pub(crate) struct OperatorSnapshot {
    /// A view of keyed state and timers, written out off the record path.
    pub keyed: Option<KeyedView>,
    /// Pre-committed transactions of a sink, encoded.
    pub transactions: Vec<Vec<u8>>,
}

/// A consistent view of a keyed operator's state.
pub(crate) struct KeyedView {
    /// The state backend's view.
    pub state: Box<dyn crate::state::StateView>,
    /// The timers at the barrier.
    pub timers: crate::state::TimerService,
    /// The key groups the subtask owns.
    pub key_groups: crate::state::KeyGroupRange,
}
