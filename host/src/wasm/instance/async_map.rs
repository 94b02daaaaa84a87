//! Calls of async lookup functions: `prepare` turns a batch of records into
//! the lookups they need, `complete` turns records and their answers into
//! output. Both take whole batches; neither waits for I/O.

use super::super::bindings::exports::weir::udf::async_map;
use super::{CallOutput, Udf, UdfError, into_output, restore_batch, take_batch};
use crate::record::batch::RecordBatch;

/// A running async lookup function.
pub type AsyncMapUdf = Udf<async_map::Guest>;

/// One lookup a record asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    /// The record's position in the prepared batch.
    pub index: u32,
    /// The lookup's name.
    pub lookup: String,
    /// The key to look up.
    pub key: String,
}

/// What `prepare` said about a batch.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The requests of every record, in record order.
    pub requests: Vec<LookupRequest>,
    /// Records that could not be prepared: index and reason.
    pub errors: Vec<(u32, String)>,
}

impl AsyncMapUdf {
    /// The lookups each record of `input` needs. The records count as input
    /// (a later failure is placed after them).
    pub fn prepare(&mut self, input: &mut RecordBatch) -> Result<Prepared, UdfError> {
        let batch = take_batch(input);
        self.core.before_call();
        let result = self.guest.call_prepare(&mut self.core.store, &batch);
        restore_batch(input, batch);
        let output = self.core.after_call(result, input.len())?;
        let len = input.len();
        if let Some(bad) = output.requests.iter().find(|r| r.index as usize >= len) {
            return Err(self.core.protocol_error(format!(
                "prepare asked a lookup for record {} of a batch of {len}",
                bad.index
            )));
        }
        Ok(Prepared {
            requests: output
                .requests
                .into_iter()
                .map(|r| LookupRequest {
                    index: r.index,
                    lookup: r.lookup,
                    key: r.key,
                })
                .collect(),
            errors: output.errors.into_iter().map(|e| (e.index, e.reason)).collect(),
        })
    }

    /// The output of the records of `input`, whose lookups answered:
    /// `results[i]` holds record `i`'s answers in request order.
    pub fn complete(
        &mut self,
        input: &mut RecordBatch,
        results: &[Vec<Option<Vec<u8>>>],
    ) -> Result<CallOutput, UdfError> {
        let batch = take_batch(input);
        self.core.before_call();
        let result = self.guest.call_complete(&mut self.core.store, &batch, results);
        restore_batch(input, batch);
        self.core.checked(result, input.len()).map(into_output)
    }
}
