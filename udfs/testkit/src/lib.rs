//! Functions for the runtime's own tests.
//!
//! - `identity` (map): copies each record.
//! - `fail_on` (map): copies each record, except `boom` (panics), `loop`
//!   (never returns), `oom` (allocates until memory runs out), `deep`
//!   and `deep-stores` (recurse until the shadow stack is exhausted, the
//!   first filling each frame with `memory.fill`, the second with stores),
//!   `deep-calls` (recurses until its call stack is exhausted) and `bad`
//!   (rejected as a bad record).
//! - `print` (map): prints each record on stdout and stderr; see
//!   [`diagnostics::Print`].
//! - `evens` (filter): keeps even integers; rejects what is not an integer.
//! - `first_word` (key selector): the first space-separated word.
//! - `state_probe` (keyed process): runs text commands against every kind of
//!   keyed state and timers; see [`StateProbe`].
//! - `concat` (window aggregate): lists the texts of each window, for tests
//!   of window assignment; see [`Concat`].
//! - `markers` (watermark generator): punctuated watermarks from marker
//!   records; see [`Markers`].
//! - `side` (filter), `pair` (join), `threshold_alerts` (keyed co-process):
//!   for the tests of joins and connected streams; see [`joins`].
//! - Window functions that see whole windows: see the `windows` module.
//! - `by_number`, `out_of_range` (partitioners): Kafka sink partitioners;
//!   see [`partitioners`].

pub mod broadcast;
pub mod diagnostics;
pub mod joins;
pub mod operator_state;
pub mod partitioners;
mod windows;

use std::hint::black_box;
use std::io::Write as _;

use weir_sdk::{
    AggregateFunction, AggregatingState, Context, Error, EventTime, Filter, KeySelector, KeyWriter,
    KeyedProcessFunction, ListState, Map, MapState, OpenContext, Record, RecordWriter, ReducingState, Result, TaskInfo,
    TimeDomain, Timer, Ttl, ValueState, WatermarkGenerator, Window, WindowAggregate,
};

/// Copies each record.
pub struct Identity;

impl Map for Identity {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        out.write_bytes(record.payload());
        Ok(())
    }
}

/// Copies each record, or fails the way the record asks.
pub struct FailOn;

impl Map for FailOn {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        match record.payload() {
            b"boom" => panic!("boom requested by the test"),
            b"loop" => spin_forever(),
            b"oom" => exhaust_memory(),
            b"deep" => {
                black_box(diagnostics::exhaust_shadow_stack(0));
            }
            b"deep-stores" => {
                black_box(diagnostics::exhaust_shadow_stack_by_stores(0));
            }
            b"deep-calls" => {
                black_box(diagnostics::exhaust_call_stack(0));
            }
            b"bad" => return Err(Error::new("bad record requested by the test")),
            payload => out.write_bytes(payload),
        }
        Ok(())
    }
}

/// Copies each record, but traps (panics) on the records whose FNV-1a hash
/// is a multiple of the `modulus` parameter, on the first attempt of a run
/// only (`weir.attempt` is `0`): after the restart from a checkpoint the same
/// records pass. It injects failures into recovery tests deterministically.
pub struct TrapOnFirstAttempt {
    modulus: u64,
    armed: bool,
}

impl Map for TrapOnFirstAttempt {
    fn open(task: &TaskInfo) -> Result<Self> {
        let modulus = task
            .param("modulus")
            .ok_or_else(|| Error::new("trap_on_first_attempt needs the parameter `modulus`"))?
            .parse::<u64>()
            .map_err(|_| Error::new("the parameter `modulus` must be a positive integer"))?;
        Ok(Self {
            modulus: modulus.max(1),
            armed: task.param("weir.attempt") == Some("0"),
        })
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        let payload = record.payload();
        if self.armed && fnv1a(payload).is_multiple_of(self.modulus) {
            panic!("trap injected by the test at {}", String::from_utf8_lossy(payload));
        }
        out.write_bytes(payload);
        Ok(())
    }
}

/// The 64-bit FNV-1a hash.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Punctuated watermarks: a record `key timestamp watermark` declares the
/// watermark `timestamp` (Flink's marker-event example of a punctuated
/// `WatermarkGenerator`); other records declare nothing.
pub struct Markers;

impl WatermarkGenerator for Markers {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn on_event(&mut self, record: &Record<'_>) -> Option<EventTime> {
        let text = std::str::from_utf8(record.payload()).ok()?;
        (text.split(' ').nth(2) == Some("watermark")).then(|| record.timestamp())
    }
}

/// Copies each record (`key timestamp text…`) and stamps it with its
/// second word as event time, for event-time tests.
pub struct Stamp;

impl Map for Stamp {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        let text = record.payload_str()?;
        let timestamp = text
            .split(' ')
            .nth(1)
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| Error::new(format!("expected `key timestamp text`, found \"{text}\"")))?;
        out.write_bytes(record.payload());
        out.set_timestamp(timestamp);
        Ok(())
    }
}

/// Never returns (the host must interrupt it).
fn spin_forever() -> ! {
    let mut spins = 0u64;
    loop {
        spins = black_box(spins.wrapping_add(1));
    }
}

/// Allocates (and touches) memory until the allocator fails.
fn exhaust_memory() -> ! {
    let mut hog: Vec<Vec<u8>> = Vec::new();
    loop {
        hog.push(black_box(vec![1; 1 << 20]));
        black_box(&hog);
    }
}

/// Keeps records that are even integers.
pub struct Evens;

impl Filter for Evens {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn filter(&mut self, record: &Record<'_>) -> Result<bool> {
        let n: i64 = std::str::from_utf8(record.payload())
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| Error::new("not an integer"))?;
        Ok(n % 2 == 0)
    }
}

/// Keys a record by its first space-separated word.
pub struct FirstWord;

impl KeySelector for FirstWord {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()> {
        let first = record
            .payload()
            .split(u8::is_ascii_whitespace)
            .find(|word| !word.is_empty())
            .unwrap_or_default();
        key.write_bytes(first);
        Ok(())
    }
}

/// The average of integers, for [`AggregatingState`].
pub struct Average;

impl AggregateFunction for Average {
    type In = i64;
    /// (sum, count)
    type Acc = (i64, u64);
    type Out = f64;

    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }

    fn add(&self, value: i64, (sum, count): (i64, u64)) -> (i64, u64) {
        (sum + value, count + 1)
    }

    fn get_result(&self, &(sum, count): &(i64, u64)) -> f64 {
        if count == 0 { 0.0 } else { sum as f64 / count as f64 }
    }

    fn merge(&self, a: (i64, u64), b: (i64, u64)) -> (i64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

/// Runs text commands against every kind of keyed state, for the host's
/// state tests. Each command `K <command>` emits `K <command> -> <result>`,
/// where the result is `ok`, the value read, or `none` (no value, an empty
/// list, an empty map):
///
/// - `K value set X` / `K value get` / `K value clear` (value state `value`)
/// - `K list add X` / `K list get` (comma-joined) / `K list clear` (`list`)
/// - `K map put MK MV` / `K map get MK` / `K map remove MK` /
///   `K map entries` (`mk=mv` sorted by `mk`, comma-joined) / `K map clear`
///   (`map`)
/// - `K reduce add N` / `K reduce get`: the sum (reducing state `reduce`)
/// - `K agg add N` / `K agg get`: the average, `{:.2}` (aggregating state
///   `agg`)
/// - `K ttlvalue set X` / `K ttlvalue get`: value state `ttlvalue`, entries
///   expire 1000 ms after they were written
/// - `K timer at T`: registers an event-time timer at `T`; when it fires,
///   emits `timer K T`
/// - `K ptimer in MS`: registers a processing-time timer `MS` ms after the
///   batch's processing time; `K ptimer twice`: the same timer twice (it
///   fires once); `K ptimer cancel`: registers one and deletes it. When a
///   processing-time timer fires it emits `ptimer K V`, `V` being the key's
///   `value` state then (`none` if unset), and the side output `timers`
///   gets `K`.
///
/// Anything else is rejected with `unknown command: <payload>`.
pub struct StateProbe {
    value: ValueState<String>,
    list: ListState<String>,
    map: MapState<String, String>,
    reduce: ReducingState<i64>,
    agg: AggregatingState<Average>,
    ttl_value: ValueState<String>,
}

/// The result of a command: `ok`, a value, or `none`.
fn or_none(value: Option<String>) -> String {
    value.unwrap_or_else(|| "none".to_owned())
}

/// Parses an integer argument.
fn integer(text: &str) -> Result<i64> {
    text.parse()
        .map_err(|_| Error::new(format!("not an integer: \"{text}\"")))
}

impl StateProbe {
    /// Runs one command, returning its result.
    fn run(&self, words: &[&str], ctx: &mut Context<'_>) -> Result<Option<String>> {
        let ok = || Some("ok".to_owned());
        Ok(match words {
            [_, "value", "set", x] => {
                self.value.set(&(*x).to_owned())?;
                ok()
            }
            [_, "value", "get"] => Some(or_none(self.value.get()?)),
            [_, "value", "clear"] => {
                self.value.clear();
                ok()
            }
            [_, "list", "add", x] => {
                self.list.add(&(*x).to_owned())?;
                ok()
            }
            [_, "list", "get"] => {
                let list = self.list.get()?;
                Some(or_none((!list.is_empty()).then(|| list.join(","))))
            }
            [_, "list", "clear"] => {
                self.list.clear();
                ok()
            }
            [_, "map", "put", mk, mv] => {
                self.map.put(&(*mk).to_owned(), &(*mv).to_owned())?;
                ok()
            }
            [_, "map", "get", mk] => Some(or_none(self.map.get(&(*mk).to_owned())?)),
            [_, "map", "remove", mk] => {
                self.map.remove(&(*mk).to_owned())?;
                ok()
            }
            [_, "map", "entries"] => {
                let mut entries = self.map.entries()?;
                entries.sort();
                let pairs: Vec<String> = entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Some(or_none((!pairs.is_empty()).then(|| pairs.join(","))))
            }
            [_, "map", "clear"] => {
                self.map.clear();
                ok()
            }
            [_, "reduce", "add", n] => {
                self.reduce.add(integer(n)?)?;
                ok()
            }
            [_, "reduce", "get"] => Some(or_none(self.reduce.get()?.map(|sum| sum.to_string()))),
            [_, "agg", "add", n] => {
                self.agg.add(integer(n)?)?;
                ok()
            }
            [_, "agg", "get"] => Some(or_none(self.agg.get()?.map(|avg| format!("{avg:.2}")))),
            [_, "ttlvalue", "set", x] => {
                self.ttl_value.set(&(*x).to_owned())?;
                ok()
            }
            [_, "ttlvalue", "get"] => Some(or_none(self.ttl_value.get()?)),
            [_, "timer", "at", t] => {
                ctx.register_event_time_timer(integer(t)?);
                ok()
            }
            [_, "ptimer", "in", ms] => {
                ctx.register_processing_time_timer(ctx.processing_time().saturating_add(integer(ms)?));
                ok()
            }
            [_, "ptimer", "twice"] => {
                let at = ctx.processing_time().saturating_add(10);
                ctx.register_processing_time_timer(at);
                ctx.register_processing_time_timer(at);
                ok()
            }
            [_, "ptimer", "cancel"] => {
                let at = ctx.processing_time().saturating_add(20);
                ctx.register_processing_time_timer(at);
                ctx.delete_processing_time_timer(at);
                ok()
            }
            _ => None,
        })
    }
}

impl KeyedProcessFunction for StateProbe {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        Ok(Self {
            value: ctx.value_state("value"),
            list: ctx.list_state("list"),
            map: ctx.map_state("map"),
            reduce: ctx.reducing_state("reduce", |a, b| a + b),
            agg: ctx.aggregating_state("agg", Average),
            ttl_value: ctx.value_state_with_ttl("ttlvalue", Ttl::after_write(1000)),
        })
    }

    fn process_element(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let payload = record.payload_str()?;
        let words: Vec<&str> = payload.split_ascii_whitespace().collect();
        let Some(result) = self.run(&words, ctx)? else {
            return Err(Error::new(format!("unknown command: {payload}")));
        };
        ctx.emit(format!("{} -> {result}", words.join(" ")).as_bytes());
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let key = String::from_utf8_lossy(timer.key());
        match timer.domain() {
            TimeDomain::EventTime => ctx.emit(format!("timer {key} {}", timer.timestamp()).as_bytes()),
            TimeDomain::ProcessingTime => {
                let value = or_none(self.value.get()?);
                ctx.emit(format!("ptimer {key} {value}").as_bytes());
                ctx.side_output("timers", key.as_bytes());
            }
        }
        Ok(())
    }
}

/// Collects the texts of each window and emits
/// `key,window_start,window_end,texts`, the texts sorted and joined by `|`
/// (e.g. `k,0,10,a|b|c`). Records must be UTF-8 text.
pub struct Concat;

impl WindowAggregate for Concat {
    type Acc = Vec<String>;

    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn create_accumulator(&self) -> Vec<String> {
        Vec::new()
    }

    fn add(&self, acc: &mut Vec<String>, record: &Record<'_>) -> Result<()> {
        acc.push(record.payload_str()?.to_owned());
        Ok(())
    }

    fn merge(&self, mut a: Vec<String>, b: Vec<String>) -> Vec<String> {
        a.extend(b);
        a
    }

    fn result(&self, key: &[u8], window: Window, acc: &Vec<String>, out: &mut RecordWriter<'_>) -> Result<()> {
        let mut texts: Vec<&str> = acc.iter().map(String::as_str).collect();
        texts.sort_unstable();
        out.write_bytes(key);
        write!(out, ",{},{},{}", window.start, window.end, texts.join("|"))?;
        Ok(())
    }
}

weir_sdk::export_functions! {
    map "identity" => Identity,
    map "fail_on" => FailOn,
    map "trap_on_first_attempt" => TrapOnFirstAttempt,
    map "stamp" => Stamp,
    map "print" => diagnostics::Print,
    map "connect_to" => diagnostics::ConnectTo,
    filter "evens" => Evens,
    key_selector "first_word" => FirstWord,
    keyed_process "state_probe" => StateProbe,
    window_aggregate "concat" => Concat,
    filter "side" => joins::Side,
    join "pair" => joins::Pair,
    keyed_co_process "threshold_alerts" => joins::ThresholdAlerts,
    watermark_generator "markers" => Markers,
    process_window "sorted_values" => windows::SortedValues,
    window_aggregate "count_sum" => windows::CountSum,
    reduce "max_value" => windows::MaxValue,
    process_window "describe_window" => windows::DescribeWindow,
    evictor "drop_outliers" => windows::DropOutliers,
    trigger "fire_on_marker" => windows::FireOnMarker,
    trigger "fire_by_wall_clock" => windows::FireByWallClock,
    keyed_co_process "speed_limits" => broadcast::SpeedLimits,
    partitioner "by_number" => partitioners::ByNumber,
    partitioner "out_of_range" => partitioners::OutOfRange,
    flat_map "operator_state_probe" => operator_state::OperatorStateProbe;
    states {
        map "broadcast/limits" => (String, u32),
        value "violations" => u64,
    }
}
