//! Operator list state across rescales: testkit's `operator_state_probe`
//! (a flat-map) keeps every `add X` in a split list `items` and a union list
//! `all`. Two source subtasks follow one file each, so the probe's two
//! subtasks get known lists; stopped with a savepoint, the job resumes at
//! parallelism 3 and then, from a second savepoint, at 2 again, and `dump`
//! commands (broadcast to every subtask) show each subtask's lists. The
//! oracle: the old lists concatenated in subtask order, split into even
//! contiguous shares (`t·n/q .. (t+1)·n/q`) or given whole (union).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Workdir, command, sorted_lines, weir_in};

fn job(parallelism: u32, partition: &str) -> String {
    format!(
        r#"
[job]
name = "opstate"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[[source]]
uid = "commands"
type = "file"
path = "in"
follow = true
parallelism = 2

[[operator]]
uid = "probe"
input = "commands"
module = "testkit.wasm"
function = "operator_state_probe"
parallelism = {parallelism}
partition = "{partition}"

[[sink]]
uid = "out"
input = "probe"
type = "files"
path = "out"
"#
    )
}

fn committed(work: &Workdir) -> Vec<String> {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(work.path("out")) {
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                text.push_str(&std::fs::read_to_string(entry.path()).expect("a part file"));
            }
        }
    }
    sorted_lines(&text)
}

fn append(work: &Workdir, file: &str, text: &str) {
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(work.path(file))
        .expect("file system");
    out.write_all(text.as_bytes()).expect("file system");
}

/// Runs `job.toml` (from `savepoint`, if any) until `lines` lines are
/// committed, then stops it with a savepoint and returns that.
fn run_until(work: &Workdir, savepoint: Option<&PathBuf>, lines: usize, feed: impl FnOnce()) -> PathBuf {
    let mut args = vec!["run", "--quiet", "job.toml"];
    if let Some(savepoint) = savepoint {
        args.extend(["--from-savepoint", savepoint.to_str().expect("a UTF-8 path")]);
    }
    let mut child: Child = command(work)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    feed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let list = weir_in(work, &["list"]);
        let id = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some("opstate"))
            .and_then(|line| line.split_whitespace().next().map(str::to_string));
        if let Some(id) = id
            && committed(work).len() >= lines
        {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {lines} lines committed",
            committed(work).len()
        );
        assert!(child.try_wait().expect("polls").is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stop = weir_in(work, &["stop", "--savepoint", "savepoints", &id]);
    assert!(stop.success, "weir stop failed: {}", stop.stderr);
    let output = child.wait_with_output().expect("weir ends");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(stop.stdout.trim())
}

/// Subtask `t` of `q`'s even, contiguous share of `list`.
fn share(list: &[String], t: usize, q: usize) -> Vec<String> {
    let n = list.len();
    list[t * n / q..(t + 1) * n / q].to_vec()
}

/// The `dump` lines of subtasks with these lists.
fn dumps(items: &[Vec<String>], all: &[Vec<String>]) -> Vec<String> {
    let mut lines = Vec::new();
    for (t, (items, all)) in items.iter().zip(all).enumerate() {
        lines.push(format!("{t},items,{}", items.join("|")));
        lines.push(format!("{t},all,{}", all.join("|")));
    }
    lines
}

#[test]
fn operator_list_state_is_split_or_unioned_on_rescale() {
    let work = Workdir::new();
    std::fs::create_dir_all(work.path("in")).expect("file system");
    let a: Vec<String> = (1..=4).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (1..=3).map(|i| format!("b{i}")).collect();
    // Source subtask 0 reads `in/a.txt`, subtask 1 `in/b.txt` (sorted names).
    let lines = |items: &[String]| -> String { items.iter().map(|i| format!("add {i}\n")).collect() };
    work.write("in/a.txt", lines(&a));
    work.write("in/b.txt", lines(&b));
    let mut expected: Vec<String> = a.iter().chain(&b).map(|i| format!("added,{i}")).collect();

    // Parallelism 2, forward: probe 0 holds `a`, probe 1 holds `b`.
    work.write("job.toml", job(2, "forward"));
    let savepoint = run_until(&work, None, expected.len(), || {});

    // Parallelism 3: the split list is cut into three shares of a ++ b,
    // the union list is a ++ b everywhere.
    work.write("job.toml", job(3, "broadcast"));
    let old: Vec<String> = a.iter().chain(&b).cloned().collect();
    let items: Vec<Vec<String>> = (0..3).map(|t| share(&old, t, 3)).collect();
    let all = vec![old.clone(); 3];
    expected.extend(dumps(&items, &all));
    let savepoint = run_until(&work, Some(&savepoint), expected.len(), || {
        append(&work, "in/a.txt", "dump\n");
    });

    // Back to 2: the shares are concatenated and split again; the union is
    // every old subtask's union list, one after the other.
    work.write("job.toml", job(2, "broadcast"));
    let old_items: Vec<String> = items.concat();
    let old_all: Vec<String> = all.concat();
    let items: Vec<Vec<String>> = (0..2).map(|t| share(&old_items, t, 2)).collect();
    expected.extend(dumps(&items, &[old_all.clone(), old_all]));
    let savepoint = run_until(&work, Some(&savepoint), expected.len(), || {
        append(&work, "in/a.txt", "dump\n");
    });

    expected.sort();
    assert_eq!(committed(&work), expected);

    // A file source keeps its parallelism: another one is refused up front.
    work.write(
        "job.toml",
        job(2, "broadcast").replace("parallelism = 2\n", "parallelism = 3\n"),
    );
    let refused = weir_in(
        &work,
        &[
            "run",
            "--quiet",
            "job.toml",
            "--from-savepoint",
            savepoint.to_str().expect("a UTF-8 path"),
        ],
    );
    assert!(!refused.success);
    assert_eq!(
        refused.stderr,
        "error: job `opstate` failed: source `commands` cannot be restored: it was checkpointed with parallelism 2 and now has 3; a file source cannot be rescaled (its positions are per subtask): keep its parallelism at 2 and rescale the operators behind it\n"
    );
}
