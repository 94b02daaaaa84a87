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
use std::sync::Arc;

use super::join_state::{JoinCore, decode_records, encode_record, from_time_key, time_key};
use super::{Operator, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::VertexMetrics;
use crate::record::batch::{EventTime, RecordBatch, span};
use crate::state::TimerService;
use crate::state::{KeyGroupRange, KeyedStateBackend};
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::wasm::instance::JoinUdf;

/// The names of the buffers of the left and the right input.
pub const INTERVAL_JOIN_STATES: [&str; 2] = ["interval-join-left", "interval-join-right"];

/// An interval join subtask.
pub struct IntervalJoinOperator {
    core: JoinCore,
    lower: i64,
    upper: i64,
}

impl IntervalJoinOperator {
    /// An interval join over `backend` and `timers` (restored already), with
    /// `lower <= upper`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor wiring the parts built by the executor"
    )]
    pub fn new(
        uid: &str,
        module: String,
        instance: JoinUdf,
        metrics: Arc<VertexMetrics>,
        backend: Box<dyn KeyedStateBackend>,
        timers: TimerService,
        (lower, upper): (i64, i64),
        key_groups: KeyGroupRange,
        batch_size: usize,
    ) -> Result<Self, TaskError> {
        let core = JoinCore::new(
            uid,
            module,
            instance,
            metrics,
            backend,
            timers,
            INTERVAL_JOIN_STATES,
            key_groups,
            batch_size,
        )?;
        Ok(Self { core, lower, upper })
    }

    /// When the buffer of a record of `input` at `timestamp` can go: once
    /// the watermark passes its last matching time.
    fn cleanup_time(&self, input: usize, timestamp: EventTime) -> EventTime {
        let last = if input == 0 {
            timestamp.saturating_add(self.upper)
        } else {
            timestamp.saturating_sub(self.lower)
        };
        last.saturating_add(1)
    }

    /// The buffered records of input `input` whose time is
    /// `timestamp` of the cleanup timer at `time`.
    fn buffered_at(&self, input: usize, time: EventTime) -> EventTime {
        let last = time.saturating_sub(1);
        if input == 0 {
            last.saturating_sub(self.upper)
        } else {
            last.saturating_add(self.lower)
        }
    }
}

impl Operator for IntervalJoinOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.process_input(0, batch, out)
    }

    fn process_input(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        let input = input.min(1);
        let other = 1 - input;
        self.core.metrics.add_in(batch.len() as u64);
        let watermark = self.core.watermark;
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
            self.core.metrics.add_late(late);
        }
        let (lower, upper) = (self.lower, self.upper);
        for (key, records) in keys {
            self.core.backend.set_current_key(key);
            let buffered = self
                .core
                .backend
                .entries(self.core.buffers[other])
                .map_err(|e| self.core.state_error(e))?;
            for &i in &records {
                let (payload, timestamp) = (batch.payload(i), batch.timestamps[i]);
                // The other input's times this record matches.
                let (from, to) = if input == 0 {
                    (timestamp.saturating_add(lower), timestamp.saturating_add(upper))
                } else {
                    (timestamp.saturating_sub(upper), timestamp.saturating_sub(lower))
                };
                for (time, entry) in &buffered {
                    if !from_time_key(time).is_some_and(|t| from <= t && t <= to) {
                        continue;
                    }
                    for (other_time, other_payload) in decode_records(entry) {
                        let pair_time = timestamp.max(other_time);
                        if input == 0 {
                            self.core
                                .pairs
                                .push(key, (payload, timestamp), (other_payload, other_time), pair_time);
                        } else {
                            self.core
                                .pairs
                                .push(key, (other_payload, other_time), (payload, timestamp), pair_time);
                        }
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
                self.core.backend.set_current_key(key);
                self.core.append(input, &time_key(timestamp), &entry)?;
                let cleanup = self.cleanup_time(input, timestamp);
                self.core.timers.register(TimeDomain::EventTime, key, cleanup);
            }
        }
        self.core.flush(out)
    }

    fn restore_watermark(&mut self, watermark: EventTime) {
        self.core.watermark = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.core.watermark = watermark;
        loop {
            let due = self
                .core
                .timers
                .take_due(TimeDomain::EventTime, watermark, self.core.batch_size);
            if due.is_empty() {
                break;
            }
            for (i, &time) in due.timestamps.iter().enumerate() {
                let key = &due.keys[span(&due.key_ends, i)];
                self.core.backend.set_current_key(key);
                for input in 0..2 {
                    let state = self.core.buffers[input];
                    let user_key = time_key(self.buffered_at(input, time));
                    self.core
                        .backend
                        .delete(state, &user_key)
                        .map_err(|e| self.core.state_error(e))?;
                }
            }
        }
        self.core.flush(out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        self.core.snapshot()
    }
}
