//! # Weir: a stateful stream processor whose user functions are Wasm components
//!
//! A map of the crate, in the order data flows:
//!
//! - [`job`]: the job file (TOML), its parameters, validation with file/line
//!   errors, and the executable [`job::JobPlan`].
//! - [`wasm`]: the wasmtime engine, module loading and checking, the host side
//!   of the WIT contract (`wit/`), and typed calls that move record batches
//!   across the boundary as flat columns.
//! - [`runtime`]: subtasks on threads, bounded channels (backpressure),
//!   partitioning (forward, rebalance, broadcast, key-by through key groups),
//!   dead letters, and the executor that runs a plan.
//! - [`operators`]: the [`operators::Operator`] trait and one operator kind a
//!   file.
//! - [`connectors`]: sources (traffic generator, files) and sinks (files,
//!   stdout).
//! - [`state`]: keyed state backends behind one trait, key groups, TTL.
//! - [`time`]: timers and the processing-time clock.
//! - [`metrics`]: counters and the progress line.
//! - [`cli`]: the `weir` command line.
//!
//! ## Layers
//!
//! Modules use their own layer and the ones below, never above (checked by
//! a unit test in `layers.rs`, which lists the imports that still point up
//! until the redesign removes them):
//!
//! 1. [`record`] (record batches, event time) and [`storage`] (checkpoint
//!    files, manifests, ids);
//! 2. [`state`], [`time`], [`wasm`], [`metrics`];
//! 3. [`operators`], [`connectors`];
//! 4. [`plan`]: the validated job (what each vertex runs, settings);
//! 5. [`runtime`] (tasks, executor) and [`checkpoint`] (coordination,
//!    savepoints, hot swap, the restore path);
//! 6. [`job`] (loading the job file into a plan), [`control`], [`cli`].

pub mod checkpoint;
pub mod cli;
pub mod connectors;
pub mod control;
pub mod job;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod operators;
pub mod plan;
pub mod record;
pub mod runtime;
pub mod state;
pub mod storage;
pub mod time;
pub mod wasm;
