//! Counters of a running job, and the progress line printed while it runs.
//!
//! Counters are relaxed atomics bumped once per batch, never per record.

pub(crate) mod live;
pub(crate) mod progress;

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Records into and out of one vertex (all its subtasks).
#[derive(Debug)]
pub(crate) struct VertexMetrics {
    /// The vertex's uid.
    pub uid: String,
    /// Its role.
    pub role: VertexRole,
    records_in: AtomicU64,
    records_out: AtomicU64,
    late: AtomicU64,
}

impl VertexMetrics {
    /// Zeroed counters.
    pub(crate) fn new(uid: &str, role: VertexRole) -> Self {
        Self {
            uid: uid.to_string(),
            role,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            late: AtomicU64::new(0),
        }
    }

    /// Counts records received.
    pub(crate) fn add_in(&self, records: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts records emitted.
    pub(crate) fn add_out(&self, records: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts records that came too late for every window.
    pub(crate) fn add_late(&self, records: u64) {
        self.late.fetch_add(records, Ordering::Relaxed);
    }

    /// Records too late for every window so far.
    pub(crate) fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Records received so far.
    pub(crate) fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records emitted so far.
    pub(crate) fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
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
