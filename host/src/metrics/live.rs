//! The counters of a running job, published for readers outside the
//! runtime (the HTTP endpoint's `/metrics`, REST routes and dashboard).
//!
//! Each run of the executor (the first, and one after each upgrade) makes
//! fresh [`VertexMetrics`] and publishes them here; the counters of the
//! parts before are folded into a base, so that what readers see only
//! grows over the whole `weir run`, as the final summary does. Reading takes
//! a short lock and loads relaxed atomics: it never slows a subtask down.
//!
//! Rates (records per second, busy, idle and backpressured time per second)
//! come from two samples about a second apart: the endpoint calls
//! [`LiveMetrics::sample`] every second. It also holds the run's checkpoint
//! history and the failures that caused restarts, both recorded once per
//! event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::checkpoints::CheckpointHistory;
use super::exceptions::ExceptionLog;
use super::subtask::SubtaskSnapshot;
use super::{VertexMetrics, VertexRole};

/// A function telling a count kept elsewhere (the dead letters).
type CountFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The published counters of one `weir run`.
#[derive(Default)]
pub(crate) struct LiveMetrics {
    inner: Mutex<Published>,
    restarts: AtomicU64,
    samples: Mutex<Samples>,
    checkpoints: CheckpointHistory,
    exceptions: ExceptionLog,
}

#[derive(Default)]
struct Published {
    /// The vertices of the part running now, in plan order.
    vertices: Vec<Arc<VertexMetrics>>,
    /// Counts of the parts before, by uid and subtask.
    base: HashMap<(String, u32), SubtaskSnapshot>,
    /// Dead letters of the part running now.
    dead_letters: Option<CountFn>,
    /// Dead letters of the parts before.
    dead_letters_base: u64,
}

/// The last two samples, for rates.
#[derive(Default)]
struct Samples {
    previous: Option<(Instant, Snapshot)>,
    latest: Option<(Instant, Snapshot)>,
}

/// The counters of one vertex at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VertexSnapshot {
    /// The vertex's uid.
    pub uid: String,
    /// Its role.
    pub role: VertexRole,
    /// Each subtask, by index.
    pub subtasks: Vec<SubtaskSnapshot>,
}

/// The job's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Each vertex, in plan order.
    pub vertices: Vec<VertexSnapshot>,
    /// Records sent to the dead-letter file.
    pub dead_letters: u64,
    /// Restarts after failures.
    pub restarts: u64,
}

/// Per-second rates of one subtask between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SubtaskRates {
    /// Records received per second.
    pub records_in: f64,
    /// Records emitted per second.
    pub records_out: f64,
    /// Milliseconds per second spent processing.
    pub busy_ms: f64,
    /// Milliseconds per second spent waiting for input.
    pub idle_ms: f64,
    /// Milliseconds per second spent waiting on a full output channel.
    pub backpressured_ms: f64,
}

/// How backpressured a subtask is, as Flink's web UI grades it from the
/// share of time it is backpressured: up to 10 % ok, up to 50 % low, above
/// that high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backpressure {
    /// At most 10 % of the time.
    Ok,
    /// At most 50 %.
    Low,
    /// More.
    High,
}

impl SubtaskRates {
    /// The grade of [`Self::backpressured_ms`].
    pub(crate) fn backpressure(&self) -> Backpressure {
        let ratio = self.backpressured_ms / 1000.0;
        if ratio <= 0.10 {
            Backpressure::Ok
        } else if ratio <= 0.5 {
            Backpressure::Low
        } else {
            Backpressure::High
        }
    }
}

impl std::fmt::Debug for LiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMetrics")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl LiveMetrics {
    /// Publishes the counters of a new part of the run, folding those of
    /// the part before into the base.
    pub(crate) fn publish(&self, vertices: &[Arc<VertexMetrics>], dead_letters: CountFn) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let before = std::mem::replace(&mut inner.vertices, vertices.to_vec());
        for vertex in before {
            for subtask in &vertex.subtasks {
                let mut total = subtask.snapshot();
                if let Some(earlier) = inner.base.get(&(vertex.uid.clone(), subtask.index)) {
                    total.add_earlier(earlier);
                }
                inner.base.insert((vertex.uid.clone(), subtask.index), total);
            }
        }
        if let Some(count) = inner.dead_letters.replace(dead_letters) {
            inner.dead_letters_base += count();
        }
    }

    /// Counts a restart after a failure.
    pub(crate) fn add_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The checkpoint history, for the checkpoint coordinator to record into.
    pub(crate) fn checkpoints(&self) -> &CheckpointHistory {
        &self.checkpoints
    }

    /// The failures that ended attempts.
    pub(crate) fn exceptions(&self) -> &ExceptionLog {
        &self.exceptions
    }

    /// The counters now (empty before the first part is published).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let vertices = inner
            .vertices
            .iter()
            .map(|vertex| VertexSnapshot {
                uid: vertex.uid.clone(),
                role: vertex.role,
                subtasks: vertex
                    .subtasks
                    .iter()
                    .map(|subtask| {
                        let mut total = subtask.snapshot();
                        if let Some(earlier) = inner.base.get(&(vertex.uid.clone(), subtask.index)) {
                            total.add_earlier(earlier);
                        }
                        total
                    })
                    .collect(),
            })
            .collect();
        Snapshot {
            vertices,
            dead_letters: inner.dead_letters_base + inner.dead_letters.as_ref().map_or(0, |count| count()),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Takes a sample for the rates (the endpoint does, every second).
    pub(crate) fn sample(&self) {
        let sample = (Instant::now(), self.snapshot());
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.previous = samples.latest.replace(sample);
    }

    /// The rates of subtask `index` of vertex `uid` between the last two
    /// samples (zero until there are two).
    pub(crate) fn rates(&self, uid: &str, index: u32) -> SubtaskRates {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some((then, before)), Some((now, after))) = (&samples.previous, &samples.latest) else {
            return SubtaskRates::default();
        };
        let find = |snapshot| find_subtask(snapshot, uid, index);
        match (find(before), find(after)) {
            (Some(before), Some(after)) => rates_between(before, after, now.duration_since(*then).as_secs_f64()),
            _ => SubtaskRates::default(),
        }
    }
}

/// Subtask `index` of vertex `uid` in `snapshot`.
fn find_subtask<'a>(snapshot: &'a Snapshot, uid: &str, index: u32) -> Option<&'a SubtaskSnapshot> {
    snapshot
        .vertices
        .iter()
        .find(|v| v.uid == uid)
        .and_then(|v| v.subtasks.iter().find(|s| s.index == index))
}

/// The rates from `before` to `after`, `seconds` apart.
fn rates_between(before: &SubtaskSnapshot, after: &SubtaskSnapshot, seconds: f64) -> SubtaskRates {
    if seconds <= 0.0 {
        return SubtaskRates::default();
    }
    let per_second = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
    let idle_ms = (per_second(after.idle_nanos, before.idle_nanos) / 1e6).min(1000.0);
    let backpressured_ms = (per_second(after.backpressured_nanos, before.backpressured_nanos) / 1e6).min(1000.0);
    SubtaskRates {
        records_in: per_second(after.records_in, before.records_in),
        records_out: per_second(after.records_out, before.records_out),
        busy_ms: (1000.0 - idle_ms - backpressured_ms).max(0.0),
        idle_ms,
        backpressured_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SubtaskMetrics;

    #[test]
    fn counters_add_up_over_the_parts_of_a_run() {
        let live = LiveMetrics::default();
        assert_eq!(live.snapshot(), Snapshot::default());
        let first = vec![Arc::new(VertexMetrics::new("src", VertexRole::Source, 2))];
        first[0].subtasks[1].add_out(5, 50);
        live.publish(&first, Arc::new(|| 2));
        let second = vec![Arc::new(VertexMetrics::new("src", VertexRole::Source, 2))];
        second[0].subtasks[1].add_out(3, 30);
        second[0].subtasks[0].add_in(1, 10);
        live.publish(&second, Arc::new(|| 1));
        live.add_restart();
        let snapshot = live.snapshot();
        assert_eq!((snapshot.dead_letters, snapshot.restarts), (3, 1));
        let vertex = &snapshot.vertices[0];
        let sum = |read: fn(&SubtaskSnapshot) -> u64| vertex.subtasks.iter().map(read).sum::<u64>();
        assert_eq!((sum(|s| s.records_in), sum(|s| s.records_out)), (1, 8));
        assert_eq!(vertex.subtasks[1].bytes_out, 80);
        assert_eq!(vertex.subtasks[0].records_out, 0);
    }

    #[test]
    fn rates_are_per_second_and_busy_time_is_the_rest() {
        let before = SubtaskMetrics::new(0).snapshot();
        let after = SubtaskMetrics::new(0);
        after.add_in(500, 0);
        after.add_idle(std::time::Duration::from_millis(300));
        after.add_backpressured(std::time::Duration::from_millis(1200));
        let rates = rates_between(&before, &after.snapshot(), 2.0);
        assert_eq!(rates.records_in, 250.0);
        assert_eq!(
            (rates.idle_ms, rates.backpressured_ms, rates.busy_ms),
            (150.0, 600.0, 250.0)
        );
        assert_eq!(rates.backpressure(), Backpressure::High);
        let calm = SubtaskRates {
            backpressured_ms: 100.0,
            ..SubtaskRates::default()
        };
        assert_eq!(calm.backpressure(), Backpressure::Ok);
        let some = SubtaskRates {
            backpressured_ms: 500.0,
            ..SubtaskRates::default()
        };
        assert_eq!(some.backpressure(), Backpressure::Low);
    }
}
