//! Type erasure for punctuated watermark generators.

use super::{Instance, records};
use crate::__bindings::exports::weir::udf::watermark_generator as wit_watermarks;
use crate::__bindings::weir::udf::types as wit;
use crate::{TaskInfo, WatermarkGenerator};

/// A punctuated watermark generator.
pub(crate) trait DynWatermarkGenerator {
    /// The watermarks the records of a batch declare, in record order.
    fn on_events(&mut self, input: wit::Batch) -> Vec<wit_watermarks::Punctuation>;
}

struct WatermarkGeneratorFn<F>(F);

impl<F: WatermarkGenerator> DynWatermarkGenerator for WatermarkGeneratorFn<F> {
    fn on_events(&mut self, input: wit::Batch) -> Vec<wit_watermarks::Punctuation> {
        records(&input)
            .filter_map(|record| {
                self.0.on_event(&record).map(|watermark| wit_watermarks::Punctuation {
                    index: record.index(),
                    watermark,
                })
            })
            .collect()
    }
}

/// Opens a [`WatermarkGenerator`].
pub(crate) fn open_watermark_generator<F: WatermarkGenerator>(task: &TaskInfo) -> crate::Result<Instance> {
    Ok(Instance::WatermarkGenerator(Box::new(WatermarkGeneratorFn(F::open(
        task,
    )?))))
}
