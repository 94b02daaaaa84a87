//! Hands records to a sink connector.

use std::sync::Arc;

use super::Operator;
use crate::connectors::Sink;
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::SubtaskMetrics;
use crate::record::batch::RecordBatch;

/// Writes every batch to a [`Sink`].
pub(crate) struct SinkOperator {
    uid: String,
    sink: Box<dyn Sink>,
    metrics: Arc<SubtaskMetrics>,
}

impl SinkOperator {
    /// An operator writing to `sink`.
    pub(crate) fn new(uid: &str, sink: Box<dyn Sink>, metrics: Arc<SubtaskMetrics>) -> Self {
        Self {
            uid: uid.to_string(),
            sink,
            metrics,
        }
    }

    fn failed(&self, source: crate::connectors::ConnectorError) -> TaskError {
        TaskError::Connector {
            vertex: format!("sink `{}`", self.uid),
            source,
        }
    }
}

impl Operator for SinkOperator {
    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len(), batch.payload_bytes());
        self.sink.write_batch(&batch).map_err(|e| self.failed(e))
    }

    fn close(&mut self, _out: &mut Output) -> Result<(), TaskError> {
        self.sink.finish().map_err(|e| self.failed(e))
    }
}
