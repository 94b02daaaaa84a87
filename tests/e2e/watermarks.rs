//! Watermark strategies beyond the bounded ones: punctuated watermarks that
//! a Wasm function declares after marker records, against an oracle that
//! follows Flink's definitions (a record is late when the window it belongs
//! to has fired, i.e. the watermark has reached the window's last
//! millisecond; windows fire when it does; the end of the input fires the
//! rest).

use std::collections::BTreeMap;

use crate::harness::{Workdir, sorted_lines};
use crate::oracle::Lcg;

const SIZE_MS: i64 = 1_000;

/// A punctuated job: `stamp` sets event time from the second word and the
/// testkit `markers` generator turns `wm <ts> watermark` records into
/// watermarks; per key, 1-second tumbling windows list their records.
const PUNCTUATED: &str = r#"
[job]
batch_size = 100

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
watermarks = { strategy = "punctuated", function = "markers" }

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "tumbling", size_ms = 1000 }
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

/// Records of five keys whose event time advances about 20 ms a record with
/// up to 1.5 s of disorder; every 37th record is a marker declaring a
/// watermark 500 ms behind the progress (some markers go backwards, which
/// must change nothing).
fn punctuated_input() -> String {
    let mut rng = Lcg::new(7);
    let mut out = String::new();
    for i in 0..4_000i64 {
        let progress = i * 20;
        if i % 37 == 36 {
            let declared = progress - 500 - if i % 5 == 0 { 3_000 } else { 0 };
            out.push_str(&format!("wm {declared} watermark\n"));
        } else {
            let ts = progress - rng.below(1_500) as i64;
            out.push_str(&format!("k{} {ts} r{i}\n", rng.below(5)));
        }
    }
    out
}

/// The window results and the late records, computed record by record.
fn punctuated_oracle(input: &str) -> (Vec<String>, Vec<String>) {
    let mut watermark = i64::MIN;
    let mut windows: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    let mut late = Vec::new();
    let mut results = Vec::new();
    for line in input.lines() {
        let mut words = line.split(' ');
        let key = words.next().expect("key").to_string();
        let ts: i64 = words.next().expect("ts").parse().expect("ts");
        let start = ts.div_euclid(SIZE_MS) * SIZE_MS;
        if start + SIZE_MS - 1 <= watermark {
            late.push(line.to_string());
        } else {
            windows.entry((key, start)).or_default().push(line.to_string());
        }
        // The marker itself is a record too (key `wm`), then its watermark.
        if line.ends_with(" watermark") && ts > watermark {
            watermark = ts;
            let due: Vec<(String, i64)> = windows
                .keys()
                .filter(|(_, start)| start + SIZE_MS - 1 <= watermark)
                .cloned()
                .collect();
            for window in due {
                let texts = windows.remove(&window).expect("due window");
                results.push(result_line(&window, texts));
            }
        }
    }
    for (window, texts) in windows {
        results.push(result_line(&window, texts));
    }
    results.sort();
    late.sort();
    (results, late)
}

fn result_line((key, start): &(String, i64), mut texts: Vec<String>) -> String {
    texts.sort();
    format!("{key},{start},{},{}", start + SIZE_MS, texts.join("|"))
}

#[test]
fn punctuated_watermarks_fire_windows_exactly_where_the_markers_say() {
    let input = punctuated_input();
    let (expected, expected_late) = punctuated_oracle(&input);
    assert!(expected_late.len() > 50, "the input has late records");
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", &input);
        let finished = work.run_ok(PUNCTUATED, &["--parallelism", parallelism]);
        assert_eq!(
            sorted_lines(&work.read("out.txt")),
            expected,
            "parallelism {parallelism}"
        );
        assert_eq!(
            sorted_lines(&work.read("late.txt")),
            expected_late,
            "parallelism {parallelism}"
        );
        assert!(
            finished.stderr.contains(&format!("late {}", expected_late.len())),
            "{}",
            finished.stderr
        );
    }
}

#[test]
fn punctuated_watermark_misconfigurations_are_refused_with_the_field() {
    let work = Workdir::new();
    // (job, the text on the line the error points at, the message)
    let cases = [
        (
            PUNCTUATED.replace(", function = \"markers\"", ""),
            "watermarks =",
            "`stamp` → watermarks → function: a punctuated strategy needs `function`, a watermark generator",
        ),
        (
            PUNCTUATED.replace("function = \"markers\"", "function = \"identity\""),
            "watermarks =",
            "`stamp` → watermarks → function: expected a watermark generator, found `identity`, a map function",
        ),
        (
            PUNCTUATED.replace(
                "strategy = \"punctuated\", function = \"markers\"",
                "strategy = \"monotonous\", function = \"markers\"",
            ),
            "watermarks =",
            "`stamp` → watermarks → function: only a punctuated strategy has a watermark generator function",
        ),
        (
            PUNCTUATED.replace("function = \"stamp\"", "function = \"markers\""),
            "function = \"markers\"\nparallelism",
            "operator `stamp` → function: `markers` is a watermark generator; use it in `watermarks = { strategy = \"punctuated\", function = ... }`, not as an operator",
        ),
    ];
    for (job, at, message) in cases {
        let line = job[..job.find(at).expect("the marked text")].lines().count() + 1;
        let finished = work.weir("validate", &job, &[]);
        assert!(!finished.success, "{message}");
        let expected = format!("job.toml:{line}: {message}");
        assert!(
            finished.stderr.contains(&expected),
            "expected {expected}\n{}",
            finished.stderr
        );
    }
}

/// Two source subtasks follow a folder of two files; one file is empty, so
/// its subtask stays quiet and the job never ends. The stamps declare
/// themselves idle after 300 ms without records.
const IDLE: &str = r#"
[job]
batch_size = 100

[[source]]
uid = "lines"
type = "file"
path = "in"
follow = true
parallelism = 2

[[operator]]
uid = "stamp"
input = "lines"
module = "testkit.wasm"
function = "stamp"
parallelism = 2
watermarks = { strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 500, interval_ms = 0, idle_timeout_ms = 300 }

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "tumbling", size_ms = 1000 }
parallelism = 1

[[sink]]
uid = "out"
input = "win"
type = "file"
path = "out.txt"
"#;

#[test]
fn a_quiet_partition_goes_idle_and_does_not_hold_the_windows_back() {
    // Records of three keys, about 10 ms apart in event time, never more
    // than 400 ms out of order: none is late whatever the timing, so the
    // windows that fire are exactly those the final watermark closes.
    let mut rng = Lcg::new(11);
    let mut input = String::new();
    let mut max_ts = i64::MIN;
    for i in 0..2_000i64 {
        let ts = i * 10 - rng.below(400) as i64;
        max_ts = max_ts.max(ts);
        input.push_str(&format!("k{} {ts} r{i}\n", rng.below(3)));
    }
    let watermark = max_ts - 500 - 1;
    let mut windows: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for line in input.lines() {
        let mut words = line.split(' ');
        let key = words.next().expect("key").to_string();
        let ts: i64 = words.next().expect("ts").parse().expect("ts");
        windows
            .entry((key, ts.div_euclid(SIZE_MS) * SIZE_MS))
            .or_default()
            .push(line.to_string());
    }
    let mut expected: Vec<String> = windows
        .into_iter()
        .filter(|((_, start), _)| start + SIZE_MS - 1 <= watermark)
        .map(|(window, texts)| result_line(&window, texts))
        .collect();
    expected.sort();
    assert!(expected.len() > 30, "most windows close");

    let work = Workdir::new();
    std::fs::create_dir(work.path("in")).expect("mkdir");
    work.write("in/a.txt", &input);
    work.write("in/b.txt", "");
    // The job never ends (its sources follow their files).
    let out = crate::harness::run_until_lines(&work, IDLE, &[("out.txt", expected.len())]).remove(0);
    assert_eq!(out, expected);
}
