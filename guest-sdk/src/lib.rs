//! Write Weir user functions in plain Rust.
//!
//! A Weir module is a WebAssembly component (target `wasm32-wasip2`) that
//! exports one or more functions. With this crate, a function is a plain Rust
//! type implementing one of the function traits, and one
//! [`export_functions!`] invocation turns the crate into a module:
//!
//! | Kind               | Trait                    | Per input record                        |
//! |--------------------|--------------------------|-----------------------------------------|
//! | `map`              | [`Map`]                  | exactly one output record               |
//! | `filter`           | [`Filter`]               | the record itself, or nothing           |
//! | `flat_map`         | [`FlatMap`]              | zero or more output records             |
//! | `key_selector`     | [`KeySelector`]          | the record's key (for a key-by)         |
//! | `keyed_process`    | [`KeyedProcessFunction`] | anything, with keyed state and timers   |
//! | `window_aggregate` | [`WindowAggregate`]      | folded into its window's accumulator    |
//! | `join`             | [`JoinFunction`]         | a matching pair of two streams' records |
//! | `keyed_co_process` | [`KeyedCoProcessFunction`] | either input, with shared keyed state |
//! | `reduce`           | [`ReduceFunction`]       | reduced into its window's value         |
//! | `process_window`   | [`ProcessWindowFunction`]| buffered; the window's elements at once |
//! | `evictor`          | [`Evictor`]              | evicted from a firing window, or kept   |
//! | `trigger`          | [`Trigger`]              | decides when its window fires or purges |
//! | `partitioner`      | [`Partitioner`]          | the Kafka partition a sink writes it to |
//! | `async_map`        | [`AsyncMap`]             | lookups the host runs, then zero or more records |
//!
//! # Map of the crate
//!
//! - [`Record`] and [`EventTime`]: an input record, borrowed from the batch
//!   the host sent (no copy, no allocation per record).
//! - [`RecordWriter`], [`Emitter`], [`KeyWriter`]: write output records and
//!   keys straight into the output columns.
//! - [`Error`] and [`Result`]: returning `Err` for a record sends it to the
//!   job's dead-letter output with the error's reason; the job goes on.
//! - [`TaskInfo`]: what a function instance learns when it starts (its
//!   subtask index, its parameters, ...).
//! - [`OpenContext`] and [`Context`]: what a keyed process function sees when
//!   it starts and while it runs (the current key, timestamps, emitting,
//!   timers).
//! - [`ValueState`], [`ListState`], [`MapState`], [`ReducingState`],
//!   [`AggregatingState`], [`Ttl`]: typed keyed state. Values are encoded
//!   with [postcard](https://docs.rs/postcard), so any serde type works.
//! - [`Timer`] and [`TimeDomain`]: a timer that fired.
//! - [`Window`]: the window a [`WindowAggregate`] result is for. The host
//!   assigns records to windows and keeps the accumulators (postcard-encoded);
//!   the function folds whole batches into them.
//! - [`log()`] and [`LogLevel`]: write to the host's log.
//! - [`Migration`] and [`schema_of`]: state shapes (a state's schema is its
//!   type's name and a fingerprint of its serde shape), and migrations of
//!   state an older module version wrote (hot swap on savepoint restore).
//! - [`serde`]: re-exported, so that a module needs no other dependency.
//!   Derive with `#[serde(crate = "weir_sdk::serde")]`.
//!
//! State and timers always refer to the key of the record (or timer) being
//! processed; the SDK tells the host which key that is only when the function
//! actually touches state or timers.
//!
//! A panic in a function fails the task (which restarts from its last
//! checkpoint); the SDK reports the panic message, its location and the index
//! of the record being processed to the host first.
//!
//! # Example
//!
//! A word count: split lines into words, key by word, count per word (a
//! running count, and a count per window).
//!
//! ```no_run
//! use std::io::Write as _;
//!
//! use weir_sdk::{
//!     Context, Emitter, Error, FlatMap, KeySelector, KeyWriter, KeyedProcessFunction,
//!     OpenContext, Record, RecordWriter, Result, TaskInfo, ValueState, Window, WindowAggregate,
//! };
//!
//! /// Splits a line into lowercase words.
//! struct Tokenize;
//!
//! impl FlatMap for Tokenize {
//!     fn open(_task: &TaskInfo) -> Result<Self> {
//!         Ok(Self)
//!     }
//!
//!     fn flat_map(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<()> {
//!         let line = record.payload_str()?;
//!         for word in line.split_whitespace() {
//!             out.emit(word.to_lowercase().as_bytes());
//!         }
//!         Ok(())
//!     }
//! }
//!
//! /// Keys a word by itself.
//! struct WordKey;
//!
//! impl KeySelector for WordKey {
//!     fn open(_task: &TaskInfo) -> Result<Self> {
//!         Ok(Self)
//!     }
//!
//!     fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()> {
//!         key.write_bytes(record.payload());
//!         Ok(())
//!     }
//! }
//!
//! /// Counts the occurrences of each word and emits `word,count`.
//! struct Count {
//!     count: ValueState<u64>,
//! }
//!
//! impl KeyedProcessFunction for Count {
//!     fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
//!         Ok(Self { count: ctx.value_state("count") })
//!     }
//!
//!     fn process_element(&mut self, _record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
//!         let count = self.count.get()?.unwrap_or(0) + 1;
//!         self.count.set(&count)?;
//!         let word = std::str::from_utf8(ctx.key()).map_err(|_| Error::new("key is not UTF-8"))?;
//!         ctx.emit(format!("{word},{count}").as_bytes());
//!         Ok(())
//!     }
//! }
//!
//! /// Counts the occurrences of each word per window and emits
//! /// `word,window_start,count` when the window closes.
//! struct WindowedCount;
//!
//! impl WindowAggregate for WindowedCount {
//!     type Acc = u64;
//!
//!     fn open(_task: &TaskInfo) -> Result<Self> {
//!         Ok(Self)
//!     }
//!
//!     fn create_accumulator(&self) -> u64 {
//!         0
//!     }
//!
//!     fn add(&self, acc: &mut u64, _record: &Record<'_>) -> Result<()> {
//!         *acc += 1;
//!         Ok(())
//!     }
//!
//!     fn merge(&self, a: u64, b: u64) -> u64 {
//!         a + b
//!     }
//!
//!     fn result(&self, key: &[u8], window: Window, acc: &u64, out: &mut RecordWriter<'_>) -> Result<()> {
//!         out.write_bytes(key);
//!         write!(out, ",{},{acc}", window.start)?;
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export_functions! {
//!     flat_map "tokenize" => Tokenize,
//!     key_selector "word" => WordKey,
//!     keyed_process "count" => Count,
//!     window_aggregate "windowed_count" => WindowedCount,
//! }
//! ```
//!
//! Build the module with `cargo build --release --target wasm32-wasip2`:
//! cargo emits the component directly.
#![deny(missing_docs)]

mod async_map;
mod broadcast;
mod codec;
mod context;
mod error;
mod export;
mod functions;
mod joins;
mod log;
mod migration;
mod operator_state;
mod output;
mod partitioner;
mod record;
mod runtime;
mod shape;
mod state;
mod task;
mod timers;
mod trigger;
mod watermarks;
mod window;
mod window_functions;

pub use async_map::{AsyncMap, Lookups};
pub use broadcast::BroadcastState;
pub use codec::MapTypes;
pub use context::{Context, OpenContext};
pub use error::{Error, Result};
pub use functions::{AggregateFunction, Filter, FlatMap, KeySelector, KeyedProcessFunction, Map, WindowAggregate};
pub use joins::{JoinFunction, KeyedCoProcessFunction};
pub use log::{LogLevel, log};
pub use migration::{Migration, schema_of};
pub use operator_state::OperatorListState;
pub use output::{Emitter, KeyWriter, RecordWriter};
pub use partitioner::Partitioner;
pub use record::{EventTime, Record};
pub use serde;
pub use state::{AggregatingState, ListState, MapState, ReducingState, Ttl, ValueState};
pub use task::TaskInfo;
pub use timers::{TimeDomain, Timer};
pub use trigger::{Trigger, TriggerContext, TriggerResult};
pub use watermarks::WatermarkGenerator;
pub use window::Window;
pub use window_functions::{Elements, Evictor, ProcessWindowFunction, ReduceFunction, WindowContext};

/// Bindings generated from `wit/weir.wit` (world `any-module`). Not part of
/// the API: use the types of this crate instead.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod __bindings {
    wit_bindgen::generate!({
        world: "weir:udf/any-module",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::__bindings",
        export_macro_name: "export",
    });
}

/// What [`export_functions!`] expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::codec::StateCodec;
    pub use crate::migration::MigrationEntry;
    pub use crate::runtime::{FunctionEntry, Module, Runtime, check_unique_names};
}
