//! What a running job shows of itself beyond its counters: backpressure
//! graded per vertex, the checkpoint history, the failures that made it
//! restart, and logs that name job, uid and subtask.
//!
//! The slow sink is real: a `stdout` sink whose pipe the test reads slowly,
//! so its writes block and the vertex feeding it waits on a full channel.

use std::io::Read as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Workdir, command, sorted_lines, wait_success};
use crate::http::{Job, get_json};

/// Two independent pipelines: `fast -> relay -> slow` (a stdout sink the
/// test drains slowly) and `calm -> calm-relay -> calm-out` (a file).
const TWO_PIPELINES: &str = r#"
[job]
name = "backpressure"

[[source]]
uid = "fast"
type = "generator"
events_per_second = 50000
parallelism = 1

[[operator]]
uid = "relay"
input = "fast"
module = "testkit.wasm"
function = "identity"
parallelism = 1

[[sink]]
uid = "slow"
input = "relay"
type = "stdout"

[[source]]
uid = "calm"
type = "generator"
events_per_second = 50
seed = 9
parallelism = 1

[[operator]]
uid = "calm-relay"
input = "calm"
module = "testkit.wasm"
function = "identity"
parallelism = 1

[[sink]]
uid = "calm-out"
input = "calm-relay"
type = "file"
path = "calm.csv"
"#;

/// The backpressure level of vertex `uid` (the highest of its subtasks).
fn backpressure(address: SocketAddr, id: &str, uid: &str) -> String {
    let (status, vertex) = get_json(address, &format!("/jobs/{id}/vertices/{uid}"));
    assert_eq!(status, 200, "{vertex}");
    vertex["backpressure"].as_str().expect("a level").to_string()
}

#[test]
fn backpressure_is_high_before_a_slow_sink_and_ok_elsewhere() {
    let work = Workdir::new();
    work.write("job.toml", TWO_PIPELINES);
    let mut child = command(&work)
        .args(["run", "--quiet", "job.toml", "--http", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut stdout = child.stdout.take().expect("a stdout pipe");
    // Drain the sink's pipe at about 20 KB/s: far below what the source makes.
    let drain = std::thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        while let Ok(read) = stdout.read(&mut buffer) {
            if read == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut job = Job::attach(&work, child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let relay = backpressure(job.address, &job.id, "relay");
        if relay == "high" {
            // At the same moment, the sink itself and the other pipeline
            // wait on nothing downstream.
            for calm in ["slow", "calm", "calm-relay", "calm-out"] {
                assert_eq!(backpressure(job.address, &job.id, calm), "ok", "{calm}");
            }
            break;
        }
        job.assert_running();
        assert!(Instant::now() < deadline, "relay never became backpressured: {relay}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The job view grades vertices the same way, and the series says why.
    let (_, details) = get_json(job.address, &format!("/jobs/{}", job.id));
    let level = |uid: &str| {
        details["vertices"]
            .as_array()
            .expect("vertices")
            .iter()
            .find(|v| v["uid"] == uid)
            .map(|v| v["metrics"]["backpressure"].clone())
    };
    assert_eq!(level("calm-out"), Some("ok".into()), "{details}");
    let (_, relay) = get_json(job.address, &format!("/jobs/{}/vertices/relay", job.id));
    let waited = relay["subtasks"][0]["backpressured_ms_per_second"]
        .as_f64()
        .expect("a rate");
    assert!(waited > 100.0, "{relay}");
    drop(job);
    let _ = drain.join();
}

/// A followed file through a function that traps once on its first
/// attempt, with checkpoints every 50 ms.
const TRAP_ONCE: &str = r#"
[job]
name = "history"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[restart]
strategy = "fixed-delay"
attempts = 3
delay_ms = 0

[[source]]
uid = "lines"
type = "file"
path = "input.txt"
follow = true
parallelism = 1

[[operator]]
uid = "trap"
input = "lines"
module = "testkit.wasm"
function = "trap_on_first_attempt"
params = { modulus = "1" }
parallelism = 2

[[sink]]
uid = "out"
input = "trap"
type = "files"
path = "out"
"#;

#[test]
fn the_checkpoint_history_and_the_exception_log_show_what_happened() {
    let work = Workdir::new();
    work.write("input.txt", "");
    let mut job = Job::start_job(&work, TRAP_ONCE, &[]);
    // Let some checkpoints complete, then send the record that traps.
    let deadline = Instant::now() + Duration::from_secs(120);
    let history = loop {
        let (status, checkpoints) = get_json(job.address, &format!("/jobs/{}/checkpoints", job.id));
        assert_eq!(status, 200);
        if checkpoints["counts"]["completed"].as_u64().is_some_and(|n| n >= 3) {
            break checkpoints;
        }
        job.assert_running();
        assert!(Instant::now() < deadline, "no checkpoints: {checkpoints}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let newest = &history["history"][0];
    assert_eq!(newest["status"], "COMPLETED", "{history}");
    assert_eq!(newest["is_savepoint"], false);
    assert_eq!(
        newest["acknowledged"],
        serde_json::json!({ "lines": 1, "trap": 2, "out": 1 }),
        "every subtask acknowledged"
    );
    let ids: Vec<u64> = history["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|c| c["id"].as_u64().expect("an id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    work.write("input.txt", "first\n");
    let deadline = Instant::now() + Duration::from_secs(120);
    let exceptions = loop {
        let (_, exceptions) = get_json(job.address, &format!("/jobs/{}/exceptions", job.id));
        if exceptions["total"] == 1 {
            break exceptions;
        }
        job.assert_running();
        assert!(Instant::now() < deadline, "no failure recorded: {exceptions}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let failure = &exceptions["exceptions"][0];
    assert_eq!(failure["attempt"], 0, "{failure}");
    assert_eq!(failure["operator"], "trap", "{failure}");
    assert!(
        failure["module"]
            .as_str()
            .is_some_and(|m| m.starts_with("testkit@0.1.0 (")),
        "{failure}"
    );
    assert_eq!(failure["restarted"], true, "{failure}");
    assert!(
        failure["cause"]
            .as_str()
            .is_some_and(|c| c.contains("trap injected by the test at first")),
        "{failure}"
    );
    assert_eq!(
        failure["position"], "at input record 1 (record 0 of a batch of 1)",
        "{failure}"
    );
    // The restarted attempt passes the record on.
    let deadline = Instant::now() + Duration::from_secs(120);
    while crate::harness::committed_in_order(&work.path("out")) != ["first"] {
        job.assert_running();
        assert!(Instant::now() < deadline, "the record never came out");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, metrics) = crate::http::request_text(job.address, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_job_num_restarts_total{") && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[test]
fn json_logs_name_the_job_uid_and_subtask_of_every_subtask_line() {
    let work = Workdir::new();
    work.write("input.txt", "a\nb\n");
    work.write(
        "job.toml",
        r#"
[job]
name = "logged"

[[source]]
uid = "lines"
type = "file"
path = "input.txt"
parallelism = 1

[[operator]]
uid = "copy"
input = "lines"
module = "testkit.wasm"
function = "identity"
parallelism = 2

[[sink]]
uid = "out"
input = "copy"
type = "file"
path = "out.txt"
"#,
    );
    let child = command(&work)
        .args(["--log", "debug", "--log-format", "json", "run", "--quiet", "job.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let stderr = wait_success(child);
    assert_eq!(sorted_lines(&work.read("out.txt")), ["a", "b"]);
    let mut started = Vec::new();
    for line in stderr.lines() {
        // The CLI's own messages (the summary table) are not log lines;
        // a text log line would start with its timestamp.
        if !line.starts_with('{') {
            assert!(
                !line.starts_with(|c: char| c.is_ascii_digit()),
                "a text log line: {line}"
            );
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if json["fields"]["message"] == "subtask started (attempt 0)" {
            let span = &json["span"];
            assert_eq!(span["job"], "logged", "{line}");
            started.push((
                span["uid"].as_str().expect("a uid").to_string(),
                span["subtask"].as_u64().expect("an index"),
            ));
        }
    }
    started.sort();
    assert_eq!(
        started,
        [
            ("copy".to_string(), 0),
            ("copy".to_string(), 1),
            ("lines".to_string(), 0),
            ("out".to_string(), 0)
        ]
    );
}
