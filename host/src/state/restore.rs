//! Restoring keyed state and timers from checkpointed snapshots.
//!
//! A subtask reads the snapshot of every old subtask whose key groups
//! overlap its own and keeps only the entries and timers of its key groups,
//! so restoring at another parallelism needs nothing more.
//!
//! A snapshot is either canonical (one file with every state descriptor,
//! entry and timer, see [`super::snapshot`]) or native: the files of a
//! RocksDB checkpoint, plus a canonical file with just the timers. Both
//! restore into any backend: a native snapshot is opened read-only in a
//! scratch folder and its entries of the wanted key groups are copied over.
//! The RocksDB backend can also open a native snapshot of exactly its key
//! groups as it is ([`super::rocksdb::RocksDbBackend::restore`]).
//!
//! Broadcast states ([`super::broadcast`]) are not split by key group: the
//! first canonical snapshot (old subtask 0's) gives every subtask its copy,
//! and the others' copies are skipped. (A native snapshot restored at
//! another parallelism keeps them only in the subtask owning their key
//! group: rescale from savepoints, which are always canonical.)

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::snapshot::{SnapshotItem, SnapshotReader};
use super::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, TtlConfig};
use crate::state::TimerService;
use crate::storage::files::{FileRef, FileStore};
use crate::storage::manifest::KeyedStateHandle;
use crate::time::TimeDomain;

/// Why keyed or operator state could not be restored from a snapshot:
/// the snapshot is missing, unreadable or does not fit (each variant says
/// which). The caller names the operator.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The job has state to restore but no checkpoint storage to read it from.
    #[error("no checkpoint storage")]
    NoStorage,
    /// A snapshot handle names no file at all.
    #[error("a `{backend}` snapshot without any file cannot be restored")]
    NoFiles {
        /// The backend that wrote the snapshot.
        backend: String,
    },
    /// Native files of a backend that cannot read them.
    #[error("native files of a `{backend}` snapshot cannot be restored here")]
    ForeignNative {
        /// The backend that wrote the snapshot.
        backend: String,
    },
    /// Operator state must come from a canonical snapshot.
    #[error("the operator state of subtask {subtask} is not in a canonical snapshot")]
    NotCanonical {
        /// The old subtask.
        subtask: u32,
    },
    /// A snapshot file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A snapshot file could not be read or decoded.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An entry names a state the snapshot did not declare before it.
    #[error("entry of undeclared state {0}")]
    UndeclaredState(u32),
    /// A native snapshot's key could not be decoded.
    #[error("a malformed key in the state `{0}`")]
    MalformedKey(String),
    /// The scratch folder for a native snapshot could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Scratch {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A native snapshot could not be opened read-only in the scratch folder.
    #[error("cannot open a RocksDB snapshot: {0}")]
    OpenScratch(#[source] super::StateError),
    /// A native snapshot of exactly this subtask's key groups could not be
    /// opened as the backend's database.
    #[error("cannot open the RocksDB snapshot: {0}")]
    OpenNative(#[source] super::StateError),
    /// Reading a native snapshot failed in RocksDB.
    #[error(transparent)]
    RocksDb(#[from] rocksdb::Error),
    /// A window's stored trigger record does not decode.
    #[error("the trigger state of window [{start}, {end}) is corrupt")]
    CorruptTrigger {
        /// The window's start.
        start: i64,
        /// The window's end.
        end: i64,
    },
    /// The target backend refused a state or an entry.
    #[error(transparent)]
    State(#[from] super::StateError),
}

/// Loads the entries and timers of `range` from `handles` into `backend`
/// and `timers`. Returns the number of entries restored. Native snapshots
/// are opened in the system's temporary folder (see [`restore_keyed_in`]).
pub fn restore_keyed(
    backend: &mut dyn KeyedStateBackend,
    timers: &mut TimerService,
    files: &FileStore,
    handles: &[&KeyedStateHandle],
    range: KeyGroupRange,
) -> Result<u64, RestoreError> {
    restore_keyed_in(backend, timers, files, handles, range, &std::env::temp_dir())
}

/// Like [`restore_keyed`], opening native snapshots in temporary folders
/// under `scratch` (deleted afterwards). A folder on the file system of the
/// checkpoint storage lets their files be hard-linked instead of copied.
pub fn restore_keyed_in(
    backend: &mut dyn KeyedStateBackend,
    timers: &mut TimerService,
    files: &FileStore,
    handles: &[&KeyedStateHandle],
    range: KeyGroupRange,
    scratch: &Path,
) -> Result<u64, RestoreError> {
    let mut restored = 0;
    let mut handles = handles.to_vec();
    handles.sort_by_key(|h| h.key_groups.0);
    // The first snapshot restores the broadcast states.
    let mut first = true;
    for handle in handles {
        let (start, end) = handle.key_groups;
        let broadcast = if std::mem::take(&mut first) {
            Broadcast::Restore
        } else {
            Broadcast::Skip
        };
        if end <= range.start || start >= range.end {
            if let (Broadcast::Restore, Some(file), true) = (broadcast, &handle.canonical, handle.native.is_empty()) {
                restored += restore_canonical_with(backend, timers, files, file, range, Broadcast::Only)?;
            }
            continue;
        }
        if handle.canonical.is_none() && handle.native.is_empty() {
            return Err(RestoreError::NoFiles {
                backend: handle.backend.clone(),
            });
        }
        if !handle.native.is_empty() {
            if handle.backend != "rocksdb" {
                return Err(RestoreError::ForeignNative {
                    backend: handle.backend.clone(),
                });
            }
            restored += super::rocksdb::restore_native_entries(backend, files, handle, range, scratch)?;
        }
        if let Some(file) = &handle.canonical {
            restored += restore_canonical_with(backend, timers, files, file, range, broadcast)?;
        }
    }
    Ok(restored)
}

/// What to do with the broadcast states of a canonical snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broadcast {
    /// Restore them whole, with the keyed state of the range.
    Restore,
    /// Skip them (another snapshot gave them).
    Skip,
    /// Restore only them (the snapshot has none of the range's key groups).
    Only,
}

/// Loads the entries and timers of `range` from the canonical snapshot
/// `file` into `backend` and `timers`, registering every state it declares.
/// Returns the number of entries restored.
pub fn restore_canonical(
    backend: &mut dyn KeyedStateBackend,
    timers: &mut TimerService,
    files: &FileStore,
    file: &FileRef,
    range: KeyGroupRange,
) -> Result<u64, RestoreError> {
    restore_canonical_with(backend, timers, files, file, range, Broadcast::Restore)
}

fn restore_canonical_with(
    backend: &mut dyn KeyedStateBackend,
    timers: &mut TimerService,
    files: &FileStore,
    file: &FileRef,
    range: KeyGroupRange,
    broadcast: Broadcast,
) -> Result<u64, RestoreError> {
    let path = files.path(file);
    let input = std::fs::File::open(&path).map_err(|source| RestoreError::Open {
        path: path.clone(),
        source,
    })?;
    let read_error = |source| RestoreError::Read {
        path: path.clone(),
        source,
    };
    let mut reader = SnapshotReader::new(BufReader::with_capacity(1 << 20, input)).map_err(read_error)?;
    // Each state's id, and whether it is a broadcast state.
    let mut states: HashMap<u32, (StateId, bool)> = HashMap::new();
    let mut restored = 0;
    while let Some(item) = reader.next_item().map_err(read_error)? {
        match item {
            SnapshotItem::State { index, name, kind, ttl } => {
                let is_broadcast = super::broadcast::is_broadcast(&name);
                let descriptor = StateDescriptor {
                    name,
                    kind,
                    ttl: ttl.map(|(ttl_ms, update_on_read)| TtlConfig { ttl_ms, update_on_read }),
                };
                let id = backend.register(&descriptor)?;
                states.insert(index, (id, is_broadcast));
            }
            SnapshotItem::Entry {
                state,
                key_group,
                key,
                user_key,
                value,
            } => {
                let &(id, is_broadcast) = states.get(&state).ok_or(RestoreError::UndeclaredState(state))?;
                let wanted = match (is_broadcast, broadcast) {
                    (true, Broadcast::Skip) | (false, Broadcast::Only) => false,
                    (true, _) => true,
                    (false, _) => range.contains(super::KeyGroup(key_group)),
                };
                if !wanted {
                    continue;
                }
                backend.restore_entry(id, &key, &user_key, &value)?;
                restored += 1;
            }
            SnapshotItem::Timer {
                event_time,
                key_group,
                key,
                timestamp,
            } => {
                if broadcast != Broadcast::Only && range.contains(super::KeyGroup(key_group)) {
                    let domain = if event_time {
                        TimeDomain::EventTime
                    } else {
                        TimeDomain::ProcessingTime
                    };
                    timers.register(domain, &key, timestamp);
                }
            }
        }
    }
    Ok(restored)
}
