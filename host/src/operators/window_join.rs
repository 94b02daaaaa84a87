//! Window joins (Flink's `a.join(b).where(ka).equalTo(kb).window(w).apply(f)`):
//! an inner join of two keyed streams in event-time windows.
//!
//! Each record goes into every tumbling or sliding window it belongs to, in
//! the buffer of its input (map state `window-join-left` or
//! `window-join-right`, user key = the window). When the watermark reaches a
//! window's last millisecond (`end - 1`, through an event-time timer), every
//! pair (left, right) of the key's window is joined — the host builds the
//! pairs and the guest joins a whole batch of them in one call — with the
//! timestamp `end - 1`; then the window's buffers are dropped. A record whose
//! windows have all fired is late: it is dropped and counted, as in Flink.

use std::collections::HashMap;

use super::join_state::{JoinCore, decode_records, encode_record};
use super::{KeyedContext, Operator, OperatorSnapshot, Side};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::{EventTime, RecordBatch};
use crate::storage::CheckpointId;
use crate::time::TimeDomain;
use crate::time::windows::{Window, WindowAssigner};
use crate::wasm::instance::JoinUdf;

/// The names of the buffers of the left and the right input.
pub(crate) const WINDOW_JOIN_STATES: [&str; 2] = ["window-join-left", "window-join-right"];

/// A window join subtask.
pub(crate) struct WindowJoinOperator {
    core: JoinCore,
    assigner: WindowAssigner,
    size: i64,
}

impl WindowJoinOperator {
    /// A window join in `context` (restored already); the assigner is
    /// tumbling or sliding.
    pub(crate) fn new(context: KeyedContext, instance: JoinUdf, assigner: WindowAssigner) -> Result<Self, TaskError> {
        let size = match assigner {
            WindowAssigner::Tumbling { size, .. } | WindowAssigner::Sliding { size, .. } => size,
            WindowAssigner::Session { .. } | WindowAssigner::Global => {
                return Err(TaskError::Internal {
                    operator: context.base.uid.clone(),
                    what: "a window join needs tumbling or sliding windows",
                });
            }
        };
        let core = JoinCore::new(context, instance, WINDOW_JOIN_STATES)?;
        Ok(Self { core, assigner, size })
    }

    /// Joins the window of `key` ending at `time + 1` and drops its buffers.
    fn fire(&mut self, key: &[u8], time: EventTime, out: &mut Output) -> Result<(), TaskError> {
        let window = Window {
            start: time.saturating_add(1).saturating_sub(self.size),
            end: time.saturating_add(1),
        };
        let user_key = window.to_key();
        let core = &mut self.core;
        let (left_state, right_state) = (core.buffer(Side::First), core.buffer(Side::Second));
        let backend = &mut core.context.backend;
        backend.set_current_key(key);
        let state_error = |e| core.context.base.state_error(e);
        let left = backend.get(left_state, &user_key).map_err(state_error)?;
        let right = backend.get(right_state, &user_key).map_err(state_error)?;
        backend.delete(left_state, &user_key).map_err(state_error)?;
        backend.delete(right_state, &user_key).map_err(state_error)?;
        let (Some(left), Some(right)) = (left, right) else {
            return Ok(());
        };
        for l in decode_records(&left) {
            for r in decode_records(&right) {
                core.pairs.push(key, (l.1, l.0), (r.1, r.0), time);
                core.flush_if_full(out)?;
            }
        }
        Ok(())
    }
}

impl Operator for WindowJoinOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.process_input(Side::First, batch, out)
    }

    fn process_input(&mut self, side: Side, batch: RecordBatch, _out: &mut Output) -> Result<(), TaskError> {
        self.core
            .context
            .base
            .metrics
            .add_in(batch.len(), batch.payload_bytes());
        let watermark = self.core.context.watermark;
        // The batch's records by key and window, encoded: one state access a group.
        let mut groups: HashMap<(&[u8], Window), Vec<u8>> = HashMap::new();
        let mut late = 0u64;
        for i in 0..batch.len() {
            let record = batch.get(i);
            let key = record.key.unwrap_or_default();
            let mut placed = false;
            self.assigner.assign(record.timestamp, |window| {
                if window.max_timestamp() > watermark {
                    placed = true;
                    encode_record(
                        groups.entry((key, window)).or_default(),
                        record.timestamp,
                        record.payload,
                    );
                }
            });
            if !placed {
                late += 1;
            }
        }
        for ((key, window), records) in groups {
            self.core.context.backend.set_current_key(key);
            self.core.append(side, &window.to_key(), &records)?;
            self.core
                .context
                .timers
                .register(TimeDomain::EventTime, key, window.max_timestamp());
        }
        if late > 0 {
            self.core.context.base.metrics.add_late(late);
        }
        Ok(())
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
                let key = &due.keys[crate::record::batch::span(&due.key_ends, i)];
                self.fire(key, time, out)?;
            }
        }
        self.core.flush(out)
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        self.core.context.snapshot()
    }
}
