//! Record batches: the unit that moves between subtasks and across the Wasm
//! boundary.
//!
//! A batch stores its records as flat columns (one payload buffer with end
//! offsets, one timestamp column, and optionally a key column laid out the
//! same way), which is exactly the shape of `batch` and `keyed-batch` in the
//! WIT contract: handing a batch to a guest copies each column once, with no
//! per-record allocation.

/// Event time in milliseconds since the Unix epoch (UTC).
pub type EventTime = i64;

/// Records as flat columns, optionally keyed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// All payloads, back to back.
    pub data: Vec<u8>,
    /// End offset of each record's payload in `data`.
    pub ends: Vec<u32>,
    /// Event time of each record.
    pub timestamps: Vec<EventTime>,
    /// Key bytes, back to back (empty when the batch is not keyed).
    pub keys: Vec<u8>,
    /// End offset of each record's key in `keys` (empty when not keyed).
    pub key_ends: Vec<u32>,
}

/// A borrowed view of one record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The event time.
    pub timestamp: EventTime,
    /// The key bytes, if the batch is keyed.
    pub key: Option<&'a [u8]>,
}

impl RecordBatch {
    /// An empty batch with room for `records` records of `bytes` payload bytes.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
            timestamps: Vec::with_capacity(records),
            keys: Vec::new(),
            key_ends: Vec::new(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Whether the batch carries a key column.
    pub fn is_keyed(&self) -> bool {
        !self.key_ends.is_empty()
    }

    /// Total payload bytes.
    pub fn payload_bytes(&self) -> usize {
        self.data.len()
    }

    /// Appends an unkeyed record.
    pub fn push(&mut self, payload: &[u8], timestamp: EventTime) {
        self.data.extend_from_slice(payload);
        self.ends.push(offset(self.data.len()));
        self.timestamps.push(timestamp);
    }

    /// Appends a keyed record.
    pub fn push_keyed(&mut self, payload: &[u8], timestamp: EventTime, key: &[u8]) {
        self.push(payload, timestamp);
        self.keys.extend_from_slice(key);
        self.key_ends.push(offset(self.keys.len()));
    }

    /// Appends a record, keyed if `key` is given.
    pub fn push_record(&mut self, record: RecordRef<'_>) {
        match record.key {
            Some(key) => self.push_keyed(record.payload, record.timestamp, key),
            None => self.push(record.payload, record.timestamp),
        }
    }

    /// The payload of record `i`.
    pub fn payload(&self, i: usize) -> &[u8] {
        &self.data[span(&self.ends, i)]
    }

    /// The key of record `i`, if the batch is keyed.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        if self.is_keyed() {
            Some(&self.keys[span(&self.key_ends, i)])
        } else {
            None
        }
    }

    /// A view of record `i`.
    pub fn get(&self, i: usize) -> RecordRef<'_> {
        RecordRef {
            payload: self.payload(i),
            timestamp: self.timestamps[i],
            key: self.key(i),
        }
    }

    /// Iterates over the records.
    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Removes every record, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.timestamps.clear();
        self.keys.clear();
        self.key_ends.clear();
    }

    /// Drops the key column.
    pub fn strip_keys(&mut self) {
        self.keys.clear();
        self.key_ends.clear();
    }
}

/// The byte range of element `i` in a flat column with end offsets `ends`.
pub fn span(ends: &[u32], i: usize) -> std::ops::Range<usize> {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    start..ends[i] as usize
}

/// Converts a buffer length into an end offset. Batches are bounded far below
/// 4 GiB, so this never truncates in practice; it saturates rather than wraps.
fn offset(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_unkeyed_records_round_trip() {
        let mut batch = RecordBatch::default();
        batch.push_keyed(b"hello", 1, b"h");
        batch.push_keyed(b"", 2, b"");
        batch.push_keyed(b"world", 3, b"w");
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.payload(0), b"hello");
        assert_eq!(batch.payload(1), b"");
        assert_eq!(batch.get(2).key, Some(&b"w"[..]));
        assert_eq!(batch.timestamps, vec![1, 2, 3]);
        batch.strip_keys();
        assert_eq!(batch.key(0), None);
    }
}
