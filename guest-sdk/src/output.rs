//! Output columns, and the writers functions use to fill them.
//!
//! Every output record's bytes are appended to one buffer per output (main or
//! side); a record is "committed" by pushing its end offset and timestamp.
//! Rolling back the records of a failed input is a truncation.

use std::io;

use serde::Serialize;

use crate::__bindings::weir::udf::types as wit;
use crate::{Error, EventTime, Result};

/// The end offset of an item in a column, which the WIT limits to `u32`.
fn offset(len: usize) -> u32 {
    u32::try_from(len).unwrap_or_else(|_| panic!("an output column exceeds 4 GiB"))
}

/// Appends `value`, postcard-encoded, to `buf`; on error `buf` is unchanged.
pub(crate) fn append_postcard<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<()> {
    let start = buf.len();
    postcard::serialize_with_flavor(value, AppendTo(&mut *buf)).map_err(|e| {
        buf.truncate(start);
        Error::new(format!("value could not be encoded: {e}"))
    })
}

/// Appends `bytes` to `buf`. Records, keys and postcard varints are a few
/// bytes each; `extend_from_slice` would turn each append into a
/// `memory.copy`, which leaves the Wasm code for a host call, so short
/// slices are copied byte by byte, inline.
#[inline(always)]
pub(crate) fn append(buf: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 64 {
        buf.extend_from_slice(bytes);
        return;
    }
    buf.reserve(bytes.len());
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        // A copy of a constant 8 bytes compiles to one load and one store.
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        buf.extend_from_slice(&word);
    }
    for &byte in words.remainder() {
        buf.push(byte);
    }
}

/// A postcard flavor that appends to an existing `Vec` (no extra buffer).
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        append(self.0, data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The columns of a batch being built.
#[derive(Debug, Default)]
pub(crate) struct BatchBuilder {
    data: Vec<u8>,
    ends: Vec<u32>,
    timestamps: Vec<EventTime>,
    /// The sizes of the previous batch, to size the next one.
    hint: (usize, usize),
}

impl BatchBuilder {
    /// The number of committed records.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Reserves room for a batch as large as the previous one.
    fn reserve(&mut self) {
        let (bytes, records) = self.hint;
        self.data.reserve(bytes.saturating_sub(self.data.len()));
        self.ends.reserve(records.saturating_sub(self.ends.len()));
        self.timestamps.reserve(records.saturating_sub(self.timestamps.len()));
    }

    /// Commits the bytes appended to `data` since the last record as a record.
    #[inline]
    fn commit(&mut self, timestamp: EventTime) {
        self.ends.push(offset(self.data.len()));
        self.timestamps.push(timestamp);
    }

    /// Appends a record.
    fn push(&mut self, payload: &[u8], timestamp: EventTime) {
        append(&mut self.data, payload);
        self.commit(timestamp);
    }

    /// Keeps the first `records` records and drops any uncommitted bytes.
    fn truncate(&mut self, records: usize) {
        self.ends.truncate(records);
        self.timestamps.truncate(records);
        let committed = self.ends.last().map_or(0, |&end| end as usize);
        self.data.truncate(committed);
    }

    /// Drops the last record.
    fn pop(&mut self) {
        self.truncate(self.len().saturating_sub(1));
    }

    /// Hands the batch over, leaving this builder empty.
    fn take(&mut self) -> wit::Batch {
        self.hint = (self.data.len(), self.ends.len());
        self.truncate(self.len());
        wit::Batch {
            data: std::mem::take(&mut self.data),
            ends: std::mem::take(&mut self.ends),
            timestamps: std::mem::take(&mut self.timestamps),
        }
    }
}

/// The records of one side output.
#[derive(Debug)]
struct Side {
    tag: String,
    batch: BatchBuilder,
}

/// A position in an [`Output`] to roll back to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    main: usize,
    side: usize,
}

/// Everything one call of a function produces: main and side outputs, and
/// rejected records. Kept across calls to size buffers and remember tags.
#[derive(Debug, Default)]
pub(crate) struct Output {
    main: BatchBuilder,
    sides: Vec<Side>,
    /// Which side each side record went to, in order, for rollbacks.
    side_log: Vec<usize>,
    errors: Vec<wit::RecordError>,
}

impl Output {
    /// Prepares for a call.
    pub(crate) fn begin(&mut self) {
        self.main.reserve();
    }

    /// The current position, to roll back to if the input fails.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            main: self.main.len(),
            side: self.side_log.len(),
        }
    }

    /// Drops everything emitted since `mark`, including uncommitted bytes.
    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.main.truncate(mark.main);
        for side in self.side_log.drain(mark.side..).rev() {
            self.sides[side].batch.pop();
        }
    }

    /// The main data column, for a [`RecordWriter`].
    pub(crate) fn main_data(&mut self) -> &mut Vec<u8> {
        &mut self.main.data
    }

    /// Commits the bytes written to the main data column as a record.
    #[inline]
    pub(crate) fn commit_main(&mut self, timestamp: EventTime) {
        self.main.commit(timestamp);
    }

    /// Appends a record to the main output.
    pub(crate) fn emit(&mut self, payload: &[u8], timestamp: EventTime) {
        self.main.push(payload, timestamp);
    }

    /// Appends a postcard-encoded record to the main output.
    pub(crate) fn emit_postcard<T: Serialize + ?Sized>(&mut self, value: &T, timestamp: EventTime) -> Result<()> {
        append_postcard(&mut self.main.data, value)?;
        self.main.commit(timestamp);
        Ok(())
    }

    /// Appends a record to the side output `tag`.
    pub(crate) fn side_output(&mut self, tag: &str, payload: &[u8], timestamp: EventTime) {
        let index = match self.sides.iter().position(|side| side.tag == tag) {
            Some(index) => index,
            None => {
                self.sides.push(Side {
                    tag: tag.to_owned(),
                    batch: BatchBuilder::default(),
                });
                self.sides.len() - 1
            }
        };
        self.sides[index].batch.push(payload, timestamp);
        self.side_log.push(index);
    }

    /// Records that input record `index` was rejected.
    pub(crate) fn reject(&mut self, index: u32, error: Error) {
        self.errors.push(wit::RecordError {
            index,
            reason: error.into_reason(),
        });
    }

    /// The rejected records so far, leaving none.
    pub(crate) fn take_errors(&mut self) -> Vec<wit::RecordError> {
        std::mem::take(&mut self.errors)
    }

    /// Hands over everything produced, leaving this output empty.
    pub(crate) fn finish(&mut self) -> wit::Output {
        self.side_log.clear();
        let side = self
            .sides
            .iter_mut()
            .filter(|side| side.batch.len() > 0)
            .map(|side| wit::SideOutput {
                tag: side.tag.clone(),
                records: side.batch.take(),
            })
            .collect();
        wit::Output {
            main: self.main.take(),
            side,
            errors: self.take_errors(),
        }
    }
}

/// The key column a key selector fills.
#[derive(Debug, Default)]
pub(crate) struct KeyColumn {
    keys: Vec<u8>,
    ends: Vec<u32>,
    /// The size of the previous key column, to size the next one.
    hint: usize,
}

impl KeyColumn {
    /// Prepares for a batch of `records` records.
    pub(crate) fn begin(&mut self, records: usize) {
        self.keys.reserve(self.hint);
        self.ends.reserve(records);
    }

    /// A writer for the next key.
    #[inline]
    pub(crate) fn writer(&mut self) -> KeyWriter<'_> {
        KeyWriter { keys: &mut self.keys }
    }

    /// Commits the bytes written since the last key as a key; with `failed`,
    /// drops them and commits an empty key.
    #[inline]
    pub(crate) fn commit(&mut self, failed: bool) {
        if failed {
            let start = self.ends.last().map_or(0, |&end| end as usize);
            self.keys.truncate(start);
        }
        self.ends.push(offset(self.keys.len()));
    }

    /// Hands the column over with the rejected records.
    pub(crate) fn finish(&mut self, errors: Vec<wit::RecordError>) -> wit::KeyOutput {
        self.hint = self.keys.len();
        wit::KeyOutput {
            keys: std::mem::take(&mut self.keys),
            key_ends: std::mem::take(&mut self.ends),
            errors,
        }
    }
}

/// Writes the one output record of a [`Map`](crate::Map) function, straight
/// into the output column.
///
/// Write with [`write_bytes`](Self::write_bytes),
/// [`write_postcard`](Self::write_postcard) or `std::io::Write` (`write!`).
/// The record's timestamp is the input's unless
/// [`set_timestamp`](Self::set_timestamp) changes it.
#[derive(Debug)]
pub struct RecordWriter<'a> {
    data: &'a mut Vec<u8>,
    timestamp: EventTime,
}

impl<'a> RecordWriter<'a> {
    /// A writer appending to `data`.
    #[inline]
    pub(crate) fn new(data: &'a mut Vec<u8>, timestamp: EventTime) -> Self {
        Self { data, timestamp }
    }

    /// Appends bytes to the record.
    #[inline]
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        append(self.data, bytes);
    }

    /// Appends `value`, postcard-encoded, to the record.
    pub fn write_postcard<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        append_postcard(self.data, value)
    }

    /// Sets the record's event time.
    pub fn set_timestamp(&mut self, timestamp: EventTime) {
        self.timestamp = timestamp;
    }

    /// The record's event time.
    pub fn timestamp(&self) -> EventTime {
        self.timestamp
    }
}

impl io::Write for RecordWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_bytes(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Emits the output records of a [`FlatMap`](crate::FlatMap) function.
///
/// Records take the input's timestamp unless given one. If the function
/// returns `Err`, everything it emitted for that input is dropped.
#[derive(Debug)]
pub struct Emitter<'a> {
    out: &'a mut Output,
    timestamp: EventTime,
}

impl<'a> Emitter<'a> {
    /// An emitter appending to `out`, with a default timestamp.
    pub(crate) fn new(out: &'a mut Output, timestamp: EventTime) -> Self {
        Self { out, timestamp }
    }

    /// Emits a record with the input's timestamp.
    pub fn emit(&mut self, payload: &[u8]) {
        self.out.emit(payload, self.timestamp);
    }

    /// Emits a record with the given timestamp.
    pub fn emit_with_timestamp(&mut self, payload: &[u8], timestamp: EventTime) {
        self.out.emit(payload, timestamp);
    }

    /// Emits `value`, postcard-encoded, with the input's timestamp.
    pub fn emit_postcard<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.out.emit_postcard(value, self.timestamp)
    }

    /// Emits a record with the input's timestamp to the side output `tag`.
    pub fn side_output(&mut self, tag: &str, payload: &[u8]) {
        self.out.side_output(tag, payload, self.timestamp);
    }

    /// The input's timestamp.
    pub fn timestamp(&self) -> EventTime {
        self.timestamp
    }
}

/// Writes the key of one record, for a [`KeySelector`](crate::KeySelector),
/// straight into the key column.
///
/// Write with [`write_bytes`](Self::write_bytes),
/// [`write_postcard`](Self::write_postcard) or `std::io::Write` (`write!`).
#[derive(Debug)]
pub struct KeyWriter<'a> {
    keys: &'a mut Vec<u8>,
}

impl KeyWriter<'_> {
    /// Appends bytes to the key.
    #[inline]
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        append(self.keys, bytes);
    }

    /// Appends `value`, postcard-encoded, to the key.
    pub fn write_postcard<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        append_postcard(self.keys, value)
    }
}

impl io::Write for KeyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_bytes(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn records(batch: &wit::Batch) -> Vec<(&[u8], EventTime)> {
        crate::record::Column::new(&batch.data, &batch.ends)
            .iter()
            .zip(batch.timestamps.iter().copied())
            .collect()
    }

    #[test]
    fn builds_main_and_side_outputs() {
        let mut out = Output::default();
        out.begin();
        out.emit(b"a", 1);
        out.side_output("late", b"x", 2);
        out.emit_postcard(&5u8, 3).expect("encodes");
        out.side_output("late", b"y", 4);
        out.side_output("other", b"z", 5);
        out.reject(7, Error::new("bad"));
        let output = out.finish();
        assert_eq!(records(&output.main), [(&b"a"[..], 1), (&[5][..], 3)]);
        assert_eq!(output.side.len(), 2);
        assert_eq!(output.side[0].tag, "late");
        assert_eq!(records(&output.side[0].records), [(&b"x"[..], 2), (&b"y"[..], 4)]);
        assert_eq!(output.side[1].tag, "other");
        assert_eq!(output.errors.len(), 1);
        assert_eq!(output.errors[0].index, 7);
        assert_eq!(output.errors[0].reason, "bad");

        // The next call starts empty, with room for as much.
        out.begin();
        assert!(out.main.data.capacity() >= 2);
        let output = out.finish();
        assert!(output.main.ends.is_empty() && output.side.is_empty());
    }

    #[test]
    fn rolls_back_to_a_mark() {
        let mut out = Output::default();
        out.emit(b"keep", 1);
        out.side_output("s", b"keep", 1);
        let mark = out.mark();
        out.emit(b"drop", 2);
        out.side_output("s", b"drop", 2);
        out.side_output("t", b"drop", 2);
        out.main_data().extend_from_slice(b"partial");
        out.rollback(mark);
        out.emit(b"after", 3);
        let output = out.finish();
        assert_eq!(records(&output.main), [(&b"keep"[..], 1), (&b"after"[..], 3)]);
        assert_eq!(output.side.len(), 1);
        assert_eq!(records(&output.side[0].records), [(&b"keep"[..], 1)]);
    }

    #[test]
    fn writes_a_record_in_place() {
        let mut out = Output::default();
        let mut writer = RecordWriter::new(out.main_data(), 10);
        write!(writer, "{}-", 42).expect("writes");
        writer.write_bytes(b"x");
        writer.write_postcard(&1u16).expect("encodes");
        writer.set_timestamp(11);
        let timestamp = writer.timestamp();
        out.commit_main(timestamp);
        let output = out.finish();
        assert_eq!(records(&output.main), [(&b"42-x\x01"[..], 11)]);
    }

    #[test]
    fn emitter_defaults_to_the_input_timestamp() {
        let mut out = Output::default();
        let mut emitter = Emitter::new(&mut out, 5);
        emitter.emit(b"a");
        emitter.emit_with_timestamp(b"b", 6);
        emitter.emit_postcard("c").expect("encodes");
        emitter.side_output("s", b"d");
        let output = out.finish();
        assert_eq!(
            records(&output.main),
            [(&b"a"[..], 5), (&b"b"[..], 6), (&b"\x01c"[..], 5)]
        );
        assert_eq!(records(&output.side[0].records), [(&b"d"[..], 5)]);
    }

    #[test]
    fn builds_a_key_column() {
        let mut column = KeyColumn::default();
        column.begin(3);
        column.writer().write_bytes(b"ab");
        column.commit(false);
        write!(column.writer(), "half").expect("writes");
        column.commit(true);
        column.writer().write_postcard(&3u8).expect("encodes");
        column.commit(false);
        let output = column.finish(Vec::new());
        assert_eq!(output.keys, b"ab\x03");
        assert_eq!(output.key_ends, [2, 2, 3]);
    }

    #[test]
    fn a_failed_encoding_leaves_no_bytes() {
        struct Unencodable;
        impl Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        let mut buf = b"x".to_vec();
        let error = append_postcard(&mut buf, &(1u8, Unencodable)).expect_err("fails");
        assert!(error.reason().starts_with("value could not be encoded"));
        assert_eq!(buf, b"x");
    }
}
