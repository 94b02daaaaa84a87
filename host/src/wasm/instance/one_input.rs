//! Calls of the one-input kinds that see records one batch at a time and
//! keep no keyed state: transforms (map, filter, flat-map), key selectors
//! and punctuated watermark generators.

use super::super::bindings::exports::weir::udf::{key_selector, transform, watermark_generator};
use super::{CallOutput, Udf, UdfError, into_output, restore_batch, take_batch};
use crate::record::batch::RecordBatch;

/// A running map, filter or flat-map function.
pub type TransformUdf = Udf<transform::Guest>;
/// A running key selector.
pub type KeySelectorUdf = Udf<key_selector::Guest>;
/// A running punctuated watermark generator.
pub type WatermarkGeneratorUdf = Udf<watermark_generator::Guest>;

impl TransformUdf {
    /// Runs the function over `input`.
    pub fn transform(&mut self, input: &mut RecordBatch) -> Result<CallOutput, UdfError> {
        let batch = take_batch(input);
        self.core.before_call();
        let result = self.guest.call_process(&mut self.core.store, &batch);
        restore_batch(input, batch);
        self.core.after_call(result, input.len()).map(into_output)
    }
}

impl WatermarkGeneratorUdf {
    /// The watermarks the generator declares after records of `input`:
    /// (record index, watermark), in record order.
    pub fn punctuations(&mut self, input: &mut RecordBatch) -> Result<Vec<(u32, i64)>, UdfError> {
        let batch = take_batch(input);
        self.core.before_call();
        let result = self.guest.call_on_events(&mut self.core.store, &batch);
        restore_batch(input, batch);
        let punctuations = self.core.after_call(result, input.len())?;
        Ok(punctuations.into_iter().map(|p| (p.index, p.watermark)).collect())
    }
}

impl KeySelectorUdf {
    /// Computes the key of every record of `input` into its key column;
    /// returns the rejected records (index, reason).
    pub fn select_keys(&mut self, input: &mut RecordBatch) -> Result<Vec<(u32, String)>, UdfError> {
        let batch = take_batch(input);
        self.core.before_call();
        let result = self.guest.call_select_keys(&mut self.core.store, &batch);
        restore_batch(input, batch);
        let output = self.core.after_call(result, input.len())?;
        input.keys = output.keys;
        input.key_ends = output.key_ends;
        Ok(output.errors.into_iter().map(|e| (e.index, e.reason)).collect())
    }
}
