//! The counters of one subtask: records and bytes in and out, late records,
//! the time it waited for input (idle) and on a full output channel
//! (backpressured), its watermarks, and the time its Wasm calls and
//! checkpoint alignments took.
//!
//! Everything is a relaxed atomic bumped once per batch, per wait or per
//! checkpoint, never per record; readers load them at any time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::histogram::{AtomicHistogram, Histogram};

/// No watermark yet.
const NO_WATERMARK: i64 = i64::MIN;

/// The counters of one subtask.
#[derive(Debug)]
pub(crate) struct SubtaskMetrics {
    /// Its index among the vertex's subtasks.
    pub index: u32,
    records_in: AtomicU64,
    records_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    late: AtomicU64,
    idle_nanos: AtomicU64,
    backpressured_nanos: AtomicU64,
    input_watermark: AtomicI64,
    output_watermark: AtomicI64,
    wasm_calls: AtomicHistogram,
    alignment: AtomicHistogram,
    start_delay: AtomicHistogram,
    last_alignment_nanos: AtomicU64,
    last_start_delay_nanos: AtomicU64,
}

/// The counters of one subtask at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubtaskSnapshot {
    /// Its index among the vertex's subtasks.
    pub index: u32,
    /// Records received.
    pub records_in: u64,
    /// Records emitted (main output).
    pub records_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes emitted.
    pub bytes_out: u64,
    /// Records too late for every window.
    pub late: u64,
    /// Time spent waiting for input, in ns.
    pub idle_nanos: u64,
    /// Time spent waiting on a full output channel, in ns.
    pub backpressured_nanos: u64,
    /// The operator's event time (the minimum over its inputs), if any.
    pub input_watermark: Option<i64>,
    /// The last watermark it emitted, if any.
    pub output_watermark: Option<i64>,
    /// Durations of its Wasm calls (one observation per call, each call a
    /// batch), in seconds.
    pub wasm_calls: Histogram,
    /// Checkpoint alignment: first barrier to last, in seconds.
    pub alignment: Histogram,
    /// Checkpoint start delay: trigger to first barrier, in seconds.
    pub start_delay: Histogram,
    /// The last alignment, in ns.
    pub last_alignment_nanos: u64,
    /// The last start delay, in ns.
    pub last_start_delay_nanos: u64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn watermark(value: i64) -> Option<i64> {
    (value != NO_WATERMARK).then_some(value)
}

impl SubtaskMetrics {
    /// Zeroed counters of subtask `index`.
    pub(crate) fn new(index: u32) -> Self {
        Self {
            index,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            late: AtomicU64::new(0),
            idle_nanos: AtomicU64::new(0),
            backpressured_nanos: AtomicU64::new(0),
            input_watermark: AtomicI64::new(NO_WATERMARK),
            output_watermark: AtomicI64::new(NO_WATERMARK),
            wasm_calls: AtomicHistogram::default(),
            alignment: AtomicHistogram::default(),
            start_delay: AtomicHistogram::default(),
            last_alignment_nanos: AtomicU64::new(0),
            last_start_delay_nanos: AtomicU64::new(0),
        }
    }

    /// Counts a batch received: its records and payload bytes.
    pub(crate) fn add_in(&self, records: usize, bytes: usize) {
        self.records_in.fetch_add(records as u64, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a batch emitted: its records and payload bytes.
    pub(crate) fn add_out(&self, records: usize, bytes: usize) {
        self.records_out.fetch_add(records as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts records that came too late for every window.
    pub(crate) fn add_late(&self, records: u64) {
        self.late.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts time spent waiting for input.
    pub(crate) fn add_idle(&self, waited: Duration) {
        self.idle_nanos.fetch_add(nanos(waited), Ordering::Relaxed);
    }

    /// Counts time spent waiting on a full output channel.
    pub(crate) fn add_backpressured(&self, waited: Duration) {
        self.backpressured_nanos.fetch_add(nanos(waited), Ordering::Relaxed);
    }

    /// Sets the operator's event time.
    pub(crate) fn set_input_watermark(&self, watermark: i64) {
        self.input_watermark.store(watermark, Ordering::Relaxed);
    }

    /// Sets the last watermark emitted.
    pub(crate) fn set_output_watermark(&self, watermark: i64) {
        self.output_watermark.store(watermark, Ordering::Relaxed);
    }

    /// Records the duration of one Wasm call.
    pub(crate) fn observe_wasm_call(&self, took: Duration) {
        self.wasm_calls.observe(took);
    }

    /// Records a checkpoint's start delay (trigger to first barrier) and
    /// alignment (first barrier to last).
    pub(crate) fn observe_checkpoint(&self, start_delay: Duration, alignment: Duration) {
        self.start_delay.observe(start_delay);
        self.alignment.observe(alignment);
        self.last_start_delay_nanos.store(nanos(start_delay), Ordering::Relaxed);
        self.last_alignment_nanos.store(nanos(alignment), Ordering::Relaxed);
    }

    /// Records received so far.
    pub(crate) fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records emitted so far.
    pub(crate) fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }

    /// Records too late for every window so far.
    pub(crate) fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// All counters now.
    pub(crate) fn snapshot(&self) -> SubtaskSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SubtaskSnapshot {
            index: self.index,
            records_in: load(&self.records_in),
            records_out: load(&self.records_out),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            late: load(&self.late),
            idle_nanos: load(&self.idle_nanos),
            backpressured_nanos: load(&self.backpressured_nanos),
            input_watermark: watermark(self.input_watermark.load(Ordering::Relaxed)),
            output_watermark: watermark(self.output_watermark.load(Ordering::Relaxed)),
            wasm_calls: self.wasm_calls.read(),
            alignment: self.alignment.read(),
            start_delay: self.start_delay.read(),
            last_alignment_nanos: load(&self.last_alignment_nanos),
            last_start_delay_nanos: load(&self.last_start_delay_nanos),
        }
    }
}

impl SubtaskSnapshot {
    /// Adds the counters of an earlier part of the run (same subtask):
    /// counts and histograms add up, the watermarks and "last" values are
    /// this part's unless it has none yet.
    pub(crate) fn add_earlier(&mut self, earlier: &SubtaskSnapshot) {
        self.records_in += earlier.records_in;
        self.records_out += earlier.records_out;
        self.bytes_in += earlier.bytes_in;
        self.bytes_out += earlier.bytes_out;
        self.late += earlier.late;
        self.idle_nanos += earlier.idle_nanos;
        self.backpressured_nanos += earlier.backpressured_nanos;
        self.input_watermark = self.input_watermark.or(earlier.input_watermark);
        self.output_watermark = self.output_watermark.or(earlier.output_watermark);
        self.wasm_calls.merge(&earlier.wasm_calls);
        self.alignment.merge(&earlier.alignment);
        self.start_delay.merge(&earlier.start_delay);
        if self.alignment.count() == earlier.alignment.count() {
            self.last_alignment_nanos = earlier.last_alignment_nanos;
            self.last_start_delay_nanos = earlier.last_start_delay_nanos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_every_counter_and_adds_up_with_an_earlier_part() {
        let earlier = SubtaskMetrics::new(1);
        earlier.add_in(3, 30);
        earlier.set_output_watermark(7);
        earlier.observe_checkpoint(Duration::from_millis(1), Duration::from_millis(2));
        let now = SubtaskMetrics::new(1);
        now.add_in(2, 20);
        now.add_out(1, 5);
        now.add_late(4);
        now.add_idle(Duration::from_nanos(10));
        now.add_backpressured(Duration::from_nanos(20));
        now.set_input_watermark(9);
        now.observe_wasm_call(Duration::from_micros(20));
        let mut total = now.snapshot();
        total.add_earlier(&earlier.snapshot());
        assert_eq!((total.records_in, total.bytes_in), (5, 50));
        assert_eq!((total.records_out, total.bytes_out, total.late), (1, 5, 4));
        assert_eq!((total.idle_nanos, total.backpressured_nanos), (10, 20));
        assert_eq!((total.input_watermark, total.output_watermark), (Some(9), Some(7)));
        assert_eq!(total.wasm_calls.count(), 1);
        assert_eq!(total.alignment.count(), 1);
        // This part took no checkpoint yet: the last one is the earlier part's.
        assert_eq!(total.last_alignment_nanos, 2_000_000);
    }
}
