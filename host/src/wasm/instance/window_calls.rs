//! Calls of the functions that see whole windows: process-window functions
//! and evictors. Each call takes every window that fires together.

use super::{CallOutput, Exports, UdfError, UdfInstance, into_output, restore_batch, take_batch, wit};
use crate::time::window_set::WindowSet;

impl UdfInstance {
    /// Runs a process-window function over the windows of `set`; record
    /// errors name positions in `set.elements`.
    pub fn process_windows(&mut self, set: &mut WindowSet, watermark: i64) -> Result<CallOutput, UdfError> {
        let Exports::ProcessWindow(guest) = &self.exports else {
            return Err(self.misuse("process-window", set.elements.len()));
        };
        let guest = guest.clone();
        let context = wit::BatchContext {
            watermark,
            processing_time: crate::time::now_ms(),
        };
        let windows = wit_windows(set);
        let elements = take_batch(&mut set.elements);
        self.before_call();
        let result = guest.call_process_windows(
            &mut self.store,
            context,
            &set.keys,
            &set.key_ends,
            &windows,
            &elements,
            &set.window_ends,
        );
        restore_batch(&mut set.elements, elements);
        let records_before = self.records_before;
        let output = self.after_call(result, set.elements.len());
        self.records_before = records_before;
        output.map(into_output)
    }

    /// Asks an evictor which elements of `set` to evict (positions in
    /// `set.elements`), before the window function or after it.
    pub fn evict(&mut self, set: &mut WindowSet, before: bool, watermark: i64) -> Result<Vec<u32>, UdfError> {
        let Exports::WindowEvictor(guest) = &self.exports else {
            return Err(self.misuse("window-evictor", set.elements.len()));
        };
        let guest = guest.clone();
        let context = wit::BatchContext {
            watermark,
            processing_time: crate::time::now_ms(),
        };
        let windows = wit_windows(set);
        let elements = take_batch(&mut set.elements);
        self.before_call();
        let result = guest.call_evict(&mut self.store, context, before, &windows, &elements, &set.window_ends);
        restore_batch(&mut set.elements, elements);
        let records_before = self.records_before;
        let evicted = self.after_call(result, set.elements.len());
        self.records_before = records_before;
        evicted
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
