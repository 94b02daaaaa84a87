//! Hot swap of Wasm modules on savepoint restore: `counter-v1` counts per key
//! (value, list and map state) over a followed file; once it has committed
//! the first part of the input, `weir stop --savepoint` stops it. The job is
//! restored from the savepoint with `counter-v2` (changed logic, changed
//! state types, migrations from v1's): the output must equal the oracle of
//! "v1 up to the savepoint, v2 after it" exactly. Restoring the same
//! savepoint with v1 rolls back. Then the refusals: a shape change without a
//! migration (`counter-v2b`), a state type that kept its name but not its
//! shape (`counter-v1b`), a state v2 no longer opens, a migration that
//! fails. Last, `weir upgrade` swaps v1 for v2 in a running job reading a
//! throttled generator, with nothing lost and nothing twice.
//!
//! The schemas in the refusals are the SDK's defaults, `Name@fingerprint`
//! (pinned by the SDK's unit tests): `u32@9af21e7b`, `i64@7744eda3`,
//! `(u64, u64)@e94cb4f0`; v1's `Last { value: u32 }` is `Last@c0f71d96`,
//! v2's `Last { value: u32, from_v1: bool }` `Last@bf5e5a62`, v1b's
//! `Last { value: u32, count: u32 }` `Last@4fef63e9`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Finished, Workdir, sorted_lines, start, wait_success, weir_in};
use crate::oracle::Lcg;

/// The job: a file (followed or not) → per-key counter → exactly-once files.
pub(crate) fn job(name: &str, module: &str, follow: bool, out: &str, params: &str) -> String {
    format!(
        r#"
[job]
name = "{name}"
dead_letter = "dead.jsonl"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[[source]]
uid = "lines"
type = "file"
path = "in.csv"
follow = {follow}

[[operator]]
uid = "count"
input = "lines"
module = "{module}.wasm"
function = "count"
parallelism = 2
key_by = {{ module = "counter_v1.wasm", function = "key" }}
params = {{ {params} }}

[[sink]]
uid = "out"
input = "count"
type = "files"
path = "{out}"
"#
    )
}

/// [`job`] on RocksDB, with a map before the counter that traps on the
/// first attempt (the job restarts from the migrated savepoint).
fn trapping_job(name: &str, module: &str, out: &str) -> String {
    job(name, module, false, out, "")
        .replacen(
            "[checkpoint]",
            "state_backend = \"rocksdb\"\n\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 10\ndelay_ms = 0\n\n[checkpoint]",
            1,
        )
        .replacen(
            "[[operator]]\nuid = \"count\"\ninput = \"lines\"",
            "[[operator]]\nuid = \"traps\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"trap_on_first_attempt\"\nparams = { modulus = \"40\" }\n\n[[operator]]\nuid = \"count\"\ninput = \"traps\"",
            1,
        )
}

/// `n` input lines `key,value` over a few keys, values below 20.
pub(crate) fn input(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Lcg::new(seed);
    (0..n).map(|_| format!("k{},{}", rng.below(5), rng.below(20))).collect()
}

/// The oracle: per record, the key's running count, sum of values and
/// number of distinct values; v1 writes `key,count,sum,distinct`, v2 (from
/// record `v2_from` on) appends `,v2` (and, with `drop_seen`, its distinct
/// is 0).
pub(crate) fn oracle(lines: &[String], v2_from: usize, drop_seen: bool) -> Vec<String> {
    let mut per_key: BTreeMap<&str, (u64, u64, BTreeMap<u32, u64>)> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (key, value) = line.split_once(',').expect("key,value");
        let value: u32 = value.parse().expect("a number");
        let (count, sum, seen) = per_key.entry(key).or_default();
        *count += 1;
        *sum += u64::from(value);
        *seen.entry(value).or_default() += 1;
        if i < v2_from {
            out.push(format!("{key},{count},{sum},{}", seen.len()));
        } else {
            let distinct = if drop_seen { 0 } else { seen.len() };
            out.push(format!("{key},{count},{sum},{distinct},v2"));
        }
    }
    out.sort();
    out
}

/// The committed part files of a `files` sink folder, as sorted lines.
pub(crate) fn committed(out: &Path) -> Vec<String> {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(out) {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    sorted_lines(&text)
}

/// The id of the one running job (waits for it to register).
pub(crate) fn job_id(work: &Workdir) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = weir_in(work, &["list"]);
        assert!(list.success, "weir list failed: {}", list.stderr);
        if let Some(row) = list.stdout.lines().nth(1) {
            return row.split_whitespace().next().expect("an id").to_string();
        }
        assert!(Instant::now() < deadline, "the job never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs v1 over a followed `in.csv` holding `first` until its output is
/// committed, stops it with a savepoint and returns the savepoint.
fn v1_savepoint(work: &Workdir, name: &str, first: &[String]) -> PathBuf {
    work.write("in.csv", first.join("\n") + "\n");
    work.write("job.toml", job(name, "counter_v1", true, "out", ""));
    let child = start(work, &[]);
    let id = job_id(work);
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&work.path("out")).len() < first.len() {
        assert!(Instant::now() < deadline, "v1 never committed its input");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop = weir_in(work, &["stop", "--savepoint", "savepoints", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    wait_success(child);
    assert_eq!(committed(&work.path("out")), oracle(first, first.len(), false));
    PathBuf::from(stop.stdout.trim())
}

/// Runs `job.toml` from `savepoint` with `extra` arguments.
fn restore(work: &Workdir, savepoint: &Path, extra: &[&str]) -> Finished {
    let mut args = vec![
        "run",
        "--quiet",
        "job.toml",
        "--from-savepoint",
        savepoint.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    weir_in(work, &args)
}

#[test]
fn v2_restored_from_a_v1_savepoint_migrates_its_state_and_v1_rolls_back() {
    let work = Workdir::new();
    let lines = input(400, 11);
    let split = 250;
    let savepoint = v1_savepoint(&work, "hot-swap", &lines[..split]);
    work.write("in.csv", lines.join("\n") + "\n");

    // v2: value, list and map state migrated; the rest of the input by v2,
    // on RocksDB, through a failure that restarts the job from the migrated
    // savepoint: still exact.
    let job_v2 = trapping_job("hot-swap", "counter_v2", "out");
    assert!(job_v2.contains("input = \"traps\"") && job_v2.contains("rocksdb"));
    work.write("job.toml", job_v2);
    let finished = restore(&work, &savepoint, &[]);
    assert!(finished.success, "{}", finished.stderr);
    assert!(
        finished.stderr.contains("restarts: 1\n"),
        "the trap should have fired once:\n{}",
        finished.stderr
    );
    assert_eq!(committed(&work.path("out")), oracle(&lines, split, false));

    // The same savepoint with v1 again: a rollback (the migrated copy never
    // replaced the savepoint).
    work.write("job.toml", job("hot-swap", "counter_v1", false, "rolled-back", ""));
    let finished = restore(&work, &savepoint, &[]);
    assert!(finished.success, "{}", finished.stderr);
    let all_v1 = oracle(&lines, lines.len(), false);
    let first_v1 = oracle(&lines[..split], split, false);
    let mut after: Vec<String> = all_v1.into_iter().collect();
    for line in &first_v1 {
        let at = after.binary_search(line).expect("a v1 line of the first part");
        after.remove(at);
    }
    assert_eq!(committed(&work.path("rolled-back")), after);
}

#[test]
fn shape_changes_without_migration_missing_states_and_failing_migrations_are_refused() {
    let work = Workdir::new();
    let mut lines = input(60, 5);
    lines.push("k9,666".to_string());
    let savepoint = v1_savepoint(&work, "refusals", &lines);
    let sp = savepoint.display().to_string();
    work.write("in.csv", lines.join("\n") + "\n");

    // Changed shapes, no migration.
    work.write("job.toml", job("refusals", "counter_v2b", false, "out2", ""));
    let finished = restore(&work, &savepoint, &[]);
    assert!(!finished.success);
    assert_eq!(
        finished.stderr,
        format!(
            "error: job `refusals` failed: cannot restore operator `count` from savepoint {sp}: module counter-v2b 0.2.0 reads state of counter-v1 0.1.0 in another shape and exports no migration for it: `count` (u32@9af21e7b -> (u64, u64)@e94cb4f0), `last` (Last@c0f71d96 -> Last@bf5e5a62), `seen` (u32@9af21e7b -> i64@7744eda3), `values` (u32@9af21e7b -> i64@7744eda3)\n"
        )
    );

    // An explicit schema is named as such.
    work.write(
        "job.toml",
        job("refusals", "counter_v2b", false, "out2", "count_schema = \"count-v2\""),
    );
    let finished = restore(&work, &savepoint, &[]);
    assert!(!finished.success);
    assert_eq!(
        finished.stderr,
        format!(
            "error: job `refusals` failed: cannot restore operator `count` from savepoint {sp}: module counter-v2b 0.2.0 reads state of counter-v1 0.1.0 in another shape and exports no migration for it: `count` (u32@9af21e7b -> count-v2), `last` (Last@c0f71d96 -> Last@bf5e5a62), `seen` (u32@9af21e7b -> i64@7744eda3), `values` (u32@9af21e7b -> i64@7744eda3)\n"
        )
    );

    // A state v2 no longer opens.
    work.write(
        "job.toml",
        job("refusals", "counter_v2", false, "out2", "drop_seen = \"true\""),
    );
    let finished = restore(&work, &savepoint, &[]);
    assert!(!finished.success);
    assert_eq!(
        finished.stderr,
        format!(
            "error: job `refusals` failed: cannot restore operator `count` from savepoint {sp}: module counter-v2 0.2.0 does not open state `seen` of counter-v1 0.1.0 (pass --allow-non-restored-state to drop it)\n"
        )
    );

    // A migration that fails (v2 refuses to migrate the value 666).
    work.write("job.toml", job("refusals", "counter_v2", false, "out2", ""));
    let finished = restore(&work, &savepoint, &[]);
    assert!(!finished.success);
    assert_eq!(
        finished.stderr,
        format!(
            "error: job `refusals` failed: cannot restore operator `count` from savepoint {sp}: the migration of state `values` from counter-v1 0.1.0 to counter-v2 0.2.0 failed: value 666 of counter 0.1.0 cannot be migrated\n"
        )
    );
    assert!(committed(&work.path("out2")).is_empty());
}

#[test]
fn a_state_type_that_kept_its_name_but_not_its_shape_is_refused() {
    let work = Workdir::new();
    let lines = input(90, 17);
    let split = 60;
    let savepoint = v1_savepoint(&work, "renamed-not", &lines[..split]);
    let sp = savepoint.display().to_string();
    work.write("in.csv", lines.join("\n") + "\n");
    let dead_before = std::fs::read_to_string(work.path("dead.jsonl")).unwrap_or_default();
    assert_eq!(dead_before, "", "v1 failed no record");

    // counter-v1b's `Last` gained a field and kept its name: refused before
    // the job starts, naming the state with both schemas.
    work.write("job.toml", job("renamed-not", "counter_v1b", false, "out-v1b", ""));
    let finished = restore(&work, &savepoint, &[]);
    assert!(!finished.success, "the restore must fail");
    assert_eq!(
        finished.stderr,
        format!(
            "error: job `renamed-not` failed: cannot restore operator `count` from savepoint {sp}: module counter-v1b 0.1.1 reads state of counter-v1 0.1.0 in another shape and exports no migration for it: `last` (Last@c0f71d96 -> Last@4fef63e9)\n"
        )
    );
    assert!(committed(&work.path("out-v1b")).is_empty());
    assert_eq!(std::fs::read_to_string(work.path("dead.jsonl")).unwrap_or_default(), "");

    // What a schema of the type name alone let through: with v1's schema
    // declared by hand, the restore goes ahead and every record of a key v1
    // had seen fails on decoding the stored `Last` (here: every record).
    let first_keys: std::collections::BTreeSet<&str> =
        lines[..split].iter().filter_map(|l| l.split(',').next()).collect();
    assert!(
        lines[split..]
            .iter()
            .all(|l| first_keys.contains(l.split(',').next().unwrap_or("")))
    );
    work.write(
        "job.toml",
        job(
            "renamed-not",
            "counter_v1b",
            false,
            "out-forced",
            "last_schema = \"Last@c0f71d96\"",
        ),
    );
    let finished = restore(&work, &savepoint, &[]);
    assert!(finished.success, "{}", finished.stderr);
    assert!(committed(&work.path("out-forced")).is_empty());
    let mut dead: Vec<(String, String, String)> = work
        .read("dead.jsonl")
        .lines()
        .map(|line| {
            let d: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let field = |name: &str| d[name].as_str().unwrap_or("").to_string();
            (field("operator"), field("record"), field("reason"))
        })
        .collect();
    dead.sort();
    let mut expected: Vec<(String, String, String)> = lines[split..]
        .iter()
        .map(|line| {
            (
                "count".to_string(),
                line.clone(),
                "state `last`: stored value could not be decoded: Hit the end of buffer, expected more data"
                    .to_string(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(dead, expected);
}

#[test]
fn a_dropped_state_is_restored_without_it_when_allowed() {
    let work = Workdir::new();
    let lines = input(300, 23);
    let split = 120;
    let savepoint = v1_savepoint(&work, "drop-seen", &lines[..split]);
    work.write("in.csv", lines.join("\n") + "\n");
    work.write(
        "job.toml",
        job("drop-seen", "counter_v2", false, "out", "drop_seen = \"true\""),
    );
    let finished = restore(&work, &savepoint, &["--allow-non-restored-state"]);
    assert!(finished.success, "{}", finished.stderr);
    assert_eq!(committed(&work.path("out")), oracle(&lines, split, true));
}

const EVENTS: u64 = 4_000;

/// The upgrade job: a throttled generator → per-camera counter (v1) →
/// exactly-once files.
pub(crate) fn generator_job(extra: &str) -> String {
    format!(
        r#"
[job]
name = "upgrade"
dead_letter = "dead.jsonl"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[[source]]
uid = "passings"
type = "generator"
events = {EVENTS}
cameras = 5
seed = 3
parallelism = 1
{extra}

[[operator]]
uid = "count"
input = "passings"
module = "counter_v1.wasm"
function = "count"
parallelism = 2
key_by = {{ module = "counter_v1.wasm", function = "second" }}

[[sink]]
uid = "out"
input = "count"
type = "files"
path = "out"
"#
    )
}

/// v1's output for every passing (camera, its count, sum and distinct
/// values, the value being the line's last field), in the oracle's terms.
fn generator_oracle(csv: &str) -> Vec<String> {
    let mut per_key: BTreeMap<&str, (u64, u64, BTreeMap<u32, u64>)> = BTreeMap::new();
    let mut out = Vec::new();
    for line in csv.lines() {
        let key = line.split(',').nth(1).expect("a camera field");
        let value: u32 = line.rsplit(',').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let (count, sum, seen) = per_key.entry(key).or_default();
        *count += 1;
        *sum += u64::from(value);
        *seen.entry(value).or_default() += 1;
        out.push(format!("{key},{count},{sum},{}", seen.len()));
    }
    assert_eq!(out.len() as u64, EVENTS);
    out.sort();
    out
}

/// v1's output over the upgrade job's input ([`generator_oracle`]), from
/// the generator's passings written by a job without operators.
pub(crate) fn generator_expected(work: &Workdir) -> Vec<String> {
    work.write(
        "input.toml",
        format!(
            "[job]\nname = \"input\"\n\n[[source]]\nuid = \"passings\"\ntype = \"generator\"\nevents = {EVENTS}\ncameras = 5\nseed = 3\nparallelism = 1\n\n[[sink]]\nuid = \"csv\"\ninput = \"passings\"\ntype = \"file\"\npath = \"input.csv\"\n"
        ),
    );
    let made = weir_in(work, &["run", "--quiet", "input.toml"]);
    assert!(made.success, "{}", made.stderr);
    generator_oracle(&work.read("input.csv"))
}

#[test]
fn weir_upgrade_swaps_a_running_operator_with_nothing_lost_or_twice() {
    let work = Workdir::new();
    let expected = generator_expected(&work);

    work.write("job.toml", generator_job("events_per_second = 500"));
    let child = start(&work, &[]);
    let id = job_id(&work);
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&work.path("out")).is_empty() {
        assert!(Instant::now() < deadline, "v1 never committed anything");
        std::thread::sleep(Duration::from_millis(20));
    }
    let v2 = crate::harness::module("counter_v2");
    let upgrade = weir_in(
        &work,
        &[
            "upgrade",
            &id,
            "--operator",
            "count",
            "--module",
            v2.to_str().expect("UTF-8"),
        ],
    );
    assert!(upgrade.success, "weir upgrade failed: {}", upgrade.stderr);
    let answer = upgrade.stdout.trim();
    let pause = answer
        .strip_prefix("operator `count` now runs counter-v2 0.2.0, restored from ")
        .and_then(|rest| rest.rsplit_once("; paused "))
        .and_then(|(_, ms)| ms.strip_suffix(" ms"))
        .and_then(|ms| ms.parse::<u64>().ok());
    assert!(pause.is_some(), "{answer}");
    // The job keeps its id (the generator has seconds of input left).
    let list = weir_in(&work, &["list"]);
    assert!(list.stdout.contains(&id), "{}", list.stdout);
    let stderr = wait_success(child);
    // The summary covers the whole run, before and after the upgrade.
    assert!(stderr.contains("  upgrades: 1\n"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "  sink     out                  in {}\n",
            crate::harness::thousands(EVENTS)
        )),
        "{stderr}"
    );

    // Nothing lost, nothing twice; per camera, v1's lines come before v2's.
    let out = committed(&work.path("out"));
    let mut last_v1: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_v2: BTreeMap<String, u64> = BTreeMap::new();
    let mut untagged: Vec<String> = out
        .iter()
        .map(|line| {
            let (line, v2) = match line.strip_suffix(",v2") {
                Some(line) => (line, true),
                None => (line.as_str(), false),
            };
            let mut fields = line.split(',');
            let key = fields.next().expect("a key").to_string();
            let count: u64 = fields.next().and_then(|c| c.parse().ok()).expect("a count");
            if v2 {
                let first = first_v2.entry(key).or_insert(count);
                *first = (*first).min(count);
            } else {
                let last = last_v1.entry(key).or_insert(count);
                *last = (*last).max(count);
            }
            line.to_string()
        })
        .collect();
    untagged.sort();
    assert_eq!(untagged, expected, "nothing lost, nothing twice");
    assert!(!first_v2.is_empty() && !last_v1.is_empty(), "both versions ran");
    for (key, first) in &first_v2 {
        assert!(
            last_v1.get(key).is_none_or(|last| last < first),
            "camera {key}: v1 up to the savepoint, v2 after it"
        );
    }
}

#[test]
fn a_refused_upgrade_keeps_the_old_module_running() {
    let work = Workdir::new();
    work.write("job.toml", generator_job("events_per_second = 500"));
    let child = start(&work, &[]);
    let id = job_id(&work);
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&work.path("out")).is_empty() {
        assert!(Instant::now() < deadline, "v1 never committed anything");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Checked before the job stops: it goes on unchanged.
    let v2 = crate::harness::module("counter_v2");
    let v2 = v2.to_str().expect("UTF-8");
    let upgrade = weir_in(&work, &["upgrade", &id, "--operator", "nope", "--module", v2]);
    assert!(!upgrade.success);
    assert_eq!(
        upgrade.stderr,
        "error: upgrade refused: job `upgrade` has no operator `nope`; the job goes on unchanged\n"
    );
    let testkit = crate::harness::module("testkit");
    let upgrade = weir_in(
        &work,
        &[
            "upgrade",
            &id,
            "--operator",
            "count",
            "--module",
            testkit.to_str().expect("UTF-8"),
        ],
    );
    assert!(!upgrade.success);
    assert_eq!(
        upgrade.stderr,
        "error: upgrade refused: module testkit 0.1.0 has no function `count`; the job goes on unchanged\n"
    );
    // Refused after the stop (state shapes): v1 goes on from the savepoint.
    let v2b = crate::harness::module("counter_v2b");
    let upgrade = weir_in(
        &work,
        &[
            "upgrade",
            &id,
            "--operator",
            "count",
            "--module",
            v2b.to_str().expect("UTF-8"),
        ],
    );
    assert!(!upgrade.success);
    let savepoint = upgrade
        .stderr
        .split("from savepoint ")
        .nth(1)
        .and_then(|rest| rest.split(": module").next())
        .expect("the refusal names the savepoint")
        .to_string();
    assert_eq!(
        upgrade.stderr,
        format!(
            "error: upgrade refused: cannot restore operator `count` from savepoint {savepoint}: module counter-v2b 0.2.0 reads state of counter-v1 0.1.0 in another shape and exports no migration for it: `count` (u32@9af21e7b -> (u64, u64)@e94cb4f0), `last` (Last@c0f71d96 -> Last@bf5e5a62), `seen` (u32@9af21e7b -> i64@7744eda3), `values` (u32@9af21e7b -> i64@7744eda3); the job goes on with its old module, restored from {savepoint}\n"
        )
    );
    wait_success(child);
    let out = committed(&work.path("out"));
    assert_eq!(out.len() as u64, EVENTS, "nothing lost, nothing twice");
    assert!(out.iter().all(|line| !line.ends_with(",v2")));
}
