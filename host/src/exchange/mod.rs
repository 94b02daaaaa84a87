//! What a subtask emits and how it fails: the messages on channels
//! ([`message`]), an output partitioned over the consumers' subtasks
//! ([`output`]), the dead-letter file ([`dead_letter`]) and [`TaskError`].
//! Operators and connectors work against these; the runtime wires them
//! into threads and channels.

pub(crate) mod dead_letter;
pub(crate) mod message;
pub(crate) mod output;

pub(crate) use message::Message;

use crate::connectors::ConnectorError;
use crate::state::restore::RestoreError;
use crate::storage::files::StorageError;
use crate::wasm::UdfError;

/// Why a subtask stopped with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
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
    /// The operator's state could not be restored from a checkpoint or
    /// savepoint (missing, unreadable or not fitting the job).
    #[error("operator `{operator}` cannot restore its state: {source}")]
    StateRestore {
        /// The operator's uid.
        operator: String,
        /// Why.
        source: RestoreError,
    },
    /// A bug in Weir: an operator was built or driven in a way the plan
    /// rules out. Neither the user's input nor their state is at fault.
    #[error("operator `{operator}`: internal error: {what}")]
    Internal {
        /// The operator's uid.
        operator: String,
        /// What should not have happened.
        what: &'static str,
    },
    /// A lookup of an async operator failed its last try, and the
    /// operator's `on_failure` is `fail`.
    #[error("operator `{operator}`: lookup `{lookup}` failed: {cause}")]
    Lookup {
        /// The operator's uid.
        operator: String,
        /// The lookup's name.
        lookup: String,
        /// The last try's error.
        cause: String,
    },
    /// Checkpoint storage failed (opening it, or reading a checkpoint).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The restore point does not fit the job, or the checkpoint
    /// coordinator gave up. The cause is a `checkpoint` error (a higher
    /// layer than this one, hence boxed: downcast to
    /// `checkpoint::resolve::ResolveError` or
    /// `checkpoint::coordinator::CheckpointError`).
    #[error(transparent)]
    Checkpoint(Box<dyn std::error::Error + Send + Sync>),
    /// A restore from a checkpoint was asked for, but the job keeps none.
    #[error("the job has no [checkpoint] table, so there is nothing to restore from")]
    NoCheckpointTable,
    /// Another subtask failed, and this one was stopped because of it.
    #[error("cancelled because another subtask failed")]
    Cancelled,
}

/// The uid in a connector's description (``source `lines` `` gives `lines`).
fn bare_uid(vertex: &str) -> &str {
    let mut quoted = vertex.split('`');
    match (quoted.next(), quoted.next(), quoted.next()) {
        (Some(_), Some(uid), Some(_)) => uid,
        _ => vertex,
    }
}

/// Who and what a [`TaskError`] blames, for the exception log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blame {
    /// The operator, source or sink uid, if one failed.
    pub operator: Option<String>,
    /// The module of the user function, if one failed.
    pub module: Option<String>,
    /// Where in the operator's input (a user function's failure).
    pub position: Option<String>,
    /// The root cause.
    pub cause: String,
}

impl TaskError {
    /// Whether restarting the job cannot help: the failure would only
    /// repeat (a fenced transactional producer).
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Self::Connector { source, .. } if source.is_permanent())
    }

    /// Who failed, in which module, where, and the root cause.
    pub(crate) fn blame(&self) -> Blame {
        let nobody = |cause: String| Blame {
            operator: None,
            module: None,
            position: None,
            cause,
        };
        let operator = |operator: &str, cause: String| Blame {
            operator: Some(operator.to_string()),
            ..nobody(cause)
        };
        match self {
            Self::Udf(UdfError::Start {
                operator,
                module,
                reason,
                ..
            }) => Blame {
                operator: Some(operator.clone()),
                module: Some(module.clone()),
                position: None,
                cause: reason.clone(),
            },
            Self::Udf(UdfError::Trap {
                operator,
                module,
                position,
                cause,
                ..
            }) => Blame {
                operator: Some(operator.clone()),
                module: Some(module.clone()),
                position: Some(position.to_string()),
                cause: cause.clone(),
            },
            Self::Connector { vertex, source } => operator(bare_uid(vertex), source.to_string()),
            Self::Restore { vertex, reason } => operator(bare_uid(vertex), reason.clone()),
            Self::State { operator: uid, source } => operator(uid, source.to_string()),
            Self::StateRestore { operator: uid, source } => operator(uid, source.to_string()),
            Self::Internal { operator: uid, what } => operator(uid, (*what).to_string()),
            Self::Lookup {
                operator: uid,
                lookup,
                cause,
            } => operator(uid, format!("lookup `{lookup}` failed: {cause}")),
            other => nobody(other.to_string()),
        }
    }
}
