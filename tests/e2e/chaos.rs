//! Chaos: whatever crashes a job goes through, it commits exactly what it
//! commits without failures.
//!
//! One harness runs every job of the table (`traffic` and `operators`
//! below), on the heap and on the RocksDB state backend:
//!
//! 1. a failure-free run, whose committed output must equal an independent
//!    oracle (plain Rust, in the case's module);
//! 2. chaotic rounds: the job runs with traps injected (testkit's
//!    `trap_on_first_attempt` fails the first attempt of each process at a
//!    few records, and the job restarts in the process from its latest
//!    checkpoint), and the process is killed with SIGKILL at random moments
//!    and started again with `weir run job.toml --restore latest`, at most
//!    [`KILLS_PER_ROUND`] times, and then left to complete; rounds repeat
//!    until at least [`MIN_KILLS`] kills were followed by a restore from a
//!    checkpoint (a kill before the first checkpoint restarts the job from
//!    the beginning, which tests less); every restart inside a process must
//!    be one a trap caused;
//! 3. after each round, the committed output (only the part files the
//!    `files` sinks have committed) must equal the failure-free run's: as a
//!    multiset of lines, and line for line in commit order where the sink's
//!    input is a single channel.
//!
//! Kill moments are drawn uniformly between 0 and the failure-free run's
//! duration after each start, from a generator seeded per case by the
//! printed seed: `WEIR_CHAOS_SEED=<seed>` replays the same moments (the
//! job's own timing cannot be replayed exactly). `WEIR_CHAOS_KEEP=1` leaves
//! each round's folder (job, logs, checkpoints, output) behind; a failure
//! names it. Inputs are small, so a run takes a few hundred milliseconds
//! (Q1's source is throttled to last about two seconds, for checkpoints
//! every 100 ms); checkpoints come every 20 ms elsewhere, so that most
//! kills find some to restore.
//!
//! A job whose sources follow their files (broadcast state) never ends: it
//! gets its input in steps, each appended once the step before it is
//! committed, and a run is complete once the last step is committed.
//!
//! # Determinism
//!
//! Comparing a crashed run with a failure-free one needs an output that is
//! a function of the input alone, whatever the speed of each thread. The
//! cases keep to configurations where that holds (as in Flink):
//! - watermarks are emitted after every batch (`interval_ms = 0`), and a
//!   file source cuts its batches at fixed positions (a checkpoint barrier
//!   travels between batches, so a restored source resumes at a batch
//!   boundary): the watermarks are a function of the input;
//! - an event-time operator whose records can be late has a single input
//!   channel (its watermark is that channel's, in order with the records);
//!   where the watermark is the minimum over several channels (the joins),
//!   no record is late: each is within the watermark bound of every record
//!   before it, so the interleaving of the channels cannot change the
//!   output;
//! - two inputs without event time (broadcast rules and keyed passings)
//!   interleave at random, so the broadcast case writes them in steps, each
//!   committed before the next is written;
//! - a sink has one subtask, so its lines come in a deterministic order only
//!   when its input is one channel (the operator before it has parallelism
//!   1); only then is the order compared.

mod operators;
mod traffic;

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Workdir, command, committed_in_order};
use crate::oracle::Lcg;

/// Kills per job and backend after which the job resumed from a
/// checkpoint, at least.
const MIN_KILLS: u32 = 5;

/// Kills in one round, at most: the run after the last is left to complete.
const KILLS_PER_ROUND: u32 = 8;

/// A trap modulus no record's hash is a multiple of, in practice: no traps.
const NO_TRAP: u64 = 1 << 62;

/// One job of the table.
pub struct Case {
    /// The job's name.
    pub name: &'static str,
    /// Files written before the job starts: path (in the job's folder) and
    /// contents.
    pub files: Vec<(&'static str, String)>,
    /// Extra lines of the `[job]` table (`batch_size`, ...).
    pub settings: String,
    /// Checkpoint interval, ms.
    pub checkpoint_ms: u64,
    /// Sources, operators and sinks; `MODULUS` stands for the trap modulus.
    pub body: String,
    /// The folders of the `files` sinks to compare.
    pub outputs: &'static [&'static str],
    /// Whether the sinks' input is one channel, so that the order of their
    /// lines is deterministic.
    pub ordered: bool,
    /// Input appended while the job runs (sources that follow their files);
    /// empty for a job that reads its files to the end.
    pub steps: Vec<Step>,
    /// The oracle: the expected lines of each output, sorted.
    pub oracle: Vec<Vec<String>>,
    /// The trap modulus: records whose FNV-1a hash it divides trap.
    pub modulus: u64,
    /// Which output lines a chaotic round must commit as the failure-free
    /// run did (the others depend on where the job was restored).
    pub compared: fn(&str) -> bool,
}

/// Input appended to a followed file.
pub struct Step {
    /// The file.
    pub file: &'static str,
    /// What is appended.
    pub text: String,
    /// Lines committed in the first output once the step is processed.
    pub committed: usize,
}

/// The 64-bit FNV-1a hash (as `trap_on_first_attempt` computes it).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A trap modulus for records `lines`: three to eight of them trap, at
/// least one in each third of the input, so that runs that start at
/// different points meet a trap (the first after their start).
pub fn trap_modulus<'a>(lines: impl IntoIterator<Item = &'a str>) -> u64 {
    let hashes: Vec<u64> = lines.into_iter().map(|l| fnv1a(l.as_bytes())).collect();
    let n = hashes.len();
    (n as u64 / 8 + 1..n as u64 * 4)
        .find(|modulus| {
            let hits: Vec<usize> = (0..n).filter(|&i| hashes[i].is_multiple_of(*modulus)).collect();
            (3..=8).contains(&hits.len()) && (0..3).all(|third| hits.iter().any(|&i| i * 3 / n == third))
        })
        .expect("a trap modulus")
}

/// The seed of the kill moments: `WEIR_CHAOS_SEED`, or the clock.
fn seed() -> u64 {
    match std::env::var("WEIR_CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("WEIR_CHAOS_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007),
    }
}

impl Case {
    /// The job file on `backend` with trap modulus `modulus`.
    fn job(&self, backend: &str, modulus: u64) -> String {
        format!(
            "[job]\nname = \"{}\"\nparallelism = 2\nstate_backend = \"{backend}\"\ndead_letter = \"dead.jsonl\"\n{}\n\n\
             [checkpoint]\ndir = \"checkpoints\"\ninterval_ms = {}\n\n\
             [restart]\nstrategy = \"fixed-delay\"\nattempts = 1000\ndelay_ms = 0\n{}",
            self.name,
            self.settings,
            self.checkpoint_ms,
            self.body.replace("MODULUS", &modulus.to_string())
        )
    }

    /// A new folder with the case's files and job.
    fn prepare(&self, backend: &str, modulus: u64) -> Workdir {
        let work = Workdir::new();
        for (path, contents) in &self.files {
            if let Some(parent) = Path::new(path).parent() {
                std::fs::create_dir_all(work.path(&parent.to_string_lossy())).expect("file system");
            }
            work.write(path, contents);
        }
        work.write("job.toml", self.job(backend, modulus));
        work
    }

    /// The committed lines of each output, in commit order.
    fn committed(&self, work: &Workdir) -> Vec<Vec<String>> {
        self.outputs
            .iter()
            .map(|output| committed_in_order(&work.path(output)))
            .collect()
    }
}

/// What one round did.
struct Round {
    /// Processes killed at a random moment.
    kills: u32,
    /// Processes started (`run-1.log` ...).
    runs: u32,
    /// From the first start to the completion.
    elapsed: Duration,
}

/// Starts `weir run job.toml --restore latest` in `work`, its standard
/// error into `run-<n>.log`.
fn spawn(work: &Workdir, run: u32) -> Child {
    let log = File::create(work.path(&format!("run-{run}.log"))).expect("a log file");
    command(work)
        .env("WEIR_LOG", "info")
        .args(["run", "--quiet", "job.toml", "--restore", "latest"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("weir starts")
}

/// Kills `child` with SIGKILL and reaps it.
fn kill(mut child: Child) {
    child.kill().expect("SIGKILL weir");
    child.wait().expect("reap weir");
}

/// Runs the case in `work` until a run completes (its process ends, or the
/// last step is committed); with `chaos`, kills each of the first
/// [`KILLS_PER_ROUND`] runs at a moment drawn below the span (ms) after its
/// start and starts it again.
fn round(case: &Case, work: &Workdir, mut chaos: Option<(&mut Lcg, u64)>) -> Round {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut next_step = 0;
    let mut kills = 0;
    let mut runs = 0;
    loop {
        runs += 1;
        let mut child = spawn(work, runs);
        let kill_at = chaos
            .as_mut()
            .filter(|_| kills < KILLS_PER_ROUND)
            .map(|(rng, span)| Instant::now() + Duration::from_millis(rng.below(*span)));
        loop {
            let log = || std::fs::read_to_string(work.path(&format!("run-{runs}.log"))).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "{}: not done after 5 minutes:\n{}",
                case.name,
                log()
            );
            let status = child.try_wait().expect("poll weir");
            if case.steps.is_empty() {
                if let Some(status) = status {
                    assert!(status.success(), "{}: weir failed on its own:\n{}", case.name, log());
                    return Round {
                        kills,
                        runs,
                        elapsed: started.elapsed(),
                    };
                }
            } else {
                assert!(status.is_none(), "{}: the job ended on its own:\n{}", case.name, log());
                let committed = committed_in_order(&work.path(case.outputs[0])).len();
                let reached = |step: usize| committed >= case.steps[step].committed;
                while next_step < case.steps.len() && (next_step == 0 || reached(next_step - 1)) {
                    let step = &case.steps[next_step];
                    let mut file = std::fs::OpenOptions::new()
                        .append(true)
                        .open(work.path(step.file))
                        .expect("a followed file");
                    file.write_all(step.text.as_bytes()).expect("file system");
                    next_step += 1;
                }
                if next_step == case.steps.len() && reached(next_step - 1) {
                    kill(child);
                    return Round {
                        kills,
                        runs,
                        elapsed: started.elapsed(),
                    };
                }
            }
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                kill(child);
                kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What the logs of a round's runs say.
#[derive(Default)]
struct Tally {
    /// Kills after which the next run resumed from a checkpoint.
    resumed: u32,
    /// Restarts inside a process.
    restarts: usize,
    /// Restarts a trap caused.
    traps: usize,
    /// Restores from a checkpoint (after a kill or a restart).
    restores: usize,
}

impl Tally {
    /// Reads the logs of runs `1..=runs` in `work`.
    fn read(work: &Workdir, runs: u32) -> Self {
        let mut tally = Self::default();
        for run in 1..=runs {
            let log = std::fs::read_to_string(work.path(&format!("run-{run}.log"))).unwrap_or_default();
            let restore = log.find("restoring job `");
            let restart = log.find("; restarting from ");
            if run > 1 && restore.is_some_and(|r| restart.is_none_or(|s| r < s)) {
                tally.resumed += 1;
            }
            tally.restarts += log.matches("; restarting from ").count();
            tally.traps += log.matches("trap injected by the test").count();
            tally.restores += log.matches("restoring job `").count();
        }
        tally
    }
}

/// What differs between two sorted lists of lines: missing and extra
/// lines (the first few of each).
fn difference(expected: &[String], actual: &[String]) -> String {
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut e, mut a) = (expected.iter().peekable(), actual.iter().peekable());
    loop {
        match (e.peek(), a.peek()) {
            (Some(x), Some(y)) if x == y => {
                e.next();
                a.next();
            }
            (Some(x), Some(y)) if x < y => missing.push(e.next().expect("peeked")),
            (Some(_), Some(_)) | (None, Some(_)) => extra.push(a.next().expect("peeked")),
            (Some(_), None) => missing.push(e.next().expect("peeked")),
            (None, None) => break,
        }
    }
    let few = |lines: &[&String]| -> Vec<String> { lines.iter().take(8).map(|l| shorten(l)).collect() };
    format!(
        "{} lines expected, {} found: {} missing {:?}, {} extra {:?}",
        expected.len(),
        actual.len(),
        missing.len(),
        few(&missing),
        extra.len(),
        few(&extra)
    )
}

/// `line`, cut to 160 characters.
fn shorten(line: &str) -> String {
    match line.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// Where two lists of the same lines first differ in order, with the lines
/// there.
fn first_reordering(expected: &[String], actual: &[String]) -> Option<String> {
    let at = expected.iter().zip(actual).position(|(e, a)| e != a)?;
    let around = |lines: &[String]| -> Vec<String> {
        lines[at..(at + 4).min(lines.len())]
            .iter()
            .map(|l| shorten(l))
            .collect()
    };
    Some(format!(
        "from line {at}: expected {:?}, found {:?}",
        around(expected),
        around(actual)
    ))
}

/// `lines`, sorted: a multiset to compare.
fn sorted(lines: &[String]) -> Vec<String> {
    let mut lines = lines.to_vec();
    lines.sort();
    lines
}

/// The lines of `outputs` that `case` compares.
fn compared(case: &Case, outputs: &[Vec<String>]) -> Vec<Vec<String>> {
    outputs
        .iter()
        .map(|lines| lines.iter().filter(|line| (case.compared)(line)).cloned().collect())
        .collect()
}

/// The failure-free run of `case` on `backend`, checked against the
/// oracle: its committed output, duration (ms) and checkpoints.
fn failure_free(case: &Case, backend: &str, what: &str) -> (Vec<Vec<String>>, u64, usize) {
    let work = case.prepare(backend, NO_TRAP);
    let round = round(case, &work, None);
    let committed = case.committed(&work);
    for ((output, lines), oracle) in case.outputs.iter().zip(&committed).zip(&case.oracle) {
        let lines = sorted(lines);
        assert!(
            lines == *oracle,
            "{what}: the failure-free run's `{output}` differs from the oracle: {}",
            difference(oracle, &lines)
        );
    }
    let checkpoints = std::fs::read_to_string(work.path("run-1.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("INFO checkpoint ") && line.ends_with(" complete"))
        .count();
    (committed, round.elapsed.as_millis() as u64, checkpoints)
}

/// Runs `case` on both backends: the failure-free run against the oracle,
/// then chaotic rounds against the failure-free run.
pub fn chaos(case: &Case) {
    // Build the UDFs first, so that the failure-free run's duration is the job's.
    crate::harness::udf_dir();
    let seed = seed();
    let keep = std::env::var_os("WEIR_CHAOS_KEEP").is_some();
    eprintln!(
        "chaos `{}`: seed {seed} (WEIR_CHAOS_SEED={seed} replays the kill moments)",
        case.name
    );
    for backend in ["heap", "rocksdb"] {
        let what = format!("`{}` on {backend} (seed {seed})", case.name);
        let mut rng = Lcg::new(seed ^ fnv1a(format!("{}/{backend}", case.name).as_bytes()));
        let (expected, duration, checkpoints) = failure_free(case, backend, &what);
        let expected = compared(case, &expected);
        let (mut kills, mut rounds, mut runs) = (0, 0, 0);
        let mut total = Tally::default();
        while total.resumed < MIN_KILLS {
            rounds += 1;
            assert!(
                rounds <= 30,
                "{what}: only {} of {kills} kills resumed from a checkpoint in 30 rounds",
                total.resumed
            );
            let mut work = case.prepare(backend, case.modulus);
            // WEIR_CHAOS_KEEP: leave the rounds' folders (job, logs,
            // checkpoints, output) for a look.
            work.dir.disable_cleanup(keep);
            let round = round(case, &work, Some((&mut rng, duration.max(20))));
            let tally = Tally::read(&work, round.runs);
            let context = format!(
                "{what}, round {rounds} in {} ({} kills, {} resumed from a checkpoint, {} traps)",
                work.dir.path().display(),
                round.kills,
                tally.resumed,
                tally.traps
            );
            assert_eq!(tally.restarts, tally.traps, "{context}: a restart that no trap caused");
            let committed = compared(case, &case.committed(&work));
            for ((output, expected), committed) in case.outputs.iter().zip(&expected).zip(&committed) {
                let (want, got) = (sorted(expected), sorted(committed));
                assert!(
                    want == got,
                    "{context}: `{output}` differs from the failure-free run: {}",
                    difference(&want, &got)
                );
                if case.ordered
                    && let Some(reordering) = first_reordering(expected, committed)
                {
                    panic!("{context}: `{output}` has the failure-free run's lines in another order, {reordering}");
                }
            }
            kills += round.kills;
            runs += round.runs;
            total.resumed += tally.resumed;
            total.traps += tally.traps;
            total.restores += tally.restores;
        }
        assert!(total.traps > 0, "{what}: no trap fired in {runs} runs");
        eprintln!(
            "chaos {what}: {kills} kills ({} resumed from a checkpoint), {} traps, {} restores in {runs} runs, \
             {rounds} rounds; failure-free run {duration} ms, {checkpoints} checkpoints",
            total.resumed, total.traps, total.restores
        );
    }
}

#[test]
fn word_count_is_exact_through_kills_and_traps() {
    chaos(&traffic::word_count());
}

#[test]
fn flow_per_camera_with_late_passings_is_exact_through_kills_and_traps() {
    chaos(&traffic::flow_per_camera());
}

#[test]
fn sliding_flow_per_camera_with_late_passings_is_exact_through_kills_and_traps() {
    chaos(&traffic::sliding_flow_per_camera());
}

#[test]
fn cloned_plates_are_exact_through_kills_and_traps() {
    chaos(&traffic::cloned_plates());
}

#[test]
fn silent_cameras_are_exact_through_kills_and_traps() {
    chaos(&traffic::silent_cameras());
}

#[test]
fn a_window_join_is_exact_through_kills_and_traps() {
    chaos(&operators::window_join());
}

#[test]
fn an_interval_join_is_exact_through_kills_and_traps() {
    chaos(&operators::interval_join());
}

#[test]
fn a_buffered_window_with_an_evictor_is_exact_through_kills_and_traps() {
    chaos(&operators::evicting_window());
}

#[test]
fn session_windows_are_exact_through_kills_and_traps() {
    chaos(&operators::session_windows());
}

#[test]
fn broadcast_state_is_exact_through_kills_and_traps() {
    chaos(&operators::speed_limits());
}

#[test]
fn operator_list_state_is_exact_through_kills_and_traps() {
    chaos(&operators::operator_lists());
}
