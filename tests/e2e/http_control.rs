//! The HTTP endpoint as the control plane (issue 14): every `weir run`
//! serves it, its POST routes take savepoints, stop and upgrade, and it
//! lets no one in without the job's token where it must.
//!
//! The jobs are word counts over a followed file, so they never end by
//! themselves. Requests are plain HTTP/1.1 over a `TcpStream` (headers and
//! bodies as the test wants them), or HTTPS through `ureq` trusting exactly
//! the certificate the test generated (`rcgen`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Workdir, sorted_lines, start, wait_success, weir_in};
use crate::oracle;

/// Word count of a followed file; `extra` goes before the first source.
fn wordcount_job(extra: &str) -> String {
    format!(
        r#"
[job]
name = "http-control"
dead_letter = "dead.jsonl"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

{extra}

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
parallelism = 1

[[operator]]
uid = "count"
input = "tokenize"
module = "wordcount.wasm"
function = "count"
key_by = {{ module = "wordcount.wasm", function = "word" }}
parallelism = 2

[[sink]]
uid = "counts"
input = "count"
type = "file"
path = "counts.csv"
"#
    )
}

/// A running job and its registry entry; killed when dropped.
struct Job {
    child: Option<Child>,
    /// The registry entry's path.
    entry: PathBuf,
    /// The registry entry.
    json: Value,
    /// Its id.
    id: String,
    /// Where to reach its endpoint.
    address: SocketAddr,
    /// Its bearer token.
    token: String,
}

impl Job {
    /// Writes `job.toml` and an input, starts `weir run job.toml ARGS` and
    /// waits for its registry entry.
    fn start(work: &Workdir, job_file: &str, args: &[&str]) -> Self {
        work.write("job.toml", job_file);
        if !work.path("input.txt").exists() {
            work.write("input.txt", "");
        }
        let mut child = start(work, args);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some((entry, json)) = crate::http::registry_entry(work) {
                let bound: SocketAddr = json["http"].as_str().expect("an address").parse().expect("an address");
                let address = if bound.ip().is_unspecified() {
                    SocketAddr::from(([127, 0, 0, 1], bound.port()))
                } else {
                    bound
                };
                return Self {
                    child: Some(child),
                    entry,
                    id: json["id"].as_str().expect("an id").to_string(),
                    token: json["token"].as_str().expect("a token").to_string(),
                    json,
                    address,
                };
            }
            if let Some(status) = child.try_wait().expect("polls") {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("the job ended ({status}) before registering:\n{stderr}");
            }
            assert!(Instant::now() < deadline, "the job never registered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics if the job has ended.
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("a running job");
        assert!(child.try_wait().expect("polls").is_none(), "the job ended early");
    }

    /// Waits for the job to end by itself; its standard error.
    fn wait(&mut self) -> String {
        wait_success(self.child.take().expect("a running job"))
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a request with `headers` and `body` and reads the whole answer:
/// its status and body.
fn send(address: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("a timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("sends");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("an answer");
    parse_answer(&raw)
}

/// The status and body of a raw HTTP/1.1 answer.
fn parse_answer(raw: &str) -> (u16, String) {
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers, then a body");
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}

/// A request with the token (`token`: none if `None`) and a JSON answer.
fn call(job: &Job, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    let (status, text) = send(job.address, method, path, &headers, body);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (status, json)
}

/// `{"error": message}`.
fn error(message: &str) -> Value {
    json!({ "error": message })
}

const MISSING: &str = "this request needs the job's bearer token (`Authorization: Bearer TOKEN`; `weir run` writes it into the job's registry entry)";
const WRONG: &str = "wrong bearer token";

/// The value of `weir_http_unauthorized_requests_total` in `/metrics`.
fn unauthorized(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|line| line.starts_with("weir_http_unauthorized_requests_total{"))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}

/// Waits until the sink has written every word count of `text` (each
/// word's final count); asserts the output exactly.
fn wait_for_counts(job: &mut Job, work: &Workdir, text: &str) {
    let expected = oracle::word_count_lines(&oracle::word_counts(text));
    let words: usize = oracle::word_counts(text).values().map(|n| *n as usize).sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let output = std::fs::read_to_string(work.path("counts.csv")).unwrap_or_default();
        if output.lines().count() >= words {
            break;
        }
        job.assert_running();
        assert!(Instant::now() < deadline, "the counts never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sorted_lines(&work.read("counts.csv")), expected);
}

#[test]
fn control_routes_need_the_token_and_take_savepoints_and_stop() {
    let work = Workdir::new();
    let text = oracle::text(50, 41);
    work.write("input.txt", &text);
    let mut job = Job::start(&work, &wordcount_job(""), &[]);
    // The registry entry: private, with the endpoint, its scheme and a
    // generated token of 32 random bytes.
    let mode = std::fs::metadata(&job.entry).expect("the entry").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(job.json["scheme"], "http");
    assert!(job.address.ip().is_loopback(), "{}", job.json);
    assert_eq!(job.token.len(), 64, "{}", job.json);
    assert!(job.token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(job.json.get("cert"), None);
    wait_for_counts(&mut job, &work, &text);

    // On loopback GET needs no token; POST always does.
    let (status, jobs) = call(&job, "GET", "/jobs", None, "");
    assert_eq!((status, jobs["jobs"][0]["id"].as_str()), (200, Some(job.id.as_str())));
    let savepoints = format!("/jobs/{}/savepoints", job.id);
    assert_eq!(call(&job, "POST", &savepoints, None, "{}"), (401, error(MISSING)));
    assert_eq!(
        call(&job, "POST", &savepoints, Some("not-the-token"), "{}"),
        (401, error(WRONG))
    );
    let (status, metrics) = send(job.address, "GET", "/metrics", &[], "");
    assert_eq!((status, unauthorized(&metrics)), (200, Some(2)), "{metrics}");
    let token = job.token.clone();
    let token = Some(token.as_str());

    // Malformed bodies: 400 with serde's message.
    assert_eq!(
        call(&job, "POST", &savepoints, token, "{\"target_directory\": 5}"),
        (
            400,
            error(
                "Failed to deserialize the JSON body into the target type: target_directory: invalid type: integer `5`, expected path string at line 1 column 22"
            )
        )
    );
    assert_eq!(
        call(&job, "POST", &savepoints, token, "{\"target_dir\": \"x\"}"),
        (
            400,
            error(
                "Failed to deserialize the JSON body into the target type: target_dir: unknown field `target_dir`, expected `target_directory` at line 1 column 13"
            )
        )
    );
    assert_eq!(
        call(&job, "POST", &savepoints, token, "target_directory=x"),
        (
            400,
            error("Failed to parse the request body as JSON: expected ident at line 1 column 2")
        )
    );
    let upgrade = format!("/jobs/{}/vertices/count/upgrade", job.id);
    assert_eq!(
        call(&job, "POST", &upgrade, token, "{}"),
        (
            400,
            error(
                "Failed to deserialize the JSON body into the target type: missing field `module` at line 1 column 2"
            )
        )
    );
    // Unknown jobs and operators: 404. A GET of a POST route: 405.
    assert_eq!(
        call(&job, "POST", "/jobs/0000000000000000/savepoints", token, "{}"),
        (404, error("no job has the id `0000000000000000`"))
    );
    let module = crate::harness::module("wordcount");
    let module = json!({ "module": module }).to_string();
    assert_eq!(
        call(
            &job,
            "POST",
            &format!("/jobs/{}/vertices/nope/upgrade", job.id),
            token,
            &module
        ),
        (
            404,
            error("upgrade refused: job `http-control` has no operator `nope`; the job goes on unchanged")
        )
    );
    assert_eq!(send(job.address, "GET", &savepoints, &[], "").0, 405);

    // A savepoint into the job's folder (empty body), then into another.
    let (status, answer) = call(&job, "POST", &savepoints, token, "");
    assert_eq!(status, 200, "{answer}");
    let taken = PathBuf::from(answer["path"].as_str().expect("a path"));
    assert!(
        taken.starts_with(work.path("checkpoints/http-control/savepoints")) && taken.join("_savepoint").is_file(),
        "{taken:?}"
    );
    let elsewhere = work.path("elsewhere");
    let body = json!({ "target_directory": elsewhere }).to_string();
    let (status, answer) = call(&job, "POST", &savepoints, token, &body);
    assert_eq!(status, 200, "{answer}");
    let taken = PathBuf::from(answer["path"].as_str().expect("a path"));
    assert!(
        taken.starts_with(&elsewhere) && taken.join("_savepoint").is_file(),
        "{taken:?}"
    );
    job.assert_running();

    // Stop with a savepoint: the answer, then the job ends and leaves the
    // registry.
    let body = json!({ "target_directory": work.path("final") }).to_string();
    let (status, answer) = call(&job, "POST", &format!("/jobs/{}/stop", job.id), token, &body);
    assert_eq!(status, 200, "{answer}");
    let last = PathBuf::from(answer["path"].as_str().expect("a path"));
    assert!(
        last.starts_with(work.path("final")) && last.join("_savepoint").is_file(),
        "{last:?}"
    );
    job.wait();
    assert!(!job.entry.exists());
    assert_eq!(weir_in(&work, &["list"]).stdout, "No running jobs.\n");
    assert_eq!(
        sorted_lines(&work.read("counts.csv")),
        oracle::word_count_lines(&oracle::word_counts(&text))
    );
}

#[test]
fn a_non_loopback_endpoint_needs_the_token_on_every_request() {
    let work = Workdir::new();
    // Bound to every interface by the job file; the token by the flag.
    let token = "a-token-of-our-own-0123456789";
    let mut job = Job::start(
        &work,
        &wordcount_job("[http]\nbind = \"0.0.0.0\""),
        &["--http-token", token],
    );
    assert_eq!(job.json["http"].as_str().map(|a| a.starts_with("0.0.0.0:")), Some(true));
    assert_eq!(job.token, token);
    for path in ["/jobs", "/metrics", &format!("/jobs/{}", job.id), "/nothing-here"] {
        assert_eq!(call(&job, "GET", path, None, ""), (401, error(MISSING)), "{path}");
        assert_eq!(
            call(&job, "GET", path, Some("wrong-token-wrong-token"), ""),
            (401, error(WRONG)),
            "{path}"
        );
    }
    let (status, jobs) = call(&job, "GET", "/jobs", Some(token), "");
    assert_eq!((status, jobs["jobs"][0]["id"].as_str()), (200, Some(job.id.as_str())));
    let bearer = format!("Bearer {token}");
    let (status, metrics) = send(
        job.address,
        "GET",
        "/metrics",
        &[("Authorization", bearer.as_str())],
        "",
    );
    assert_eq!(status, 200);
    // Every refusal is counted: 4 routes, without and with a wrong token.
    assert_eq!(unauthorized(&metrics), Some(8), "{metrics}");
    // The dashboard's files hold no data: a browser loads them without a
    // token (the page sends it with its own requests, refused above).
    for asset in ["/", "/dashboard/dashboard.js", "/dashboard/dashboard.css"] {
        let (status, body) = send(job.address, "GET", asset, &[], "");
        assert_eq!(status, 200, "{asset}: {body}");
    }
    assert_eq!(call(&job, "POST", "/", None, "").0, 401);
    // The CLI finds the token in the registry.
    let list = weir_in(&work, &["list"]);
    assert!(list.success, "{}", list.stderr);
    assert!(list.stdout.contains(&job.id), "{}", list.stdout);
    job.assert_running();
    drop(job);

    // `--metrics-public`: /metrics answers anyone, nothing else does.
    let work = Workdir::new();
    let job = Job::start(
        &work,
        &wordcount_job(""),
        &["--http-bind", "0.0.0.0", "--metrics-public"],
    );
    let (status, metrics) = send(job.address, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{metrics}");
    assert_eq!(call(&job, "GET", "/jobs", None, ""), (401, error(MISSING)));
}

/// A self-signed certificate for 127.0.0.1 and localhost: (cert, key) PEM.
fn self_signed() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("a certificate");
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

/// A client that trusts only the certificate in `pem`.
fn trusting(pem: &str) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).expect("a PEM certificate");
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .tls_config(tls)
        .build()
        .into()
}

#[test]
fn https_serves_the_given_certificate_and_the_cli_trusts_exactly_it() {
    let work = Workdir::new();
    let (cert, key) = self_signed();
    let cert_path = work.write("cert.pem", &cert);
    let key_path = work.write("key.pem", &key);
    let job = Job::start(
        &work,
        &wordcount_job(""),
        &[
            "--http-cert",
            "cert.pem",
            "--http-key",
            key_path.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(job.json["scheme"], "https");
    assert_eq!(job.json["cert"].as_str().map(Path::new), Some(cert_path.as_path()));
    let url = format!("https://{}/jobs/{}", job.address, job.id);
    let mut answer = trusting(&cert).get(url.as_str()).call().expect("an HTTPS answer");
    assert_eq!(answer.status(), 200);
    let body: Value = serde_json::from_str(&answer.body_mut().read_to_string().expect("a body")).expect("JSON");
    assert_eq!(body["id"], job.id.as_str());
    // Every GET route answers over HTTPS.
    for path in [
        "/".to_string(),
        "/metrics".to_string(),
        "/openapi.json".to_string(),
        "/jobs".to_string(),
        format!("/jobs/{}/vertices/count", job.id),
        format!("/jobs/{}/checkpoints", job.id),
        format!("/jobs/{}/exceptions", job.id),
    ] {
        let answer = trusting(&cert)
            .get(format!("https://{}{path}", job.address).as_str())
            .call()
            .map(|r| r.status().as_u16());
        assert_eq!(answer.ok(), Some(200), "{path}");
    }
    // POST needs the token over HTTPS too.
    let mut refused = trusting(&cert)
        .post(&format!("https://{}/jobs/{}/savepoints", job.address, job.id))
        .send("{}")
        .expect("an answer");
    assert_eq!(refused.status(), 401);
    assert_eq!(
        serde_json::from_str::<Value>(&refused.body_mut().read_to_string().expect("a body")).expect("JSON"),
        error(MISSING)
    );
    // Another certificate is not trusted, and plain HTTP gets no answer.
    let (other, _) = self_signed();
    let untrusted = trusting(&other).get(url.as_str()).call().map(|r| r.status());
    assert!(
        untrusted.is_err(),
        "a client trusting another certificate got {untrusted:?}"
    );
    let mut plain = TcpStream::connect(job.address).expect("connects");
    plain
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a timeout");
    plain
        .write_all(b"GET /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("sends");
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&raw));
    // The CLI trusts the job's certificate through the registry.
    let list = weir_in(&work, &["list"]);
    assert!(list.success, "{}", list.stderr);
    assert!(list.stdout.contains(&job.id), "{}", list.stdout);
    let taken = weir_in(&work, &["savepoint", &job.id, "sp"]);
    assert!(taken.success, "{}", taken.stderr);
    assert!(
        PathBuf::from(taken.stdout.trim()).join("_savepoint").is_file(),
        "{}",
        taken.stdout
    );
}

#[test]
fn a_flood_gets_503_beyond_64_requests_in_flight_while_the_output_stays_exact() {
    const FLOOD: usize = 200;
    const LIMIT: usize = 64;
    let work = Workdir::new();
    let first = oracle::text(100, 51);
    work.write("input.txt", &first);
    // No checkpoints: a savepoint request is answered 409 at once once its
    // body has arrived.
    let no_checkpoints = wordcount_job("").replace("[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 50\n", "");
    let mut job = Job::start(&work, &no_checkpoints, &[]);
    wait_for_counts(&mut job, &work, &first);
    // 200 connections each send a request whose body never completes.
    let head = format!(
        "POST /jobs/{}/savepoints HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{",
        job.id, job.token
    );
    let mut streams: Vec<TcpStream> = (0..FLOOD)
        .map(|_| {
            let mut stream = TcpStream::connect(job.address).expect("connects");
            stream.write_all(head.as_bytes()).expect("sends");
            stream.set_nonblocking(true).expect("non-blocking");
            stream
        })
        .collect();
    // Those beyond the limit are answered 503 at once; the others wait for
    // their bodies.
    let mut answers: Vec<Vec<u8>> = vec![Vec::new(); FLOOD];
    let complete = |raw: &[u8]| raw.windows(4).any(|w| w == b"\r\n\r\n") && raw.ends_with(b"}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while answers.iter().filter(|a| complete(a.as_slice())).count() < FLOOD - LIMIT {
        assert!(Instant::now() < deadline, "the excess was not refused");
        for (stream, answer) in streams.iter_mut().zip(&mut answers) {
            let mut buffer = [0u8; 4096];
            if let Ok(n) = stream.read(&mut buffer) {
                answer.extend_from_slice(&buffer[..n]);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let refused = "{\"error\":\"too many requests in flight (at most 64); try again\"}";
    let answered: Vec<(u16, String)> = answers
        .iter()
        .filter(|a| !a.is_empty())
        .map(|a| parse_answer(&String::from_utf8_lossy(a)))
        .collect();
    assert_eq!(answered, vec![(503, refused.to_string()); FLOOD - LIMIT]);
    // While flooded, every other request is refused too; the job goes on
    // reading its input.
    assert_eq!(send(job.address, "GET", "/jobs", &[], ""), (503, refused.to_string()));
    let second = oracle::text(150, 52);
    let mut input = std::fs::OpenOptions::new()
        .append(true)
        .open(work.path("input.txt"))
        .expect("the input");
    input.write_all(second.as_bytes()).expect("appended");
    drop(input);
    // The held requests complete and are answered.
    let waiting: Vec<usize> = (0..FLOOD).filter(|i| answers[*i].is_empty()).collect();
    assert_eq!(waiting.len(), LIMIT);
    for i in &waiting {
        let stream = &mut streams[*i];
        stream.set_nonblocking(false).expect("blocking");
        stream.write_all(b"}").expect("sends");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("a timeout");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("an answer");
        assert_eq!(
            parse_answer(&raw),
            (
                409,
                "{\"error\":\"job `http-control` has no [checkpoint] table; savepoints need checkpointing\"}"
                    .to_string()
            )
        );
    }
    // Then the endpoint serves again, and the output is exact.
    assert_eq!(call(&job, "GET", "/jobs", None, "").0, 200);
    wait_for_counts(&mut job, &work, &format!("{first}{second}"));
    job.assert_running();
}
