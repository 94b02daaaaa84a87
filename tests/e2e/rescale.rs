//! Rescaling across savepoints: a job counting passings per camera
//! (wordcount's `count`, keyed by camera) runs with the generator and the
//! count at parallelism 2, is stopped with a savepoint, resumes at
//! parallelism 1, is stopped again and resumes at parallelism 3 to the end
//! of its input (its
//! first attempt trapping, so it also restarts from a checkpoint taken at
//! the new parallelism). Key groups move between subtasks at each step, and
//! the generator's splits (one per original subtask, with its position)
//! between source subtasks; the union of the committed output must equal
//! the oracle of the whole input:
//! every `camera,k` for `k` from 1 to the camera's number of passings, once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{Workdir, sorted_lines, start, wait_success, weir_in};

const EVENTS: u64 = 6_000;
const CAMERAS: u32 = 9;

/// The job: generator → parse → per-camera count (at `parallelism`) →
/// files; the trap fails the first attempt at about one record in `modulus`.
fn job(name: &str, backend: &str, parallelism: u32, extra: &str, modulus: u64) -> String {
    format!(
        r#"
[job]
name = "{name}"
dead_letter = "dead.jsonl"
state_backend = "{backend}"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[restart]
strategy = "fixed-delay"
attempts = 100
delay_ms = 0

[[source]]
uid = "passings"
type = "generator"
events = {EVENTS}
cameras = {CAMERAS}
seed = 11
parallelism = {parallelism}
{extra}

[[operator]]
uid = "traps"
input = "passings"
module = "testkit.wasm"
function = "trap_on_first_attempt"
parallelism = 1
params = {{ modulus = "{modulus}" }}

[[operator]]
uid = "parse"
input = "traps"
module = "traffic.wasm"
function = "parse"
parallelism = 1

[[operator]]
uid = "count"
input = "parse"
module = "wordcount.wasm"
function = "count"
parallelism = {parallelism}
key_by = {{ module = "traffic.wasm", function = "camera" }}

[[sink]]
uid = "out"
input = "count"
type = "files"
path = "out"
"#
    )
}

/// The generator's input, written by a job with no operator at all.
fn input(work: &Workdir) -> String {
    work.write(
        "input.toml",
        format!(
            "[job]\nname = \"input\"\n\n[[source]]\nuid = \"passings\"\ntype = \"generator\"\nevents = {EVENTS}\ncameras = {CAMERAS}\nseed = 11\nparallelism = 1\n\n[[sink]]\nuid = \"csv\"\ninput = \"passings\"\ntype = \"file\"\npath = \"input.csv\"\n"
        ),
    );
    let finished = weir_in(work, &["run", "--quiet", "input.toml"]);
    assert!(finished.success, "{}", finished.stderr);
    work.read("input.csv")
}

/// The oracle: `camera,k` for every `k` from 1 to the camera's passings.
fn oracle(csv: &str) -> Vec<String> {
    let mut per_camera: BTreeMap<&str, u64> = BTreeMap::new();
    for line in csv.lines() {
        let camera = line.split(',').nth(1).expect("a camera field");
        *per_camera.entry(camera).or_default() += 1;
    }
    assert_eq!(per_camera.values().sum::<u64>(), EVENTS);
    let mut lines: Vec<String> = per_camera
        .iter()
        .flat_map(|(camera, n)| (1..=*n).map(move |k| format!("{camera},{k}")))
        .collect();
    lines.sort();
    lines
}

/// The committed lines of the `files` sink in `work/out`.
fn committed(work: &Workdir) -> Vec<String> {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(work.path("out")) {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                text.push_str(&std::fs::read_to_string(entry.path()).expect("read a part file"));
            }
        }
    }
    sorted_lines(&text)
}

/// Waits until the running job `name` has committed more than `already`
/// lines, then stops it with a savepoint and returns the savepoint.
fn stop_after_progress(work: &Workdir, name: &str, mut child: Child, already: usize) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let list = weir_in(work, &["list"]);
        assert!(list.success, "weir list failed: {}", list.stderr);
        let id = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(name))
            .and_then(|line| line.split_whitespace().next().map(str::to_string));
        if let Some(id) = id
            && committed(work).len() > already
        {
            break id;
        }
        assert!(Instant::now() < deadline, "job `{name}` made no progress");
        if child.try_wait().expect("polls").is_some() {
            panic!("job `{name}` ended early:\n{}", wait_success(child));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stop = weir_in(work, &["stop", "--savepoint", "savepoints", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    wait_success(child);
    PathBuf::from(stop.stdout.trim())
}

/// The canonical keyed-state files of a savepoint: one per keyed subtask.
fn keyed_files(savepoint: &Path) -> usize {
    std::fs::read_dir(savepoint.join("files"))
        .expect("a files folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".keyed"))
        .count()
}

/// Parallelism 2 → 1 → 3 on `first`, `second` and `third` backends.
fn rescale(name: &str, first: &str, second: &str, third: &str) {
    let work = Workdir::new();
    let expected = oracle(&input(&work));

    work.write("job.toml", job(name, first, 2, "events_per_second = 400", 1 << 62));
    let savepoint = stop_after_progress(&work, name, start(&work, &[]), 0);
    assert_eq!(keyed_files(&savepoint), 2, "{savepoint:?}");
    let before = committed(&work);
    assert!(before.len() < expected.len(), "the first stop came after the end");

    work.write("job.toml", job(name, second, 1, "events_per_second = 400", 1 << 62));
    let sp = savepoint.to_str().expect("a UTF-8 path");
    let savepoint = stop_after_progress(&work, name, start(&work, &["--from-savepoint", sp]), before.len());
    assert_eq!(keyed_files(&savepoint), 1, "{savepoint:?}");
    let middle = committed(&work);
    assert!(middle.len() < expected.len(), "the second stop came after the end");
    assert!(
        middle.iter().all(|line| expected.binary_search(line).is_ok()),
        "counts went wrong at parallelism 1"
    );

    work.write("job.toml", job(name, third, 3, "", 300));
    let sp = savepoint.to_str().expect("a UTF-8 path");
    let stderr = wait_success(start(&work, &["--from-savepoint", sp]));
    assert!(
        stderr.contains("restarts: 1\n"),
        "the trap should have fired once:\n{stderr}"
    );
    assert_eq!(committed(&work), expected, "nothing lost, nothing twice");
}

#[test]
fn keyed_state_rescales_from_2_to_1_to_3_on_heap() {
    rescale("rescale-heap", "heap", "heap", "heap");
}

#[test]
fn keyed_state_rescales_from_2_to_1_to_3_on_rocksdb_and_across_backends() {
    rescale("rescale-rocks", "rocksdb", "rocksdb", "heap");
    rescale("rescale-rocks2", "heap", "rocksdb", "rocksdb");
}
