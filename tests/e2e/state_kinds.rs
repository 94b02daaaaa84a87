//! Every state kind of the WIT contract, and event- and processing-time
//! timers, end to end through the testkit's `state_probe` function.

use std::collections::BTreeMap;

use crate::harness::Workdir;

const JOB: &str = r#"
[job]
dead_letter = "dead.jsonl"
state_backend = "BACKEND"

[[source]]
uid = "commands"
type = "file"
path = "commands.txt"

[[operator]]
uid = "probe"
input = "commands"
module = "testkit.wasm"
function = "state_probe"
parallelism = 2
key_by = { module = "testkit.wasm", function = "first_word" }

[[sink]]
uid = "out"
input = "probe"
type = "file"
path = "out.txt"
"#;

/// (command, expected result) in input order.
const SCRIPT: &[(&str, &str)] = &[
    ("a value get", "none"),
    ("a value set x1", "ok"),
    ("b value get", "none"),
    ("a value get", "x1"),
    ("a value set x2", "ok"),
    ("a value get", "x2"),
    ("a value clear", "ok"),
    ("a value get", "none"),
    ("a list add p", "ok"),
    ("a list add q", "ok"),
    ("a list get", "p,q"),
    ("b list get", "none"),
    ("a list clear", "ok"),
    ("a list get", "none"),
    ("a map put k1 v1", "ok"),
    ("a map put k0 v0", "ok"),
    ("a map get k1", "v1"),
    ("a map entries", "k0=v0,k1=v1"),
    ("a map remove k0", "ok"),
    ("a map entries", "k1=v1"),
    ("b map get k1", "none"),
    ("a map clear", "ok"),
    ("a map entries", "none"),
    ("c reduce add 5", "ok"),
    ("c reduce add -2", "ok"),
    ("c reduce get", "3"),
    ("d reduce get", "none"),
    ("c agg add 1", "ok"),
    ("c agg add 2", "ok"),
    ("c agg get", "1.50"),
    ("d agg get", "none"),
    ("e ttlvalue set t", "ok"),
    ("e ttlvalue get", "t"),
    ("f timer at 1000", "ok"),
    ("f timer at 1000", "ok"),
    ("g timer at 500", "ok"),
];

#[test]
fn every_state_kind_and_timers_behave_per_key_on_the_heap() {
    every_state_kind_and_timers_behave_per_key("heap");
}

#[test]
fn every_state_kind_and_timers_behave_per_key_in_rocksdb() {
    every_state_kind_and_timers_behave_per_key("rocksdb");
}

fn every_state_kind_and_timers_behave_per_key(backend: &str) {
    let work = Workdir::new();
    let mut commands: String = SCRIPT.iter().map(|(command, _)| format!("{command}\n")).collect();
    commands.push_str("bogus\n");
    work.write("commands.txt", commands);
    work.run_ok(&JOB.replace("BACKEND", backend), &[]);

    // Per key, results come out in input order.
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (command, result) in SCRIPT {
        let key = command.split(' ').next().unwrap_or_default().to_string();
        expected.entry(key).or_default().push(format!("{command} -> {result}"));
    }
    expected.entry("f".into()).or_default().push("timer f 1000".into());
    expected.entry("g".into()).or_default().push("timer g 500".into());
    let mut actual: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in work.read("out.txt").lines() {
        let key = line.split(' ').find(|w| *w != "timer").unwrap_or_default().to_string();
        actual.entry(key).or_default().push(line.to_string());
    }
    assert_eq!(actual, expected);

    let dead = work.read("dead.jsonl");
    let entry: serde_json::Value = serde_json::from_str(dead.trim()).expect("one JSON dead letter");
    assert_eq!(entry["operator"], "probe");
    assert_eq!(entry["reason"], "unknown command: bogus");
    assert_eq!(entry["record"], "bogus");
}

/// The probe over a followed file: the job runs until the processing-time
/// timers have fired.
const PROCESSING_TIMERS: &str = r#"
[[source]]
uid = "commands"
type = "file"
path = "commands.txt"
follow = true

[[operator]]
uid = "probe"
input = "commands"
module = "testkit.wasm"
function = "state_probe"
key_by = { module = "testkit.wasm", function = "first_word" }

[[sink]]
uid = "out"
input = "probe"
type = "file"
path = "out.txt"

[[sink]]
uid = "timers"
input = "probe"
side_output = "timers"
type = "file"
path = "timers.txt"
"#;

#[test]
fn processing_time_timers_fire_once_per_key_and_time_with_keyed_state() {
    // All commands come in one batch, so the timers are due at P + 30
    // (`a`), P + 10 (`b`, registered twice), P + 20 (`c`, deleted) and P
    // (`d`): by the time `a`'s fires, a `c` timer would have fired too.
    let commands =
        "a value set alpha\na ptimer in 30\nb ptimer twice\nc ptimer cancel\nd value set delta\nd ptimer in 0\n";
    let mut expected: Vec<String> = commands.lines().map(|c| format!("{c} -> ok")).collect();
    expected.extend(["ptimer a alpha", "ptimer b none", "ptimer d delta"].map(String::from));
    expected.sort();
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("commands.txt", commands);
        let job = PROCESSING_TIMERS.replace("key_by =", &format!("parallelism = {parallelism}\nkey_by ="));
        let out = crate::harness::run_until_lines(&work, &job, &[("out.txt", expected.len()), ("timers.txt", 3)]);
        assert_eq!(out[0], expected, "parallelism {parallelism}");
        assert_eq!(out[1], ["a", "b", "d"], "parallelism {parallelism}");
    }
}
