//! The job file's tables for async lookups: `[[lookup]]` declares a
//! lookup client, an operator's `lookups = [...]` grants lookups to its
//! function, and its `async = { ... }` table sets how they run.
//!
//! ```toml
//! [[lookup]]
//! name = "cameras"
//! type = "http"
//! url = "http://127.0.0.1:8080/camera/{key}"
//!
//! [[operator]]
//! uid = "enrich"
//! input = "passings"
//! module = "traffic.wasm"
//! function = "enrich"          # an async_map function
//! lookups = ["cameras"]
//! async = { mode = "ordered", capacity = 100, timeout_ms = 5000, retry = { attempts = 3, delay_ms = 100, backoff = 2.0 }, on_failure = "fail" }
//! ```

use serde::Deserialize;
use toml::Spanned;

/// A `[[lookup]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupSpec {
    /// The name operators grant and functions ask for.
    pub name: Spanned<String>,
    /// How the lookup reaches its data.
    #[serde(rename = "type")]
    pub kind: Spanned<LookupType>,
    /// `http`: the URL, `{key}` standing for the request's key.
    pub url: Option<Spanned<String>>,
}

/// The kinds of lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LookupType {
    /// HTTP GET.
    Http,
}

/// An operator's `async = { ... }` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsyncSpec {
    /// `ordered` (default) or `unordered`.
    pub mode: Option<AsyncModeSpec>,
    /// Most records in flight per subtask (default 100).
    pub capacity: Option<Spanned<u32>>,
    /// Time limit of one try of a request, ms (default 5000).
    pub timeout_ms: Option<Spanned<u64>>,
    /// Retries (default 3 tries, 100 ms, backoff 2.0).
    pub retry: Option<Spanned<RetrySpec>>,
    /// After the last try: `fail` (default) or `dead-letter`.
    pub on_failure: Option<OnFailureSpec>,
}

/// `mode` of an `async` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AsyncModeSpec {
    /// In input order.
    Ordered,
    /// As answers arrive, never across a watermark.
    Unordered,
}

/// `on_failure` of an `async` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OnFailureSpec {
    /// Fail the task.
    Fail,
    /// Send the record to the dead-letter output with the cause.
    DeadLetter,
}

/// `retry = { attempts = 3, delay_ms = 100, backoff = 2.0 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetrySpec {
    /// Tries in all, the first included (1: no retry).
    pub attempts: Option<Spanned<u32>>,
    /// Wait before the first retry, ms.
    pub delay_ms: Option<u64>,
    /// Factor of each later wait (at least 1.0).
    pub backoff: Option<Spanned<f64>>,
}
