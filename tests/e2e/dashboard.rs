//! The dashboard (`GET /` of `weir run --http 0`) in a real browser.
//!
//! A traffic job (generator capped at a rate, so it runs until killed ->
//! `parse` -> `cloned-plates` keyed over two subtasks -> `files` sink, a
//! checkpoint every half second) serves its dashboard; the browser test
//! `tests/browser/dashboard.mjs` opens it in headless Chromium through
//! playwright-core, waits until the graph shows every vertex, reads the
//! record count the source's box shows until a later refresh shows a larger
//! one, and writes a screenshot, which must be a 1280x800 PNG.
//!
//! Chromium (`/usr/bin/chromium`) and playwright-core (`$WEIR_NODE_DIR`,
//! default `~/.cache/weir/node`) come from `scripts/setup.sh`'s
//! `weir_browser_setup`, which `scripts/test.sh` runs. Without them the
//! test is skipped with a message, except in CI (`CI` set), where it fails.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::harness::{Workdir, start, workspace};

/// The job: every vertex kind, a key-by over two subtasks, checkpoints.
const JOB: &str = r#"
[job]
name = "dashboard"

[checkpoint]
dir = "checkpoints"
interval_ms = 500

[[source]]
uid = "cameras"
type = "generator"
events_per_second = 2000
parallelism = 1

[[operator]]
uid = "parse"
input = "cameras"
module = "traffic.wasm"
function = "parse"
parallelism = 1

[[operator]]
uid = "cloned-plates"
input = "parse"
module = "traffic.wasm"
function = "cloned_plates"
key_by = { module = "traffic.wasm", function = "plate" }
parallelism = 2

[[sink]]
uid = "alerts"
input = "cloned-plates"
type = "files"
path = "alerts"
"#;

/// The vertices the graph must show, the source first.
const UIDS: [&str; 4] = ["cameras", "parse", "cloned-plates", "alerts"];

/// The browser Chromium the test drives.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A running `weir run --http 0`, killed when dropped.
struct Job {
    child: Child,
    /// Its HTTP endpoint, from its registry entry.
    address: SocketAddr,
}

impl Job {
    /// Starts the job in `work` and waits for its registry entry to name
    /// the HTTP address.
    fn start(work: &Workdir) -> Self {
        work.write("job.toml", JOB);
        let mut child = start(work, &["--http", "0"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(address) = registered(work) {
                return Self { child, address };
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
    fn assert_running(&mut self) {
        assert!(self.child.try_wait().expect("polls").is_none(), "the job ended early");
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP address in the job's registry entry, once it has one.
fn registered(work: &Workdir) -> Option<SocketAddr> {
    let (_, json) = crate::http::registry_entry(work)?;
    json["http"].as_str()?.parse().ok()
}

/// Where `weir_browser_setup` installs playwright-core.
fn node_dir() -> PathBuf {
    std::env::var_os("WEIR_NODE_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir/node"),
        PathBuf::from,
    )
}

/// Whether Chromium, node and playwright-core are there; if not, panics in
/// CI and says why the test is skipped elsewhere.
fn browser_installed() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = node_dir().join("node_modules/playwright-core/package.json");
    let missing: Vec<String> = [
        (!std::path::Path::new(CHROMIUM).exists()).then(|| CHROMIUM.to_string()),
        (!node).then(|| "node".to_string()),
        (!playwright.exists()).then(|| playwright.display().to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "the dashboard's browser test needs {} (source scripts/setup.sh && weir_browser_setup)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("skipped: {message}");
    false
}

/// The width and height of a PNG, or `None` if `bytes` is not one.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let header = bytes.get(..24)?;
    if &header[..8] != b"\x89PNG\r\n\x1a\n" || &header[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    Some((word(16), word(20)))
}

#[test]
fn dashboard_shows_the_graph_and_rising_counts_in_a_browser() {
    if !browser_installed() {
        return;
    }
    let work = Workdir::new();
    let mut job = Job::start(&work);
    let output = Command::new("node")
        .arg(workspace().join("tests/browser/dashboard.mjs"))
        .arg(format!("http://{}/", job.address))
        .arg(work.path(""))
        .args(UIDS)
        .env("WEIR_NODE_DIR", node_dir())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser test failed:\n{stdout}{stderr}");
    assert!(
        stdout.contains("dashboard test: 4 vertices shown; cameras records "),
        "{stdout}"
    );
    job.assert_running();
    let screenshot = std::fs::read(work.path("dashboard.png")).expect("the screenshot");
    assert_eq!(png_size(&screenshot), Some((1280, 800)), "not a 1280x800 PNG");
    drop(job);
}
