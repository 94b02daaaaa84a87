//! The HTTP endpoint of a running job (`weir run --http 0`): `/metrics` in
//! the Prometheus text format and the REST routes `/jobs` and `/jobs/{id}`.
//!
//! The job is word count over a followed file, so it never ends by itself:
//! the test writes a first part of the input, waits until the counts of
//! every word are in the output, and reads the exact counters of every
//! vertex from `/metrics`; then appends a second part and does it again. The
//! oracle counts lines and words in plain Rust. Requests are plain HTTP/1.1
//! over a `TcpStream`, with `Connection: close`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{Workdir, sorted_lines, start};
use crate::oracle;

/// Word count with a followed source, a rebalance, a key-by and a sink
/// (sinks have one subtask) behind a second rebalance.
const JOB: &str = r#"
[job]
name = "http-wordcount"

[[source]]
uid = "lines"
type = "file"
path = "input.txt"
follow = true
parallelism = 1

[[operator]]
uid = "tokenize"
input = "lines"
module = "wordcount.wasm"
function = "tokenize"
parallelism = 2

[[operator]]
uid = "count"
input = "tokenize"
module = "wordcount.wasm"
function = "count"
key_by = { module = "wordcount.wasm", function = "word" }
parallelism = 2

[[sink]]
uid = "counts"
input = "count"
type = "file"
path = "counts.csv"
"#;

/// A running `weir run --http 0`, killed when dropped.
pub(crate) struct Job {
    child: Child,
    /// Its job id, from its registry entry.
    pub(crate) id: String,
    /// Its HTTP endpoint, from its registry entry.
    pub(crate) address: SocketAddr,
}

impl Job {
    /// Starts the word count in `work` (its input must exist) and waits for
    /// its registry entry to name the HTTP address.
    fn start(work: &Workdir) -> Self {
        Self::start_job(work, JOB, &[])
    }

    /// Starts `job` in `work` with `weir run --http 0` and `args`, and waits
    /// for its registry entry to name the HTTP address.
    pub(crate) fn start_job(work: &Workdir, job: &str, args: &[&str]) -> Self {
        work.write("job.toml", job);
        Self::attach(work, start(work, &[&["--http", "0"], args].concat()))
    }

    /// Waits until `child`, a `weir run --http 0` in `work`, names its HTTP
    /// address in its registry entry.
    pub(crate) fn attach(work: &Workdir, mut child: Child) -> Self {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some((id, address)) = registered(work) {
                return Self { child, id, address };
            }
            if let Some(status) = child.try_wait().expect("polls") {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("the job ended ({status}) before serving HTTP:\n{stderr}");
            }
            assert!(Instant::now() < deadline, "no HTTP address in the registry");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics if the job has ended.
    pub(crate) fn assert_running(&mut self) {
        assert!(self.child.try_wait().expect("polls").is_none(), "the job ended early");
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path and contents of the job's registry entry, once written (it is
/// written whole, by a rename).
pub(crate) fn registry_entry(work: &Workdir) -> Option<(std::path::PathBuf, serde_json::Value)> {
    std::fs::read_dir(work.path("home/jobs"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .find_map(|path| {
            let json = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            Some((path, json))
        })
}

/// The id and HTTP address in the job's registry entry, once it has one.
fn registered(work: &Workdir) -> Option<(String, SocketAddr)> {
    let (_, json) = registry_entry(work)?;
    let id = json["id"].as_str()?.to_string();
    Some((id, json["http"].as_str()?.parse().expect("a socket address")))
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

/// Sends `METHOD path` and reads the whole answer.
pub(crate) fn request(address: SocketAddr, method: &str, path: &str) -> Answer {
    let mut stream = TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("sends");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("an answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers, then a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_string())
    };
    assert_eq!(header("transfer-encoding"), None, "a body of known length");
    Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body: body.to_string(),
    }
}

/// `GET path`: the status and body, whatever the type.
pub(crate) fn request_text(address: SocketAddr, path: &str) -> (u16, String) {
    let answer = request(address, "GET", path);
    (answer.status, answer.body)
}

/// `GET path`, JSON expected.
pub(crate) fn get_json(address: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let answer = request(address, "GET", path);
    assert_eq!(answer.content_type, "application/json", "{path}");
    let json = serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", answer.body));
    (answer.status, json)
}

/// The counter families the word-count test checks exactly.
const COUNTERS: &[&str] = &[
    "weir_operator_num_records_in_total",
    "weir_operator_num_records_out_total",
    "weir_operator_num_late_records_dropped_total",
    "weir_job_num_dead_letters_total",
    "weir_job_num_restarts_total",
    "weir_job_last_completed_checkpoint_id",
];

/// `GET /metrics` as a map from series (name and labels) to value, the
/// per-subtask series of [`COUNTERS`] summed over the `subtask` label, and
/// only those.
pub(crate) fn metrics(address: SocketAddr) -> BTreeMap<String, String> {
    let answer = request(address, "GET", "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
    for (family, kind) in [
        ("weir_operator_num_records_in", "counter"),
        ("weir_operator_num_records_out", "counter"),
        ("weir_operator_num_bytes_in", "counter"),
        ("weir_operator_num_late_records_dropped", "counter"),
        ("weir_operator_busy_time_ms_per_second", "gauge"),
        ("weir_operator_backpressured_time_ms_per_second", "gauge"),
        ("weir_operator_wasm_call_seconds", "histogram"),
        ("weir_operator_checkpoint_alignment_seconds", "histogram"),
        ("weir_operator_state_size_bytes", "gauge"),
        ("weir_job_num_dead_letters", "counter"),
        ("weir_job_num_restarts", "counter"),
        ("weir_job_num_completed_checkpoints", "counter"),
        ("weir_job_checkpoint_duration_seconds", "histogram"),
        ("weir_job_last_completed_checkpoint_id", "gauge"),
        ("weir_job_uptime_seconds", "gauge"),
    ] {
        assert!(
            answer.body.contains(&format!("\n# TYPE {family} {kind}\n")),
            "no TYPE line for {family}:\n{}",
            answer.body
        );
        assert!(
            answer.body.contains(&format!("# HELP {family} ")),
            "no HELP line for {family}"
        );
    }
    let mut summed: BTreeMap<String, u64> = BTreeMap::new();
    for line in answer.body.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a series and a value");
        let (name, _) = series.split_once('{').unwrap_or((series, ""));
        if !COUNTERS.contains(&name) {
            continue;
        }
        let series = match series.split_once(",subtask=\"") {
            Some((head, tail)) => format!("{head}{}", &tail[tail.find('"').expect("a closing quote") + 1..]),
            None => series.to_string(),
        };
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number in `{line}`"));
        *summed.entry(series).or_default() += value as u64;
    }
    summed
        .into_iter()
        .map(|(series, value)| (series, value.to_string()))
        .collect()
}

/// The counters a word count of `text` must show, beside the job-wide
/// series but uptime (which only has to be there).
fn expected_metrics(id: &str, text: &str) -> BTreeMap<String, String> {
    let lines = text.lines().count() as u64;
    let words: u64 = oracle::word_counts(text).values().sum();
    let labels = format!("job=\"http-wordcount\",job_id=\"{id}\"");
    let mut expected = BTreeMap::new();
    for (uid, kind, records_in, records_out) in [
        ("lines", "source", 0, lines),
        ("tokenize", "operator", lines, words),
        ("count", "operator", words, words),
        ("counts", "sink", words, 0),
    ] {
        let series = |name: &str| format!("{name}{{{labels},uid=\"{uid}\",kind=\"{kind}\"}}");
        expected.insert(series("weir_operator_num_records_in_total"), records_in.to_string());
        expected.insert(series("weir_operator_num_records_out_total"), records_out.to_string());
        expected.insert(series("weir_operator_num_late_records_dropped_total"), "0".into());
    }
    for name in [
        "weir_job_num_dead_letters_total",
        "weir_job_num_restarts_total",
        "weir_job_last_completed_checkpoint_id",
    ] {
        expected.insert(format!("{name}{{{labels}}}"), "0".into());
    }
    expected
}

/// Waits until the sink has counted every word of `text` and the output
/// has a line for each, then checks the counters and the output exactly.
fn check_after(job: &mut Job, work: &Workdir, text: &str) {
    let expected = expected_metrics(&job.id, text);
    let sink_in = expected
        .iter()
        .find(|(series, _)| {
            series.starts_with("weir_operator_num_records_in_total{") && series.contains("uid=\"counts\"")
        })
        .map(|(_, value)| value.clone())
        .expect("the sink's series");
    let words: usize = sink_in.parse().expect("a count");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut current = metrics(job.address);
    loop {
        let sink_done = current.iter().any(|(series, value)| {
            series.contains("uid=\"counts\"")
                && series.starts_with("weir_operator_num_records_in_total{")
                && *value == sink_in
        });
        let output = std::fs::read_to_string(work.path("counts.csv")).unwrap_or_default();
        if sink_done && output.lines().count() >= words {
            break;
        }
        job.assert_running();
        assert!(
            Instant::now() < deadline,
            "the counters did not reach {expected:#?}: {current:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        current = metrics(job.address);
    }
    assert_eq!(current, expected);
    let expected_output = oracle::word_count_lines(&oracle::word_counts(text));
    assert_eq!(sorted_lines(&work.read("counts.csv")), expected_output);
    job.assert_running();
}

#[test]
fn http_metrics_count_every_record_exactly_while_the_job_runs() {
    let work = Workdir::new();
    let first = oracle::text(200, 31);
    let second = oracle::text(300, 32);
    work.write("input.txt", &first);
    let mut job = Job::start(&work);
    check_after(&mut job, &work, &first);
    let mut input = std::fs::OpenOptions::new()
        .append(true)
        .open(work.path("input.txt"))
        .expect("the input");
    input.write_all(second.as_bytes()).expect("appended");
    drop(input);
    check_after(&mut job, &work, &format!("{first}{second}"));
}

#[test]
fn http_rest_routes_show_the_job_and_its_graph_and_refuse_unknown_ones() {
    // The metrics of a vertex that has seen nothing.
    let quiet = serde_json::json!({
        "records_in": 0, "records_out": 0, "records_in_per_second": 0.0, "records_out_per_second": 0.0,
        "backpressure": "ok", "input_watermark_ms": null, "output_watermark_ms": null,
    });
    let work = Workdir::new();
    work.write("input.txt", "");
    let mut job = Job::start(&work);
    let address = job.address;

    let (status, jobs) = get_json(address, "/jobs");
    assert_eq!(status, 200, "{jobs}");
    let listed = jobs["jobs"].as_array().expect("a list of jobs");
    assert_eq!(listed.len(), 1, "{jobs}");
    assert_eq!(listed[0]["id"], job.id.as_str());
    assert_eq!(listed[0]["name"], "http-wordcount");
    assert_eq!(listed[0]["state"], "RUNNING");
    assert!(listed[0]["uptime_ms"].as_i64().is_some_and(|ms| ms >= 0), "{jobs}");
    assert!(listed[0]["start_time_ms"].as_i64().is_some_and(|ms| ms > 0), "{jobs}");

    let (status, details) = get_json(address, &format!("/jobs/{}", job.id));
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["id"], job.id.as_str());
    assert_eq!(details["name"], "http-wordcount");
    assert_eq!(details["state"], "RUNNING");
    assert_eq!(
        details["vertices"],
        serde_json::json!([
            { "uid": "lines", "kind": "source", "parallelism": 1, "metrics": quiet.clone() },
            { "uid": "tokenize", "kind": "operator", "parallelism": 2, "metrics": quiet.clone() },
            { "uid": "count", "kind": "operator", "parallelism": 2, "metrics": quiet.clone() },
            { "uid": "counts", "kind": "sink", "parallelism": 1, "metrics": quiet.clone() },
        ])
    );

    // A vertex, per subtask (nothing came in yet).
    let (status, vertex) = get_json(address, &format!("/jobs/{}/vertices/count", job.id));
    assert_eq!(status, 200, "{vertex}");
    let subtask = |index: u32| {
        serde_json::json!({
            "subtask": index, "records_in": 0, "records_out": 0, "bytes_in": 0, "bytes_out": 0,
            "records_in_per_second": 0.0, "records_out_per_second": 0.0,
            "busy_ms_per_second": vertex["subtasks"][index as usize]["busy_ms_per_second"],
            "idle_ms_per_second": vertex["subtasks"][index as usize]["idle_ms_per_second"],
            "backpressured_ms_per_second": 0.0, "backpressure": "ok",
            "input_watermark_ms": null, "output_watermark_ms": null, "watermark_lag_ms": null,
            "late_records_dropped": 0, "wasm_calls": 0,
        })
    };
    assert_eq!(
        vertex,
        serde_json::json!({
            "uid": "count", "kind": "operator", "parallelism": 2, "backpressure": "ok",
            "subtasks": [subtask(0), subtask(1)],
        })
    );
    let (status, body) = get_json(address, &format!("/jobs/{}/vertices/nope", job.id));
    assert_eq!(
        (status, body),
        (
            404,
            serde_json::json!({ "error": format!("job `{}` has no vertex `nope`", job.id) })
        )
    );

    // No [checkpoint] table and no failure: empty history and log.
    let (status, checkpoints) = get_json(address, &format!("/jobs/{}/checkpoints", job.id));
    assert_eq!(
        (status, checkpoints),
        (
            200,
            serde_json::json!({ "counts": { "completed": 0, "failed": 0 }, "history": [] })
        )
    );
    let (status, exceptions) = get_json(address, &format!("/jobs/{}/exceptions", job.id));
    assert_eq!(
        (status, exceptions),
        (200, serde_json::json!({ "total": 0, "exceptions": [] }))
    );

    // The OpenAPI description names every route, and every GET route of it
    // is served.
    let (status, openapi) = get_json(address, "/openapi.json");
    assert_eq!(status, 200);
    let paths: Vec<&str> = openapi["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/",
        "/metrics",
        "/openapi.json",
        "/jobs",
        "/jobs/{id}",
        "/jobs/{id}/vertices/{uid}",
        "/jobs/{id}/checkpoints",
        "/jobs/{id}/exceptions",
        "/jobs/{id}/savepoints",
        "/jobs/{id}/stop",
        "/jobs/{id}/vertices/{uid}/upgrade",
    ] {
        assert!(paths.contains(&path), "{path} is not described: {paths:?}");
    }
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        if item.get("get").is_none() {
            continue;
        }
        let concrete = path.replace("{id}", &job.id).replace("{uid}", "count");
        let answer = request(address, "GET", &concrete);
        assert_eq!(answer.status, 200, "GET {concrete}: {}", answer.body);
    }
    assert_eq!(
        details["edges"],
        serde_json::json!([
            { "from": "lines", "to": "tokenize", "partitioning": "rebalance" },
            { "from": "tokenize", "to": "count", "partitioning": "key-by" },
            { "from": "count", "to": "counts", "partitioning": "rebalance" },
        ])
    );

    // Unknown jobs and routes: 404 with a JSON body naming them.
    let (status, body) = get_json(address, "/jobs/00000000deadbeef");
    assert_eq!(
        (status, body),
        (
            404,
            serde_json::json!({ "error": "no job has the id `00000000deadbeef`" })
        )
    );
    let (status, body) = get_json(address, &format!("/jobs/{}/vertices/nope/extra", job.id));
    assert_eq!(
        (status, body),
        (
            404,
            serde_json::json!({ "error": format!("no route for `/jobs/{}/vertices/nope/extra`", job.id) })
        )
    );
    let (status, body) = get_json(address, "/nothing-here");
    assert_eq!(
        (status, body),
        (404, serde_json::json!({ "error": "no route for `/nothing-here`" }))
    );
    // A job id that is not UTF-8, and a method the route does not have.
    assert_eq!(request(address, "GET", "/jobs/%FF").status, 400);
    assert_eq!(request(address, "POST", "/jobs").status, 405);
    job.assert_running();
}
