//! The failures that made a running job restart, for
//! `GET /jobs/{id}/exceptions`.
//!
//! The executor records one entry per failed attempt (the failure that
//! ended it, not the cancellations it caused). The log keeps the last
//! [`EXCEPTIONS_SIZE`] entries; the total counts them all.

use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// How many failures the log keeps (the newest).
pub(crate) const EXCEPTIONS_SIZE: usize = 100;

/// One failure that ended an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ExceptionRecord {
    /// When the attempt failed (wall clock, ms since the epoch).
    pub timestamp: i64,
    /// Which attempt failed (0 for the first).
    pub attempt: u32,
    /// The error, as the job's log shows it (it names the operator, module,
    /// record position and cause when a user function failed).
    pub exception: String,
    /// The uid of the operator, source or sink that failed, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The module of the user function that failed, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Where in the operator's input it failed (a user function's trap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// The root cause (a trap's message, a connector's error).
    pub cause: String,
    /// Whether the job restarted after it (false: the job failed).
    pub restarted: bool,
}

/// The body of `GET /jobs/{id}/exceptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ExceptionsView {
    /// Failures over the whole run.
    pub total: u64,
    /// The last [`EXCEPTIONS_SIZE`] failures, newest first.
    pub exceptions: Vec<ExceptionRecord>,
}

/// The failures of one `weir run`, shared by the executor (writer) and the
/// HTTP endpoint (reader).
#[derive(Debug, Default)]
pub(crate) struct ExceptionLog {
    inner: Mutex<ExceptionsView>,
}

impl ExceptionLog {
    /// Records a failure.
    pub(crate) fn record(&self, record: ExceptionRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.total += 1;
        if inner.exceptions.len() == EXCEPTIONS_SIZE {
            inner.exceptions.pop();
        }
        inner.exceptions.insert(0, record);
    }

    /// The failures, newest first.
    pub(crate) fn view(&self) -> ExceptionsView {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_counts_every_failure_and_keeps_the_newest_first() {
        let log = ExceptionLog::default();
        for attempt in 0..(EXCEPTIONS_SIZE as u32 + 5) {
            log.record(ExceptionRecord {
                timestamp: i64::from(attempt),
                attempt,
                exception: format!("failure {attempt}"),
                operator: Some("op".into()),
                module: None,
                position: None,
                cause: "boom".into(),
                restarted: true,
            });
        }
        let view = log.view();
        assert_eq!(view.total, EXCEPTIONS_SIZE as u64 + 5);
        let attempts: Vec<u32> = view.exceptions.iter().map(|e| e.attempt).collect();
        assert_eq!(attempts, (5..EXCEPTIONS_SIZE as u32 + 5).rev().collect::<Vec<_>>());
    }
}
