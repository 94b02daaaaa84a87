//! The canonical snapshot of a subtask's keyed state: every state's
//! descriptor, then every entry and timer with its key group.
//!
//! It does not depend on the backend that wrote it, so a heap snapshot
//! restores into RocksDB and back, and a subtask can restore just the key
//! groups it owns after a change of parallelism. The file is a magic number
//! followed by items, each a little-endian `u32` length and a postcard body.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::{KeyGroupRange, StateDescriptor, StateKind, TtlConfig};
use crate::state::TimerService;
use crate::storage::files::{FileStore, FileWriter, StorageError};
use crate::storage::manifest::KeyedStateHandle;

const MAGIC: &[u8; 8] = b"WEIRKS01";

/// One item of a canonical snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotItem {
    /// Declares state number `index`; entries refer to it by number.
    State {
        /// Number of the state in this file.
        index: u32,
        /// Its name.
        name: String,
        /// Its kind.
        kind: StateKind,
        /// Its time-to-live: (ms, update on read).
        ttl: Option<(u64, bool)>,
    },
    /// One entry.
    Entry {
        /// The state's number.
        state: u32,
        /// The key group of `key`.
        key_group: u32,
        /// The key.
        key: Vec<u8>,
        /// The user key (map states), empty otherwise.
        user_key: Vec<u8>,
        /// The stored value (with its TTL header if the state has a TTL).
        value: Vec<u8>,
    },
    /// A registered timer.
    Timer {
        /// `true` for event time, `false` for processing time.
        event_time: bool,
        /// The key group of `key`.
        key_group: u32,
        /// The key.
        key: Vec<u8>,
        /// When it fires.
        timestamp: i64,
    },
}

impl SnapshotItem {
    /// The descriptor item of a state.
    pub fn state(index: u32, name: &str, kind: StateKind, ttl: Option<TtlConfig>) -> Self {
        Self::State {
            index,
            name: name.to_string(),
            kind,
            ttl: ttl.map(|t| (t.ttl_ms, t.update_on_read)),
        }
    }
}

/// Writes items to a canonical snapshot.
pub struct SnapshotWriter<W: Write> {
    out: W,
    scratch: Vec<u8>,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot on `out`.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(Self {
            out,
            scratch: Vec::with_capacity(256),
        })
    }

    /// Appends one item.
    pub fn write(&mut self, item: &SnapshotItem) -> std::io::Result<()> {
        self.write_serialized(item)
    }

    /// Appends anything that encodes like an item.
    fn write_serialized<T: Serialize>(&mut self, item: &T) -> std::io::Result<()> {
        self.scratch.clear();
        let scratch = std::mem::take(&mut self.scratch);
        let scratch = postcard::to_extend(item, scratch).map_err(std::io::Error::other)?;
        let len = u32::try_from(scratch.len()).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&scratch)?;
        self.scratch = scratch;
        Ok(())
    }

    /// Finishes the snapshot and returns the output.
    pub fn finish(self) -> W {
        self.out
    }
}

/// The same items as [`SnapshotItem::Entry`], borrowed: it encodes exactly
/// like the owned form (postcard writes a byte slice and a byte vector the
/// same way), so entries are written without copying them.
#[derive(Serialize)]
enum EntryRef<'a> {
    #[expect(dead_code, reason = "keeps the variant index equal to SnapshotItem::State's")]
    State,
    Entry {
        state: u32,
        key_group: u32,
        key: &'a [u8],
        user_key: &'a [u8],
        value: &'a [u8],
    },
}

/// A canonical snapshot file being written into checkpoint storage by a
/// backend's full snapshot: declare each state, add its entries, and finish
/// with the timers.
pub struct CanonicalFile {
    writer: SnapshotWriter<std::io::BufWriter<FileWriter>>,
}

fn format_error(error: std::io::Error) -> StorageError {
    StorageError::Format(format!("cannot write keyed state: {error}"))
}

impl CanonicalFile {
    /// Starts `<name>.keyed` in `files`.
    pub fn create(files: &FileStore, name: &str) -> Result<Self, StorageError> {
        let file = files.create(&format!("{name}.keyed"))?;
        let writer = SnapshotWriter::new(std::io::BufWriter::with_capacity(1 << 20, file)).map_err(format_error)?;
        Ok(Self { writer })
    }

    /// Declares state number `index`.
    pub fn state(&mut self, index: u32, descriptor: &StateDescriptor) -> Result<(), StorageError> {
        let item = SnapshotItem::state(index, &descriptor.name, descriptor.kind, descriptor.ttl);
        self.writer.write(&item).map_err(format_error)
    }

    /// Adds an entry of state number `state`.
    pub fn entry(
        &mut self,
        state: u32,
        key_group: u32,
        key: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError> {
        let item = EntryRef::Entry {
            state,
            key_group,
            key,
            user_key,
            value,
        };
        self.writer.write_serialized(&item).map_err(format_error)
    }

    /// Adds the timers, makes the file durable and returns its handle.
    pub fn finish(
        mut self,
        backend: &str,
        timers: &TimerService,
        key_groups: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<KeyedStateHandle, StorageError> {
        timers
            .write_items(&mut self.writer, max_parallelism)
            .map_err(format_error)?;
        let file = self
            .writer
            .finish()
            .into_inner()
            .map_err(|e| format_error(e.into_error()))?;
        Ok(KeyedStateHandle {
            backend: backend.into(),
            key_groups: (key_groups.start, key_groups.end),
            canonical: Some(file.finish()?),
            native: Vec::new(),
        })
    }
}

/// Reads the items of a canonical snapshot.
pub struct SnapshotReader<R: Read> {
    input: R,
    buffer: Vec<u8>,
}

impl<R: Read> SnapshotReader<R> {
    /// Opens a snapshot, checking its magic number.
    pub fn new(mut input: R) -> std::io::Result<Self> {
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(std::io::Error::other("not a Weir keyed-state snapshot (bad magic)"));
        }
        Ok(Self {
            input,
            buffer: Vec::new(),
        })
    }

    /// The next item, or `None` at the end.
    pub fn next_item(&mut self) -> std::io::Result<Option<SnapshotItem>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        self.buffer.resize(u32::from_le_bytes(len) as usize, 0);
        self.input.read_exact(&mut self.buffer)?;
        postcard::from_bytes(&self.buffer)
            .map(Some)
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let items = vec![
            SnapshotItem::state(0, "count", StateKind::Value, None),
            SnapshotItem::Entry {
                state: 0,
                key_group: 7,
                key: b"k".to_vec(),
                user_key: vec![],
                value: b"v".to_vec(),
            },
            SnapshotItem::Timer {
                event_time: true,
                key_group: 7,
                key: b"k".to_vec(),
                timestamp: -5,
            },
        ];
        let mut writer = SnapshotWriter::new(Vec::new()).unwrap();
        for item in &items {
            writer.write(item).unwrap();
        }
        let bytes = writer.finish();
        let mut reader = SnapshotReader::new(bytes.as_slice()).unwrap();
        let mut read = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            read.push(item);
        }
        assert_eq!(read, items);
        assert!(SnapshotReader::new(&b"nonsense"[..]).is_err());
    }

    #[test]
    fn a_borrowed_entry_encodes_like_an_owned_one() {
        let owned = SnapshotItem::Entry {
            state: 3,
            key_group: 9,
            key: b"k".to_vec(),
            user_key: vec![],
            value: b"v".to_vec(),
        };
        let borrowed = EntryRef::Entry {
            state: 3,
            key_group: 9,
            key: b"k",
            user_key: b"",
            value: b"v",
        };
        assert_eq!(
            postcard::to_stdvec(&owned).unwrap(),
            postcard::to_stdvec(&borrowed).unwrap()
        );
    }
}
