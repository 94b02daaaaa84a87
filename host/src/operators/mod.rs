//! Operators: what a non-source subtask does with its input.
//!
//! Every operator implements [`Operator`]. The runtime ([`crate::runtime::task`])
//! owns the loop: it receives messages, tracks watermarks across input
//! channels and calls the hooks below; an operator only reacts. One operator
//! kind a file:
//!
//! - [`transform`]: map, filter and flat-map functions in Wasm.
//! - [`keyed_process`]: keyed process functions in Wasm, with state and timers.
//! - [`sink`]: hands records to a sink connector.

pub mod keyed_process;
pub mod sink;
pub mod transform;

use crate::runtime::TaskError;
use crate::runtime::batch::{EventTime, RecordBatch};
use crate::runtime::output::Output;

/// A stream operator. Only [`Operator::process_batch`] is required.
pub trait Operator: Send {
    /// Called once on the subtask's thread before the first record.
    fn open(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    /// Handles a batch of records.
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError>;

    /// The operator's watermark advanced to `watermark` (the minimum over its
    /// inputs). The runtime forwards the watermark after this returns.
    fn on_watermark(&mut self, _watermark: EventTime, _out: &mut Output) -> Result<(), TaskError> {
        Ok(())
    }

    /// The earliest wall-clock time (ms) at which the operator wants
    /// [`Operator::on_processing_time`] called.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }

    /// The wall clock reached `now` (ms).
    fn on_processing_time(&mut self, _now: i64, _out: &mut Output) -> Result<(), TaskError> {
        Ok(())
    }

    /// Every input has ended (after the final watermark); flush and finish.
    fn close(&mut self, _out: &mut Output) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Sends a function's output on: main records, side outputs and dead letters
/// for the input records it rejected.
pub(crate) fn route_call_output(
    output: crate::wasm::instance::CallOutput,
    input: &RecordBatch,
    operator: &str,
    module: &str,
    out: &mut Output,
) -> Result<(), TaskError> {
    for (index, reason) in &output.errors {
        let index = *index as usize;
        if index < input.len() {
            out.dead_letters()
                .write(operator, module, input.get(index), reason)?;
        }
    }
    out.emit(output.main)?;
    for (tag, batch) in output.side {
        out.emit_side(&tag, batch)?;
    }
    Ok(())
}
