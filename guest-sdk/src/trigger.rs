//! Custom window triggers (Flink's `Trigger`): decide, per element and per
//! timer, whether a window fires and whether it is emptied.
//!
//! The host keeps each window's trigger state (the trigger's own type,
//! postcard-encoded) and the timers its trigger registered; a call covers a
//! whole batch of elements, or all the timers that fire together.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::exports::weir::udf::window_trigger as wit_trigger;
use crate::__bindings::weir::udf::types as wit;
use crate::{EventTime, Record, Result, TaskInfo, Window};

/// What a trigger decides for a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// The window function runs over the window's elements.
    Fire,
    /// The window's elements are dropped (its trigger state stays).
    Purge,
    /// Fire, then purge.
    FireAndPurge,
}

impl TriggerResult {
    pub(crate) fn into_wit(self) -> wit_trigger::TriggerResult {
        match self {
            Self::Continue => wit_trigger::TriggerResult::Continue,
            Self::Fire => wit_trigger::TriggerResult::Fire,
            Self::Purge => wit_trigger::TriggerResult::Purge,
            Self::FireAndPurge => wit_trigger::TriggerResult::FireAndPurge,
        }
    }
}

/// What a trigger sees besides the element or timer: the window, its key,
/// the clocks, and its timers.
#[derive(Debug)]
pub struct TriggerContext<'a> {
    key: &'a [u8],
    window: Window,
    slot: u32,
    watermark: EventTime,
    processing_time: i64,
    timers: &'a mut Vec<wit_trigger::TimerChange>,
}

impl<'a> TriggerContext<'a> {
    pub(crate) fn new(
        key: &'a [u8],
        window: Window,
        slot: u32,
        clock: &wit::BatchContext,
        timers: &'a mut Vec<wit_trigger::TimerChange>,
    ) -> Self {
        Self {
            key,
            window,
            slot,
            watermark: clock.watermark,
            processing_time: clock.processing_time,
            timers,
        }
    }

    /// The window's key (empty for windows over the whole stream).
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The operator's event-time watermark.
    pub fn current_watermark(&self) -> EventTime {
        self.watermark
    }

    /// The host's wall clock, ms since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    fn change(&mut self, domain: wit::TimeDomain, timestamp: i64, delete: bool) {
        self.timers.push(wit_trigger::TimerChange {
            window: self.slot,
            domain,
            timestamp,
            delete,
        });
    }

    /// Calls [`Trigger::on_event_time`] for this window once the watermark
    /// reaches `timestamp` (and the window still exists).
    pub fn register_event_time_timer(&mut self, timestamp: EventTime) {
        self.change(wit::TimeDomain::EventTime, timestamp, false);
    }

    /// Deletes an event-time timer of this window.
    pub fn delete_event_time_timer(&mut self, timestamp: EventTime) {
        self.change(wit::TimeDomain::EventTime, timestamp, true);
    }

    /// Calls [`Trigger::on_processing_time`] for this window once the wall
    /// clock reaches `timestamp`.
    pub fn register_processing_time_timer(&mut self, timestamp: i64) {
        self.change(wit::TimeDomain::ProcessingTime, timestamp, false);
    }

    /// Deletes a processing-time timer of this window.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) {
        self.change(wit::TimeDomain::ProcessingTime, timestamp, true);
    }
}

/// A custom window trigger (Flink's `Trigger`).
///
/// Each window has its own [`State`](Self::State), kept by the host
/// (postcard-encoded; `Default` for a new window) and dropped with the
/// window. A window with a custom trigger keeps its elements (it never
/// pre-aggregates), and it fires only when its trigger says so: there is no
/// implicit firing at the end of the window. The window is still cleaned up
/// when the watermark passes its end plus the allowed lateness.
///
/// Export it with the kind `trigger` in
/// [`export_functions!`](crate::export_functions) and name it in the job file
/// with `trigger = { type = "wasm", function = "..." }`.
pub trait Trigger: Sized + 'static {
    /// The per-window state.
    type State: Serialize + DeserializeOwned + Default;

    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// An element was added to the window.
    fn on_element(
        &mut self,
        element: &Record<'_>,
        state: &mut Self::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult;

    /// An event-time timer of the window fired.
    fn on_event_time(
        &mut self,
        time: EventTime,
        state: &mut Self::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        let _ = (time, state, ctx);
        TriggerResult::Continue
    }

    /// A processing-time timer of the window fired.
    fn on_processing_time(
        &mut self,
        time: i64,
        state: &mut Self::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        let _ = (time, state, ctx);
        TriggerResult::Continue
    }

    /// Session windows merged into `ctx.window()`: returns its state, made
    /// from the states of the merged windows (in window order), and
    /// registers its timers (the merged windows' timers are dropped). By
    /// default, a new state and no timer.
    fn on_merge(&mut self, merged: Vec<Self::State>, ctx: &mut TriggerContext<'_>) -> Self::State {
        let _ = (merged, ctx);
        Self::State::default()
    }
}
