//! The counters of a running job, published for readers outside the
//! runtime (the HTTP endpoint's `/metrics`).
//!
//! Each run of the executor (the first, and one after each upgrade) makes
//! fresh [`VertexMetrics`] and publishes them here; the counters of the
//! parts before are folded into a base, so that what readers see only
//! grows over the whole `weir run`, as the final summary does. Reading takes
//! a short lock and loads relaxed atomics: it never slows a subtask down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{VertexMetrics, VertexRole};

/// A function telling a count kept elsewhere (the dead letters).
type CountFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The published counters of one `weir run`.
#[derive(Default)]
pub(crate) struct LiveMetrics {
    inner: Mutex<Published>,
    restarts: AtomicU64,
}

#[derive(Default)]
struct Published {
    /// The vertices of the part running now, in plan order.
    vertices: Vec<Arc<VertexMetrics>>,
    /// Counts of the parts before, by uid: in, out, late.
    base: HashMap<String, [u64; 3]>,
    /// Dead letters of the part running now.
    dead_letters: Option<CountFn>,
    /// Dead letters of the parts before.
    dead_letters_base: u64,
}

/// The counters of one vertex at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VertexSnapshot {
    /// The vertex's uid.
    pub uid: String,
    /// Its role.
    pub role: VertexRole,
    /// Records received (all subtasks).
    pub records_in: u64,
    /// Records emitted (all subtasks).
    pub records_out: u64,
    /// Records too late for every window.
    pub late: u64,
}

/// The job's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Each vertex, in plan order.
    pub vertices: Vec<VertexSnapshot>,
    /// Records sent to the dead-letter file.
    pub dead_letters: u64,
    /// Restarts after failures.
    pub restarts: u64,
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
            let base = inner.base.entry(vertex.uid.clone()).or_default();
            base[0] += vertex.records_in();
            base[1] += vertex.records_out();
            base[2] += vertex.late();
        }
        if let Some(count) = inner.dead_letters.replace(dead_letters) {
            inner.dead_letters_base += count();
        }
    }

    /// Counts a restart after a failure.
    pub(crate) fn add_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now (empty before the first part is published).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let vertices = inner
            .vertices
            .iter()
            .map(|vertex| {
                let [records_in, records_out, late] = inner.base.get(&vertex.uid).copied().unwrap_or_default();
                VertexSnapshot {
                    uid: vertex.uid.clone(),
                    role: vertex.role,
                    records_in: records_in + vertex.records_in(),
                    records_out: records_out + vertex.records_out(),
                    late: late + vertex.late(),
                }
            })
            .collect();
        Snapshot {
            vertices,
            dead_letters: inner.dead_letters_base + inner.dead_letters.as_ref().map_or(0, |count| count()),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_over_the_parts_of_a_run() {
        let live = LiveMetrics::default();
        assert_eq!(live.snapshot(), Snapshot::default());
        let first = vec![Arc::new(VertexMetrics::new("src", VertexRole::Source))];
        first[0].add_out(5);
        live.publish(&first, Arc::new(|| 2));
        let second = vec![Arc::new(VertexMetrics::new("src", VertexRole::Source))];
        second[0].add_out(3);
        second[0].add_in(1);
        live.publish(&second, Arc::new(|| 1));
        live.add_restart();
        assert_eq!(
            live.snapshot(),
            Snapshot {
                vertices: vec![VertexSnapshot {
                    uid: "src".into(),
                    role: VertexRole::Source,
                    records_in: 1,
                    records_out: 8,
                    late: 0,
                }],
                dead_letters: 3,
                restarts: 1,
            }
        );
    }
}
