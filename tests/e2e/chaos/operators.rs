//! The chaos cases of the stateful operators: joins, a buffered window
//! with an evictor, broadcast state and operator list state, with their
//! inputs and oracles (after those of `joins.rs`, `windows_buffered.rs`,
//! `broadcast.rs` and `operator_state.rs`, there private to their tests).

use std::collections::BTreeMap;

use super::{Case, Step, trap_modulus};
use crate::oracle::Lcg;
use crate::windows_buffered::Event;

/// 2026-01-01T00:00:00Z, the first record's time.
const BASE: i64 = 1_767_225_600_000;

/// One `key timestamp text` record.
struct Rec {
    key: String,
    ts: i64,
    text: String,
}

/// `count` records 10 ms apart, jittered up to 400 ms, over 20 keys, the
/// text `L…` or `R…` (the join's sides). None is late: each is within the
/// watermark bound (500 ms) of every record before it, which keeps the
/// join's output independent of how its two inputs interleave.
fn join_input(count: i64, seed: u64) -> Vec<Rec> {
    let mut rng = Lcg::new(seed);
    (0..count)
        .map(|i| {
            let ts = BASE + i * 10 - rng.below(400) as i64;
            let side = ["L", "R"][rng.below(2) as usize];
            let key = format!("k{}", rng.below(20));
            Rec {
                key,
                ts,
                text: format!("{side}{}", rng.below(1000)),
            }
        })
        .collect()
}

/// The records as the input file's lines.
fn lines(records: &[Rec]) -> String {
    records
        .iter()
        .map(|r| format!("{} {} {}\n", r.key, r.ts, r.text))
        .collect()
}

/// The records of each side, by key.
fn by_key(records: &[Rec]) -> BTreeMap<&str, [Vec<&Rec>; 2]> {
    let mut keys: BTreeMap<&str, [Vec<&Rec>; 2]> = BTreeMap::new();
    for record in records {
        let side = usize::from(!record.text.starts_with('L'));
        keys.entry(&record.key).or_default()[side].push(record);
    }
    keys
}

/// testkit's `pair` of `l` and `r`, stamped `ts`.
fn pair(key: &str, l: &Rec, r: &Rec, ts: i64) -> String {
    format!("{key},{},{},{},{},{ts}", l.ts, l.text, r.ts, r.text)
}

/// The join pipeline (`joins.rs`): file → traps → stamp (a watermark after
/// every batch) → two `side` filters → `joined` (parallelism 2, `operator`)
/// → a `files` sink.
fn join(name: &'static str, records: &[Rec], operator: &str, expected: Vec<String>) -> Case {
    let text = lines(records);
    Case {
        name,
        modulus: trap_modulus(text.lines()),
        files: vec![("input.txt", text)],
        settings: "batch_size = 4\nchannel_capacity = 2".to_string(),
        checkpoint_ms: 20,
        body: format!(
            r#"
[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "traps"
input = "lines"
module = "testkit.wasm"
function = "trap_on_first_attempt"
parallelism = 1
params = {{ modulus = "MODULUS" }}

[[operator]]
uid = "stamp"
input = "traps"
module = "testkit.wasm"
function = "stamp"
parallelism = 1
watermarks = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 500, interval_ms = 0 }}

[[operator]]
uid = "left"
input = "stamp"
module = "testkit.wasm"
function = "side"
parallelism = 1
params = {{ prefix = "L" }}

[[operator]]
uid = "right"
input = "stamp"
module = "testkit.wasm"
function = "side"
parallelism = 1
params = {{ prefix = "R" }}

[[operator]]
uid = "joined"
input = "left"
key_by = {{ module = "testkit.wasm", function = "first_word" }}
second_input = {{ input = "right", key_by = {{ module = "testkit.wasm", function = "first_word" }} }}
module = "testkit.wasm"
function = "pair"
{operator}

[[sink]]
uid = "out"
input = "joined"
type = "files"
path = "out"
"#
        ),
        outputs: &["out"],
        ordered: false,
        steps: Vec::new(),
        compared: |_| true,
        oracle: vec![expected],
    }
}

/// A tumbling window join (window buffers of both sides in keyed state).
pub fn window_join() -> Case {
    const SIZE: i64 = 1_000;
    let records = join_input(8_000, 8);
    // Flink's window join: every pair of a key's records in the same
    // window, stamped with the window's last millisecond.
    let mut expected = Vec::new();
    for (key, [lefts, rights]) in by_key(&records) {
        for l in &lefts {
            let start = l.ts - l.ts.rem_euclid(SIZE);
            for r in rights.iter().filter(|r| r.ts - r.ts.rem_euclid(SIZE) == start) {
                expected.push(pair(key, l, r, start + SIZE - 1));
            }
        }
    }
    expected.sort();
    assert!(expected.len() > 5_000, "{} pairs", expected.len());
    join(
        "window-join",
        &records,
        "join = { type = \"window\" }\nwindow = { type = \"tumbling\", size_ms = 1000 }",
        expected,
    )
}

/// An interval join (buffers of both sides, cleaned up by the watermark).
pub fn interval_join() -> Case {
    let records = join_input(8_000, 9);
    // Flink's interval join: pairs with `l - 300 <= r <= l + 200`, stamped
    // with the later of the two timestamps.
    let mut expected = Vec::new();
    for (key, [lefts, rights]) in by_key(&records) {
        for l in &lefts {
            for r in rights.iter().filter(|r| l.ts - 300 <= r.ts && r.ts <= l.ts + 200) {
                expected.push(pair(key, l, r, l.ts.max(r.ts)));
            }
        }
    }
    expected.sort();
    assert!(expected.len() > 2_000, "{} pairs", expected.len());
    join(
        "interval-join",
        &records,
        "join = { type = \"interval\", lower_ms = -300, upper_ms = 200 }",
        expected,
    )
}

/// Window size, allowed lateness and evictor count of the buffered window.
const SIZE_MS: i64 = 40;
const LATENESS_MS: i64 = 50;
const KEEP: usize = 3;

/// The buffered window's input (`windows_buffered.rs`), with one record in
/// 8 from 60 to 160 ms in the past (late, or within the lateness).
fn events(seed: u64, count: i64) -> Vec<Event> {
    crate::windows_buffered::events_late_one_in(seed, count, 8)
}

/// testkit's `sorted_values` over `elements`.
fn sorted_values(key: &str, start: i64, elements: &[Event]) -> String {
    let mut values: Vec<i64> = elements.iter().map(|e| e.value).collect();
    values.sort_unstable();
    let median = values
        .get(values.len().saturating_sub(1) / 2)
        .map_or("none".to_string(), i64::to_string);
    let listed: Vec<String> = values.iter().map(i64::to_string).collect();
    format!(
        "{key},{start},{},{},{median},{}",
        start + SIZE_MS,
        values.len(),
        listed.join(" ")
    )
}

/// Flink's tumbling windows with allowed lateness and a count evictor
/// (keep the last [`KEEP`], before the function), record by record, a
/// watermark (largest timestamp - 1) after each (`windows_buffered.rs`):
/// a window fires when the watermark reaches its end - 1, and again at once
/// for each record it gets after that; a record whose window is past its
/// lateness goes to the late output. Returns the output and the late
/// records.
fn evicting_oracle(events: &[Event]) -> (Vec<String>, Vec<String>) {
    let mut windows: BTreeMap<(String, i64), Vec<Event>> = BTreeMap::new();
    let mut timers: std::collections::BTreeSet<(i64, String, i64)> = std::collections::BTreeSet::new();
    let (mut output, mut late) = (Vec::new(), Vec::new());
    let mut watermark = i64::MIN;
    let fire = |windows: &mut BTreeMap<(String, i64), Vec<Event>>, id: &(String, i64), output: &mut Vec<String>| {
        if let Some(elements) = windows.get_mut(id) {
            let excess = elements.len().saturating_sub(KEEP);
            elements.drain(..excess);
            output.push(sorted_values(&id.0, id.1, elements));
        }
    };
    let advance = |windows: &mut BTreeMap<(String, i64), Vec<Event>>,
                   timers: &mut std::collections::BTreeSet<(i64, String, i64)>,
                   watermark: i64,
                   output: &mut Vec<String>| {
        while let Some((time, key, start)) = timers.first().cloned() {
            if time > watermark {
                break;
            }
            timers.pop_first();
            fire(windows, &(key, start), output);
        }
        windows.retain(|(_, start), _| start + SIZE_MS - 1 + LATENESS_MS > watermark);
    };
    for event in events {
        let start = event.ts - event.ts.rem_euclid(SIZE_MS);
        let end = start + SIZE_MS;
        if end - 1 + LATENESS_MS <= watermark {
            late.push(event.line());
        } else {
            let id = (event.key.clone(), start);
            windows.entry(id.clone()).or_default().push(event.clone());
            if end - 1 <= watermark {
                fire(&mut windows, &id, &mut output);
            } else {
                timers.insert((end - 1, id.0, start));
            }
        }
        watermark = watermark.max(event.ts - 1);
        advance(&mut windows, &mut timers, watermark, &mut output);
    }
    advance(&mut windows, &mut timers, i64::MAX, &mut output);
    output.sort();
    late.sort();
    (output, late)
}

/// Merging session windows (`event_time.rs`): records up to 50 ms out of
/// order against a 100 ms bound, so none is late; sessions merge across
/// batches and checkpoints, keyed at parallelism 2.
pub fn session_windows() -> Case {
    let (text, expected) = crate::event_time::sessions(47, 1_500);
    let body = crate::event_time::SESSIONS
        .replace("[job]\nbatch_size = 7\n", "")
        .replace(
            "[[operator]]\nuid = \"stamp\"\ninput = \"lines\"",
            "[[operator]]\nuid = \"traps\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"trap_on_first_attempt\"\nparallelism = 1\nparams = { modulus = \"MODULUS\" }\n\n[[operator]]\nuid = \"stamp\"\ninput = \"traps\"",
        )
        .replace("window = { type = \"session\", gap_ms = 30 }", "window = { type = \"session\", gap_ms = 30 }\nparallelism = 2")
        .replace("type = \"file\"\npath = \"out.txt\"", "type = \"files\"\npath = \"out\"");
    assert!(
        body.contains("uid = \"traps\"") && body.contains("path = \"out\""),
        "{body}"
    );
    Case {
        name: "sessions",
        modulus: trap_modulus(text.lines()),
        files: vec![("input.txt", text)],
        settings: "batch_size = 7".to_string(),
        checkpoint_ms: 20,
        body,
        outputs: &["out"],
        ordered: false,
        steps: Vec::new(),
        compared: |_| true,
        oracle: vec![expected],
    }
}

/// A process-window function over tumbling windows with allowed lateness,
/// a count evictor and a late side output (`windows_buffered.rs`), at
/// parallelism 1 with batches of one record: the order of both outputs is
/// compared too.
pub fn evicting_window() -> Case {
    let events = events(11, 5_000);
    let (expected, late) = evicting_oracle(&events);
    assert!(!late.is_empty(), "the input must have late records");
    let text: String = events.iter().map(|e| format!("{}\n", e.line())).collect();
    Case {
        name: "evicting-window",
        modulus: trap_modulus(text.lines()),
        files: vec![("input.txt", text)],
        settings: "batch_size = 1".to_string(),
        checkpoint_ms: 20,
        body: format!(
            r#"
[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "traps"
input = "lines"
module = "testkit.wasm"
function = "trap_on_first_attempt"
parallelism = 1
params = {{ modulus = "MODULUS" }}

[[operator]]
uid = "stamp"
input = "traps"
module = "testkit.wasm"
function = "stamp"
parallelism = 1
watermarks = {{ strategy = "monotonous", interval_ms = 0 }}

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
parallelism = 1
key_by = {{ module = "testkit.wasm", function = "first_word" }}
late_output = "late"
function = "sorted_values"
window = {{ type = "tumbling", size_ms = {SIZE_MS} }}
allowed_lateness_ms = {LATENESS_MS}
evictor = {{ type = "count", count = {KEEP}, after = false }}

[[sink]]
uid = "out"
input = "win"
type = "files"
path = "out"

[[sink]]
uid = "late"
input = "win"
side_output = "late"
type = "files"
path = "late"
"#
        ),
        outputs: &["out", "late"],
        ordered: true,
        steps: Vec::new(),
        compared: |_| true,
        oracle: vec![expected, late],
    }
}

/// The broadcast oracle (`broadcast.rs`): each passing with the limit in
/// force when it came and its camera's running count of violations; each
/// rule acknowledged once.
#[derive(Default)]
struct Limits {
    limits: BTreeMap<String, u32>,
    violations: BTreeMap<String, u64>,
    lines: Vec<String>,
}

impl Limits {
    fn rules(&mut self, rules: &[&str]) -> String {
        for rule in rules {
            let (camera, limit) = rule.split_once(' ').expect("camera limit");
            match limit {
                "-" => self.limits.remove(camera),
                _ => self.limits.insert(camera.to_string(), limit.parse().expect("a limit")),
            };
            self.lines.push(format!("rule,{camera},{limit}"));
        }
        rules.iter().map(|r| format!("{r}\n")).collect()
    }

    fn passings(&mut self, passings: &[String]) -> String {
        for passing in passings {
            let fields: Vec<&str> = passing.split(' ').collect();
            let speed: u32 = fields[2].parse().expect("a speed");
            let limit = self.limits.get(fields[0]).copied();
            let violations = self.violations.entry(fields[0].to_string()).or_default();
            if limit.is_some_and(|limit| speed > limit) {
                *violations += 1;
            }
            let limit = limit.map_or("none".to_string(), |l| l.to_string());
            self.lines.push(format!(
                "{},{},{},{limit},{violations}",
                fields[0], fields[1], fields[2]
            ));
        }
        passings.iter().map(|p| format!("{p}\n")).collect()
    }
}

/// The broadcast state pattern (`broadcast.rs`): speed limits per camera
/// on a broadcast input, checked against passings keyed by camera
/// (testkit's `speed_limits`, parallelism 2). Both sources follow their
/// files; rules and passings are written in alternating steps.
pub fn speed_limits() -> Case {
    let mut rng = Lcg::new(42);
    let mut passings = |first: u64| -> Vec<String> {
        (0..1_500)
            .map(|i| format!("c{} {} {}", rng.below(6), first + i, 30 + rng.below(70)))
            .collect()
    };
    let batches = [passings(1_000), passings(10_000), passings(20_000)];
    let modulus = trap_modulus(batches.iter().flatten().map(String::as_str));
    let mut oracle = Limits::default();
    let mut steps = Vec::new();
    let rules: [&[&str]; 3] = [
        &["c0 50", "c1 60", "c2 70", "c3 40", "c4 80"],
        &["c1 -", "c3 90", "c5 45"],
        &["c0 -", "c2 20"],
    ];
    for (rules, passings) in rules.iter().zip(&batches) {
        let text = oracle.rules(rules);
        steps.push(Step {
            file: "rules.txt",
            text,
            committed: oracle.lines.len(),
        });
        let text = oracle.passings(passings);
        steps.push(Step {
            file: "passings.txt",
            text,
            committed: oracle.lines.len(),
        });
    }
    let mut expected = oracle.lines;
    expected.sort();
    Case {
        name: "broadcast",
        modulus,
        files: vec![("rules.txt", String::new()), ("passings.txt", String::new())],
        settings: "batch_size = 16".to_string(),
        checkpoint_ms: 20,
        body: r#"
[[source]]
uid = "rules"
type = "file"
path = "rules.txt"
follow = true
parallelism = 1

[[source]]
uid = "passings"
type = "file"
path = "passings.txt"
follow = true
parallelism = 1

[[operator]]
uid = "traps"
input = "passings"
module = "testkit.wasm"
function = "trap_on_first_attempt"
parallelism = 1
params = { modulus = "MODULUS" }

[[operator]]
uid = "limits"
input = "traps"
module = "testkit.wasm"
function = "speed_limits"
key_by = { module = "testkit.wasm", function = "first_word" }
second_input = { input = "rules", partition = "broadcast" }

[[sink]]
uid = "out"
input = "limits"
type = "files"
path = "out"
"#
        .to_string(),
        outputs: &["out"],
        ordered: false,
        steps,
        compared: |_| true,
        oracle: vec![expected],
    }
}

/// Operator list state (`operator_state.rs`): testkit's
/// `operator_state_probe` at parallelism 2, each subtask fed one file of
/// `add X` commands (kept in a split and a union list) and `dump`s (which
/// print both lists): after any crash the lists must be what they were.
pub fn operator_lists() -> Case {
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (subtask, (path, prefix)) in [("in/a.txt", "a"), ("in/b.txt", "b")].into_iter().enumerate() {
        let mut text = String::new();
        let mut items: Vec<String> = Vec::new();
        for i in 1..=1_500 {
            let item = format!("{prefix}{i}");
            text.push_str(&format!("add {item}\n"));
            expected.push(format!("added,{item}"));
            items.push(item);
            if i % 100 == 0 {
                text.push_str("dump\n");
                expected.push(format!("{subtask},items,{}", items.join("|")));
                expected.push(format!("{subtask},all,{}", items.join("|")));
            }
        }
        files.push((path, text));
    }
    expected.sort();
    let modulus = trap_modulus(files.iter().flat_map(|(_, text)| text.lines()));
    Case {
        name: "operator-lists",
        modulus,
        files,
        settings: "batch_size = 4".to_string(),
        checkpoint_ms: 20,
        body: r#"
[[source]]
uid = "commands"
type = "file"
path = "in"

[[operator]]
uid = "traps"
input = "commands"
module = "testkit.wasm"
function = "trap_on_first_attempt"
partition = "forward"
params = { modulus = "MODULUS" }

[[operator]]
uid = "probe"
input = "traps"
module = "testkit.wasm"
function = "operator_state_probe"
partition = "forward"

[[sink]]
uid = "out"
input = "probe"
type = "files"
path = "out"
"#
        .to_string(),
        outputs: &["out"],
        ordered: false,
        steps: Vec::new(),
        // Flink's union list state: a restore gives every subtask the lists of
        // all of them, one after the other, so what `all` holds after a crash
        // depends on where the job was restored; the split list `items` stays
        // with its subtask (the parallelism is unchanged).
        compared: |line| !line.contains(",all,"),
        oracle: vec![expected],
    }
}
