//! What the two join operators share: buffered records in keyed state, the
//! batch of pairs they send to the guest (their context keeps the rest).
//!
//! A buffer entry (a map-state value) holds records back to back, each as
//! its timestamp (8 bytes), its payload length (4 bytes) and its payload, so
//! appending a batch's records to an entry is a byte copy, with no decoding.

use super::{KeyedContext, Side};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::EventTime;
use crate::state::StateId;
use crate::time::TimeDomain;
use crate::wasm::instance::{JoinPairs, JoinUdf};

/// Appends one record to a buffer entry.
pub(crate) fn encode_record(entry: &mut Vec<u8>, timestamp: EventTime, payload: &[u8]) {
    entry.extend_from_slice(&timestamp.to_le_bytes());
    entry.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    entry.extend_from_slice(payload);
}

/// The records of a buffer entry: (timestamp, payload). A truncated entry
/// (which only a corrupt state could hold) ends the iteration.
pub(crate) fn decode_records(entry: &[u8]) -> impl Iterator<Item = (EventTime, &[u8])> + '_ {
    let mut rest = entry;
    std::iter::from_fn(move || {
        let timestamp = EventTime::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let len = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let payload = rest.get(12..12 + len)?;
        rest = &rest[12 + len..];
        Some((timestamp, payload))
    })
}

/// Encodes a timestamp so that byte order is time order (a map-state key).
pub(crate) fn time_key(timestamp: EventTime) -> [u8; 8] {
    ((timestamp as u64) ^ (1 << 63)).to_be_bytes()
}

/// Decodes [`time_key`].
pub(crate) fn from_time_key(key: &[u8]) -> Option<EventTime> {
    Some((u64::from_be_bytes(key.try_into().ok()?) ^ (1 << 63)) as EventTime)
}

/// The state, timers and guest of a join subtask.
pub(crate) struct JoinCore {
    /// The operator's context: its backend holds one map state per input.
    pub context: KeyedContext,
    /// The join function.
    pub instance: JoinUdf,
    /// The buffer of the first (left) input.
    left: StateId,
    /// The buffer of the second (right) input.
    right: StateId,
    /// Pairs waiting to be joined.
    pub pairs: JoinPairs,
}

impl JoinCore {
    /// Registers the buffers `names` (left, right) in the context's
    /// backend, restored already with its timers.
    pub(crate) fn new(mut context: KeyedContext, instance: JoinUdf, names: [&str; 2]) -> Result<Self, TaskError> {
        let left = context.register(names[0])?;
        let right = context.register(names[1])?;
        Ok(Self {
            context,
            instance,
            left,
            right,
            pairs: JoinPairs::default(),
        })
    }

    /// The buffer of input `side`.
    pub(crate) fn buffer(&self, side: Side) -> StateId {
        match side {
            Side::First => self.left,
            Side::Second => self.right,
        }
    }

    /// A state error of this operator.
    pub(crate) fn state_error(&self, source: crate::state::StateError) -> TaskError {
        self.context.state_error(source)
    }

    /// Appends `records` (already encoded) to the buffer of `side` under
    /// `user_key` for the current key.
    pub(crate) fn append(&mut self, side: Side, user_key: &[u8], records: &[u8]) -> Result<(), TaskError> {
        let state = self.buffer(side);
        let backend = &mut self.context.backend;
        let mut entry = backend
            .get(state, user_key)
            .map_err(|e| self.context.base.state_error(e))?
            .unwrap_or_default();
        entry.extend_from_slice(records);
        backend
            .put(state, user_key, &entry)
            .map_err(|e| self.context.base.state_error(e))
    }

    /// Joins the pairs collected so far once there are `batch_size` of them.
    pub(crate) fn flush_if_full(&mut self, out: &mut Output) -> Result<(), TaskError> {
        if self.pairs.len() >= self.context.base.batch_size {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Joins the pairs collected so far (one guest call) and emits the results.
    pub(crate) fn flush(&mut self, out: &mut Output) -> Result<(), TaskError> {
        if self.pairs.is_empty() {
            return Ok(());
        }
        let output = self.instance.join(&mut self.pairs)?;
        let result = self.context.base.route(output, &self.pairs.left, out);
        self.pairs.clear();
        result
    }

    /// Takes the event-time timers due at `watermark`, a batch at a time.
    pub(crate) fn take_due(&mut self, watermark: EventTime) -> crate::state::timers::DueTimers {
        self.context
            .timers
            .take_due(TimeDomain::EventTime, watermark, self.context.base.batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_records_round_trip_and_time_keys_sort_by_time() {
        let mut entry = Vec::new();
        encode_record(&mut entry, -5, b"a");
        encode_record(&mut entry, 7, b"");
        encode_record(&mut entry, i64::MAX, b"ccc");
        let records: Vec<(EventTime, &[u8])> = decode_records(&entry).collect();
        assert_eq!(records, [(-5, &b"a"[..]), (7, b""), (i64::MAX, b"ccc")]);
        assert!(time_key(-1) < time_key(0) && time_key(0) < time_key(1));
        assert_eq!(from_time_key(&time_key(-42)), Some(-42));
    }
}
