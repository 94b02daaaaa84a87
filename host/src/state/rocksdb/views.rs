//! Snapshots of the RocksDB backend written out: full (canonical format)
//! or incremental (native SST files shared between checkpoints).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use rocksdb::SnapshotWithThreadMode;
use rocksdb::checkpoint::Checkpoint;

use crate::state::TimerService;
use crate::state::restore::RestoreError;
use crate::state::snapshot::{CanonicalFile, SnapshotWriter};
use crate::state::{KeyGroupRange, KeyedStateBackend, StateError, StateResult, StateView};
use crate::storage::files::{FileRef, FileStore, StorageError};
use crate::storage::manifest::KeyedStateHandle;

use super::db::*;
use super::*;

/// What the snapshot thread needs to write a full view out.
pub(super) struct PersistJob {
    files: FileStore,
    name: String,
    timers: TimerService,
    key_groups: KeyGroupRange,
    max_parallelism: u32,
}

/// A RocksDB snapshot, held by its thread until it is written out.
pub(super) struct FullView {
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
pub(super) fn write_canonical(
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
pub(super) struct NativeView {
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
pub(super) fn copy_into(files: &FileStore, source: &Path, name: &str) -> Result<FileRef, StorageError> {
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
) -> Result<u64, RestoreError> {
    let folder = scratch.join(format!("weir-native-{}", unique_id(scratch)));
    std::fs::create_dir_all(&folder).map_err(|source| RestoreError::Scratch {
        path: folder.clone(),
        source,
    })?;
    // Declared before the database, so deleted after it is closed.
    let _folder = OwnedDir(folder.clone());
    materialise(files, &handle.native, &folder)?;
    let db = open_db(&folder, true).map_err(RestoreError::OpenScratch)?;
    let mut restored = 0;
    let Ok(first) = u16::try_from(range.start) else {
        return Ok(0);
    };
    for state in load_states(&db)? {
        let id = backend.register(&state.descriptor)?;
        let cf = column_family(&db, &state)?;
        let mut iter = db.raw_iterator_cf_opt(&cf, scan_options());
        iter.seek(first.to_be_bytes());
        while let Some((raw, value)) = iter.item() {
            let (key_group, key, user_key) =
                decode_key(raw).ok_or_else(|| RestoreError::MalformedKey(state.descriptor.name.clone()))?;
            if key_group >= range.end {
                break;
            }
            backend.restore_entry(id, key, user_key, value)?;
            restored += 1;
            iter.next();
        }
        iter.status()?;
    }
    Ok(restored)
}

impl RocksDbBackend {
    /// A view that writes a RocksDB snapshot out in the canonical format.
    pub(super) fn full_snapshot(&mut self) -> StateResult<Box<dyn StateView>> {
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
    pub(super) fn native_snapshot(&mut self) -> StateResult<Box<dyn StateView>> {
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
