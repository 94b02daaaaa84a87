//! The manifest of a checkpoint: what every subtask contributed.
//!
//! Encoded with postcard behind a magic number and a format version, and
//! followed by the SHA-256 of everything before it, so that a truncated or
//! altered manifest is recognised.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{FileRef, IntegrityError, StorageError};
use super::{CheckpointId, TaskId};

// Version 2: watermarks and modules in every task state.
const MAGIC: &[u8; 8] = b"WEIRCHK2";

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
    /// The module every operator ran, with its state schemas and a copy of
    /// the module in the shared files: what a restore checks and, after
    /// `weir upgrade`, runs.
    pub modules: Vec<OperatorModule>,
}

/// A module, as checkpoints and savepoints record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleMeta {
    /// The module's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of the component file, hex.
    pub digest: String,
}

impl std::fmt::Display for ModuleMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// The module one operator uid ran when a checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorModule {
    /// The operator's uid.
    pub uid: String,
    /// The module that ran.
    pub module: ModuleMeta,
    /// The digest of the module the job file named, which differs from
    /// `module` after `weir upgrade`.
    pub declared: String,
    /// The schema of every keyed state the function declares, by state name.
    pub schemas: BTreeMap<String, String>,
    /// A copy of the module's component file in the shared files.
    pub file: Option<FileRef>,
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
    /// Where event time had got at the barrier.
    pub watermarks: WatermarkSnapshot,
}

/// A subtask's event-time progress at a barrier: restored with its state,
/// so that a record late before a crash is late after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkSnapshot {
    /// An operator's current watermark (the minimum over its inputs).
    pub input: Option<i64>,
    /// The watermark generator of the subtask's output, if it has one.
    pub output: Option<GeneratorState>,
}

/// What a checkpoint keeps of a subtask's watermark generator
/// (the time layer's `WatermarkGenerator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorState {
    /// The largest timestamp seen.
    pub max_timestamp: i64,
    /// The last watermark emitted.
    pub emitted: i64,
    /// Whether the stream had declared itself idle.
    pub idle: bool,
}

impl GeneratorState {
    /// The state a subtask inherits from several (a rescaled restore): the
    /// least progress of any, so that nothing restored runs ahead; idle only
    /// if all were.
    pub fn merge(states: impl IntoIterator<Item = Self>) -> Option<Self> {
        states.into_iter().reduce(|a, b| Self {
            max_timestamp: a.max_timestamp.min(b.max_timestamp),
            emitted: a.emitted.min(b.emitted),
            idle: a.idle && b.idle,
        })
    }
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
    /// Every file the checkpoint refers to: state files and module copies.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> + '_ {
        self.tasks
            .iter()
            .filter_map(|t| t.keyed.as_ref())
            .flat_map(|k| k.canonical.iter().chain(k.native.iter().map(|(_, f)| f)))
            .chain(self.modules.iter().filter_map(|m| m.file.as_ref()))
    }

    /// What the checkpoint records of operator `uid`'s module.
    pub fn module_of(&self, uid: &str) -> Option<&OperatorModule> {
        self.modules.iter().find(|m| m.uid == uid)
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
    pub fn decode(bytes: &[u8]) -> Result<Self, IntegrityError> {
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(IntegrityError::NotAManifest);
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(IntegrityError::ManifestChecksum);
        }
        postcard::from_bytes(&body[MAGIC.len()..]).map_err(IntegrityError::Undecodable)
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
                watermarks: WatermarkSnapshot {
                    input: Some(7),
                    output: None,
                },
            }],
            modules: vec![],
        }
    }

    #[test]
    fn manifests_round_trip_and_detect_corruption() {
        let bytes = manifest().encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), manifest());
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert_eq!(
            Manifest::decode(&flipped).unwrap_err().to_string(),
            "checksum mismatch in the manifest"
        );
        assert!(Manifest::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
