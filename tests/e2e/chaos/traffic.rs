//! The chaos cases of word count and the traffic queries, with their
//! inputs and oracles (those of `oracle.rs`, and copies of
//! `event_time.rs`'s, there private to their tests).

use std::collections::BTreeMap;

use super::{Case, trap_modulus};
use crate::harness::Workdir;
use crate::oracle;

/// A file source of passings.
const FILE: &str = "type = \"file\"\npath = \"passings.csv\"";

/// Source (`SOURCE`), traps and `parse` (with a watermark after every
/// batch) of the traffic queries; then the query (`KEYED`).
const TRAFFIC: &str = r#"
[[source]]
uid = "passings"
SOURCE

[[operator]]
uid = "traps"
input = "passings"
module = "testkit.wasm"
function = "trap_on_first_attempt"
parallelism = 1
params = { modulus = "MODULUS" }

[[operator]]
uid = "parse"
input = "traps"
module = "traffic.wasm"
function = "parse"
parallelism = 1
watermarks = { strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 5000, interval_ms = 0 }

[[operator]]
uid = "query"
input = "parse"
module = "traffic.wasm"
KEYED

[[sink]]
uid = "out"
input = "query"
type = "files"
path = "out"
"#;

/// A traffic query over passings `csv` (read from `source`) in batches of
/// `batch` passings, checkpointed every 20 ms.
fn traffic(name: &'static str, source: &str, csv: String, batch: usize, keyed: &str, oracle: Vec<String>) -> Case {
    Case {
        name,
        modulus: trap_modulus(csv.lines()),
        files: vec![("passings.csv", csv)],
        settings: format!("batch_size = {batch}"),
        checkpoint_ms: 20,
        body: TRAFFIC.replace("SOURCE", source).replace("KEYED", keyed),
        outputs: &["out"],
        ordered: false,
        steps: Vec::new(),
        compared: |_| true,
        oracle: vec![oracle],
    }
}

/// Word count, all at parallelism 1: the sink's input is one channel, so
/// the order of the counts is compared too.
pub fn word_count() -> Case {
    let input = oracle::text(30_000, 7);
    let expected = oracle::word_count_lines(&oracle::word_counts(&input));
    Case {
        name: "wordcount",
        modulus: trap_modulus(input.lines()),
        files: vec![("input.txt", input)],
        settings: "batch_size = 16".to_string(),
        checkpoint_ms: 20,
        body: r#"
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
params = { modulus = "MODULUS" }

[[operator]]
uid = "tokenize"
input = "traps"
module = "wordcount.wasm"
function = "tokenize"
parallelism = 1

[[operator]]
uid = "count"
input = "tokenize"
module = "wordcount.wasm"
function = "count"
parallelism = 1
key_by = { module = "wordcount.wasm", function = "word" }

[[sink]]
uid = "out"
input = "count"
type = "files"
path = "out"
"#
        .to_string(),
        outputs: &["out"],
        ordered: true,
        steps: Vec::new(),
        compared: |_| true,
        oracle: vec![expected],
    }
}

/// Q2, cloned plates (keyed value state), at parallelism 2.
pub fn cloned_plates() -> Case {
    let csv = oracle::passings(60_000, 11);
    let expected = oracle::cloned_plates(&csv);
    assert!(expected.len() > 100, "{} alerts", expected.len());
    traffic(
        "q2",
        FILE,
        csv,
        50,
        "function = \"cloned_plates\"\nkey_by = { module = \"traffic.wasm\", function = \"plate\" }",
        expected,
    )
}

/// The watermark's bound on out-of-orderness, ms.
const BOUND_MS: i64 = 5_000;

/// Q1's passings, from the built-in generator: 50 cameras, 10 passings a
/// second of event time (each up to 4 s late), and after the first 11
/// minutes 1 % dirty passings, 5 to 10 minutes old.
const Q1_GENERATOR: &str = "type = \"generator\"\nevents = 40000\nseed = 7\nrate = 10\ncameras = 50\n\
                            plates = 1000\ndirty = 0.01\nparallelism = 1";

/// The passings `generator` (source settings) generates, as CSV: what a
/// job reading them sees.
fn generated(generator: &str) -> String {
    let work = Workdir::new();
    work.run_ok(
        &format!(
            "[job]\nname = \"passings\"\n\n[[source]]\nuid = \"passings\"\n{generator}\n\n\
             [[sink]]\nuid = \"csv\"\ninput = \"passings\"\ntype = \"file\"\npath = \"passings.csv\"\n"
        ),
        &[],
    );
    work.read("passings.csv")
}

/// Q1 as Flink defines it: a passing is late when the watermark (the
/// largest timestamp of the passings before it - 5 s - 1, but for the last
/// `lag` of them, which may share its batch) has reached the end of its
/// window; the other passings are counted in their window. Returns the
/// windows and the number of late passings.
fn q1_oracle(csv: &str, lag: usize) -> (Vec<String>, u64) {
    windows_oracle(csv, lag, 60_000, 60_000)
}

/// [`q1_oracle`] over sliding windows of `size` ms every `slide` ms: a
/// passing goes into each of its windows that has not fired (whose end - 1
/// the watermark has not reached); it is late when all of them have.
fn windows_oracle(csv: &str, lag: usize, size: i64, slide: i64) -> (Vec<String>, u64) {
    let passings: Vec<(i64, &str, u64)> = csv
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (
                fields[0].parse().expect("ts"),
                fields[1],
                fields[3].parse().expect("speed"),
            )
        })
        .collect();
    let mut windows: BTreeMap<(&str, i64), (u64, u64, u64)> = BTreeMap::new();
    let mut late = 0;
    let mut max_ts = i64::MIN;
    for (i, &(ts, camera, speed)) in passings.iter().enumerate() {
        if i >= lag {
            max_ts = max_ts.max(passings[i - lag].0);
        }
        let watermark = max_ts.saturating_sub(BOUND_MS + 1);
        let last_start = ts - ts.rem_euclid(slide);
        let starts = (0..)
            .map(|k| last_start - k * slide)
            .take_while(|start| start + size > ts);
        let mut placed = false;
        for start in starts {
            if start + size - 1 <= watermark {
                continue;
            }
            placed = true;
            let entry = windows.entry((camera, start)).or_insert((0, 0, 0));
            entry.0 += 1;
            entry.1 += speed;
            entry.2 = entry.2.max(speed);
        }
        if !placed {
            late += 1;
        }
    }
    let mut lines: Vec<String> = windows
        .into_iter()
        .map(|((camera, start), (count, sum, max))| format!("{camera},{start},{count},{sum},{max}"))
        .collect();
    lines.sort();
    (lines, late)
}

/// Q1, flow per camera (tumbling windows, an incremental aggregate), over
/// generated passings some of which are late, at parallelism 2, with
/// checkpoints every 100 ms. The generator is throttled so that a run lasts
/// about two seconds; it then cuts its batches by the wall clock, but no
/// passing's lateness depends on where a batch ends (the oracle finds the
/// same late passings with a watermark from all passings before each and
/// with one lagging a whole batch behind), so the output is deterministic.
pub fn flow_per_camera() -> Case {
    const BATCH: usize = 200;
    let csv = generated(Q1_GENERATOR);
    let (expected, late) = q1_oracle(&csv, 1);
    assert!(late > 100, "the input must have late passings: {late}");
    assert_eq!(
        q1_oracle(&csv, BATCH),
        (expected.clone(), late),
        "lateness must not depend on batches"
    );
    let mut case = traffic(
        "q1",
        &format!("{Q1_GENERATOR}\nevents_per_second = 20000"),
        csv,
        BATCH,
        "function = \"flow\"\nkey_by = { module = \"traffic.wasm\", function = \"camera_number\" }\n\
         window = { type = \"tumbling\", size_ms = 60000 }",
        expected,
    );
    case.files.clear();
    case.checkpoint_ms = 100;
    case
}

/// Q1 over sliding windows (1 minute every 20 s): a passing goes into
/// three windows, and a late one into those that have not fired yet.
/// Otherwise as [`flow_per_camera`].
pub fn sliding_flow_per_camera() -> Case {
    const BATCH: usize = 200;
    let csv = generated(Q1_GENERATOR);
    let (expected, late) = windows_oracle(&csv, 1, 60_000, 20_000);
    assert!(late > 50, "the input must have late passings: {late}");
    assert_eq!(
        windows_oracle(&csv, BATCH, 60_000, 20_000),
        (expected.clone(), late),
        "lateness must not depend on batches"
    );
    let mut case = traffic(
        "q1-sliding",
        &format!("{Q1_GENERATOR}\nevents_per_second = 20000"),
        csv,
        BATCH,
        "function = \"flow\"\nkey_by = { module = \"traffic.wasm\", function = \"camera_number\" }\n\
         window = { type = \"sliding\", size_ms = 60000, slide_ms = 20000 }",
        expected,
    );
    case.files.clear();
    case.checkpoint_ms = 100;
    case
}

/// Q3, silent cameras (keyed event-time timers), with a passing from the
/// future and dirty passings, at parallelism 2.
pub fn silent_cameras() -> Case {
    const BATCH: usize = 10;
    let csv = crate::event_time::input();
    let expected = crate::event_time::oracle(&csv, BATCH);
    assert!(expected.len() > 45, "{} alerts", expected.len());
    traffic(
        "q3",
        FILE,
        csv,
        BATCH,
        "function = \"silent_cameras\"\nkey_by = { module = \"traffic.wasm\", function = \"camera_number\" }",
        expected,
    )
}
