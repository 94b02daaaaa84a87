//! Processing-time windows and the built-in time triggers beyond the
//! event-time default, as Flink defines them:
//!
//! - processing-time windows (`time = "processing"`): a record's window is
//!   chosen by the operator's clock when it processes the record's batch
//!   (read once per batch); they are never late, and their state is dropped
//!   when the clock passes their end;
//! - `ProcessingTimeTrigger`: fire when the clock reaches `end - 1`;
//! - `ContinuousEventTimeTrigger.of(i)`: the first record of a window (in
//!   arrival order) schedules a firing at `t - t mod i + i` (`t` its
//!   timestamp, aligned to the epoch), each firing schedules the next one
//!   `i` later, never past `end - 1`, where the window fires as the
//!   event-time trigger does; a watermark that jumps several intervals fires
//!   once per interval, as Flink's timers do;
//! - `ContinuousProcessingTimeTrigger.of(i)`: the same by the clock (the
//!   first firing at `now - now mod i + i`), for processing-time windows;
//! - `PurgingTrigger`: `purge = true` empties the window at each firing (a
//!   later firing with nothing new emits nothing); the trigger's own state
//!   (the next continuous firing) stays, as in Flink.
//!
//! A processing-time timer for `t` fires once the clock has passed `t` (at
//! `t + 1` at the earliest, as Flink's timer service does), so a record the
//! clock places at a window's last millisecond is in the window before it
//! fires, and none comes after: each processing-time window fires once.
//!
//! Trigger state (the next continuous firing of each window) is a keyed map
//! state `window-trigger`, and every firing goes through the
//! [`crate::state::TimerService`], so all of it is checkpointed. Timers are
//! never deleted: a timer whose window is gone fires on nothing.
//!
//! At the end of a bounded input (the final watermark), every window with a
//! pending processing-time firing fires once more with its final contents
//! and is dropped. Flink drops such windows unless the job is drained; Weir
//! fires them so that no record is lost.
//!
//! Session windows merge the next continuous firing (the earliest of the
//! merged windows, as Flink's `onMerge`); a new session formed inside one
//! batch schedules its first continuous firing from its earliest record. A
//! purged session stays in state with an empty accumulator (a new one for
//! the guest) until its cleanup, so that later records still merge with it.

use super::{Slots, WindowOperator};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::operators::window_config::Trigger;
use crate::record::batch::{EventTime, RecordBatch, span};
use crate::time::TimeDomain;
use crate::time::windows::Window;
use crate::wasm::instance::Accumulators;

/// The name of the state that holds each window's next continuous firing.
pub(crate) const WINDOW_TRIGGER: &str = "window-trigger";

/// (key, window, accumulator) of the windows to emit.
type Fired = Vec<(Vec<u8>, Window, Vec<u8>)>;

/// The windows of a key with their accumulators (none: purged).
type KeyWindows = Vec<(Window, Option<Vec<u8>>)>;

impl WindowOperator {
    /// Whether this module handles the operator's windows: processing-time
    /// windows, or a trigger other than the event-time and count triggers.
    pub(super) fn triggered(&self) -> bool {
        self.config.time == TimeDomain::ProcessingTime
            || matches!(
                self.config.trigger,
                Trigger::PurgingEventTime
                    | Trigger::ProcessingTime { .. }
                    | Trigger::ContinuousEventTime { .. }
                    | Trigger::ContinuousProcessingTime { .. }
            )
    }

    /// The time that places a record in windows: its timestamp, or `now`
    /// for processing-time windows.
    pub(super) fn assign_time(&self, timestamp: EventTime, now: i64) -> i64 {
        match self.config.time {
            TimeDomain::EventTime => timestamp,
            TimeDomain::ProcessingTime => now,
        }
    }

    /// The earliest assignment time of the records of each of `n` slots.
    pub(super) fn first_timestamps(
        &self,
        n: usize,
        slots: &[u32],
        origin: &[usize],
        batch: &RecordBatch,
        now: i64,
    ) -> Vec<Option<i64>> {
        let mut first: Vec<Option<i64>> = vec![None; n];
        for (&slot, &i) in slots.iter().zip(origin) {
            let at = self.assign_time(batch.timestamps[i], now);
            if let Some(earliest) = first.get_mut(slot as usize) {
                *earliest = Some(earliest.map_or(at, |e: i64| e.min(at)));
            }
        }
        first
    }

    /// When a window's state is dropped: its end plus the allowed lateness
    /// in event time, its end in processing time.
    fn cleanup(&self, window: Window) -> (TimeDomain, i64) {
        match self.config.time {
            TimeDomain::EventTime => (
                TimeDomain::EventTime,
                window.max_timestamp().saturating_add(self.config.allowed_lateness_ms),
            ),
            TimeDomain::ProcessingTime => (TimeDomain::ProcessingTime, window.max_timestamp()),
        }
    }

    /// The clock of the continuous trigger.
    fn continuous_domain(&self) -> Option<TimeDomain> {
        match self.config.trigger {
            Trigger::ContinuousEventTime { .. } => Some(TimeDomain::EventTime),
            Trigger::ContinuousProcessingTime { .. } => Some(TimeDomain::ProcessingTime),
            _ => None,
        }
    }

    /// Tumbling and sliding windows (event or processing time) under a
    /// trigger of this module: the batch is folded in one guest call as on
    /// the event-time path, then the trigger sees each window it touched.
    pub(super) fn process_triggered(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        let now = self.clock.now_ms();
        let assigner = self.config.assigner;
        let mut slots = Slots::default();
        // The assignment time of each slot's first record, in batch order
        // (Flink's continuous trigger schedules from the first element).
        let mut first: Vec<i64> = Vec::new();
        let mut record_slots: Vec<u32> = Vec::with_capacity(batch.len());
        let mut origin: Vec<usize> = Vec::with_capacity(batch.len());
        let mut input = RecordBatch::with_capacity(batch.len(), batch.payload_bytes());
        let mut late = RecordBatch::default();
        for (i, record) in batch.iter().enumerate() {
            let key = record.key.unwrap_or_default();
            let at = self.assign_time(record.timestamp, now);
            let mut placed = false;
            assigner.assign(at, |window| {
                if self.is_late(window) {
                    return;
                }
                placed = true;
                let slot = slots.slot(key, window);
                if slot as usize == first.len() {
                    first.push(at);
                }
                record_slots.push(slot);
                origin.push(i);
                input.push(record.payload, record.timestamp);
            });
            if !placed {
                late.push_record(record);
            }
        }
        let slots = slots.into_owned();
        let mut accumulators = Accumulators::default();
        for (key, window) in &slots {
            self.context.backend.set_current_key(key);
            let stored = self
                .context
                .backend
                .get(self.contents, &window.to_key())
                .map_err(|e| self.context.state_error(e))?;
            accumulators.push(stored.as_deref().unwrap_or_default());
        }
        let accumulators = self.add(accumulators, record_slots, &mut input, Some((&batch, &origin)), out)?;
        let mut fired = Vec::new();
        for (slot, (key, window)) in slots.into_iter().enumerate() {
            let accumulator = accumulators.get(slot);
            if accumulator.is_empty() {
                continue; // every record of this window was rejected
            }
            self.context.backend.set_current_key(&key);
            self.context
                .backend
                .put(self.contents, &window.to_key(), accumulator)
                .map_err(|e| self.context.state_error(e))?;
            self.on_element(&key, window, accumulator, (first[slot], now), &mut fired)?;
        }
        self.fire(fired, out)?;
        self.context.emit_late(late, self.config.late_output.as_deref(), out)
    }

    /// The trigger's `onElement` for a window that just took records (the
    /// current key is `key`; `element` is the assignment time of its first
    /// record and the clock), plus the window's cleanup timer.
    fn on_element(
        &mut self,
        key: &[u8],
        window: Window,
        accumulator: &[u8],
        (timestamp, now): (i64, i64),
        fired: &mut Fired,
    ) -> Result<(), TaskError> {
        let max = window.max_timestamp();
        let fire = match self.config.trigger {
            Trigger::ProcessingTime { .. } => {
                self.context.timers.register(TimeDomain::ProcessingTime, key, max);
                false
            }
            Trigger::ContinuousProcessingTime { interval_ms, .. } => {
                if self.next_fire(window)?.is_none() {
                    let next = aligned_next(now, interval_ms).min(max);
                    self.schedule(TimeDomain::ProcessingTime, key, window, next)?;
                }
                false
            }
            Trigger::ContinuousEventTime { interval_ms, .. } => {
                if max <= self.context.watermark {
                    true
                } else {
                    self.context.timers.register(TimeDomain::EventTime, key, max);
                    if self.next_fire(window)?.is_none() {
                        let next = aligned_next(timestamp, interval_ms).min(max);
                        self.schedule(TimeDomain::EventTime, key, window, next)?;
                    }
                    false
                }
            }
            // The event-time trigger, purging or not.
            _ => {
                if max <= self.context.watermark {
                    true
                } else {
                    self.context.timers.register(TimeDomain::EventTime, key, max);
                    false
                }
            }
        };
        let (domain, cleanup) = self.cleanup(window);
        self.context.timers.register(domain, key, cleanup);
        if fire {
            fired.push((key.to_vec(), window, accumulator.to_vec()));
            if self.config.trigger.purges() {
                self.purge(window)?;
            }
        }
        Ok(())
    }

    /// Empties `window` (current key). A session window stays, empty, so
    /// that later records still merge with it, as Flink's merging window
    /// set keeps a purged window until its cleanup.
    fn purge(&mut self, window: Window) -> Result<(), TaskError> {
        let key = window.to_key();
        let result = if self.config.assigner.is_merging() {
            self.context.backend.put(self.contents, &key, &[])
        } else {
            self.context.backend.delete(self.contents, &key)
        };
        result.map_err(|e| self.context.state_error(e))
    }

    /// Stores the session `window` of `key` that replaced the `merged`
    /// windows in state, with its `accumulator`; `element` is the earliest
    /// assignment time of its records in this batch (none: the window only
    /// holds state) and the clock.
    pub(super) fn settle_session(
        &mut self,
        key: &[u8],
        window: Window,
        merged: &[Window],
        accumulator: &[u8],
        element: (Option<i64>, i64),
        fired: &mut Fired,
    ) -> Result<(), TaskError> {
        let (first, now) = element;
        if first.is_none() && merged == [window] {
            return Ok(()); // untouched by this batch
        }
        self.context.backend.set_current_key(key);
        let mut next: Option<i64> = None;
        for old in merged {
            if let Some(time) = self.next_fire(*old)? {
                next = Some(next.map_or(time, |n| n.min(time)));
            }
            for state in [self.contents, self.triggers] {
                self.context
                    .backend
                    .delete(state, &old.to_key())
                    .map_err(|e| self.context.state_error(e))?;
            }
        }
        if accumulator.is_empty() {
            return Ok(());
        }
        self.context
            .backend
            .put(self.contents, &window.to_key(), accumulator)
            .map_err(|e| self.context.state_error(e))?;
        if let (Some(next), Some(domain)) = (next, self.continuous_domain()) {
            self.schedule(domain, key, window, next)?;
        }
        self.on_element(key, window, accumulator, (first.unwrap_or(now), now), fired)
    }

    /// The watermark advanced: event-time firings and cleanups; the final
    /// watermark first fires what waits for the clock.
    pub(super) fn on_watermark_triggered(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.context.watermark = watermark;
        if watermark == EventTime::MAX {
            self.flush_processing_time(out)?;
        }
        self.fire_timers(TimeDomain::EventTime, watermark, out)
    }

    /// The clock reached `now`: processing-time firings and cleanups of
    /// the timers before `now`.
    pub(super) fn fire_processing_time(&mut self, now: i64, out: &mut Output) -> Result<(), TaskError> {
        self.fire_timers(TimeDomain::ProcessingTime, now.saturating_sub(1), out)
    }

    /// Fires the timers of `domain` up to `time`, including the ones the
    /// firings register (continuous triggers catching up).
    fn fire_timers(&mut self, domain: TimeDomain, time: i64, out: &mut Output) -> Result<(), TaskError> {
        loop {
            let due = self.context.timers.take_due(domain, time, self.context.base.batch_size);
            if due.is_empty() {
                return Ok(());
            }
            let mut fired = Vec::new();
            for i in 0..due.len() {
                let key = &due.keys[span(&due.key_ends, i)];
                self.on_timer(domain, key, due.timestamps[i], &mut fired)?;
            }
            self.fire(fired, out)?;
        }
    }

    /// The trigger's `onEventTime`/`onProcessingTime` for every window of
    /// `key`, then the cleanup of the windows whose time has come.
    fn on_timer(&mut self, domain: TimeDomain, key: &[u8], time: i64, fired: &mut Fired) -> Result<(), TaskError> {
        self.context.backend.set_current_key(key);
        let purge = self.config.trigger.purges();
        for (window, contents) in self.windows_of_current_key()? {
            let max = window.max_timestamp();
            let fire = match (self.config.trigger, domain) {
                (Trigger::ProcessingTime { .. }, TimeDomain::ProcessingTime) => time == max,
                (Trigger::ContinuousProcessingTime { interval_ms, .. }, TimeDomain::ProcessingTime) => {
                    self.continue_firing(domain, key, window, time, interval_ms)?
                }
                (Trigger::ContinuousEventTime { interval_ms, .. }, TimeDomain::EventTime) => {
                    time == max || self.continue_firing(domain, key, window, time, interval_ms)?
                }
                (Trigger::EventTime | Trigger::PurgingEventTime, TimeDomain::EventTime) => time == max,
                _ => false,
            };
            if fire && let Some(accumulator) = contents.filter(|a| !a.is_empty()) {
                fired.push((key.to_vec(), window, accumulator));
                if purge {
                    self.purge(window)?;
                }
            }
            if self.cleanup(window) == (domain, time) {
                self.clear_window(window)?;
            }
        }
        Ok(())
    }

    /// A continuous trigger's timer at `time`: if it is the window's next
    /// firing, schedules the one after (never past the window's end) and
    /// fires.
    fn continue_firing(
        &mut self,
        domain: TimeDomain,
        key: &[u8],
        window: Window,
        time: i64,
        interval: i64,
    ) -> Result<bool, TaskError> {
        if self.next_fire(window)? != Some(time) {
            return Ok(false);
        }
        let next = time.saturating_add(interval).min(window.max_timestamp());
        if next > time {
            self.schedule(domain, key, window, next)?;
        }
        Ok(true)
    }

    /// End of input: every window with a pending processing-time firing
    /// fires once with its final contents and is dropped.
    fn flush_processing_time(&mut self, out: &mut Output) -> Result<(), TaskError> {
        loop {
            let due = self
                .context
                .timers
                .take_due(TimeDomain::ProcessingTime, i64::MAX, self.context.base.batch_size);
            if due.is_empty() {
                return Ok(());
            }
            let mut fired = Vec::new();
            for i in 0..due.len() {
                let key = &due.keys[span(&due.key_ends, i)];
                let time = due.timestamps[i];
                self.context.backend.set_current_key(key);
                for (window, contents) in self.windows_of_current_key()? {
                    let pending = match self.config.trigger {
                        Trigger::ProcessingTime { .. } => time == window.max_timestamp(),
                        Trigger::ContinuousProcessingTime { .. } => self.next_fire(window)? == Some(time),
                        _ => false,
                    };
                    if !pending {
                        continue;
                    }
                    if let Some(accumulator) = contents.filter(|a| !a.is_empty()) {
                        fired.push((key.to_vec(), window, accumulator));
                    }
                    self.clear_window(window)?;
                }
            }
            self.fire(fired, out)?;
        }
    }

    /// The windows of the current key: those with contents, and (continuous
    /// triggers) those with only a next firing, left by a purge.
    fn windows_of_current_key(&mut self) -> Result<KeyWindows, TaskError> {
        let mut windows: KeyWindows = Vec::new();
        for (user_key, accumulator) in self
            .context
            .backend
            .entries(self.contents)
            .map_err(|e| self.context.state_error(e))?
        {
            if let Some(window) = Window::from_key(&user_key) {
                windows.push((window, Some(accumulator)));
            }
        }
        if self.continuous_domain().is_some() {
            for (user_key, _) in self
                .context
                .backend
                .entries(self.triggers)
                .map_err(|e| self.context.state_error(e))?
            {
                if let Some(window) = Window::from_key(&user_key)
                    && !windows.iter().any(|(w, _)| *w == window)
                {
                    windows.push((window, None));
                }
            }
        }
        windows.sort_by_key(|(window, _)| *window);
        Ok(windows)
    }

    /// The next continuous firing of `window` (current key).
    fn next_fire(&mut self, window: Window) -> Result<Option<i64>, TaskError> {
        let stored = self
            .context
            .backend
            .get(self.triggers, &window.to_key())
            .map_err(|e| self.context.state_error(e))?;
        Ok(stored.and_then(|bytes| bytes.try_into().ok().map(i64::from_le_bytes)))
    }

    /// Records `time` as the next continuous firing of `window` (current
    /// key) and registers its timer.
    fn schedule(&mut self, domain: TimeDomain, key: &[u8], window: Window, time: i64) -> Result<(), TaskError> {
        self.context
            .backend
            .put(self.triggers, &window.to_key(), &time.to_le_bytes())
            .map_err(|e| self.context.state_error(e))?;
        self.context.timers.register(domain, key, time);
        Ok(())
    }

    /// Drops all state of `window` (current key).
    fn clear_window(&mut self, window: Window) -> Result<(), TaskError> {
        for state in [self.contents, self.counts, self.triggers] {
            self.context
                .backend
                .delete(state, &window.to_key())
                .map_err(|e| self.context.state_error(e))?;
        }
        Ok(())
    }
}

/// The first multiple of `interval` (from the epoch) after `time`.
fn aligned_next(time: i64, interval: i64) -> i64 {
    (time - time.rem_euclid(interval)).saturating_add(interval)
}

#[cfg(test)]
mod tests;
