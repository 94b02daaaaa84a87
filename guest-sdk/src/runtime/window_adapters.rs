//! Type erasure for the functions that see whole windows: process-window
//! functions, evictors, and reduce functions (as window aggregates).

use crate::__bindings::weir::udf::types as wit;
use crate::output::Output;
use crate::record::{Column, check_len};
use crate::runtime::adapters::{Instance, WindowAggregateFn};
use crate::runtime::scope;
use crate::window_functions::{Elements, WindowContext};
use crate::{
    Emitter, Evictor, ProcessWindowFunction, Record, RecordWriter, ReduceFunction, Result, TaskInfo, Window,
    WindowAggregate,
};

/// A process-window function.
pub(crate) trait DynProcessWindow {
    /// Processes the windows that fire together.
    #[expect(clippy::too_many_arguments, reason = "the columns of one WIT call")]
    fn process_windows(
        &mut self,
        clock: &wit::BatchContext,
        keys: &[u8],
        key_ends: &[u32],
        windows: &[wit::Window],
        elements: &wit::Batch,
        window_ends: &[u32],
        out: &mut Output,
    ) -> wit::Output;
}

/// An evictor.
pub(crate) trait DynEvictor {
    /// The positions of the elements to evict.
    fn evict(&mut self, before: bool, windows: &[wit::Window], elements: &wit::Batch, window_ends: &[u32]) -> Vec<u32>;
}

/// Opens a [`ProcessWindowFunction`].
pub(crate) fn open_process_window<F: ProcessWindowFunction>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::ProcessWindow(Box::new(ProcessWindowFn(F::open(task)?))))
}

/// Opens an [`Evictor`].
pub(crate) fn open_evictor<F: Evictor>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::Evictor(Box::new(EvictorFn(F::open(task)?))))
}

/// Opens a [`ReduceFunction`] as a window aggregate.
pub(crate) fn open_reduce<F: ReduceFunction>(task: &TaskInfo) -> Result<Instance> {
    Ok(Instance::WindowAggregate(Box::new(WindowAggregateFn::new(Reduce(
        F::open(task)?,
    )))))
}

/// Checks the window columns of a call and yields each window's element
/// range.
fn ranges(windows: usize, window_ends: &[u32], elements: &wit::Batch) -> impl Iterator<Item = (usize, usize)> {
    check_len("window ends", window_ends.len(), windows);
    check_len("timestamps", elements.timestamps.len(), elements.ends.len());
    let total = elements.ends.len();
    window_ends.iter().scan(0usize, move |start, &end| {
        let end = end as usize;
        assert!(
            *start <= end && end <= total,
            "malformed window ends from the host: {end} after {start}, {total} elements"
        );
        let range = (*start, end);
        *start = end;
        Some(range)
    })
}

fn elements_of(batch: &wit::Batch, (first, last): (usize, usize)) -> Elements<'_> {
    Elements::new(&batch.data, &batch.ends, &batch.timestamps, first, last)
}

struct ProcessWindowFn<F>(F);

impl<F: ProcessWindowFunction> DynProcessWindow for ProcessWindowFn<F> {
    fn process_windows(
        &mut self,
        clock: &wit::BatchContext,
        keys: &[u8],
        key_ends: &[u32],
        windows: &[wit::Window],
        elements: &wit::Batch,
        window_ends: &[u32],
        out: &mut Output,
    ) -> wit::Output {
        check_len("keys", key_ends.len(), windows.len());
        let keys = Column::new(keys, key_ends);
        out.begin();
        for (i, range) in ranges(windows.len(), window_ends, elements).enumerate() {
            let window = Window::from_wit(windows[i]);
            let ctx = WindowContext {
                key: keys.get(i),
                window,
                watermark: clock.watermark,
                processing_time: clock.processing_time,
            };
            if let Some(first) = u32::try_from(range.0).ok().filter(|_| range.0 < range.1) {
                scope::enter_record(first);
            }
            let mark = out.mark();
            let result = self.0.process(
                &ctx,
                elements_of(elements, range),
                &mut Emitter::new(out, window.max_timestamp()),
            );
            if let Err(error) = result {
                out.rollback(mark);
                let reason = error.into_reason();
                for index in range.0..range.1 {
                    out.reject(
                        u32::try_from(index).unwrap_or(u32::MAX),
                        crate::Error::new(reason.clone()),
                    );
                }
            }
        }
        scope::end_record();
        out.finish()
    }
}

struct EvictorFn<F>(F);

impl<F: Evictor> DynEvictor for EvictorFn<F> {
    fn evict(&mut self, before: bool, windows: &[wit::Window], elements: &wit::Batch, window_ends: &[u32]) -> Vec<u32> {
        let mut evict = Vec::new();
        for (i, range) in ranges(windows.len(), window_ends, elements).enumerate() {
            let window = Window::from_wit(windows[i]);
            if before {
                self.0.evict_before(window, elements_of(elements, range), &mut evict);
            } else {
                self.0.evict_after(window, elements_of(elements, range), &mut evict);
            }
        }
        evict
    }
}

/// A [`ReduceFunction`] as a [`WindowAggregate`] whose accumulator is the
/// reduced value (none before the first element).
struct Reduce<F>(F);

impl<F: ReduceFunction> WindowAggregate for Reduce<F> {
    type Acc = Option<F::Value>;

    fn open(task: &TaskInfo) -> Result<Self> {
        F::open(task).map(Self)
    }

    fn create_accumulator(&self) -> Option<F::Value> {
        None
    }

    fn add(&self, acc: &mut Option<F::Value>, record: &Record<'_>) -> Result<()> {
        let value = self.0.read(record)?;
        *acc = Some(match acc.take() {
            Some(previous) => self.0.reduce(previous, value),
            None => value,
        });
        Ok(())
    }

    fn merge(&self, a: Option<F::Value>, b: Option<F::Value>) -> Option<F::Value> {
        match (a, b) {
            (Some(a), Some(b)) => Some(self.0.reduce(a, b)),
            (a, b) => a.or(b),
        }
    }

    fn result(&self, _key: &[u8], _window: Window, acc: &Option<F::Value>, out: &mut RecordWriter<'_>) -> Result<()> {
        match acc {
            Some(value) => self.0.write(value, out),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::Error;
    use crate::runtime::adapters::DynWindowAggregate;
    use crate::window_functions::Elements;

    fn column<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, Vec<u32>) {
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        for item in items {
            data.extend_from_slice(item);
            ends.push(u32::try_from(data.len()).expect("small"));
        }
        (data, ends)
    }

    fn batch(records: &[(&str, i64)]) -> wit::Batch {
        let (data, ends) = column(records.iter().map(|(r, _)| r.as_bytes()));
        let timestamps = records.iter().map(|(_, t)| *t).collect();
        wit::Batch { data, ends, timestamps }
    }

    fn lines(batch: &wit::Batch) -> Vec<String> {
        Column::new(&batch.data, &batch.ends)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// Sums each window's integers; a non-integer fails the window.
    struct Sum;

    impl ProcessWindowFunction for Sum {
        fn open(_task: &TaskInfo) -> Result<Self> {
            Ok(Self)
        }

        fn process(&mut self, ctx: &WindowContext<'_>, elements: Elements<'_>, out: &mut Emitter<'_>) -> Result<()> {
            out.emit(b"partial");
            let mut sum = 0i64;
            for element in elements.iter() {
                sum += element
                    .payload_str()?
                    .parse::<i64>()
                    .map_err(|_| Error::new("not an integer"))?;
            }
            let line = format!(
                "{},{},{},{},{sum},{}",
                String::from_utf8_lossy(ctx.key),
                ctx.window.start,
                ctx.window.end,
                elements.len(),
                ctx.watermark
            );
            out.emit(line.as_bytes());
            Ok(())
        }
    }

    #[test]
    fn processes_each_window_and_rejects_the_elements_of_a_failing_one() {
        let (keys, key_ends) = column([&b"a"[..], b"b", b"c"]);
        let windows = [
            wit::Window { start: 0, end: 10 },
            wit::Window { start: 10, end: 20 },
            wit::Window { start: 0, end: 10 },
        ];
        let elements = batch(&[("1", 1), ("2", 5), ("x", 12), ("3", 13), ("4", 2)]);
        let clock = wit::BatchContext {
            watermark: 42,
            processing_time: 0,
        };
        let mut out = Output::default();
        let output =
            ProcessWindowFn(Sum).process_windows(&clock, &keys, &key_ends, &windows, &elements, &[2, 4, 5], &mut out);
        assert_eq!(
            lines(&output.main),
            ["partial", "a,0,10,2,3,42", "partial", "c,0,10,1,4,42"]
        );
        // Records take the window's max timestamp.
        assert_eq!(output.main.timestamps, [9, 9, 9, 9]);
        let errors: Vec<(u32, &str)> = output.errors.iter().map(|e| (e.index, e.reason.as_str())).collect();
        assert_eq!(errors, [(2, "not an integer"), (3, "not an integer")]);
    }

    #[test]
    #[should_panic(expected = "malformed window ends from the host: 1 after 2, 2 elements")]
    fn refuses_decreasing_window_ends() {
        let (keys, key_ends) = column([&b"a"[..], b"b"]);
        let windows = [wit::Window { start: 0, end: 1 }; 2];
        let elements = batch(&[("1", 0), ("2", 0)]);
        let clock = wit::BatchContext {
            watermark: 0,
            processing_time: 0,
        };
        ProcessWindowFn(Sum).process_windows(
            &clock,
            &keys,
            &key_ends,
            &windows,
            &elements,
            &[2, 1],
            &mut Output::default(),
        );
    }

    /// Evicts even values before, and values above 2 after.
    struct Parity;

    impl Evictor for Parity {
        fn open(_task: &TaskInfo) -> Result<Self> {
            Ok(Self)
        }

        fn evict_before(&mut self, _window: Window, elements: Elements<'_>, evict: &mut Vec<u32>) {
            evict.extend(elements.iter().filter(|e| e.payload()[0] % 2 == 0).map(|e| e.index()));
        }

        fn evict_after(&mut self, _window: Window, elements: Elements<'_>, evict: &mut Vec<u32>) {
            evict.extend(elements.iter().filter(|e| e.payload() > &b"2"[..]).map(|e| e.index()));
        }
    }

    #[test]
    fn evicts_by_position_in_the_call() {
        let windows = [wit::Window { start: 0, end: 10 }; 2];
        let elements = batch(&[("1", 0), ("2", 0), ("3", 0), ("4", 0)]);
        let mut evictor = EvictorFn(Parity);
        assert_eq!(evictor.evict(true, &windows, &elements, &[3, 4]), [1, 3]);
        assert_eq!(evictor.evict(false, &windows, &elements, &[3, 4]), [2, 3]);
    }

    /// Keeps the longest text.
    struct Longest;

    impl ReduceFunction for Longest {
        type Value = String;

        fn open(_task: &TaskInfo) -> Result<Self> {
            Ok(Self)
        }

        fn read(&self, record: &Record<'_>) -> Result<String> {
            Ok(record.payload_str()?.to_owned())
        }

        fn reduce(&self, a: String, b: String) -> String {
            if b.len() > a.len() { b } else { a }
        }

        fn write(&self, value: &String, out: &mut RecordWriter<'_>) -> Result<()> {
            write!(out, "{value}")?;
            Ok(())
        }
    }

    #[test]
    fn a_reduce_function_runs_as_a_window_aggregate() {
        let mut reduce = WindowAggregateFn::new(Reduce(Longest));
        let empty = wit::Accumulators {
            data: Vec::new(),
            ends: vec![0, 0],
        };
        let (accs, errors) = reduce.add(
            &empty,
            &[0, 0, 1, 0],
            &batch(&[("ab", 0), ("abc", 0), ("x", 0), ("de", 0)]),
        );
        assert!(errors.is_empty());
        let merged = reduce.merge(&accs, &empty);
        let (keys, key_ends) = column([&b"k"[..], b"k"]);
        let windows = [wit::Window { start: 0, end: 10 }; 2];
        let results = reduce.results(
            &merged,
            &keys,
            &key_ends,
            &windows,
            &TaskInfo::default(),
            &mut Output::default(),
        );
        assert_eq!(lines(&results), ["abc", "x"]);
    }
}
