//! Functions for the tests of windows that see whole windows. Records are
//! `key timestamp value` with an integer value.
//!
//! - `sorted_values` (process window): `key,start,end,count,median,values`
//!   with the values sorted (the lower median for even counts).
//! - `count_sum` (window aggregate): `n=<count> sum=<sum>`.
//! - `max_value` (reduce): the record with the largest value (the first of
//!   equals).
//! - `describe_window` (process window): `key,start,end,max_timestamp,element`
//!   for each element (the aggregate's result, in `process`).
//! - `drop_outliers` (evictor): evicts values of 900 and more before the
//!   window function.
//! - `fire_on_marker` (trigger): see [`FireOnMarker`].

use std::io::Write as _;

use weir_sdk::{
    Elements, Emitter, Error, Evictor, ProcessWindowFunction, Record, RecordWriter, ReduceFunction, Result, TaskInfo,
    Trigger, TriggerContext, TriggerResult, Window, WindowAggregate, WindowContext,
};

/// The value (third word) of a `key timestamp value` record.
fn value(record: &Record<'_>) -> Result<i64> {
    let text = record.payload_str()?;
    text.split(' ')
        .nth(2)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::new(format!("expected `key timestamp value`, found \"{text}\"")))
}

/// Lists the sorted values of each window with their median.
pub struct SortedValues;

impl ProcessWindowFunction for SortedValues {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn process(&mut self, ctx: &WindowContext<'_>, elements: Elements<'_>, out: &mut Emitter<'_>) -> Result<()> {
        let mut values = elements.iter().map(|r| value(&r)).collect::<Result<Vec<i64>>>()?;
        values.sort_unstable();
        let median = match values.len() {
            0 => String::from("none"),
            n => values[(n - 1) / 2].to_string(),
        };
        let listed: Vec<String> = values.iter().map(i64::to_string).collect();
        let line = format!(
            "{},{},{},{},{median},{}",
            String::from_utf8_lossy(ctx.key),
            ctx.window.start,
            ctx.window.end,
            values.len(),
            listed.join(" ")
        );
        out.emit(line.as_bytes());
        Ok(())
    }
}

/// Counts and sums the values of each window.
pub struct CountSum;

impl WindowAggregate for CountSum {
    type Acc = (u64, i64);

    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }

    fn add(&self, acc: &mut (u64, i64), record: &Record<'_>) -> Result<()> {
        let value = value(record)?;
        acc.0 += 1;
        acc.1 += value;
        Ok(())
    }

    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }

    fn result(&self, _key: &[u8], _window: Window, acc: &(u64, i64), out: &mut RecordWriter<'_>) -> Result<()> {
        write!(out, "n={} sum={}", acc.0, acc.1)?;
        Ok(())
    }
}

/// Keeps the record with the largest value.
pub struct MaxValue;

impl ReduceFunction for MaxValue {
    type Value = (i64, String);

    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn read(&self, record: &Record<'_>) -> Result<(i64, String)> {
        Ok((value(record)?, record.payload_str()?.to_owned()))
    }

    fn reduce(&self, a: (i64, String), b: (i64, String)) -> (i64, String) {
        if b.0 > a.0 { b } else { a }
    }

    fn write(&self, value: &(i64, String), out: &mut RecordWriter<'_>) -> Result<()> {
        out.write_bytes(value.1.as_bytes());
        Ok(())
    }
}

/// Describes each element with its window's metadata.
pub struct DescribeWindow;

impl ProcessWindowFunction for DescribeWindow {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn process(&mut self, ctx: &WindowContext<'_>, elements: Elements<'_>, out: &mut Emitter<'_>) -> Result<()> {
        for element in elements.iter() {
            let line = format!(
                "{},{},{},{},{}",
                String::from_utf8_lossy(ctx.key),
                ctx.window.start,
                ctx.window.end,
                ctx.window.max_timestamp(),
                element.payload_str()?
            );
            out.emit(line.as_bytes());
        }
        Ok(())
    }
}

/// Evicts values of 900 and more before the window function.
pub struct DropOutliers;

impl Evictor for DropOutliers {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn evict_before(&mut self, _window: Window, elements: Elements<'_>, evict: &mut Vec<u32>) {
        for element in elements.iter() {
            if value(&element).is_ok_and(|v| v >= 900) {
                evict.push(element.index());
            }
        }
    }
}

/// Fires and purges its window on a marker (a value below 50), and fires
/// (without purging) at the window's end, if at least three elements came
/// since the last marker, through an event-time timer it registers on the
/// first element after a marker; a marker deletes that timer. The state
/// counts the elements since the last marker; merged sessions add their
/// counts.
pub struct FireOnMarker;

/// [`FireOnMarker`]'s state of one window.
#[derive(Default, weir_sdk::serde::Serialize, weir_sdk::serde::Deserialize)]
#[serde(crate = "weir_sdk::serde")]
pub struct MarkerState {
    /// Elements since the last marker.
    count: u32,
    /// The registered end-of-window timer.
    timer: Option<i64>,
}

impl Trigger for FireOnMarker {
    type State = MarkerState;

    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn on_element(
        &mut self,
        element: &Record<'_>,
        state: &mut MarkerState,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        if value(element).is_ok_and(|v| v < 50) {
            if let Some(timer) = state.timer.take() {
                ctx.delete_event_time_timer(timer);
            }
            state.count = 0;
            return TriggerResult::FireAndPurge;
        }
        state.count += 1;
        if state.timer.is_none() {
            let end = ctx.window().max_timestamp();
            ctx.register_event_time_timer(end);
            state.timer = Some(end);
        }
        TriggerResult::Continue
    }

    /// Merged sessions count all their elements since their markers, and
    /// fire at the merged window's end if any.
    fn on_merge(&mut self, merged: Vec<MarkerState>, ctx: &mut TriggerContext<'_>) -> MarkerState {
        let count = merged.iter().map(|s| s.count).sum();
        let timer = (count > 0).then(|| ctx.window().max_timestamp());
        if let Some(timer) = timer {
            ctx.register_event_time_timer(timer);
        }
        MarkerState { count, timer }
    }

    fn on_event_time(&mut self, _time: i64, state: &mut MarkerState, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        state.timer = None;
        if state.count >= 3 {
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }
}

/// Fires and purges its window 20 ms of wall-clock time after the first
/// element since the last firing, through a processing-time timer (Flink's
/// processing-time trigger pattern, written as a custom trigger). The state
/// is the pending timer.
pub struct FireByWallClock;

impl Trigger for FireByWallClock {
    type State = Option<i64>;

    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn on_element(
        &mut self,
        _element: &Record<'_>,
        state: &mut Option<i64>,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        if state.is_none() {
            let at = ctx.current_processing_time().saturating_add(20);
            ctx.register_processing_time_timer(at);
            *state = Some(at);
        }
        TriggerResult::Continue
    }

    fn on_processing_time(
        &mut self,
        _time: i64,
        state: &mut Option<i64>,
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        *state = None;
        TriggerResult::FireAndPurge
    }
}
