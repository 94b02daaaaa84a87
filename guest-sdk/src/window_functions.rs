//! Window functions that see whole windows: process-window functions,
//! reduce functions and evictors (Flink's `ProcessWindowFunction`,
//! `ReduceFunction` and `Evictor`).
//!
//! The host buffers the elements of each key and window in its keyed state
//! and calls these functions with all the windows that fire together, so a
//! call covers many windows.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::record::Column;
use crate::{Emitter, EventTime, Record, RecordWriter, Result, TaskInfo, Window};

/// What a process-window function knows about the window that fires.
#[derive(Clone, Copy, Debug)]
pub struct WindowContext<'a> {
    /// The key of the window (empty for windows over the whole stream).
    pub key: &'a [u8],
    /// The window.
    pub window: Window,
    /// The operator's event-time watermark when the window fired.
    pub watermark: EventTime,
    /// The host's wall clock when the window fired, ms since the epoch.
    pub processing_time: i64,
}

/// The elements of one window, in arrival order, borrowed from the batch the
/// host sent.
#[derive(Clone, Copy, Debug)]
pub struct Elements<'a> {
    data: &'a [u8],
    ends: &'a [u32],
    timestamps: &'a [EventTime],
    /// Position of the first element in the call's element batch.
    first: usize,
    /// One past the last.
    last: usize,
}

impl<'a> Elements<'a> {
    /// Elements `first..last` of a batch.
    pub(crate) fn new(data: &'a [u8], ends: &'a [u32], timestamps: &'a [EventTime], first: usize, last: usize) -> Self {
        Self {
            data,
            ends,
            timestamps,
            first,
            last,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.last - self.first
    }

    /// Whether the window has no element (every one was evicted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, in arrival order. [`Record::index`] is the element's
    /// position in the call's batch (what the host reports dead letters by).
    pub fn iter(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        let column = Column::new(self.data, self.ends);
        let timestamps = self.timestamps;
        (self.first..self.last).map(move |i| {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            Record::new(column.get(i), timestamps[i], None, index)
        })
    }
}

/// A full window function (Flink's `ProcessWindowFunction`): when a window
/// fires, it gets all the window's elements and its metadata.
///
/// Used alone, the host buffers every element of every window. Used as the
/// `process` function of a window aggregate or reduce, it gets the
/// aggregate's result as the window's single element (Flink's
/// `aggregate(aggFn, processWindowFn)`).
///
/// Export it with the kind `process_window` in
/// [`export_functions!`](crate::export_functions).
pub trait ProcessWindowFunction: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Processes one firing window. Records emitted without a timestamp get
    /// the window's [`max_timestamp`](Window::max_timestamp), as in Flink.
    ///
    /// On `Err`, what was emitted for the window is dropped and the
    /// window's elements go to the dead-letter output with the error's
    /// reason; the job goes on.
    fn process(&mut self, ctx: &WindowContext<'_>, elements: Elements<'_>, out: &mut Emitter<'_>) -> Result<()>;
}

/// A reduce function over a window (Flink's `ReduceFunction` in
/// `WindowedStream::reduce`): the window keeps one value, the reduction of
/// its elements, which is its result.
///
/// The host keeps the value as the accumulator of a window aggregate, so a
/// reduce function is exported as a `window-aggregate` and runs wherever one
/// does (alone, with a `process` function, with evictors). Export it with the
/// kind `reduce` in [`export_functions!`](crate::export_functions).
pub trait ReduceFunction: Sized + 'static {
    /// The reduced value, stored by the host postcard-encoded.
    type Value: Serialize + DeserializeOwned;

    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Reads a record as a value. On `Err`, the record goes to the
    /// dead-letter output.
    fn read(&self, record: &Record<'_>) -> Result<Self::Value>;

    /// Combines two values (`a` came first).
    fn reduce(&self, a: Self::Value, b: Self::Value) -> Self::Value;

    /// Writes the window's result: its reduced value as a record.
    fn write(&self, value: &Self::Value, out: &mut RecordWriter<'_>) -> Result<()>;
}

/// Removes elements from firing windows (Flink's `Evictor`). What remains
/// stays in the window for its next firing.
///
/// Export it with the kind `evictor` in
/// [`export_functions!`](crate::export_functions) and name it in the job file
/// with `evictor = { type = "wasm", function = "..." }`.
pub trait Evictor: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Called before the window function: pushes to `evict` the elements to
    /// remove (by [`Record::index`]).
    fn evict_before(&mut self, window: Window, elements: Elements<'_>, evict: &mut Vec<u32>) {
        let _ = (window, elements, evict);
    }

    /// Called after the window function, like [`evict_before`](Self::evict_before).
    fn evict_after(&mut self, window: Window, elements: Elements<'_>, evict: &mut Vec<u32>) {
        let _ = (window, elements, evict);
    }
}
