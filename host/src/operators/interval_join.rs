//! Interval joins (Flink's `a.keyBy(ka).intervalJoin(b.keyBy(kb))
//! .between(lower, upper)`): an inner join of two keyed streams that pairs
//! records of a key with `left + lower <= right <= left + upper` (both bounds
//! inclusive).
//!
//! Each record is buffered under its timestamp in the map state of its input
//! (`interval-join-left` or `interval-join-right`) and matched at once with
//! the other input's buffered records of its key: a pair is joined as soon
//! as the second of its two records arrives, with the timestamp of the later
//! one. The host builds the pairs; the guest joins a whole batch of them in
//! one call. A record older than the watermark is late: dropped and counted,
//! as in Flink. Buffers are dropped by event-time timers once nothing can
//! match them any more: a left record once the watermark passes
//! `left + upper`, a right record once it passes `right - lower` (one timer
//! per key and time cleans both inputs' buffers that are due then).

use std::collections::HashMap;

use super::join_state::{JoinCore, decode_records, encode_record, from_time_key, time_key};
use super::{KeyedContext, Operator, OperatorSnapshot, Side};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::{EventTime, RecordBatch, span};
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::wasm::instance::JoinUdf;

/// The names of the buffers of the left and the right input.
pub(crate) const INTERVAL_JOIN_STATES: [&str; 2] = ["interval-join-left", "interval-join-right"];

/// An interval join subtask.
pub(crate) struct IntervalJoinOperator {
    core: JoinCore,
    lower: i64,
    upper: i64,
}

impl IntervalJoinOperator {
    /// An interval join in `context` (restored already), with
    /// `lower <= upper`.
    pub(crate) fn new(context: KeyedContext, instance: JoinUdf, (lower, upper): (i64, i64)) -> Result<Self, TaskError> {
        let core = JoinCore::new(context, instance, INTERVAL_JOIN_STATES)?;
        Ok(Self { core, lower, upper })
    }

    /// When the buffer of a record of input `side` at `timestamp` can go:
    /// once the watermark passes its last matching time.
    fn cleanup_time(&self, side: Side, timestamp: EventTime) -> EventTime {
        let last = match side {
            Side::First => timestamp.saturating_add(self.upper),
            Side::Second => timestamp.saturating_sub(self.lower),
        };
        last.saturating_add(1)
    }

    /// The time of the buffered records of input `side` that the cleanup
    /// timer at `time` drops.
    fn buffered_at(&self, side: Side, time: EventTime) -> EventTime {
        let last = time.saturating_sub(1);
        match side {
            Side::First => last.saturating_sub(self.upper),
            Side::Second => last.saturating_add(self.lower),
        }
    }
}

impl Operator for IntervalJoinOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.process_input(Side::First, batch, out)
    }

    fn process_input(&mut self, side: Side, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.core
            .context
            .base
            .metrics
            .add_in(batch.len(), batch.payload_bytes());
        let watermark = self.core.context.watermark;
        // The batch's on-time records by key (records of one batch come from
        // one input, so they never pair with each other).
        let mut keys: Vec<(&[u8], Vec<usize>)> = Vec::new();
        let mut key_index: HashMap<&[u8], usize> = HashMap::new();
        let mut late = 0u64;
        for i in 0..batch.len() {
            if batch.timestamps[i] < watermark {
                late += 1;
                continue;
            }
            let key = batch.key(i).unwrap_or_default();
            let slot = *key_index.entry(key).or_insert_with(|| {
                keys.push((key, Vec::new()));
                keys.len() - 1
            });
            keys[slot].1.push(i);
        }
        if late > 0 {
            self.core.context.base.metrics.add_late(late);
        }
        let (lower, upper) = (self.lower, self.upper);
        for (key, records) in keys {
            self.core.context.backend.set_current_key(key);
            let other = self.core.buffer(side.other());
            let buffered = self
                .core
                .context
                .backend
                .entries(other)
                .map_err(|e| self.core.state_error(e))?;
            for &i in &records {
                let (payload, timestamp) = (batch.payload(i), batch.timestamps[i]);
                // The other input's times this record matches.
                let (from, to) = match side {
                    Side::First => (timestamp.saturating_add(lower), timestamp.saturating_add(upper)),
                    Side::Second => (timestamp.saturating_sub(upper), timestamp.saturating_sub(lower)),
                };
                for (time, entry) in &buffered {
                    if !from_time_key(time).is_some_and(|t| from <= t && t <= to) {
                        continue;
                    }
                    for (other_time, other_payload) in decode_records(entry) {
                        let pair_time = timestamp.max(other_time);
                        let (this, other) = ((payload, timestamp), (other_payload, other_time));
                        let (left, right) = match side {
                            Side::First => (this, other),
                            Side::Second => (other, this),
                        };
                        self.core.pairs.push(key, left, right, pair_time);
                        self.core.flush_if_full(out)?;
                    }
                }
            }
            // Buffer the records, one state access per key and time.
            let mut by_time: Vec<(EventTime, Vec<u8>)> = Vec::new();
            for &i in &records {
                let timestamp = batch.timestamps[i];
                match by_time.iter_mut().find(|(t, _)| *t == timestamp) {
                    Some((_, entry)) => encode_record(entry, timestamp, batch.payload(i)),
                    None => {
                        let mut entry = Vec::new();
                        encode_record(&mut entry, timestamp, batch.payload(i));
                        by_time.push((timestamp, entry));
                    }
                }
            }
            for (timestamp, entry) in by_time {
                self.core.context.backend.set_current_key(key);
                self.core.append(side, &time_key(timestamp), &entry)?;
                let cleanup = self.cleanup_time(side, timestamp);
                self.core.context.timers.register(TimeDomain::EventTime, key, cleanup);
            }
        }
        self.core.flush(out)
    }

    fn restore_watermark(&mut self, watermark: EventTime) {
        self.core.context.watermark = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.core.context.watermark = watermark;
        loop {
            let due = self.core.take_due(watermark);
            if due.is_empty() {
                break;
            }
            for (i, &time) in due.timestamps.iter().enumerate() {
                let key = &due.keys[span(&due.key_ends, i)];
                self.core.context.backend.set_current_key(key);
                for side in Side::BOTH {
                    let state = self.core.buffer(side);
                    let user_key = time_key(self.buffered_at(side, time));
                    self.core
                        .context
                        .backend
                        .delete(state, &user_key)
                        .map_err(|e| self.core.state_error(e))?;
                }
            }
        }
        self.core.flush(out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        self.core.context.snapshot()
    }
}
