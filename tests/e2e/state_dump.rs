//! `weir state dump`: a word count over a followed file runs until every
//! count is committed and is stopped with a savepoint; the dump of its
//! `count` state must list every word once, with its key group (the key's
//! xxh3 hash modulo the 128 key groups, computed here), the word and its
//! count, decoded by wordcount's `state-codec` (it declares `count` as a
//! `u64`), sorted by key group and key. Without the module, values fall
//! back to text (postcard's one-byte varints), and a note says which files
//! were tried. Unknown uids and states get exact errors.
//!
//! A module whose name has hyphens (`counter-v1`) is found under the file
//! name cargo gives it (`counter_v1.wasm`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Finished, Workdir, command, sorted_lines, weir, weir_in};

const TEXT: &str = "apple banana apple\ncherry banana apple\ndurian café\n";

const JOB: &str = r#"
[job]
name = "dump"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[[source]]
uid = "lines"
type = "file"
path = "words.txt"
follow = true
parallelism = 1

[[operator]]
uid = "tokenize"
input = "lines"
module = "wordcount.wasm"
function = "tokenize"
parallelism = 1

[[operator]]
uid = "count"
input = "tokenize"
module = "wordcount.wasm"
function = "count"
parallelism = 2
key_by = { module = "wordcount.wasm", function = "word" }

[[sink]]
uid = "out"
input = "count"
type = "files"
path = "out"
"#;

fn committed(work: &Workdir) -> usize {
    let mut lines = 0;
    if let Ok(entries) = std::fs::read_dir(work.path("out")) {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                lines += sorted_lines(&std::fs::read_to_string(entry.path()).expect("a part file")).len();
            }
        }
    }
    lines
}

/// Runs `job` (named `dump`) on `input` until `lines` output lines are
/// committed, stops it with a savepoint and returns the savepoint.
fn savepoint(work: &Workdir, job: &str, input: (&str, &str), lines: usize) -> PathBuf {
    work.write(input.0, input.1);
    work.write("job.toml", job);
    let mut child = command(work)
        .args(["run", "--quiet", "job.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let list = weir_in(work, &["list"]);
        let id = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some("dump"))
            .and_then(|line| line.split_whitespace().next().map(str::to_string));
        if let Some(id) = id
            && committed(work) == lines
        {
            break id;
        }
        assert!(Instant::now() < deadline, "the counts were never all committed");
        assert!(child.try_wait().expect("polls").is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stop = weir_in(work, &["stop", "--savepoint", "savepoints", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    let output = child.wait_with_output().expect("weir ends");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(stop.stdout.trim())
}

/// The expected dump: `value` renders a count.
fn oracle(value: impl Fn(u64) -> String) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for word in TEXT.split_whitespace() {
        *counts.entry(word).or_default() += 1;
    }
    let mut rows: Vec<(u64, &str, u64)> = counts
        .into_iter()
        .map(|(word, n)| (xxhash_rust::xxh3::xxh3_64(word.as_bytes()) % 128, word, n))
        .collect();
    rows.sort();
    rows.into_iter()
        .map(|(group, word, n)| {
            format!(
                "{{\"key_group\":{group},\"key\":\"{word}\",\"user_key\":null,\"value\":{}}}\n",
                value(n)
            )
        })
        .collect()
}

#[test]
fn state_dump_prints_decoded_entries_and_refuses_unknown_uids_and_states() {
    let work = Workdir::new();
    let sp = savepoint(&work, JOB, ("words.txt", TEXT), TEXT.split_whitespace().count());
    let sp_text = sp.to_str().expect("a UTF-8 path");

    // Decoded by the module the savepoint names (found in the module path).
    let dumped = weir_in(&work, &["state", "dump", sp_text, "--uid", "count", "--state", "count"]);
    assert!(dumped.success, "{}", dumped.stderr);
    assert_eq!(dumped.stdout, oracle(|n| n.to_string()));

    // Without the module (an empty module path, another folder): text.
    let empty = work.path("empty");
    std::fs::create_dir_all(&empty).expect("file system");
    let raw: Finished = weir()
        .current_dir(&empty)
        .env("WEIR_MODULE_PATH", &empty)
        .args(["state", "dump", sp_text, "--uid", "count", "--state", "count"])
        .output()
        .expect("weir runs")
        .into();
    assert!(raw.success, "{}", raw.stderr);
    assert_eq!(raw.stdout, oracle(|n| format!("\"\\u{n:04x}\"")));
    assert_eq!(
        raw.stderr,
        format!(
            "note: module wordcount 0.1.0 of the savepoint not found, so its state is shown undecoded (pass --module \
             FILE); tried: ./wordcount.wasm (missing), {}/wordcount.wasm (missing)\n",
            empty.display()
        )
    );

    let unknown_uid = weir_in(&work, &["state", "dump", sp_text, "--uid", "nope", "--state", "count"]);
    assert!(!unknown_uid.success);
    assert_eq!(
        unknown_uid.stderr,
        format!(
            "error: savepoint {sp_text} has no keyed state for operator uid `nope`; it has keyed state for: `count`\n"
        )
    );
    let unknown_state = weir_in(&work, &["state", "dump", sp_text, "--uid", "count", "--state", "sum"]);
    assert!(!unknown_state.success);
    assert_eq!(
        unknown_state.stderr,
        format!("error: operator `count` in savepoint {sp_text} has no state `sum`; its states: `count` (value)\n")
    );
    let not_a_savepoint = weir_in(&work, &["state", "dump", "out", "--uid", "count", "--state", "count"]);
    assert_eq!(
        not_a_savepoint.stderr,
        "error: out is not a savepoint (it has no readable `_savepoint` manifest)\n"
    );
}

/// A per-key counter (`counter-v1`: its module's name has a hyphen, its file
/// an underscore) over a followed file.
const COUNTER_JOB: &str = r#"
[job]
name = "dump"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[[source]]
uid = "lines"
type = "file"
path = "in.csv"
follow = true
parallelism = 1

[[operator]]
uid = "count"
input = "lines"
module = "counter_v1.wasm"
function = "count"
parallelism = 2
key_by = { module = "counter_v1.wasm", function = "key" }

[[sink]]
uid = "out"
input = "count"
type = "files"
path = "out"
"#;

const COUNTER_INPUT: &str = "a,1\nb,2\na,3\nc,4\na,5\nb,6\n";

#[test]
fn state_dump_finds_a_module_whose_name_has_hyphens_and_says_what_it_tried() {
    let work = Workdir::new();
    let sp = savepoint(
        &work,
        COUNTER_JOB,
        ("in.csv", COUNTER_INPUT),
        COUNTER_INPUT.lines().count(),
    );
    let sp_text = sp.to_str().expect("a UTF-8 path");
    // The oracle: each key's count (a `u32`, postcard: one varint byte, shown
    // as text since counter-v1 has no state codec), by key group and key.
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for line in COUNTER_INPUT.lines() {
        *counts.entry(line.split(',').next().expect("a key")).or_default() += 1;
    }
    let mut rows: Vec<(u64, &str, u32)> = counts
        .into_iter()
        .map(|(key, n)| (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % 128, key, n))
        .collect();
    rows.sort();
    let expected: String = rows
        .into_iter()
        .map(|(group, key, n)| {
            format!("{{\"key_group\":{group},\"key\":\"{key}\",\"user_key\":null,\"value\":\"\\u{n:04x}\"}}\n")
        })
        .collect();

    // Found as counter_v1.wasm in the module path: no note.
    let dumped = weir_in(&work, &["state", "dump", sp_text, "--uid", "count", "--state", "count"]);
    assert!(dumped.success, "{}", dumped.stderr);
    assert_eq!(dumped.stdout, expected);
    assert_eq!(dumped.stderr, "");

    // Not found: both spellings were tried, in each folder of the module
    // path; a file of that name holding another module is not taken.
    let elsewhere = work.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("file system");
    std::fs::copy(crate::harness::module("counter_v2"), elsewhere.join("counter_v1.wasm")).expect("copy a module");
    let raw: Finished = weir()
        .current_dir(&elsewhere)
        .env("WEIR_MODULE_PATH", &elsewhere)
        .args(["state", "dump", sp_text, "--uid", "count", "--state", "count"])
        .output()
        .expect("weir runs")
        .into();
    assert!(raw.success, "{}", raw.stderr);
    assert_eq!(raw.stdout, expected);
    let dir = elsewhere.display();
    assert_eq!(
        raw.stderr,
        format!(
            "note: module counter-v1 0.1.0 of the savepoint not found, so its state is shown undecoded (pass \
             --module FILE); tried: ./counter-v1.wasm (missing), ./counter_v1.wasm (another module), \
             {dir}/counter-v1.wasm (missing), {dir}/counter_v1.wasm (another module)\n"
        )
    );
}
