//! The two-phase-commit protocol shared by every transactional sink.
//!
//! At a checkpoint barrier the sink pre-commits its open transaction; the
//! handle goes into the checkpoint with every other handle not yet committed.
//! When the checkpoint completes, every transaction pre-committed up to it is
//! committed. On restore the handles of the restored checkpoint are
//! committed and the sink aborts the rest (see
//! [`crate::connectors::TransactionalSink`]). Without checkpoints, the sink
//! commits once, at the end of its input.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Operator, OperatorSnapshot};
use crate::connectors::{ConnectorError, TransactionalSink};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::record::batch::RecordBatch;
use crate::storage::CheckpointId;

/// Drives a [`TransactionalSink`] through checkpoints.
pub(crate) struct TwoPhaseCommitOperator {
    uid: String,
    sink: Box<dyn TransactionalSink>,
    metrics: Arc<VertexMetrics>,
    pending: BTreeMap<CheckpointId, Vec<u8>>,
    checkpointing: bool,
}

impl TwoPhaseCommitOperator {
    /// Recovers `sink` from the restored checkpoint's `transactions` and
    /// wraps it.
    pub(crate) fn new(
        uid: &str,
        mut sink: Box<dyn TransactionalSink>,
        transactions: &[Vec<u8>],
        metrics: Arc<VertexMetrics>,
        checkpointing: bool,
    ) -> Result<Self, TaskError> {
        sink.recover(transactions).map_err(|e| failed(uid, e))?;
        Ok(Self {
            uid: uid.to_string(),
            sink,
            metrics,
            pending: BTreeMap::new(),
            checkpointing,
        })
    }
}

fn failed(uid: &str, source: ConnectorError) -> TaskError {
    TaskError::Connector {
        vertex: format!("sink `{uid}`"),
        source,
    }
}

impl Operator for TwoPhaseCommitOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.metrics.add_in(batch.len() as u64);
        self.sink.write(&batch).map_err(|e| failed(&self.uid, e))?;
        for rejected in self.sink.rejected() {
            let record = crate::record::batch::RecordRef {
                payload: &rejected.payload,
                timestamp: rejected.timestamp,
                key: None,
            };
            out.dead_letters().write(&self.uid, "", record, &rejected.reason)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        let transaction = self.sink.pre_commit().map_err(|e| failed(&self.uid, e))?;
        self.pending.insert(id, transaction);
        Ok(OperatorSnapshot {
            keyed: None,
            transactions: self.pending.values().cloned().collect(),
        })
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        let later = self.pending.split_off(&CheckpointId(id.0 + 1));
        for transaction in std::mem::replace(&mut self.pending, later).into_values() {
            self.sink.commit(&transaction).map_err(|e| failed(&self.uid, e))?;
        }
        Ok(())
    }

    fn pending_commit(&self) -> Option<CheckpointId> {
        self.pending.keys().next_back().copied()
    }

    fn close(&mut self, _out: &mut Output) -> Result<(), TaskError> {
        if self.checkpointing {
            // Everything was pre-committed by the final checkpoint; anything
            // written after it (nothing, for a finished input) is committed now.
            let transaction = self.sink.pre_commit().map_err(|e| failed(&self.uid, e))?;
            return self.sink.commit(&transaction).map_err(|e| failed(&self.uid, e));
        }
        self.sink.finish().map_err(|e| failed(&self.uid, e))
    }
}
