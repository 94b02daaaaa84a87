//! Type erasure: each function kind behind a small object-safe trait that
//! runs a whole batch.

use crate::__bindings::weir::udf::types as wit;
use crate::output::{KeyColumn, Output};
use crate::record::{Column, check_len};
use crate::runtime::scope;
use crate::{
    Context, Emitter, EventTime, Filter, FlatMap, KeySelector, KeyedProcessFunction, Map, OpenContext, Record,
    RecordWriter, Result, TaskInfo, TimeDomain, Timer,
};

/// A running function instance, by kind.
pub(crate) enum Instance {
    /// A map, filter or flat-map function.
    Transform(Box<dyn DynTransform>),
    /// A key selector.
    KeySelector(Box<dyn DynKeySelector>),
    /// A keyed process function.
    KeyedProcess(Box<dyn DynKeyedProcess>),
}

/// A map, filter or flat-map function.
pub(crate) trait DynTransform {
    /// Processes a batch.
    fn process(&mut self, input: wit::Batch, out: &mut Output) -> wit::Output;
}

/// A key selector.
pub(crate) trait DynKeySelector {
    /// Computes the key of each record of a batch.
    fn select_keys(&mut self, input: wit::Batch, keys: &mut KeyColumn) -> wit::KeyOutput;
}

/// A keyed process function.
pub(crate) trait DynKeyedProcess {
    /// Processes a batch of keyed records.
    fn process(
        &mut self,
        clock: &wit::BatchContext,
        input: wit::KeyedBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output;

    /// Handles timers that fired.
    fn on_timers(
        &mut self,
        clock: &wit::BatchContext,
        timers: wit::TimerBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output;
}

/// Opens a [`Map`] function.
pub(crate) fn open_map<F: Map>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::Transform(Box::new(MapFn(F::open(task)?))))
}

/// Opens a [`Filter`] function.
pub(crate) fn open_filter<F: Filter>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::Transform(Box::new(FilterFn(F::open(task)?))))
}

/// Opens a [`FlatMap`] function.
pub(crate) fn open_flat_map<F: FlatMap>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::Transform(Box::new(FlatMapFn(F::open(task)?))))
}

/// Opens a [`KeySelector`].
pub(crate) fn open_key_selector<F: KeySelector>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::KeySelector(Box::new(KeySelectorFn(F::open(task)?))))
}

/// Opens a [`KeyedProcessFunction`] and its state.
pub(crate) fn open_keyed_process<F: KeyedProcessFunction>(task: &TaskInfo) -> Result<Instance> {
    let function = F::open(&mut OpenContext::new(task))?;
    Ok(Instance::KeyedProcess(Box::new(KeyedProcessFn(function))))
}

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

/// The clock of a batch, as [`Context`] takes it.
fn clock(context: &wit::BatchContext) -> (EventTime, i64) {
    (context.watermark, context.processing_time)
}

struct MapFn<F>(F);

impl<F: Map> DynTransform for MapFn<F> {
    fn process(&mut self, input: wit::Batch, out: &mut Output) -> wit::Output {
        out.begin();
        for record in records(&input) {
            let mark = out.mark();
            let mut writer = RecordWriter::new(out.main_data(), record.timestamp());
            match self.0.map(&record, &mut writer) {
                Ok(()) => {
                    let timestamp = writer.timestamp();
                    out.commit_main(timestamp);
                }
                Err(error) => {
                    out.rollback(mark);
                    out.reject(record.index(), error);
                }
            }
        }
        out.finish()
    }
}

struct FilterFn<F>(F);

impl<F: Filter> DynTransform for FilterFn<F> {
    /// Keeps the records in place: the input columns, compacted, are the
    /// output columns.
    fn process(&mut self, input: wit::Batch, out: &mut Output) -> wit::Output {
        let wit::Batch {
            mut data,
            mut ends,
            mut timestamps,
        } = input;
        check_len("timestamps", timestamps.len(), ends.len());
        let (mut start, mut written, mut kept) = (0, 0, 0);
        for i in 0..ends.len() {
            let (end, timestamp) = (ends[i] as usize, timestamps[i]);
            assert!(
                start <= end && end <= data.len(),
                "malformed batch from the host: record {i} ends at {end}, after {start} \
                 (data has {} bytes)",
                data.len()
            );
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            scope::enter_record(index);
            let record = Record::new(&data[start..end], timestamp, None, index);
            match self.0.filter(&record) {
                Ok(true) => {
                    data.copy_within(start..end, written);
                    written += end - start;
                    ends[kept] = u32::try_from(written).unwrap_or(u32::MAX);
                    timestamps[kept] = timestamp;
                    kept += 1;
                }
                Ok(false) => {}
                Err(error) => out.reject(index, error),
            }
            start = end;
        }
        data.truncate(written);
        ends.truncate(kept);
        timestamps.truncate(kept);
        wit::Output {
            main: wit::Batch { data, ends, timestamps },
            side: Vec::new(),
            errors: out.take_errors(),
        }
    }
}

struct FlatMapFn<F>(F);

impl<F: FlatMap> DynTransform for FlatMapFn<F> {
    fn process(&mut self, input: wit::Batch, out: &mut Output) -> wit::Output {
        out.begin();
        for record in records(&input) {
            let mark = out.mark();
            let result = self.0.flat_map(&record, &mut Emitter::new(out, record.timestamp()));
            if let Err(error) = result {
                out.rollback(mark);
                out.reject(record.index(), error);
            }
        }
        out.finish()
    }
}

struct KeySelectorFn<F>(F);

impl<F: KeySelector> DynKeySelector for KeySelectorFn<F> {
    fn select_keys(&mut self, input: wit::Batch, keys: &mut KeyColumn) -> wit::KeyOutput {
        keys.begin(input.ends.len());
        let mut errors = Vec::new();
        for record in records(&input) {
            let result = self.0.key(&record, &mut keys.writer());
            keys.commit(result.is_err());
            if let Err(error) = result {
                errors.push(wit::RecordError {
                    index: record.index(),
                    reason: error.into_reason(),
                });
            }
        }
        keys.finish(errors)
    }
}

struct KeyedProcessFn<F>(F);

impl<F: KeyedProcessFunction> DynKeyedProcess for KeyedProcessFn<F> {
    fn process(
        &mut self,
        batch: &wit::BatchContext,
        input: wit::KeyedBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output {
        check_len("keys", input.key_ends.len(), input.records.ends.len());
        let keys = Column::new(&input.keys, &input.key_ends);
        out.begin();
        for (record, key) in records(&input.records).zip(keys.iter()) {
            let record = Record::new(record.payload(), record.timestamp(), Some(key), record.index());
            let mark = out.mark();
            let mut ctx = Context::new(key, record.timestamp(), clock(batch), task, out);
            if let Err(error) = self.0.process_element(&record, &mut ctx) {
                out.rollback(mark);
                out.reject(record.index(), error);
            }
        }
        out.finish()
    }

    fn on_timers(
        &mut self,
        batch: &wit::BatchContext,
        timers: wit::TimerBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output {
        check_len("timestamps", timers.timestamps.len(), timers.key_ends.len());
        let domain = TimeDomain::from_wit(timers.domain);
        let keys = Column::new(&timers.keys, &timers.key_ends);
        out.begin();
        for ((key, &timestamp), index) in keys.iter().zip(&timers.timestamps).zip(0u32..) {
            scope::enter_timer(index);
            let timer = Timer::new(timestamp, domain, key);
            let mut ctx = Context::new(key, timestamp, clock(batch), task, out);
            if let Err(error) = self.0.on_timer(&timer, &mut ctx) {
                panic!(
                    "on_timer of function `{}` failed for the {domain:?} timer at {timestamp}: \
                     {error}",
                    task.function
                );
            }
        }
        out.finish()
    }
}
