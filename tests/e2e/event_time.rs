//! Event time: watermarks from a bounded-out-of-orderness strategy drive
//! keyed event-time timers (traffic Q3, silent cameras), against an oracle
//! that follows Flink's definitions: the watermark is the largest timestamp
//! seen minus the bound minus one, emitted after every batch here; a timer
//! fires once the watermark reaches it; at the end of the input every timer
//! fires.

use std::collections::{BTreeMap, HashMap};

use crate::harness::{Workdir, sorted_lines, thousands, workspace};
use crate::oracle::Lcg;

const BATCH: usize = 1000;
const BOUND_MS: i64 = 5_000;
const SILENCE_MS: i64 = 30 * 60_000;

/// Passings of 40 cameras over about two hours; cameras 7 and 13 fall
/// silent for a while; some passings are dirty (10 minutes old); one is
/// stamped 40 minutes in the future.
pub(crate) fn input() -> String {
    let mut rng = Lcg::new(99);
    let start = 1_767_225_600_000i64;
    let mut out = String::new();
    for i in 0..20_000i64 {
        let mut ts = start + i * 400 - rng.below(3_000) as i64;
        let mut camera = rng.below(40);
        let minute = (i * 400) / 60_000;
        if (camera == 7 && (30..75).contains(&minute)) || (camera == 13 && minute >= 90) {
            camera = 8;
        }
        if rng.below(500) == 0 {
            ts -= 10 * 60_000;
        }
        if i == 12_000 {
            ts += 40 * 60_000;
        }
        out.push_str(&format!(
            "{ts},CAM{camera:04},P{:07},{}\n",
            rng.below(1000),
            20 + rng.below(120)
        ));
    }
    out
}

/// Q3 as the job computes it, batch by batch (`batch` passings each): a
/// timer fires once the watermark (largest timestamp seen - 5 s - 1, after
/// each batch) reaches it; at the end of the input every timer fires.
pub(crate) fn oracle(csv: &str, batch: usize) -> Vec<String> {
    let mut last_seen: HashMap<String, i64> = HashMap::new();
    let mut timers: BTreeMap<(i64, String), ()> = BTreeMap::new();
    let mut alerts = Vec::new();
    let mut max_ts = i64::MIN;
    let mut emitted = i64::MIN;
    let fire = |timers: &mut BTreeMap<(i64, String), ()>,
                last_seen: &HashMap<String, i64>,
                upto: i64,
                alerts: &mut Vec<String>| {
        while let Some(((ts, camera), ())) = timers.pop_first() {
            if ts > upto {
                timers.insert((ts, camera), ());
                break;
            }
            alerts.push(format!("{camera},{},{ts}", last_seen[&camera]));
        }
    };
    let lines: Vec<&str> = csv.lines().collect();
    for chunk in lines.chunks(batch) {
        for line in chunk {
            let fields: Vec<&str> = line.split(',').collect();
            let ts: i64 = fields[0].parse().expect("ts");
            let camera = fields[1].to_string();
            max_ts = max_ts.max(ts);
            let previous = last_seen.get(&camera).copied();
            if previous.is_none_or(|seen| ts > seen) {
                if let Some(seen) = previous {
                    timers.remove(&(seen + SILENCE_MS, camera.clone()));
                }
                last_seen.insert(camera.clone(), ts);
                timers.insert((ts + SILENCE_MS, camera), ());
            }
        }
        let watermark = max_ts - BOUND_MS - 1;
        if watermark > emitted {
            emitted = watermark;
            fire(&mut timers, &last_seen, watermark, &mut alerts);
        }
    }
    fire(&mut timers, &last_seen, i64::MAX, &mut alerts);
    alerts.sort();
    alerts
}

#[test]
fn silent_cameras_match_the_oracle_with_a_future_record_and_dirty_data() {
    let csv = input();
    let expected = oracle(&csv, BATCH);
    // The future record fires silence timers early: cameras alerted before
    // the end whose silence the input later contradicts.
    assert!(expected.len() > 45, "{} alerts", expected.len());
    let example = std::fs::read_to_string(workspace().join("examples/traffic-q3.toml")).expect("example job");
    // Emit a watermark after every batch, with batches of a known size, so
    // that the oracle can follow the job batch by batch.
    let job = example
        .replace("interval_ms = 200", "interval_ms = 0")
        .replace("[params]", &format!("batch_size = {BATCH}\n\n[params]"));
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("passings.csv", &csv);
        work.run_ok(
            &job,
            &[
                "-p",
                "input=passings.csv",
                "-p",
                "output=silent.csv",
                "--parallelism",
                parallelism,
            ],
        );
        assert_eq!(
            sorted_lines(&work.read("silent.csv")),
            expected,
            "parallelism {parallelism}"
        );
    }
}

/// Q1 input: 50 cameras, 10 ms apart, jittered up to 4 s; 0.5 % of passings
/// are dirty (5 to 10 minutes old); one is stamped 3 minutes in the future.
fn q1_input() -> String {
    let mut rng = Lcg::new(7);
    let start = 1_767_225_600_000i64;
    let mut out = String::new();
    for i in 0..100_000i64 {
        let mut ts = start + i * 10 - rng.below(4_000) as i64;
        if rng.below(200) == 0 {
            ts -= 300_000 + rng.below(300_000) as i64;
        }
        if i == 50_000 {
            ts += 180_000;
        }
        let camera = rng.below(50);
        out.push_str(&format!(
            "{ts},CAM{camera:04},P{:07},{}\n",
            rng.below(1000),
            20 + rng.below(120)
        ));
    }
    out
}

/// Q1 as Flink defines it, batch by batch: a passing is late when the
/// watermark (largest timestamp of earlier batches - 5 s - 1) has reached
/// the end of its window; the other passings are counted in their window.
fn q1_oracle(csv: &str) -> (Vec<String>, u64) {
    let mut windows: BTreeMap<(String, i64), (u64, u64, u64)> = BTreeMap::new();
    let mut late = 0;
    let mut max_ts = i64::MIN;
    let mut watermark = i64::MIN;
    let lines: Vec<&str> = csv.lines().collect();
    for chunk in lines.chunks(BATCH) {
        for line in chunk {
            let fields: Vec<&str> = line.split(',').collect();
            let ts: i64 = fields[0].parse().expect("ts");
            let speed: u64 = fields[3].parse().expect("speed");
            max_ts = max_ts.max(ts);
            let start = ts - ts.rem_euclid(60_000);
            if start + 60_000 - 1 <= watermark {
                late += 1;
                continue;
            }
            let entry = windows.entry((fields[1].to_string(), start)).or_insert((0, 0, 0));
            entry.0 += 1;
            entry.1 += speed;
            entry.2 = entry.2.max(speed);
        }
        watermark = watermark.max(max_ts - BOUND_MS - 1);
    }
    let mut lines: Vec<String> = windows
        .into_iter()
        .map(|((camera, start), (count, sum, max))| format!("{camera},{start},{count},{sum},{max}"))
        .collect();
    lines.sort();
    (lines, late)
}

#[test]
fn flow_per_camera_matches_the_oracle_row_for_row_with_late_data_counted() {
    let csv = q1_input();
    let (expected, late) = q1_oracle(&csv);
    assert!(late > 400, "the input must have late passings: {late}");
    let example = std::fs::read_to_string(workspace().join("examples/traffic-q1.toml")).expect("example job");
    let job = example
        .replace("interval_ms = 200", "interval_ms = 0")
        .replace("batch_size = 16384", &format!("batch_size = {BATCH}"));
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("passings.csv", &csv);
        let finished = work.run_ok(
            &job,
            &[
                "-p",
                "input=passings.csv",
                "-p",
                "output=flow.csv",
                "--parallelism",
                parallelism,
            ],
        );
        assert_eq!(
            sorted_lines(&work.read("flow.csv")),
            expected,
            "parallelism {parallelism}"
        );
        let late_line = format!("late {}", thousands(late));
        assert!(
            finished.stderr.contains(&late_line),
            "missing `{late_line}` in:\n{}",
            finished.stderr
        );
    }
}

/// Sliding windows of 10 ms every 5 ms, 5 ms of allowed lateness, a late
/// side output; a watermark after every record (monotonous strategy,
/// batches of one record).
const SLIDING: &str = r#"
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
watermarks = { strategy = "monotonous", interval_ms = 0 }

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "sliding", size_ms = 10, slide_ms = 5 }
allowed_lateness_ms = 5
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

#[test]
fn sliding_windows_refire_for_late_records_within_the_lateness_and_side_output_the_rest() {
    // Worked out by hand from Flink's definitions (watermark = largest
    // timestamp - 1 after each record):
    // - `a 7` moves the watermark to 6: [-5,5) fires;
    // - `a 12` → 11: [0,10) fires; `a 3` is late for [0,10) but within the
    //   lateness (9 + 5 > 11), so [0,10) is updated and fires again; for
    //   [-5,5) it is too late (4 + 5 <= 11) and is not counted there;
    // - `a 20` → 19: [5,15) fires and [0,10) is cleaned up (9 + 5 <= 19);
    // - `a 2` is too late for both its windows: late side output;
    // - `b 21` → 20: [10,20) of `a` fires; the end of the input fires the rest.
    let input = "a 1 r1\na 7 r2\na 12 r3\na 3 r4\na 20 r5\na 2 r6\nb 21 s1\n";
    let expected = sorted_lines(
        "a,-5,5,a 1 r1\n\
         a,0,10,a 1 r1|a 7 r2\n\
         a,0,10,a 1 r1|a 3 r4|a 7 r2\n\
         a,5,15,a 12 r3|a 7 r2\n\
         a,10,20,a 12 r3\n\
         a,15,25,a 20 r5\n\
         a,20,30,a 20 r5\n\
         b,15,25,b 21 s1\n\
         b,20,30,b 21 s1\n",
    );
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", input);
        let finished = work.run_ok(SLIDING, &["--parallelism", parallelism]);
        assert_eq!(
            sorted_lines(&work.read("out.txt")),
            expected,
            "parallelism {parallelism}"
        );
        assert_eq!(work.read("late.txt"), "a 2 r6\n");
        assert!(finished.stderr.contains("late 1"), "{}", finished.stderr);
    }
}

#[test]
fn window_misconfigurations_are_refused_with_the_field() {
    let work = Workdir::new();
    let no_window = SLIDING.replace("window = { type = \"sliding\", size_ms = 10, slide_ms = 5 }\n", "");
    let finished = work.weir("validate", &no_window, &[]);
    assert!(!finished.success);
    assert!(
        finished.stderr.contains(
            "operator `win` → window: `concat` is a window aggregate: the operator needs `window` (tumbling, sliding or session)"
        ),
        "{}",
        finished.stderr
    );
    let no_slide = SLIDING.replace(", slide_ms = 5", "");
    let finished = work.weir("validate", &no_slide, &[]);
    assert!(!finished.success);
    assert!(
        finished.stderr.contains(
            "operator `win` → window → slide_ms: a sliding window needs `slide_ms` between 1 and its size (10)"
        ),
        "{}",
        finished.stderr
    );
}

/// Session windows (gap 30 ms) over records that arrive out of order by up
/// to 50 ms, with a watermark bound of 100 ms so that no record is late and
/// no session fires before the records that extend or bridge it arrive:
/// sessions then merge exactly as the sorted timestamps say.
pub(crate) const SESSIONS: &str = r#"
[job]
batch_size = 7

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
uid = "sessions"
input = "stamp"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "session", gap_ms = 30 }

[[sink]]
uid = "out"
input = "sessions"
type = "file"
path = "out.txt"
"#;

/// Records of keys `k1`..`k3` (`key ts text`), `per_key` each, with gaps
/// below and above a 30 ms session gap, arriving up to 50 ms out of order;
/// and the oracle: per key, sorted by timestamp, a new session whenever the
/// next record starts after the current session's end (touching merges).
pub(crate) fn sessions(seed: u64, per_key: usize) -> (String, Vec<String>) {
    const GAP: i64 = 30;
    let mut rng = Lcg::new(seed);
    let mut events: Vec<(String, i64, String)> = Vec::new();
    for key in ["k1", "k2", "k3"] {
        let mut ts = 1_000;
        for n in 0..per_key {
            ts += if rng.below(4) == 0 {
                35 + rng.below(40) as i64
            } else {
                rng.below(25) as i64
            };
            events.push((key.to_string(), ts, format!("{key}-{n}")));
        }
    }
    // Arrival order: by timestamp plus up to 50 ms of disorder.
    let mut arrival: Vec<(i64, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.1 + rng.below(50) as i64, i))
        .collect();
    arrival.sort();
    let input: String = arrival
        .iter()
        .map(|(_, i)| format!("{} {} {}\n", events[*i].0, events[*i].1, events[*i].2))
        .collect();
    let mut expected = Vec::new();
    for key in ["k1", "k2", "k3"] {
        let mut mine: Vec<&(String, i64, String)> = events.iter().filter(|e| e.0 == key).collect();
        mine.sort_by_key(|e| e.1);
        let mut session: Vec<&(String, i64, String)> = Vec::new();
        let mut end = i64::MIN;
        for event in mine {
            if !session.is_empty() && event.1 > end {
                expected.push(session_line(key, &session, end));
                session.clear();
            }
            end = if session.is_empty() {
                event.1 + GAP
            } else {
                end.max(event.1 + GAP)
            };
            session.push(event);
        }
        expected.push(session_line(key, &session, end));
    }
    expected.sort();
    (input, expected)
}

#[test]
fn session_windows_merge_out_of_order_records_like_the_sorted_oracle() {
    let (input, expected) = sessions(31, 150);
    assert!(expected.len() > 60, "{} sessions", expected.len());

    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", &input);
        work.run_ok(SESSIONS, &["--parallelism", parallelism]);
        assert_eq!(
            sorted_lines(&work.read("out.txt")),
            expected,
            "parallelism {parallelism}"
        );
    }
}

fn session_line(key: &str, session: &[&(String, i64, String)], end: i64) -> String {
    let mut texts: Vec<String> = session.iter().map(|e| format!("{} {} {}", e.0, e.1, e.2)).collect();
    texts.sort();
    format!("{key},{},{end},{}", session[0].1, texts.join("|"))
}

#[test]
fn windows_without_key_by_cover_the_whole_stream_in_one_subtask() {
    let all = SLIDING
        .replace(
            "key_by = { module = \"testkit.wasm\", function = \"first_word\" }\n",
            "parallelism = 1\n",
        )
        .replace(
            "window = { type = \"sliding\", size_ms = 10, slide_ms = 5 }",
            "window = { type = \"tumbling\", size_ms = 10 }",
        )
        .replace("allowed_lateness_ms = 5\n", "");
    let work = Workdir::new();
    work.write("input.txt", "a 1 x\nb 4 y\na 12 z\nb 2 late\nc 15 w\n");
    work.run_ok(&all, &[]);
    // One window per 10 ms for all keys together (the key is empty); `b 2`
    // arrives after the watermark (11) passed [0,10): late.
    assert_eq!(
        sorted_lines(&work.read("out.txt")),
        vec![",0,10,a 1 x|b 4 y".to_string(), ",10,20,a 12 z|c 15 w".into()]
    );
    assert_eq!(work.read("late.txt"), "b 2 late\n");

    let finished = work.weir(
        "validate",
        &all.replace("parallelism = 1\nwindow", "parallelism = 2\nwindow"),
        &[],
    );
    assert!(!finished.success);
    assert!(
        finished.stderr.contains("operator `win` → parallelism: `concat` windows the whole stream (no `key_by`), which runs as one subtask: set `parallelism = 1` or add `key_by`"),
        "{}",
        finished.stderr
    );
}

#[test]
fn count_windows_fire_every_n_records_of_a_key_purging_or_accumulating() {
    const JOB: &str = r#"
[job]
batch_size = 4

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
window = { type = "global" }
trigger = { type = "count", count = 3, purge = PURGE }

[[sink]]
uid = "out"
input = "win"
type = "file"
path = "out.txt"
"#;
    let mut rng = Lcg::new(5);
    let records: Vec<String> = (0..200).map(|n| format!("k{} {n:03}", rng.below(4))).collect();
    let input: String = records.iter().map(|r| format!("{r}\n")).collect();
    for purge in [true, false] {
        // Oracle: per key, every third record fires the records since the
        // last firing (purging) or since the beginning (accumulating).
        let mut expected = Vec::new();
        let mut seen: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
        for record in &records {
            let key = record.split(' ').next().unwrap_or_default();
            let texts = seen.entry(key).or_default();
            texts.push(record);
            let fired = texts.len().is_multiple_of(3);
            if fired {
                let from = if purge { texts.len() - 3 } else { 0 };
                let mut window: Vec<&str> = texts[from..].to_vec();
                window.sort();
                expected.push(format!("{key},{},{},{}", i64::MIN, i64::MAX, window.join("|")));
            }
        }
        expected.sort();
        let work = Workdir::new();
        work.write("input.txt", &input);
        work.run_ok(&JOB.replace("PURGE", &purge.to_string()), &["--parallelism", "2"]);
        assert_eq!(sorted_lines(&work.read("out.txt")), expected, "purge = {purge}");
    }
    let work = Workdir::new();
    let finished = work.weir(
        "validate",
        &JOB.replace("trigger = { type = \"count\", count = 3, purge = PURGE }\n", ""),
        &[],
    );
    assert!(!finished.success);
    assert!(
        finished.stderr.contains("operator `win` → trigger: a global window never ends, so it needs a trigger that fires it (`trigger = { type = \"count\", count = N }`)"),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_stored_session_the_batch_does_not_touch_does_not_fire_again() {
    // Watermark = timestamp - 1 after each one-record batch; lateness keeps
    // the fired sessions in state while later records arrive.
    let job = SLIDING
        .replace(
            "window = { type = \"sliding\", size_ms = 10, slide_ms = 5 }",
            "window = { type = \"session\", gap_ms = 30 }",
        )
        .replace("allowed_lateness_ms = 5", "allowed_lateness_ms = 200");
    let work = Workdir::new();
    work.write("input.txt", "a 1 r1\na 100 r2\na 150 r3\n");
    work.run_ok(&job, &[]);
    assert_eq!(
        sorted_lines(&work.read("out.txt")),
        ["a,1,31,a 1 r1", "a,100,130,a 100 r2", "a,150,180,a 150 r3"]
    );
}
