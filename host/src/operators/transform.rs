//! Map, filter and flat-map functions written in Wasm. Their only state is
//! operator list state ([`crate::state::operator`]), in the heap backend of
//! the instance's scope, snapshotted when the function opened any.

use super::{Operator, OperatorContext, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::RecordBatch;
use crate::state::StateId;
use crate::storage::CheckpointId;
use crate::wasm::instance::TransformUdf;

/// Runs a stateless Wasm function over each batch.
pub(crate) struct TransformOperator {
    context: OperatorContext,
    instance: TransformUdf,
}

impl TransformOperator {
    /// An operator running `instance`; its operator state, if its scope
    /// holds any, is recorded under the context's key groups.
    pub(crate) fn new(context: OperatorContext, instance: TransformUdf) -> Self {
        Self { context, instance }
    }
}

impl Operator for TransformOperator {
    fn process_batch(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.context.metrics.add_in(batch.len(), batch.payload_bytes());
        let output = self.instance.transform(&mut batch)?;
        self.context.route(output, &batch, out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        let Some(scope) = self.instance.keyed() else {
            return Ok(OperatorSnapshot::default());
        };
        // No state opened: nothing to write.
        if scope.backend.descriptor(StateId(0)).is_err() {
            return Ok(OperatorSnapshot::default());
        }
        self.context.snapshot_keyed(scope.backend.as_mut(), &scope.timers)
    }
}
