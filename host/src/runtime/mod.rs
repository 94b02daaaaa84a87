//! The dataflow runtime: how subtasks run and how records move between them.
//!
//! Every vertex of the plan runs as `parallelism` subtasks, each on its own
//! OS thread (a Wasm call is synchronous CPU work and must not block an async
//! executor). Subtasks exchange [`Message`]s over bounded channels, one per
//! (producer subtask, consumer subtask) pair: a full channel blocks its
//! producer, so a slow consumer slows its producers (backpressure) and memory
//! stays bounded by `channel_capacity × batch_size` per channel.
//!
//! - batches themselves live in [`crate::record`].
//! - [`message`]: what travels on a channel.
//! - [`output`]: partitioning a subtask's output over its consumers.
//! - [`dead_letter`]: where rejected records go.
//! - [`task`]: the loops of source, operator and sink subtasks.
//! - [`executor`]: wiring the plan into threads and channels, and running it.

pub mod control;
pub mod dead_letter;
pub mod executor;
pub mod message;
pub mod output;
pub mod task;

pub use message::Message;

use crate::connectors::ConnectorError;
use crate::wasm::UdfError;

/// Why a subtask stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A user function failed (trap, time or memory limit, refused to start).
    #[error(transparent)]
    Udf(#[from] UdfError),
    /// A connector failed.
    #[error("{vertex}: {source}")]
    Connector {
        /// The source or sink uid.
        vertex: String,
        /// The cause.
        source: ConnectorError,
    },
    /// The dead-letter file could not be written.
    #[error("cannot write the dead-letter file {path}: {source}")]
    DeadLetter {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A source could not be restored to its checkpointed position.
    #[error("source `{vertex}` cannot be restored: {reason}")]
    Restore {
        /// The source uid.
        vertex: String,
        /// Why.
        reason: String,
    },
    /// Keyed state failed.
    #[error("operator `{operator}`: {source}")]
    State {
        /// The operator's uid.
        operator: String,
        /// The cause.
        source: crate::state::StateError,
    },
    /// Restoring state from a checkpoint failed.
    #[error("operator `{operator}` cannot restore its state: {reason}")]
    StateRestore {
        /// The operator's uid.
        operator: String,
        /// Why.
        reason: String,
    },
    /// A checkpoint this subtask depends on was abandoned.
    #[error("{0}")]
    Checkpoint(String),
    /// Another subtask failed, and this one was stopped because of it.
    #[error("cancelled because another subtask failed")]
    Cancelled,
}
