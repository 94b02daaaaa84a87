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

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use super::snapshot::{SnapshotItem, SnapshotReader};
use super::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, TtlConfig};
use crate::checkpoint::manifest::KeyedStateHandle;
use crate::checkpoint::storage::{FileRef, FileStore};
use crate::time::{TimeDomain, TimerService};

/// Loads the entries and timers of `range` from `handles` into `backend`
/// and `timers`. Returns the number of entries restored. Native snapshots
/// are opened in the system's temporary folder (see [`restore_keyed_in`]).
pub fn restore_keyed(
    backend: &mut dyn KeyedStateBackend,
    timers: &mut TimerService,
    files: &FileStore,
    handles: &[&KeyedStateHandle],
    range: KeyGroupRange,
) -> Result<u64, String> {
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
) -> Result<u64, String> {
    let mut restored = 0;
    for handle in handles {
        let (start, end) = handle.key_groups;
        if end <= range.start || start >= range.end {
            continue;
        }
        if handle.canonical.is_none() && handle.native.is_empty() {
            return Err(format!(
                "a `{}` snapshot without any file cannot be restored",
                handle.backend
            ));
        }
        if !handle.native.is_empty() {
            if handle.backend != "rocksdb" {
                return Err(format!(
                    "native files of a `{}` snapshot cannot be restored here",
                    handle.backend
                ));
            }
            restored += super::rocksdb::restore_native_entries(backend, files, handle, range, scratch)?;
        }
        if let Some(file) = &handle.canonical {
            restored += restore_canonical(backend, timers, files, file, range)?;
        }
    }
    Ok(restored)
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
) -> Result<u64, String> {
    let path = files.path(file);
    let input = std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader = SnapshotReader::new(BufReader::with_capacity(1 << 20, input))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut states: HashMap<u32, StateId> = HashMap::new();
    let mut restored = 0;
    while let Some(item) = reader.next_item().map_err(|e| format!("{}: {e}", path.display()))? {
        match item {
            SnapshotItem::State { index, name, kind, ttl } => {
                let descriptor = StateDescriptor {
                    name,
                    kind,
                    ttl: ttl.map(|(ttl_ms, update_on_read)| TtlConfig { ttl_ms, update_on_read }),
                };
                let id = backend.register(&descriptor).map_err(|e| e.to_string())?;
                states.insert(index, id);
            }
            SnapshotItem::Entry {
                state,
                key_group,
                key,
                user_key,
                value,
            } => {
                if !range.contains(super::KeyGroup(key_group)) {
                    continue;
                }
                let id = states
                    .get(&state)
                    .ok_or_else(|| format!("entry of undeclared state {state}"))?;
                backend
                    .restore_entry(*id, &key, &user_key, &value)
                    .map_err(|e| e.to_string())?;
                restored += 1;
            }
            SnapshotItem::Timer {
                event_time,
                key_group,
                key,
                timestamp,
            } => {
                if range.contains(super::KeyGroup(key_group)) {
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
