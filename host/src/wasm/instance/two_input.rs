//! Calls of join functions: one call per batch of pairs the join operator
//! built. (Keyed co-process functions, the other two-input kind, are keyed
//! functions: see `keyed`.)

use super::super::bindings::exports::weir::udf::join;
use super::{CallOutput, Udf, UdfError, into_output, restore_batch, take_batch};
use crate::record::batch::{EventTime, RecordBatch};

/// A running join function.
pub type JoinUdf = Udf<join::Guest>;

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

impl JoinUdf {
    /// Runs the function over `pairs` (one call). Errors refer to pairs by
    /// index, that is to the records of `pairs.left`.
    pub fn join(&mut self, pairs: &mut JoinPairs) -> Result<CallOutput, UdfError> {
        let call = join::JoinPairs {
            left: take_batch(&mut pairs.left),
            right: take_batch(&mut pairs.right),
            keys: std::mem::take(&mut pairs.keys),
            key_ends: std::mem::take(&mut pairs.key_ends),
            timestamps: std::mem::take(&mut pairs.timestamps),
        };
        self.core.before_call();
        let result = self.guest.call_join(&mut self.core.store, &call);
        restore_batch(&mut pairs.left, call.left);
        restore_batch(&mut pairs.right, call.right);
        pairs.keys = call.keys;
        pairs.key_ends = call.key_ends;
        pairs.timestamps = call.timestamps;
        self.core.after_call(result, pairs.len()).map(into_output)
    }
}
