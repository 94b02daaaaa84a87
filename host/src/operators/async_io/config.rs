//! What an async lookup operator is configured with: its `async = { ... }`
//! table and the `[[lookup]]`s granted to it, checked by the job loader.

use std::collections::BTreeMap;
use std::time::Duration;

/// In which order results leave the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AsyncMode {
    /// In input order (Flink's `orderedWait`).
    Ordered,
    /// As lookups answer, but never across a watermark (`unorderedWait`).
    Unordered,
}

/// What happens to a record whose lookup failed its last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// The task fails (and restarts under the job's strategy).
    Fail,
    /// The record goes to the dead-letter output with the cause.
    DeadLetter,
}

/// How failed or timed-out requests are tried again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryConfig {
    /// Tries in all, the first included (1: no retry).
    pub attempts: u32,
    /// The wait before the first retry.
    pub delay: Duration,
    /// Each later wait is the one before times this (1.0: fixed delay).
    pub backoff: f64,
}

impl RetryConfig {
    /// The wait before try `attempt` (2 is the first retry).
    pub(crate) fn delay_before(&self, attempt: u32) -> Duration {
        let factor = self.backoff.powi(attempt.saturating_sub(2).min(64) as i32);
        self.delay.mul_f64(factor.clamp(0.0, 1e6))
    }
}

/// How a lookup reaches its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LookupKind {
    /// HTTP GET of a URL whose `{key}` is replaced by the request's key
    /// (percent-encoded): 200 answers the body, 404 answers nothing, any
    /// other status is an error (retried).
    Http {
        /// The URL template (`http://host:port/camera/{key}`).
        url: String,
    },
}

/// A `[[lookup]]` of the job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LookupConfig {
    /// Its name, which operators grant and functions ask for.
    pub name: String,
    /// How it reaches its data.
    pub kind: LookupKind,
}

/// An async lookup operator's settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AsyncConfig {
    /// Output order.
    pub mode: AsyncMode,
    /// Most records in flight (prepared, not yet emitted) per subtask;
    /// then the subtask stops reading its input.
    pub capacity: usize,
    /// The time limit of one try of a request.
    pub timeout: Duration,
    /// Retries of failed or timed-out requests.
    pub retry: RetryConfig,
    /// What happens after the last try failed.
    pub on_failure: OnFailure,
    /// The lookups granted to the operator, by name.
    pub lookups: BTreeMap<String, LookupConfig>,
}

impl AsyncConfig {
    /// Flink's defaults where it has them: ordered, 100 in flight, 5 s a
    /// try, 3 tries 100 ms apart doubling, failing the task.
    pub(crate) fn with_lookups(lookups: BTreeMap<String, LookupConfig>) -> Self {
        Self {
            mode: AsyncMode::Ordered,
            capacity: 100,
            timeout: Duration::from_millis(5_000),
            retry: RetryConfig {
                attempts: 3,
                delay: Duration::from_millis(100),
                backoff: 2.0,
            },
            on_failure: OnFailure::Fail,
            lookups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_by_the_backoff() {
        let retry = RetryConfig {
            attempts: 4,
            delay: Duration::from_millis(100),
            backoff: 2.0,
        };
        let delays: Vec<u128> = (2..=4).map(|a| retry.delay_before(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400]);
    }
}
