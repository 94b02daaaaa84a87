//! What a checkpoint of keyed state costs, and how long recovery takes.
//!
//! One subtask owns every key group (`0..128`, max parallelism 128) and one
//! value state, `count`. Keys are the 8-byte big-endian numbers `0..N`,
//! values are 8-byte little-endian `u64` counters (1 after the load, 2 once
//! updated before checkpoint 2, 3 once updated while it is written). For N = 1,000,000 and 10,000,000 keys and each configuration
//!
//! - `heap`: [`HeapBackend`], full canonical snapshots;
//! - `rocksdb full`: [`RocksDbBackend`], full canonical snapshots;
//! - `rocksdb incremental`: [`RocksDbBackend`], native snapshots whose SST
//!   files are shared between checkpoints,
//!
//! the benchmark, through the same calls the runtime makes:
//!
//! 1. loads the N keys (timed separately: it is not a checkpoint cost);
//! 2. takes checkpoint 1: [`KeyedStateBackend::snapshot`], the *pause* — the
//!    record path waits for it — then [`StateView::persist`], the *write*,
//!    which the runtime does on another thread while records flow. The size
//!    is the sum of the files the handle refers to;
//! 3. updates 1% of the keys (every hundredth number, so every key group is
//!    touched) and takes checkpoint 2 the same way. Its *new* bytes are
//!    those of files checkpoint 1 did not already store; *shared* bytes are
//!    those of files it did (only incremental checkpoints share files).
//!    Between checkpoint 2's snapshot and its write another 1% of the keys
//!    are updated, and timed: in a job records keep flowing while a
//!    checkpoint is written, and for the heap backend those writes pay for
//!    the copy-on-write that makes its snapshot cheap. (They are timed on
//!    their own, before the write starts, so the two do not share the CPU;
//!    checkpoint 2 must not contain them.)
//! 4. commits both manifests, drops the backend and recovers checkpoint 2:
//!    *verify* is [`CheckpointStorage::load`] (the manifest and the SHA-256
//!    of every file it names, which recovery checks first), *restore* is
//!    [`restore_keyed`] into a new [`HeapBackend`] or
//!    [`RocksDbBackend::restore`] (the native fast path for incremental
//!    checkpoints, entry by entry otherwise). The restored backend must
//!    hold N keys ([`KeyedStateBackend::key_count`]) and sampled keys must
//!    hold checkpoint 2's values, or the benchmark fails. The peak resident
//!    memory of the case is read before that check (whose key set is big).
//!
//! Everything lives in one temporary folder under `$WEIR_BENCH_DIR` (or the
//! system's temporary folder), deleted afterwards: checkpoint storage and
//! RocksDB working folders share a file system, so stored SST files are
//! hard links (an incremental write reads each new SST once, for its
//! SHA-256, and copies nothing). Written files are `fsync`ed, but recovery
//! reads them back from the page cache: the figures are for a warm local
//! disk, not for remote storage.
//!
//! Each case runs once (the figures are seconds, not nanoseconds; run it
//! again to see the spread), in a process of its own, so that it starts
//! with a fresh allocator, its peak resident memory (`VmHWM`) is its own,
//! and a case that runs out of memory does not end the others. The table
//! goes to stdout (Markdown), progress to stderr. Arguments: numbers (`1000000`, `1_000_000`, `1M`, `500k`) set
//! the key counts, overriding `WEIR_BENCH_KEYS=1000000,10000000`; other
//! words select the configurations whose name contains one of them
//! (`cargo bench -p weir --bench checkpoint -- 1M heap`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};
use weir::state::TimerService;
use weir::state::heap::HeapBackend;
use weir::state::restore::restore_keyed;
use weir::state::rocksdb::{RocksDbBackend, RocksDbOptions};
use weir::state::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, StateKind};
use weir::storage::files::CheckpointStorage;
use weir::storage::manifest::{KeyedStateHandle, Manifest, TaskState};
use weir::storage::{CheckpointId, TaskId};

/// The job's number of key groups.
const MAX_PARALLELISM: u32 = 128;
/// The one subtask owns every key group.
const ALL: KeyGroupRange = KeyGroupRange {
    start: 0,
    end: MAX_PARALLELISM,
};
/// Key counts when neither arguments nor [`KEYS_VAR`] name any.
const DEFAULT_KEYS: [u64; 2] = [1_000_000, 10_000_000];
/// The environment variable with comma-separated key counts.
const KEYS_VAR: &str = "WEIR_BENCH_KEYS";
/// The environment variable naming where the temporary folder goes.
const DIR_VAR: &str = "WEIR_BENCH_DIR";
/// One key in this many is updated before checkpoint 2 (1%).
const UPDATE_STRIDE: u64 = 100;
/// Keys whose values are checked after the restore.
const SAMPLES: u64 = 1_000;
/// The vertex uid in manifests and file names.
const UID: &str = "count";
/// The value after the load.
const LOADED: u64 = 1;
/// The value of a key updated before checkpoint 2.
const UPDATED: u64 = 2;
/// The value of a key updated while checkpoint 2 is written.
const IN_FLIGHT: u64 = 3;
/// Keys `IN_FLIGHT_OFFSET + k·UPDATE_STRIDE` are updated while checkpoint 2
/// is written.
const IN_FLIGHT_OFFSET: u64 = UPDATE_STRIDE / 2;
/// Set in the child process that runs one case (see [`spawn_case`]).
const CASE_VAR: &str = "WEIR_BENCH_CHECKPOINT_CASE";

/// A backend configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Config {
    Heap,
    RocksFull,
    RocksIncremental,
}

impl Config {
    const EVERY: [Self; 3] = [Self::Heap, Self::RocksFull, Self::RocksIncremental];

    fn name(self) -> &'static str {
        match self {
            Self::Heap => "heap",
            Self::RocksFull => "rocksdb full",
            Self::RocksIncremental => "rocksdb incremental",
        }
    }

    fn rocks_options(self) -> Option<RocksDbOptions> {
        match self {
            Self::Heap => None,
            Self::RocksFull => Some(RocksDbOptions { incremental: false }),
            Self::RocksIncremental => Some(RocksDbOptions { incremental: true }),
        }
    }

    /// A new, empty backend working in `dir` (RocksDB only).
    fn open(self, dir: &Path) -> anyhow::Result<Box<dyn KeyedStateBackend>> {
        Ok(match self.rocks_options() {
            None => Box::new(HeapBackend::new()),
            Some(options) => Box::new(RocksDbBackend::open(dir, MAX_PARALLELISM, options)?),
        })
    }

    /// A backend restored from `handle`, working in `dir` (RocksDB only).
    fn restore(
        self,
        dir: &Path,
        storage: &CheckpointStorage,
        handle: &KeyedStateHandle,
    ) -> anyhow::Result<Box<dyn KeyedStateBackend>> {
        let mut timers = TimerService::new();
        Ok(match self.rocks_options() {
            None => {
                let mut backend = HeapBackend::new();
                restore_keyed(&mut backend, &mut timers, storage.files(), &[handle], ALL).map_err(|e| anyhow!(e))?;
                Box::new(backend)
            }
            Some(options) => {
                let (backend, _) = RocksDbBackend::restore(
                    dir,
                    MAX_PARALLELISM,
                    options,
                    storage.files(),
                    &[handle],
                    ALL,
                    &mut timers,
                )
                .map_err(|e| anyhow!(e))?;
                Box::new(backend)
            }
        })
    }
}

/// The figures of one checkpoint.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    /// [`KeyedStateBackend::snapshot`].
    pause: Duration,
    /// [`weir::state::StateView::persist`].
    write: Duration,
    /// Bytes of the files the handle refers to that no earlier checkpoint stored.
    new_bytes: u64,
    /// Bytes of the files an earlier checkpoint already stored.
    shared_bytes: u64,
    /// Files newly stored / shared.
    files: (usize, usize),
}

/// The figures of one configuration and key count.
#[derive(Serialize, Deserialize)]
struct Row {
    config: Config,
    keys: u64,
    load: Duration,
    update: Duration,
    update_in_flight: Duration,
    first: Checkpoint,
    second: Checkpoint,
    verify: Duration,
    restore: Duration,
    /// Peak resident memory of the case's process, if known.
    peak_rss: Option<u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    if let Ok(case) = std::env::var(CASE_VAR) {
        return run_case(&case);
    }
    // `cargo bench` passes `--bench`; numbers are key counts, words select
    // configurations.
    let mut keys = Vec::new();
    let mut filters = Vec::new();
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match parse_count(&arg) {
            Some(n) => keys.push(n),
            None => filters.push(arg.to_lowercase()),
        }
    }
    if keys.is_empty() {
        keys = match std::env::var(KEYS_VAR) {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|item| {
                    parse_count(item.trim()).with_context(|| format!("{KEYS_VAR}: `{item}` is not a key count"))
                })
                .collect::<anyhow::Result<_>>()?,
            _ => DEFAULT_KEYS.to_vec(),
        };
    }
    ensure!(keys.iter().all(|&n| n > 0), "key counts must be positive");
    let configs: Vec<Config> = Config::EVERY
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name().contains(f.as_str())))
        .collect();
    if configs.is_empty() {
        bail!(
            "no configuration matches {filters:?} (they are: {})",
            Config::EVERY.map(Config::name).join(", ")
        );
    }

    let base = std::env::var_os(DIR_VAR).map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("weir-bench-checkpoint-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a temporary folder in {}", base.display()))?;
    eprintln!("working in {}", scratch.path().display());

    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &n in &keys {
        for &config in &configs {
            let dir = scratch.path().join(format!("{}-{n}", config.name().replace(' ', "-")));
            match spawn_case(config, n, &dir) {
                Ok(row) => rows.push(row),
                Err(error) => {
                    eprintln!("{} {n}: failed: {error:#}", config.name());
                    failures.push(format!("{} with {n} keys: {error:#}", config.name()));
                }
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
            }
        }
    }
    print_tables(&rows);
    scratch.close().context("cannot delete the temporary folder")?;
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    for failure in &failures {
        println!("FAILED: {failure}");
    }
    ensure!(failures.is_empty(), "{} case(s) failed", failures.len());
    Ok(())
}

/// Runs one case in a child process of this benchmark, so that every case
/// starts with a fresh allocator and its own peak memory, and a case that
/// runs out of memory does not take the others with it.
fn spawn_case(config: Config, n: u64, dir: &Path) -> anyhow::Result<Row> {
    let exe = std::env::current_exe().context("cannot find the benchmark's executable")?;
    let output = std::process::Command::new(exe)
        .env(CASE_VAR, format!("{}|{n}|{}", config.name(), dir.display()))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start the case's process")?;
    if !output.status.success() {
        bail!("the case's process ended with {} (out of memory?)", output.status);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("the case's process printed {line:?}"))
}

/// Runs the case `<configuration>|<keys>|<folder>` (see [`spawn_case`]) and
/// prints its row as JSON.
fn run_case(case: &str) -> anyhow::Result<()> {
    let mut parts = case.splitn(3, '|');
    let (Some(name), Some(n), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("{CASE_VAR}={case:?} is not `<configuration>|<keys>|<folder>`");
    };
    let config = Config::EVERY
        .into_iter()
        .find(|c| c.name() == name)
        .with_context(|| format!("no configuration is named {name:?}"))?;
    let n = n.parse().with_context(|| format!("{n:?} is not a key count"))?;
    let row = bench_case(config, n, Path::new(dir))?;
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}

/// `1000000`, `1_000_000`, `1,000,000`, `1000k` or `1M`.
fn parse_count(text: &str) -> Option<u64> {
    let text = text.replace(['_', ','], "");
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1_000),
        b'm' | b'M' => (&text[..text.len() - 1], 1_000_000),
        _ => (text.as_str(), 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// The key of number `i`.
fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Runs every step for one configuration and key count.
fn bench_case(config: Config, n: u64, dir: &Path) -> anyhow::Result<Row> {
    let label = format!("{} {n}", config.name());
    let storage = CheckpointStorage::open(&dir.join("checkpoints"), "bench")?;
    let timers = TimerService::new();
    let descriptor = StateDescriptor {
        name: UID.into(),
        kind: StateKind::Value,
        ttl: None,
    };

    let mut backend = config.open(&dir.join("state"))?;
    let state = backend.register(&descriptor)?;
    eprintln!("{label}: loading");
    let start = Instant::now();
    for i in 0..n {
        backend.set_current_key(&key(i));
        backend.put(state, b"", &LOADED.to_le_bytes())?;
    }
    let load = start.elapsed();
    eprintln!("{label}: loaded in {}", duration(load));

    let (first, first_handle) = checkpoint(&mut *backend, &storage, 1, &timers, None)?;
    eprintln!(
        "{label}: checkpoint 1 paused {}, written in {}",
        duration(first.pause),
        duration(first.write)
    );

    let update = update_keys(&mut *backend, state, n, 0, UPDATED)?;
    // Another 1% while checkpoint 2 is in flight: what copy-on-write costs
    // the record path (checkpoint 2 must not see these writes).
    let mut update_in_flight = Duration::ZERO;
    let (second, second_handle) =
        checkpoint_with(&mut *backend, &storage, 2, &timers, Some(&first_handle), |backend| {
            update_in_flight = update_keys(backend, state, n, IN_FLIGHT_OFFSET, IN_FLIGHT)?;
            Ok(())
        })?;
    eprintln!(
        "{label}: checkpoint 2 paused {}, written in {}",
        duration(second.pause),
        duration(second.write)
    );
    storage.commit(&manifest(1, first_handle))?;
    storage.commit(&manifest(2, second_handle))?;

    // The running job is gone when recovery starts (and two copies of 10M
    // heap keys would not fit).
    drop(backend);
    eprintln!("{label}: restoring checkpoint 2");
    let start = Instant::now();
    let loaded = storage.load(CheckpointId(2))?;
    let verify = start.elapsed();
    let handle = loaded
        .tasks
        .first()
        .and_then(|task| task.keyed.as_ref())
        .context("checkpoint 2 has no keyed state")?;
    let start = Instant::now();
    let mut restored = config.restore(&dir.join("restored"), &storage, handle)?;
    let restore = start.elapsed();
    eprintln!(
        "{label}: verified in {}, restored in {}",
        duration(verify),
        duration(restore)
    );
    let peak_rss = peak_rss();
    check(&mut *restored, &descriptor, n)?;
    drop(restored);

    Ok(Row {
        config,
        keys: n,
        load,
        update,
        update_in_flight,
        first,
        second,
        verify,
        restore,
        peak_rss,
    })
}

/// Sets the keys `offset`, `offset + 100`, … (1% of them) to `value`;
/// returns how long that took.
fn update_keys(
    backend: &mut dyn KeyedStateBackend,
    state: StateId,
    n: u64,
    offset: u64,
    value: u64,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for i in (offset..n).step_by(UPDATE_STRIDE as usize) {
        backend.set_current_key(&key(i));
        backend.put(state, b"", &value.to_le_bytes())?;
    }
    Ok(start.elapsed())
}

/// Takes checkpoint `id` of `backend` and writes it into `storage`; the
/// files `previous` refers to count as shared.
fn checkpoint(
    backend: &mut dyn KeyedStateBackend,
    storage: &CheckpointStorage,
    id: u64,
    timers: &TimerService,
    previous: Option<&KeyedStateHandle>,
) -> anyhow::Result<(Checkpoint, KeyedStateHandle)> {
    checkpoint_with(backend, storage, id, timers, previous, |_| Ok(()))
}

/// Like [`checkpoint`], calling `between` with the backend after the
/// snapshot is taken and before it is written out.
fn checkpoint_with(
    backend: &mut dyn KeyedStateBackend,
    storage: &CheckpointStorage,
    id: u64,
    timers: &TimerService,
    previous: Option<&KeyedStateHandle>,
    mut between: impl FnMut(&mut dyn KeyedStateBackend) -> anyhow::Result<()>,
) -> anyhow::Result<(Checkpoint, KeyedStateHandle)> {
    let start = Instant::now();
    let view = backend.snapshot()?;
    let pause = start.elapsed();
    between(backend)?;
    let start = Instant::now();
    let handle = view.persist(
        storage.files(),
        &format!("chk{id}-{UID}-0"),
        timers,
        ALL,
        MAX_PARALLELISM,
    )?;
    let write = start.elapsed();

    let stored_before: Vec<&str> = previous
        .map(|p| files_of(p).map(|f| f.name.as_str()).collect())
        .unwrap_or_default();
    let mut figures = Checkpoint {
        pause,
        write,
        new_bytes: 0,
        shared_bytes: 0,
        files: (0, 0),
    };
    for file in files_of(&handle) {
        if stored_before.contains(&file.name.as_str()) {
            figures.shared_bytes += file.size;
            figures.files.1 += 1;
        } else {
            figures.new_bytes += file.size;
            figures.files.0 += 1;
        }
    }
    Ok((figures, handle))
}

fn files_of(handle: &KeyedStateHandle) -> impl Iterator<Item = &weir::storage::files::FileRef> {
    handle
        .canonical
        .iter()
        .chain(handle.native.iter().map(|(_, file)| file))
}

/// A manifest of checkpoint `id` with one subtask's keyed state.
fn manifest(id: u64, handle: KeyedStateHandle) -> Manifest {
    Manifest {
        id: CheckpointId(id),
        job: "bench".into(),
        timestamp_ms: 0,
        max_parallelism: MAX_PARALLELISM,
        tasks: vec![TaskState {
            task: TaskId {
                uid: UID.into(),
                subtask: 0,
            },
            parallelism: 1,
            source_position: None,
            transactions: Vec::new(),
            keyed: Some(handle),
            finished: false,
            source_splits: Vec::new(),
            watermarks: Default::default(),
        }],
        modules: Vec::new(),
    }
}

/// Fails unless `backend` holds `n` keys and sampled keys hold the values
/// of checkpoint 2.
fn check(backend: &mut dyn KeyedStateBackend, descriptor: &StateDescriptor, n: u64) -> anyhow::Result<()> {
    let count = backend.key_count();
    ensure!(
        count as u64 == n,
        "the restored backend holds {count} keys, expected {n}"
    );
    let state: StateId = backend.register(descriptor)?;
    let step = (n / SAMPLES).max(1);
    // Every sample `i` was updated before checkpoint 2 (a multiple of the
    // stride), `i + 1` never was, `i + IN_FLIGHT_OFFSET` only after it.
    for base in (0..n).step_by(step as usize) {
        let i = base - base % UPDATE_STRIDE;
        for (k, expected) in [(i, UPDATED), (i + 1, LOADED), (i + IN_FLIGHT_OFFSET, LOADED)] {
            if k >= n {
                continue;
            }
            backend.set_current_key(&key(k));
            let value = backend.get(state, b"")?;
            ensure!(
                value.as_deref() == Some(&expected.to_le_bytes()[..]),
                "key {k} restored as {value:?}, expected {expected}"
            );
        }
    }
    Ok(())
}

/// The process's peak resident memory, in bytes (Linux only).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 10.0 {
        format!("{secs:.1} s")
    } else if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 0.01 {
        format!("{:.0} ms", secs * 1e3)
    } else if secs >= 0.001 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{:.0} µs", secs * 1e6)
    }
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let n = n as f64;
    if n >= 1024.0 * MIB {
        format!("{:.2} GiB", n / MIB / 1024.0)
    } else if n >= 100.0 * MIB {
        format!("{:.0} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n / MIB)
    } else {
        format!("{:.1} KiB", n / 1024.0)
    }
}

fn keys_label(n: u64) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn print_tables(rows: &[Row]) {
    println!(
        "| configuration | keys | ckpt 1 pause | ckpt 1 write | ckpt 1 size | ckpt 2 pause | ckpt 2 write | \
         ckpt 2 new bytes | ckpt 2 shared bytes | verify | restore |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.config.name(),
            keys_label(row.keys),
            duration(row.first.pause),
            duration(row.first.write),
            bytes(row.first.new_bytes),
            duration(row.second.pause),
            duration(row.second.write),
            bytes(row.second.new_bytes),
            bytes(row.second.shared_bytes),
            duration(row.verify),
            duration(row.restore),
        );
    }
    println!();
    println!(
        "| configuration | keys | load | load rate | update 1% | update 1% during ckpt 2 | ckpt 1 files | \
         ckpt 2 files new / shared | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let rate = row.keys as f64 / row.load.as_secs_f64().max(1e-9) / 1e6;
        println!(
            "| {} | {} | {} | {rate:.2} M keys/s | {} | {} | {} | {} / {} | {} |",
            row.config.name(),
            keys_label(row.keys),
            duration(row.load),
            duration(row.update),
            duration(row.update_in_flight),
            row.first.files.0,
            row.second.files.0,
            row.second.files.1,
            row.peak_rss.map_or_else(|| "n/a".to_string(), bytes),
        );
    }
    println!();
    println!(
        "one subtask owning all {MAX_PARALLELISM} key groups; one value state; key = 8-byte big-endian index, \
         value = 8-byte u64; ckpt 2 follows an update of 1% of the keys, and another 1% is updated between \
         its snapshot() and persist(); pause = snapshot() (the record path \
         waits), write = persist() (a background thread in a job), verify = manifest and SHA-256 check of \
         checkpoint 2, restore = checkpoint 2 into a fresh backend of the same configuration"
    );
}
