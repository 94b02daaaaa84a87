//! The function traits of two-input operators: joins of two keyed streams
//! and keyed co-process functions.

use crate::{Context, Emitter, OpenContext, Record, Result, TaskInfo, Timer};

/// Joins a pair of records of the same key from two streams (Flink's
/// `FlatJoinFunction`, as used by window joins and interval joins).
///
/// The host buffers both inputs and finds the matching pairs: for a window
/// join, every pair of records of a key in the same window, when the window
/// fires; for an interval join, every pair whose timestamps satisfy
/// `left + lower <= right <= left + upper`, as soon as the second of the two
/// arrives. It calls the function with whole batches of pairs.
///
/// Export it with the kind `join` in
/// [`export_functions!`](crate::export_functions).
pub trait JoinFunction: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Emits the results of the pair (`left`, `right`) of `key` to `out`
    /// (zero or more records). They get the pair's timestamp (the window's
    /// `end - 1`, or the later of the two records' timestamps) unless given
    /// one. On `Err`, the left record goes to the dead-letter output and the
    /// records emitted for the pair are dropped.
    fn join(&mut self, key: &[u8], left: &Record<'_>, right: &Record<'_>, out: &mut Emitter<'_>) -> Result<()>;
}

/// A function of two connected keyed streams, with keyed state and timers
/// shared by both (Flink's `KeyedCoProcessFunction`).
///
/// Both inputs are keyed into the same key groups, so a key's records of
/// either input reach the same instance and see the same state: the typical
/// use is a control stream (rules, thresholds) that configures, per key, how
/// the data stream is processed.
pub trait KeyedCoProcessFunction: Sized + 'static {
    /// Creates the function instance of a task and opens its state. An error
    /// refuses the job.
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self>;

    /// Handles one record of the first input. On `Err`, the record goes to
    /// the dead-letter output and the records emitted for it are dropped.
    fn process_element1(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()>;

    /// Handles one record of the second input. On `Err`, the record goes to
    /// the dead-letter output and the records emitted for it are dropped.
    fn process_element2(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()>;

    /// Handles a timer that fired. There is no record to reject, so an `Err`
    /// fails the task (the SDK panics with the error).
    fn on_timer(&mut self, timer: &Timer<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let _ = (timer, ctx);
        Ok(())
    }
}
