//! The progress line of a long run: records in and out, and their rates,
//! printed to stderr once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{VertexMetrics, VertexRole, thousands};

/// Sums of the job's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Records the sources produced.
    pub records_in: u64,
    /// Records the sinks received.
    pub records_out: u64,
}

/// Adds up the sources' output and the sinks' input.
pub(crate) fn totals(vertices: &[Arc<VertexMetrics>]) -> Totals {
    let mut totals = Totals::default();
    for vertex in vertices {
        match vertex.role {
            VertexRole::Source => totals.records_in += vertex.records_out(),
            VertexRole::Sink => totals.records_out += vertex.records_in(),
            VertexRole::Operator => {}
        }
    }
    totals
}

/// Prints progress every `interval` until `stop` is set; `dead_letters`
/// tells how many records were rejected so far.
pub(crate) fn report(
    vertices: Vec<Arc<VertexMetrics>>,
    dead_letters: impl Fn() -> u64 + Send + 'static,
    stop: Arc<AtomicBool>,
    interval: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last = Totals::default();
        let mut last_at = start;
        while !stop.load(Ordering::Relaxed) {
            // Sleep in small steps so that the job's end is not delayed.
            let wake = Instant::now() + interval;
            while Instant::now() < wake && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let current = totals(&vertices);
            let seconds = now.duration_since(last_at).as_secs_f64().max(1e-9);
            let rate = |a: u64, b: u64| thousands(((a.saturating_sub(b)) as f64 / seconds) as u64);
            eprintln!(
                "weir: {:>5.1}s  in {} ({}/s)  out {} ({}/s)  dead letters {}",
                now.duration_since(start).as_secs_f64(),
                thousands(current.records_in),
                rate(current.records_in, last.records_in),
                thousands(current.records_out),
                rate(current.records_out, last.records_out),
                thousands(dead_letters()),
            );
            last = current;
            last_at = now;
        }
    })
}
