//! The manifest of a checkpoint: what every subtask contributed.
//!
//! Encoded with postcard behind a magic number and a format version, and
//! followed by the SHA-256 of everything before it, so that a truncated or
//! altered manifest is recognised.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::storage::{FileRef, StorageError};
use super::{CheckpointId, TaskId};

const MAGIC: &[u8; 8] = b"WEIRCHK1";

/// A complete checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpoint.
    pub id: CheckpointId,
    /// The job's name.
    pub job: String,
    /// When it was triggered (wall clock, ms).
    pub timestamp_ms: i64,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// Every subtask's state.
    pub tasks: Vec<TaskState>,
}

/// One subtask's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// The subtask.
    pub task: TaskId,
    /// Its vertex's parallelism at the time.
    pub parallelism: u32,
    /// A source's replay position.
    pub source_position: Option<u64>,
    /// A sink's pre-committed transactions, not yet known to be committed.
    pub transactions: Vec<Vec<u8>>,
    /// Keyed state and timers.
    pub keyed: Option<KeyedStateHandle>,
    /// The subtask had finished (all its input consumed) when this was taken.
    pub finished: bool,
    /// A rescalable source's splits with their positions (opaque to the
    /// runtime), which a restore at another parallelism redistributes.
    pub source_splits: Vec<Vec<u8>>,
}

/// Where a subtask's keyed state is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedStateHandle {
    /// Which backend wrote it.
    pub backend: String,
    /// The key groups it covers, `start..end`.
    pub key_groups: (u32, u32),
    /// A canonical snapshot (every entry and timer), if any.
    pub canonical: Option<FileRef>,
    /// Native files (RocksDB SSTs and metadata), for incremental snapshots.
    pub native: Vec<(String, FileRef)>,
}

impl Manifest {
    /// Every state file the checkpoint refers to.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> + '_ {
        self.tasks
            .iter()
            .filter_map(|t| t.keyed.as_ref())
            .flat_map(|k| k.canonical.iter().chain(k.native.iter().map(|(_, f)| f)))
    }

    /// The states of the subtasks of vertex `uid`.
    pub fn tasks_of<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = &'a TaskState> + 'a {
        self.tasks.iter().filter(move |t| t.task.uid == uid)
    }

    /// Encodes the manifest with its checksum.
    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let mut bytes = postcard::to_extend(self, MAGIC.to_vec())
            .map_err(|e| StorageError::Format(format!("cannot encode manifest: {e}")))?;
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        Ok(bytes)
    }

    /// Decodes and checks a manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("the manifest is not a Weir checkpoint manifest (bad magic or truncated)".into());
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("checksum mismatch in the manifest".into());
        }
        postcard::from_bytes(&body[MAGIC.len()..]).map_err(|e| format!("the manifest cannot be decoded: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            id: CheckpointId(3),
            job: "j".into(),
            timestamp_ms: 1,
            max_parallelism: 128,
            tasks: vec![TaskState {
                task: TaskId {
                    uid: "src".into(),
                    subtask: 0,
                },
                parallelism: 1,
                source_position: Some(42),
                transactions: vec![],
                keyed: None,
                finished: false,
                source_splits: vec![vec![1, 2]],
            }],
        }
    }

    #[test]
    fn manifests_round_trip_and_detect_corruption() {
        let bytes = manifest().encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), manifest());
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert_eq!(
            Manifest::decode(&flipped).unwrap_err(),
            "checksum mismatch in the manifest"
        );
        assert!(Manifest::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
