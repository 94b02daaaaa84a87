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
use crate::metrics::SubtaskMetrics;
use crate::record::batch::RecordBatch;
use crate::storage::CheckpointId;

/// The environment variable of the fault-injection point for tests: with
/// `WEIR_FAULT_CRASH_BEFORE_COMMIT=N`, the process aborts when checkpoint
/// `N` (or a later one) has completed and before its transactions, which
/// must hold records, are committed: the moment a crash is most expensive
/// for a two-phase commit.
pub(crate) const CRASH_BEFORE_COMMIT: &str = "WEIR_FAULT_CRASH_BEFORE_COMMIT";

/// Drives a [`TransactionalSink`] through checkpoints.
pub(crate) struct TwoPhaseCommitOperator {
    uid: String,
    sink: Box<dyn TransactionalSink>,
    metrics: Arc<SubtaskMetrics>,
    pending: BTreeMap<CheckpointId, Vec<u8>>,
    checkpointing: bool,
    /// [`CRASH_BEFORE_COMMIT`], read once.
    crash_before_commit: Option<u64>,
    /// Records written since the last barrier (the open transaction).
    open_records: u64,
    /// Records of each pre-committed transaction not yet committed.
    pending_records: BTreeMap<CheckpointId, u64>,
}

impl TwoPhaseCommitOperator {
    /// Recovers `sink` from the restored checkpoint's `transactions` and
    /// wraps it.
    pub(crate) fn new(
        uid: &str,
        mut sink: Box<dyn TransactionalSink>,
        transactions: &[Vec<u8>],
        metrics: Arc<SubtaskMetrics>,
        checkpointing: bool,
    ) -> Result<Self, TaskError> {
        sink.recover(transactions).map_err(|e| failed(uid, e))?;
        Ok(Self {
            uid: uid.to_string(),
            sink,
            metrics,
            pending: BTreeMap::new(),
            checkpointing,
            crash_before_commit: std::env::var(CRASH_BEFORE_COMMIT).ok().and_then(|v| v.parse().ok()),
            open_records: 0,
            pending_records: BTreeMap::new(),
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
        self.metrics.add_in(batch.len(), batch.payload_bytes());
        self.open_records += batch.len() as u64;
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
        self.pending_records.insert(id, std::mem::take(&mut self.open_records));
        Ok(OperatorSnapshot {
            keyed: None,
            transactions: self.pending.values().cloned().collect(),
        })
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        let later = self.pending_records.split_off(&CheckpointId(id.0 + 1));
        let committing: u64 = std::mem::replace(&mut self.pending_records, later).into_values().sum();
        if self.crash_before_commit.is_some_and(|at| id.0 >= at) && committing > 0 {
            tracing::error!(
                uid = self.uid,
                "{CRASH_BEFORE_COMMIT}: aborting after checkpoint {} completed, before committing",
                id.0
            );
            std::process::abort();
        }
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
