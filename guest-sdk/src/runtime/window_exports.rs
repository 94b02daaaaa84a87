//! The WIT exports of process-window functions and evictors.

use super::adapters::Instance;
use super::{Module, Runtime, scope, with_active, wrong_kind};
use crate::__bindings::exports::weir::udf::{process_window, window_evictor};
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
