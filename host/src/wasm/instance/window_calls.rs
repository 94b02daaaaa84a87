//! Calls of the functions that see whole windows: process-window functions,
//! evictors and triggers. Each call takes every window that fires together
//! (or every element and timer of a batch, for triggers).

use super::super::bindings::exports::weir::udf::{process_window, window_evictor, window_trigger};
use super::{CallOutput, Udf, UdfError, batch_context, into_output, restore_batch, take_batch, wit};
use crate::record::batch::RecordBatch;
use crate::time::window_set::WindowSet;

/// A running process-window function.
pub type ProcessWindowUdf = Udf<process_window::Guest>;
/// A running window evictor.
pub type EvictorUdf = Udf<window_evictor::Guest>;
/// A running window trigger.
pub type TriggerUdf = Udf<window_trigger::Guest>;

/// What a window call tells the guest about time: the operator's watermark
/// and the wall clock now.
fn context(watermark: i64) -> wit::BatchContext {
    batch_context(watermark, crate::time::now_ms())
}

impl ProcessWindowUdf {
    /// Runs the function over the windows of `set`; record errors name
    /// positions in `set.elements`.
    pub fn process_windows(&mut self, set: &mut WindowSet, watermark: i64) -> Result<CallOutput, UdfError> {
        let context = context(watermark);
        let windows = wit_windows(set);
        let elements = take_batch(&mut set.elements);
        self.core.before_call();
        let result = self.guest.call_process_windows(
            &mut self.core.store,
            context,
            &set.keys,
            &set.key_ends,
            &windows,
            &elements,
            &set.window_ends,
        );
        restore_batch(&mut set.elements, elements);
        self.core.checked(result, set.elements.len()).map(into_output)
    }
}

impl EvictorUdf {
    /// Asks the evictor which elements of `set` to evict (positions in
    /// `set.elements`), before the window function or after it.
    pub fn evict(&mut self, set: &mut WindowSet, before: bool, watermark: i64) -> Result<Vec<u32>, UdfError> {
        let context = context(watermark);
        let windows = wit_windows(set);
        let elements = take_batch(&mut set.elements);
        self.core.before_call();
        let result = self.guest.call_evict(
            &mut self.core.store,
            context,
            before,
            &windows,
            &elements,
            &set.window_ends,
        );
        restore_batch(&mut set.elements, elements);
        self.core.checked(result, set.elements.len())
    }
}

fn wit_windows(set: &WindowSet) -> Vec<wit::Window> {
    set.windows
        .iter()
        .map(|w| wit::Window {
            start: w.start,
            end: w.end,
        })
        .collect()
}

/// The windows of a trigger call, their keys and their trigger states.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TriggerWindows {
    /// Keys, back to back.
    pub keys: Vec<u8>,
    /// End offset of each window's key.
    pub key_ends: Vec<u32>,
    /// The windows.
    pub windows: Vec<crate::time::windows::Window>,
    /// Trigger states, back to back (empty: none yet).
    pub states: Vec<u8>,
    /// End offset of each window's state.
    pub state_ends: Vec<u32>,
}

impl TriggerWindows {
    /// Appends a window with its key and trigger state.
    pub fn push(&mut self, key: &[u8], window: crate::time::windows::Window, state: &[u8]) {
        self.keys.extend_from_slice(key);
        self.key_ends.push(u32::try_from(self.keys.len()).unwrap_or(u32::MAX));
        self.windows.push(window);
        self.states.extend_from_slice(state);
        self.state_ends
            .push(u32::try_from(self.states.len()).unwrap_or(u32::MAX));
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// What a trigger decided for a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerAction {
    /// Nothing.
    Continue,
    /// Run the window function.
    Fire,
    /// Empty the window.
    Purge,
    /// Fire, then purge.
    FireAndPurge,
}

impl TriggerAction {
    /// Whether the window fires.
    pub fn fires(self) -> bool {
        matches!(self, Self::Fire | Self::FireAndPurge)
    }

    /// Whether the window is emptied.
    pub fn purges(self) -> bool {
        matches!(self, Self::Purge | Self::FireAndPurge)
    }
}

/// A timer a trigger registered or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerChange {
    /// The window's position in the call.
    pub window: u32,
    /// Its clock.
    pub domain: crate::time::TimeDomain,
    /// When it fires.
    pub timestamp: i64,
    /// Deleted rather than registered.
    pub delete: bool,
}

/// What a trigger call decided, in host types.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TriggerDecisions {
    /// One per element or timer of the call.
    pub actions: Vec<TriggerAction>,
    /// The windows' new states, back to back.
    pub states: Vec<u8>,
    /// End offset of each window's state.
    pub state_ends: Vec<u32>,
    /// Timer changes, in order.
    pub timers: Vec<TimerChange>,
}

impl TriggerDecisions {
    /// The new state of window `i`.
    pub fn state(&self, i: usize) -> &[u8] {
        self.state_ends.get(i).map_or(&[][..], |_| {
            &self.states[crate::record::batch::span(&self.state_ends, i)]
        })
    }
}

fn wit_trigger_windows(windows: TriggerWindows) -> window_trigger::TriggerWindows {
    window_trigger::TriggerWindows {
        keys: windows.keys,
        key_ends: windows.key_ends,
        windows: windows
            .windows
            .iter()
            .map(|w| wit::Window {
                start: w.start,
                end: w.end,
            })
            .collect(),
        states: windows.states,
        state_ends: windows.state_ends,
    }
}

/// How a trigger's output breaks the call's contract (the module is at
/// fault; the call fails like a trap).
#[derive(Debug, thiserror::Error)]
enum TriggerOutputError {
    /// Not one result per input and one state per window.
    #[error("the trigger returned {results} results and {states} states for {expected} inputs and {windows} windows")]
    Counts {
        results: usize,
        states: usize,
        expected: usize,
        windows: usize,
    },
    /// State offsets out of order or past the end of the states.
    #[error("the trigger returned malformed state offsets")]
    Offsets,
    /// A timer change of a window the call did not have.
    #[error("the trigger changed a timer of window {window} of {windows}")]
    TimerWindow { window: u32, windows: usize },
}

fn decisions(
    output: window_trigger::TriggerOutput,
    expected: usize,
    windows: usize,
) -> Result<TriggerDecisions, TriggerOutputError> {
    if output.results.len() != expected || output.state_ends.len() != windows {
        return Err(TriggerOutputError::Counts {
            results: output.results.len(),
            states: output.state_ends.len(),
            expected,
            windows,
        });
    }
    if output
        .state_ends
        .last()
        .is_some_and(|&end| end as usize > output.states.len())
        || output.state_ends.windows(2).any(|w| w[0] > w[1])
    {
        return Err(TriggerOutputError::Offsets);
    }
    let mut timers = Vec::with_capacity(output.timers.len());
    for change in output.timers {
        if change.window as usize >= windows {
            return Err(TriggerOutputError::TimerWindow {
                window: change.window,
                windows,
            });
        }
        timers.push(TimerChange {
            window: change.window,
            domain: match change.domain {
                wit::TimeDomain::EventTime => crate::time::TimeDomain::EventTime,
                wit::TimeDomain::ProcessingTime => crate::time::TimeDomain::ProcessingTime,
            },
            timestamp: change.timestamp,
            delete: change.delete,
        });
    }
    Ok(TriggerDecisions {
        actions: output
            .results
            .into_iter()
            .map(|r| match r {
                window_trigger::TriggerResult::Continue => TriggerAction::Continue,
                window_trigger::TriggerResult::Fire => TriggerAction::Fire,
                window_trigger::TriggerResult::Purge => TriggerAction::Purge,
                window_trigger::TriggerResult::FireAndPurge => TriggerAction::FireAndPurge,
            })
            .collect(),
        states: output.states,
        state_ends: output.state_ends,
        timers,
    })
}

impl TriggerUdf {
    /// Offers elements to their windows' triggers: element `i` of `elements`
    /// was added to window `slots[i]` of `windows`.
    pub fn trigger_elements(
        &mut self,
        windows: TriggerWindows,
        slots: &[u32],
        elements: &mut RecordBatch,
        watermark: i64,
    ) -> Result<TriggerDecisions, UdfError> {
        let context = context(watermark);
        let count = windows.len();
        let windows = wit_trigger_windows(windows);
        let batch = take_batch(elements);
        self.core.before_call();
        let result = self
            .guest
            .call_on_elements(&mut self.core.store, context, &windows, slots, &batch);
        restore_batch(elements, batch);
        let output = self.core.checked(result, elements.len())?;
        decisions(output, elements.len(), count).map_err(|cause| self.core.protocol_error(cause.to_string()))
    }

    /// Fires trigger timers of `domain`: timer `i` at `timestamps[i]` for
    /// window `i` of `windows` (each window at most once).
    pub fn trigger_timers(
        &mut self,
        domain: crate::time::TimeDomain,
        windows: TriggerWindows,
        timestamps: &[i64],
        watermark: i64,
    ) -> Result<TriggerDecisions, UdfError> {
        let context = context(watermark);
        let domain = match domain {
            crate::time::TimeDomain::EventTime => wit::TimeDomain::EventTime,
            crate::time::TimeDomain::ProcessingTime => wit::TimeDomain::ProcessingTime,
        };
        let count = windows.len();
        let windows = wit_trigger_windows(windows);
        self.core.before_call();
        let result = self
            .guest
            .call_on_timers(&mut self.core.store, context, domain, &windows, timestamps);
        let output = self.core.checked(result, 0)?;
        decisions(output, timestamps.len(), count).map_err(|cause| self.core.protocol_error(cause.to_string()))
    }

    /// Tells a trigger that windows merged: window `i` of `windows`
    /// replaces the windows whose states are items
    /// `span(merged_ends, i)` of `merged_states`.
    pub fn trigger_merge(
        &mut self,
        windows: TriggerWindows,
        merged_states: (Vec<u8>, Vec<u32>),
        merged_ends: &[u32],
        watermark: i64,
    ) -> Result<TriggerDecisions, UdfError> {
        let context = context(watermark);
        let count = windows.len();
        let windows = wit_trigger_windows(windows);
        self.core.before_call();
        let result = self.guest.call_on_merge(
            &mut self.core.store,
            context,
            &windows,
            &merged_states.0,
            &merged_states.1,
            merged_ends,
        );
        let output = self.core.checked(result, 0)?;
        decisions(output, 0, count).map_err(|cause| self.core.protocol_error(cause.to_string()))
    }
}
