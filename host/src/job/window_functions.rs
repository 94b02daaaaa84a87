//! What a window operator runs besides its assigner: a process-window
//! function fed with an aggregate's result (Flink's
//! `aggregate(aggFn, processWindowFn)`), an evictor, and a Wasm trigger. The job-file syntax
//! and the plan types live here; `load` checks them.

use serde::Deserialize;
use toml::Spanned;

use super::plan::FunctionRef;

/// `process = { function = "describe_window" }`: a process-window function of
/// the operator's module, run on the result of its window aggregate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Name of the exported process-window function.
    pub function: Spanned<String>,
}

/// `evictor = { type = "count", count = 3, after = false }`,
/// `{ type = "time", size_ms = 500 }` or `{ type = "wasm", function = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvictorSpec {
    /// `count`, `time` or `wasm`.
    #[serde(rename = "type")]
    pub kind: EvictorKind,
    /// Elements to keep (`count`).
    pub count: Option<u64>,
    /// Keep the elements younger than the newest one by less than this, ms (`time`).
    pub size_ms: Option<u64>,
    /// Evict after the window function instead of before (`count`, `time`; default false).
    pub after: Option<bool>,
    /// The exported window-evictor function of the operator's module (`wasm`).
    pub function: Option<Spanned<String>>,
}

/// Evictors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictorKind {
    /// Keep the last `count` elements (Flink's `CountEvictor`).
    Count,
    /// Keep the elements within `size_ms` of the newest (Flink's `TimeEvictor`).
    Time,
    /// A window-evictor function in Wasm.
    Wasm,
}

/// The process-window function and evictor of a window operator.
#[derive(Debug, Clone, Default)]
pub struct WindowFunctions {
    /// Runs on the result of the operator's aggregate when a window fires.
    pub process: Option<FunctionRef>,
    /// Evicts elements of firing windows.
    pub evictor: Option<EvictorConfig>,
    /// The window-trigger function of a `trigger = { type = "wasm" }`.
    pub trigger: Option<FunctionRef>,
}

impl WindowFunctions {
    /// Whether neither is set.
    pub fn is_empty(&self) -> bool {
        self.process.is_none() && self.evictor.is_none() && self.trigger.is_none()
    }
}

/// A checked evictor.
#[derive(Debug, Clone)]
pub enum EvictorConfig {
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
        same(&self.process, &other.process) && same(&self.trigger, &other.trigger) && self.evictor == other.evictor
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
