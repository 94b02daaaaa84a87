//! Calls of window aggregates: fold a batch into accumulators, merge
//! accumulators (merging windows), and turn accumulators into results.

use super::super::bindings::exports::weir::udf::window_aggregate;
use super::{Accumulators, Udf, UdfError, into_batch, restore_batch, take_batch, wit};
use crate::record::batch::RecordBatch;
use crate::time::windows::Window;

/// A running window aggregate (or reduce).
pub type WindowAggregateUdf = Udf<window_aggregate::Guest>;

fn wit_accumulators(accumulators: Accumulators) -> wit::Accumulators {
    wit::Accumulators {
        data: accumulators.data,
        ends: accumulators.ends,
    }
}

fn from_wit(accumulators: wit::Accumulators) -> Accumulators {
    Accumulators {
        data: accumulators.data,
        ends: accumulators.ends,
    }
}

impl WindowAggregateUdf {
    /// Folds record `i` of `input` into accumulator `slots[i]`; returns the
    /// accumulators and the rejected records (index in `input`, reason).
    pub fn aggregate_add(
        &mut self,
        accumulators: Accumulators,
        slots: Vec<u32>,
        input: &mut RecordBatch,
    ) -> Result<(Accumulators, Vec<(u32, String)>), UdfError> {
        let batch = take_batch(input);
        let state = wit_accumulators(accumulators);
        self.core.before_call();
        let result = self.guest.call_add(&mut self.core.store, &state, &slots, &batch);
        restore_batch(input, batch);
        let output = self.core.after_call(result, input.len())?;
        Ok((
            from_wit(output.accumulators),
            output.errors.into_iter().map(|e| (e.index, e.reason)).collect(),
        ))
    }

    /// Merges accumulators pairwise: `a[i]` with `b[i]` (merging windows).
    pub fn aggregate_merge(&mut self, a: Accumulators, b: Accumulators) -> Result<Accumulators, UdfError> {
        let (a, b) = (wit_accumulators(a), wit_accumulators(b));
        self.core.before_call();
        let result = self.guest.call_merge(&mut self.core.store, &a, &b);
        self.core.checked(result, 0).map(from_wit)
    }

    /// One result record per accumulator, for `keys[i]` and `windows[i]`.
    pub fn aggregate_results(
        &mut self,
        accumulators: Accumulators,
        keys: (Vec<u8>, Vec<u32>),
        windows: &[Window],
    ) -> Result<RecordBatch, UdfError> {
        let state = wit_accumulators(accumulators);
        let windows: Vec<wit::Window> = windows
            .iter()
            .map(|w| wit::Window {
                start: w.start,
                end: w.end,
            })
            .collect();
        self.core.before_call();
        let result = self
            .guest
            .call_results(&mut self.core.store, &state, &keys.0, &keys.1, &windows);
        self.core.checked(result, 0).map(into_batch)
    }
}
