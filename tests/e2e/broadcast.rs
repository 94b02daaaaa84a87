//! The broadcast state pattern: speed limits per camera arrive on a
//! broadcast input (rules `camera limit`, or `camera -` to remove one) and
//! are checked against passings `camera ts speed` keyed by camera
//! (testkit's `speed_limits`: broadcast state `limits`, keyed state
//! `violations`). Both sources follow their files, so the test feeds them in
//! steps and waits for each step to be committed: rules first, then
//! passings, then rule changes, then more passings. On RocksDB at
//! parallelism 2 with a trap that fails the first attempt (restart from a
//! checkpoint); then stopped with a savepoint and resumed on the heap at
//! parallelism 3, where cameras move to subtasks that must have the rules
//! too (replicated from subtask 0's copy). The committed output must equal
//! the oracle: every passing with the limit in force when it came and the
//! camera's running count of violations, and each rule acknowledged once.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{Workdir, sorted_lines, start, weir_in};
use crate::oracle::Lcg;

const CAMERAS: u64 = 6;

fn job(backend: &str, parallelism: u32, modulus: u64) -> String {
    format!(
        r#"
[job]
name = "broadcast"
state_backend = "{backend}"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[restart]
strategy = "fixed-delay"
attempts = 10
delay_ms = 0

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
params = {{ modulus = "{modulus}" }}

[[operator]]
uid = "limits"
input = "traps"
module = "testkit.wasm"
function = "speed_limits"
parallelism = {parallelism}
key_by = {{ module = "testkit.wasm", function = "first_word" }}
second_input = {{ input = "rules", partition = "broadcast" }}

[[sink]]
uid = "out"
input = "limits"
type = "files"
path = "out"
"#
    )
}

fn committed(work: &Workdir) -> Vec<String> {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(work.path("out")) {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                text.push_str(&std::fs::read_to_string(entry.path()).expect("a part file"));
            }
        }
    }
    sorted_lines(&text)
}

fn append(work: &Workdir, file: &str, lines: &[String]) {
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(work.path(file))
        .expect("file system");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    out.write_all(text.as_bytes()).expect("file system");
}

/// Waits until `lines` lines are committed (the job still running).
fn wait_committed(work: &Workdir, child: &mut Child, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(work).len() < lines {
        assert!(
            Instant::now() < deadline,
            "only {} of {lines} lines committed",
            committed(work).len()
        );
        if child.try_wait().expect("polls").is_some() {
            let output = child.stderr.take().map(std::io::read_to_string);
            panic!("the job ended early: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The running job's id.
fn job_id(work: &Workdir) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = weir_in(work, &["list"]);
        if let Some(id) = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some("broadcast"))
            .and_then(|line| line.split_whitespace().next())
        {
            return id.to_string();
        }
        assert!(Instant::now() < deadline, "the job never showed in `weir list`");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the job with a savepoint; returns it and the job's stderr.
fn stop(work: &Workdir, child: Child) -> (PathBuf, String) {
    let id = job_id(work);
    let stop = weir_in(work, &["stop", "--savepoint", "savepoints", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    let output = child.wait_with_output().expect("weir ends");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (PathBuf::from(stop.stdout.trim()), stderr)
}

/// `count` passings `camera ts speed` from `first_ts` on.
fn passings(lcg: &mut Lcg, first_ts: u64, count: u64) -> Vec<String> {
    (0..count)
        .map(|i| format!("c{} {} {}", lcg.below(CAMERAS), first_ts + i, 30 + lcg.below(70)))
        .collect()
}

/// The oracle over the steps in order: rules and passings.
struct Oracle {
    limits: BTreeMap<String, u32>,
    violations: BTreeMap<String, u64>,
    lines: Vec<String>,
}

impl Oracle {
    fn rules(&mut self, rules: &[String]) {
        for rule in rules {
            let (camera, limit) = rule.split_once(' ').expect("camera limit");
            match limit {
                "-" => self.limits.remove(camera),
                _ => self.limits.insert(camera.to_string(), limit.parse().expect("a limit")),
            };
            self.lines.push(format!("rule,{camera},{limit}"));
        }
    }

    fn passings(&mut self, passings: &[String]) {
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
    }

    fn expected(&self) -> Vec<String> {
        let mut lines = self.lines.clone();
        lines.sort();
        lines
    }
}

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| (*l).to_string()).collect()
}

#[test]
fn broadcast_rules_reach_every_subtask_across_a_restart_and_a_rescale() {
    let work = Workdir::new();
    let mut lcg = Lcg::new(42);
    let mut oracle = Oracle {
        limits: BTreeMap::new(),
        violations: BTreeMap::new(),
        lines: Vec::new(),
    };
    work.write("rules.txt", "");
    work.write("passings.txt", "");

    // RocksDB, parallelism 2; the trap fails the first attempt once.
    work.write("job.toml", job("rocksdb", 2, 40));
    let mut child = start(&work, &[]);
    let rules = strings(&["c0 50", "c1 60", "c2 70", "c3 40", "c4 80"]);
    append(&work, "rules.txt", &rules);
    oracle.rules(&rules);
    wait_committed(&work, &mut child, oracle.lines.len());
    let step = passings(&mut lcg, 1_000, 300);
    append(&work, "passings.txt", &step);
    oracle.passings(&step);
    wait_committed(&work, &mut child, oracle.lines.len());
    let rules = strings(&["c1 -", "c3 90", "c5 45"]);
    append(&work, "rules.txt", &rules);
    oracle.rules(&rules);
    wait_committed(&work, &mut child, oracle.lines.len());
    let step = passings(&mut lcg, 2_000, 300);
    append(&work, "passings.txt", &step);
    oracle.passings(&step);
    wait_committed(&work, &mut child, oracle.lines.len());
    let (savepoint, stderr) = stop(&work, child);
    assert!(
        stderr.contains("restarts: 1\n"),
        "the trap should have fired once:\n{stderr}"
    );
    assert_eq!(committed(&work), oracle.expected());

    // The heap, parallelism 3, from the savepoint: the rules are everywhere.
    work.write("job.toml", job("heap", 3, 1 << 62));
    let mut child = start(&work, &["--from-savepoint", savepoint.to_str().expect("a UTF-8 path")]);
    let step = passings(&mut lcg, 3_000, 300);
    append(&work, "passings.txt", &step);
    oracle.passings(&step);
    wait_committed(&work, &mut child, oracle.lines.len());
    let rules = strings(&["c0 -", "c2 20"]);
    append(&work, "rules.txt", &rules);
    oracle.rules(&rules);
    let step = passings(&mut lcg, 4_000, 100);
    wait_committed(&work, &mut child, oracle.lines.len());
    append(&work, "passings.txt", &step);
    oracle.passings(&step);
    wait_committed(&work, &mut child, oracle.lines.len());
    let (savepoint, _) = stop(&work, child);
    assert_eq!(committed(&work), oracle.expected());

    // The broadcast state in the savepoint, as `weir state dump` shows it
    // (decoded by testkit's codec): one copy per subtask, all equal, under
    // the empty key.
    let dumped = weir_in(
        &work,
        &[
            "state",
            "dump",
            savepoint.to_str().expect("a UTF-8 path"),
            "--uid",
            "limits",
            "--state",
            "broadcast/limits",
        ],
    );
    assert!(dumped.success, "{}", dumped.stderr);
    let key_group = xxhash_rust::xxh3::xxh3_64(b"") % 128;
    let expected: String = oracle
        .limits
        .iter()
        .flat_map(|(camera, limit)| {
            std::iter::repeat_n(
                format!("{{\"key_group\":{key_group},\"key\":\"\",\"user_key\":\"{camera}\",\"value\":{limit}}}\n"),
                3,
            )
        })
        .collect();
    assert_eq!(dumped.stdout, expected);
}

/// A job with the broadcast operator's second input set to `second`.
fn refused(work: &Workdir, function: &str, second: &str) -> String {
    let job = job("heap", 2, 1 << 62)
        .replace("function = \"speed_limits\"", &format!("function = \"{function}\""))
        .replace(
            "second_input = { input = \"rules\", partition = \"broadcast\" }",
            &format!("second_input = {{ input = \"rules\", {second} }}"),
        );
    work.write("job.toml", job);
    let finished = weir_in(work, &["validate", "job.toml"]);
    assert!(!finished.success, "the job should have been refused");
    finished.stderr
}

#[test]
fn a_second_input_is_broadcast_only_for_keyed_co_process_functions() {
    let work = Workdir::new();
    let key_by = "key_by = { module = \"testkit.wasm\", function = \"first_word\" }";
    assert_eq!(
        refused(&work, "speed_limits", "partition = \"rebalance\""),
        "error: job.toml:44: operator `limits` → second_input → partition: a second input is keyed (`key_by`) or broadcast (`partition = \"broadcast\"`)\n"
    );
    assert_eq!(
        refused(&work, "speed_limits", &format!("partition = \"broadcast\", {key_by}")),
        "error: job.toml:44: operator `limits` → second_input → partition: `second_input` takes `key_by` or `partition = \"broadcast\"`, not both\n"
    );
    assert_eq!(
        refused(&work, "pair", "partition = \"broadcast\"")
            .lines()
            .find(|l| l.contains("second_input"))
            .map(str::to_string),
        Some("error: job.toml:44: operator `limits` → second_input → partition: `pair` is a join function: both inputs must be keyed; only keyed-co-process functions read a broadcast input".to_string())
    );
}
