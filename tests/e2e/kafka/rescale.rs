//! Rescaling the Kafka source from a savepoint.

use std::time::{Duration, Instant};

use super::broker::Broker;
use super::{messages, topic, wordcount_job};
use crate::harness::{Workdir, committed_in_order, start, weir_in};
use crate::oracle;

/// Proves the source's offsets are exact through a savepoint and a
/// rescale: a job reads the first half of the input (three partitions, two
/// source subtasks, unbounded); savepoints are taken while it runs until
/// the output they commit is exactly the first half's word counts (so the
/// last savepoint holds every partition's offset at the end of the first
/// half); the job is killed, the second half produced, and the job
/// restarted from that savepoint with three source subtasks (one
/// partition each, by Flink's rule) and bounded: the output equals the
/// oracle of the whole input, nothing lost or doubled.
#[test]
fn kafka_source_rescales_from_a_savepoint_with_exact_offsets() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(6_000, 71);
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let (first, second) = (first.join("\n") + "\n", second.join("\n") + "\n");
    let input = topic("sp-rescale-in");
    broker.create_topic(&input, 3);
    broker.produce(&input, &messages(&first, 3, 72));
    let work = Workdir::new();
    let sink = "type = \"files\"\npath = \"out\"\n";
    // No periodic checkpoint: only the savepoints commit output.
    let checkpoints = "[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 3600000\n";
    let job = wordcount_job("sp-rescale", &broker.servers, &input, checkpoints, sink);
    work.write("job.toml", job.replace("bounded = true", "bounded = false"));
    let mut running = start(&work, &[]);
    let first_half = oracle::word_count_lines(&oracle::word_counts(&first));
    let deadline = Instant::now() + Duration::from_secs(120);
    let savepoint = loop {
        assert!(
            Instant::now() < deadline,
            "no savepoint covered the first half in two minutes"
        );
        assert!(running.try_wait().expect("poll weir").is_none(), "the job ended");
        let listed = weir_in(&work, &["list"]);
        let Some(id) = listed
            .stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some("sp-rescale"))
            .and_then(|line| line.split_whitespace().next())
            .map(str::to_string)
        else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let taken = weir_in(&work, &["savepoint", &id, "savepoints"]);
        assert!(taken.success, "weir savepoint failed: {}", taken.stderr);
        let mut committed = committed_in_order(&work.path("out"));
        committed.sort();
        if committed == first_half {
            break taken.stdout.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    running.kill().expect("SIGKILL weir");
    running.wait().expect("reap weir");
    broker.produce(&input, &messages(&second, 3, 73));
    let rescaled = job.replacen("parallelism = 2", "parallelism = 3", 1);
    let finished = work.weir("run", &rescaled, &["--from-savepoint", &savepoint]);
    assert!(finished.success, "{}", finished.stderr);
    let mut committed = committed_in_order(&work.path("out"));
    committed.sort();
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    assert_eq!(committed.len(), expected.len(), "lost or doubled counts");
    assert_eq!(committed, expected, "output after the rescale differs from the oracle");
}
