//! Watermark generation: how a stream says how far its event time has got.
//!
//! A vertex with a watermark strategy looks at the event time of every
//! record it emits and, periodically, emits a watermark: the largest
//! timestamp seen minus the allowed out-of-orderness, minus one (Flink's
//! `BoundedOutOfOrdernessWatermarks`; *monotonous* is a bound of zero).
//! Records older than the watermark are *late*. One record stamped far in
//! the future moves the watermark far ahead, exactly as in Flink.
//!
//! When no record has come for `idle_timeout`, the stream declares itself
//! idle, so that downstream operators compute their watermark from their
//! other inputs instead of waiting for this one; the next record makes it
//! active again.
//!
//! A generator's progress is part of every checkpoint
//! ([`GeneratorState`]): restored, a record that was late before a crash is
//! late after it, and the watermarks emitted after a restore are those a
//! failure-free run emits.

use std::time::{Duration, Instant};

pub use crate::storage::manifest::GeneratorState;

use crate::record::batch::{EventTime, RecordBatch};

/// How a vertex generates watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// How late (in event time) a record may be and still count as on time.
    pub max_out_of_orderness_ms: i64,
    /// How often a watermark is emitted; zero means after every batch.
    pub interval: Duration,
    /// After this long without records the stream declares itself idle.
    pub idle_timeout: Option<Duration>,
    /// Watermarks come from a Wasm function that reads the records
    /// ([`WatermarkGenerator::punctuate`]), not from the largest timestamp.
    pub punctuated: bool,
}

/// What the generator wants sent downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkEvent {
    /// A new watermark.
    Watermark(EventTime),
    /// The stream is idle.
    Idle,
}

/// The watermark state of one subtask's output.
#[derive(Debug, Clone)]
pub struct WatermarkGenerator {
    strategy: WatermarkStrategy,
    max_timestamp: EventTime,
    emitted: EventTime,
    last_emit: Instant,
    last_record: Instant,
    idle: bool,
}

impl WatermarkGenerator {
    /// A generator that has seen nothing yet.
    pub fn new(strategy: WatermarkStrategy) -> Self {
        let now = Instant::now();
        Self {
            strategy,
            max_timestamp: EventTime::MIN,
            emitted: EventTime::MIN,
            last_emit: now,
            last_record: now,
            idle: false,
        }
    }

    /// What a checkpoint keeps of this generator.
    pub fn state(&self) -> GeneratorState {
        GeneratorState {
            max_timestamp: self.max_timestamp,
            emitted: self.emitted,
            idle: self.idle,
        }
    }

    /// Continues from a checkpointed `state`: the largest timestamp and the
    /// last watermark are those at the barrier, and a stream that was idle
    /// stays idle until its next record.
    pub fn restore(&mut self, state: GeneratorState) {
        self.max_timestamp = state.max_timestamp;
        self.emitted = state.emitted;
        self.idle = state.idle;
    }

    /// The last watermark emitted (`EventTime::MIN`: none).
    pub fn emitted(&self) -> EventTime {
        self.emitted
    }

    /// Whether the stream has declared itself idle.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Takes the timestamps of records about to be emitted into account.
    pub fn on_batch(&mut self, batch: &RecordBatch, now: Instant) {
        if batch.is_empty() {
            return;
        }
        if let Some(max) = batch.timestamps.iter().copied().max() {
            self.max_timestamp = self.max_timestamp.max(max);
        }
        self.last_record = now;
        self.idle = false;
    }

    /// The watermark the records seen so far allow.
    pub fn current(&self) -> EventTime {
        if self.max_timestamp == EventTime::MIN {
            return EventTime::MIN;
        }
        self.max_timestamp
            .saturating_sub(self.strategy.max_out_of_orderness_ms)
            .saturating_sub(1)
    }

    /// What to emit now, if anything: a watermark when the interval has
    /// passed and it advanced, or idleness after the idle timeout.
    pub fn poll(&mut self, now: Instant) -> Option<WatermarkEvent> {
        if let Some(timeout) = self.strategy.idle_timeout
            && !self.idle
            && now.duration_since(self.last_record) >= timeout
        {
            self.idle = true;
            return Some(WatermarkEvent::Idle);
        }
        if self.strategy.punctuated || now.duration_since(self.last_emit) < self.strategy.interval {
            return None;
        }
        self.last_emit = now;
        let current = self.current();
        (current > self.emitted).then(|| {
            self.emitted = current;
            WatermarkEvent::Watermark(current)
        })
    }

    /// A watermark a punctuated generator declared: the watermark to emit,
    /// if it advances the stream's.
    pub fn punctuate(&mut self, watermark: EventTime) -> Option<EventTime> {
        (watermark > self.emitted).then(|| {
            self.emitted = watermark;
            watermark
        })
    }

    /// How long until [`WatermarkGenerator::poll`] may have something to say.
    pub fn next_poll(&self, now: Instant) -> Duration {
        let periodic = if self.strategy.punctuated {
            Duration::MAX
        } else {
            self.strategy
                .interval
                .saturating_sub(now.duration_since(self.last_emit))
        };
        match self.strategy.idle_timeout {
            Some(timeout) if !self.idle => periodic.min(timeout.saturating_sub(now.duration_since(self.last_record))),
            _ => periodic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(timestamps: &[i64]) -> RecordBatch {
        let mut batch = RecordBatch::default();
        for ts in timestamps {
            batch.push(b"x", *ts);
        }
        batch
    }

    #[test]
    fn the_watermark_trails_the_largest_timestamp_by_the_bound_and_never_goes_back() {
        let strategy = WatermarkStrategy {
            max_out_of_orderness_ms: 5_000,
            interval: Duration::ZERO,
            idle_timeout: None,
            punctuated: false,
        };
        let mut generator = WatermarkGenerator::new(strategy);
        let now = Instant::now();
        assert_eq!(generator.poll(now), None, "nothing seen yet");
        generator.on_batch(&batch(&[10_000, 12_000, 11_000]), now);
        assert_eq!(generator.poll(now), Some(WatermarkEvent::Watermark(6_999)));
        generator.on_batch(&batch(&[9_000]), now);
        assert_eq!(generator.poll(now), None, "an older record does not move it");
        // A record from the future moves it far ahead (as in Flink).
        generator.on_batch(&batch(&[600_000]), now);
        assert_eq!(generator.poll(now), Some(WatermarkEvent::Watermark(594_999)));
    }

    #[test]
    fn a_quiet_stream_declares_itself_idle_once_and_wakes_up_with_records() {
        let strategy = WatermarkStrategy {
            max_out_of_orderness_ms: 0,
            interval: Duration::from_secs(3600),
            idle_timeout: Some(Duration::from_millis(100)),
            punctuated: false,
        };
        let start = Instant::now();
        let mut generator = WatermarkGenerator::new(strategy);
        assert_eq!(generator.poll(start), None);
        let later = start + Duration::from_millis(150);
        assert_eq!(generator.poll(later), Some(WatermarkEvent::Idle));
        assert_eq!(generator.poll(later), None);
        generator.on_batch(&batch(&[1]), later);
        assert_eq!(
            generator.poll(later + Duration::from_millis(150)),
            Some(WatermarkEvent::Idle)
        );
    }

    #[test]
    fn a_restored_generator_goes_on_as_if_nothing_had_happened() {
        let strategy = WatermarkStrategy {
            max_out_of_orderness_ms: 1_000,
            interval: Duration::ZERO,
            idle_timeout: None,
            punctuated: false,
        };
        let now = Instant::now();
        let mut before = WatermarkGenerator::new(strategy);
        before.on_batch(&batch(&[50_000]), now);
        assert_eq!(before.poll(now), Some(WatermarkEvent::Watermark(48_999)));
        let mut after = WatermarkGenerator::new(strategy);
        after.restore(before.state());
        assert_eq!(after.current(), 48_999);
        assert_eq!(after.poll(now), None, "the restored watermark was already emitted");
        // An older record after the restore does not move it back.
        after.on_batch(&batch(&[10_000]), now);
        assert_eq!(after.poll(now), None);
        after.on_batch(&batch(&[52_000]), now);
        assert_eq!(after.poll(now), Some(WatermarkEvent::Watermark(50_999)));
    }

    #[test]
    fn inherited_states_merge_to_the_least_progress() {
        let a = GeneratorState {
            max_timestamp: 10,
            emitted: 5,
            idle: true,
        };
        let b = GeneratorState {
            max_timestamp: 20,
            emitted: 3,
            idle: false,
        };
        assert_eq!(
            GeneratorState::merge([a, b]),
            Some(GeneratorState {
                max_timestamp: 10,
                emitted: 3,
                idle: false
            })
        );
        assert_eq!(GeneratorState::merge([]), None);
    }

    #[test]
    fn a_punctuated_generator_emits_only_what_its_function_declares() {
        let strategy = WatermarkStrategy {
            max_out_of_orderness_ms: 0,
            interval: Duration::ZERO,
            idle_timeout: None,
            punctuated: true,
        };
        let mut generator = WatermarkGenerator::new(strategy);
        let mut batch = RecordBatch::default();
        batch.push(b"a", 1_000);
        let now = Instant::now();
        generator.on_batch(&batch, now);
        assert_eq!(generator.poll(now), None, "no periodic watermark");
        assert_eq!(generator.next_poll(now), Duration::MAX);
        assert_eq!(generator.punctuate(500), Some(500));
        assert_eq!(generator.punctuate(500), None, "not advanced");
        assert_eq!(generator.punctuate(400), None, "never goes back");
        assert_eq!(generator.punctuate(2_000), Some(2_000));
    }
}
