//! Savepoints through the control API: a job reading a throttled generator
//! counts passings per camera (keyed state) into the exactly-once `files`
//! sink; the test finds it with `weir list`, stops it with
//! `weir stop --savepoint`, restarts it with `--from-savepoint` (into the
//! other state backend) and checks that the union of the committed output
//! equals the oracle of the whole input: every `camera,k` for `k` from 1 to
//! the camera's number of passings, once. Then the refusals: state of a uid
//! the job lacks, a corrupt savepoint, another WIT version, disposing of a
//! folder that is no savepoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::harness::{Workdir, command, sorted_lines, start, wait_success, weir_in};

const EVENTS: u64 = 6_000;
const CAMERAS: u32 = 7;

/// The job: generator → parse → per-camera count → files. `extra` goes into
/// the generator's table. (RocksDB checkpoints are incremental by default.)
fn job(name: &str, backend: &str, count_uid: &str, extra: &str) -> String {
    job_trapping(name, backend, count_uid, extra, 1 << 62)
}

/// [`job`], its first attempt trapping at about one record in `modulus`.
fn job_trapping(name: &str, backend: &str, count_uid: &str, extra: &str, modulus: u64) -> String {
    format!(
        r#"
[job]
name = "{name}"
dead_letter = "dead.jsonl"
state_backend = "{backend}"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[restart]
strategy = "fixed-delay"
attempts = 100
delay_ms = 0

[[source]]
uid = "passings"
type = "generator"
events = {EVENTS}
cameras = {CAMERAS}
seed = 7
parallelism = 1
{extra}

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
uid = "{count_uid}"
input = "parse"
module = "wordcount.wasm"
function = "count"
parallelism = 2
key_by = {{ module = "traffic.wasm", function = "camera" }}

[[sink]]
uid = "out"
input = "{count_uid}"
type = "files"
path = "out"
"#
    )
}

/// The generator's input, written by a job with no operator at all.
fn input(work: &Workdir) -> String {
    input_with(work, "")
}

/// The input of a generator with `extra` settings.
fn input_with(work: &Workdir, extra: &str) -> String {
    work.write(
        "input.toml",
        format!(
            "[job]\nname = \"input\"\n\n[[source]]\nuid = \"passings\"\ntype = \"generator\"\nevents = {EVENTS}\ncameras = {CAMERAS}\nseed = 7\nparallelism = 1\n{extra}\n\n[[sink]]\nuid = \"csv\"\ninput = \"passings\"\ntype = \"file\"\npath = \"input.csv\"\n"
        ),
    );
    let output = command(work)
        .args(["run", "--quiet", "input.toml"])
        .output()
        .expect("weir runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    work.read("input.csv")
}

/// The oracle: `camera,k` for every `k` from 1 to the camera's passings.
fn oracle(csv: &str) -> Vec<String> {
    let mut per_camera: BTreeMap<&str, u64> = BTreeMap::new();
    for line in csv.lines() {
        let camera = line.split(',').nth(1).expect("a camera field");
        *per_camera.entry(camera).or_default() += 1;
    }
    assert_eq!(per_camera.values().sum::<u64>(), EVENTS);
    let mut lines: Vec<String> = per_camera
        .iter()
        .flat_map(|(camera, n)| (1..=*n).map(move |k| format!("{camera},{k}")))
        .collect();
    lines.sort();
    lines
}

/// The committed lines of the `files` sink in `dir/out`.
fn committed(dir: &Path) -> Vec<String> {
    sorted_lines(&read_parts(&dir.join("out")))
}

/// The committed part files of a `files` sink folder, concatenated.
fn read_parts(out: &Path) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(out) {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                text.push_str(&std::fs::read_to_string(entry.path()).expect("read a part file"));
            }
        }
    }
    text
}

/// Waits until `weir list` shows job `name` with a completed checkpoint;
/// returns its id and the listing.
fn wait_listed(work: &Workdir, name: &str) -> (String, String) {
    wait_row(work, name, true)
}

/// Waits until `weir list` shows job `name` (with a completed checkpoint if
/// `checkpointed`); returns its id and the listing.
fn wait_row(work: &Workdir, name: &str, checkpointed: bool) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = weir_in(work, &["list"]);
        assert!(list.success, "weir list failed: {}", list.stderr);
        let row = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(name));
        if let Some(row) = row {
            let fields: Vec<&str> = row.split_whitespace().collect();
            if fields.len() == 4 && (fields[3] != "-" || !checkpointed) {
                assert!(list.stdout.starts_with("JOB ID"), "{}", list.stdout);
                return (fields[0].to_string(), list.stdout.clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "job `{name}` never showed a checkpoint in `weir list`"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the job on `first` until `weir stop --savepoint`, then resumes it
/// from the savepoint on `second` (with a trap that makes the resumed job
/// restart once); returns the work folder and the savepoint.
fn stop_and_resume(name: &str, first: &str, second: &str) -> (Workdir, PathBuf) {
    let work = Workdir::new();
    let expected = oracle(&input(&work));

    work.write("job.toml", job(name, first, "count", "events_per_second = 500"));
    let child = start(&work, &[]);
    let (id, listing) = wait_listed(&work, name);
    assert_eq!(id.len(), 16, "{listing}");
    let stop = weir_in(&work, &["stop", "--savepoint", "savepoints", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    let savepoint = PathBuf::from(stop.stdout.trim());
    assert!(
        savepoint.starts_with(work.path("savepoints"))
            && savepoint
                .file_name()
                .expect("file system")
                .to_string_lossy()
                .starts_with(&format!("savepoint-{name}-")),
        "{savepoint:?}"
    );
    assert!(savepoint.join("_savepoint").is_file());
    wait_success(child);
    // Always full and canonical, whatever the backend wrote into checkpoints
    // (incremental RocksDB checkpoints are native SST files).
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("a files folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    // Beside the state: a copy of every module that ran.
    let (modules, saved): (Vec<String>, Vec<String>) = names(&savepoint.join("files"))
        .into_iter()
        .partition(|n| n.starts_with("module-") && n.ends_with(".wasm"));
    assert_eq!(saved.len(), 2, "one file per keyed subtask: {saved:?}");
    assert!(saved.iter().all(|n| n.ends_with(".keyed")), "{saved:?}");
    assert!(!modules.is_empty(), "no module copies");
    let checkpointed = names(&work.path("checkpoints").join(name).join("files"));
    assert_eq!(
        checkpointed.iter().any(|n| n.ends_with(".sst")),
        first == "rocksdb",
        "{checkpointed:?}"
    );
    assert_eq!(weir_in(&work, &["list"]).stdout, "No running jobs.\n");
    let before = committed(work.dir.path());
    assert!(
        !before.is_empty() && before.len() < expected.len(),
        "the stop should fall in the middle of the input ({} of {} lines)",
        before.len(),
        expected.len()
    );

    // The resumed job fails on its first attempt and restarts from the
    // savepoint (or a later checkpoint): still exact.
    work.write("job.toml", job_trapping(name, second, "count", "", 300));
    let resumed = start(&work, &["--from-savepoint", savepoint.to_str().expect("a UTF-8 path")]);
    let stderr = wait_success(resumed);
    assert!(
        stderr.contains("restarts: 1\n"),
        "the trap should have fired once:\n{stderr}"
    );
    assert_eq!(committed(work.dir.path()), expected, "nothing lost, nothing twice");
    (work, savepoint)
}

#[test]
fn stop_with_savepoint_on_heap_resumes_on_rocksdb_exactly_once() {
    stop_and_resume("sp-heap", "heap", "rocksdb");
}

#[test]
fn stop_with_savepoint_on_incremental_rocksdb_resumes_on_heap_exactly_once() {
    stop_and_resume("sp-rocks", "rocksdb", "heap");
}

/// A copy of the savepoint folder `from` at `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("file system");
    for entry in std::fs::read_dir(from).expect("file system").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file system").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("file system");
        }
    }
}

/// Runs `job.toml` from `savepoint` and returns its stderr; asserts failure.
fn refused(work: &Workdir, savepoint: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--quiet",
        "job.toml",
        "--from-savepoint",
        savepoint.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    let finished = weir_in(work, &args);
    assert!(!finished.success, "the run should have been refused");
    finished.stderr
}

#[test]
fn savepoints_are_refused_with_exact_messages() {
    let (work, savepoint) = stop_and_resume("sp-refusals", "heap", "heap");
    let sp = savepoint.display().to_string();

    // State of a uid the job does not have.
    work.write("job.toml", job("sp-refusals", "heap", "count-v2", ""));
    assert_eq!(
        refused(&work, &savepoint, &[]),
        format!(
            "error: job `sp-refusals` failed: savepoint {sp} has state for operator uids that are not in the job: `count` (pass --allow-non-restored-state to start without it)\n"
        )
    );
    // With the flag, `count-v2` starts empty and the rest resumes.
    let finished = weir_in(
        &work,
        &[
            "run",
            "--quiet",
            "job.toml",
            "--from-savepoint",
            &sp,
            "--allow-non-restored-state",
        ],
    );
    assert!(finished.success, "{}", finished.stderr);

    // Another number of key groups.
    work.write(
        "job.toml",
        job("sp-refusals", "heap", "count", "").replacen("[job]\n", "[job]\nmax_parallelism = 64\n", 1),
    );
    assert_eq!(
        refused(&work, &savepoint, &[]),
        format!(
            "error: job `sp-refusals` failed: savepoint {sp} was taken with max_parallelism 128, but the job has 64: keyed state cannot move to other key groups\n"
        )
    );

    // A corrupt manifest.
    work.write("job.toml", job("sp-refusals", "heap", "count", ""));
    let corrupt = work.path("corrupt");
    copy_dir(&savepoint, &corrupt);
    let manifest = corrupt.join("_savepoint");
    let mut bytes = std::fs::read(&manifest).expect("file system");
    bytes[20] ^= 0xff;
    std::fs::write(&manifest, &bytes).expect("file system");
    assert_eq!(
        refused(&work, &corrupt, &[]),
        format!(
            "error: job `sp-refusals` failed: savepoint {} is corrupt: checksum mismatch in the manifest\n",
            corrupt.display()
        )
    );

    // A corrupt state file.
    let damaged = work.path("damaged");
    copy_dir(&savepoint, &damaged);
    let state_file = std::fs::read_dir(damaged.join("files"))
        .expect("file system")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "keyed"))
        .expect("a keyed state file");
    let mut bytes = std::fs::read(&state_file).expect("file system");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&state_file, &bytes).expect("file system");
    assert_eq!(
        refused(&work, &damaged, &[]),
        format!(
            "error: job `sp-refusals` failed: savepoint {} is corrupt: checksum mismatch in {}\n",
            damaged.display(),
            state_file.file_name().expect("a file name").to_string_lossy()
        )
    );

    // Another WIT version: the package name rewritten, the checksum redone.
    let other = work.path("other-wit");
    copy_dir(&savepoint, &other);
    let manifest = other.join("_savepoint");
    let bytes = std::fs::read(&manifest).expect("file system");
    let body = &bytes[..bytes.len() - 32];
    let at = body
        .windows(14)
        .position(|w| w == b"weir:udf@0.1.0")
        .expect("the manifest names its WIT package");
    let mut body = body.to_vec();
    body[at..at + 14].copy_from_slice(b"weir:udf@0.9.0");
    let digest = sha2::Sha256::digest(&body);
    body.extend_from_slice(&digest);
    std::fs::write(&manifest, &body).expect("file system");
    assert_eq!(
        refused(&work, &other, &[]),
        format!(
            "error: job `sp-refusals` failed: savepoint {} was taken with weir:udf@0.9.0, but this weir implements weir:udf@0.1.0\n",
            other.display()
        )
    );

    // Dispose: refused for a folder that is no savepoint, done for one.
    let not_one = work.path("out");
    let finished = weir_in(
        &work,
        &["savepoint", "dispose", not_one.to_str().expect("a UTF-8 path")],
    );
    assert!(!finished.success);
    assert_eq!(
        finished.stderr,
        format!(
            "error: {} is not a savepoint (it has no readable `_savepoint` manifest)\n",
            not_one.display()
        )
    );
    assert!(not_one.is_dir());
    let finished = weir_in(&work, &["savepoint", "dispose", &sp]);
    assert!(finished.success, "{}", finished.stderr);
    assert_eq!(finished.stdout, format!("disposed of savepoint {sp}\n"));
    assert!(!savepoint.exists());
}

#[test]
fn a_savepoint_of_a_running_job_leaves_it_running() {
    let work = Workdir::new();
    let expected = oracle(&input(&work));
    work.write(
        "job.toml",
        job("sp-running", "heap", "count", "events_per_second = 1000"),
    );
    let child = start(&work, &[]);
    let (id, _) = wait_listed(&work, "sp-running");
    // A prefix of the id is enough.
    let taken = weir_in(&work, &["savepoint", &id[..6], "savepoints"]);
    assert!(taken.success, "weir savepoint failed: {}", taken.stderr);
    let savepoint = PathBuf::from(taken.stdout.trim());
    assert!(savepoint.join("_savepoint").is_file(), "{savepoint:?}");
    // The job goes on to the end of its input, unaffected.
    wait_success(child);
    assert_eq!(committed(work.dir.path()), expected);
    // Checkpoint retention never touches the savepoint: it still restores.
    // Into another sink (`out2`, so the old sink's state is not restored):
    // what follows the savepoint, i.e. per camera a suffix `m..=n` of its
    // counts, each once.
    let job2 = job("sp-running", "heap", "count", "")
        .replace("uid = \"out\"", "uid = \"out2\"")
        .replace("path = \"out\"", "path = \"out2\"");
    work.write("job.toml", job2);
    let resumed = weir_in(
        &work,
        &[
            "run",
            "--quiet",
            "job.toml",
            "--from-savepoint",
            savepoint.to_str().expect("a UTF-8 path"),
            "--allow-non-restored-state",
        ],
    );
    assert!(resumed.success, "{}", resumed.stderr);
    let mut after: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in sorted_lines(&read_parts(&work.path("out2"))) {
        let (camera, k) = line.split_once(',').expect("camera,count");
        after
            .entry(camera.to_string())
            .or_default()
            .push(k.parse().expect("a count"));
    }
    let total: usize = after.values().map(Vec::len).sum();
    assert!(total > 0 && total < expected.len(), "{total} of {}", expected.len());
    for (camera, mut counts) in after {
        counts.sort();
        let n = expected
            .iter()
            .filter(|l| l.split(',').next() == Some(camera.as_str()))
            .count() as u64;
        let first = counts[0];
        assert_eq!(counts, (first..=n).collect::<Vec<_>>(), "camera {camera}");
    }

    let unknown = weir_in(&work, &["savepoint", "0123456789abcdef"]);
    assert!(!unknown.success);
    assert_eq!(
        unknown.stderr,
        "error: no running job has the id `0123456789abcdef` (see `weir list`)\n"
    );
}

/// Event-time windows across a stop: 1-second tumbling windows of the flow
/// per camera (count, sum and max of the speeds). The generator's jitter
/// (up to 4 s) stays within the 5-second watermark bound, so no passing is
/// late and the oracle is simply every window's aggregate.
fn window_job(name: &str, backend: &str, extra: &str) -> String {
    format!(
        r#"
[job]
name = "{name}"
dead_letter = "dead.jsonl"
state_backend = "{backend}"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[[source]]
uid = "passings"
type = "generator"
events = {EVENTS}
cameras = {CAMERAS}
seed = 7
rate = 500
parallelism = 1
{extra}

[[operator]]
uid = "parse"
input = "passings"
module = "traffic.wasm"
function = "parse"
parallelism = 1
watermarks = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 5000, interval_ms = 20 }}

[[operator]]
uid = "flow"
input = "parse"
module = "traffic.wasm"
function = "flow"
parallelism = 2
key_by = {{ module = "traffic.wasm", function = "camera" }}
window = {{ type = "tumbling", size_ms = 1000 }}

[[sink]]
uid = "out"
input = "flow"
type = "files"
path = "out"
"#
    )
}

fn window_oracle(csv: &str) -> Vec<String> {
    let mut windows: BTreeMap<(String, i64), (u64, u64, u64)> = BTreeMap::new();
    for line in csv.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let ts: i64 = fields[0].parse().expect("ts");
        let speed: u64 = fields[3].parse().expect("speed");
        let entry = windows
            .entry((fields[1].to_string(), ts - ts.rem_euclid(1000)))
            .or_insert((0, 0, 0));
        entry.0 += 1;
        entry.1 += speed;
        entry.2 = entry.2.max(speed);
    }
    let mut lines: Vec<String> = windows
        .into_iter()
        .map(|((camera, start), (count, sum, max))| format!("{camera},{start},{count},{sum},{max}"))
        .collect();
    lines.sort();
    lines
}

#[test]
fn stop_with_savepoint_fires_no_window_early_and_the_resumed_job_completes_them() {
    let work = Workdir::new();
    let expected = window_oracle(&input_with(&work, "rate = 500"));
    assert!(expected.len() > 50, "{}", expected.len());
    work.write(
        "job.toml",
        window_job("sp-windows", "rocksdb", "events_per_second = 500"),
    );
    let child = start(&work, &[]);
    let (id, _) = wait_listed(&work, "sp-windows");
    let stop = weir_in(&work, &["stop", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    // Without a folder, the job's default one.
    let savepoint = PathBuf::from(stop.stdout.trim());
    assert!(
        savepoint.starts_with(work.path("checkpoints").join("sp-windows").join("savepoints")),
        "{savepoint:?}"
    );
    wait_success(child);
    // Stopping fired no window with part of its passings (no final
    // watermark): what was committed are complete windows only.
    let before = committed(work.dir.path());
    assert!(before.len() < expected.len());
    assert!(
        before.iter().all(|line| expected.binary_search(line).is_ok()),
        "a window fired early: {before:?}"
    );
    work.write("job.toml", window_job("sp-windows", "heap", ""));
    wait_success(start(
        &work,
        &["--from-savepoint", savepoint.to_str().expect("a UTF-8 path")],
    ));
    assert_eq!(committed(work.dir.path()), expected);
}

#[test]
fn a_job_without_checkpoints_takes_no_savepoint_and_a_killed_job_leaves_the_list() {
    let work = Workdir::new();
    work.write(
        "job.toml",
            "[job]\nname = \"sp-plain\"\n\n[[source]]\nuid = \"passings\"\ntype = \"generator\"\nparallelism = 1\nevents_per_second = 100\n\n[[sink]]\nuid = \"csv\"\ninput = \"passings\"\ntype = \"file\"\npath = \"out.csv\"\n",
    );
    let mut child = start(&work, &[]);
    let (id, listing) = wait_row(&work, "sp-plain", false);
    assert!(
        listing.lines().nth(1).is_some_and(|row| row.ends_with(" -")),
        "{listing}"
    );
    let refused = weir_in(&work, &["savepoint", &id, "savepoints"]);
    assert!(!refused.success);
    assert_eq!(
        refused.stderr,
        "error: job `sp-plain` has no [checkpoint] table; savepoints need checkpointing\n"
    );
    // Killed, it cannot remove its entry: `weir list` finds it stale and does.
    child.kill().expect("kill the job");
    child.wait().expect("the job ends");
    assert!(work.path("home/jobs").join(format!("{id}.json")).is_file());
    assert_eq!(weir_in(&work, &["list"]).stdout, "No running jobs.\n");
    assert!(!work.path("home/jobs").join(format!("{id}.json")).exists());
}
