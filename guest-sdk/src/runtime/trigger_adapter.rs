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
