//! Kafka sink partitioners: type erasure and the WIT export.

use super::adapters::Instance;
use super::{Module, Runtime, scope, with_active, wrong_kind};
use crate::__bindings::exports::weir::udf::partitioner as wit_partitioner;
use crate::__bindings::weir::udf::types as wit;
use crate::record::{Column, check_len};
use crate::{Partitioner, Record, TaskInfo};

/// A partitioner, behind an object-safe trait.
pub(crate) trait DynPartitioner {
    /// The partition of every message of a batch.
    fn partition(&mut self, messages: &wit::KeyedBatch, has_key: &[bool], partitions: u32) -> Vec<u32>;
}

struct PartitionerFn<F>(F);

impl<F: Partitioner> DynPartitioner for PartitionerFn<F> {
    fn partition(&mut self, messages: &wit::KeyedBatch, has_key: &[bool], partitions: u32) -> Vec<u32> {
        let records = &messages.records;
        let count = records.ends.len();
        check_len("timestamps", records.timestamps.len(), count);
        check_len("key-ends", messages.key_ends.len(), count);
        check_len("has-key", has_key.len(), count);
        let keys = Column::new(&messages.keys, &messages.key_ends);
        Column::new(&records.data, &records.ends)
            .iter()
            .zip(keys.iter())
            .zip(records.timestamps.iter().zip(has_key))
            .zip(0u32..)
            .map(|(((value, key), (&timestamp, &keyed)), index)| {
                scope::enter_record(index);
                let record = Record::new(value, timestamp, keyed.then_some(key), index);
                self.0.partition(&record, partitions)
            })
            .collect()
    }
}

/// Opens a [`Partitioner`].
pub(crate) fn open_partitioner<F: Partitioner>(task: &TaskInfo) -> crate::Result<Instance> {
    Ok(Instance::Partitioner(Box::new(PartitionerFn(F::open(task)?))))
}

impl<M: Module> wit_partitioner::Guest for Runtime<M> {
    fn partition(messages: wit::KeyedBatch, has_key: Vec<bool>, partitions: u32) -> Vec<u32> {
        const EXPORT: &str = "partitioner.partition";
        with_active(EXPORT, |active| {
            let Instance::Partitioner(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let chosen = function.partition(&messages, &has_key, partitions);
            scope::end_call();
            chosen
        })
    }
}
