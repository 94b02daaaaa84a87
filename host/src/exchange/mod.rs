//! What a subtask emits and how it fails: the messages on channels
//! ([`message`]), an output partitioned over the consumers' subtasks
//! ([`output`]), the dead-letter file ([`dead_letter`]) and [`TaskError`].
//! Operators and connectors work against these; the runtime wires them
//! into threads and channels.

pub mod dead_letter;
pub mod message;
pub mod output;

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
