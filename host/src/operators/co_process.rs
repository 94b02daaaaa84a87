//! Keyed co-process functions written in Wasm (Flink's
//! `KeyedCoProcessFunction`): two keyed inputs, one keyed state and one set
//! of timers shared by both.
//!
//! Both inputs are partitioned by their own key selector into the same key
//! groups, so the records of a key reach the same subtask from either input.
//! Each batch goes to the guest in one call that says which input it came
//! from; timers fire as in [`super::keyed_process`].
//!
//! With a broadcast second input (Flink's `KeyedBroadcastProcessFunction`),
//! its records reach every subtask unkeyed: they go to the guest with empty
//! keys, and only while processing them may the guest write broadcast state
//! (and not use keyed state).

use std::sync::Arc;

use super::{Operator, OperatorSnapshot, route_call_output, snapshot_instance_state};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::KeyGroupRange;
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::wasm::instance::CoProcessUdf;

/// Runs a keyed co-process function.
pub struct CoProcessOperator {
    uid: String,
    module: String,
    instance: CoProcessUdf,
    metrics: Arc<VertexMetrics>,
    watermark: EventTime,
    timer_batch: usize,
    key_groups: KeyGroupRange,
    broadcast: bool,
}

impl CoProcessOperator {
    /// An operator running `instance`, which holds the subtask's state.
    pub fn new(
        uid: &str,
        module: String,
        instance: CoProcessUdf,
        metrics: Arc<VertexMetrics>,
        timer_batch: usize,
        key_groups: KeyGroupRange,
    ) -> Self {
        Self {
            uid: uid.to_string(),
            module,
            instance,
            metrics,
            watermark: EventTime::MIN,
            timer_batch,
            key_groups,
            broadcast: false,
        }
    }

    /// The same operator, its second input broadcast (and unkeyed).
    pub fn with_broadcast_input(mut self) -> Self {
        self.broadcast = true;
        self
    }

    fn fire(&mut self, domain: TimeDomain, time: i64, out: &mut Output) -> Result<(), TaskError> {
        let (uid, module) = (&self.uid, &self.module);
        let empty = RecordBatch::default();
        self.instance
            .fire_timers(domain, time, self.watermark, self.timer_batch, |output| {
                route_call_output(output, &empty, uid, module, out)
            })
    }
}

impl Operator for CoProcessOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.process_input(0, batch, out)
    }

    fn process_input(&mut self, input: usize, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
        let broadcast_side = self.broadcast && input == 1;
        if broadcast_side {
            batch.keys.clear();
            batch.key_ends.clear();
            batch.key_ends.resize(batch.len(), 0);
        }
        if let Some(scope) = self.instance.keyed() {
            scope.broadcast_side = broadcast_side;
        }
        let output = self.instance.process_co(input == 1, &mut batch, self.watermark);
        if let Some(scope) = self.instance.keyed() {
            scope.broadcast_side = false;
        }
        let output = output?;
        route_call_output(output, &batch, &self.uid, &self.module, out)
    }

    fn restore_watermark(&mut self, watermark: EventTime) {
        self.watermark = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark, out)
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.instance.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<(), TaskError> {
        self.fire(TimeDomain::ProcessingTime, now, out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        snapshot_instance_state(self.instance.keyed(), &self.uid, self.key_groups)
    }
}
