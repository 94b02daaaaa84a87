//! Windows, and the accumulator columns of window aggregates.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::weir::udf::types as wit;
use crate::EventTime;
use crate::output::append_postcard;

/// A time window: `start` inclusive, `end` exclusive, in event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The first event time in the window.
    pub start: EventTime,
    /// The first event time after the window.
    pub end: EventTime,
}

impl Window {
    /// The last event time in the window (`end - 1`): the timestamp of the
    /// window's result.
    pub fn max_timestamp(&self) -> EventTime {
        self.end.saturating_sub(1)
    }

    /// Converts the WIT record.
    pub(crate) fn from_wit(window: wit::Window) -> Self {
        Self {
            start: window.start,
            end: window.end,
        }
    }
}

/// Decodes accumulator `index` of a column; an empty accumulator is a new
/// one, made by `create`.
///
/// Accumulators are the guest's own encoding, kept by the host: one that does
/// not decode means the state is corrupt (or its type changed), which no
/// record can be blamed for, so this panics.
pub(crate) fn decode_accumulator<A: DeserializeOwned>(bytes: &[u8], index: usize, create: impl FnOnce() -> A) -> A {
    if bytes.is_empty() {
        return create();
    }
    postcard::from_bytes(bytes).unwrap_or_else(|e| {
        panic!(
            "accumulator {index} from the host could not be decoded ({} bytes): {e}; \
             did the accumulator type change since the state was written?",
            bytes.len()
        )
    })
}

/// The accumulator column being built for the host.
#[derive(Debug, Default)]
pub(crate) struct AccumulatorColumn {
    data: Vec<u8>,
    ends: Vec<u32>,
}

impl AccumulatorColumn {
    /// An empty column with room for `count` accumulators of `bytes` bytes
    /// in all.
    pub(crate) fn with_capacity(count: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    /// Appends an accumulator, postcard-encoded. An accumulator that cannot
    /// be encoded cannot be stored: this panics.
    pub(crate) fn push<A: Serialize>(&mut self, acc: &A) {
        let index = self.ends.len();
        if let Err(e) = append_postcard(&mut self.data, acc) {
            panic!("accumulator {index} could not be stored: {e}");
        }
        self.commit();
    }

    /// Appends an accumulator that is already encoded (or empty: new).
    pub(crate) fn push_encoded(&mut self, bytes: &[u8]) {
        crate::output::append(&mut self.data, bytes);
        self.commit();
    }

    fn commit(&mut self) {
        let end = u32::try_from(self.data.len()).unwrap_or_else(|_| panic!("an accumulator column exceeds 4 GiB"));
        self.ends.push(end);
    }

    /// Hands the column over.
    pub(crate) fn finish(self) -> wit::Accumulators {
        wit::Accumulators {
            data: self.data,
            ends: self.ends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Column;

    #[test]
    fn max_timestamp_is_the_last_millisecond() {
        let window = Window { start: 0, end: 10 };
        assert_eq!(window.max_timestamp(), 9);
        assert_eq!(
            Window {
                start: 0,
                end: i64::MIN
            }
            .max_timestamp(),
            i64::MIN
        );
        assert_eq!(
            Window::from_wit(wit::Window { start: 5, end: 7 }),
            Window { start: 5, end: 7 }
        );
    }

    #[test]
    fn round_trips_a_column() {
        let mut column = AccumulatorColumn::with_capacity(3, 0);
        column.push(&(1u64, 2u64, 3u32));
        column.push_encoded(&[]);
        column.push(&(300u64, 0u64, 7u32));
        let column = column.finish();
        assert_eq!(column.ends.len(), 3);
        let accs: Vec<(u64, u64, u32)> = Column::new(&column.data, &column.ends)
            .iter()
            .enumerate()
            .map(|(i, bytes)| decode_accumulator(bytes, i, || (0, 0, 99)))
            .collect();
        assert_eq!(accs, [(1, 2, 3), (0, 0, 99), (300, 0, 7)]);
    }

    #[test]
    #[should_panic(expected = "accumulator 4 from the host could not be decoded")]
    fn refuses_a_corrupt_accumulator() {
        decode_accumulator::<(u64, String)>(&[1, 0xff], 4, || (0, String::new()));
    }

    #[test]
    #[should_panic(expected = "accumulator 0 could not be stored")]
    fn refuses_an_unencodable_accumulator() {
        struct Unencodable;
        impl Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        AccumulatorColumn::default().push(&Unencodable);
    }
}
