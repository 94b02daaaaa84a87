//! # Weir: a stateful stream processor whose user functions are Wasm components
//!
//! A map of the crate, in the order data flows:
//!
//! - [`job`]: the job file (TOML), its parameters, validation with file/line
//!   errors, building the executable [`plan::JobPlan`].
//! - [`plan`]: what each vertex runs (one [`plan::OperatorPlan`] per
//!   operator), its edges and the job's settings.
//! - [`wasm`]: the wasmtime engine, module loading and checking, the host side
//!   of the WIT contract (`wit/`), and typed calls that move record batches
//!   across the boundary as flat columns.
//! - [`record`]: record batches as flat columns, and event time.
//! - [`exchange`]: what a subtask emits (messages, outputs partitioned
//!   forward, rebalance, broadcast or by key group), dead letters, task errors.
//! - [`runtime`]: the executor that runs a plan (restarts), the channels
//!   between subtasks (bounded: backpressure), one thread per subtask that
//!   builds its operator from the plan in one `match`, and the task loops
//!   with barrier alignment.
//! - [`operators`]: the [`operators::Operator`] trait, the context every
//!   operator gets ([`operators::OperatorContext`], [`operators::KeyedContext`])
//!   and one operator kind a file.
//! - [`connectors`]: sources (traffic generator, files) and sinks (files,
//!   stdout, PostgreSQL).
//! - [`state`]: keyed state backends behind one trait, key groups, TTL,
//!   timers (kept by key group and snapshotted with the keyed state).
//! - [`time`]: time domains, watermarks, windows and the processing-time
//!   clock.
//! - [`storage`]: checkpoint files and manifests; [`checkpoint`]: the
//!   coordinator, savepoints, hot swap and the one restore path.
//! - [`metrics`]: counters and the progress line.
//! - [`control`], [`cli`]: the control API and the `weir` command line.
//!
//! The README's "Reading the code" follows a job file to a running graph, a
//! record batch through it, and a checkpoint from barrier to manifest to
//! commit, naming the functions.
//!
//! ## Layers
//!
//! Modules use their own layer and the ones below, never above, and two
//! modules of one layer do not use each other (checked by a unit test in
//! `layers.rs`):
//!
//! 1. [`record`] (record batches, event time) and [`storage`] (checkpoint
//!    files, manifests, ids);
//! 2. [`state`], [`time`], [`wasm`], [`metrics`];
//! 3. [`exchange`] (messages, outputs, dead letters, task errors),
//!    [`operators`], [`connectors`];
//! 4. [`plan`]: the validated job (what each vertex runs, settings);
//! 5. [`runtime`] (tasks, executor) and [`checkpoint`] (coordination,
//!    savepoints, hot swap, the restore path);
//! 6. [`job`] (loading the job file into a plan), [`control`], [`cli`].

// Only the command line and what the benchmarks drive are public; the rest
// is `pub(crate)`, checked by `unreachable_pub`. The docs are the
// engineers' map (`cargo doc --document-private-items`), so they link
// crate-private items.
#![warn(unreachable_pub)]
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod checkpoint;
pub mod cli;
pub(crate) mod connectors;
pub(crate) mod control;
pub(crate) mod exchange;
pub(crate) mod job;
#[cfg(test)]
mod layers;
pub(crate) mod metrics;
pub(crate) mod operators;
pub(crate) mod plan;
pub mod record;
pub(crate) mod runtime;
pub mod state;
pub mod storage;
pub mod time;
pub mod wasm;

/// The job file's defaults for a Wasm instance's limits and key groups
/// (for benchmarks that start functions the way a job does).
pub use job::load::{DEFAULT_CALL_TIMEOUT_MS, DEFAULT_MAX_PARALLELISM, DEFAULT_MEMORY_MB};
