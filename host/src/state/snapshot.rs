//! The canonical snapshot of a subtask's keyed state: every state's
//! descriptor, then every entry and timer with its key group.
//!
//! It does not depend on the backend that wrote it, so a heap snapshot
//! restores into RocksDB and back, and a subtask can restore just the key
//! groups it owns after a change of parallelism. The file is a magic number
//! followed by items, each a little-endian `u32` length and a postcard body.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::{StateKind, TtlConfig};

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
}
