//! What the two join operators share: buffered records in keyed state, the
//! batch of pairs they send to the guest, and their checkpoint view.
//!
//! A buffer entry (a map-state value) holds records back to back, each as
//! its timestamp (8 bytes), its payload length (4 bytes) and its payload, so
//! appending a batch's records to an entry is a byte copy, with no decoding.

use std::sync::Arc;

use super::{KeyedView, OperatorSnapshot, route_call_output};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::record::batch::EventTime;
use crate::state::TimerService;
use crate::state::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, StateKind};
use crate::wasm::instance::JoinPairs;
use crate::wasm::instance::JoinUdf;

/// Appends one record to a buffer entry.
pub fn encode_record(entry: &mut Vec<u8>, timestamp: EventTime, payload: &[u8]) {
    entry.extend_from_slice(&timestamp.to_le_bytes());
    entry.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    entry.extend_from_slice(payload);
}

/// The records of a buffer entry: (timestamp, payload). A truncated entry
/// (which only a corrupt state could hold) ends the iteration.
pub fn decode_records(entry: &[u8]) -> impl Iterator<Item = (EventTime, &[u8])> + '_ {
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
pub fn time_key(timestamp: EventTime) -> [u8; 8] {
    ((timestamp as u64) ^ (1 << 63)).to_be_bytes()
}

/// Decodes [`time_key`].
pub fn from_time_key(key: &[u8]) -> Option<EventTime> {
    Some((u64::from_be_bytes(key.try_into().ok()?) ^ (1 << 63)) as EventTime)
}

/// The state, timers and guest of a join subtask.
pub struct JoinCore {
    /// The operator's uid.
    pub uid: String,
    /// The module, for messages.
    pub module: String,
    /// The join function.
    pub instance: JoinUdf,
    /// Counters.
    pub metrics: Arc<VertexMetrics>,
    /// Keyed state: one map state per input.
    pub backend: Box<dyn KeyedStateBackend>,
    /// Event-time timers (firing windows, or cleaning up buffers).
    pub timers: TimerService,
    /// The buffer of each input (0: left, 1: right).
    pub buffers: [StateId; 2],
    /// The operator's watermark.
    pub watermark: EventTime,
    /// The key groups of this subtask.
    pub key_groups: KeyGroupRange,
    /// Most pairs (and timers) handled in one go.
    pub batch_size: usize,
    /// Pairs waiting to be joined.
    pub pairs: JoinPairs,
}

impl JoinCore {
    /// Registers the buffers `names` (left, right) in `backend`, restored
    /// already with `timers`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor wiring the parts built by the executor"
    )]
    pub fn new(
        uid: &str,
        module: String,
        instance: JoinUdf,
        metrics: Arc<VertexMetrics>,
        mut backend: Box<dyn KeyedStateBackend>,
        timers: TimerService,
        names: [&str; 2],
        key_groups: KeyGroupRange,
        batch_size: usize,
    ) -> Result<Self, TaskError> {
        let mut buffers = [StateId(0); 2];
        for (buffer, name) in buffers.iter_mut().zip(names) {
            let descriptor = StateDescriptor {
                name: name.into(),
                kind: StateKind::Map,
                ttl: None,
            };
            *buffer = backend.register(&descriptor).map_err(|source| TaskError::State {
                operator: uid.to_string(),
                source,
            })?;
        }
        Ok(Self {
            uid: uid.to_string(),
            module,
            instance,
            metrics,
            backend,
            timers,
            buffers,
            watermark: EventTime::MIN,
            key_groups,
            batch_size: batch_size.max(1),
            pairs: JoinPairs::default(),
        })
    }

    /// A state error of this operator.
    pub fn state_error(&self, source: crate::state::StateError) -> TaskError {
        TaskError::State {
            operator: self.uid.clone(),
            source,
        }
    }

    /// Appends `records` (already encoded) to the buffer of `input` under
    /// `user_key` for the current key.
    pub fn append(&mut self, input: usize, user_key: &[u8], records: &[u8]) -> Result<(), TaskError> {
        let state = self.buffers[input];
        let mut entry = self
            .backend
            .get(state, user_key)
            .map_err(|e| self.state_error(e))?
            .unwrap_or_default();
        entry.extend_from_slice(records);
        self.backend
            .put(state, user_key, &entry)
            .map_err(|e| self.state_error(e))
    }

    /// Joins the pairs collected so far once there are `batch_size` of them.
    pub fn flush_if_full(&mut self, out: &mut Output) -> Result<(), TaskError> {
        if self.pairs.len() >= self.batch_size {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Joins the pairs collected so far (one guest call) and emits the results.
    pub fn flush(&mut self, out: &mut Output) -> Result<(), TaskError> {
        if self.pairs.is_empty() {
            return Ok(());
        }
        let output = self.instance.join(&mut self.pairs)?;
        let result = route_call_output(output, &self.pairs.left, &self.uid, &self.module, out);
        self.pairs.clear();
        result
    }

    /// The checkpoint view of the buffers and timers.
    pub fn snapshot(&mut self) -> Result<OperatorSnapshot, TaskError> {
        let state = self.backend.snapshot().map_err(|e| self.state_error(e))?;
        Ok(OperatorSnapshot {
            keyed: Some(KeyedView {
                state,
                timers: self.timers.clone(),
                key_groups: self.key_groups,
            }),
            transactions: Vec::new(),
        })
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
