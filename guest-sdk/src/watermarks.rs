//! Punctuated watermarks: a function that reads the records a vertex emits
//! and declares watermarks after some of them.

use crate::{EventTime, Record, Result, TaskInfo};

/// Decides watermarks from the records themselves (Flink's
/// `WatermarkGenerator` whose `onEvent` emits), e.g. after a marker record or
/// from a field that carries the source's progress.
///
/// The host calls it with every record the vertex emits, in order. A
/// watermark that does not advance the vertex's watermark is ignored; the
/// vertex emits no periodic watermarks.
pub trait WatermarkGenerator: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// The watermark to emit right after `record`, if any.
    fn on_event(&mut self, record: &Record<'_>) -> Option<EventTime>;
}
