//! The bottom layer's durable side: checkpoint storage in a local folder
//! ([`files`]) and the manifest that says what a checkpoint holds
//! ([`manifest`]), with the identifiers both use. Everything above — state
//! backends writing snapshots, the coordinator committing checkpoints,
//! savepoints and restores — builds on these.

pub mod files;
pub mod manifest;

use serde::{Deserialize, Serialize};

/// Identifies a checkpoint; increases by one with every trigger of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

impl std::fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one subtask of a job: vertex uid and subtask index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    /// The vertex's uid.
    pub uid: String,
    /// The subtask's index.
    pub subtask: u32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.uid, self.subtask)
    }
}

/// The marker that separates the records before a checkpoint from those after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint.
    pub id: CheckpointId,
    /// When it was triggered (wall clock, ms).
    pub timestamp_ms: i64,
}
