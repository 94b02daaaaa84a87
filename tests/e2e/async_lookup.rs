//! Async lookups (`async_map` functions, `[[lookup]]` over HTTP) against an
//! HTTP server the test starts on loopback: ordered output equal to the
//! oracle in input order, unordered output equal as a multiset with no
//! record crossing a watermark, timeouts retried then dead-lettered or
//! failing the task, the capacity bounding the requests in flight, and the
//! records in flight at a checkpoint surviving SIGKILL.

mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use server::{CameraServer, Reply, answer, blocking_server, road};

use crate::harness::{Workdir, command, committed_in_order, sorted_lines, weir, weir_in};

/// `n` passings, one a second, over 20 cameras.
fn passings(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{},CAM{:04},P{:07},{}",
                1_767_225_600_000i64 + i as i64 * 1000,
                i * 7 % 20,
                i,
                50 + i % 70
            )
        })
        .collect()
}

/// The oracle: each passing with its camera's road (`unknown` for none).
fn enriched(passings: &[String]) -> Vec<String> {
    passings
        .iter()
        .map(|line| {
            let camera = line.split(',').nth(1).unwrap_or("");
            format!("{line},{}", road(camera).unwrap_or_else(|| "unknown".into()))
        })
        .collect()
}

/// A job: passings → `enrich` (with `async_settings`) → out.txt.
fn job(server: &CameraServer, async_settings: &str) -> String {
    format!(
        r#"
[job]
name = "enrich"
parallelism = 1
batch_size = 16
dead_letter = "dead.jsonl"

[[lookup]]
name = "cameras"
type = "http"
url = "{url}"

[[source]]
uid = "passings"
type = "file"
path = "input.txt"

[[operator]]
uid = "enrich"
input = "passings"
module = "traffic.wasm"
function = "enrich"
lookups = ["cameras"]
async = {async_settings}

[[sink]]
uid = "out"
input = "enrich"
type = "file"
path = "out.txt"
"#,
        url = server.url()
    )
}

/// Delays of 0 to 12 ms by key, so answers overtake each other.
fn jittered(key: &str, _n: usize) -> Reply {
    let spread = key.bytes().map(u64::from).sum::<u64>() % 4;
    answer(key, spread * 4)
}

#[test]
fn ordered_async_lookups_emit_the_oracle_in_input_order() {
    let server = CameraServer::start(jittered);
    let work = Workdir::new();
    let input = passings(300);
    work.write("input.txt", input.join("\n") + "\n");
    work.run_ok(&job(&server, r#"{ mode = "ordered", capacity = 16 }"#), &[]);
    let output: Vec<String> = work.read("out.txt").lines().map(str::to_string).collect();
    assert_eq!(output, enriched(&input));
    assert_eq!(server.requests(), 300, "one request a record, none retried");
    assert!(server.max_in_flight() <= 16, "{} in flight", server.max_in_flight());
}

#[test]
fn unordered_async_lookups_emit_every_record_once_and_none_across_a_watermark() {
    let server = CameraServer::start(jittered);
    let work = Workdir::new();
    let input = passings(200);
    work.write("input.txt", input.join("\n") + "\n");
    // Event time from each passing, a watermark after every batch of 4; one
    // window per record downstream, so a record emitted after a watermark
    // that passed it would be late there.
    let job = job(&server, r#"{ mode = "unordered", capacity = 16 }"#)
        .replace("batch_size = 16", "batch_size = 4")
        .replace(
            "input = \"passings\"\nmodule = \"traffic.wasm\"\nfunction = \"enrich\"",
            "input = \"stamped\"\nmodule = \"traffic.wasm\"\nfunction = \"enrich\"",
        )
        .replace(
            "[[sink]]\nuid = \"out\"\ninput = \"enrich\"",
            r#"[[operator]]
uid = "stamped"
input = "passings"
module = "traffic.wasm"
function = "event_time"
watermarks = { strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 0 }

[[operator]]
uid = "windows"
input = "enrich"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "tumbling", size_ms = 1000 }
late_output = "late"

[[sink]]
uid = "late"
input = "windows"
side_output = "late"
type = "file"
path = "late.txt"

[[sink]]
uid = "out"
input = "windows""#,
        );
    work.run_ok(&job, &[]);
    let expected: Vec<String> = enriched(&input)
        .into_iter()
        .map(|line| {
            let ts: i64 = line
                .split(',')
                .next()
                .and_then(|t| t.parse().ok())
                .expect("a timestamp");
            format!("{line},{ts},{},{line}", ts + 1000)
        })
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(sorted_lines(&work.read("out.txt")), expected);
    assert_eq!(
        std::fs::read_to_string(work.path("late.txt")).unwrap_or_default(),
        "",
        "no record crossed a watermark"
    );
}

#[test]
fn timeouts_are_retried_and_a_lookup_failing_its_last_try_is_dead_lettered_with_the_cause() {
    // CAM0003's very first request is too slow (then it answers at once);
    // CAM0005 is always too slow.
    let server = CameraServer::start(|key, n| match key {
        "CAM0003" if n == 1 => answer(key, 5_000),
        "CAM0005" => answer(key, 5_000),
        _ => answer(key, 0),
    });
    let work = Workdir::new();
    let input = passings(60);
    work.write("input.txt", input.join("\n") + "\n");
    let settings = r#"{ capacity = 8, timeout_ms = 500, retry = { attempts = 3, delay_ms = 10, backoff = 2.0 }, on_failure = "dead-letter" }"#;
    work.run_ok(&job(&server, settings), &[]);
    let (failed, kept): (Vec<String>, Vec<String>) = input.iter().cloned().partition(|l| l.contains(",CAM0005,"));
    assert_eq!(failed.len(), 3);
    let output: Vec<String> = work.read("out.txt").lines().map(str::to_string).collect();
    assert_eq!(output, enriched(&kept), "CAM0003 answered on a retry, in order");
    let dead: Vec<(String, String, String)> = work
        .read("dead.jsonl")
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let field = |name: &str| entry[name].as_str().unwrap_or("").to_string();
            (field("operator"), field("record"), field("reason"))
        })
        .collect();
    let expected: Vec<(String, String, String)> = failed
        .iter()
        .map(|record| {
            (
                "enrich".to_string(),
                record.clone(),
                "lookup `cameras` failed: timed out after 500 ms (3 attempts)".to_string(),
            )
        })
        .collect();
    assert_eq!(dead, expected);
    assert_eq!(
        server.asked.lock().expect("lock")["CAM0005"],
        9,
        "3 records, 3 tries each"
    );
}

#[test]
fn a_lookup_failing_its_last_try_fails_the_task_naming_the_operator_the_lookup_and_the_cause() {
    let server = CameraServer::start(|key, _| match key {
        "CAM0005" => Reply {
            delay_ms: 0,
            status: 500,
            body: "database down".into(),
        },
        _ => answer(key, 0),
    });
    let work = Workdir::new();
    work.write("input.txt", passings(20).join("\n") + "\n");
    let settings = r#"{ retry = { attempts = 2, delay_ms = 5 }, on_failure = "fail" }"#;
    let finished = work.weir("run", &job(&server, settings), &[]);
    assert!(!finished.success, "the job should fail:\n{}", finished.stderr);
    let expected = format!(
        "operator `enrich`: lookup `cameras` failed: GET http://127.0.0.1:{}/camera/CAM0005: HTTP 500 Internal Server Error: database down (2 attempts)",
        server.port
    );
    assert!(
        finished.stderr.contains(&expected),
        "missing `{expected}` in:\n{}",
        finished.stderr
    );
}

#[test]
fn capacity_bounds_the_requests_in_flight() {
    let server = CameraServer::start(|key, _| answer(key, 15));
    let work = Workdir::new();
    let input = passings(120);
    work.write("input.txt", input.join("\n") + "\n");
    work.run_ok(&job(&server, r#"{ mode = "unordered", capacity = 4 }"#), &[]);
    assert_eq!(sorted_lines(&work.read("out.txt")), {
        let mut expected = enriched(&input);
        expected.sort();
        expected
    });
    // Never above the capacity, and the capacity is used: requests overlap.
    assert_eq!(server.max_in_flight(), 4);
    assert_eq!(server.requests(), 120);
}

/// The enrich job with checkpoints every 50 ms and a `files` sink in
/// `out/`; small batches and channels.
fn checkpointed_job(server: &CameraServer) -> String {
    job(server, r#"{ mode = "ordered", capacity = 200, timeout_ms = 120000 }"#)
        .replace(
            "dead_letter = \"dead.jsonl\"\n",
            "dead_letter = \"dead.jsonl\"\n\n[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 50\n",
        )
        .replace("batch_size = 16", "batch_size = 4\nchannel_capacity = 1")
        .replace(
            "type = \"file\"\npath = \"out.txt\"",
            "type = \"files\"\npath = \"out\"",
        )
}

/// Runs `job` with its source following the input until `out/` holds
/// `committed` lines, SIGKILLs it, checks what was committed, lets CAM0010
/// answer, and runs `job` again from the latest checkpoint to the end.
fn kill_then_restore(work: &Workdir, job: &str, blocking: &AtomicBool, committed: &[String]) {
    // The source follows its file, so it lives on and checkpoints go on
    // being taken while record 10 waits; the restored run reads to the end.
    work.write(
        "job.toml",
        job.replace("path = \"input.txt\"", "path = \"input.txt\"\nfollow = true"),
    );
    let mut child = weir()
        .current_dir(work.dir.path())
        .args(["run", "--quiet", "job.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while committed_in_order(&work.path("out")).len() < committed.len() {
        assert!(std::time::Instant::now() < deadline, "nothing committed in a minute");
        if child.try_wait().expect("poll weir").is_some() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
            }
            panic!("the job ended before the kill:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL weir");
    child.wait().expect("reap weir");
    let before = committed_in_order(&work.path("out"));
    assert_eq!(
        before,
        committed,
        "killed while record 10 was in flight ({} committed)",
        before.len()
    );
    work.write("job.toml", job);
    blocking.store(false, Ordering::SeqCst);
    let restored = weir()
        .current_dir(work.dir.path())
        .args(["run", "--quiet", "job.toml", "--restore", "latest"])
        .output()
        .expect("weir runs");
    assert!(
        restored.status.success(),
        "the restored run failed:\n{}",
        String::from_utf8_lossy(&restored.stderr)
    );
}

#[test]
fn records_in_flight_at_a_checkpoint_are_looked_up_again_after_sigkill_none_lost_or_doubled() {
    // Record 10 (the first of CAM0010) gets no answer in the first run: in
    // ordered mode it holds back the records behind it, and the checkpoint
    // that commits records 0..=9 (its barrier passed the operator after
    // record 9 left, so after record 10 entered) has it in flight. The
    // capacity holds the whole input, so barriers keep flowing (a full
    // operator reads no barrier).
    let (server, blocking) = blocking_server(120_000);
    let work = Workdir::new();
    let input = passings(150);
    work.write("input.txt", input.join("\n") + "\n");
    kill_then_restore(&work, &checkpointed_job(&server), &blocking, &enriched(&input[..10]));
    assert_eq!(committed_in_order(&work.path("out")), enriched(&input));
    assert!(
        server.asked.lock().expect("lock")["CAM0010"] > input.iter().filter(|l| l.contains(",CAM0010,")).count(),
        "record 10 was asked again after the restore"
    );
}

#[test]
fn after_a_restore_consumers_hear_no_watermark_ahead_of_the_restored_records() {
    // Event time from each passing, one window per record downstream: a
    // restore that announced the operator's input watermark (ahead of the
    // records in flight) would make the restored records late there.
    let (server, blocking) = blocking_server(120_000);
    let work = Workdir::new();
    let input = passings(150);
    work.write("input.txt", input.join("\n") + "\n");
    let job = checkpointed_job(&server)
        .replace(
            "input = \"passings\"\nmodule = \"traffic.wasm\"\nfunction = \"enrich\"",
            "input = \"stamped\"\nmodule = \"traffic.wasm\"\nfunction = \"enrich\"",
        )
        .replace(
            "[[sink]]\nuid = \"out\"\ninput = \"enrich\"",
            r#"[[operator]]
uid = "stamped"
input = "passings"
module = "traffic.wasm"
function = "event_time"
watermarks = { strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 0 }

[[operator]]
uid = "windows"
input = "enrich"
module = "testkit.wasm"
function = "concat"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "tumbling", size_ms = 1000 }
late_output = "late"

[[sink]]
uid = "late"
input = "windows"
side_output = "late"
type = "file"
path = "late.txt"

[[sink]]
uid = "out"
input = "windows""#,
        );
    let windows: Vec<String> = enriched(&input)
        .into_iter()
        .map(|line| {
            let ts: i64 = line
                .split(',')
                .next()
                .and_then(|t| t.parse().ok())
                .expect("a timestamp");
            format!("{line},{ts},{},{line}", ts + 1000)
        })
        .collect();
    // The last watermark out before record 10 is the one after the batch of
    // records 4..=7 (batches of 4), at record 7's time less 1 ms: it closes
    // the windows of records 0..=6.
    kill_then_restore(&work, &job, &blocking, &windows[..7]);
    assert_eq!(
        std::fs::read_to_string(work.path("late.txt")).unwrap_or_default(),
        "",
        "no restored record was late"
    );
    assert_eq!(sorted_lines(&committed_in_order(&work.path("out")).join("\n")), {
        let mut all = windows.clone();
        all.sort();
        all
    });
}

#[test]
fn a_stop_with_a_savepoint_leaves_the_records_in_flight_to_the_resumed_job() {
    // Record 10 answers only after 3 s in the first run, holding back the
    // records behind it; the stop comes meanwhile. What the first run wrote
    // and what the resumed run writes (plain files, not transactional) make
    // the oracle exactly: a stop that drained the queue would write records
    // 10.. in both.
    let (server, blocking) = blocking_server(3_000);
    let work = Workdir::new();
    let input = passings(150);
    work.write("input.txt", input.join("\n") + "\n");
    let job = job(&server, r#"{ mode = "ordered", capacity = 200, timeout_ms = 120000 }"#)
        .replace("batch_size = 16", "batch_size = 4\nchannel_capacity = 1")
        .replace(
            "dead_letter = \"dead.jsonl\"\n",
            "dead_letter = \"dead.jsonl\"\n\n[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 600000\n",
        );
    work.write(
        "job.toml",
        job.replace("path = \"input.txt\"", "path = \"input.txt\"\nfollow = true")
            .replace("path = \"out.txt\"", "path = \"first.txt\""),
    );
    let mut child = command(&work)
        .args(["run", "--quiet", "job.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir starts");
    // Every record asked for: the queue holds records 10..150.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        let list = weir_in(&work, &["list"]);
        let id = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some("enrich"))
            .and_then(|line| line.split_whitespace().next().map(str::to_string));
        if let Some(id) = id
            && server.requests() >= input.len()
        {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} requests in a minute",
            server.requests()
        );
        assert!(child.try_wait().expect("poll weir").is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stop = weir_in(&work, &["stop", "--savepoint", "savepoints", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    let stopped = child.wait_with_output().expect("weir ends");
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    blocking.store(false, Ordering::SeqCst);
    work.write("job.toml", job.replace("path = \"out.txt\"", "path = \"second.txt\""));
    let resumed = command(&work)
        .args(["run", "--quiet", "job.toml", "--from-savepoint", stop.stdout.trim()])
        .output()
        .expect("weir runs");
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let first = work.read("first.txt");
    let second = work.read("second.txt");
    assert_eq!(
        first
            .lines()
            .chain(second.lines())
            .map(str::to_string)
            .collect::<Vec<_>>(),
        enriched(&input)
    );
}

#[test]
fn job_file_mistakes_about_lookups_are_refused_with_their_lines() {
    let job = r#"[[lookup]]
name = "cameras"
type = "http"
url = "http://127.0.0.1:1/camera"

[[lookup]]
name = "secure"
type = "http"
url = "https://example.com/{key}"

[[source]]
uid = "passings"
type = "file"
path = "input.txt"

[[operator]]
uid = "enrich"
input = "passings"
module = "traffic.wasm"
function = "enrich"
lookups = ["roads"]
async = { capacity = 0, retry = { backoff = 0.5 } }

[[operator]]
uid = "copy"
input = "enrich"
module = "testkit.wasm"
function = "identity"
lookups = ["cameras"]

[[sink]]
uid = "out"
input = "copy"
type = "file"
path = "out.txt"
"#;
    let work = Workdir::new();
    let finished = work.weir("validate", job, &[]);
    assert!(!finished.success, "the job was accepted:\n{}", finished.stdout);
    let stderr = finished
        .stderr
        .replace(&work.path("job.toml").display().to_string(), "job.toml");
    assert_eq!(
        stderr,
        "error: job.toml:4: lookup `cameras` → url: `http://127.0.0.1:1/camera` has no `{key}` for the request's key\n\
         error: job.toml:9: lookup `secure` → url: `https://example.com/{key}`: only http:// URLs are supported\n\
         error: job.toml:21: operator `enrich` → lookups: no [[lookup]] is named `roads` (declared: [])\n\
         error: job.toml:22: operator `enrich` → async → capacity: must be at least 1\n\
         error: job.toml:22: operator `enrich` → async → retry → backoff: 0.5 is not between 1.0 and 100.0\n\
         error: job.toml:29: operator `copy` → lookups: `identity` is a map function; `lookups` is for async-map functions\n"
    );
}
