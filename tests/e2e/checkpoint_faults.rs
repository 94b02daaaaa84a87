//! Checkpoints that fail, and checkpoints that cannot be restored: the run
//! must end with an error that names the checkpoint and the reason — never
//! hang, never leave the failed checkpoint's files behind, never start over
//! silently.
//!
//! The final checkpoint is made to fail as a full disk makes it fail: the
//! checkpoint folder is a 2 MiB tmpfs and the keyed state is larger. That
//! needs `mount`, so these tests run as root (as CI does); without it they
//! fail, they do not skip.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Workdir, sorted_lines, weir};

/// The job: commands keyed by their first word into the testkit's state
/// probe, which keeps each key's value, into the exactly-once `files` sink.
/// Every vertex has one subtask, so one subtask declines and one waits.
fn job(checkpoint: &str, restart: &str) -> String {
    format!(
        r#"
[job]
name = "faults"
dead_letter = "dead.jsonl"
state_backend = "heap"
parallelism = 1

[checkpoint]
dir = "checkpoints"
{checkpoint}

[restart]
{restart}

[[source]]
uid = "commands"
type = "file"
path = "commands.txt"

[[operator]]
uid = "probe"
input = "commands"
module = "testkit.wasm"
function = "state_probe"
key_by = {{ module = "testkit.wasm", function = "first_word" }}

[[sink]]
uid = "out"
input = "probe"
type = "files"
path = "out"
"#
    )
}

/// `keys` commands that each set a distinct key's value to 200 bytes: a
/// keyed state of about `keys × 210` bytes.
fn commands(keys: usize) -> String {
    (0..keys)
        .map(|k| format!("k{k:06} value set {}\n", "v".repeat(200)))
        .collect()
}

/// What the job emits for `commands`.
fn expected(commands: &str) -> Vec<String> {
    sorted_lines(
        &commands
            .lines()
            .map(|line| format!("{line} -> ok\n"))
            .collect::<String>(),
    )
}

/// The committed lines of the `files` sink in `work/out`, sorted.
fn committed(work: &Workdir) -> Vec<String> {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(work.path("out")) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) && !entry.file_name().to_string_lossy().starts_with('.') {
                text.push_str(&std::fs::read_to_string(entry.path()).expect("read a part file"));
            }
        }
    }
    sorted_lines(&text)
}

/// A tmpfs mounted at a folder, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`2m`) at `path`, or fails the test.
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("the mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("`mount` runs");
        assert!(
            output.status.success(),
            "cannot mount a {size} tmpfs at {} (this test needs root): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        Self(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// How a bounded run ended.
struct Ended {
    code: Option<i32>,
    stderr: String,
}

/// Runs `weir run job.toml ARGS` in `work`, logging warnings. A hang guard,
/// not a timing assertion: if it has not ended after five minutes, it is
/// killed and the test fails.
fn run_bounded(work: &Workdir, args: &[&str]) -> Ended {
    let mut child = weir()
        .current_dir(work.dir.path())
        .env("WEIR_LOG", "warn")
        .args(["run", "--quiet", "job.toml"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll weir") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            panic!("weir has not ended after five minutes: it hangs. Its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ended {
        code: status.code(),
        stderr: reader.join().expect("read stderr"),
    }
}

/// The entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Fills the file system of `dir` up to its last byte with `dir/filler`
/// (outside the job's checkpoint folder, which a run sweeps).
fn fill(dir: &Path) {
    let mut filler = std::fs::File::create(dir.join("filler")).expect("create the filler");
    let block = vec![0u8; 64 * 1024];
    loop {
        match std::io::Write::write(&mut filler, &block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => panic!("fill {}: {error}", dir.display()),
        }
    }
}

/// Runs the job whose final (and only) checkpoint fails with `reason`, once
/// restarted, and checks that the run ends with the error naming the
/// checkpoint and the reason, committed nothing and left no file of the
/// checkpoint behind.
fn final_checkpoint_fails(work: &Workdir, reason: &str) {
    work.write(
        "job.toml",
        job(
            "interval_ms = 3600000\ntolerable_failures = 1",
            "strategy = \"fixed-delay\"\nattempts = 1\ndelay_ms = 0",
        ),
    );
    let ended = run_bounded(work, &[]);
    let cause = format!(
        "the final checkpoint 1 failed, so `out#0` can never commit the output it pre-committed for it: checkpoint 1 declined by probe#0: {reason}"
    );
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    let restarted = format!("job `faults` failed: {cause}; restarting from the beginning in 0 ms (restart 1 of 1)");
    assert_eq!(
        ended.stderr.matches(&restarted).count(),
        1,
        "the first attempt fails and restarts once:\n{}",
        ended.stderr
    );
    assert!(
        ended
            .stderr
            .lines()
            .any(|line| line == format!("error: job `faults` failed: {cause}")),
        "the second attempt fails the run:\n{}",
        ended.stderr
    );
    assert_eq!(committed(work), Vec::<String>::new(), "nothing is committed");
    assert_eq!(listing(&work.path("checkpoints/faults")), ["files"]);
    assert_eq!(
        listing(&work.path("checkpoints/faults/files")),
        Vec::<String>::new(),
        "no file of the failed checkpoint is left"
    );
}

#[test]
fn a_final_checkpoint_declined_on_a_full_disk_fails_the_run_instead_of_hanging() {
    let work = Workdir::new();
    work.write("commands.txt", commands(300));
    let disk = Tmpfs::mount(&work.path("checkpoints"), "2m");
    fill(&disk.0);
    // The snapshot fails at once, often before the sink has stopped reading
    // its control channel, which used to leave it waiting for ever.
    final_checkpoint_fails(
        &work,
        "cannot write checkpoints/faults/files/.chk1-probe-0.keyed.tmp: No space left on device (os error 28)",
    );
}

#[test]
fn a_final_checkpoint_that_fills_the_disk_fails_the_run_and_frees_the_disk() {
    let work = Workdir::new();
    // About 4 MiB of keyed state, for a 2 MiB disk.
    work.write("commands.txt", commands(20_000));
    let _disk = Tmpfs::mount(&work.path("checkpoints"), "2m");
    final_checkpoint_fails(&work, "cannot write keyed state: No space left on device (os error 28)");
}

/// Runs the job with checkpoints every 20 ms to the end; returns the ids of
/// its retained checkpoints.
fn checkpointed_run(work: &Workdir, input: &str) -> Vec<u64> {
    work.write("commands.txt", input);
    work.write("job.toml", job("interval_ms = 20\nretain = 3", "strategy = \"none\""));
    let ended = run_bounded(work, &[]);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert_eq!(committed(work), expected(input));
    let mut ids: Vec<u64> = listing(&work.path("checkpoints/faults"))
        .iter()
        .filter_map(|name| name.strip_prefix("chk-").and_then(|n| n.parse().ok()))
        .collect();
    ids.sort_unstable();
    assert!(!ids.is_empty(), "the final checkpoint at least");
    ids
}

#[test]
fn restoring_the_latest_checkpoint_when_none_is_intact_is_refused_with_every_reason() {
    let work = Workdir::new();
    let input = commands(50_000);
    let ids = checkpointed_run(&work, &input);
    for id in &ids {
        let manifest = work.path(&format!("checkpoints/faults/chk-{id:06}/_manifest"));
        let bytes = std::fs::read(&manifest).expect("a manifest");
        std::fs::write(&manifest, &bytes[..bytes.len() - 1]).expect("truncate the manifest");
    }

    let ended = run_bounded(&work, &["--restore", "latest"]);
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    let reasons: Vec<String> = ids
        .iter()
        .rev()
        .map(|id| format!("checkpoint {id} is corrupt: checksum mismatch in the manifest"))
        .collect();
    let error = format!(
        "error: job `faults` failed: cannot restore the latest checkpoint: no checkpoint in checkpoints/faults is intact ({}); run without --restore to start from the beginning",
        reasons.join("; ")
    );
    assert!(
        ended.stderr.lines().any(|line| line == error),
        "missing `{error}` in:\n{}",
        ended.stderr
    );
    assert_eq!(committed(&work), expected(&input), "nothing ran again");
}

#[test]
fn restoring_the_latest_checkpoint_when_there_is_none_starts_from_the_beginning_with_a_warning() {
    let work = Workdir::new();
    let input = commands(1_000);
    work.write("commands.txt", &input);
    work.write("job.toml", job("interval_ms = 20", "strategy = \"none\""));
    let ended = run_bounded(&work, &["--restore", "latest"]);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    let warning = "WARN no complete checkpoint in checkpoints/faults; starting from the beginning";
    assert!(
        ended.stderr.lines().any(|line| line.ends_with(warning)),
        "missing `{warning}` in:\n{}",
        ended.stderr
    );
    assert_eq!(committed(&work), expected(&input));
}
