//! One restore path: `--restore latest` checks modules as `--from-savepoint`
//! does. A checkpoint restored with another module version is migrated (or
//! refused with the savepoint's message, naming the checkpoint); after
//! `weir upgrade`, a crash and `--restore latest` with the unchanged job file
//! run the upgraded module, and in-process restarts keep it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Workdir, start, wait_success, weir_in};
use crate::hot_swap::{committed, generator_expected, generator_job, input, job, job_id, oracle};

/// The newest checkpoint folder of job `name`, as weir names it.
fn latest_checkpoint(work: &Workdir, name: &str) -> String {
    let root = work.path("checkpoints").join(name);
    let newest = std::fs::read_dir(&root)
        .expect("the job's checkpoint folder")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse::<u64>().ok())
        .max()
        .expect("a checkpoint");
    format!("checkpoints/{name}/chk-{newest:06}")
}

#[test]
fn a_final_checkpoint_restored_with_another_version_is_migrated_or_refused() {
    let work = Workdir::new();
    let lines = input(400, 21);
    let split = 250;
    work.write("in.csv", lines[..split].join("\n") + "\n");
    work.write("job.toml", job("bounded", "counter_v1", false, "out", ""));
    let first = weir_in(&work, &["run", "--quiet", "job.toml"]);
    assert!(first.success, "{}", first.stderr);
    assert_eq!(committed(&work.path("out")), oracle(&lines[..split], split, false));
    // The file grows; the job goes on from its final checkpoint.
    work.write("in.csv", lines.join("\n") + "\n");
    let restore = ["run", "--quiet", "job.toml", "--restore", "latest"];

    // A version that cannot read v1's state: refused, nothing committed.
    work.write("job.toml", job("bounded", "counter_v2b", false, "out", ""));
    let refused = weir_in(&work, &restore);
    assert!(!refused.success);
    let checkpoint = latest_checkpoint(&work, "bounded");
    // The message a savepoint restore gives, naming the checkpoint.
    assert_eq!(
        refused.stderr,
        format!(
            "error: job `bounded` failed: cannot restore operator `count` from checkpoint {checkpoint}: module counter-v2b 0.2.0 reads state of counter-v1 0.1.0 in another shape and exports no migration for it: `count` (u32@9af21e7b -> (u64, u64)@e94cb4f0), `last` (Last@c0f71d96 -> Last@bf5e5a62), `seen` (u32@9af21e7b -> i64@7744eda3), `values` (u32@9af21e7b -> i64@7744eda3)\n"
        )
    );
    assert_eq!(committed(&work.path("out")), oracle(&lines[..split], split, false));

    // v2 migrates v1's state from the checkpoint and reads the rest.
    work.write("job.toml", job("bounded", "counter_v2", false, "out", ""));
    let migrated = weir_in(&work, &restore);
    assert!(migrated.success, "{}", migrated.stderr);
    assert_eq!(committed(&work.path("out")), oracle(&lines, split, false));
    assert!(!work.path("dead.jsonl").exists(), "no record dead-lettered");
}

/// Per camera, v1's lines come before v2's, and untagged they are the
/// oracle's exactly (nothing lost, nothing twice, no state misread).
fn assert_v1_then_v2(out: &Path, expected: &[String]) {
    let mut last_v1: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_v2: BTreeMap<String, u64> = BTreeMap::new();
    let mut untagged = Vec::new();
    for line in committed(out) {
        let (line, v2) = line.strip_suffix(",v2").map_or((line.as_str(), false), |l| (l, true));
        let mut fields = line.split(',');
        let key = fields.next().expect("a key").to_string();
        let count: u64 = fields.next().and_then(|c| c.parse().ok()).expect("a count");
        let slot = if v2 {
            first_v2.entry(key).or_insert(count)
        } else {
            last_v1.entry(key).or_insert(count)
        };
        *slot = if v2 { (*slot).min(count) } else { (*slot).max(count) };
        untagged.push(line.to_string());
    }
    untagged.sort();
    if untagged != expected {
        let missing: Vec<&String> = expected.iter().filter(|l| untagged.binary_search(l).is_err()).collect();
        let extra: Vec<&String> = untagged.iter().filter(|l| expected.binary_search(l).is_err()).collect();
        panic!(
            "{} lines, {} expected; missing {:?}; extra {:?}",
            untagged.len(),
            expected.len(),
            &missing[..missing.len().min(20)],
            &extra[..extra.len().min(20)]
        );
    }
    assert!(!first_v2.is_empty() && !last_v1.is_empty(), "both versions ran");
    for (key, first) in &first_v2 {
        assert!(
            last_v1.get(key).is_none_or(|last| last < first),
            "camera {key}: v1 up to the upgrade, v2 after it"
        );
    }
}

#[test]
fn after_weir_upgrade_a_crash_and_restarts_keep_the_upgraded_module() {
    let work = Workdir::new();
    let expected = generator_expected(&work);

    // A map (one subtask: the order per camera stays the generator's) that
    // traps on the first attempt of every run: the job restarts in-process
    // at the start, again after the upgrade (a new run of the
    // swapped plan), and after the crash.
    let job = generator_job("events_per_second = 500")
        .replacen(
            "[[operator]]\nuid = \"count\"\ninput = \"passings\"",
            "[[operator]]\nuid = \"traps\"\ninput = \"passings\"\nmodule = \"testkit.wasm\"\nfunction = \"trap_on_first_attempt\"\nparallelism = 1\nparams = { modulus = \"50\" }\n\n[[operator]]\nuid = \"count\"\ninput = \"traps\"",
            1,
        )
        .replacen(
            "[checkpoint]",
            "[restart]\nstrategy = \"fixed-delay\"\nattempts = 10\ndelay_ms = 0\n\n[checkpoint]",
            1,
        );
    assert!(job.contains("input = \"traps\"") && job.contains("attempts = 10"));
    work.write("job.toml", &job);
    let mut child = start(&work, &[]);
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
    // Some of v2's output committed (after its first-attempt trap), then a crash.
    while committed(&work.path("out"))
        .iter()
        .filter(|l| l.ends_with(",v2"))
        .count()
        < 100
    {
        assert!(Instant::now() < deadline, "v2 never committed");
        assert!(child.try_wait().expect("polls").is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    // A job file that names yet another module (v1b, an older one that
    // cannot read v2's state) is an explicit choice: checked like a
    // savepoint restore, and refused.
    let explicit = job.replacen(
        "module = \"counter_v1.wasm\"\nfunction = \"count\"",
        "module = \"counter_v1b.wasm\"\nfunction = \"count\"",
        1,
    );
    assert_ne!(explicit, job);
    work.write("job.toml", &explicit);
    let before = committed(&work.path("out"));
    let refused = weir_in(&work, &["run", "--quiet", "job.toml", "--restore", "latest"]);
    assert!(!refused.success);
    let checkpoint = latest_checkpoint(&work, "upgrade");
    let prefix = format!(
        "error: job `upgrade` failed: cannot restore operator `count` from checkpoint {checkpoint}: module counter-v1b 0.1.1 reads state of counter-v2 0.2.0 in another shape and exports no migration for it: `count` ("
    );
    assert!(refused.stderr.starts_with(&prefix), "{}", refused.stderr);
    assert_eq!(committed(&work.path("out")), before, "nothing committed");

    // The job file still names v1: the checkpoint's module (v2) runs.
    work.write("job.toml", &job);
    let resumed = start(&work, &["--restore", "latest"]);
    let stderr = wait_success(resumed);
    assert!(
        stderr.contains("  restarts: 1\n"),
        "the resumed run trapped once:\n{stderr}"
    );
    let said = stderr
        .lines()
        .find(|l| l.starts_with("weir: operator `count` runs counter-v2 0.2.0 (sha256 "))
        .unwrap_or_else(|| panic!("no word of the module that runs:\n{stderr}"));
    assert!(
        said.ends_with("after `weir upgrade`; the job file names counter-v1 0.1.0"),
        "{said}"
    );
    assert!(
        said.contains(", the module checkpoint checkpoints/upgrade/chk-"),
        "{said}"
    );
    assert_v1_then_v2(&work.path("out"), &expected);
    assert!(!work.path("dead.jsonl").exists(), "no record dead-lettered");
}

#[test]
fn a_bounded_run_ends_with_a_savepoint_from_which_another_version_goes_on() {
    let work = Workdir::new();
    let lines = input(300, 8);
    let split = 180;
    work.write("in.csv", lines[..split].join("\n") + "\n");
    // Without checkpoints there is nothing to take a savepoint of.
    work.write(
        "plain.toml",
        job("at-end", "counter_v1", false, "out", "")
            .replace("[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 50\n", ""),
    );
    let refused = weir_in(&work, &["run", "--quiet", "plain.toml", "--savepoint-at-end", "sp"]);
    assert!(!refused.success);
    assert_eq!(
        refused.stderr,
        "error: --savepoint-at-end needs checkpoints, but job `at-end` has no [checkpoint] table\n"
    );

    work.write("job.toml", job("at-end", "counter_v1", false, "out", ""));
    let first = weir_in(&work, &["run", "--quiet", "job.toml", "--savepoint-at-end", "sp"]);
    assert!(first.success, "{}", first.stderr);
    let savepoint = first
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("weir: savepoint written to "))
        .unwrap_or_else(|| panic!("no savepoint:\n{}", first.stderr))
        .to_string();
    assert!(
        savepoint.starts_with(&work.path("sp").join("savepoint-at-end-").display().to_string()),
        "{savepoint}"
    );
    assert_eq!(committed(&work.path("out")), oracle(&lines[..split], split, false));

    // v2 from the savepoint, over the grown file: v1's state migrated (and
    // the migration logged), v2 for the rest.
    work.write("in.csv", lines.join("\n") + "\n");
    work.write("job.toml", job("at-end", "counter_v2", false, "out", ""));
    let second = crate::harness::command(&work)
        .env("WEIR_LOG", "info")
        .args(["run", "--quiet", "job.toml", "--from-savepoint", &savepoint])
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert_eq!(committed(&work.path("out")), oracle(&lines, split, false));
    let logged = stderr
        .lines()
        .find(|l| l.contains("operator `count`: migrated state `count` from counter-v1 0.1.0 ("))
        .unwrap_or_else(|| panic!("no migration logged:\n{stderr}"));
    let keys = lines[..split]
        .iter()
        .map(|l| &l[..2])
        .collect::<std::collections::BTreeSet<_>>();
    assert!(logged.contains(") to counter-v2 0.2.0 ("), "{logged}");
    assert!(logged.contains(&format!("): {} values in ", keys.len())), "{logged}");
    // The summary counts this run's records: the rest of the file.
    let rest = lines.len() - split;
    assert!(
        stderr.contains(&format!("  sink     out                  in {rest}\n")),
        "{stderr}"
    );
}
