//! The WIT exports of process-window functions, evictors and triggers.

use super::adapters::Instance;
use super::{Module, Runtime, scope, with_active, wrong_kind};
use crate::__bindings::exports::weir::udf::{process_window, window_evictor, window_trigger};
use crate::__bindings::weir::udf::types as wit;

impl<M: Module> process_window::Guest for Runtime<M> {
    fn process_windows(
        context: wit::BatchContext,
        keys: Vec<u8>,
        key_ends: Vec<u32>,
        windows: Vec<wit::Window>,
        elements: wit::Batch,
        window_ends: Vec<u32>,
    ) -> wit::Output {
        const EXPORT: &str = "process-window.process-windows";
        with_active(EXPORT, |active| {
            let Instance::ProcessWindow(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.process_windows(
                &context,
                &keys,
                &key_ends,
                &windows,
                &elements,
                &window_ends,
                &mut active.output,
            );
            scope::end_call();
            output
        })
    }
}

impl<M: Module> window_evictor::Guest for Runtime<M> {
    fn evict(
        _context: wit::BatchContext,
        before: bool,
        windows: Vec<wit::Window>,
        elements: wit::Batch,
        window_ends: Vec<u32>,
    ) -> Vec<u32> {
        const EXPORT: &str = "window-evictor.evict";
        with_active(EXPORT, |active| {
            let Instance::Evictor(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let evicted = function.evict(before, &windows, &elements, &window_ends);
            scope::end_call();
            evicted
        })
    }
}

impl<M: Module> window_trigger::Guest for Runtime<M> {
    fn on_elements(
        context: wit::BatchContext,
        windows: window_trigger::TriggerWindows,
        slots: Vec<u32>,
        elements: wit::Batch,
    ) -> window_trigger::TriggerOutput {
        const EXPORT: &str = "window-trigger.on-elements";
        with_active(EXPORT, |active| {
            let Instance::Trigger(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.on_elements(&context, &windows, &slots, &elements);
            scope::end_call();
            output
        })
    }

    fn on_merge(
        context: wit::BatchContext,
        windows: window_trigger::TriggerWindows,
        merged_states: Vec<u8>,
        merged_state_ends: Vec<u32>,
        merged_ends: Vec<u32>,
    ) -> window_trigger::TriggerOutput {
        const EXPORT: &str = "window-trigger.on-merge";
        with_active(EXPORT, |active| {
            let Instance::Trigger(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.on_merge(&context, &windows, (&merged_states, &merged_state_ends), &merged_ends);
            scope::end_call();
            output
        })
    }

    fn on_timers(
        context: wit::BatchContext,
        domain: wit::TimeDomain,
        windows: window_trigger::TriggerWindows,
        timestamps: Vec<i64>,
    ) -> window_trigger::TriggerOutput {
        const EXPORT: &str = "window-trigger.on-timers";
        with_active(EXPORT, |active| {
            let Instance::Trigger(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.on_timers(&context, domain, &windows, &timestamps);
            scope::end_call();
            output
        })
    }
}
