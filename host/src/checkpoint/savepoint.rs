//! Savepoints: self-contained, always full copies of a completed checkpoint
//! that an operator takes on purpose (to stop a job, to restart it later,
//! elsewhere, or with another state backend) and that checkpoint retention
//! never deletes.
//!
//! ```text
//! <dir>/savepoint-<job>-000042/
//!   _savepoint   the manifest: magic, postcard body, SHA-256 of both
//!   files/       one canonical snapshot per keyed subtask (never RocksDB
//!                native files, so any backend restores it)
//! ```
//!
//! The manifest is self-describing: the WIT package version the job ran
//! against and, per operator uid, its module (name, version, content digest),
//! the key groups its subtasks covered and the states (name and kind) they
//! held; it embeds the checkpoint [`Manifest`] (with the state schemas and a
//! copy of every module), whose file references point into `files/`. A
//! savepoint restores by operator uid. Everything is written and synced
//! before the manifest is renamed into place.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::snapshot::{SnapshotItem, SnapshotReader};
use crate::state::{KeyGroupRange, KeyedStateBackend};
use crate::storage::files::{FileStore, IntegrityError, StorageError};
pub(crate) use crate::storage::manifest::ModuleMeta;
use crate::storage::manifest::{KeyedStateHandle, Manifest};

// Version 2: watermarks and modules in every task state.
const MAGIC: &[u8; 8] = b"WEIRSVP2";
/// The manifest's file name inside a savepoint folder.
pub(crate) const MANIFEST: &str = "_savepoint";
const FILES: &str = "files";

/// The WIT package a savepoint is compatible with (`weir:udf@0.1.0`).
pub(crate) fn wit_package() -> String {
    format!("{}@{}", crate::wasm::WIT_PACKAGE, crate::wasm::WIT_VERSION)
}

/// Why a savepoint cannot be written, read or deleted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SavepointError {
    /// The folder holds no savepoint.
    #[error("{0} is not a savepoint (it has no readable `_savepoint` manifest)")]
    NotASavepoint(PathBuf),
    /// A checksum does not match.
    #[error("savepoint {path} is corrupt: {reason}")]
    Corrupt {
        /// The savepoint folder.
        path: PathBuf,
        /// What is wrong.
        #[source]
        reason: IntegrityError,
    },
    /// The savepoint was taken against another WIT package version.
    #[error("savepoint {path} was taken with {found}, but this weir implements {expected}")]
    WitVersion {
        /// The savepoint folder.
        path: PathBuf,
        /// Its WIT package.
        found: String,
        /// Ours.
        expected: String,
    },
    /// It has state for operators the job does not have.
    #[error(
        "savepoint {path} has state for operator uids that are not in the job: {uids} (pass --allow-non-restored-state to start without it)"
    )]
    NonRestoredState {
        /// The savepoint folder.
        path: PathBuf,
        /// The uids, quoted and comma-separated.
        uids: String,
    },
    /// The job has another number of key groups.
    #[error(
        "savepoint {path} was taken with max_parallelism {found}, but the job has {expected}: keyed state cannot move to other key groups"
    )]
    MaxParallelism {
        /// The savepoint folder.
        path: PathBuf,
        /// The savepoint's.
        found: u32,
        /// The job's.
        expected: u32,
    },
    /// `--savepoint-at-end` found no final checkpoint.
    #[error(
        "no savepoint at the end: the latest checkpoint in {0} does not cover the whole input (the job was stopped, or its final checkpoint failed)"
    )]
    NoFinalCheckpoint(PathBuf),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A keyed state of an operator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct StateMeta {
    /// The state's name.
    pub name: String,
    /// Its kind (`value`, `map`, …).
    pub kind: String,
}

/// What a savepoint holds for one operator uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperatorMeta {
    /// The operator's uid.
    pub uid: String,
    /// Its module, for operators that run one.
    pub module: Option<ModuleMeta>,
    /// Its parallelism when the savepoint was taken.
    pub parallelism: u32,
    /// The key groups of each keyed subtask, `start..end`.
    pub key_groups: Vec<(u32, u32)>,
    /// Its keyed states.
    pub states: Vec<StateMeta>,
}

/// The manifest of a savepoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavepointManifest {
    /// The WIT package the job ran against (`weir:udf@0.1.0`).
    pub wit: String,
    /// Every operator uid with state.
    pub operators: Vec<OperatorMeta>,
    /// The checkpoint, its files referring to the savepoint's `files/`.
    pub checkpoint: Manifest,
}

impl SavepointManifest {
    fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let mut bytes = postcard::to_extend(self, MAGIC.to_vec())
            .map_err(|e| StorageError::Format(format!("cannot encode the savepoint manifest: {e}")))?;
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        Ok(bytes)
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<Self, SavepointError> {
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SavepointError::NotASavepoint(path.to_path_buf()));
        }
        let corrupt = |reason: IntegrityError| SavepointError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(corrupt(IntegrityError::ManifestChecksum));
        }
        postcard::from_bytes(&body[MAGIC.len()..]).map_err(|e| corrupt(IntegrityError::Undecodable(e)))
    }

    /// Refuses a savepoint taken with another number of key groups.
    pub(crate) fn check_max_parallelism(&self, path: &Path, max_parallelism: u32) -> Result<(), SavepointError> {
        if self.checkpoint.max_parallelism == max_parallelism {
            return Ok(());
        }
        Err(SavepointError::MaxParallelism {
            path: path.to_path_buf(),
            found: self.checkpoint.max_parallelism,
            expected: max_parallelism,
        })
    }

    /// Uids with state (keyed state, a source position or transactions).
    pub(crate) fn stateful_uids(&self) -> BTreeSet<&str> {
        self.checkpoint
            .tasks
            .iter()
            .filter(|t| t.keyed.is_some() || t.source_position.is_some() || !t.transactions.is_empty())
            .map(|t| t.task.uid.as_str())
            .collect()
    }

    /// Refuses a savepoint with state for uids missing from `job_uids`,
    /// unless `allow_non_restored`.
    pub(crate) fn check_uids<'a>(
        &self,
        path: &Path,
        job_uids: impl IntoIterator<Item = &'a str>,
        allow_non_restored: bool,
    ) -> Result<(), SavepointError> {
        let job: BTreeSet<&str> = job_uids.into_iter().collect();
        let missing: Vec<String> = self
            .stateful_uids()
            .into_iter()
            .filter(|uid| !job.contains(uid))
            .map(|uid| format!("`{uid}`"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if allow_non_restored {
            tracing::warn!("not restoring the state of {} (not in the job)", missing.join(", "));
            return Ok(());
        }
        Err(SavepointError::NonRestoredState {
            path: path.to_path_buf(),
            uids: missing.join(", "),
        })
    }
}

/// A savepoint asked for through the control API.
#[derive(Debug)]
pub(crate) struct SavepointRequest {
    /// The folder to create the savepoint in (`None`: the job's default).
    pub target: Option<PathBuf>,
    /// Stop the job with this savepoint.
    pub stop: bool,
    /// Where the savepoint's path (or why it failed) goes.
    pub reply: Sender<Result<PathBuf, SavepointFailure>>,
}

/// Why a savepoint asked for through the control API was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SavepointFailure {
    /// The job is already stopping.
    #[error("the job is stopping")]
    Stopping,
    /// No source is left to take a barrier.
    #[error("every source has finished; the job is about to end")]
    SourcesFinished,
    /// Its checkpoint did not complete in time.
    #[error("the savepoint expired before completing")]
    Expired,
    /// A subtask declined its checkpoint.
    #[error("the savepoint was declined by {task}: {reason}")]
    Declined {
        /// The subtask.
        task: crate::storage::TaskId,
        /// The subtask's reason, as it sent it.
        reason: String,
    },
    /// A later checkpoint completed while its own was pending.
    #[error("a later checkpoint completed first")]
    Superseded,
    /// Its checkpoint completed but the savepoint could not be written.
    #[error(transparent)]
    Write(#[from] StorageError),
}

/// The link between a running job and its control API.
#[derive(Debug, Clone)]
pub(crate) struct ApiHandle {
    /// Savepoint requests.
    pub requests: Receiver<SavepointRequest>,
    /// The id of the last completed checkpoint (0: none yet).
    pub last_completed: Arc<AtomicU64>,
    /// When the job's latest attempt started its tasks (state restored).
    pub resumed: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// What the coordinator needs to take savepoints.
#[derive(Debug, Clone)]
pub(crate) struct SavepointSettings {
    /// Requests and status.
    pub api: ApiHandle,
    /// Folder for savepoints asked for without one.
    pub default_dir: PathBuf,
}

/// Writes a savepoint of the completed checkpoint `manifest` (whose files are
/// in `source`) into a new folder under `target`, and returns its path.
/// Canonical snapshot files and module copies are hard-linked (or copied);
/// native RocksDB snapshots are rewritten in the canonical format.
pub(crate) fn write(manifest: &Manifest, source: &FileStore, target: &Path) -> Result<PathBuf, StorageError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { what, path, source }
    };
    // An absolute path: it is printed for commands run in other folders.
    let target = &std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    let name: String = manifest
        .job
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let mut path = target.join(format!("savepoint-{name}-{:06}", manifest.id.0));
    let mut suffix = 1;
    while path.exists() {
        suffix += 1;
        path = target.join(format!("savepoint-{name}-{:06}-{suffix}", manifest.id.0));
    }
    let files_dir = path.join(FILES);
    std::fs::create_dir_all(&files_dir).map_err(io("cannot create", &files_dir))?;
    let files = FileStore::at(&files_dir);
    let mut checkpoint = manifest.clone();
    let mut operators: BTreeMap<String, OperatorMeta> = BTreeMap::new();
    for task in &mut checkpoint.tasks {
        let meta = operators.entry(task.task.uid.clone()).or_insert_with(|| OperatorMeta {
            uid: task.task.uid.clone(),
            module: manifest.module_of(&task.task.uid).map(|m| m.module.clone()),
            parallelism: task.parallelism,
            key_groups: Vec::new(),
            states: Vec::new(),
        });
        task.finished = false;
        let Some(handle) = &mut task.keyed else { continue };
        *handle = self_contained(handle, source, &files, manifest.max_parallelism)?;
        meta.key_groups.push(handle.key_groups);
        if let Some(file) = &handle.canonical {
            for state in declared_states(&files.path(file))? {
                if !meta.states.contains(&state) {
                    meta.states.push(state);
                }
            }
        }
    }
    for module in &mut checkpoint.modules {
        if let Some(file) = &mut module.file {
            *file = files.adopt(&source.path(file), &file.name)?;
        }
    }
    let savepoint = SavepointManifest {
        wit: wit_package(),
        operators: operators.into_values().collect(),
        checkpoint,
    };
    let bytes = savepoint.encode()?;
    let temporary = path.join(".savepoint.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io("cannot create", &temporary))?;
    file.write_all(&bytes).map_err(io("cannot write", &temporary))?;
    file.sync_all().map_err(io("cannot sync", &temporary))?;
    let final_path = path.join(MANIFEST);
    std::fs::rename(&temporary, &final_path).map_err(io("cannot rename", &temporary))?;
    Ok(path)
}

/// Writes a savepoint of the final checkpoint of a bounded run that has
/// ended (`weir run --savepoint-at-end`, Flink's stop-with-savepoint
/// `--drain`): every source had read its whole input and the maximum
/// watermark had fired every timer. Refuses when the latest checkpoint of
/// `storage` is not such a checkpoint.
pub(crate) fn write_final(
    storage: &crate::storage::files::CheckpointStorage,
    target: &Path,
) -> Result<PathBuf, SavepointError> {
    let (latest, _) = storage.latest_valid()?;
    let not_final = || SavepointError::NoFinalCheckpoint(storage.root().to_path_buf());
    let manifest = latest.ok_or_else(not_final)?;
    let sources_done = manifest
        .tasks
        .iter()
        .filter(|t| t.source_position.is_some())
        .all(|t| t.finished);
    if !sources_done {
        return Err(not_final());
    }
    Ok(write(&manifest, storage.files(), target)?)
}

/// The handle of one subtask's keyed state, stored canonically in `files`.
fn self_contained(
    handle: &KeyedStateHandle,
    source: &FileStore,
    files: &FileStore,
    max_parallelism: u32,
) -> Result<KeyedStateHandle, StorageError> {
    if handle.native.is_empty() {
        let canonical = match &handle.canonical {
            Some(file) => Some(files.adopt(&source.path(file), &file.name)?),
            None => None,
        };
        return Ok(KeyedStateHandle {
            canonical,
            ..handle.clone()
        });
    }
    // A native (incremental RocksDB) snapshot: rewrite it canonically.
    let range = KeyGroupRange {
        start: handle.key_groups.0,
        end: handle.key_groups.1,
    };
    let mut backend = crate::state::heap::HeapBackend::new();
    let mut timers = crate::state::TimerService::new();
    // Every key group: the handle holds its own, plus broadcast states
    // (stored under one key whose key group may lie outside its range).
    let every = KeyGroupRange {
        start: 0,
        end: max_parallelism,
    };
    // Storage sits below state, so the restore's error is kept as text here.
    crate::state::restore::restore_keyed(&mut backend, &mut timers, source, &[handle], every)
        .map_err(|e| StorageError::Format(e.to_string()))?;
    let name = handle
        .canonical
        .as_ref()
        .or(handle.native.first().map(|(_, f)| f))
        .map_or_else(|| "keyed".to_string(), |f| f.name.replace('.', "_"));
    let view = backend
        .snapshot()
        .map_err(|e| StorageError::Format(format!("cannot snapshot restored state: {e}")))?;
    let mut written = view.persist(files, &format!("sp-{name}"), &timers, range, max_parallelism)?;
    written.backend = handle.backend.clone();
    Ok(written)
}

/// The states a canonical snapshot declares.
fn declared_states(path: &Path) -> Result<Vec<StateMeta>, StorageError> {
    let format = |e: std::io::Error| StorageError::Format(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(format)?;
    let mut reader = SnapshotReader::new(BufReader::new(file)).map_err(format)?;
    let mut states = Vec::new();
    while let Some(item) = reader.next_item().map_err(format)? {
        if let SnapshotItem::State { name, kind, .. } = item {
            states.push(StateMeta {
                name,
                kind: kind.to_string(),
            });
        }
    }
    Ok(states)
}

/// Reads and checks the savepoint in folder `path`: its manifest's checksum,
/// its WIT version and every state file's checksum. Returns the manifest and
/// the store of its files.
pub(crate) fn load(path: &Path) -> Result<(SavepointManifest, FileStore), SavepointError> {
    let bytes = std::fs::read(path.join(MANIFEST)).map_err(|_| SavepointError::NotASavepoint(path.to_path_buf()))?;
    let savepoint = SavepointManifest::decode(path, &bytes)?;
    if savepoint.wit != wit_package() {
        return Err(SavepointError::WitVersion {
            path: path.to_path_buf(),
            found: savepoint.wit,
            expected: wit_package(),
        });
    }
    let files = FileStore::at(&path.join(FILES));
    for file in savepoint.checkpoint.files() {
        files.verify(file).map_err(|reason| SavepointError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    Ok((savepoint, files))
}

/// Deletes the savepoint folder `path`, after checking that it is one.
pub(crate) fn dispose(path: &Path) -> Result<(), SavepointError> {
    let bytes = std::fs::read(path.join(MANIFEST)).map_err(|_| SavepointError::NotASavepoint(path.to_path_buf()))?;
    if !bytes.starts_with(MAGIC) {
        return Err(SavepointError::NotASavepoint(path.to_path_buf()));
    }
    std::fs::remove_dir_all(path).map_err(|source| {
        SavepointError::Storage(StorageError::Io {
            what: "cannot delete",
            path: path.to_path_buf(),
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::manifest::TaskState;
    use crate::storage::{CheckpointId, TaskId};

    fn task(uid: &str, position: Option<u64>) -> TaskState {
        TaskState {
            task: TaskId {
                uid: uid.into(),
                subtask: 0,
            },
            parallelism: 1,
            source_position: position,
            transactions: Vec::new(),
            keyed: None,
            finished: true,
            source_splits: Vec::new(),
            watermarks: Default::default(),
        }
    }

    fn checkpoint() -> Manifest {
        Manifest {
            id: CheckpointId(7),
            job: "demo job".into(),
            timestamp_ms: 1,
            max_parallelism: 128,
            tasks: vec![task("source", Some(42)), task("map", None)],
            modules: Vec::new(),
        }
    }

    #[test]
    fn a_savepoint_is_written_read_back_and_disposed_of() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = write(&checkpoint(), &FileStore::at(dir.path()), dir.path()).expect("written");
        assert_eq!(path, dir.path().join("savepoint-demo_job-000007"));
        let again = write(&checkpoint(), &FileStore::at(dir.path()), dir.path()).expect("written");
        assert_eq!(again, dir.path().join("savepoint-demo_job-000007-2"));
        let (savepoint, _) = load(&path).expect("loads");
        assert_eq!(savepoint.wit, "weir:udf@0.1.0");
        assert_eq!(savepoint.operators.len(), 2);
        // Restored tasks are never "finished": the job resumes them.
        assert!(savepoint.checkpoint.tasks.iter().all(|t| !t.finished));
        assert_eq!(
            savepoint.stateful_uids().into_iter().collect::<Vec<_>>(),
            vec!["source"]
        );
        assert!(savepoint.check_uids(&path, ["source"], false).is_ok());
        assert_eq!(
            savepoint
                .check_uids(&path, ["map"], false)
                .map_err(|e| e.to_string())
                .expect_err("refused"),
            format!(
                "savepoint {} has state for operator uids that are not in the job: `source` (pass --allow-non-restored-state to start without it)",
                path.display()
            )
        );
        assert!(savepoint.check_uids(&path, ["map"], true).is_ok());
        assert!(savepoint.check_max_parallelism(&path, 128).is_ok());
        assert_eq!(
            savepoint
                .check_max_parallelism(&path, 64)
                .map_err(|e| e.to_string())
                .expect_err("refused"),
            format!(
                "savepoint {} was taken with max_parallelism 128, but the job has 64: keyed state cannot move to other key groups",
                path.display()
            )
        );
        dispose(&path).expect("disposed");
        assert!(!path.exists());
        assert_eq!(
            dispose(dir.path()).map_err(|e| e.to_string()).expect_err("refused"),
            format!(
                "{} is not a savepoint (it has no readable `_savepoint` manifest)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn a_damaged_manifest_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = write(&checkpoint(), &FileStore::at(dir.path()), dir.path()).expect("written");
        let manifest = path.join(MANIFEST);
        let mut bytes = std::fs::read(&manifest).expect("read");
        bytes[12] ^= 1;
        std::fs::write(&manifest, &bytes).expect("write");
        assert!(matches!(load(&path), Err(SavepointError::Corrupt { .. })));
        std::fs::write(&manifest, b"something else entirely, long enough to be checked").expect("write");
        assert!(matches!(load(&path), Err(SavepointError::NotASavepoint(_))));
    }
}
