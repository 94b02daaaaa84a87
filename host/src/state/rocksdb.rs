//! The RocksDB backend: keyed state on local disk, with full or incremental
//! checkpoints.
//!
//! # Layout
//!
//! The backend owns a scratch folder (`dir`); the database lives in
//! `dir/db`. Checkpoints, not this folder, are the durable copy of the state,
//! so writes skip RocksDB's write-ahead log and the folder is deleted when the
//! backend (and every snapshot still being written from it) is gone.
//!
//! * Every registered state has its own column family, `state:<name>` (the
//!   prefix keeps state names apart from RocksDB's `default` family).
//! * A key is `key group (u16 BE) | key length (u32 BE) | key | user key`,
//!   so the entries of one key form one contiguous range (`entries` and
//!   `clear` are prefix scans) and the key group of every entry can be read
//!   from its key (a restore of some key groups is a range scan).
//! * The `default` column family holds metadata, which makes a native
//!   snapshot self-describing: `state/<name>` → the state's kind and
//!   time-to-live (postcard), and `max-parallelism` → `u32` BE, the number
//!   of key groups the keys were hashed into.
//!
//! # Snapshots
//!
//! *Full* (`incremental: false`): [`KeyedStateBackend::snapshot`] takes a
//! RocksDB snapshot (a sequence number; no copying) and the view writes it
//! out in the canonical format of [`super::snapshot`], exactly like the heap
//! backend, so the two backends restore each other's checkpoints. A RocksDB
//! snapshot borrows its database, so it is held by a small thread that owns
//! a reference to the database until the view has been written or dropped.
//!
//! *Incremental* (`incremental: true`): `snapshot` creates a RocksDB
//! checkpoint in `dir/snapshot-<n>` (flushes the memtables and hard-links the
//! live SST files: cheap, and later writes do not change it). Writing the
//! view out then stores each SST file in the checkpoint [`FileStore`] under a
//! name unique to this database instance, `<instance id>-<file name>`: SST
//! files are immutable and numbered once per instance, so an SST that was
//! already stored by an earlier checkpoint is found under the same name and
//! shared, and only the files written since (new flushes and compactions) are
//! new (and read: the backend remembers what it stored). The small metadata files (`CURRENT`, `MANIFEST-*`, `OPTIONS-*`, and
//! the empty write-ahead log) are copied afresh for every checkpoint under
//! names that start with the checkpoint's, timers go into a canonical file with
//! no entries, and the handle lists every native file with the name it has
//! in the database folder. The instance id is new for every opened backend,
//! so two runs restored from the same checkpoint never store different files
//! under one name; a backend restored natively keeps the stored names of the
//! SST files it was restored from, so its next checkpoint shares them.
//!
//! # Restore
//!
//! [`RocksDbBackend::restore`] picks the fastest way: when a single native
//! snapshot covers exactly the subtask's key groups, its files are linked
//! into `dir/db` and opened as they are ([`RocksDbBackend::restore_native`]);
//! otherwise an empty database is opened and every overlapping snapshot is
//! read entry by entry, keeping the subtask's key groups
//! ([`super::restore::restore_keyed_in`]), which also serves the heap backend.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rocksdb::{DBWithThreadMode, MultiThreaded, Options, ReadOptions, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::{
    KeyGroup, KeyGroupRange, KeyedStateBackend, StateDescriptor, StateError, StateId, StateKind, StateResult, StateView,
};
use crate::state::TimerService;
use crate::state::restore::RestoreError;
use crate::storage::files::{FileRef, FileStore};
use crate::storage::manifest::KeyedStateHandle;

mod db;
#[cfg(test)]
mod tests;
mod views;

use db::*;
pub(crate) use views::restore_native_entries;

type Db = DBWithThreadMode<MultiThreaded>;

/// The backend's name, as checkpoints record it.
const NAME: &str = "rocksdb";
/// The database folder inside the backend's folder.
const DB_DIR: &str = "db";
/// Column families of states are named `state:<name>`.
const STATE_CF_PREFIX: &str = "state:";
/// Metadata key prefix of state descriptors (in the `default` family).
const META_STATE: &[u8] = b"state/";
/// Metadata key of the number of key groups.
const META_MAX_PARALLELISM: &[u8] = b"max-parallelism";
/// Bytes before the key: key group and key length.
const KEY_HEADER: usize = 6;
/// The most key groups a two-byte key group can address.
const MAX_KEY_GROUPS: u32 = 1 << 16;

/// Options of the RocksDB backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RocksDbOptions {
    /// Checkpoint natively and incrementally (SST files shared between
    /// checkpoints) instead of writing a full canonical snapshot each time.
    pub incremental: bool,
}

/// A stored state descriptor (the name is the metadata key).
#[derive(Serialize, Deserialize)]
struct StoredDescriptor {
    kind: StateKind,
    ttl: Option<(u64, bool)>,
}

/// A folder deleted when dropped.
struct OwnedDir(PathBuf);

impl Drop for OwnedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An open database and the folder it lives in. The fields drop in order:
/// the database is closed before its folder is deleted.
struct Instance {
    db: Db,
    _dir: OwnedDir,
}

/// A registered state.
#[derive(Debug, Clone)]
struct RocksState {
    descriptor: StateDescriptor,
    /// Its column family.
    cf: String,
}

/// Keyed state in an embedded RocksDB database.
pub struct RocksDbBackend {
    instance: Arc<Instance>,
    dir: PathBuf,
    max_parallelism: u32,
    options: RocksDbOptions,
    /// Unique to this database instance; prefixes the stored names of its SSTs.
    id: String,
    cf_options: Options,
    write: WriteOptions,
    states: Vec<RocksState>,
    has_key: bool,
    /// `key group | key length | key` of the current key.
    prefix: Vec<u8>,
    /// The full key of the entry being accessed.
    key_buf: Vec<u8>,
    /// SST file name in the database → where a checkpoint stored it.
    shared: Arc<Mutex<HashMap<String, FileRef>>>,
    /// Snapshots and restores taken so far (names their scratch folders).
    sequence: u64,
}

impl std::fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbBackend")
            .field("dir", &self.dir)
            .field("id", &self.id)
            .field("options", &self.options)
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

impl RocksDbBackend {
    /// Opens an empty backend in `dir`, a working folder for this subtask
    /// that the backend owns: it is created (anything already there, such as
    /// the leftovers of a crashed run, is deleted first) and deleted when the
    /// backend and its last snapshot are dropped. `max_parallelism` is the
    /// job's number of key groups (at most 65536).
    pub fn open(dir: &Path, max_parallelism: u32, options: RocksDbOptions) -> StateResult<Self> {
        Self::start(dir, max_parallelism, options, HashMap::new(), |_| Ok(()))
    }

    /// Opens a backend on a native (incremental) snapshot of the same key
    /// groups: the snapshot's files are linked into `dir` and opened as they
    /// are, with no entry read or written. `dir` is treated as by
    /// [`Self::open`]. The snapshot's timers are not restored here (see
    /// [`Self::restore`]). Later checkpoints share the SST files this one
    /// was restored from.
    pub fn restore_native(
        dir: &Path,
        max_parallelism: u32,
        options: RocksDbOptions,
        files: &FileStore,
        handle: &KeyedStateHandle,
    ) -> StateResult<Self> {
        if handle.backend != NAME || handle.native.is_empty() {
            return Err(StateError::Storage(format!(
                "a `{}` snapshot without native files cannot be opened as a RocksDB database",
                handle.backend
            )));
        }
        let shared = handle
            .native
            .iter()
            .filter(|(name, _)| is_immutable(name))
            .cloned()
            .collect();
        Self::start(dir, max_parallelism, options, shared, |folder| {
            materialise(files, &handle.native, folder)
        })
    }

    /// Whether [`Self::restore`] takes the native fast path: exactly one of
    /// `handles` overlaps `range`, it is a native RocksDB snapshot, and it
    /// covers exactly `range`.
    pub fn can_restore_natively(handles: &[&KeyedStateHandle], range: KeyGroupRange) -> bool {
        native_match(handles, range).is_some()
    }

    /// Opens a backend in `dir` for a subtask that owns the key groups
    /// `range`, with the state and timers of `handles` (the keyed state of
    /// every subtask of the operator in the checkpoint being restored; those
    /// that do not overlap `range` are skipped). Uses
    /// [`Self::restore_native`] when [`Self::can_restore_natively`], and
    /// otherwise restores entry by entry from canonical or native snapshots
    /// of any backend. With no handles, this is [`Self::open`]. Returns the
    /// backend and the number of entries restored (estimated on the fast
    /// path).
    pub fn restore(
        dir: &Path,
        max_parallelism: u32,
        options: RocksDbOptions,
        files: &FileStore,
        handles: &[&KeyedStateHandle],
        range: KeyGroupRange,
        timers: &mut TimerService,
    ) -> Result<(Self, u64), RestoreError> {
        if let Some(handle) = native_match(handles, range) {
            let mut backend =
                Self::restore_native(dir, max_parallelism, options, files, handle).map_err(RestoreError::OpenNative)?;
            if let Some(file) = &handle.canonical {
                super::restore::restore_canonical(&mut backend, timers, files, file, range)?;
            }
            let restored = backend.estimated_entries();
            return Ok((backend, restored));
        }
        let mut backend = Self::open(dir, max_parallelism, options)?;
        let scratch = backend.dir.join("restore");
        let restored = super::restore::restore_keyed_in(&mut backend, timers, files, handles, range, &scratch)?;
        let _ = std::fs::remove_dir_all(&scratch);
        Ok((backend, restored))
    }

    /// The backend's working folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the database in `dir/db` after `populate` has filled that folder.
    fn start(
        dir: &Path,
        max_parallelism: u32,
        options: RocksDbOptions,
        shared: HashMap<String, FileRef>,
        populate: impl FnOnce(&Path) -> StateResult<()>,
    ) -> StateResult<Self> {
        if max_parallelism == 0 || max_parallelism > MAX_KEY_GROUPS {
            return Err(StateError::Storage(format!(
                "the RocksDB backend supports 1 to {MAX_KEY_GROUPS} key groups, not {max_parallelism}"
            )));
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| StateError::Storage(format!("cannot clear {}: {e}", dir.display())))?;
        }
        let db_dir = dir.join(DB_DIR);
        std::fs::create_dir_all(&db_dir)
            .map_err(|e| StateError::Storage(format!("cannot create {}: {e}", db_dir.display())))?;
        let owned = OwnedDir(dir.to_path_buf());
        populate(&db_dir)?;
        let db = open_db(&db_dir, false)?;
        let instance = Arc::new(Instance { db, _dir: owned });
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        let db = &instance.db;
        match db.get(META_MAX_PARALLELISM).map_err(storage)? {
            Some(stored) => {
                let stored = <[u8; 4]>::try_from(stored.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StateError::Storage("the stored number of key groups is corrupt".into()))?;
                if stored != max_parallelism {
                    return Err(StateError::Storage(format!(
                        "the snapshot was taken with {stored} key groups, the job has {max_parallelism}"
                    )));
                }
            }
            None => db
                .put_opt(META_MAX_PARALLELISM, max_parallelism.to_be_bytes(), &write)
                .map_err(storage)?,
        }
        let states = load_states(db)?;
        Ok(Self {
            id: unique_id(dir),
            dir: dir.to_path_buf(),
            max_parallelism,
            options,
            cf_options: db_options(),
            write,
            states,
            has_key: false,
            prefix: Vec::with_capacity(64),
            key_buf: Vec::with_capacity(128),
            shared: Arc::new(Mutex::new(shared)),
            sequence: 0,
            instance,
        })
    }

    fn state(&self, state: StateId) -> StateResult<&RocksState> {
        self.states
            .get(state.0 as usize)
            .ok_or(StateError::UnknownState(state.0))
    }

    /// Puts the key of entry `user_key` of the current key in `key_buf`.
    fn fill_key(&mut self, user_key: &[u8]) -> StateResult<()> {
        if !self.has_key {
            return Err(StateError::NoCurrentKey);
        }
        self.key_buf.clear();
        self.key_buf.extend_from_slice(&self.prefix);
        self.key_buf.extend_from_slice(user_key);
        Ok(())
    }

    fn store_descriptor(&self, descriptor: &StateDescriptor) -> StateResult<()> {
        let stored = StoredDescriptor {
            kind: descriptor.kind,
            ttl: descriptor.ttl.map(|t| (t.ttl_ms, t.update_on_read)),
        };
        let value = postcard::to_allocvec(&stored).map_err(storage)?;
        let mut key = META_STATE.to_vec();
        key.extend_from_slice(descriptor.name.as_bytes());
        self.instance.db.put_opt(key, value, &self.write).map_err(storage)
    }

    /// RocksDB's estimate of the number of entries.
    fn estimated_entries(&self) -> u64 {
        let db = &self.instance.db;
        self.states
            .iter()
            .filter_map(|state| {
                let cf = db.cf_handle(&state.cf)?;
                db.property_int_value_cf(&cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

/// The one handle a native restore of `range` would open, if any.
fn native_match<'a>(handles: &[&'a KeyedStateHandle], range: KeyGroupRange) -> Option<&'a KeyedStateHandle> {
    let mut overlapping = handles
        .iter()
        .filter(|h| h.key_groups.0 < range.end && h.key_groups.1 > range.start);
    match (overlapping.next(), overlapping.next()) {
        (Some(handle), None)
            if handle.backend == NAME && !handle.native.is_empty() && handle.key_groups == (range.start, range.end) =>
        {
            Some(handle)
        }
        _ => None,
    }
}

impl KeyedStateBackend for RocksDbBackend {
    fn register(&mut self, descriptor: &StateDescriptor) -> StateResult<StateId> {
        if let Some(index) = self.states.iter().position(|s| s.descriptor.name == descriptor.name) {
            let existing = &self.states[index].descriptor;
            if existing.kind != descriptor.kind {
                return Err(StateError::KindConflict {
                    name: descriptor.name.clone(),
                    existing: existing.kind,
                    requested: descriptor.kind,
                });
            }
            // A restored state learns its time-to-live from the function.
            if existing.ttl != descriptor.ttl {
                self.store_descriptor(descriptor)?;
                self.states[index].descriptor.ttl = descriptor.ttl;
            }
            return Ok(StateId(index as u32));
        }
        let cf = cf_name(&descriptor.name);
        if self.instance.db.cf_handle(&cf).is_none() {
            self.instance.db.create_cf(&cf, &self.cf_options).map_err(storage)?;
        }
        self.store_descriptor(descriptor)?;
        self.states.push(RocksState {
            descriptor: descriptor.clone(),
            cf,
        });
        Ok(StateId((self.states.len() - 1) as u32))
    }

    fn descriptor(&self, state: StateId) -> StateResult<&StateDescriptor> {
        Ok(&self.state(state)?.descriptor)
    }

    fn set_current_key(&mut self, key: &[u8]) {
        self.prefix.clear();
        encode_prefix(&mut self.prefix, KeyGroup::of(key, self.max_parallelism), key);
        self.has_key = true;
    }

    fn current_key(&self) -> Option<&[u8]> {
        self.has_key.then(|| &self.prefix[KEY_HEADER..])
    }

    fn get(&mut self, state: StateId, user_key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        self.fill_key(user_key)?;
        let db = &self.instance.db;
        let cf = column_family(db, self.state(state)?)?;
        let value = db.get_pinned_cf(&cf, &self.key_buf).map_err(storage)?;
        Ok(value.map(|value| value.to_vec()))
    }

    fn put(&mut self, state: StateId, user_key: &[u8], value: &[u8]) -> StateResult<()> {
        self.fill_key(user_key)?;
        let db = &self.instance.db;
        let cf = column_family(db, self.state(state)?)?;
        db.put_cf_opt(&cf, &self.key_buf, value, &self.write).map_err(storage)
    }

    fn delete(&mut self, state: StateId, user_key: &[u8]) -> StateResult<()> {
        self.fill_key(user_key)?;
        let db = &self.instance.db;
        let cf = column_family(db, self.state(state)?)?;
        db.delete_cf_opt(&cf, &self.key_buf, &self.write).map_err(storage)
    }

    fn entries(&mut self, state: StateId) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        if !self.has_key {
            return Err(StateError::NoCurrentKey);
        }
        let db = &self.instance.db;
        let cf = column_family(db, self.state(state)?)?;
        let mut read = ReadOptions::default();
        if let Some(end) = prefix_end(&self.prefix) {
            read.set_iterate_upper_bound(end);
        }
        let mut iter = db.raw_iterator_cf_opt(&cf, read);
        iter.seek(&self.prefix);
        let mut entries = Vec::new();
        while let Some((key, value)) = iter.item() {
            let Some(user_key) = key.strip_prefix(self.prefix.as_slice()) else {
                break;
            };
            entries.push((user_key.to_vec(), value.to_vec()));
            iter.next();
        }
        iter.status().map_err(storage)?;
        Ok(entries)
    }

    /// Value-like states hold only the entry with the empty user key (see
    /// the [module docs of `state`](super)), so clearing one is a single
    /// delete; a map state's entries are found by a prefix scan and deleted
    /// in one batch.
    fn clear(&mut self, state: StateId) -> StateResult<()> {
        if !self.has_key {
            return Err(StateError::NoCurrentKey);
        }
        let db = &self.instance.db;
        let state = self.state(state)?;
        let cf = column_family(db, state)?;
        if state.descriptor.kind != StateKind::Map {
            return db.delete_cf_opt(&cf, &self.prefix, &self.write).map_err(storage);
        }
        let mut read = ReadOptions::default();
        if let Some(end) = prefix_end(&self.prefix) {
            read.set_iterate_upper_bound(end);
        }
        let mut iter = db.raw_iterator_cf_opt(&cf, read);
        iter.seek(&self.prefix);
        let mut batch = WriteBatch::default();
        while let Some(key) = iter.key() {
            if !key.starts_with(&self.prefix) {
                break;
            }
            batch.delete_cf(&cf, key);
            iter.next();
        }
        iter.status().map_err(storage)?;
        drop(iter);
        if batch.is_empty() {
            return Ok(());
        }
        db.write_opt(batch, &self.write).map_err(storage)
    }

    /// Counts by scanning every state (meant for metrics and tests, not for
    /// the record path).
    fn key_count(&self) -> usize {
        let db = &self.instance.db;
        let mut keys: HashSet<Vec<u8>> = HashSet::new();
        for state in &self.states {
            let Ok(cf) = column_family(db, state) else {
                continue;
            };
            let mut iter = db.raw_iterator_cf_opt(&cf, scan_options());
            iter.seek_to_first();
            while let Some(raw) = iter.key() {
                if let Some((_, key, _)) = decode_key(raw) {
                    let prefix = &raw[..KEY_HEADER + key.len()];
                    if !keys.contains(prefix) {
                        keys.insert(prefix.to_vec());
                    }
                }
                iter.next();
            }
        }
        keys.len()
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn snapshot(&mut self) -> StateResult<Box<dyn StateView>> {
        if self.options.incremental {
            self.native_snapshot()
        } else {
            self.full_snapshot()
        }
    }

    fn restore_entry(&mut self, state: StateId, key: &[u8], user_key: &[u8], value: &[u8]) -> StateResult<()> {
        self.key_buf.clear();
        encode_prefix(&mut self.key_buf, KeyGroup::of(key, self.max_parallelism), key);
        self.key_buf.extend_from_slice(user_key);
        let db = &self.instance.db;
        let cf = column_family(db, self.state(state)?)?;
        db.put_cf_opt(&cf, &self.key_buf, value, &self.write).map_err(storage)
    }
}
