//! Typed calls of the two-input kinds: join functions (one call per batch
//! of pairs) and keyed co-process functions (one call per batch of one
//! input).

use super::{CallOutput, Exports, UdfError, UdfInstance, into_output, restore_batch, take_batch, wit};
use crate::record::batch::{EventTime, RecordBatch};
use crate::wasm::bindings::exports::weir::udf::join;

/// Matching pairs of records as flat columns, built by a join operator:
/// pair `i` is `left[i]` with `right[i]`, of key `keys[i]`, and its results
/// get timestamp `timestamps[i]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JoinPairs {
    /// The first input's records (unkeyed columns).
    pub left: RecordBatch,
    /// The second input's records (unkeyed columns).
    pub right: RecordBatch,
    /// Keys, back to back.
    pub keys: Vec<u8>,
    /// End offset of each pair's key.
    pub key_ends: Vec<u32>,
    /// Timestamp of each pair's results.
    pub timestamps: Vec<EventTime>,
}

impl JoinPairs {
    /// Appends the pair of `left` (payload, timestamp) and `right` of `key`.
    pub fn push(&mut self, key: &[u8], left: (&[u8], EventTime), right: (&[u8], EventTime), timestamp: EventTime) {
        self.left.push(left.0, left.1);
        self.right.push(right.0, right.1);
        self.keys.extend_from_slice(key);
        self.key_ends.push(u32::try_from(self.keys.len()).unwrap_or(u32::MAX));
        self.timestamps.push(timestamp);
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Removes every pair, keeping the allocations.
    pub fn clear(&mut self) {
        self.left.clear();
        self.right.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.timestamps.clear();
    }
}

impl UdfInstance {
    /// Runs a join function over `pairs` (one call). Errors refer to pairs
    /// by index, that is to the records of `pairs.left`.
    pub fn join(&mut self, pairs: &mut JoinPairs) -> Result<CallOutput, UdfError> {
        let Exports::Join(guest) = &self.exports else {
            return Err(self.misuse("join", pairs.len()));
        };
        let guest = guest.clone();
        let call = join::JoinPairs {
            left: take_batch(&mut pairs.left),
            right: take_batch(&mut pairs.right),
            keys: std::mem::take(&mut pairs.keys),
            key_ends: std::mem::take(&mut pairs.key_ends),
            timestamps: std::mem::take(&mut pairs.timestamps),
        };
        self.before_call();
        let result = guest.call_join(&mut self.store, &call);
        restore_batch(&mut pairs.left, call.left);
        restore_batch(&mut pairs.right, call.right);
        pairs.keys = call.keys;
        pairs.key_ends = call.key_ends;
        pairs.timestamps = call.timestamps;
        self.after_call(result, pairs.len()).map(into_output)
    }

    /// Runs a keyed co-process function over the keyed records of `batch`,
    /// which came from input `input` (0 or 1).
    pub fn process_co(
        &mut self,
        input: usize,
        batch: &mut RecordBatch,
        watermark: i64,
    ) -> Result<CallOutput, UdfError> {
        let Exports::KeyedCoProcess(guest) = &self.exports else {
            return Err(self.misuse("keyed-co-process", batch.len()));
        };
        let guest = guest.clone();
        let now = crate::time::now_ms();
        if let Some(scope) = self.keyed() {
            scope.set_batch_keys(&batch.keys, &batch.key_ends);
            scope.now_ms = now;
        }
        let keyed = wit::KeyedBatch {
            records: take_batch(batch),
            keys: std::mem::take(&mut batch.keys),
            key_ends: std::mem::take(&mut batch.key_ends),
        };
        self.before_call();
        let context = wit::BatchContext {
            watermark,
            processing_time: now,
        };
        let input = u32::try_from(input).unwrap_or(u32::MAX);
        let result = guest.call_process(&mut self.store, context, input, &keyed);
        batch.keys = keyed.keys;
        batch.key_ends = keyed.key_ends;
        restore_batch(batch, keyed.records);
        self.after_call(result, batch.len()).map(into_output)
    }
}
