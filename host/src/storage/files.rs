//! Checkpoint storage in a local folder.
//!
//! ```text
//! <dir>/<job>/
//!   files/            state files, shared by checkpoints (immutable, unique names)
//!   chk-000042/_manifest
//! ```
//!
//! A checkpoint is complete when its manifest exists: the manifest is written
//! to a temporary name and renamed, so a crash never leaves half of one.
//! Every state file is listed in the manifest with its size and SHA-256, and
//! is checked before a restore; a checkpoint that fails the check is refused
//! and recovery falls back to the one before. State files are shared (a
//! RocksDB SST file that did not change is referenced by every checkpoint
//! that contains it) and deleted only when no retained manifest refers to
//! them.
//!
//! A checkpoint that fails leaves files behind: its own state files
//! (`chk<id>-…`, never shared), their temporaries (`.<name>.tmp`) and perhaps
//! a checkpoint folder without a manifest. The coordinator deletes them when
//! it abandons the checkpoint ([`CheckpointStorage::discard`]) — all but
//! those a late acknowledgement may still name, which go when the attempt
//! ends ([`CheckpointStorage::discard_all`]) — and every run starts by
//! sweeping whatever is left ([`CheckpointStorage::sweep_orphans`]), so a
//! full disk does not stay full.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CheckpointId;
use super::manifest::Manifest;

/// Errors of checkpoint storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint failed its integrity check.
    #[error("checkpoint {id} is corrupt: {reason}")]
    Corrupt {
        /// The checkpoint.
        id: CheckpointId,
        /// What is wrong.
        #[source]
        reason: IntegrityError,
    },
    /// A state file could not be encoded or decoded.
    #[error("{0}")]
    Format(String),
    /// The job has complete checkpoints, but none passes its checks.
    #[error(
        "cannot restore the latest checkpoint: no checkpoint in {} is intact ({}); run without --restore to start from the beginning",
        .dir.display(),
        joined(.refused)
    )]
    NoIntactCheckpoint {
        /// The job's checkpoint folder.
        dir: PathBuf,
        /// Why each checkpoint was refused, newest first.
        refused: Vec<StorageError>,
    },
}

/// Why a manifest or a stored file fails its integrity check.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// The bytes do not start like a manifest, or are too short for one.
    #[error("the manifest is not a Weir checkpoint manifest (bad magic or truncated)")]
    NotAManifest,
    /// The manifest's own checksum does not match.
    #[error("checksum mismatch in the manifest")]
    ManifestChecksum,
    /// The manifest's checksum matches but its body does not decode.
    #[error("the manifest cannot be decoded: {0}")]
    Undecodable(#[source] postcard::Error),
    /// A stored file's size or SHA-256 differs from its reference.
    #[error("checksum mismatch in {0}")]
    FileChecksum(String),
    /// A stored file could not be read to be checked.
    #[error(transparent)]
    Unreadable(Box<StorageError>),
}

/// `errors`, separated by semicolons.
fn joined(errors: &[StorageError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A state file of a checkpoint: its name in `files/`, size and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Name in the shared `files/` folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

/// The shared folder of state files.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The store in folder `dir` (which must exist).
    pub fn at(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// The path of a stored file.
    pub fn path(&self, file: &FileRef) -> PathBuf {
        self.dir.join(&file.name)
    }

    /// Starts writing the file `name`.
    pub fn create(&self, name: &str) -> Result<FileWriter, StorageError> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&temporary).map_err(io("cannot create", &temporary))?;
        Ok(FileWriter {
            name: name.to_string(),
            path,
            temporary,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Stores an existing immutable file under `name` (a hard link when
    /// possible, a copy otherwise), or reuses it if it is already stored.
    pub fn adopt(&self, source: &Path, name: &str) -> Result<FileRef, StorageError> {
        let path = self.dir.join(name);
        if !path.exists() && std::fs::hard_link(source, &path).is_err() {
            let temporary = self.dir.join(format!(".{name}.tmp"));
            let copied = std::fs::copy(source, &temporary)
                .map_err(io("cannot copy", source))
                .and_then(|_| std::fs::rename(&temporary, &path).map_err(io("cannot rename", &temporary)));
            if let Err(error) = copied {
                // A full disk keeps no half copy.
                let _ = std::fs::remove_file(&temporary);
                return Err(error);
            }
        }
        let (size, sha256) = digest_file(&path)?;
        Ok(FileRef {
            name: name.to_string(),
            size,
            sha256,
        })
    }

    /// Checks a stored file against its reference.
    pub fn verify(&self, file: &FileRef) -> Result<(), IntegrityError> {
        let path = self.path(file);
        let (size, sha256) = digest_file(&path).map_err(|e| IntegrityError::Unreadable(Box::new(e)))?;
        if size != file.size || sha256 != file.sha256 {
            return Err(IntegrityError::FileChecksum(file.name.clone()));
        }
        Ok(())
    }
}

/// Streams a state file into the store, hashing as it goes.
pub struct FileWriter {
    name: String,
    path: PathBuf,
    temporary: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
}

impl Write for FileWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl FileWriter {
    /// Makes the file durable and visible under its name.
    pub fn finish(mut self) -> Result<FileRef, StorageError> {
        self.out.flush().map_err(io("cannot write", &self.temporary))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(io("cannot sync", &self.temporary))?;
        std::fs::rename(&self.temporary, &self.path).map_err(io("cannot rename", &self.temporary))?;
        Ok(FileRef {
            name: self.name,
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

fn digest_file(path: &Path) -> Result<(u64, String), StorageError> {
    let mut file = File::open(path).map_err(io("cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checkpoints of one job.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    root: PathBuf,
    files: FileStore,
}

const MANIFEST: &str = "_manifest";

impl CheckpointStorage {
    /// Opens (creating it if needed) the storage of `job` under `dir`.
    pub fn open(dir: &Path, job: &str) -> Result<Self, StorageError> {
        let root = dir.join(job);
        let files = root.join("files");
        std::fs::create_dir_all(&files).map_err(io("cannot create", &files))?;
        Ok(Self {
            root,
            files: FileStore { dir: files },
        })
    }

    /// Opens the storage that holds the checkpoint folder `dir`
    /// (`…/<job>/chk-000042`) and loads that checkpoint.
    pub fn load_dir(dir: &Path) -> Result<(Self, Manifest), StorageError> {
        let not_a_checkpoint = || StorageError::Io {
            what: "not a checkpoint folder (expected …/<job>/chk-NNNNNN):",
            path: dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("chk-"))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(not_a_checkpoint)?;
        let root = dir.parent().ok_or_else(not_a_checkpoint)?.to_path_buf();
        let storage = Self {
            files: FileStore {
                dir: root.join("files"),
            },
            root,
        };
        let manifest = storage.load(CheckpointId(id))?;
        Ok((storage, manifest))
    }

    /// The job's checkpoint folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The shared state files.
    pub fn files(&self) -> &FileStore {
        &self.files
    }

    fn checkpoint_dir(&self, id: CheckpointId) -> PathBuf {
        self.root.join(format!("chk-{:06}", id.0))
    }

    /// Writes the manifest: from now on checkpoint `manifest.id` is complete.
    pub fn commit(&self, manifest: &Manifest) -> Result<(), StorageError> {
        let dir = self.checkpoint_dir(manifest.id);
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let bytes = manifest.encode()?;
        let temporary = dir.join(".manifest.tmp");
        let path = dir.join(MANIFEST);
        let mut file = File::create(&temporary).map_err(io("cannot create", &temporary))?;
        file.write_all(&bytes).map_err(io("cannot write", &temporary))?;
        file.sync_all().map_err(io("cannot sync", &temporary))?;
        std::fs::rename(&temporary, &path).map_err(io("cannot rename", &temporary))?;
        if let Ok(dir) = File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Ids of the checkpoints that have a manifest, oldest first.
    pub fn completed(&self) -> Result<Vec<CheckpointId>, StorageError> {
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(io("cannot list", &self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_prefix("chk-")) else {
                continue;
            };
            if let Ok(id) = number.parse::<u64>()
                && entry.path().join(MANIFEST).is_file()
            {
                ids.push(CheckpointId(id));
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Loads a checkpoint's manifest and checks it and every file it names.
    pub fn load(&self, id: CheckpointId) -> Result<Manifest, StorageError> {
        let path = self.checkpoint_dir(id).join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(io("cannot read", &path))?;
        let manifest = Manifest::decode(&bytes).map_err(|reason| StorageError::Corrupt { id, reason })?;
        for file in manifest.files() {
            self.files
                .verify(file)
                .map_err(|reason| StorageError::Corrupt { id, reason })?;
        }
        Ok(manifest)
    }

    /// The latest checkpoint that passes its checks, with a message for each
    /// newer one that was refused.
    pub fn latest_valid(&self) -> Result<(Option<Manifest>, Vec<String>), StorageError> {
        let (manifest, refused) = self.scan_latest()?;
        Ok((manifest, refused.iter().map(ToString::to_string).collect()))
    }

    /// The checkpoint an explicit restore of the latest one starts from: the
    /// latest that passes its checks, with why each newer one was refused.
    /// `None` when the job has no complete checkpoint at all; an error
    /// ([`StorageError::NoIntactCheckpoint`]) when it has some but none
    /// passes, since starting from the beginning would emit again everything
    /// those checkpoints had covered.
    pub fn latest_intact(&self) -> Result<(Option<Manifest>, Vec<StorageError>), StorageError> {
        match self.scan_latest()? {
            (None, refused) if !refused.is_empty() => Err(StorageError::NoIntactCheckpoint {
                dir: self.root.clone(),
                refused,
            }),
            found => Ok(found),
        }
    }

    /// Loads checkpoints from the newest until one passes its checks.
    fn scan_latest(&self) -> Result<(Option<Manifest>, Vec<StorageError>), StorageError> {
        let mut refused = Vec::new();
        for id in self.completed()?.into_iter().rev() {
            match self.load(id) {
                Ok(manifest) => return Ok((Some(manifest), refused)),
                Err(error) => refused.push(error),
            }
        }
        Ok((None, refused))
    }

    /// Keeps the newest `keep` checkpoints and deletes the rest, with the
    /// state files only they referred to. (Files no manifest refers to — left
    /// by checkpoints that failed — may still be in use by a checkpoint in
    /// progress, so they are swept only by [`CheckpointStorage::sweep_orphans`].)
    pub fn retain(&self, keep: usize) -> Result<(), StorageError> {
        let completed = self.completed()?;
        let drop_count = completed.len().saturating_sub(keep.max(1));
        let referenced = |ids: &[CheckpointId]| -> Option<HashSet<String>> {
            let mut names = HashSet::new();
            for id in ids {
                let bytes = std::fs::read(self.checkpoint_dir(*id).join(MANIFEST)).ok()?;
                names.extend(Manifest::decode(&bytes).ok()?.files().map(|f| f.name.clone()));
            }
            Some(names)
        };
        // If a manifest cannot be read, keep every file rather than guess.
        let Some(kept) = referenced(&completed[drop_count..]) else {
            return Ok(());
        };
        let dropped = referenced(&completed[..drop_count]).unwrap_or_default();
        for id in &completed[..drop_count] {
            let dir = self.checkpoint_dir(*id);
            std::fs::remove_dir_all(&dir).map_err(io("cannot delete", &dir))?;
        }
        for name in dropped.difference(&kept) {
            let _ = std::fs::remove_file(self.files.dir.join(name));
        }
        Ok(())
    }

    /// The names of the state files that complete checkpoints refer to, or
    /// `None` if a manifest cannot be read (it may refer to any file).
    fn referenced(&self) -> Result<Option<HashSet<String>>, StorageError> {
        let mut names = HashSet::new();
        for id in self.completed()? {
            let Ok(bytes) = std::fs::read(self.checkpoint_dir(id).join(MANIFEST)) else {
                return Ok(None);
            };
            let Ok(manifest) = Manifest::decode(&bytes) else {
                return Ok(None);
            };
            names.extend(manifest.files().map(|f| f.name.clone()));
        }
        Ok(Some(names))
    }

    /// Deletes what the abandoned checkpoint `id` left that no subtask can
    /// still claim: its temporaries, its folder if it has no manifest, and
    /// those of `files` (the state files its acknowledgements named) that
    /// are its own. Subtasks may still acknowledge it, naming files it wrote,
    /// so its other files stay until [`CheckpointStorage::discard_all`].
    /// Files in `keep` (states a later checkpoint may still carry over) or
    /// named by a complete checkpoint stay too; if a manifest cannot be read,
    /// only temporaries go. Returns how many files were deleted.
    pub fn discard(
        &self,
        id: CheckpointId,
        files: &HashSet<String>,
        keep: &HashSet<String>,
    ) -> Result<usize, StorageError> {
        self.delete_files(
            |checkpoint, temporary, name| checkpoint == id && (temporary || files.contains(name)),
            keep,
            [id],
        )
    }

    /// Deletes every file of the abandoned checkpoints `ids` — their own
    /// state files (`chk<id>-…`) and temporaries — and their folders without
    /// a manifest, except files in `keep` or named by a complete checkpoint
    /// (if a manifest cannot be read, only temporaries go). Shared files
    /// (RocksDB SSTs, named after their database) stay: a later checkpoint
    /// may reuse them. Only once nothing can acknowledge these checkpoints
    /// any more (the end of an attempt). Returns how many files were deleted.
    pub fn discard_all(&self, ids: &BTreeSet<CheckpointId>, keep: &HashSet<String>) -> Result<usize, StorageError> {
        self.delete_files(|checkpoint, _, _| ids.contains(&checkpoint), keep, ids.iter().copied())
    }

    /// Deletes the files of abandoned checkpoints that `doomed` picks (given
    /// the checkpoint, whether the file is a temporary, and its name), then
    /// the folders of `folders` that have no manifest.
    fn delete_files(
        &self,
        doomed: impl Fn(CheckpointId, bool, &str) -> bool,
        keep: &HashSet<String>,
        folders: impl IntoIterator<Item = CheckpointId>,
    ) -> Result<usize, StorageError> {
        let referenced = self.referenced()?;
        let mut first_error = None;
        let mut deleted = 0;
        let entries = std::fs::read_dir(&self.files.dir).map_err(io("cannot list", &self.files.dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((checkpoint, temporary)) = written_for(&name) else {
                continue;
            };
            let unclaimed =
                temporary || (!keep.contains(&name) && referenced.as_ref().is_some_and(|names| !names.contains(&name)));
            if unclaimed && doomed(checkpoint, temporary, &name) && remove(&entry.path(), &mut first_error) {
                deleted += 1;
            }
        }
        for id in folders {
            let dir = self.checkpoint_dir(id);
            if dir.is_dir() && !dir.join(MANIFEST).exists() {
                remove(&dir, &mut first_error);
            }
        }
        first_error.map_or(Ok(deleted), Err)
    }

    /// Deletes what failed checkpoints left: checkpoint folders without a
    /// manifest, temporaries, and every state file that no complete
    /// checkpoint refers to (unless a manifest cannot be read: it may refer
    /// to any file). Only safe while no checkpoint is in progress (before a
    /// run starts).
    pub fn sweep_orphans(&self) -> Result<(), StorageError> {
        let mut first_error = None;
        let entries = std::fs::read_dir(&self.root).map_err(io("cannot list", &self.root))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_checkpoint = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .is_some_and(|n| n.parse::<u64>().is_ok());
            if is_checkpoint && path.is_dir() && !path.join(MANIFEST).exists() {
                remove(&path, &mut first_error);
            }
        }
        let referenced = self.referenced()?;
        let entries = std::fs::read_dir(&self.files.dir).map_err(io("cannot list", &self.files.dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let temporary = name.starts_with('.') && name.ends_with(".tmp");
            let orphan = referenced.as_ref().is_some_and(|names| !names.contains(&name));
            if (temporary || orphan) && entry.file_type().is_ok_and(|t| t.is_file()) {
                remove(&entry.path(), &mut first_error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The checkpoint that wrote the state file `name` (`chk<id>-…`), and
/// whether it is a temporary (`.chk<id>-….tmp`); `None` for a file shared
/// between checkpoints.
fn written_for(name: &str) -> Option<(CheckpointId, bool)> {
    let (name, temporary) = match name.strip_prefix('.') {
        Some(rest) => (rest.strip_suffix(".tmp")?, true),
        None => (name, false),
    };
    let (number, _) = name.strip_prefix("chk")?.split_once('-')?;
    let id = number
        .parse::<u64>()
        .ok()
        .filter(|_| number.bytes().all(|b| b.is_ascii_digit()))?;
    Some((CheckpointId(id), temporary))
}

/// Deletes the file or folder `path`; returns whether it did. A path that is
/// already gone is no error (a snapshot writer may race with the deletion);
/// any other error is kept in `first_error` if it is the first.
fn remove(path: &Path, first_error: &mut Option<StorageError>) -> bool {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            first_error.get_or_insert(StorageError::Io {
                what: "cannot delete",
                path: path.to_path_buf(),
                source: error,
            });
            false
        }
    }
}

#[cfg(test)]
mod tests;
