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

use super::{Operator, OperatorContext, OperatorSnapshot, Side};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::{EventTime, RecordBatch};
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::wasm::instance::CoProcessUdf;

/// Runs a keyed co-process function.
pub(crate) struct CoProcessOperator {
    context: OperatorContext,
    instance: CoProcessUdf,
    watermark: EventTime,
    broadcast: bool,
}

impl CoProcessOperator {
    /// An operator running `instance`, which holds the subtask's state (as
    /// a keyed process function does: see [`super::keyed_process`]).
    pub(crate) fn new(context: OperatorContext, instance: CoProcessUdf) -> Self {
        Self {
            context,
            instance,
            watermark: EventTime::MIN,
            broadcast: false,
        }
    }

    /// The same operator, its second input broadcast (and unkeyed).
    pub(crate) fn with_broadcast_input(mut self) -> Self {
        self.broadcast = true;
        self
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

impl Operator for CoProcessOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.process_input(Side::First, batch, out)
    }

    fn process_input(&mut self, side: Side, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.context.metrics.add_in(batch.len(), batch.payload_bytes());
        let broadcast_side = self.broadcast && side == Side::Second;
        if broadcast_side {
            batch.keys.clear();
            batch.key_ends.clear();
            batch.key_ends.resize(batch.len(), 0);
        }
        if let Some(scope) = self.instance.keyed() {
            scope.broadcast_side = broadcast_side;
        }
        let output = self
            .instance
            .process_co(side == Side::Second, &mut batch, self.watermark);
        if let Some(scope) = self.instance.keyed() {
            scope.broadcast_side = false;
        }
        let output = output?;
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
