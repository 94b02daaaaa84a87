//! Async lookup functions: type erasure and the WIT export.

use super::adapters::Instance;
use super::{Module, Runtime, scope, with_active, wrong_kind};
use crate::__bindings::exports::weir::udf::async_map as wit_async;
use crate::__bindings::weir::udf::types as wit;
use crate::output::Output;
use crate::record::{Column, check_len};
use crate::{AsyncMap, Emitter, Lookups, Record, TaskInfo};

/// An async lookup function, behind an object-safe trait.
pub(crate) trait DynAsyncMap {
    /// The requests of every record of a batch.
    fn prepare(&mut self, input: &wit::Batch) -> wit_async::PrepareOutput;
    /// The output of records whose lookups answered.
    fn complete(&mut self, input: &wit::Batch, results: &[Vec<Option<Vec<u8>>>], out: &mut Output) -> wit::Output;
}

struct AsyncMapFn<F>(F);

/// The records of a batch, marking each as the one being processed.
fn records(batch: &wit::Batch) -> impl Iterator<Item = Record<'_>> {
    check_len("timestamps", batch.timestamps.len(), batch.ends.len());
    Column::new(&batch.data, &batch.ends)
        .iter()
        .zip(&batch.timestamps)
        .zip(0u32..)
        .map(|((payload, &timestamp), index)| {
            scope::enter_record(index);
            Record::new(payload, timestamp, None, index)
        })
}

impl<F: AsyncMap> DynAsyncMap for AsyncMapFn<F> {
    fn prepare(&mut self, input: &wit::Batch) -> wit_async::PrepareOutput {
        let mut output = wit_async::PrepareOutput {
            requests: Vec::new(),
            errors: Vec::new(),
        };
        let mut lookups = Lookups::default();
        for record in records(input) {
            let result = self.0.lookups(&record, &mut lookups);
            let requests = lookups.take();
            match result {
                Ok(()) => output
                    .requests
                    .extend(requests.into_iter().map(|(lookup, key)| wit_async::LookupRequest {
                        index: record.index(),
                        lookup,
                        key,
                    })),
                Err(error) => output.errors.push(wit::RecordError {
                    index: record.index(),
                    reason: error.into_reason(),
                }),
            }
        }
        output
    }

    fn complete(&mut self, input: &wit::Batch, results: &[Vec<Option<Vec<u8>>>], out: &mut Output) -> wit::Output {
        check_len("results", results.len(), input.ends.len());
        out.begin();
        for (record, results) in records(input).zip(results) {
            let mark = out.mark();
            let result = self
                .0
                .complete(&record, results, &mut Emitter::new(out, record.timestamp()));
            if let Err(error) = result {
                out.rollback(mark);
                out.reject(record.index(), error);
            }
        }
        out.finish()
    }
}

/// Opens an [`AsyncMap`].
pub(crate) fn open_async_map<F: AsyncMap>(task: &TaskInfo) -> crate::Result<Instance> {
    Ok(Instance::AsyncMap(Box::new(AsyncMapFn(F::open(task)?))))
}

impl<M: Module> wit_async::Guest for Runtime<M> {
    fn prepare(input: wit::Batch) -> wit_async::PrepareOutput {
        const EXPORT: &str = "async-map.prepare";
        with_active(EXPORT, |active| {
            let Instance::AsyncMap(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.prepare(&input);
            scope::end_call();
            output
        })
    }

    fn complete(input: wit::Batch, results: Vec<Vec<Option<Vec<u8>>>>) -> wit::Output {
        const EXPORT: &str = "async-map.complete";
        with_active(EXPORT, |active| {
            let Instance::AsyncMap(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.complete(&input, &results, &mut active.output);
            scope::end_call();
            output
        })
    }
}
