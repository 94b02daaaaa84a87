//! Keyed process functions written in Wasm: keyed state, timers, side
//! outputs.
//!
//! Event-time timers fire when the operator's watermark passes them; at the
//! end of a bounded input the watermark becomes the maximum, so every timer
//! fires. Processing-time timers fire when the wall clock passes them.

use std::sync::Arc;

use super::{Operator, OperatorSnapshot, route_call_output, snapshot_instance_state};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::KeyGroupRange;
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::wasm::instance::KeyedProcessUdf;

/// Runs a keyed process function.
pub struct KeyedProcessOperator {
    uid: String,
    module: String,
    instance: KeyedProcessUdf,
    metrics: Arc<VertexMetrics>,
    watermark: EventTime,
    timer_batch: usize,
    key_groups: KeyGroupRange,
}

impl KeyedProcessOperator {
    /// An operator running `instance`, which holds the subtask's state.
    pub fn new(
        uid: &str,
        module: String,
        instance: KeyedProcessUdf,
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
        }
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

impl Operator for KeyedProcessOperator {
    fn process_batch(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
        let output = self.instance.process_keyed(&mut batch, self.watermark)?;
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
