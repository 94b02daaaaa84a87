//! Input records, borrowed from the batch columns the host sent.

use serde::Deserialize;

use crate::{Error, Result};

/// Event time: milliseconds since the Unix epoch, UTC.
pub type EventTime = i64;

/// One input record. It borrows its bytes from the batch being processed.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    payload: &'a [u8],
    timestamp: EventTime,
    key: Option<&'a [u8]>,
    index: u32,
}

impl<'a> Record<'a> {
    /// A record over borrowed bytes.
    #[inline]
    pub(crate) fn new(payload: &'a [u8], timestamp: EventTime, key: Option<&'a [u8]>, index: u32) -> Self {
        Self {
            payload,
            timestamp,
            key,
            index,
        }
    }

    /// The record's bytes.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The record's bytes as UTF-8 text.
    pub fn payload_str(&self) -> Result<&'a str> {
        std::str::from_utf8(self.payload).map_err(|_| Error::new("record is not valid UTF-8"))
    }

    /// Decodes the record from postcard (what [`RecordWriter::write_postcard`]
    /// and the `emit_postcard` methods write). The value may borrow from the
    /// record (`&str`, `&[u8]` fields).
    ///
    /// [`RecordWriter::write_postcard`]: crate::RecordWriter::write_postcard
    pub fn decode<T: Deserialize<'a>>(&self) -> Result<T> {
        postcard::from_bytes(self.payload).map_err(|e| Error::new(format!("record could not be decoded: {e}")))
    }

    /// The record's event time.
    #[inline]
    pub fn timestamp(&self) -> EventTime {
        self.timestamp
    }

    /// The record's key, in a keyed stream (keyed process functions).
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The record's position in its batch.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// A column of byte strings: one buffer plus the end offset of each item
/// (item `i` is `data[ends[i - 1]..ends[i]]`).
#[derive(Clone, Copy)]
pub(crate) struct Column<'a> {
    data: &'a [u8],
    ends: &'a [u32],
}

impl<'a> Column<'a> {
    /// A column over borrowed buffers.
    pub(crate) fn new(data: &'a [u8], ends: &'a [u32]) -> Self {
        Self { data, ends }
    }

    /// The number of items.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Item `index`; panics if the column is malformed or has no such item.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &'a [u8] {
        let end = *self
            .ends
            .get(index)
            .unwrap_or_else(|| panic!("item {index} of a column of {} items", self.ends.len()));
        let start = match index.checked_sub(1) {
            Some(previous) => self.ends[previous],
            None => 0,
        };
        self.data.get(start as usize..end as usize).unwrap_or_else(|| {
            panic!(
                "malformed batch from the host: item {index} ends at {end}, after {start} (column has {} bytes)",
                self.data.len()
            )
        })
    }

    /// The items in order.
    pub(crate) fn iter(&self) -> ColumnIter<'a> {
        ColumnIter {
            data: self.data,
            ends: self.ends.iter(),
            start: 0,
        }
    }
}

/// Iterates over the items of a [`Column`] without allocating.
pub(crate) struct ColumnIter<'a> {
    data: &'a [u8],
    ends: std::slice::Iter<'a, u32>,
    start: usize,
}

impl<'a> Iterator for ColumnIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let end = *self.ends.next()? as usize;
        let item = self.data.get(self.start..end).unwrap_or_else(|| {
            panic!(
                "malformed batch from the host: item ends at {end}, after {} (column has {} bytes)",
                self.start,
                self.data.len()
            )
        });
        self.start = end;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for ColumnIter<'_> {}

/// Panics if two columns of a batch from the host disagree on its length.
pub(crate) fn check_len(what: &str, len: usize, expected: usize) {
    assert!(
        len == expected,
        "malformed batch from the host: {len} {what} for {expected} records"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_over_a_column() {
        let column = Column::new(b"abcdef", &[1, 1, 4, 6]);
        let items: Vec<&[u8]> = column.iter().collect();
        assert_eq!(items, [&b"a"[..], b"", b"bcd", b"ef"]);
    }

    #[test]
    fn gets_items_by_index() {
        let column = Column::new(b"abcdef", &[1, 1, 4, 6]);
        assert_eq!(column.len(), 4);
        assert_eq!(column.get(0), b"a");
        assert_eq!(column.get(1), b"");
        assert_eq!(column.get(2), b"bcd");
        assert_eq!(column.get(3), b"ef");
    }

    #[test]
    #[should_panic(expected = "malformed batch")]
    fn get_rejects_decreasing_offsets() {
        Column::new(b"abc", &[2, 1]).get(1);
    }

    #[test]
    #[should_panic(expected = "malformed batch")]
    fn rejects_offsets_past_the_data() {
        Column::new(b"ab", &[3]).iter().for_each(drop);
    }

    #[test]
    fn reads_a_record() {
        let bytes = postcard::to_allocvec(&(7u32, "seven")).expect("encodes");
        let record = Record::new(&bytes, 42, Some(b"k"), 3);
        assert_eq!(record.decode::<(u32, &str)>(), Ok((7, "seven")));
        assert_eq!(record.timestamp(), 42);
        assert_eq!(record.key(), Some(&b"k"[..]));
        assert_eq!(record.index(), 3);
        assert_eq!(
            Record::new(&[0xff], 0, None, 0).payload_str(),
            Err(Error::new("record is not valid UTF-8"))
        );
        assert!(
            Record::new(&[], 0, None, 0)
                .decode::<u32>()
                .is_err_and(|e| e.reason().starts_with("record could not be decoded: "))
        );
    }
}
