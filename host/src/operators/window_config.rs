//! What a window operator is configured with: its assigner, lateness,
//! trigger, clock, and the functions it runs besides its aggregate. The job
//! loader builds these from the job file.

use crate::wasm::FunctionRef;

/// How a window operator groups and fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowConfig {
    /// Which windows a record belongs to.
    pub assigner: crate::time::windows::WindowAssigner,
    /// How long after its end a window still takes late records, ms.
    pub allowed_lateness_ms: i64,
    /// Side output for records too late for every window (else dropped).
    pub late_output: Option<String>,
    /// When windows fire.
    pub trigger: Trigger,
    /// The clock that places records in windows: event time (records'
    /// timestamps) or processing time (the wall clock).
    pub time: crate::time::TimeDomain,
    /// The evictor and the Wasm trigger of a buffering window operator.
    pub functions: WindowFunctions,
}

/// When a window fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// When the watermark reaches the window's end (the default).
    EventTime,
    /// Every `count` records of a window; with `purge`, the window is emptied
    /// each time it fires (Flink's `PurgingTrigger.of(CountTrigger.of(n))`).
    Count {
        /// Records per firing.
        count: u64,
        /// Empty the window after each firing.
        purge: bool,
    },
    /// The event-time trigger emptying the window at each firing (Flink's
    /// `PurgingTrigger.of(EventTimeTrigger.create())`).
    PurgingEventTime,
    /// When the wall clock reaches the window's end (Flink's `ProcessingTimeTrigger`).
    ProcessingTime {
        /// Empty the window after each firing.
        purge: bool,
    },
    /// Every `interval_ms` of event time, aligned to the epoch, and at the
    /// window's end (Flink's `ContinuousEventTimeTrigger`).
    ContinuousEventTime {
        /// Event time between firings, ms.
        interval_ms: i64,
        /// Empty the window after each firing.
        purge: bool,
    },
    /// Every `interval_ms` of wall-clock time, aligned to the epoch (Flink's
    /// `ContinuousProcessingTimeTrigger`).
    ContinuousProcessingTime {
        /// Wall-clock time between firings, ms.
        interval_ms: i64,
        /// Empty the window after each firing.
        purge: bool,
    },
    /// A window-trigger function in Wasm (in [`WindowConfig::functions`]).
    Wasm,
}

/// The evictor and Wasm trigger of a window operator (its process function
/// is part of the operator's plan).
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowFunctions {
    /// Evicts elements of firing windows.
    pub evictor: Option<EvictorConfig>,
    /// The window-trigger function of a `trigger = { type = "wasm" }`.
    pub trigger: Option<FunctionRef>,
}

impl WindowFunctions {
    /// Whether neither is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.evictor.is_none() && self.trigger.is_none()
    }
}

/// A checked evictor.
#[derive(Debug, Clone)]
pub(crate) enum EvictorConfig {
    /// Keep the last `count` elements (in arrival order).
    Count {
        /// Elements kept.
        count: u64,
        /// Evict after the window function.
        after: bool,
    },
    /// Keep the elements whose timestamp is above the newest one's minus `size_ms`.
    Time {
        /// The span kept, ms.
        size_ms: i64,
        /// Evict after the window function.
        after: bool,
    },
    /// A window-evictor function (called before and after the window function).
    Wasm(FunctionRef),
}

fn same_function(a: &FunctionRef, b: &FunctionRef) -> bool {
    a.module.path == b.module.path && a.function == b.function
}

impl PartialEq for WindowFunctions {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &Option<FunctionRef>, b: &Option<FunctionRef>| match (a, b) {
            (Some(a), Some(b)) => same_function(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        same(&self.trigger, &other.trigger) && self.evictor == other.evictor
    }
}

impl Eq for WindowFunctions {}

impl PartialEq for EvictorConfig {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Count { count: a, after: x }, Self::Count { count: b, after: y }) => a == b && x == y,
            (Self::Time { size_ms: a, after: x }, Self::Time { size_ms: b, after: y }) => a == b && x == y,
            (Self::Wasm(a), Self::Wasm(b)) => same_function(a, b),
            _ => false,
        }
    }
}
