//! Counters of a running job, and the progress line printed while it runs.
//!
//! Counters are relaxed atomics bumped once per batch, never per record.
//! Checkpoint history and failures are recorded once per event.

pub(crate) mod checkpoints;
pub(crate) mod exceptions;
pub(crate) mod histogram;
pub(crate) mod live;
pub(crate) mod progress;
pub(crate) mod subtask;

use std::sync::Arc;

pub(crate) use subtask::SubtaskMetrics;

/// What kind of vertex a counter set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VertexRole {
    /// A source: its output is the job's input.
    Source,
    /// A user function.
    Operator,
    /// A sink: its input is the job's output.
    Sink,
}

/// The counters of one vertex: one [`SubtaskMetrics`] per subtask.
#[derive(Debug)]
pub(crate) struct VertexMetrics {
    /// The vertex's uid.
    pub uid: String,
    /// Its role.
    pub role: VertexRole,
    /// One per subtask, by index.
    pub subtasks: Vec<Arc<SubtaskMetrics>>,
}

impl VertexMetrics {
    /// Zeroed counters for `parallelism` subtasks.
    pub(crate) fn new(uid: &str, role: VertexRole, parallelism: u32) -> Self {
        Self {
            uid: uid.to_string(),
            role,
            subtasks: (0..parallelism).map(|i| Arc::new(SubtaskMetrics::new(i))).collect(),
        }
    }

    /// The counters of subtask `index` (a fresh set if there is no such
    /// subtask, which the plan rules out).
    pub(crate) fn subtask(&self, index: u32) -> Arc<SubtaskMetrics> {
        self.subtasks
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| Arc::new(SubtaskMetrics::new(index)))
    }

    /// Records received so far (all subtasks).
    pub(crate) fn records_in(&self) -> u64 {
        self.subtasks.iter().map(|s| s.records_in()).sum()
    }

    /// Records emitted so far (all subtasks).
    pub(crate) fn records_out(&self) -> u64 {
        self.subtasks.iter().map(|s| s.records_out()).sum()
    }

    /// Records too late for every window so far (all subtasks).
    pub(crate) fn late(&self) -> u64 {
        self.subtasks.iter().map(|s| s.late()).sum()
    }
}

/// Formats `n` with thousands separators.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
