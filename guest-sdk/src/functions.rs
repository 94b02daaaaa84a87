//! The function traits a module implements.
//!
//! Each function is a type; an instance is created with `open` when a task
//! starts and then handles every batch of that task. Returning `Err` for a
//! record sends the record to the dead-letter output with the error's reason.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Context, Emitter, KeyWriter, OpenContext, Record, RecordWriter, Result, TaskInfo, Timer, Window};

/// One output record per input record.
pub trait Map: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Writes the output record of `record` to `out`. On `Ok`, whatever was
    /// written becomes one output record; on `Err`, nothing is output.
    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()>;
}

/// Keeps some records, unchanged (timestamps included).
pub trait Filter: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Whether to keep `record`.
    fn filter(&mut self, record: &Record<'_>) -> Result<bool>;
}

/// Zero or more output records per input record.
pub trait FlatMap: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Emits the output records of `record` to `out`. On `Err`, the records
    /// emitted for `record` are dropped.
    fn flat_map(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<()>;
}

/// Computes the key of each record, for a key-by.
pub trait KeySelector: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Writes the key of `record` to `key`. On `Err`, the record gets an
    /// empty key and goes to the dead-letter output.
    fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()>;
}

/// A function of a keyed stream, with keyed state and timers (like Flink's
/// `KeyedProcessFunction`).
///
/// State handles and timers refer to the key of the record or timer being
/// handled.
pub trait KeyedProcessFunction: Sized + 'static {
    /// Creates the function instance of a task and opens its state. An error
    /// refuses the job.
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self>;

    /// Handles one record. On `Err`, the record goes to the dead-letter
    /// output and the records emitted for it are dropped (state changes are
    /// kept).
    fn process_element(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()>;

    /// Handles a timer that fired. There is no record to reject, so an `Err`
    /// fails the task (the SDK panics with the error).
    fn on_timer(&mut self, timer: &Timer<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let _ = (timer, ctx);
        Ok(())
    }
}

/// An aggregation with an accumulator, for
/// [`AggregatingState`](crate::AggregatingState) (like Flink's
/// `AggregateFunction`).
pub trait AggregateFunction: 'static {
    /// The values added.
    type In;
    /// The accumulator, stored in state.
    type Acc: Serialize + DeserializeOwned;
    /// The result.
    type Out;

    /// A new, empty accumulator.
    fn create_accumulator(&self) -> Self::Acc;

    /// Adds `value` to `acc`.
    fn add(&self, value: Self::In, acc: Self::Acc) -> Self::Acc;

    /// The result for `acc`.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;

    /// Merges two accumulators.
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// An incremental aggregate over a window (Flink's `AggregateFunction` used
/// in `WindowedStream::aggregate`).
///
/// The host assigns records to windows and keeps one accumulator per key and
/// window in its keyed state, encoded with [postcard](https://docs.rs/postcard);
/// the function only folds records into accumulators, merges accumulators
/// (for merging windows, such as session windows) and turns an accumulator
/// into the window's result. The host calls it with whole batches: one call
/// folds many records into many accumulators, one call emits the results of
/// many windows.
///
/// Export it with the kind `window_aggregate` in
/// [`export_functions!`](crate::export_functions).
pub trait WindowAggregate: Sized + 'static {
    /// The accumulator, stored by the host postcard-encoded between calls.
    type Acc: Serialize + DeserializeOwned;

    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// A new, empty accumulator, for a window that has none yet.
    fn create_accumulator(&self) -> Self::Acc;

    /// Adds `record` to `acc`.
    ///
    /// On `Err`, the record goes to the dead-letter output and the job goes
    /// on. Whatever `add` already did to `acc` before failing is kept, so
    /// check the record (decode it, say) before changing `acc`.
    fn add(&self, acc: &mut Self::Acc, record: &Record<'_>) -> Result<()>;

    /// Merges two accumulators of the same key into one (`a` first).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;

    /// Writes the result of `window` for `key` to `out`: one output record.
    ///
    /// The record's timestamp is always
    /// [`window.max_timestamp()`](Window::max_timestamp), as in Flink
    /// ([`RecordWriter::set_timestamp`] has no effect here). There is no
    /// record to reject, so an `Err` fails the task (the SDK panics with the
    /// error).
    fn result(&self, key: &[u8], window: Window, acc: &Self::Acc, out: &mut RecordWriter<'_>) -> Result<()>;
}
