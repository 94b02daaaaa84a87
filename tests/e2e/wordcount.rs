//! Word count through `weir`, against the oracle, at parallelism 1 and 2.

use std::collections::HashMap;

use crate::harness::{Workdir, sorted_lines, thousands, workspace};
use crate::oracle;

fn run_wordcount(parallelism: &str, input: &str) -> String {
    let work = Workdir::new();
    work.write("input.txt", input);
    let example = std::fs::read_to_string(workspace().join("examples/wordcount.toml")).expect("example job");
    let finished = work.run_ok(
        &example,
        &[
            "-p",
            "input=input.txt",
            "-p",
            "output=counts.csv",
            "--parallelism",
            parallelism,
        ],
    );
    let output = work.read("counts.csv");
    // The summary counts every record once: lines in, words out of the
    // tokenizer, one count a word into the sink.
    let lines = input.lines().count();
    let words = output.lines().count();
    for expected in [
        format!("source   lines                out {}", thousands(lines as u64)),
        format!(
            "operator tokenize             in {}  out {}",
            thousands(lines as u64),
            thousands(words as u64)
        ),
        format!("sink     counts               in {}", thousands(words as u64)),
    ] {
        assert!(
            finished.stderr.contains(&expected),
            "missing `{expected}` in:\n{}",
            finished.stderr
        );
    }
    output
}

#[test]
fn wordcount_matches_the_oracle_at_parallelism_1_and_2() {
    let input = oracle::text(3_000, 7);
    let counts = oracle::word_counts(&input);
    let expected = oracle::word_count_lines(&counts);
    for parallelism in ["1", "2"] {
        let output = run_wordcount(parallelism, &input);
        assert_eq!(sorted_lines(&output), expected, "parallelism {parallelism}");
        // A word's last line holds its final count.
        let mut last: HashMap<&str, u64> = HashMap::new();
        for line in output.lines() {
            let (word, count) = line.rsplit_once(',').expect("word,count");
            last.insert(word, count.parse().expect("a count"));
        }
        let last: HashMap<String, u64> = last.into_iter().map(|(w, c)| (w.to_string(), c)).collect();
        assert_eq!(last, counts, "parallelism {parallelism}");
    }
}
