//! Partitioning between vertices: broadcast sends every record to every
//! subtask; rebalance and forward send each record once.

use crate::harness::{Workdir, sorted_lines};

fn job(partition: &str, parallelism: u32) -> String {
    format!(
        r#"
[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "copy"
input = "lines"
module = "testkit.wasm"
function = "identity"
parallelism = {parallelism}
partition = "{partition}"

[[sink]]
uid = "out"
input = "copy"
type = "file"
path = "out.txt"
"#
    )
}

#[test]
fn broadcast_reaches_every_subtask_and_rebalance_each_record_once() {
    let input: String = (0..5_000).map(|i| format!("line {i}\n")).collect();
    let once = sorted_lines(&input);
    let mut thrice: Vec<String> = once.iter().flat_map(|l| std::iter::repeat_n(l.clone(), 3)).collect();
    thrice.sort();
    for (partition, parallelism, expected) in [
        ("broadcast", 3, &thrice),
        ("rebalance", 3, &once),
        ("forward", 1, &once),
    ] {
        let work = Workdir::new();
        work.write("input.txt", &input);
        work.run_ok(&job(partition, parallelism), &[]);
        assert_eq!(&sorted_lines(&work.read("out.txt")), expected, "{partition}");
    }
}

#[test]
fn forward_between_different_parallelisms_is_refused() {
    let work = Workdir::new();
    let finished = work.weir("validate", &job("forward", 2), &[]);
    assert!(!finished.success);
    assert!(
        finished.stderr.contains(
            "operator `copy` → partition: forward needs equal parallelism, but the input has 1 subtasks and this operator 2"
        ),
        "{}",
        finished.stderr
    );
}
