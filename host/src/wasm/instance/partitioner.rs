//! Calls of Kafka sink partitioners: the messages of a whole batch go over
//! in one call, and one partition per message comes back.

use super::super::bindings::exports::weir::udf::partitioner;
use super::{Udf, UdfError, restore_batch, take_batch, wit};
use crate::record::batch::RecordBatch;

/// A running Kafka sink partitioner.
pub type PartitionerUdf = Udf<partitioner::Guest>;

impl PartitionerUdf {
    /// The partition of every message of `messages` (record `i`: message
    /// `i`'s value and event time; key `i`: its key when `has_key[i]`), for
    /// a topic of `partitions` partitions. The columns of `messages` cross
    /// the boundary and come back; the partitions are not range-checked
    /// here (the sink names its topic when one is out of range).
    pub fn partition(
        &mut self,
        messages: &mut RecordBatch,
        has_key: &[bool],
        partitions: u32,
    ) -> Result<Vec<u32>, UdfError> {
        let batch = wit::KeyedBatch {
            records: take_batch(messages),
            keys: std::mem::take(&mut messages.keys),
            key_ends: std::mem::take(&mut messages.key_ends),
        };
        self.core.before_call();
        let result = self
            .guest
            .call_partition(&mut self.core.store, &batch, has_key, partitions);
        restore_batch(messages, batch.records);
        messages.keys = batch.keys;
        messages.key_ends = batch.key_ends;
        let chosen = self.core.after_call(result, messages.len())?;
        if chosen.len() != messages.len() {
            return Err(self.core.protocol_error(format!(
                "returned {} partitions for {} messages",
                chosen.len(),
                messages.len()
            )));
        }
        Ok(chosen)
    }
}
