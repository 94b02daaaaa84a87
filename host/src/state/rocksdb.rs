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
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DBWithThreadMode, MultiThreaded,
    Options, ReadOptions, SnapshotWithThreadMode, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use super::snapshot::{CanonicalFile, SnapshotWriter};
use super::{
    KeyGroup, KeyGroupRange, KeyedStateBackend, StateDescriptor, StateError, StateId, StateKind, StateResult,
    StateView, TtlConfig,
};
use crate::state::TimerService;
use crate::storage::files::{FileRef, FileStore, StorageError};
use crate::storage::manifest::KeyedStateHandle;

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

fn storage(error: impl std::fmt::Display) -> StateError {
    StateError::Storage(error.to_string())
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn format_error(error: impl std::fmt::Display) -> StorageError {
    StorageError::Format(format!("cannot write keyed state: {error}"))
}

/// The options every database of this backend is opened with.
fn db_options() -> Options {
    let mut options = Options::default();
    // The folder is scratch space: closing need not flush what the WAL-less
    // memtables hold (the crate has no setter for this option).
    if let Ok(tuned) = options.get_options_from_string("avoid_flush_during_shutdown=true") {
        options = tuned;
    }
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_max_background_jobs(2);
    options.set_keep_log_file_num(2);
    options.set_max_log_file_size(1 << 20);
    // Every incremental checkpoint copies the MANIFEST: keep it small.
    options.set_max_manifest_file_size(1 << 20);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    options.set_block_based_table_factory(&table);
    options
}

/// Read options of bulk scans, which should not evict the hot blocks.
fn scan_options() -> ReadOptions {
    let mut options = ReadOptions::default();
    options.fill_cache(false);
    options
}

/// An identifier that no other backend instance, in this process or any
/// other, gets.
fn unique_id(seed: &Path) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    bytes.extend_from_slice(&nanos.to_le_bytes());
    bytes.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    bytes.extend_from_slice(seed.as_os_str().as_encoded_bytes());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}

fn cf_name(state: &str) -> String {
    format!("{STATE_CF_PREFIX}{state}")
}

/// Appends `key group | key length | key` to `out`.
fn encode_prefix(out: &mut Vec<u8>, key_group: KeyGroup, key: &[u8]) {
    // The key group fits: `max_parallelism` is at most 2^16.
    out.extend_from_slice(&(key_group.0 as u16).to_be_bytes());
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(key);
}

/// Splits a stored key into key group, key and user key.
fn decode_key(raw: &[u8]) -> Option<(u32, &[u8], &[u8])> {
    let key_group = u16::from_be_bytes(raw.get(..2)?.try_into().ok()?);
    let len = u32::from_be_bytes(raw.get(2..KEY_HEADER)?.try_into().ok()?) as usize;
    let key = raw.get(KEY_HEADER..KEY_HEADER.checked_add(len)?)?;
    let user_key = raw.get(KEY_HEADER + len..)?;
    Some((u32::from(key_group), key, user_key))
}

/// The least byte string greater than every string that starts with
/// `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != u8::MAX)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// Whether a file of a RocksDB folder never changes once written (and may
/// therefore be shared between checkpoints and hard-linked).
fn is_immutable(file: &str) -> bool {
    file.ends_with(".sst") || file.ends_with(".blob")
}

/// A file name that stays inside the folder it is joined to.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

fn column_family<'a>(db: &'a Db, state: &RocksState) -> StateResult<Arc<BoundColumnFamily<'a>>> {
    db.cf_handle(&state.cf)
        .ok_or_else(|| StateError::Storage(format!("the column family `{}` is missing", state.cf)))
}

/// The states a database's metadata declares.
fn load_states(db: &Db) -> StateResult<Vec<RocksState>> {
    let mut states = Vec::new();
    let mut iter = db.raw_iterator();
    iter.seek(META_STATE);
    while let Some((key, value)) = iter.item() {
        let Some(name) = key.strip_prefix(META_STATE) else {
            break;
        };
        let name = String::from_utf8(name.to_vec()).map_err(|_| StateError::Corrupt {
            name: String::from_utf8_lossy(name).into_owned(),
            reason: "the state name is not UTF-8".into(),
        })?;
        let stored: StoredDescriptor = postcard::from_bytes(value).map_err(|e| StateError::Corrupt {
            name: name.clone(),
            reason: format!("bad descriptor: {e}"),
        })?;
        states.push(RocksState {
            cf: cf_name(&name),
            descriptor: StateDescriptor {
                name,
                kind: stored.kind,
                ttl: stored
                    .ttl
                    .map(|(ttl_ms, update_on_read)| TtlConfig { ttl_ms, update_on_read }),
            },
        });
        iter.next();
    }
    iter.status().map_err(storage)?;
    Ok(states)
}

/// Links (immutable files) or copies (the others, which RocksDB may rewrite)
/// the native files of a snapshot into `folder`.
fn materialise(files: &FileStore, native: &[(String, FileRef)], folder: &Path) -> StateResult<()> {
    for (name, file) in native {
        if !is_plain_file_name(name) {
            return Err(StateError::Storage(format!(
                "a native snapshot names the file `{name}`, which is not a plain file name"
            )));
        }
        let source = files.path(file);
        let target = folder.join(name);
        if is_immutable(name) && std::fs::hard_link(&source, &target).is_ok() {
            continue;
        }
        std::fs::copy(&source, &target)
            .map_err(|e| StateError::Storage(format!("cannot copy {}: {e}", source.display())))?;
    }
    Ok(())
}

/// Opens the database in `folder` with every column family it has.
fn open_db(folder: &Path, read_only: bool) -> StateResult<Db> {
    let options = db_options();
    let names = if folder.join("CURRENT").exists() {
        Db::list_cf(&options, folder).map_err(storage)?
    } else {
        vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_string()]
    };
    let families = names
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
    if read_only {
        Db::open_cf_descriptors_read_only(&options, folder, families, false).map_err(storage)
    } else {
        Db::open_cf_descriptors(&options, folder, families).map_err(storage)
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
    ) -> Result<(Self, u64), String> {
        if let Some(handle) = native_match(handles, range) {
            let mut backend = Self::restore_native(dir, max_parallelism, options, files, handle)
                .map_err(|e| format!("cannot open the RocksDB snapshot: {e}"))?;
            if let Some(file) = &handle.canonical {
                super::restore::restore_canonical(&mut backend, timers, files, file, range)?;
            }
            let restored = backend.estimated_entries();
            return Ok((backend, restored));
        }
        let mut backend = Self::open(dir, max_parallelism, options).map_err(|e| e.to_string())?;
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

    /// A view that writes a RocksDB snapshot out in the canonical format.
    fn full_snapshot(&mut self) -> StateResult<Box<dyn StateView>> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<()>(1);
        let (job_tx, job_rx) = mpsc::channel::<PersistJob>();
        let (reply_tx, reply_rx) = mpsc::channel();
        let instance = Arc::clone(&self.instance);
        let states = self.states.clone();
        let thread = std::thread::Builder::new()
            .name("rocksdb-snapshot".into())
            .spawn(move || {
                let snapshot = instance.db.snapshot();
                if ready_tx.send(()).is_err() {
                    return;
                }
                // Holds the snapshot until the view is written or dropped.
                if let Ok(job) = job_rx.recv() {
                    let _ = reply_tx.send(write_canonical(&instance.db, &snapshot, &states, &job));
                }
            })
            .map_err(|e| StateError::Storage(format!("cannot start the snapshot thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| StateError::Storage("the snapshot thread stopped".into()))?;
        Ok(Box::new(FullView {
            jobs: Some(job_tx),
            replies: reply_rx,
            thread: Some(thread),
        }))
    }

    /// A view of a RocksDB checkpoint, written out as native files.
    fn native_snapshot(&mut self) -> StateResult<Box<dyn StateView>> {
        self.sequence += 1;
        let folder = self.dir.join(format!("snapshot-{}", self.sequence));
        if folder.exists() {
            std::fs::remove_dir_all(&folder).map_err(storage)?;
        }
        let checkpoint = Checkpoint::new(&self.instance.db).map_err(storage)?;
        checkpoint.create_checkpoint(&folder).map_err(storage)?;
        Ok(Box::new(NativeView {
            folder: OwnedDir(folder),
            db_dir: self.dir.join(DB_DIR),
            id: self.id.clone(),
            shared: Arc::clone(&self.shared),
            _instance: Arc::clone(&self.instance),
        }))
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

/// What the snapshot thread needs to write a full view out.
struct PersistJob {
    files: FileStore,
    name: String,
    timers: TimerService,
    key_groups: KeyGroupRange,
    max_parallelism: u32,
}

/// A RocksDB snapshot, held by its thread until it is written out.
struct FullView {
    jobs: Option<mpsc::Sender<PersistJob>>,
    replies: mpsc::Receiver<Result<KeyedStateHandle, StorageError>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FullView {
    /// Releases the snapshot (and the database, if the backend is gone)
    /// before returning.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl StateView for FullView {
    fn persist(
        mut self: Box<Self>,
        files: &FileStore,
        name: &str,
        timers: &TimerService,
        key_groups: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<KeyedStateHandle, StorageError> {
        let job = PersistJob {
            files: files.clone(),
            name: name.to_string(),
            timers: timers.clone(),
            key_groups,
            max_parallelism,
        };
        let stopped = || StorageError::Format("the RocksDB snapshot thread stopped".into());
        let jobs = self.jobs.take().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())?;
        self.replies.recv().map_err(|_| stopped())?
    }
}

/// Writes every state of `snapshot`, then the timers, as a canonical snapshot.
fn write_canonical(
    db: &Db,
    snapshot: &SnapshotWithThreadMode<'_, Db>,
    states: &[RocksState],
    job: &PersistJob,
) -> Result<KeyedStateHandle, StorageError> {
    let mut file = CanonicalFile::create(&job.files, &job.name)?;
    for (index, state) in states.iter().enumerate() {
        let descriptor = &state.descriptor;
        let index = index as u32;
        file.state(index, descriptor)?;
        let cf = column_family(db, state).map_err(format_error)?;
        let mut iter = snapshot.raw_iterator_cf_opt(&cf, scan_options());
        iter.seek_to_first();
        while let Some((raw, value)) = iter.item() {
            let (key_group, key, user_key) = decode_key(raw)
                .ok_or_else(|| StorageError::Format(format!("a malformed key in the state `{}`", descriptor.name)))?;
            file.entry(index, key_group, key, user_key, value)?;
            iter.next();
        }
        iter.status().map_err(format_error)?;
    }
    file.finish(NAME, &job.timers, job.key_groups, job.max_parallelism)
}

/// A RocksDB checkpoint in a scratch folder, deleted with the view.
struct NativeView {
    folder: OwnedDir,
    /// The live database's folder (to forget SSTs it no longer has).
    db_dir: PathBuf,
    id: String,
    shared: Arc<Mutex<HashMap<String, FileRef>>>,
    /// Keeps the backend's folder, which holds `folder`, alive.
    _instance: Arc<Instance>,
}

impl NativeView {
    /// Stores the immutable file `file` once, under a name that later
    /// checkpoints of this database find again.
    fn share(&self, files: &FileStore, path: &Path, file: &str) -> Result<FileRef, StorageError> {
        let known = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(file)
            .cloned();
        if let Some(known) = known
            && files.path(&known).is_file()
        {
            return Ok(known);
        }
        let stored = files.adopt(path, &format!("{}-{file}", self.id))?;
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(file.to_string(), stored.clone());
        Ok(stored)
    }
}

/// Copies `source` into the store as `name`.
fn copy_into(files: &FileStore, source: &Path, name: &str) -> Result<FileRef, StorageError> {
    let mut input = File::open(source).map_err(io_error("cannot open", source))?;
    let mut output = files.create(name)?;
    std::io::copy(&mut input, &mut output).map_err(io_error("cannot copy", source))?;
    output.finish()
}

impl StateView for NativeView {
    fn persist(
        self: Box<Self>,
        files: &FileStore,
        name: &str,
        timers: &TimerService,
        key_groups: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<KeyedStateHandle, StorageError> {
        let folder = &self.folder.0;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(folder).map_err(io_error("cannot list", folder))? {
            let entry = entry.map_err(io_error("cannot list", folder))?;
            if entry.file_type().map_err(io_error("cannot list", folder))?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        let mut native = Vec::with_capacity(names.len());
        for file in names {
            let path = folder.join(&file);
            let stored = if is_immutable(&file) {
                self.share(files, &path, &file)?
            } else {
                copy_into(files, &path, &format!("{name}-{file}"))?
            };
            native.push((file, stored));
        }
        // Forget the SSTs that compactions have deleted since.
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|file, _| self.db_dir.join(file).exists());
        let output = files.create(&format!("{name}.timers"))?;
        let mut writer = SnapshotWriter::new(output).map_err(format_error)?;
        timers.write_items(&mut writer, max_parallelism).map_err(format_error)?;
        let timers = writer.finish().finish()?;
        Ok(KeyedStateHandle {
            backend: NAME.into(),
            key_groups: (key_groups.start, key_groups.end),
            canonical: Some(timers),
            native,
        })
    }
}

/// Restores the entries of the key groups `range` from the native snapshot
/// `handle` into `backend`, registering every state the snapshot declares.
/// The snapshot is opened read-only in a temporary folder under `scratch`.
/// Returns the number of entries restored.
pub(crate) fn restore_native_entries(
    backend: &mut dyn KeyedStateBackend,
    files: &FileStore,
    handle: &KeyedStateHandle,
    range: KeyGroupRange,
    scratch: &Path,
) -> Result<u64, String> {
    let folder = scratch.join(format!("weir-native-{}", unique_id(scratch)));
    std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    // Declared before the database, so deleted after it is closed.
    let _folder = OwnedDir(folder.clone());
    materialise(files, &handle.native, &folder).map_err(|e| e.to_string())?;
    let db = open_db(&folder, true).map_err(|e| format!("cannot open a RocksDB snapshot: {e}"))?;
    let mut restored = 0;
    let Ok(first) = u16::try_from(range.start) else {
        return Ok(0);
    };
    for state in load_states(&db).map_err(|e| e.to_string())? {
        let id = backend.register(&state.descriptor).map_err(|e| e.to_string())?;
        let cf = column_family(&db, &state).map_err(|e| e.to_string())?;
        let mut iter = db.raw_iterator_cf_opt(&cf, scan_options());
        iter.seek(first.to_be_bytes());
        while let Some((raw, value)) = iter.item() {
            let (key_group, key, user_key) =
                decode_key(raw).ok_or_else(|| format!("a malformed key in the state `{}`", state.descriptor.name))?;
            if key_group >= range.end {
                break;
            }
            backend
                .restore_entry(id, key, user_key, value)
                .map_err(|e| e.to_string())?;
            restored += 1;
            iter.next();
        }
        iter.status().map_err(|e| e.to_string())?;
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::heap::HeapBackend;
    use crate::state::restore::restore_keyed;
    use crate::state::snapshot::SnapshotItem;
    use crate::state::snapshot::SnapshotReader;
    use crate::storage::files::CheckpointStorage;
    use crate::storage::manifest::{Manifest, TaskState};
    use crate::storage::{CheckpointId, TaskId};
    use crate::time::TimeDomain;

    const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 128 };

    fn descriptor(name: &str, kind: StateKind) -> StateDescriptor {
        StateDescriptor {
            name: name.into(),
            kind,
            ttl: None,
        }
    }

    fn rocks(dir: &Path, incremental: bool) -> RocksDbBackend {
        RocksDbBackend::open(dir, 128, RocksDbOptions { incremental }).unwrap()
    }

    /// Runs `check` against the heap backend and both RocksDB modes.
    fn for_every_backend(check: impl Fn(&mut dyn KeyedStateBackend)) {
        check(&mut HeapBackend::new());
        for incremental in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            check(&mut rocks(&dir.path().join("state"), incremental));
        }
    }

    #[test]
    fn entries_are_scoped_to_the_current_key() {
        for_every_backend(|backend| {
            let count = backend.register(&descriptor("count", StateKind::Value)).unwrap();
            backend.set_current_key(b"a");
            backend.put(count, b"", b"1").unwrap();
            backend.set_current_key(b"b");
            assert_eq!(backend.get(count, b"").unwrap(), None);
            backend.put(count, b"", b"2").unwrap();
            backend.set_current_key(b"a");
            assert_eq!(backend.current_key(), Some(&b"a"[..]));
            assert_eq!(backend.get(count, b"").unwrap(), Some(b"1".to_vec()));
            backend.clear(count).unwrap();
            assert_eq!(backend.get(count, b"").unwrap(), None);
            assert_eq!(backend.key_count(), 1);
        });
    }

    #[test]
    fn map_entries_come_back_ordered_by_user_key() {
        for_every_backend(|backend| {
            let map = backend.register(&descriptor("m", StateKind::Map)).unwrap();
            backend.set_current_key(b"k");
            backend.put(map, b"zeta", b"1").unwrap();
            backend.put(map, b"alpha", b"2").unwrap();
            backend.delete(map, b"nothing").unwrap();
            let keys: Vec<_> = backend.entries(map).unwrap().into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, vec![b"alpha".to_vec(), b"zeta".to_vec()]);
        });
    }

    #[test]
    fn a_name_cannot_change_kind_and_access_needs_a_key() {
        for_every_backend(|backend| {
            let value = backend.register(&descriptor("s", StateKind::Value)).unwrap();
            assert_eq!(backend.register(&descriptor("s", StateKind::Value)).unwrap(), value);
            let err = backend.register(&descriptor("s", StateKind::List)).unwrap_err();
            assert_eq!(
                err.to_string(),
                "state `s` is already declared as value state; it cannot also be list state"
            );
            assert!(matches!(backend.get(value, b""), Err(StateError::NoCurrentKey)));
            assert!(matches!(backend.put(value, b"", b"x"), Err(StateError::NoCurrentKey)));
            assert!(matches!(backend.entries(value), Err(StateError::NoCurrentKey)));
            assert!(matches!(backend.clear(value), Err(StateError::NoCurrentKey)));
            assert_eq!(backend.current_key(), None);
            backend.set_current_key(b"k");
            assert!(matches!(
                backend.get(StateId(99), b""),
                Err(StateError::UnknownState(99))
            ));
        });
    }

    #[test]
    fn keys_that_prefix_each_other_stay_apart() {
        for_every_backend(|backend| {
            let map = backend.register(&descriptor("m", StateKind::Map)).unwrap();
            let value = backend.register(&descriptor("v", StateKind::Value)).unwrap();
            for key in [&b"a"[..], b"ab", b"", b"\xff\xff"] {
                backend.set_current_key(key);
                backend.put(map, b"x", key).unwrap();
                backend.put(map, b"y", key).unwrap();
                backend.put(value, b"", key).unwrap();
            }
            backend.set_current_key(b"a");
            assert_eq!(
                backend.entries(map).unwrap(),
                vec![(b"x".to_vec(), b"a".to_vec()), (b"y".to_vec(), b"a".to_vec())]
            );
            backend.clear(map).unwrap();
            assert!(backend.entries(map).unwrap().is_empty());
            assert_eq!(backend.get(value, b"").unwrap(), Some(b"a".to_vec()));
            backend.set_current_key(b"ab");
            assert_eq!(backend.entries(map).unwrap().len(), 2);
            backend.set_current_key(b"");
            assert_eq!(backend.entries(map).unwrap().len(), 2);
            assert_eq!(backend.key_count(), 4);
        });
    }

    #[test]
    fn a_rocksdb_backend_is_named_and_cleans_up_its_folder() {
        for incremental in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let folder = dir.path().join("state");
            std::fs::create_dir_all(folder.join("stale")).unwrap();
            let mut backend = rocks(&folder, incremental);
            assert_eq!(backend.name(), "rocksdb");
            assert_eq!(backend.dir(), folder);
            assert!(!folder.join("stale").exists(), "leftovers are cleared");
            let value = backend.register(&descriptor("v", StateKind::Value)).unwrap();
            backend.set_current_key(b"k");
            backend.put(value, b"", b"1").unwrap();
            let view = backend.snapshot().unwrap();
            drop(backend);
            assert!(folder.exists(), "a pending snapshot keeps the folder");
            drop(view);
            assert!(!folder.exists());
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(RocksDbBackend::open(&dir.path().join("x"), 1 << 17, RocksDbOptions::default()).is_err());
    }

    fn storage(dir: &Path) -> CheckpointStorage {
        CheckpointStorage::open(dir, "job").unwrap()
    }

    fn persist(
        view: Box<dyn StateView>,
        storage: &CheckpointStorage,
        name: &str,
        timers: &TimerService,
        range: KeyGroupRange,
    ) -> KeyedStateHandle {
        view.persist(storage.files(), name, timers, range, 128).unwrap()
    }

    #[test]
    fn a_snapshot_is_not_affected_by_later_writes() {
        for incremental in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let storage = storage(&dir.path().join("chk"));
            let mut backend = rocks(&dir.path().join("state"), incremental);
            let value = backend.register(&descriptor("v", StateKind::Value)).unwrap();
            backend.set_current_key(b"k");
            backend.put(value, b"", b"before").unwrap();
            let view = backend.snapshot().unwrap();
            backend.put(value, b"", b"after").unwrap();
            backend.set_current_key(b"other");
            backend.put(value, b"", b"new").unwrap();
            let handle = persist(view, &storage, "t", &TimerService::new(), ALL);
            assert_eq!(handle.backend, "rocksdb");
            assert_eq!(handle.native.is_empty(), !incremental);
            let mut heap = HeapBackend::new();
            restore_keyed(&mut heap, &mut TimerService::new(), storage.files(), &[&handle], ALL).unwrap();
            let value = heap.register(&descriptor("v", StateKind::Value)).unwrap();
            heap.set_current_key(b"k");
            assert_eq!(heap.get(value, b"").unwrap(), Some(b"before".to_vec()));
            assert_eq!(heap.key_count(), 1, "incremental: {incremental}");
        }
    }

    const KEYS: usize = 300;

    fn key(i: usize) -> Vec<u8> {
        format!("key-{i}").into_bytes()
    }

    fn states() -> Vec<StateDescriptor> {
        vec![
            descriptor("count", StateKind::Value),
            StateDescriptor {
                name: "seen".into(),
                kind: StateKind::Map,
                ttl: Some(TtlConfig {
                    ttl_ms: 60_000,
                    update_on_read: true,
                }),
            },
            descriptor("items", StateKind::List),
        ]
    }

    /// Writes keys `range` into every state, and a timer per key.
    fn fill(backend: &mut dyn KeyedStateBackend, timers: &mut TimerService, keys: std::ops::Range<usize>, tag: &str) {
        let ids: Vec<_> = states().iter().map(|d| backend.register(d).unwrap()).collect();
        for i in keys {
            backend.set_current_key(&key(i));
            backend.put(ids[0], b"", format!("{tag}{i}").as_bytes()).unwrap();
            for m in 0..i % 4 {
                backend.put(ids[1], format!("m{m}").as_bytes(), tag.as_bytes()).unwrap();
            }
            if i % 5 == 0 {
                backend.put(ids[2], b"", b"list").unwrap();
            }
            let domain = if i % 2 == 0 {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            timers.register(domain, &key(i), i as i64);
        }
    }

    type Dump = BTreeMap<(String, Vec<u8>), Vec<(Vec<u8>, Vec<u8>)>>;

    /// The states a backend declares, by name, before anything registers them.
    fn declared(backend: &dyn KeyedStateBackend) -> Vec<StateDescriptor> {
        let mut declared: Vec<_> = (0..)
            .map_while(|id| backend.descriptor(StateId(id)).ok().cloned())
            .collect();
        declared.sort_by(|a, b| a.name.cmp(&b.name));
        declared
    }

    fn expected_declared() -> Vec<StateDescriptor> {
        let mut states = states();
        states.sort_by(|a, b| a.name.cmp(&b.name));
        states
    }

    /// Every non-empty (state, key) of the first `KEYS` keys, with its entries.
    fn dump(backend: &mut dyn KeyedStateBackend) -> Dump {
        let mut dump = BTreeMap::new();
        for descriptor in states() {
            let id = backend.register(&descriptor).unwrap();
            assert_eq!(backend.descriptor(id).unwrap(), &descriptor);
            for i in 0..KEYS {
                backend.set_current_key(&key(i));
                let entries = backend.entries(id).unwrap();
                if !entries.is_empty() {
                    dump.insert((descriptor.name.clone(), key(i)), entries);
                }
            }
        }
        dump
    }

    fn timer_items(timers: &TimerService) -> Vec<SnapshotItem> {
        let mut writer = SnapshotWriter::new(Vec::new()).unwrap();
        timers.write_items(&mut writer, 128).unwrap();
        let bytes = writer.finish();
        let mut reader = SnapshotReader::new(bytes.as_slice()).unwrap();
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            items.push(item);
        }
        items
    }

    /// Restores `handles` for `range` into a heap backend.
    fn into_heap(
        storage: &CheckpointStorage,
        handles: &[&KeyedStateHandle],
        range: KeyGroupRange,
    ) -> (Dump, TimerService, usize) {
        let mut heap = HeapBackend::new();
        let mut timers = TimerService::new();
        restore_keyed(&mut heap, &mut timers, storage.files(), handles, range).unwrap();
        assert_eq!(declared(&heap), expected_declared());
        let count = heap.key_count();
        (dump(&mut heap), timers, count)
    }

    /// Restores `handles` for `range` into a RocksDB backend in `dir`.
    fn into_rocks(
        dir: &Path,
        storage: &CheckpointStorage,
        handles: &[&KeyedStateHandle],
        range: KeyGroupRange,
        incremental: bool,
    ) -> (RocksDbBackend, TimerService) {
        let mut timers = TimerService::new();
        let (backend, _) = RocksDbBackend::restore(
            dir,
            128,
            RocksDbOptions { incremental },
            storage.files(),
            handles,
            range,
            &mut timers,
        )
        .unwrap();
        assert_eq!(declared(&backend), expected_declared());
        (backend, timers)
    }

    #[test]
    fn a_full_snapshot_restores_identically_into_heap_and_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir.path().join("chk"));
        let mut backend = rocks(&dir.path().join("state"), false);
        let mut timers = TimerService::new();
        fill(&mut backend, &mut timers, 0..KEYS, "v");
        let expected = dump(&mut backend);
        assert_eq!(expected.len(), KEYS + KEYS / 4 * 3 + KEYS / 5);
        let handle = persist(backend.snapshot().unwrap(), &storage, "full", &timers, ALL);
        assert!(handle.native.is_empty());
        assert!(!RocksDbBackend::can_restore_natively(&[&handle], ALL));

        let (heap, heap_timers, heap_keys) = into_heap(&storage, &[&handle], ALL);
        assert_eq!(heap, expected);
        assert_eq!(heap_keys, KEYS);
        assert_eq!(timer_items(&heap_timers), timer_items(&timers));

        let (mut restored, restored_timers) =
            into_rocks(&dir.path().join("restored"), &storage, &[&handle], ALL, false);
        assert_eq!(dump(&mut restored), expected);
        assert_eq!(restored.key_count(), KEYS);
        assert_eq!(timer_items(&restored_timers), timer_items(&timers));
        // The time-to-live came back with the descriptor.
        let seen = restored.register(&states()[1]).unwrap();
        assert_eq!(restored.descriptor(seen).unwrap().ttl, states()[1].ttl);
    }

    #[test]
    fn a_heap_snapshot_restores_into_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir.path().join("chk"));
        let mut heap = HeapBackend::new();
        let mut timers = TimerService::new();
        fill(&mut heap, &mut timers, 0..KEYS, "h");
        let expected = dump(&mut heap);
        let handle = persist(heap.snapshot().unwrap(), &storage, "heap", &timers, ALL);
        for incremental in [false, true] {
            let (mut restored, restored_timers) =
                into_rocks(&dir.path().join("restored"), &storage, &[&handle], ALL, incremental);
            assert_eq!(dump(&mut restored), expected);
            assert_eq!(timer_items(&restored_timers), timer_items(&timers));
            // And the restored state checkpoints again.
            let again = persist(
                restored.snapshot().unwrap(),
                &storage,
                &format!("again-{incremental}"),
                &restored_timers,
                ALL,
            );
            assert_eq!(into_heap(&storage, &[&again], ALL).0, expected);
        }
    }

    fn manifest(id: u64, handle: &KeyedStateHandle) -> Manifest {
        Manifest {
            id: CheckpointId(id),
            job: "job".into(),
            timestamp_ms: 0,
            max_parallelism: 128,
            tasks: vec![TaskState {
                task: TaskId {
                    uid: "op".into(),
                    subtask: 0,
                },
                parallelism: 1,
                source_position: None,
                transactions: Vec::new(),
                keyed: Some(handle.clone()),
                finished: false,
                source_splits: Vec::new(),
                watermarks: Default::default(),
            }],
            modules: Vec::new(),
        }
    }

    fn ssts(handle: &KeyedStateHandle) -> Vec<&(String, FileRef)> {
        handle
            .native
            .iter()
            .filter(|(name, _)| name.ends_with(".sst"))
            .collect()
    }

    #[test]
    fn incremental_checkpoints_share_unchanged_files_and_survive_retention() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir.path().join("chk"));
        let mut backend = rocks(&dir.path().join("state"), true);
        let mut timers = TimerService::new();
        fill(&mut backend, &mut timers, 0..200, "one");
        let first_state = dump(&mut backend);
        let first_timers = timer_items(&timers);
        let first = persist(backend.snapshot().unwrap(), &storage, "chk1-op-0", &timers, ALL);
        storage.commit(&manifest(1, &first)).unwrap();

        // A few more keys, and one changed.
        fill(&mut backend, &mut timers, 200..KEYS, "two");
        fill(&mut backend, &mut timers, 0..1, "changed");
        let second_state = dump(&mut backend);
        let second = persist(backend.snapshot().unwrap(), &storage, "chk2-op-0", &timers, ALL);
        storage.commit(&manifest(2, &second)).unwrap();

        let options = &first
            .native
            .iter()
            .find(|(name, _)| name.starts_with("OPTIONS-"))
            .unwrap()
            .1;
        let options = std::fs::read_to_string(storage.files().path(options)).unwrap();
        assert!(options.contains("avoid_flush_during_shutdown=true"), "{options}");
        assert!(first.canonical.is_some() && second.canonical.is_some());
        assert!(first.native.iter().any(|(name, _)| name == "CURRENT"));
        assert!(first.native.iter().any(|(name, _)| name.starts_with("MANIFEST-")));
        assert!(!ssts(&first).is_empty());
        for sst in ssts(&first) {
            assert!(
                second.native.contains(sst),
                "{} is shared by the second checkpoint",
                sst.0
            );
        }
        assert!(
            ssts(&second).len() > ssts(&first).len(),
            "the second checkpoint adds files"
        );
        // Metadata files are stored afresh for every checkpoint.
        let first_current = &first.native.iter().find(|(name, _)| name == "CURRENT").unwrap().1;
        let second_current = &second.native.iter().find(|(name, _)| name == "CURRENT").unwrap().1;
        assert_ne!(first_current.name, second_current.name);

        // Each checkpoint restores to its own state, natively or entry by entry.
        let (mut one, one_timers) = into_rocks(&dir.path().join("r1"), &storage, &[&first], ALL, true);
        assert_eq!(dump(&mut one), first_state);
        assert_eq!(timer_items(&one_timers), first_timers);
        let (mut two, two_timers) = into_rocks(&dir.path().join("r2"), &storage, &[&second], ALL, true);
        assert_eq!(dump(&mut two), second_state);
        assert_eq!(timer_items(&two_timers), timer_items(&timers));
        assert_eq!(into_heap(&storage, &[&second], ALL).0, second_state);
        drop((one, two));

        // Dropping the first checkpoint keeps the files the second shares.
        storage.retain(1).unwrap();
        assert!(
            !storage.files().path(first_current).exists(),
            "unshared files are deleted"
        );
        let loaded = storage.load(CheckpointId(2)).unwrap();
        let handle = loaded.tasks[0].keyed.as_ref().unwrap();
        assert!(RocksDbBackend::can_restore_natively(&[handle], ALL));
        let (mut two, two_timers) = into_rocks(&dir.path().join("r3"), &storage, &[handle], ALL, true);
        assert_eq!(dump(&mut two), second_state);
        assert_eq!(timer_items(&two_timers), timer_items(&timers));

        // A natively restored database shares its files with its own checkpoints.
        fill(&mut two, &mut TimerService::new(), 0..1, "third");
        let third = persist(two.snapshot().unwrap(), &storage, "chk3-op-0", &two_timers, ALL);
        for sst in ssts(&second) {
            assert!(third.native.contains(sst), "{} is shared after a restore", sst.0);
        }
    }

    #[test]
    fn a_restore_keeps_only_the_subtasks_key_groups() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir.path().join("chk"));
        let halves = [
            KeyGroupRange { start: 0, end: 64 },
            KeyGroupRange { start: 64, end: 128 },
        ];
        for incremental in [false, true] {
            let mut backend = rocks(&dir.path().join("state"), incremental);
            let mut timers = TimerService::new();
            fill(&mut backend, &mut timers, 0..KEYS, "v");
            let expected = dump(&mut backend);
            let handle = persist(
                backend.snapshot().unwrap(),
                &storage,
                &format!("all-{incremental}"),
                &timers,
                ALL,
            );
            drop(backend);
            let mut keys = 0;
            let mut timer_count = 0;
            for (index, half) in halves.into_iter().enumerate() {
                assert!(!RocksDbBackend::can_restore_natively(&[&handle], half));
                let (mut part, part_timers) = into_rocks(
                    &dir.path().join(format!("half-{index}")),
                    &storage,
                    &[&handle],
                    half,
                    incremental,
                );
                let (heap, heap_timers, heap_keys) = into_heap(&storage, &[&handle], half);
                let restored = dump(&mut part);
                assert_eq!(restored, heap);
                let in_half: Dump = expected
                    .iter()
                    .filter(|((_, key), _)| half.contains(KeyGroup::of(key, 128)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(restored, in_half);
                assert_eq!(part.key_count(), heap_keys);
                keys += heap_keys;
                assert_eq!(timer_items(&part_timers), timer_items(&heap_timers));
                timer_count += part_timers.len();
            }
            assert_eq!(keys, KEYS);
            assert_eq!(timer_count, KEYS);
        }
    }

    #[test]
    fn states_may_be_registered_before_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir.path().join("chk"));
        let mut source = rocks(&dir.path().join("source"), true);
        let mut timers = TimerService::new();
        fill(&mut source, &mut timers, 0..KEYS, "v");
        let expected = dump(&mut source);
        let handle = persist(source.snapshot().unwrap(), &storage, "native", &timers, ALL);
        let mut target = rocks(&dir.path().join("target"), false);
        let other = target.register(&descriptor("other", StateKind::Value)).unwrap();
        let count = target.register(&descriptor("count", StateKind::Value)).unwrap();
        let mut restored_timers = TimerService::new();
        let scratch = dir.path().join("scratch");
        let restored = crate::state::restore::restore_keyed_in(
            &mut target,
            &mut restored_timers,
            storage.files(),
            &[&handle],
            ALL,
            &scratch,
        )
        .unwrap();
        assert_eq!(restored as usize, expected.values().map(Vec::len).sum::<usize>());
        assert_eq!(target.register(&descriptor("count", StateKind::Value)).unwrap(), count);
        assert_eq!(target.descriptor(other).unwrap().name, "other");
        assert_eq!(dump(&mut target), expected);
        assert_eq!(timer_items(&restored_timers), timer_items(&timers));
        assert_eq!(
            std::fs::read_dir(&scratch).unwrap().count(),
            0,
            "the scratch folder is cleaned"
        );
    }

    #[test]
    fn a_native_snapshot_of_other_key_groups_is_read_entry_by_entry() {
        // Two subtasks' native snapshots restored into one subtask (scale in).
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir.path().join("chk"));
        let halves = [
            KeyGroupRange { start: 0, end: 64 },
            KeyGroupRange { start: 64, end: 128 },
        ];
        let mut whole = HeapBackend::new();
        let mut whole_timers = TimerService::new();
        fill(&mut whole, &mut whole_timers, 0..KEYS, "v");
        let whole_handle = persist(whole.snapshot().unwrap(), &storage, "whole", &whole_timers, ALL);
        let mut handles = Vec::new();
        for (index, half) in halves.into_iter().enumerate() {
            let (mut part, part_timers) = into_rocks(
                &dir.path().join(format!("half-{index}")),
                &storage,
                &[&whole_handle],
                half,
                true,
            );
            handles.push(persist(
                part.snapshot().unwrap(),
                &storage,
                &format!("half-{index}"),
                &part_timers,
                half,
            ));
        }
        let handles: Vec<_> = handles.iter().collect();
        assert!(!RocksDbBackend::can_restore_natively(&handles, ALL));
        assert!(RocksDbBackend::can_restore_natively(&handles, halves[1]));
        let (mut merged, merged_timers) = into_rocks(&dir.path().join("merged"), &storage, &handles, ALL, true);
        assert_eq!(dump(&mut merged), dump(&mut whole));
        assert_eq!(timer_items(&merged_timers), timer_items(&whole_timers));
    }
}
