//! What a window operator runs besides its assigner: a process-window
//! function fed with an aggregate's result (Flink's
//! `aggregate(aggFn, processWindowFn)`), an evictor, and a Wasm trigger. The
//! job-file syntax lives here (the plan types in
//! [`crate::operators::window_config`]); `load` checks them.

use serde::Deserialize;
use toml::Spanned;

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

pub use crate::operators::window_config::{EvictorConfig, WindowFunctions};
