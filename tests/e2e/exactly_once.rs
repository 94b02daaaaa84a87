//! Exactly-once through crashes: a keyed job (traffic Q2) runs with
//! checkpoints, is killed with SIGKILL at random moments at least ten times
//! and restarted with `--restore latest` each time, while injected traps make
//! it restart from its checkpoint inside the process too. Its committed
//! output must equal the failure-free run's and the oracle's exactly:
//! nothing lost, nothing twice.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Workdir, sorted_lines, weir};
use crate::oracle::{self, Lcg};

/// Where the job's committed output goes, and how to read it back.
pub enum Sink {
    /// The transactional `files` sink.
    Files,
    /// The PostgreSQL sink, into this table.
    Postgres(String),
}

/// The test server's connection string (`scripts/test.sh` starts it).
fn test_server() -> String {
    std::env::var("WEIR_TEST_PG").unwrap_or_else(|_| {
        panic!("WEIR_TEST_PG is not set: run ./scripts/test.sh, which starts a private PostgreSQL server")
    })
}

impl Sink {
    /// A PostgreSQL sink into a new, empty table.
    fn postgres(name: &str) -> Self {
        let table = format!("alerts_{name}_{}", std::process::id());
        let mut client =
            postgres::Client::connect(&test_server(), postgres::NoTls).expect("connect to the test server");
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (line text NOT NULL)"
            ))
            .expect("create the table");
        Sink::Postgres(table)
    }

    fn toml(&self) -> String {
        match self {
            Sink::Files => "type = \"files\"\npath = \"out\"\n".to_string(),
            Sink::Postgres(table) => {
                format!(
                    "type = \"postgres\"\nconnection = \"{}\"\ntable = \"{table}\"\n",
                    test_server()
                )
            }
        }
    }

    /// Empties the sink's output (a run that finished before its kill).
    fn reset(&self, dir: &Path) {
        match self {
            Sink::Files => {
                std::fs::remove_dir_all(dir.join("out")).ok();
            }
            Sink::Postgres(table) => {
                let mut client = postgres::Client::connect(&test_server(), postgres::NoTls).expect("connect");
                client.batch_execute(&format!("TRUNCATE {table}")).expect("truncate");
            }
        }
    }

    fn committed(&self, dir: &Path) -> Vec<String> {
        match self {
            Sink::Postgres(table) => {
                let mut client = postgres::Client::connect(&test_server(), postgres::NoTls).expect("connect");
                let rows = client
                    .query(&format!("SELECT line FROM {table}"), &[])
                    .expect("read the table");
                let mut lines: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
                lines.sort();
                lines
            }
            Sink::Files => {
                let out = dir.join("out");
                let mut text = String::new();
                if let Ok(entries) = std::fs::read_dir(&out) {
                    for entry in entries.flatten() {
                        if !entry.file_name().to_string_lossy().starts_with('.') {
                            text.push_str(&std::fs::read_to_string(entry.path()).expect("read a part file"));
                        }
                    }
                }
                sorted_lines(&text)
            }
        }
    }
}

/// The Q2 job with checkpoints every 20 ms, a trap injected on the first
/// attempt at about one record in `modulus`, and `sink`.
fn job(name: &str, backend: &str, sink: &Sink, modulus: u64) -> String {
    format!(
        r#"
[job]
name = "{name}"
dead_letter = "dead.jsonl"
state_backend = "{backend}"

[checkpoint]
dir = "checkpoints"
interval_ms = 20

[restart]
strategy = "fixed-delay"
attempts = 1000
delay_ms = 0

[[source]]
uid = "passings"
type = "file"
path = "passings.csv"

[[operator]]
uid = "traps"
input = "passings"
module = "testkit.wasm"
function = "trap_on_first_attempt"
parallelism = 1
params = {{ modulus = "{modulus}" }}

[[operator]]
uid = "parse"
input = "traps"
module = "traffic.wasm"
function = "parse"
parallelism = 1

[[operator]]
uid = "cloned-plates"
input = "parse"
module = "traffic.wasm"
function = "cloned_plates"
parallelism = 2
key_by = {{ module = "traffic.wasm", function = "plate" }}

[[sink]]
uid = "alerts"
input = "cloned-plates"
{}"#,
        sink.toml()
    )
}

/// Runs the job to the end; returns its stderr.
fn run_to_end(work: &Workdir, restore: bool) -> String {
    let mut command = weir();
    command
        .current_dir(work.dir.path())
        .args(["run", "--quiet", "job.toml"]);
    if restore {
        command.args(["--restore", "latest"]);
    }
    let output = command.output().expect("weir runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "weir run failed:\n{stderr}");
    stderr
}

fn exactly_once_through_kills(backend: &str, sink: Sink, reference_sink: Sink) {
    let name = format!(
        "q2-{backend}-{}",
        if matches!(sink, Sink::Files) {
            "files"
        } else {
            "postgres"
        }
    );
    let input = oracle::passings(400_000, 11);
    let expected = oracle::cloned_plates(&input);

    // The failure-free run: no hash is a multiple of 2^62 in practice, so no
    // trap fires.
    let reference = Workdir::new();
    reference.write("passings.csv", &input);
    reference.write("job.toml", job(&name, backend, &reference_sink, 1 << 62));
    run_to_end(&reference, false);
    let reference_output = reference_sink.committed(reference.dir.path());
    assert_eq!(
        reference_output, expected,
        "the failure-free run differs from the oracle"
    );

    let work = Workdir::new();
    work.write("passings.csv", &input);
    work.write("job.toml", job(&name, backend, &sink, 90_001));
    let mut rng = Lcg::new(2026);
    let mut kills = 0;
    let mut runs = 0;
    while kills < 10 {
        runs += 1;
        assert!(runs < 60, "could not kill the job 10 times in 60 runs");
        let mut child = weir()
            .current_dir(work.dir.path())
            .args(["run", "--quiet", "job.toml", "--restore", "latest"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weir starts");
        std::thread::sleep(Duration::from_millis(150 + rng.below(400)));
        match child.try_wait().expect("poll weir") {
            Some(status) => {
                // It finished before the kill: start over from scratch.
                assert!(status.success(), "weir failed on its own");
                std::fs::remove_dir_all(work.path("checkpoints")).ok();
                sink.reset(work.dir.path());
            }
            None => {
                child.kill().expect("SIGKILL weir");
                child.wait().expect("reap weir");
                kills += 1;
            }
        }
    }
    let stderr = run_to_end(&work, true);
    let recovered = sink.committed(work.dir.path());
    assert_eq!(
        recovered.len(),
        expected.len(),
        "lost or duplicated alerts after {kills} kills:\n{stderr}"
    );
    assert_eq!(
        recovered, reference_output,
        "output after {kills} kills differs from the failure-free run"
    );
}

#[test]
fn heap_state_and_files_sink_are_exactly_once_through_kills_and_traps() {
    exactly_once_through_kills("heap", Sink::Files, Sink::Files);
}

#[test]
fn rocksdb_state_and_files_sink_are_exactly_once_through_kills_and_traps() {
    exactly_once_through_kills("rocksdb", Sink::Files, Sink::Files);
}

#[test]
fn heap_state_and_postgres_sink_are_exactly_once_through_kills_and_traps() {
    exactly_once_through_kills("heap", Sink::postgres("heap"), Sink::postgres("heap_reference"));
}

#[test]
fn rocksdb_state_and_postgres_sink_are_exactly_once_through_kills_and_traps() {
    exactly_once_through_kills(
        "rocksdb",
        Sink::postgres("rocksdb"),
        Sink::postgres("rocksdb_reference"),
    );
}

/// A small checkpointed Q2 run over `passings.csv` in `work`.
fn small_job(extra_checkpoint: &str) -> String {
    job("q2", "heap", &Sink::Files, 1 << 62)
        .replace(
            "interval_ms = 20\n",
            &format!("interval_ms = 20\nretain = 3\n{extra_checkpoint}"),
        )
        .replace(
            "strategy = \"fixed-delay\"\nattempts = 1000",
            "strategy = \"none\"\nattempts = 0",
        )
}

/// The ids of the checkpoint folders under `root`, oldest first.
fn checkpoint_ids(root: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(root)
        .expect("checkpoints exist")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn a_corrupt_checkpoint_is_refused_and_recovery_falls_back_to_an_earlier_one() {
    let work = Workdir::new();
    work.write("passings.csv", oracle::passings(200_000, 5));
    work.write("job.toml", small_job(""));
    run_to_end(&work, false);
    let root = work.path("checkpoints/q2");
    let ids = checkpoint_ids(&root);
    assert_eq!(ids.len(), 3, "three checkpoints are retained: {ids:?}");
    let (oldest, middle, newest) = (ids[0], ids[1], ids[2]);

    // Flip one byte of the newest checkpoint's keyed state, and cut the last
    // byte off the middle checkpoint's manifest.
    let state = root.join("files").join(format!("chk{newest}-cloned-plates-0.keyed"));
    let listing: Vec<String> = std::fs::read_dir(root.join("files"))
        .expect("state files")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut bytes = std::fs::read(&state).unwrap_or_else(|e| panic!("{}: {e}; files: {listing:?}", state.display()));
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&state, bytes).expect("corrupt the state");
    let manifest = root.join(format!("chk-{middle:06}/_manifest"));
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &bytes[..bytes.len() - 1]).expect("truncate the manifest");

    let output = weir()
        .current_dir(work.dir.path())
        .env("WEIR_LOG", "info")
        .args(["run", "--quiet", "job.toml", "--restore", "latest"])
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for expected in [
        format!(
            "checkpoint {newest} is corrupt: checksum mismatch in chk{newest}-cloned-plates-0.keyed; falling back to an earlier checkpoint"
        ),
        format!(
            "checkpoint {middle} is corrupt: checksum mismatch in the manifest; falling back to an earlier checkpoint"
        ),
        format!("restoring job `q2` from checkpoint {oldest}"),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in:\n{stderr}");
    }
}

#[test]
fn a_checkpoint_that_cannot_be_written_fails_only_itself_until_the_tolerance_runs_out() {
    let input = oracle::passings(200_000, 6);
    let expected = oracle::cloned_plates(&input);
    for (tolerable, succeeds) in [(0, false), (1, true)] {
        let work = Workdir::new();
        work.write("passings.csv", &input);
        work.write("job.toml", small_job(&format!("tolerable_failures = {tolerable}\n")));
        // A file where checkpoint 1's folder should go: writing it fails.
        std::fs::create_dir_all(work.path("checkpoints/q2")).expect("checkpoint folder");
        work.write("checkpoints/q2/chk-000001", "in the way");
        let output = weir()
            .current_dir(work.dir.path())
            .args(["run", "--quiet", "job.toml"])
            .output()
            .expect("weir runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.success(),
            succeeds,
            "tolerable_failures = {tolerable}:\n{stderr}"
        );
        if succeeds {
            assert_eq!(Sink::Files.committed(work.dir.path()), expected);
        } else {
            assert!(
                stderr.contains(
                    "error: job `q2` failed: 1 checkpoints failed in a row, more than the 0 tolerated; the last: checkpoint 1 could not be written: cannot create "
                ),
                "{stderr}"
            );
        }
    }
}

#[test]
fn a_run_restores_from_a_named_checkpoint_folder() {
    let work = Workdir::new();
    work.write("passings.csv", oracle::passings(100_000, 8));
    work.write("job.toml", small_job(""));
    run_to_end(&work, false);
    let root = work.path("checkpoints/q2");
    let ids = checkpoint_ids(&root);
    let folder = format!("checkpoints/q2/chk-{:06}", ids[0]);
    let restore = |folder: &str| {
        weir()
            .current_dir(work.dir.path())
            .env("WEIR_LOG", "info")
            .args(["run", "--quiet", "job.toml", "--restore", folder])
            .output()
            .expect("weir runs")
    };
    let output = restore(&folder);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("restoring job `q2` from checkpoint {}", ids[0])),
        "{stderr}"
    );

    let output = restore("checkpoints/q2/nothing-here");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "error: job `q2` failed: not a checkpoint folder (expected …/<job>/chk-NNNNNN): checkpoints/q2/nothing-here"
        ),
        "{stderr}"
    );
}
