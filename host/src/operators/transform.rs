//! Map, filter and flat-map functions written in Wasm. Their only state is
//! operator list state ([`crate::state::operator`]), in the instance's heap
//! backend, snapshotted when the function opened any.

use std::sync::Arc;

use super::{KeyedView, Operator, OperatorSnapshot, route_call_output};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::record::batch::RecordBatch;
use crate::state::{KeyGroupRange, StateId};
use crate::storage::CheckpointId;
use crate::wasm::instance::TransformUdf;

/// Runs a stateless Wasm function over each batch.
pub struct TransformOperator {
    uid: String,
    module: String,
    instance: TransformUdf,
    metrics: Arc<VertexMetrics>,
    /// The subtask's key groups, recorded with its operator state.
    key_groups: Option<KeyGroupRange>,
}

impl TransformOperator {
    /// An operator running `instance`.
    pub fn new(uid: &str, module: String, instance: TransformUdf, metrics: Arc<VertexMetrics>) -> Self {
        Self {
            uid: uid.to_string(),
            module,
            instance,
            metrics,
            key_groups: None,
        }
    }

    /// The same operator, snapshotting the operator state of its instance's
    /// scope (recorded under the subtask's `key_groups`).
    pub fn with_operator_state(mut self, key_groups: KeyGroupRange) -> Self {
        self.key_groups = Some(key_groups);
        self
    }
}

impl Operator for TransformOperator {
    fn process_batch(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
        let output = self.instance.transform(&mut batch)?;
        route_call_output(output, &batch, &self.uid, &self.module, out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        let Some(key_groups) = self.key_groups else {
            return Ok(OperatorSnapshot::default());
        };
        let Some(scope) = self.instance.keyed() else {
            return Ok(OperatorSnapshot::default());
        };
        // No state opened: nothing to write.
        if scope.backend.descriptor(StateId(0)).is_err() {
            return Ok(OperatorSnapshot::default());
        }
        let state = scope.backend.snapshot().map_err(|e| TaskError::State {
            operator: self.uid.clone(),
            source: e,
        })?;
        Ok(OperatorSnapshot {
            keyed: Some(KeyedView {
                state,
                timers: scope.timers.clone(),
                key_groups,
            }),
            transactions: Vec::new(),
        })
    }
}
