//! Checkpoints: consistent snapshots of a running job, taken without
//! stopping it (asynchronous barrier snapshots, after Chandy and Lamport, as
//! in Flink).
//!
//! How a checkpoint is taken:
//! 1. The [`coordinator`] triggers checkpoint *n*: every source subtask
//!    records its replay position and emits a [`Barrier`](crate::storage::Barrier) into its outputs,
//!    between two batches.
//! 2. An operator subtask with several input channels *aligns*: once a
//!    channel has delivered barrier *n*, the subtask stops reading that
//!    channel until every other open channel has delivered it too, so its
//!    state reflects exactly the records before the barrier on every
//!    channel. (In at-least-once mode it keeps reading: no alignment.)
//! 3. The subtask then takes a consistent *view* of its state (a
//!    copy-on-write clone or a RocksDB checkpoint), forwards the barrier, and
//!    goes on with records; writing the view out happens on another thread.
//! 4. When every subtask has acknowledged, the coordinator writes the
//!    checkpoint's manifest ([`crate::storage::manifest`]) — the checkpoint is then
//!    complete — and notifies every subtask, which is when two-phase-commit
//!    sinks commit what they pre-committed at the barrier.
//!
//! Recovery restarts every subtask from the latest complete checkpoint:
//! sources seek back to their positions, keyed state is reloaded for each
//! subtask's key groups, and sinks commit the transactions the checkpoint
//! recorded and abort any others.

pub(crate) mod coordinator;
pub(crate) mod dump;
pub(crate) mod hot_swap;
pub(crate) mod resolve;
pub(crate) mod savepoint;
