//! Map, filter and flat-map functions written in Wasm.

use std::sync::Arc;

use super::{Operator, route_call_output};
use crate::metrics::VertexMetrics;
use crate::runtime::TaskError;
use crate::runtime::batch::RecordBatch;
use crate::runtime::output::Output;
use crate::wasm::UdfInstance;

/// Runs a stateless Wasm function over each batch.
pub struct TransformOperator {
    uid: String,
    module: String,
    instance: UdfInstance,
    metrics: Arc<VertexMetrics>,
}

impl TransformOperator {
    /// An operator running `instance`.
    pub fn new(uid: &str, module: String, instance: UdfInstance, metrics: Arc<VertexMetrics>) -> Self {
        Self {
            uid: uid.to_string(),
            module,
            instance,
            metrics,
        }
    }
}

impl Operator for TransformOperator {
    fn process_batch(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
        let output = self.instance.transform(&mut batch)?;
        route_call_output(output, &batch, &self.uid, &self.module, out)
    }
}
