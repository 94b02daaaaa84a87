//! The checkpoint history of a running job, for `GET /jobs/{id}/checkpoints`
//! and the checkpoint series of `/metrics`.
//!
//! The checkpoint coordinator records each checkpoint once, when it
//! completes or fails — never per record. The history keeps the last
//! [`HISTORY_SIZE`] checkpoints; the counts and histograms cover the whole
//! `weir run`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::histogram::Histogram;

/// How many checkpoints the history keeps (the newest).
pub(crate) const HISTORY_SIZE: usize = 100;

/// How a checkpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum CheckpointStatus {
    /// Its manifest is written: it can be restored.
    Completed,
    /// It was abandoned (declined, expired, superseded, not writable, or
    /// its attempt ended first).
    Failed,
}

/// One checkpoint, as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CheckpointRecord {
    /// The checkpoint id.
    pub id: u64,
    /// Completed or failed.
    pub status: CheckpointStatus,
    /// Whether it was taken for a savepoint.
    pub is_savepoint: bool,
    /// When it was triggered (wall clock, ms since the epoch).
    pub trigger_timestamp: i64,
    /// From its trigger to its completion or failure, in ms.
    pub duration_ms: u64,
    /// The size of the state files it names, in bytes (0 if it failed).
    pub size_bytes: u64,
    /// Per operator uid, how many subtasks acknowledged it.
    pub acknowledged: BTreeMap<String, u32>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// Completed and failed checkpoints of the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CheckpointCounts {
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints failed.
    pub failed: u64,
}

/// The body of `GET /jobs/{id}/checkpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CheckpointsView {
    /// The counts.
    pub counts: CheckpointCounts,
    /// The last [`HISTORY_SIZE`] checkpoints, newest first.
    pub history: Vec<CheckpointRecord>,
}

/// What the `/metrics` series of checkpoints read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckpointSummary {
    /// The counts.
    pub counts: CheckpointCounts,
    /// Duration of the last completed checkpoint, in ms (0: none yet).
    pub last_duration_ms: u64,
    /// Size of the last completed checkpoint, in bytes (0: none yet).
    pub last_size_bytes: u64,
    /// Durations of completed checkpoints, in seconds.
    pub durations: Histogram,
    /// Sizes of completed checkpoints, in bytes.
    pub sizes: Histogram,
    /// The keyed state of the last completed checkpoint, in bytes, by
    /// operator uid and backend (`heap`, `rocksdb`).
    pub state_sizes: BTreeMap<(String, String), u64>,
}

/// The checkpoint history of one `weir run`, shared by the coordinator
/// (writer) and the HTTP endpoint (reader).
#[derive(Debug, Default)]
pub(crate) struct CheckpointHistory {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    summary: CheckpointSummary,
    /// Oldest first.
    history: VecDeque<CheckpointRecord>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            summary: CheckpointSummary {
                counts: CheckpointCounts::default(),
                last_duration_ms: 0,
                last_size_bytes: 0,
                durations: Histogram::seconds(),
                sizes: Histogram::bytes(),
                state_sizes: BTreeMap::new(),
            },
            history: VecDeque::new(),
        }
    }
}

impl CheckpointHistory {
    /// Records a checkpoint that completed (with its state sizes by
    /// operator and backend) or failed.
    pub(crate) fn record(&self, record: CheckpointRecord, state_sizes: Option<BTreeMap<(String, String), u64>>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match record.status {
            CheckpointStatus::Completed => {
                let summary = &mut inner.summary;
                summary.counts.completed += 1;
                summary.last_duration_ms = record.duration_ms;
                summary.last_size_bytes = record.size_bytes;
                summary.durations.observe(record.duration_ms as f64 / 1000.0);
                summary.sizes.observe(record.size_bytes as f64);
                if let Some(sizes) = state_sizes {
                    summary.state_sizes = sizes;
                }
            }
            CheckpointStatus::Failed => inner.summary.counts.failed += 1,
        }
        if inner.history.len() == HISTORY_SIZE {
            inner.history.pop_front();
        }
        inner.history.push_back(record);
    }

    /// The counts, the last completed checkpoint's duration and size, and
    /// the histograms.
    pub(crate) fn summary(&self) -> CheckpointSummary {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .summary
            .clone()
    }

    /// The counts and the history, newest first.
    pub(crate) fn view(&self) -> CheckpointsView {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        CheckpointsView {
            counts: inner.summary.counts,
            history: inner.history.iter().rev().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, status: CheckpointStatus) -> CheckpointRecord {
        CheckpointRecord {
            id,
            status,
            is_savepoint: false,
            trigger_timestamp: 1_000 + id as i64,
            duration_ms: id * 10,
            size_bytes: id * 100,
            acknowledged: BTreeMap::from([("op".to_string(), 2)]),
            failure_message: (status == CheckpointStatus::Failed).then(|| format!("checkpoint {id} expired")),
        }
    }

    #[test]
    fn counts_cover_everything_and_the_history_keeps_the_newest() {
        let history = CheckpointHistory::default();
        assert_eq!(history.view(), CheckpointsView::default());
        for id in 1..=150 {
            let status = if id % 50 == 0 {
                CheckpointStatus::Failed
            } else {
                CheckpointStatus::Completed
            };
            history.record(record(id, status), None);
        }
        let view = history.view();
        assert_eq!(
            view.counts,
            CheckpointCounts {
                completed: 147,
                failed: 3
            }
        );
        let ids: Vec<u64> = view.history.iter().map(|r| r.id).collect();
        assert_eq!(ids, (51..=150).rev().collect::<Vec<_>>());
        assert_eq!(view.history[0], record(150, CheckpointStatus::Failed));
        // The last completed one is 149: the failure after it changes nothing.
        let summary = history.summary();
        assert_eq!(summary.counts, view.counts);
        assert_eq!((summary.last_duration_ms, summary.last_size_bytes), (1_490, 14_900));
        assert_eq!(summary.durations.count(), 147);
    }
}
