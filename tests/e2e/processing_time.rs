//! Processing-time windows, continuous and purging triggers, and window
//! offsets, through the real binary.
//!
//! Processing time depends on the wall clock, so its test asserts only what
//! holds whatever the timing: every record is in exactly one window of its
//! key, windows are aligned to their size and offset and do not overlap.
//! The event-time triggers are exact: an oracle follows Flink's
//! definitions record by record (batches of one record, a watermark after
//! each): `ContinuousEventTimeTrigger` schedules its first firing at
//! `t - t mod interval + interval` for the first record `t` of a window,
//! the next one `interval` later after each firing (never past the window's
//! last millisecond, where it fires as the event-time trigger does); a
//! record late but within the allowed lateness fires its window at once;
//! `PurgingTrigger` empties the window at each firing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::harness::{Workdir, sorted_lines, thousands};
use crate::oracle::Lcg;

const SIZE: i64 = 1_000;
const INTERVAL: i64 = 300;
const LATENESS: i64 = 300;
const BOUND: i64 = 100;

/// Windows of one second with a trigger to fill in (`TRIGGER`), allowed
/// lateness and a late side output; watermarks after every record.
const JOB: &str = r#"
[job]
batch_size = 1

[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "stamp"
input = "lines"
module = "testkit.wasm"
function = "stamp"
parallelism = 1
watermarks = { strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 100, interval_ms = 0 }

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "tumbling", size_ms = 1000 }
trigger = TRIGGER
allowed_lateness_ms = 300
late_output = "late"

[[sink]]
uid = "out"
input = "win"
type = "file"
path = "out.txt"

[[sink]]
uid = "late"
input = "win"
side_output = "late"
type = "file"
path = "late.txt"
"#;

/// A record: key, timestamp and the whole line (`key timestamp rN`).
type Event = (String, i64, String);

/// Four keys, 4 ms apart, up to 150 ms out of order (more than the bound:
/// some records arrive after a continuous firing of their window, a few
/// after its end); one in 40 is 0.3 to 1.5 s old (late or too late).
fn events(seed: u64, count: i64, disorder: u64) -> Vec<Event> {
    let mut rng = Lcg::new(seed);
    (0..count)
        .map(|i| {
            let key = format!("k{}", rng.below(4));
            let jitter = if disorder > 0 { rng.below(disorder) as i64 } else { 0 };
            let mut ts = 1_000_000 + i * 4 - jitter;
            if disorder > 0 && rng.below(40) == 0 {
                ts -= 300 + rng.below(1_200) as i64;
            }
            let line = format!("{key} {ts} r{i}");
            (key, ts, line)
        })
        .collect()
}

fn input(events: &[Event]) -> String {
    events.iter().map(|e| format!("{}\n", e.2)).collect()
}

/// The contents of one window in the oracle.
#[derive(Default)]
struct Contents {
    lines: Vec<String>,
    /// The next continuous firing.
    next: Option<i64>,
}

/// Flink's window operator with an event-time (`continuous: None`) or a
/// continuous event-time trigger, optionally purging: (emitted, late).
fn oracle(events: &[Event], continuous: Option<i64>, purge: bool) -> (Vec<String>, Vec<String>) {
    let mut windows: BTreeMap<(String, i64), Contents> = BTreeMap::new();
    let mut timers: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut emitted = Vec::new();
    let mut late = Vec::new();
    let mut watermark = i64::MIN;
    let mut max_ts = i64::MIN;
    let emit = |emitted: &mut Vec<String>, key: &str, start: i64, contents: &mut Contents| {
        if contents.lines.is_empty() {
            return;
        }
        let mut lines = contents.lines.clone();
        lines.sort();
        emitted.push(format!("{key},{start},{},{}", start + SIZE, lines.join("|")));
        if purge {
            contents.lines.clear();
        }
    };
    let advance = |to: i64,
                   windows: &mut BTreeMap<(String, i64), Contents>,
                   timers: &mut BTreeSet<(i64, String)>,
                   emitted: &mut Vec<String>| {
        while let Some((time, key)) = timers.first().cloned() {
            if time > to {
                break;
            }
            timers.pop_first();
            let starts: Vec<i64> = windows.keys().filter(|(k, _)| *k == key).map(|(_, s)| *s).collect();
            for start in starts {
                let last = start + SIZE - 1;
                let contents = windows.get_mut(&(key.clone(), start)).expect("window");
                let mut fire = time == last;
                if !fire
                    && let Some(interval) = continuous
                    && contents.next == Some(time)
                {
                    fire = true;
                    let next = (time + interval).min(last);
                    if next > time {
                        contents.next = Some(next);
                        timers.insert((next, key.clone()));
                    }
                }
                if fire {
                    emit(emitted, &key, start, contents);
                }
                if time == last + LATENESS {
                    windows.remove(&(key.clone(), start));
                }
            }
        }
    };
    for (key, ts, line) in events {
        let start = ts.div_euclid(SIZE) * SIZE;
        let last = start + SIZE - 1;
        if last + LATENESS <= watermark {
            late.push(line.clone());
        } else {
            let contents = windows.entry((key.clone(), start)).or_default();
            contents.lines.push(line.clone());
            if last <= watermark {
                emit(&mut emitted, key, start, contents);
            } else {
                timers.insert((last, key.clone()));
                if let Some(interval) = continuous
                    && contents.next.is_none()
                {
                    let next = (ts.div_euclid(interval) * interval + interval).min(last);
                    contents.next = Some(next);
                    timers.insert((next, key.clone()));
                }
            }
            timers.insert((last + LATENESS, key.clone()));
        }
        max_ts = max_ts.max(*ts);
        if max_ts - BOUND - 1 > watermark {
            watermark = max_ts - BOUND - 1;
            advance(watermark, &mut windows, &mut timers, &mut emitted);
        }
    }
    advance(i64::MAX, &mut windows, &mut timers, &mut emitted);
    emitted.sort();
    late.sort();
    (emitted, late)
}

fn run_against_oracle(trigger: &str, continuous: Option<i64>, purge: bool) {
    let events = events(17, 2_500, 150);
    let (expected, late) = oracle(&events, continuous, purge);
    assert!(late.len() > 10, "the input must have records too late: {}", late.len());
    let job = JOB.replace("TRIGGER", trigger);
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", input(&events));
        let finished = work.run_ok(&job, &["--parallelism", parallelism]);
        assert_eq!(
            sorted_lines(&work.read("out.txt")),
            expected,
            "{trigger}, parallelism {parallelism}"
        );
        assert_eq!(sorted_lines(&work.read("late.txt")), late, "{trigger}");
        let late_line = format!("late {}", thousands(late.len() as u64));
        assert!(finished.stderr.contains(&late_line), "{}", finished.stderr);
    }
}

#[test]
fn the_continuous_event_time_trigger_fires_the_running_result_at_each_interval_crossing() {
    let events = events(17, 2_500, 150);
    let (expected, _) = oracle(&events, Some(INTERVAL), false);
    // Windows fire more often than once (every 300 ms and at the end).
    assert!(expected.len() > 3 * 4 * 10, "{} firings", expected.len());
    run_against_oracle(
        "{ type = \"continuous-event-time\", interval_ms = 300 }",
        Some(INTERVAL),
        false,
    );
}

#[test]
fn purging_continuous_and_event_time_triggers_emit_each_record_once_per_firing() {
    run_against_oracle(
        "{ type = \"continuous-event-time\", interval_ms = 300, purge = true }",
        Some(INTERVAL),
        true,
    );
    run_against_oracle("{ type = \"event-time\", purge = true }", None, true);
    // Purging: every record that is not too late is emitted exactly once.
    let events = events(17, 2_500, 150);
    let (emitted, late) = oracle(&events, Some(INTERVAL), true);
    let records: usize = emitted.iter().map(|l| l.split('|').count()).sum();
    assert_eq!(records + late.len(), events.len());
}

/// The fnv1a hash `trap_on_first_attempt` uses to pick the records it traps on.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn committed(dir: &Path) -> Vec<String> {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("the sink's folder").flatten() {
        if !entry.file_name().to_string_lossy().starts_with('.') {
            text.push_str(&std::fs::read_to_string(entry.path()).expect("a part file"));
        }
    }
    sorted_lines(&text)
}

#[test]
fn a_continuous_trigger_restores_its_windows_and_firings_exactly_after_a_failure() {
    // In timestamp order, so that the watermark after a restart is the one
    // the failure-free run had (watermarks are not checkpointed, as in Flink).
    let mut events = events(23, 3_000, 0);
    events.sort_by_key(|e| e.1);
    let (expected, late) = oracle(&events, Some(INTERVAL), false);
    assert!(late.is_empty());
    // `trap_on_first_attempt` traps on the first record whose hash is a
    // multiple of the modulus: pick one that traps in the second half, after
    // some checkpoints.
    let first_trap = |modulus: u64| {
        events
            .iter()
            .position(|e| fnv1a(e.2.as_bytes()).is_multiple_of(modulus))
    };
    let modulus = (1_000..4_000u64)
        .find(|&m| first_trap(m).is_some_and(|i| (1_500..2_800).contains(&i)))
        .expect("a modulus that traps in the second half");
    let job = JOB
        .replace("TRIGGER", "{ type = \"continuous-event-time\", interval_ms = 300 }")
        .replace(
            "[job]\nbatch_size = 1\n",
            "[job]\nname = \"continuous\"\nbatch_size = 1\nstate_backend = \"BACKEND\"\n\n\
             [checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 5\n\n\
             [restart]\nstrategy = \"fixed-delay\"\nattempts = 3\ndelay_ms = 0\n",
        )
        .replace(
            "input = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"stamp\"",
            "input = \"traps\"\nmodule = \"testkit.wasm\"\nfunction = \"stamp\"",
        )
        .replace(
            "[[operator]]\nuid = \"stamp\"",
            &format!(
                "[[operator]]\nuid = \"traps\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\n\
                 function = \"trap_on_first_attempt\"\nparallelism = 1\nparams = {{ modulus = \"{modulus}\" }}\n\n\
                 [[operator]]\nuid = \"stamp\""
            ),
        )
        .replace(
            "type = \"file\"\npath = \"out.txt\"",
            "type = \"files\"\npath = \"out\"",
        );
    for backend in ["heap", "rocksdb"] {
        let work = Workdir::new();
        work.write("input.txt", input(&events));
        let finished = work.run_ok(&job.replace("BACKEND", backend), &["--parallelism", "2"]);
        assert!(finished.stderr.contains("restarts: 1"), "{}", finished.stderr);
        assert_eq!(committed(&work.path("out")), expected, "{backend}");
    }
}

#[test]
fn hour_windows_with_an_offset_start_at_the_offset() {
    const HOUR: i64 = 3_600_000;
    const OFFSET: i64 = 15 * 60_000;
    let job = JOB
        .replace("TRIGGER", "{ type = \"event-time\" }")
        .replace(
            "window = { type = \"tumbling\", size_ms = 1000 }",
            "window = { type = \"tumbling\", size_ms = 3600000, offset_ms = 900000 }",
        )
        .replace("batch_size = 1", "batch_size = 50");
    let mut rng = Lcg::new(3);
    let mut events: Vec<Event> = (0..600i64)
        .map(|i| {
            let key = format!("k{}", rng.below(3));
            let ts = 1_767_225_600_000 + i * 30_000 + rng.below(30_000) as i64;
            let line = format!("{key} {ts} r{i}");
            (key, ts, line)
        })
        .collect();
    events.sort_by_key(|e| e.1);
    // Oracle: the hours of the day shifted by a quarter: [hh:15, hh+1:15).
    let mut windows: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for (key, ts, line) in &events {
        let start = OFFSET + (ts - OFFSET).div_euclid(HOUR) * HOUR;
        windows.entry((key.clone(), start)).or_default().push(line.clone());
    }
    let mut expected: Vec<String> = windows
        .into_iter()
        .map(|((key, start), mut lines)| {
            lines.sort();
            format!("{key},{start},{},{}", start + HOUR, lines.join("|"))
        })
        .collect();
    expected.sort();
    // The first records (from 00:00) are in the window that opened at 23:15.
    assert!(expected[0].contains(",1767222900000,1767226500000,"), "{}", expected[0]);
    let work = Workdir::new();
    work.write("input.txt", input(&events));
    work.run_ok(&job, &["--parallelism", "2"]);
    assert_eq!(sorted_lines(&work.read("out.txt")), expected);
}

/// Processing-time windows over a file, read in batches of 16 records.
const PROCESSING: &str = r#"
[job]
batch_size = 16

[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "win"
input = "lines"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
WINDOW

[[sink]]
uid = "out"
input = "win"
type = "file"
path = "out.txt"
"#;

/// One firing: key, start, end and the records' lines.
type Firing = (String, i64, i64, Vec<String>);

/// Runs `window` over `events` (parallelism 2) and returns the firings,
/// each checked to be a window of `size` aligned to `offset`.
fn processing_run(window: &str, events: &[Event], size: i64, offset: i64) -> Vec<Firing> {
    let work = Workdir::new();
    work.write("input.txt", input(events));
    work.run_ok(&PROCESSING.replace("WINDOW", window), &["--parallelism", "2"]);
    let mut firings = Vec::new();
    for line in work.read("out.txt").lines() {
        let fields: Vec<&str> = line.splitn(4, ',').collect();
        assert_eq!(fields.len(), 4, "{line}");
        let (start, end): (i64, i64) = (fields[1].parse().expect("start"), fields[2].parse().expect("end"));
        assert_eq!(end - start, size, "{line}");
        assert_eq!(
            (start - offset).rem_euclid(size),
            0,
            "not aligned to size {size} and offset {offset}: {line}"
        );
        let texts = fields[3].split('|').map(str::to_string).collect();
        firings.push((fields[0].to_string(), start, end, texts));
    }
    firings
}

/// The lines of each key, sorted.
fn lines_per_key<'a>(lines: impl Iterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, Vec<String>> {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, line) in lines {
        per_key.entry(key.clone()).or_default().push(line.clone());
    }
    for lines in per_key.values_mut() {
        lines.sort();
    }
    per_key
}

#[test]
fn processing_time_windows_hold_every_record_once_in_aligned_disjoint_windows() {
    let events = events(41, 20_000, 150);
    let firings = processing_run(
        "window = { type = \"tumbling\", size_ms = 7, offset_ms = 3, time = \"processing\" }",
        &events,
        7,
        3,
    );
    let mut windows: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (key, start, end, _) in &firings {
        windows.entry(key).or_default().push((*start, *end));
    }
    for (key, mut mine) in windows {
        mine.sort();
        // Disjoint, and each fired once.
        assert!(
            mine.windows(2).all(|w| w[0].1 <= w[1].0),
            "windows of {key} overlap: {mine:?}"
        );
    }
    // Every record in exactly one window of its key: counts per key sum up.
    let seen = lines_per_key(
        firings
            .iter()
            .flat_map(|(key, _, _, texts)| texts.iter().map(move |t| (key, t))),
    );
    assert_eq!(seen, lines_per_key(events.iter().map(|(key, _, line)| (key, line))));
}

#[test]
fn a_purging_continuous_processing_time_trigger_emits_every_record_exactly_once() {
    let events = events(43, 20_000, 150);
    let firings = processing_run(
        "window = { type = \"tumbling\", size_ms = 20, time = \"processing\" }\n\
         trigger = { type = \"continuous-processing-time\", interval_ms = 3, purge = true }",
        &events,
        20,
        0,
    );
    // Purging: whatever the timing, the firings split the records of a key.
    let seen = lines_per_key(
        firings
            .iter()
            .flat_map(|(key, _, _, texts)| texts.iter().map(move |t| (key, t))),
    );
    assert_eq!(seen, lines_per_key(events.iter().map(|(key, _, line)| (key, line))));
}

#[test]
fn bad_trigger_and_window_configurations_are_refused_with_field_and_line() {
    let work = Workdir::new();
    let cases = [
        (
            "trigger = TRIGGER",
            "trigger = { type = \"continuous-event-time\" }",
            "job.toml:25: operator `win` → trigger → interval_ms: a continuous trigger needs `interval_ms` of at least 1",
        ),
        (
            "trigger = TRIGGER",
            "trigger = { type = \"count\", count = 5, interval_ms = 10 }",
            "job.toml:25: operator `win` → trigger → interval_ms: only the continuous triggers (`continuous-event-time`, `continuous-processing-time`) take `interval_ms`",
        ),
        (
            "trigger = TRIGGER",
            "trigger = { type = \"processing-time\", count = 5 }",
            "job.toml:25: operator `win` → trigger → count: only a `count` trigger takes `count`",
        ),
        (
            "size_ms = 1000 }\ntrigger = TRIGGER",
            "size_ms = 1000, time = \"processing\" }\ntrigger = { type = \"continuous-event-time\", interval_ms = 10 }",
            "job.toml:25: operator `win` → trigger: processing-time windows fire by the wall clock: use a `processing-time` or `continuous-processing-time` trigger",
        ),
        (
            "trigger = TRIGGER",
            "trigger = { type = \"continuous-processing-time\", interval_ms = 10 }",
            "job.toml:25: operator `win` → trigger: a continuous processing-time trigger fires up to the window's end, so it needs processing-time windows (`time = \"processing\"`)",
        ),
        (
            "size_ms = 1000 }\ntrigger = TRIGGER",
            "size_ms = 1000, time = \"processing\" }\ntrigger = { type = \"processing-time\" }",
            "job.toml:24: operator `win` → allowed_lateness_ms: processing-time windows are never late: allowed lateness applies to event-time windows only",
        ),
        (
            "window = { type = \"tumbling\", size_ms = 1000 }\ntrigger = TRIGGER",
            "window = { type = \"global\", time = \"processing\" }\ntrigger = { type = \"count\", count = 3 }",
            "job.toml:24: operator `win` → window → time: a global window holds all time, so it has no clock: remove `time`",
        ),
        (
            "window = { type = \"tumbling\", size_ms = 1000 }\ntrigger = TRIGGER",
            "window = { type = \"global\" }\ntrigger = { type = \"continuous-event-time\", interval_ms = 10 }",
            "job.toml:25: operator `win` → trigger: a global window never ends, so it needs a trigger that fires it (`trigger = { type = \"count\", count = N }`)",
        ),
        (
            "window = { type = \"tumbling\", size_ms = 1000 }\ntrigger = TRIGGER",
            "window = { type = \"session\", gap_ms = 10 }\ntrigger = { type = \"count\", count = 3 }",
            "job.toml:25: operator `win` → trigger: session windows merge, and count triggers cannot merge their counts yet: use a time trigger",
        ),
        (
            "window = { type = \"tumbling\", size_ms = 1000 }\ntrigger = TRIGGER",
            "window = { type = \"tumbling\", size_ms = 1000, offset_ms = -1000 }\ntrigger = { type = \"event-time\" }",
            "job.toml:24: operator `win` → window → offset_ms: the offset must be smaller than the window's size (1000) in absolute value",
        ),
        (
            "trigger = TRIGGER",
            "trigger = { type = \"continuous\" }",
            "job.toml:25: unknown variant `continuous`, expected one of `event-time`, `count`, `processing-time`, `continuous-event-time`, `continuous-processing-time`",
        ),
    ];
    for (from, to, message) in cases {
        assert!(JOB.contains(from), "{from}");
        let job = JOB.replace(from, to);
        let finished = work.weir("validate", &job, &[]);
        assert!(!finished.success, "{to}");
        assert!(finished.stderr.contains(message), "{to}:\n{}", finished.stderr);
    }
}
