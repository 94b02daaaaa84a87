//! Type erasure: each function kind behind a small object-safe trait that
//! runs a whole batch.

mod joins;
mod watermarks;

pub(crate) use joins::{DynJoin, DynKeyedCoProcess, open_join, open_keyed_co_process};
pub(crate) use watermarks::{DynWatermarkGenerator, open_watermark_generator};

use crate::__bindings::weir::udf::types as wit;
use crate::output::{KeyColumn, Output};
use crate::record::{Column, check_len};
use crate::runtime::scope;
use crate::window::{AccumulatorColumn, decode_accumulator};
use crate::{
    Context, Emitter, EventTime, Filter, FlatMap, KeySelector, KeyedProcessFunction, Map, OpenContext, Record,
    RecordWriter, Result, TaskInfo, TimeDomain, Timer, Window, WindowAggregate,
};

/// A running function instance, by kind.
pub(crate) enum Instance {
    /// A map, filter or flat-map function.
    Transform(Box<dyn DynTransform>),
    /// A key selector.
    KeySelector(Box<dyn DynKeySelector>),
    /// A keyed process function.
    KeyedProcess(Box<dyn DynKeyedProcess>),
    /// A window aggregate.
    WindowAggregate(Box<dyn DynWindowAggregate>),
    /// A join function.
    Join(Box<dyn DynJoin>),
    /// A keyed co-process function.
    KeyedCoProcess(Box<dyn DynKeyedCoProcess>),
    /// A punctuated watermark generator.
    WatermarkGenerator(Box<dyn DynWatermarkGenerator>),
    /// A process-window function.
    ProcessWindow(Box<dyn super::window_adapters::DynProcessWindow>),
    /// An evictor.
    Evictor(Box<dyn super::window_adapters::DynEvictor>),
    /// A window trigger.
    Trigger(Box<dyn super::trigger_adapter::DynTrigger>),
    /// A Kafka sink partitioner.
    Partitioner(Box<dyn super::partitioner_adapter::DynPartitioner>),
    /// An async lookup function.
    AsyncMap(Box<dyn super::async_adapter::DynAsyncMap>),
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

/// A window aggregate: folds batches into accumulator columns.
pub(crate) trait DynWindowAggregate {
    /// Folds record `i` of `input` into accumulator `slots[i]`; returns the
    /// accumulators after the batch, in the same slots, and the rejected
    /// records.
    fn add(
        &mut self,
        accumulators: &wit::Accumulators,
        slots: &[u32],
        input: &wit::Batch,
    ) -> (wit::Accumulators, Vec<wit::RecordError>);

    /// Merges `a[i]` with `b[i]`.
    fn merge(&mut self, a: &wit::Accumulators, b: &wit::Accumulators) -> wit::Accumulators;

    /// One result record per accumulator.
    fn results(
        &mut self,
        accumulators: &wit::Accumulators,
        keys: &[u8],
        key_ends: &[u32],
        windows: &[wit::Window],
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Batch;
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

/// Opens a [`WindowAggregate`].
pub(crate) fn open_window_aggregate<F: WindowAggregate>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::WindowAggregate(Box::new(WindowAggregateFn::new(F::open(
        task,
    )?))))
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

/// Runs `element` on every record of a keyed batch with its key's context;
/// a record whose call fails leaves no output and is rejected.
pub(crate) fn for_each_keyed_record(
    batch: &wit::BatchContext,
    input: &wit::KeyedBatch,
    task: &TaskInfo,
    out: &mut Output,
    mut element: impl FnMut(&Record<'_>, &mut Context<'_>) -> Result<()>,
) -> wit::Output {
    check_len("keys", input.key_ends.len(), input.records.ends.len());
    let keys = Column::new(&input.keys, &input.key_ends);
    out.begin();
    for (record, key) in records(&input.records).zip(keys.iter()) {
        let record = Record::new(record.payload(), record.timestamp(), Some(key), record.index());
        let mark = out.mark();
        let mut ctx = Context::new(key, record.timestamp(), clock(batch), task, out);
        if let Err(error) = element(&record, &mut ctx) {
            out.rollback(mark);
            out.reject(record.index(), error);
        }
    }
    out.finish()
}

/// Runs `on_timer` on every timer of a batch with its key's context. A
/// timer has no record to blame, so a failing one traps.
pub(crate) fn for_each_timer(
    batch: &wit::BatchContext,
    timers: &wit::TimerBatch,
    task: &TaskInfo,
    out: &mut Output,
    mut on_timer: impl FnMut(&Timer<'_>, &mut Context<'_>) -> Result<()>,
) -> wit::Output {
    check_len("timestamps", timers.timestamps.len(), timers.key_ends.len());
    let domain = TimeDomain::from_wit(timers.domain);
    let keys = Column::new(&timers.keys, &timers.key_ends);
    out.begin();
    for ((key, &timestamp), index) in keys.iter().zip(&timers.timestamps).zip(0u32..) {
        scope::enter_timer(index);
        let timer = Timer::new(timestamp, domain, key);
        let mut ctx = Context::new(key, timestamp, clock(batch), task, out);
        if let Err(error) = on_timer(&timer, &mut ctx) {
            panic!(
                "on_timer of function `{}` failed for the {domain:?} timer at {timestamp}: {error}",
                task.function
            );
        }
    }
    out.finish()
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
        for_each_keyed_record(batch, &input, task, out, |record, ctx| {
            self.0.process_element(record, ctx)
        })
    }

    fn on_timers(
        &mut self,
        batch: &wit::BatchContext,
        timers: wit::TimerBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output {
        for_each_timer(batch, &timers, task, out, |timer, ctx| self.0.on_timer(timer, ctx))
    }
}

pub(crate) struct WindowAggregateFn<F: WindowAggregate> {
    function: F,
    /// The accumulators of the current `add` call, by slot: `None` until a
    /// record of the slot comes (decoded once per call), then the accumulator
    /// and whether a record was added to it. Kept to reuse its memory.
    slots: Vec<Option<(F::Acc, bool)>>,
}

impl<F: WindowAggregate> WindowAggregateFn<F> {
    pub(crate) fn new(function: F) -> Self {
        Self {
            function,
            slots: Vec::new(),
        }
    }
}

impl<F: WindowAggregate> DynWindowAggregate for WindowAggregateFn<F> {
    /// An accumulator no record was successfully added to in this call goes
    /// back as it came (an empty one stays empty: "new"); the others are
    /// encoded as they are after the batch, including whatever a failing
    /// `add` did before failing.
    fn add(
        &mut self,
        accumulators: &wit::Accumulators,
        slots: &[u32],
        input: &wit::Batch,
    ) -> (wit::Accumulators, Vec<wit::RecordError>) {
        check_len("slots", slots.len(), input.ends.len());
        let column = Column::new(&accumulators.data, &accumulators.ends);
        let count = column.len();
        let Self { function, slots: accs } = self;
        accs.clear();
        accs.resize_with(count, || None);
        let mut errors = Vec::new();
        for (record, &slot) in records(input).zip(slots) {
            let index = slot as usize;
            let Some(entry) = accs.get_mut(index) else {
                panic!(
                    "the host asked to add record {} to accumulator {slot}, but sent only {count} accumulators",
                    record.index()
                )
            };
            let (acc, added) = entry.get_or_insert_with(|| {
                (
                    decode_accumulator(column.get(index), index, || function.create_accumulator()),
                    false,
                )
            });
            match function.add(acc, &record) {
                Ok(()) => *added = true,
                Err(error) => errors.push(wit::RecordError {
                    index: record.index(),
                    reason: error.into_reason(),
                }),
            }
        }
        scope::end_record();
        let mut out = AccumulatorColumn::with_capacity(count, accumulators.data.len());
        for (entry, bytes) in accs.iter_mut().zip(column.iter()) {
            match entry.take() {
                Some((acc, true)) => out.push(&acc),
                Some((_, false)) | None => out.push_encoded(bytes),
            }
        }
        (out.finish(), errors)
    }

    fn merge(&mut self, a: &wit::Accumulators, b: &wit::Accumulators) -> wit::Accumulators {
        assert!(
            a.ends.len() == b.ends.len(),
            "the host asked to merge {} accumulators with {}",
            a.ends.len(),
            b.ends.len()
        );
        let mut out = AccumulatorColumn::with_capacity(a.ends.len(), a.data.len().max(b.data.len()));
        let create = || self.function.create_accumulator();
        let pairs = Column::new(&a.data, &a.ends)
            .iter()
            .zip(Column::new(&b.data, &b.ends).iter());
        for (index, (a, b)) in pairs.enumerate() {
            let a = decode_accumulator(a, index, create);
            let b = decode_accumulator(b, index, create);
            out.push(&self.function.merge(a, b));
        }
        out.finish()
    }

    fn results(
        &mut self,
        accumulators: &wit::Accumulators,
        keys: &[u8],
        key_ends: &[u32],
        windows: &[wit::Window],
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Batch {
        let count = accumulators.ends.len();
        assert!(
            key_ends.len() == count && windows.len() == count,
            "malformed results call from the host: {count} accumulators, {} keys, {} windows",
            key_ends.len(),
            windows.len()
        );
        let accs = Column::new(&accumulators.data, &accumulators.ends).iter();
        let keys = Column::new(keys, key_ends).iter();
        out.begin();
        for (index, ((bytes, key), &window)) in accs.zip(keys).zip(windows).enumerate() {
            let window = Window::from_wit(window);
            let acc = decode_accumulator(bytes, index, || self.function.create_accumulator());
            let timestamp = window.max_timestamp();
            let mut writer = RecordWriter::new(out.main_data(), timestamp);
            if let Err(error) = self.function.result(key, window, &acc, &mut writer) {
                panic!(
                    "result of function `{}` failed for key \"{}\" and window [{}, {}): {error}",
                    task.function,
                    String::from_utf8_lossy(key).escape_debug(),
                    window.start,
                    window.end
                );
            }
            out.commit_main(timestamp);
        }
        out.finish().main
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::Error;

    /// Sums integers given as text; `bad` is rejected after adding 100.
    struct Sum;

    impl WindowAggregate for Sum {
        type Acc = (u32, i64);

        fn open(_task: &TaskInfo) -> Result<Self> {
            Ok(Self)
        }

        fn create_accumulator(&self) -> (u32, i64) {
            (0, 0)
        }

        fn add(&self, acc: &mut (u32, i64), record: &Record<'_>) -> Result<()> {
            let text = record.payload_str()?;
            if text == "bad" {
                acc.1 += 100;
                return Err(Error::new("bad"));
            }
            acc.0 += 1;
            acc.1 += text.parse::<i64>().map_err(|_| Error::new("not an integer"))?;
            Ok(())
        }

        fn merge(&self, a: (u32, i64), b: (u32, i64)) -> (u32, i64) {
            (a.0 + b.0, a.1 + b.1)
        }

        fn result(&self, key: &[u8], window: Window, acc: &(u32, i64), out: &mut RecordWriter<'_>) -> Result<()> {
            if key == b"fail" {
                return Err(Error::new("no result"));
            }
            out.write_bytes(key);
            write!(out, ",{},{},{},{}", window.start, window.end, acc.0, acc.1)?;
            out.set_timestamp(0);
            Ok(())
        }
    }

    fn column<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, Vec<u32>) {
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        for item in items {
            data.extend_from_slice(item);
            ends.push(u32::try_from(data.len()).expect("small"));
        }
        (data, ends)
    }

    fn batch(records: &[&str]) -> wit::Batch {
        let (data, ends) = column(records.iter().map(|r| r.as_bytes()));
        let timestamps = vec![0; ends.len()];
        wit::Batch { data, ends, timestamps }
    }

    fn accumulators(accs: &[Option<(u32, i64)>]) -> wit::Accumulators {
        let encoded: Vec<Vec<u8>> = accs
            .iter()
            .map(|acc| acc.map_or_else(Vec::new, |acc| postcard::to_allocvec(&acc).expect("encodes")))
            .collect();
        let (data, ends) = column(encoded.iter().map(Vec::as_slice));
        wit::Accumulators { data, ends }
    }

    fn decoded(accs: &wit::Accumulators) -> Vec<Option<(u32, i64)>> {
        Column::new(&accs.data, &accs.ends)
            .iter()
            .map(|bytes| (!bytes.is_empty()).then(|| postcard::from_bytes(bytes).expect("decodes")))
            .collect()
    }

    fn sum() -> WindowAggregateFn<Sum> {
        WindowAggregateFn::new(Sum)
    }

    #[test]
    fn adds_records_to_their_slots() {
        let mut function = sum();
        let accs = accumulators(&[Some((1, 10)), None, None, Some((2, 5))]);
        let input = batch(&["1", "2", "x", "3", "bad", "bad"]);
        let (accs, errors) = function.add(&accs, &[0, 1, 1, 0, 1, 2], &input);
        // Slot 1: a failing add's changes are kept once a record was added;
        // slot 2: only a failing record, so it stays new; slot 3: untouched.
        assert_eq!(decoded(&accs), [Some((3, 14)), Some((2, 102)), None, Some((2, 5))]);
        let errors: Vec<(u32, &str)> = errors.iter().map(|e| (e.index, e.reason.as_str())).collect();
        assert_eq!(errors, [(2, "not an integer"), (4, "bad"), (5, "bad")]);

        // The buffers are reused: the next call starts afresh.
        let (accs, errors) = function.add(&accs, &[2], &batch(&["7"]));
        assert_eq!(
            decoded(&accs),
            [Some((3, 14)), Some((2, 102)), Some((1, 7)), Some((2, 5))]
        );
        assert!(errors.is_empty());
    }

    #[test]
    #[should_panic(expected = "the host asked to add record 1 to accumulator 2, but sent only 2 accumulators")]
    fn refuses_a_slot_out_of_range() {
        sum().add(&accumulators(&[None, None]), &[0, 2], &batch(&["1", "2"]));
    }

    #[test]
    #[should_panic(expected = "malformed batch from the host: 1 slots for 2 records")]
    fn refuses_a_slot_column_of_the_wrong_length() {
        sum().add(&accumulators(&[None]), &[0], &batch(&["1", "2"]));
    }

    #[test]
    fn merges_pairwise() {
        let a = accumulators(&[Some((1, 1)), None, None]);
        let b = accumulators(&[Some((2, 2)), Some((3, 3)), None]);
        let merged = sum().merge(&a, &b);
        assert_eq!(decoded(&merged), [Some((3, 3)), Some((3, 3)), Some((0, 0))]);
    }

    #[test]
    #[should_panic(expected = "the host asked to merge 1 accumulators with 2")]
    fn refuses_to_merge_columns_of_different_lengths() {
        sum().merge(&accumulators(&[None]), &accumulators(&[None, None]));
    }

    #[test]
    fn emits_one_result_per_window_at_its_max_timestamp() {
        let accs = accumulators(&[Some((2, 30)), None]);
        let (keys, key_ends) = column([&b"a"[..], b"bb"]);
        let windows = [wit::Window { start: 0, end: 10 }, wit::Window { start: 10, end: 20 }];
        let mut out = Output::default();
        let batch = sum().results(&accs, &keys, &key_ends, &windows, &TaskInfo::default(), &mut out);
        let lines: Vec<&[u8]> = Column::new(&batch.data, &batch.ends).iter().collect();
        assert_eq!(lines, [&b"a,0,10,2,30"[..], b"bb,10,20,0,0"]);
        assert_eq!(batch.timestamps, [9, 19]);
    }

    #[test]
    #[should_panic(expected = "result of function `agg` failed for key \"fail\" and window [0, 10): no result")]
    fn a_failed_result_panics() {
        let (keys, key_ends) = column([&b"fail"[..]]);
        let task = TaskInfo {
            function: "agg".into(),
            ..TaskInfo::default()
        };
        sum().results(
            &accumulators(&[None]),
            &keys,
            &key_ends,
            &[wit::Window { start: 0, end: 10 }],
            &task,
            &mut Output::default(),
        );
    }
}
