//! Per-partition watermarks (Flink's per-split watermarks): when the
//! source has a watermark strategy, each partition it reads has its own
//! bounded-out-of-orderness generator over that partition's timestamps,
//! and the subtask's watermark is the minimum over its partitions.
//!
//! Why: a subtask reads its partitions interleaved in whatever order the
//! fetches return them. With one generator over the subtask's output, a
//! partition that runs ahead in event time moves the watermark past the
//! records a slower partition has not delivered yet, and those become
//! late. With one generator a partition, the slow partition holds the
//! subtask's watermark back until its own records have passed.
//!
//! Idleness (`idle_timeout_ms`): a partition that has delivered nothing for
//! that long is left out of the minimum, so that an empty or quiet
//! partition does not hold the others back; its next record makes it count
//! again (records older than the watermark by then are late, as in Flink).
//! When every partition is idle — or the subtask reads none — the subtask
//! tells its consumers it is idle. A bounded partition read to its end no
//! longer counts. The subtask's watermark never goes back.
//!
//! Each partition's progress (its largest timestamp, whether it was idle)
//! is kept in its split ([`super::split::PartitionWatermark`]): it is
//! checkpointed with the offset and follows the partition on rescale, so
//! a restored subtask emits the watermarks a failure-free run emits.

use std::time::Instant;

use super::split::PartitionSplit;
use crate::record::batch::EventTime;
use crate::time::watermarks::{WatermarkEvent, WatermarkStrategy};

/// The watermark generators of one subtask's partitions.
#[derive(Debug)]
pub(crate) struct SplitWatermarks {
    strategy: WatermarkStrategy,
    /// When each partition (same index as the source's splits) last
    /// delivered a record, and whether it did since the last poll.
    heard: Vec<(Instant, bool)>,
    emitted: EventTime,
    last_emit: Instant,
    /// Whether the consumers were told that this subtask is idle.
    told_idle: bool,
}

impl SplitWatermarks {
    /// Generators for `partitions` splits that have delivered nothing yet
    /// in this run.
    pub(crate) fn new(strategy: WatermarkStrategy, partitions: usize) -> Self {
        let now = Instant::now();
        Self {
            strategy,
            heard: vec![(now, false); partitions],
            emitted: EventTime::MIN,
            last_emit: now,
            told_idle: false,
        }
    }

    /// A partition added while running (partition discovery).
    pub(crate) fn add_partition(&mut self) {
        self.heard.push((Instant::now(), false));
    }

    /// A record with `timestamp` came from the partition of `split`, the
    /// source's split number `index`.
    pub(crate) fn on_record(&mut self, index: usize, split: &mut PartitionSplit, timestamp: EventTime) {
        let watermark = &mut split.watermark;
        watermark.max_timestamp = watermark.max_timestamp.max(timestamp);
        watermark.idle = false;
        if let Some(heard) = self.heard.get_mut(index) {
            heard.1 = true;
        }
    }

    /// The watermark a partition's records allow.
    fn current(&self, split: &PartitionSplit) -> EventTime {
        let max = split.watermark.max_timestamp;
        if max == EventTime::MIN {
            return EventTime::MIN;
        }
        max.saturating_sub(self.strategy.max_out_of_orderness_ms)
            .saturating_sub(1)
    }

    /// What to tell the consumers now, if anything: a new watermark (the
    /// minimum over partitions that are neither idle nor `done`) when the
    /// interval has passed, or that the subtask is idle. Marks partitions
    /// idle whose timeout has passed.
    pub(crate) fn poll(
        &mut self,
        splits: &mut [PartitionSplit],
        done: impl Fn(&PartitionSplit) -> bool,
        now: Instant,
    ) -> Option<WatermarkEvent> {
        for (split, heard) in splits.iter_mut().zip(&mut self.heard) {
            if std::mem::take(&mut heard.1) {
                heard.0 = now;
            }
            if let Some(timeout) = self.strategy.idle_timeout
                && !split.watermark.idle
                && now.duration_since(heard.0) >= timeout
            {
                split.watermark.idle = true;
            }
        }
        let mut active = splits.iter().filter(|s| !s.watermark.idle && !done(s)).peekable();
        if active.peek().is_none() {
            // Every partition idle, or none read: idle (once). A bounded
            // source whose partitions are all done ends instead.
            let all_done = !splits.is_empty() && splits.iter().all(&done);
            if all_done || self.told_idle {
                return None;
            }
            self.told_idle = true;
            return Some(WatermarkEvent::Idle);
        }
        let watermark = active.map(|s| self.current(s)).min().unwrap_or(EventTime::MIN);
        self.told_idle = false;
        if now.duration_since(self.last_emit) < self.strategy.interval {
            return None;
        }
        self.last_emit = now;
        (watermark > self.emitted).then(|| {
            self.emitted = watermark;
            WatermarkEvent::Watermark(watermark)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::connectors::kafka::split::PartitionWatermark;

    fn split(partition: i32) -> PartitionSplit {
        PartitionSplit {
            topic: "t".into(),
            partition,
            next: 0,
            end: None,
            watermark: PartitionWatermark::default(),
        }
    }

    fn strategy(idle_ms: Option<u64>) -> WatermarkStrategy {
        WatermarkStrategy {
            max_out_of_orderness_ms: 100,
            interval: Duration::ZERO,
            idle_timeout: idle_ms.map(Duration::from_millis),
            punctuated: false,
        }
    }

    #[test]
    fn the_slowest_partition_holds_the_watermark() {
        let mut splits = vec![split(0), split(1)];
        let mut marks = SplitWatermarks::new(strategy(None), 2);
        let now = Instant::now();
        marks.on_record(1, &mut splits[1], 50_000);
        assert_eq!(
            marks.poll(&mut splits, |_| false, now),
            None,
            "partition 0 has said nothing"
        );
        marks.on_record(0, &mut splits[0], 1_000);
        assert_eq!(
            marks.poll(&mut splits, |_| false, now),
            Some(WatermarkEvent::Watermark(899))
        );
        marks.on_record(0, &mut splits[0], 2_000);
        assert_eq!(
            marks.poll(&mut splits, |_| false, now),
            Some(WatermarkEvent::Watermark(1_899))
        );
        // Partition 0 done (bounded): partition 1 alone counts.
        assert_eq!(
            marks.poll(&mut splits, |s| s.partition == 0, now),
            Some(WatermarkEvent::Watermark(49_899))
        );
    }

    #[test]
    fn an_idle_partition_stops_counting_and_all_idle_is_said_once() {
        let mut splits = vec![split(0), split(1)];
        let mut marks = SplitWatermarks::new(strategy(Some(100)), 2);
        let start = Instant::now();
        marks.on_record(1, &mut splits[1], 10_000);
        assert_eq!(marks.poll(&mut splits, |_| false, start), None);
        let later = start + Duration::from_millis(150);
        // Partition 0 has been quiet for the timeout, partition 1 not (it
        // delivered before the first poll, which heard it at `start`).
        marks.on_record(1, &mut splits[1], 10_000);
        assert_eq!(
            marks.poll(&mut splits, |_| false, later),
            Some(WatermarkEvent::Watermark(9_899))
        );
        assert!(splits[0].watermark.idle && !splits[1].watermark.idle);
        let quiet = later + Duration::from_millis(150);
        assert_eq!(marks.poll(&mut splits, |_| false, quiet), Some(WatermarkEvent::Idle));
        assert_eq!(marks.poll(&mut splits, |_| false, quiet), None, "said once");
        // A record wakes its partition up; the watermark never goes back.
        marks.on_record(0, &mut splits[0], 5_000);
        assert_eq!(marks.poll(&mut splits, |_| false, quiet), None);
        assert!(!splits[0].watermark.idle);
    }

    #[test]
    fn a_subtask_without_partitions_is_idle_at_once() {
        let mut marks = SplitWatermarks::new(strategy(None), 0);
        assert_eq!(
            marks.poll(&mut [], |_| false, Instant::now()),
            Some(WatermarkEvent::Idle)
        );
    }
}
