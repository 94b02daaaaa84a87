//! Keyed process functions written in Wasm: keyed state, timers, side
//! outputs.
//!
//! Event-time timers fire when the operator's watermark passes them; at the
//! end of a bounded input the watermark becomes the maximum, so every timer
//! fires. Processing-time timers fire when the wall clock passes them.
//!
//! The state backend and timers live in the instance's store (the guest's
//! state calls reach them there), so the operator carries an
//! [`OperatorContext`], not a keyed one.

use super::{Operator, OperatorContext, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::{EventTime, RecordBatch};
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::wasm::instance::KeyedProcessUdf;

/// Runs a keyed process function.
pub(crate) struct KeyedProcessOperator {
    context: OperatorContext,
    instance: KeyedProcessUdf,
    watermark: EventTime,
}

impl KeyedProcessOperator {
    /// An operator running `instance`, which holds the subtask's state.
    pub(crate) fn new(context: OperatorContext, instance: KeyedProcessUdf) -> Self {
        Self {
            context,
            instance,
            watermark: EventTime::MIN,
        }
    }

    fn fire(&mut self, domain: TimeDomain, time: i64, out: &mut Output) -> Result<(), TaskError> {
        let context = &self.context;
        let empty = RecordBatch::default();
        self.instance
            .fire_timers(domain, time, self.watermark, context.batch_size, |output| {
                context.route(output, &empty, out)
            })
    }
}

impl Operator for KeyedProcessOperator {
    fn process_batch(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.context.metrics.add_in(batch.len(), batch.payload_bytes());
        let output = self.instance.process_keyed(&mut batch, self.watermark)?;
        self.context.route(output, &batch, out)
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
        match self.instance.keyed() {
            Some(scope) => self.context.snapshot_keyed(scope.backend.as_mut(), &scope.timers),
            None => Ok(OperatorSnapshot::default()),
        }
    }
}
