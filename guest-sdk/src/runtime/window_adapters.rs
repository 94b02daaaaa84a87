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
