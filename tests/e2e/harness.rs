//! Running `weir` and building the UDFs the tests use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The cargo target folder this test binary was built into.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // <target>/<profile>/deps/e2e-<hash>
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the UDF components (once per test run) and returns their folder.
pub fn udf_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir();
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .current_dir(workspace())
            .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(&target)
            .args(["-p", "wordcount", "-p", "traffic", "-p", "testkit", "-p", "not-a-udf"])
            .args(["-p", "counter-v1", "-p", "counter-v1b"])
            .args(["-p", "counter-v2", "-p", "counter-v2b"])
            .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the UDF components failed");
        target.join("wasm32-wasip2").join("release")
    })
}

/// Path of the UDF component `name` (`wordcount`, `traffic`, `testkit`...).
pub fn module(name: &str) -> PathBuf {
    udf_dir().join(format!("{name}.wasm"))
}

/// A `weir` command whose module path holds the UDFs (and whose job
/// registry is in the target folder, not in the user's home).
pub fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .env("WEIR_MODULE_PATH", udf_dir())
        .env("WEIR_LOG", "error")
        .env("WEIR_HOME", target_dir().join("weir-home"));
    command
}

/// What a finished `weir` process left behind.
#[derive(Debug)]
pub struct Finished {
    /// Whether it exited with 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(output: Output) -> Self {
        Self {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A scratch folder with a job file in it.
pub struct Workdir {
    /// The folder (deleted when dropped).
    pub dir: tempfile::TempDir,
}

impl Workdir {
    /// A new, empty folder.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    /// Path of `name` inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name`, returning its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }

    /// Reads `name` as text.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Runs `weir <command> job.toml <args>` in this folder.
    pub fn weir(&self, command: &str, job: &str, args: &[&str]) -> Finished {
        let job_path = self.write("job.toml", job);
        let mut cmd = weir();
        cmd.current_dir(self.dir.path()).arg(command);
        if command == "run" {
            cmd.arg("--quiet");
        }
        cmd.arg(&job_path).args(args);
        cmd.output().expect("weir runs").into()
    }

    /// Runs the job and asserts that it succeeded.
    pub fn run_ok(&self, job: &str, args: &[&str]) -> Finished {
        let finished = self.weir("run", job, args);
        assert!(finished.success, "weir run failed:\n{}", finished.stderr);
        finished
    }
}

/// The lines of `text`, sorted: a multiset to compare.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// `n` with thousands separators, as `weir` prints counts.
pub fn thousands(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A job running in the background (one whose sources follow their files
/// never ends on its own); killed when dropped.
pub struct Running<'a> {
    work: &'a Workdir,
    child: std::process::Child,
}

impl<'a> Running<'a> {
    /// Starts `weir run job.toml` in `work`.
    pub fn start(work: &'a Workdir, job: &str) -> Self {
        let job = work.write("job.toml", job);
        let child = weir()
            .current_dir(work.path(""))
            .args(["run", "--quiet"])
            .arg(&job)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("weir starts");
        Self { work, child }
    }

    /// The lines of `file`, sorted, once it has at least `lines` of them (or
    /// after two minutes). Panics if the job ends meanwhile.
    pub fn wait_for_lines(&mut self, file: &str, lines: usize) -> Vec<String> {
        let read = || {
            std::fs::read_to_string(self.work.path(file))
                .map(|text| sorted_lines(&text))
                .unwrap_or_default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline && read().len() < lines {
            assert!(self.child.try_wait().expect("polls").is_none(), "the job ended early");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        read()
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a job that never ends (its sources follow their files) in `work`
/// until each of `files` holds at least its number of lines (or two minutes
/// have passed), stops it, and returns each file's lines, sorted.
pub fn run_until_lines(work: &Workdir, job: &str, files: &[(&str, usize)]) -> Vec<Vec<String>> {
    let mut running = Running::start(work, job);
    let mut out: Vec<Vec<String>> = files
        .iter()
        .map(|(file, lines)| running.wait_for_lines(file, *lines))
        .collect();
    drop(running);
    // Read again once stopped: a file waited for first may have grown.
    for ((file, _), lines) in files.iter().zip(&mut out) {
        *lines = std::fs::read_to_string(work.path(file))
            .map(|text| sorted_lines(&text))
            .unwrap_or_default();
    }
    out
}

/// `weir` in `work`, with the job registry in `work/home` (tests that
/// list, stop or upgrade jobs).
pub fn command(work: &Workdir) -> Command {
    let mut command = weir();
    command.current_dir(work.dir.path()).env("WEIR_HOME", work.path("home"));
    command
}

/// Runs `weir ARGS` in `work` (see [`command`]) and waits for it.
pub fn weir_in(work: &Workdir, args: &[&str]) -> Finished {
    command(work).args(args).output().expect("weir runs").into()
}

/// Starts `weir run job.toml ARGS` in `work` in the background (see
/// [`command`]); its standard error is kept for [`wait_success`].
pub fn start(work: &Workdir, args: &[&str]) -> std::process::Child {
    command(work)
        .args(["run", "--quiet", "job.toml"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir starts")
}

/// Waits for a job started by [`start`], asserts that it succeeded and
/// returns its standard error.
pub fn wait_success(child: std::process::Child) -> String {
    let output = child.wait_with_output().expect("weir ends");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "weir run failed:\n{stderr}");
    stderr
}

/// The lines a `files` sink has committed into `folder`, part file after
/// part file in commit order (a sink has one subtask, whose part files are
/// numbered in the order it commits them); empty when nothing is committed.
/// Pending and in-progress part files (in dot-folders) are left out.
pub fn committed_in_order(folder: &Path) -> Vec<String> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts
        .iter()
        .flat_map(|part| {
            std::fs::read_to_string(part)
                .unwrap_or_else(|e| panic!("read {}: {e}", part.display()))
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}
