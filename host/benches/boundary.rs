//! What crossing the Wasm boundary costs, in nanoseconds per record.
//!
//! Every user function runs inside a WebAssembly component, and every call
//! moves a whole [`RecordBatch`] in and out of guest memory. This benchmark
//! measures that price on real UDFs, through the same typed handles
//! the operators make:
//!
//! - `map (identity)`: the testkit module's `identity` map function through
//!   [`TransformUdf::transform`], on batches of 64 to 4096 traffic CSV lines of
//!   33 bytes each (`1767225600123,CAM0042,P0012345,87`). The guest copies
//!   each record, so the figure is almost all boundary: lowering the input
//!   columns, the guest's loop, lifting the output columns.
//! - `keyed ValueState counter`: the wordcount module's `count` keyed process
//!   function through [`KeyedProcessUdf::process_keyed`], with the heap state
//!   backend. Keys are the payloads, 10,000 distinct words cycling; for every
//!   record the guest selects the key, reads and writes a `ValueState<u64>`
//!   (three guest→host calls) and emits `word,count`.
//! - `plain Rust copy`: the identity copy without Wasm, the same records into
//!   a fresh output batch, so readers can see what the boundary adds.
//!
//! Input batches are built once and reused: `transform` and `process_keyed`
//! borrow the batch and hand it back intact, as they do in the operators.
//! Every case is warmed up, then timed in [`REPETITIONS`] repetitions which
//! together cover at least [`MIN_RECORDS`] records and [`MIN_TIME`]; the
//! table reports the median repetition (and the spread of all of them).
//!
//! The UDFs must be built first; `scripts/bench.sh` does everything:
//!
//! ```text
//! CARGO_PROFILE_RELEASE_INCREMENTAL=false \
//!     cargo build --release --target wasm32-wasip2 -p testkit -p wordcount
//! WEIR_UDF_DIR=$CARGO_TARGET_DIR/wasm32-wasip2/release cargo bench -p weir --bench boundary
//! ```
//!
//! Building the UDFs without the workspace's `incremental = true`, as a
//! user's own crate would be built, matters: built incrementally, the guest
//! SDK's small per-record helpers are not inlined and the map figure about
//! doubles.
//!
//! The table goes to stdout (Markdown, ready for the README); progress goes
//! to stderr. Arguments that do not start with `-` select the cases whose
//! name contains one of them (`cargo bench -p weir --bench boundary -- keyed`).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use weir::record::batch::RecordBatch;
use weir::state::heap::HeapBackend;
use weir::wasm::Limits;
use weir::wasm::host_state::KeyedScope;
use weir::wasm::instance::InstanceSpec;
use weir::wasm::instance::{Export, KeyedProcessUdf, TransformUdf, Udf};
use weir::wasm::{EngineOptions, FunctionKind, UdfModule, WasmRuntime};
use weir::{DEFAULT_CALL_TIMEOUT_MS, DEFAULT_MAX_PARALLELISM, DEFAULT_MEMORY_MB};

/// Batch sizes of the map case (and of the plain Rust copy).
const MAP_SIZES: [usize; 4] = [64, 256, 1024, 4096];
/// Batch sizes of the keyed case.
const KEYED_SIZES: [usize; 2] = [256, 1024];
/// Distinct keys of the keyed case, visited in a cycle.
const DISTINCT_WORDS: usize = 10_000;
/// Timed repetitions of each case; the median is reported.
const REPETITIONS: usize = 5;
/// Fewest records one case processes over all its repetitions.
const MIN_RECORDS: u64 = 2_000_000;
/// Shortest time one case runs over all its repetitions.
const MIN_TIME: Duration = Duration::from_secs(1);
/// How long each case runs before it is timed.
const WARM_UP: Duration = Duration::from_millis(200);
/// Event time of the first record (2026-01-01T00:00:00.123Z).
const FIRST_TIMESTAMP: i64 = 1_767_225_600_123;
/// The environment variable naming the folder of the built UDFs.
const UDF_DIR_VAR: &str = "WEIR_UDF_DIR";
/// How to build the UDFs.
const BUILD_COMMAND: &str =
    "CARGO_PROFILE_RELEASE_INCREMENTAL=false cargo build --release --target wasm32-wasip2 -p testkit -p wordcount";

/// One measured case.
struct Measurement {
    /// Median time per record, in nanoseconds.
    median_ns: f64,
    /// Fastest and slowest repetition, in nanoseconds per record.
    range_ns: (f64, f64),
    /// Records per call.
    batch: usize,
}

impl Measurement {
    fn ns_per_call(&self) -> f64 {
        self.median_ns * self.batch as f64
    }

    /// Half the spread between the fastest and slowest repetition, as a
    /// percentage of the median.
    fn spread_percent(&self) -> f64 {
        (self.range_ns.1 - self.range_ns.0) / 2.0 / self.median_ns * 100.0
    }
}

/// Runs `call` (which processes `batch` records) through a warm-up and
/// [`REPETITIONS`] timed repetitions.
fn measure(batch: usize, mut call: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let mut warm_calls = 0u64;
    while warm_calls < 10 || started.elapsed() < WARM_UP {
        call()?;
        warm_calls += 1;
    }
    let per_call = started.elapsed().as_secs_f64() / warm_calls as f64;
    let reps = REPETITIONS as f64;
    let for_records = (MIN_RECORDS as f64 / reps / batch as f64).ceil();
    let for_time = (MIN_TIME.as_secs_f64() / reps / per_call).ceil();
    let calls = for_records.max(for_time).max(1.0) as u64;

    let mut ns_per_record = Vec::with_capacity(REPETITIONS);
    for _ in 0..REPETITIONS {
        let start = Instant::now();
        for _ in 0..calls {
            call()?;
        }
        let elapsed = start.elapsed();
        ns_per_record.push(elapsed.as_nanos() as f64 / (calls * batch as u64) as f64);
    }
    ns_per_record.sort_by(f64::total_cmp);
    Ok(Measurement {
        median_ns: ns_per_record[REPETITIONS / 2],
        range_ns: (ns_per_record[0], ns_per_record[REPETITIONS - 1]),
        batch,
    })
}

/// A traffic reading as a CSV line of exactly 33 bytes:
/// `timestamp,camera,plate,speed`.
fn traffic_line(i: usize) -> (Vec<u8>, i64) {
    let timestamp = FIRST_TIMESTAMP + i as i64 * 7;
    let line = format!(
        "{timestamp},CAM{:04},P{:07},{}",
        i % 250,
        (i * 7919) % 10_000_000,
        40 + i % 60
    );
    (line.into_bytes(), timestamp)
}

/// A batch of `n` traffic lines.
fn traffic_batch(n: usize) -> RecordBatch {
    let mut batch = RecordBatch::with_capacity(n, n * 33);
    for i in 0..n {
        let (line, timestamp) = traffic_line(i);
        batch.push(&line, timestamp);
    }
    batch
}

/// Enough keyed batches of `n` words (key = payload) to visit each of the
/// [`DISTINCT_WORDS`] words equally often when cycled through in order.
fn word_batches(n: usize) -> Vec<RecordBatch> {
    let total = lcm(n, DISTINCT_WORDS);
    (0..total / n)
        .map(|b| {
            let mut batch = RecordBatch::with_capacity(n, n * 9);
            for i in b * n..(b + 1) * n {
                let word = format!("word{}", i % DISTINCT_WORDS);
                batch.push_keyed(word.as_bytes(), FIRST_TIMESTAMP + i as i64, word.as_bytes());
            }
            batch
        })
        .collect()
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b) * b
}

/// The identity copy in plain Rust, into a fresh batch as a guest's output
/// would be.
fn copy_batch(input: &RecordBatch) -> RecordBatch {
    let mut output = RecordBatch::with_capacity(input.len(), input.payload_bytes());
    for record in input.iter() {
        output.push(record.payload, record.timestamp);
    }
    output
}

/// The folder holding `testkit.wasm` and `wordcount.wasm`.
fn udf_dir() -> anyhow::Result<PathBuf> {
    let Some(dir) = std::env::var_os(UDF_DIR_VAR) else {
        bail!(
            "{UDF_DIR_VAR} is not set: build the UDFs with `{BUILD_COMMAND}` and set {UDF_DIR_VAR} to \
             $CARGO_TARGET_DIR/wasm32-wasip2/release (or run scripts/bench.sh, which does both)"
        );
    };
    let dir = PathBuf::from(dir);
    for name in ["testkit.wasm", "wordcount.wasm"] {
        ensure!(
            dir.join(name).is_file(),
            "{UDF_DIR_VAR}={} has no {name}: build the UDFs with `{BUILD_COMMAND}` \
             (they land in $CARGO_TARGET_DIR/wasm32-wasip2/release)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Loads a module and starts one instance of `function`, which must be of
/// `kind` (whose handle is `G`).
fn start<G: Export>(
    runtime: &WasmRuntime,
    path: &Path,
    function: &str,
    kind: FunctionKind,
) -> anyhow::Result<(Arc<UdfModule>, Udf<G>)> {
    let module = runtime.load(path)?;
    let info = module
        .info
        .function(function)
        .with_context(|| format!("{} has no function `{function}`", path.display()))?;
    ensure!(
        info.kind == kind,
        "`{function}` is a {} function, expected {kind}",
        info.kind
    );
    let limits = Limits {
        call_timeout_ms: DEFAULT_CALL_TIMEOUT_MS,
        memory_bytes: usize::try_from(DEFAULT_MEMORY_MB << 20).context("memory limit")?,
    };
    let spec = InstanceSpec {
        operator: function,
        module: &module,
        function,
        params: &[],
        subtask: 0,
        parallelism: 1,
        max_parallelism: DEFAULT_MAX_PARALLELISM,
        limits,
        on_call: None,
    };
    let keyed = (kind == FunctionKind::KeyedProcess).then(|| KeyedScope::new(Box::new(HeapBackend::new())));
    let instance = Udf::start(runtime.engine(), &spec, keyed)?;
    Ok((module, instance))
}

/// One row of the table.
struct Row {
    case: &'static str,
    measurement: Measurement,
    /// The plain Rust figure at the same batch size, for the map case.
    baseline_ns: Option<f64>,
}

/// Name of the plain Rust case.
const PLAIN: &str = "plain Rust copy (no Wasm)";
/// Name of the map case.
const MAP: &str = "map (identity)";
/// Name of the keyed case.
const KEYED: &str = "keyed ValueState counter";

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
    // `cargo bench` passes `--bench`; anything else selects cases by name.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected = |case: &str| filters.is_empty() || filters.iter().any(|f| case.contains(f.as_str()));
    let dir = udf_dir()?;
    let runtime = WasmRuntime::new(EngineOptions::with_default_cache())?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut baselines = [None; MAP_SIZES.len()];
    if selected(PLAIN) {
        for (&n, baseline) in MAP_SIZES.iter().zip(&mut baselines) {
            let measurement = bench_plain(n)?;
            *baseline = Some(measurement.median_ns);
            rows.push(Row {
                case: PLAIN,
                measurement,
                baseline_ns: None,
            });
        }
    }
    if selected(MAP) {
        let (_module, mut identity) = start(&runtime, &dir.join("testkit.wasm"), "identity", FunctionKind::Map)?;
        for (&n, &baseline_ns) in MAP_SIZES.iter().zip(&baselines) {
            let measurement = bench_map(&mut identity, n)?;
            rows.push(Row {
                case: MAP,
                measurement,
                baseline_ns,
            });
        }
    }
    if selected(KEYED) {
        for &n in &KEYED_SIZES {
            // A fresh instance, hence fresh state, per batch size.
            let (_module, mut count) = start(
                &runtime,
                &dir.join("wordcount.wasm"),
                "count",
                FunctionKind::KeyedProcess,
            )?;
            let measurement = bench_keyed(&mut count, n)?;
            rows.push(Row {
                case: KEYED,
                measurement,
                baseline_ns: None,
            });
        }
    }
    print_table(&rows);
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The identity copy in plain Rust over one batch of `n` traffic lines.
fn bench_plain(n: usize) -> anyhow::Result<Measurement> {
    eprintln!("measuring {PLAIN}, {n} records per batch");
    let input = traffic_batch(n);
    measure(n, || {
        black_box(copy_batch(black_box(&input)));
        Ok(())
    })
}

/// The identity map function over one batch of `n` traffic lines.
fn bench_map(identity: &mut TransformUdf, n: usize) -> anyhow::Result<Measurement> {
    eprintln!("measuring {MAP}, {n} records per batch");
    let mut input = traffic_batch(n);
    let output = identity.transform(&mut input)?;
    ensure!(
        output.errors.is_empty() && output.main.data == input.data && output.main.ends == input.ends,
        "identity did not return its input unchanged"
    );
    measure(n, || {
        black_box(identity.transform(black_box(&mut input))?);
        Ok(())
    })
}

/// The keyed counter over keyed batches of `n` words, cycling through
/// [`DISTINCT_WORDS`] keys.
fn bench_keyed(count: &mut KeyedProcessUdf, n: usize) -> anyhow::Result<Measurement> {
    eprintln!("measuring {KEYED}, {n} records per batch");
    let mut inputs = word_batches(n);
    let first = count.process_keyed(&mut inputs[0], i64::MIN)?;
    ensure!(
        first.errors.is_empty() && first.main.len() == n && first.main.payload(0) == b"word0,1",
        "count did not emit `word,count` for every record"
    );
    let ring = inputs.len();
    let mut next = 1;
    measure(n, || {
        let input = &mut inputs[next];
        next = (next + 1) % ring;
        black_box(count.process_keyed(black_box(input), i64::MIN)?);
        Ok(())
    })
}

fn print_table(rows: &[Row]) {
    println!("| case | records/batch | ns/record | ns/call | Mrecords/s | boundary adds (ns/record) | spread |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let m = &row.measurement;
        let adds = row
            .baseline_ns
            .map_or_else(|| "".to_string(), |base| format!("{:.1}", m.median_ns - base));
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.1} | {} | ±{:.1}% |",
            row.case,
            m.batch,
            m.median_ns,
            m.ns_per_call(),
            1_000.0 / m.median_ns,
            adds,
            m.spread_percent()
        );
    }
    // Per-call and per-record cost of the map case: ns/record = per_record +
    // per_call / batch, fitted in ns/record so every batch size weighs the
    // same (a fit of ns/call would be dominated by the largest batch).
    let map: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.case == MAP)
        .map(|r| (1.0 / r.measurement.batch as f64, r.measurement.median_ns))
        .collect();
    if let Some((per_record, per_call)) = fit_line(&map).filter(|&(a, b)| a > 0.0 && b > 0.0) {
        println!();
        println!("{MAP}, fitted over batch sizes: ≈ {per_call:.0} ns per call + {per_record:.1} ns per record");
    }
    println!(
        "median of {REPETITIONS} repetitions; each case runs at least {} M records and {} s in all, after {} ms of warm-up",
        MIN_RECORDS / 1_000_000,
        MIN_TIME.as_secs(),
        WARM_UP.as_millis()
    );
}

/// Least-squares line `y = a + b·x` through `points`, as `(a, b)`.
fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    Some((mean_y - slope * mean_x, slope))
}
