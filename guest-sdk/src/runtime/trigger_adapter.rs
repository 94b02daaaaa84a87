//! Type erasure for custom window triggers: decodes each window's trigger
//! state once per call, runs the trigger over the call's elements or timers
//! in order, and encodes the states back.

use crate::__bindings::exports::weir::udf::window_trigger as wit_trigger;
use crate::__bindings::weir::udf::types as wit;
use crate::output::append_postcard;
use crate::record::{Column, check_len};
use crate::runtime::adapters::Instance;
use crate::runtime::scope;
use crate::trigger::TriggerContext;
use crate::{Record, Result, TaskInfo, Trigger, Window};

/// A window trigger.
pub(crate) trait DynTrigger {
    /// Offers elements to their windows' triggers.
    fn on_elements(
        &mut self,
        clock: &wit::BatchContext,
        windows: &wit_trigger::TriggerWindows,
        slots: &[u32],
        elements: &wit::Batch,
    ) -> wit_trigger::TriggerOutput;

    /// Window `i` replaces windows with the states
    /// `merged[start(i)..merged_ends[i]]`.
    fn on_merge(
        &mut self,
        clock: &wit::BatchContext,
        windows: &wit_trigger::TriggerWindows,
        merged_states: (&[u8], &[u32]),
        merged_ends: &[u32],
    ) -> wit_trigger::TriggerOutput;

    /// Timer `i` fired for window `i`.
    fn on_timers(
        &mut self,
        clock: &wit::BatchContext,
        domain: wit::TimeDomain,
        windows: &wit_trigger::TriggerWindows,
        timestamps: &[i64],
    ) -> wit_trigger::TriggerOutput;
}

/// Opens a [`Trigger`].
pub(crate) fn open_trigger<F: Trigger>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::Trigger(Box::new(TriggerFn {
        function: F::open(task)?,
        states: Vec::new(),
    })))
}

struct TriggerFn<F: Trigger> {
    function: F,
    /// The states of the current call's windows, decoded when first used.
    states: Vec<Option<F::State>>,
}

/// Decodes the trigger state of window `index`; empty is a new window.
fn decode<S: serde::de::DeserializeOwned + Default>(bytes: &[u8], index: usize) -> S {
    if bytes.is_empty() {
        return S::default();
    }
    postcard::from_bytes(bytes).unwrap_or_else(|e| {
        panic!(
            "trigger state {index} from the host could not be decoded ({} bytes): {e}; \
             did the state type change since it was written?",
            bytes.len()
        )
    })
}

impl<F: Trigger> TriggerFn<F> {
    fn begin(&mut self, windows: &wit_trigger::TriggerWindows) {
        let count = windows.windows.len();
        check_len("keys", windows.key_ends.len(), count);
        check_len("states", windows.state_ends.len(), count);
        self.states.clear();
        self.states.resize_with(count, || None);
    }

    /// Runs `call` with window `slot`'s state and context.
    fn with_window(
        &mut self,
        windows: &wit_trigger::TriggerWindows,
        slot: u32,
        clock: &wit::BatchContext,
        timers: &mut Vec<wit_trigger::TimerChange>,
        call: impl FnOnce(&mut F, &mut F::State, &mut TriggerContext<'_>) -> crate::TriggerResult,
    ) -> wit_trigger::TriggerResult {
        let index = slot as usize;
        let count = windows.windows.len();
        assert!(index < count, "the host named trigger window {slot} of {count}");
        let states = Column::new(&windows.states, &windows.state_ends);
        let state = self.states[index].get_or_insert_with(|| decode(states.get(index), index));
        let key = Column::new(&windows.keys, &windows.key_ends).get(index);
        let mut ctx = TriggerContext::new(key, Window::from_wit(windows.windows[index]), slot, clock, timers);
        call(&mut self.function, state, &mut ctx).into_wit()
    }

    fn finish(
        &mut self,
        windows: &wit_trigger::TriggerWindows,
        results: Vec<wit_trigger::TriggerResult>,
        timers: Vec<wit_trigger::TimerChange>,
    ) -> wit_trigger::TriggerOutput {
        let old = Column::new(&windows.states, &windows.state_ends);
        let mut states = Vec::with_capacity(windows.states.len());
        let mut state_ends = Vec::with_capacity(self.states.len());
        for (index, state) in self.states.iter_mut().enumerate() {
            match state.take() {
                Some(state) => {
                    if let Err(e) = append_postcard(&mut states, &state) {
                        panic!("trigger state {index} could not be stored: {e}");
                    }
                }
                None => states.extend_from_slice(old.get(index)),
            }
            state_ends.push(u32::try_from(states.len()).unwrap_or_else(|_| panic!("trigger states exceed 4 GiB")));
        }
        wit_trigger::TriggerOutput {
            results,
            states,
            state_ends,
            timers,
        }
    }
}

impl<F: Trigger> DynTrigger for TriggerFn<F> {
    fn on_merge(
        &mut self,
        clock: &wit::BatchContext,
        windows: &wit_trigger::TriggerWindows,
        merged_states: (&[u8], &[u32]),
        merged_ends: &[u32],
    ) -> wit_trigger::TriggerOutput {
        self.begin(windows);
        check_len("merged ends", merged_ends.len(), windows.windows.len());
        let merged = Column::new(merged_states.0, merged_states.1);
        let mut timers = Vec::new();
        let mut start = 0usize;
        for (slot, &end) in (0u32..).zip(merged_ends) {
            let end = end as usize;
            assert!(
                start <= end && end <= merged.len(),
                "malformed merge from the host: states {start}..{end} of {}",
                merged.len()
            );
            let states: Vec<F::State> = (start..end).map(|i| decode(merged.get(i), i)).collect();
            start = end;
            let index = slot as usize;
            let key = Column::new(&windows.keys, &windows.key_ends).get(index);
            let mut ctx = TriggerContext::new(key, Window::from_wit(windows.windows[index]), slot, clock, &mut timers);
            let state = self.function.on_merge(states, &mut ctx);
            self.states[index] = Some(state);
        }
        self.finish(windows, Vec::new(), timers)
    }

    fn on_elements(
        &mut self,
        clock: &wit::BatchContext,
        windows: &wit_trigger::TriggerWindows,
        slots: &[u32],
        elements: &wit::Batch,
    ) -> wit_trigger::TriggerOutput {
        self.begin(windows);
        check_len("slots", slots.len(), elements.ends.len());
        check_len("timestamps", elements.timestamps.len(), elements.ends.len());
        let mut results = Vec::with_capacity(slots.len());
        let mut timers = Vec::new();
        let payloads = Column::new(&elements.data, &elements.ends);
        for (index, ((payload, &timestamp), &slot)) in payloads.iter().zip(&elements.timestamps).zip(slots).enumerate()
        {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            scope::enter_record(index);
            let record = Record::new(payload, timestamp, None, index);
            results.push(
                self.with_window(windows, slot, clock, &mut timers, |function, state, ctx| {
                    function.on_element(&record, state, ctx)
                }),
            );
        }
        scope::end_record();
        self.finish(windows, results, timers)
    }

    fn on_timers(
        &mut self,
        clock: &wit::BatchContext,
        domain: wit::TimeDomain,
        windows: &wit_trigger::TriggerWindows,
        timestamps: &[i64],
    ) -> wit_trigger::TriggerOutput {
        self.begin(windows);
        check_len("timestamps", timestamps.len(), windows.windows.len());
        let mut results = Vec::with_capacity(timestamps.len());
        let mut timers = Vec::new();
        for (slot, &time) in (0u32..).zip(timestamps) {
            scope::enter_timer(slot);
            results.push(
                self.with_window(windows, slot, clock, &mut timers, |function, state, ctx| match domain {
                    wit::TimeDomain::EventTime => function.on_event_time(time, state, ctx),
                    wit::TimeDomain::ProcessingTime => function.on_processing_time(time, state, ctx),
                }),
            );
        }
        scope::end_record();
        self.finish(windows, results, timers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TriggerContext as Ctx, TriggerResult};

    /// Fires every second element of a window; its state is the count. On
    /// a timer it purges; merged windows add their counts and get a timer.
    struct EverySecond;

    impl Trigger for EverySecond {
        type State = u32;

        fn open(_task: &TaskInfo) -> Result<Self> {
            Ok(Self)
        }

        fn on_element(&mut self, element: &Record<'_>, state: &mut u32, ctx: &mut Ctx<'_>) -> TriggerResult {
            *state += 1;
            ctx.register_event_time_timer(element.timestamp() + 100);
            if state.is_multiple_of(2) {
                TriggerResult::Fire
            } else {
                TriggerResult::Continue
            }
        }

        fn on_event_time(&mut self, time: i64, _state: &mut u32, ctx: &mut Ctx<'_>) -> TriggerResult {
            ctx.delete_event_time_timer(time);
            TriggerResult::Purge
        }

        fn on_merge(&mut self, merged: Vec<u32>, ctx: &mut Ctx<'_>) -> u32 {
            ctx.register_processing_time_timer(7);
            merged.iter().sum()
        }
    }

    fn windows(states: &[Option<u32>]) -> wit_trigger::TriggerWindows {
        let mut out = wit_trigger::TriggerWindows {
            keys: Vec::new(),
            key_ends: Vec::new(),
            windows: Vec::new(),
            states: Vec::new(),
            state_ends: Vec::new(),
        };
        for (i, state) in states.iter().enumerate() {
            out.keys.push(b'a' + i as u8);
            out.key_ends.push(out.keys.len() as u32);
            out.windows.push(wit::Window {
                start: i as i64 * 10,
                end: i as i64 * 10 + 10,
            });
            if let Some(state) = state {
                out.states.extend(postcard::to_allocvec(state).expect("encodes"));
            }
            out.state_ends.push(out.states.len() as u32);
        }
        out
    }

    fn states(output: &wit_trigger::TriggerOutput) -> Vec<Option<u32>> {
        Column::new(&output.states, &output.state_ends)
            .iter()
            .map(|b| (!b.is_empty()).then(|| postcard::from_bytes(b).expect("decodes")))
            .collect()
    }

    fn function() -> TriggerFn<EverySecond> {
        TriggerFn {
            function: EverySecond,
            states: Vec::new(),
        }
    }

    const CLOCK: wit::BatchContext = wit::BatchContext {
        watermark: 0,
        processing_time: 0,
    };

    #[test]
    fn offers_elements_in_order_and_returns_states_and_timers() {
        let windows = windows(&[Some(1), None, Some(5)]);
        let elements = wit::Batch {
            data: b"xyz".to_vec(),
            ends: vec![1, 2, 3],
            timestamps: vec![1, 2, 3],
        };
        let output = function().on_elements(&CLOCK, &windows, &[0, 1, 1], &elements);
        use wit_trigger::TriggerResult as R;
        assert_eq!(output.results, [R::Fire, R::Continue, R::Fire]);
        // Window 2 was not touched: its state comes back as it was.
        assert_eq!(states(&output), [Some(2), Some(2), Some(5)]);
        let timers: Vec<(u32, i64, bool)> = output
            .timers
            .iter()
            .map(|t| (t.window, t.timestamp, t.delete))
            .collect();
        assert_eq!(timers, [(0, 101, false), (1, 102, false), (1, 103, false)]);
    }

    #[test]
    fn fires_timers_and_merges_windows() {
        let output = function().on_timers(&CLOCK, wit::TimeDomain::EventTime, &windows(&[Some(3)]), &[50]);
        assert_eq!(output.results, [wit_trigger::TriggerResult::Purge]);
        assert!(output.timers[0].delete);

        let (merged, merged_ends) = {
            let mut data = Vec::new();
            let mut ends = Vec::new();
            for state in [1u32, 2, 4] {
                data.extend(postcard::to_allocvec(&state).expect("encodes"));
                ends.push(data.len() as u32);
            }
            (data, ends)
        };
        let output = function().on_merge(&CLOCK, &windows(&[None, None]), (&merged, &merged_ends), &[2, 3]);
        assert!(output.results.is_empty());
        assert_eq!(states(&output), [Some(3), Some(4)]);
        assert_eq!(output.timers.len(), 2);
    }
}
