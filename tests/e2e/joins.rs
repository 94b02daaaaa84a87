//! Two-input operators: window joins, interval joins and keyed co-process
//! functions, against oracles that follow Flink's definitions, plus the
//! errors of badly declared two-input operators.
//!
//! One file of `key timestamp text` records feeds both inputs: `stamp` sets
//! the event time and emits a watermark after every batch (bound 500 ms),
//! and two `side` filters split the stream by the text's first letter. On
//! time records are never late (each is within the bound of the largest
//! timestamp before it). The late records are 8 to 10 s older than the
//! records around them; with small batches and channels, backpressure keeps
//! both inputs within a few hundred records of each other, so the join's
//! watermark (the minimum over both inputs) has passed them for certain:
//! they are dropped and counted, whatever the thread timing.

use std::collections::BTreeMap;

use crate::harness::{Workdir, sorted_lines, thousands, weir};
use crate::oracle::Lcg;

const BASE: i64 = 1_767_225_600_000;
const KEYS: u64 = 20;

/// One record of the input.
struct Rec {
    key: String,
    ts: i64,
    text: String,
    late: bool,
}

/// `count` records 10 ms apart, jittered up to 400 ms, over 20 keys; the
/// text starts with one of `sides`; after the first 1000 records, about one
/// in a hundred is late.
fn input(count: i64, seed: u64, sides: [&str; 2], value: impl Fn(&mut Lcg) -> u64) -> Vec<Rec> {
    let mut rng = Lcg::new(seed);
    (0..count)
        .map(|i| {
            let mut ts = BASE + i * 10 - rng.below(400) as i64;
            let late = i >= 1000 && rng.below(100) == 0;
            if late {
                ts -= 8_000 + rng.below(2_000) as i64;
            }
            let side = sides[rng.below(2) as usize];
            let key = format!("k{}", rng.below(KEYS));
            let text = format!("{side}{}", value(&mut rng));
            Rec { key, ts, text, late }
        })
        .collect()
}

fn lines(records: &[Rec]) -> String {
    records
        .iter()
        .map(|r| format!("{} {} {}\n", r.key, r.ts, r.text))
        .collect()
}

/// The on-time records of each side, by key.
fn by_key(records: &[Rec]) -> BTreeMap<&str, [Vec<&Rec>; 2]> {
    let mut keys: BTreeMap<&str, [Vec<&Rec>; 2]> = BTreeMap::new();
    for record in records.iter().filter(|r| !r.late) {
        let side = usize::from(!record.text.starts_with('L'));
        keys.entry(&record.key).or_default()[side].push(record);
    }
    keys
}

fn pair(key: &str, l: &Rec, r: &Rec, ts: i64) -> String {
    format!("{key},{},{},{},{},{ts}", l.ts, l.text, r.ts, r.text)
}

/// Flink's window join: every pair of a key's records in the same window,
/// stamped with the window's last millisecond.
fn window_join_oracle(records: &[Rec], size: i64, slide: i64) -> Vec<String> {
    let mut out = Vec::new();
    for (key, [lefts, rights]) in by_key(records) {
        let mut windows: BTreeMap<i64, [Vec<&Rec>; 2]> = BTreeMap::new();
        for (side, list) in [lefts, rights].iter().enumerate() {
            for record in list {
                let mut start = record.ts - record.ts.rem_euclid(slide);
                while start > record.ts - size {
                    windows.entry(start).or_default()[side].push(record);
                    start -= slide;
                }
            }
        }
        for (start, [ls, rs]) in windows {
            for l in &ls {
                for r in &rs {
                    out.push(pair(key, l, r, start + size - 1));
                }
            }
        }
    }
    out.sort();
    out
}

/// Flink's interval join: pairs with `l + lower <= r <= l + upper`,
/// stamped with the later of the two timestamps.
fn interval_join_oracle(records: &[Rec], lower: i64, upper: i64) -> Vec<String> {
    let mut out = Vec::new();
    for (key, [lefts, rights]) in by_key(records) {
        for l in &lefts {
            for r in &rights {
                if l.ts + lower <= r.ts && r.ts <= l.ts + upper {
                    out.push(pair(key, l, r, l.ts.max(r.ts)));
                }
            }
        }
    }
    out.sort();
    out
}

/// The pipeline: file → traps → stamp → two `side` filters → `operator` →
/// sink `out` (and `extra` sinks). `settings` go into `[job]` (and may add
/// tables after it).
fn job(settings: &str, modulus: u64, sides: [&str; 2], operator: &str, sink: &str) -> String {
    format!(
        r#"
[job]
name = "joins"
batch_size = 16
channel_capacity = 2
dead_letter = "dead.jsonl"
{settings}

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
params = {{ modulus = "{modulus}" }}

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
params = {{ prefix = "{}" }}

[[operator]]
uid = "right"
input = "stamp"
module = "testkit.wasm"
function = "side"
parallelism = 1
params = {{ prefix = "{}" }}

[[operator]]
uid = "joined"
input = "left"
key_by = {{ module = "testkit.wasm", function = "first_word" }}
second_input = {{ input = "right", key_by = {{ module = "testkit.wasm", function = "first_word" }} }}
module = "testkit.wasm"
{operator}

[[sink]]
uid = "out"
input = "joined"
{sink}
"#,
        sides[0], sides[1]
    )
}

const FILE_SINK: &str = "type = \"file\"\npath = \"out.txt\"";
const NO_TRAP: u64 = 1 << 62;

fn run_join(records: &[Rec], operator: &str, expected: &[String]) {
    let late = records.iter().filter(|r| r.late).count() as u64;
    assert!(late > 50, "the input must have late records: {late}");
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", lines(records));
        let job = job("", NO_TRAP, ["L", "R"], operator, FILE_SINK);
        let finished = work.run_ok(&job, &["--parallelism", parallelism]);
        let output = sorted_lines(&work.read("out.txt"));
        assert_eq!(output.len(), expected.len(), "parallelism {parallelism}");
        assert_eq!(output, expected, "parallelism {parallelism}");
        let late_line = format!("late {}", thousands(late));
        assert!(
            finished.stderr.contains(&late_line),
            "missing `{late_line}` in:\n{}",
            finished.stderr
        );
    }
}

#[test]
fn a_tumbling_window_join_matches_the_oracle_and_drops_late_records() {
    let records = input(20_000, 5, ["L", "R"], |rng| rng.below(1000));
    let expected = window_join_oracle(&records, 1_000, 1_000);
    assert!(expected.len() > 20_000, "{} pairs", expected.len());
    run_join(
        &records,
        "function = \"pair\"\nparallelism = 2\njoin = { type = \"window\" }\nwindow = { type = \"tumbling\", size_ms = 1000 }",
        &expected,
    );
}

#[test]
fn a_sliding_window_join_matches_the_oracle_and_drops_late_records() {
    let records = input(10_000, 6, ["L", "R"], |rng| rng.below(1000));
    let expected = window_join_oracle(&records, 2_000, 500);
    assert!(expected.len() > 50_000, "{} pairs", expected.len());
    run_join(
        &records,
        "function = \"pair\"\njoin = { type = \"window\" }\nwindow = { type = \"sliding\", size_ms = 2000, slide_ms = 500 }",
        &expected,
    );
}

#[test]
fn an_interval_join_matches_the_oracle_and_drops_late_records() {
    let records = input(20_000, 7, ["L", "R"], |rng| rng.below(1000));
    let expected = interval_join_oracle(&records, -300, 200);
    assert!(expected.len() > 5_000, "{} pairs", expected.len());
    run_join(
        &records,
        "function = \"pair\"\njoin = { type = \"interval\", lower_ms = -300, upper_ms = 200 }",
        &expected,
    );
}

#[test]
fn a_stream_joins_with_itself() {
    let records = input(5_000, 12, ["L", "R"], |rng| rng.below(1000));
    let on_time: Vec<&Rec> = records.iter().filter(|r| !r.late).collect();
    let mut expected = Vec::new();
    for l in &on_time {
        for r in on_time.iter().filter(|r| r.key == l.key) {
            if l.ts - 300 <= r.ts && r.ts <= l.ts + 200 {
                expected.push(pair(&l.key, l, r, l.ts.max(r.ts)));
            }
        }
    }
    expected.sort();
    let work = Workdir::new();
    work.write("input.txt", lines(&records));
    let operator =
        "function = \"pair\"\nparallelism = 2\njoin = { type = \"interval\", lower_ms = -300, upper_ms = 200 }";
    // Both inputs read the same vertex (`left`, which keeps everything).
    let job = job("", NO_TRAP, ["", ""], operator, FILE_SINK);
    let job = job.replace(
        "second_input = { input = \"right\"",
        "second_input = { input = \"left\"",
    );
    assert!(job.contains("second_input = { input = \"left\""));
    let finished = work.run_ok(&job, &[]);
    assert_eq!(sorted_lines(&work.read("out.txt")), expected);
    // A late record is late on both inputs.
    let late = 2 * records.iter().filter(|r| r.late).count() as u64;
    let late_line = format!("late {}", thousands(late));
    assert!(
        finished.stderr.contains(&late_line),
        "missing `{late_line}` in:\n{}",
        finished.stderr
    );
}

/// The 64-bit FNV-1a hash (as `trap_on_first_attempt` computes it).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A modulus whose first trapping record is in the second half of the
/// input, and never in the first half.
fn late_trap(text: &str) -> u64 {
    let lines: Vec<&str> = text.lines().collect();
    (10_000u64..)
        .find(|modulus| {
            let first = lines.iter().position(|l| fnv1a(l.as_bytes()).is_multiple_of(*modulus));
            first.is_some_and(|p| p > lines.len() / 2 && p < lines.len() * 9 / 10)
        })
        .unwrap_or(NO_TRAP)
}

/// Runs `operator` with checkpoints every 10 ms, a trap in the second half
/// of the first attempt and an exactly-once `files` sink, on `backend`;
/// the job must restore its latest checkpoint and still commit exactly
/// `expected`.
fn restores_exactly(records: &[Rec], sides: [&str; 2], operator: &str, backend: &str, expected: &[String]) {
    let text = lines(records);
    let modulus = late_trap(&text);
    assert_ne!(modulus, NO_TRAP);
    let work = Workdir::new();
    work.write("input.txt", &text);
    let settings = format!(
        "state_backend = \"{backend}\"\n\n[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 10\n\n\
         [restart]\nstrategy = \"fixed-delay\"\nattempts = 3\ndelay_ms = 0"
    );
    let job_path = work.write(
        "job.toml",
        job(&settings, modulus, sides, operator, "type = \"files\"\npath = \"out\""),
    );
    let output = weir()
        .env("WEIR_LOG", "info")
        .current_dir(work.dir.path())
        .args(["run", "--quiet", "--parallelism", "2"])
        .arg(&job_path)
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "weir run failed:\n{stderr}");
    assert!(stderr.contains("restarts: 1"), "no restart:\n{stderr}");
    assert!(
        stderr.contains("restoring job `joins` from checkpoint"),
        "the restart did not restore a checkpoint:\n{stderr}"
    );
    let mut committed = String::new();
    for entry in std::fs::read_dir(work.path("out"))
        .expect("the sink's folder")
        .flatten()
    {
        if !entry.file_name().to_string_lossy().starts_with('.') {
            committed.push_str(&std::fs::read_to_string(entry.path()).expect("a part file"));
        }
    }
    assert_eq!(sorted_lines(&committed), expected);
}

#[test]
fn a_window_join_restores_its_buffers_after_a_failure_on_both_backends() {
    let records = input(40_000, 8, ["L", "R"], |rng| rng.below(1000));
    let expected = window_join_oracle(&records, 1_000, 1_000);
    for backend in ["heap", "rocksdb"] {
        restores_exactly(
            &records,
            ["L", "R"],
            "function = \"pair\"\njoin = { type = \"window\" }\nwindow = { type = \"tumbling\", size_ms = 1000 }",
            backend,
            &expected,
        );
    }
}

#[test]
fn an_interval_join_restores_its_buffers_after_a_failure() {
    let records = input(40_000, 9, ["L", "R"], |rng| rng.below(1000));
    let expected = interval_join_oracle(&records, -300, 200);
    restores_exactly(
        &records,
        ["L", "R"],
        "function = \"pair\"\njoin = { type = \"interval\", lower_ms = -300, upper_ms = 200 }",
        "heap",
        &expected,
    );
}

/// Values (`d…`, the first input) and thresholds (`t…`, the second) with
/// no late records. Thresholds are rarer than values.
fn rule_input(count: i64, seed: u64) -> Vec<Rec> {
    let mut rng = Lcg::new(seed);
    (0..count)
        .map(|i| {
            let ts = BASE + i * 10 - rng.below(400) as i64;
            let key = format!("k{}", rng.below(KEYS));
            let text = if rng.below(10) == 0 {
                format!("t{}", rng.below(1000))
            } else {
                format!("d{}", rng.below(1000))
            };
            Rec {
                key,
                ts,
                text,
                late: false,
            }
        })
        .collect()
}

/// The rule the co-process function applies, in event time: a value is
/// compared with the threshold of its key in force at its timestamp (the
/// latest at or before it, the largest of several at the same time).
fn rule_oracle(records: &[Rec]) -> (Vec<String>, Vec<String>) {
    let mut thresholds: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for r in records.iter().filter(|r| r.text.starts_with('t')) {
        let threshold: i64 = r.text[1..].parse().expect("threshold");
        let entry = thresholds.entry((&r.key, r.ts)).or_insert(threshold);
        *entry = (*entry).max(threshold);
    }
    let (mut alerts, mut unmatched) = (Vec::new(), Vec::new());
    for r in records.iter().filter(|r| r.text.starts_with('d')) {
        let value: i64 = r.text[1..].parse().expect("value");
        let in_force = thresholds
            .range((r.key.as_str(), i64::MIN)..=(r.key.as_str(), r.ts))
            .next_back()
            .map(|(_, t)| *t);
        match in_force {
            Some(threshold) if value > threshold => alerts.push(format!("{},{},{value},{threshold}", r.key, r.ts)),
            Some(_) => {}
            None => unmatched.push(format!("{},{},{value}", r.key, r.ts)),
        }
    }
    alerts.sort();
    unmatched.sort();
    (alerts, unmatched)
}

const RULES: &str = "function = \"threshold_alerts\"\nparallelism = 2";

#[test]
fn a_keyed_co_process_function_applies_the_rule_in_force_with_state_timers_and_side_outputs() {
    let records = rule_input(20_000, 10);
    let (alerts, unmatched) = rule_oracle(&records);
    assert!(alerts.len() > 5_000 && !unmatched.is_empty(), "{} alerts", alerts.len());
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", lines(&records));
        let sink = format!(
            "{FILE_SINK}\n\n[[sink]]\nuid = \"unmatched\"\ninput = \"joined\"\nside_output = \"no-rule\"\n\
             type = \"file\"\npath = \"no-rule.txt\""
        );
        let operator = RULES.replace("2", parallelism);
        work.run_ok(&job("", NO_TRAP, ["d", "t"], &operator, &sink), &[]);
        assert_eq!(sorted_lines(&work.read("out.txt")), alerts, "parallelism {parallelism}");
        assert_eq!(
            sorted_lines(&work.read("no-rule.txt")),
            unmatched,
            "parallelism {parallelism}"
        );
    }
}

#[test]
fn a_keyed_co_process_function_restores_its_state_and_timers_after_a_failure() {
    let records = rule_input(40_000, 11);
    let (alerts, _) = rule_oracle(&records);
    restores_exactly(&records, ["d", "t"], RULES, "rocksdb", &alerts);
}

/// `weir validate` on a job whose `joined` operator is `operator`; its
/// stderr, with the job's path shortened to `job.toml`.
fn refused(operator: &str) -> String {
    let work = Workdir::new();
    let job = format!(
        r#"[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "left"
input = "lines"
module = "testkit.wasm"
function = "identity"

[[operator]]
uid = "joined"
input = "lines"
module = "testkit.wasm"
{operator}

[[sink]]
uid = "out"
input = "joined"
type = "stdout"
"#
    );
    let finished = work.weir("validate", &job, &[]);
    assert!(!finished.success, "the job was accepted:\n{}", finished.stdout);
    finished
        .stderr
        .replace(&work.path("job.toml").display().to_string(), "job.toml")
}

const KEY: &str = "key_by = { module = \"testkit.wasm\", function = \"first_word\" }";

#[test]
fn a_second_input_naming_an_unknown_vertex_is_refused() {
    let stderr = refused(&format!(
        "function = \"pair\"\n{KEY}\njoin = {{ type = \"interval\", lower_ms = 0, upper_ms = 5 }}\n\
         second_input = {{ input = \"nowhere\", {KEY} }}"
    ));
    assert_eq!(
        stderr,
        "error: job.toml:19: `joined` → second_input: no source or operator has uid `nowhere` (known: joined, left, lines)\n"
    );
}

#[test]
fn a_join_without_a_second_input_is_refused() {
    let stderr = refused(&format!(
        "function = \"pair\"\n{KEY}\njoin = {{ type = \"interval\", lower_ms = 0, upper_ms = 5 }}"
    ));
    assert_eq!(
        stderr,
        "error: job.toml:16: operator `joined` → second_input: `pair` is a join function: the operator needs `second_input = { input = \"…\", key_by = … }`\n"
    );
}

#[test]
fn two_input_operators_whose_inputs_are_not_both_keyed_are_refused() {
    let stderr = refused(&format!(
        "function = \"pair\"\njoin = {{ type = \"window\" }}\nwindow = {{ type = \"tumbling\", size_ms = 10 }}\n\
         second_input = {{ input = \"left\", {KEY} }}"
    ));
    assert_eq!(
        stderr,
        "error: job.toml:16: operator `joined` → key_by: `pair` is a join function: both inputs must be keyed, so the operator needs `key_by`\n"
    );
    let stderr = refused(&format!(
        "function = \"threshold_alerts\"\n{KEY}\nsecond_input = {{ input = \"left\" }}"
    ));
    assert_eq!(
        stderr,
        "error: job.toml:18: operator `joined` → second_input → key_by: `threshold_alerts` is a keyed-co-process function: both inputs must be keyed, so `second_input` needs `key_by`\n"
    );
}

#[test]
fn join_settings_are_checked() {
    let stderr = refused(&format!(
        "function = \"pair\"\n{KEY}\njoin = {{ type = \"interval\", lower_ms = 5, upper_ms = 0 }}\n\
         second_input = {{ input = \"left\", {KEY} }}"
    ));
    assert_eq!(
        stderr,
        "error: job.toml:18: operator `joined` → join → lower_ms: `lower_ms` (5) must not exceed `upper_ms` (0)\n"
    );
    let stderr = refused(&format!(
        "function = \"pair\"\n{KEY}\njoin = {{ type = \"window\" }}\nwindow = {{ type = \"session\", gap_ms = 10 }}\n\
         second_input = {{ input = \"left\", {KEY} }}"
    ));
    assert_eq!(
        stderr,
        "error: job.toml:18: operator `joined` → window: a window join supports tumbling and sliding windows\n"
    );
    let stderr = refused("function = \"identity\"\nsecond_input = { input = \"left\" }");
    assert_eq!(
        stderr,
        "error: job.toml:17: operator `joined` → second_input: `identity` is a map function; only join and keyed-co-process functions read a second input\n"
    );
}

#[test]
fn inspect_lists_join_and_co_process_functions_and_their_worlds() {
    let output = weir()
        .arg("inspect")
        .arg(crate::harness::module("testkit"))
        .output()
        .expect("weir runs");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "  pair                     join\n",
        "  threshold_alerts         keyed-co-process\n",
        "worlds:    transform-module, key-selector-module, keyed-process-module, window-aggregate-module, join-module, keyed-co-process-module, watermark-generator-module, process-window-module, window-evictor-module, window-trigger-module, state-migration-module, state-codec-module, any-module\n",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
