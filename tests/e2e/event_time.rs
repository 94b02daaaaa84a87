//! Event time: watermarks from a bounded-out-of-orderness strategy drive
//! keyed event-time timers (traffic Q3, silent cameras), against an oracle
//! that follows Flink's definitions: the watermark is the largest timestamp
//! seen minus the bound minus one, emitted after every batch here; a timer
//! fires once the watermark reaches it; at the end of the input every timer
//! fires.

use std::collections::{BTreeMap, HashMap};

use crate::harness::{Workdir, sorted_lines, workspace};
use crate::oracle::Lcg;

const BATCH: usize = 1000;
const BOUND_MS: i64 = 5_000;
const SILENCE_MS: i64 = 30 * 60_000;

/// Passings of 40 cameras over about two hours; cameras 7 and 13 fall
/// silent for a while; some passings are dirty (10 minutes old); one is
/// stamped 40 minutes in the future.
fn input() -> String {
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

/// Q3 as the job computes it, batch by batch.
fn oracle(csv: &str) -> Vec<String> {
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
    for chunk in lines.chunks(BATCH) {
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
    let expected = oracle(&csv);
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
        .replace("[params]", &format!("batch_size = {BATCH}\n\n[params]"));
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

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
