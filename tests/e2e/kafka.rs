//! Kafka in and out, end to end: the real `weir` binary reads a topic and
//! writes a topic of a private Kafka-compatible broker (nisshi 0.6.0, see
//! `scripts/kafka-broker.sh`), and the tests read the output back with a
//! read-committed consumer.
//!
//! The broker is `WEIR_TEST_KAFKA` when set (`scripts/test.sh` starts one);
//! otherwise each test starts its own from the nisshi binary (`WEIR_NISSHI`,
//! or the install path of `scripts/kafka-broker.sh`) on a free loopback port
//! and stops it at the end. Without a binary the tests are skipped with a
//! message, except in CI (`CI` set), where they fail.
//!
//! What nisshi 0.6.0 can and cannot prove: it keeps open transactions from
//! read-committed consumers (fetches stop at the last stable offset), so a
//! test can show that only committed output is read; it does not list
//! aborted transactions in fetches, so their records **are** visible to
//! read-committed consumers, and a test cannot show that an aborted
//! transaction's records stay invisible. Each test says what it proves.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Workdir, committed_in_order, weir};
use crate::oracle::{self, Lcg};

mod broker;
mod demo;
mod fencing;
mod log_reader;
mod rescale;
mod security;
mod sink_features;
mod source_features;

use broker::Broker;

/// A topic name unique to this test process.
fn topic(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The word-count input as messages of 1 to 4 lines each, spread over
/// `partitions` partitions.
fn messages(text: &str, partitions: i32, seed: u64) -> Vec<(i32, String)> {
    let mut rng = Lcg::new(seed);
    let lines: Vec<&str> = text.lines().collect();
    let mut messages = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let take = (1 + rng.below(4) as usize).min(lines.len() - at);
        let partition = rng.below(partitions as u64) as i32;
        messages.push((partition, lines[at..at + take].join("\n")));
        at += take;
    }
    messages
}

/// The word-count job: a bounded Kafka source of `parallelism` subtasks
/// reading `input` (lines), tokenize, a keyed count, and `sink`.
fn wordcount_job(name: &str, servers: &str, input: &str, checkpoint: &str, sink: &str) -> String {
    format!(
        r#"
[job]
name = "{name}"
dead_letter = "dead.jsonl"
{checkpoint}
[[source]]
uid = "lines"
type = "kafka"
bootstrap_servers = "{servers}"
topics = ["{input}"]
format = "lines"
bounded = true
linger_ms = 20
parallelism = 2

[[operator]]
uid = "tokenize"
input = "lines"
module = "wordcount.wasm"
function = "tokenize"

[[operator]]
uid = "count"
input = "tokenize"
module = "wordcount.wasm"
function = "count"
parallelism = 2
key_by = {{ module = "wordcount.wasm", function = "word" }}

[[sink]]
uid = "counts"
input = "count"
{sink}"#
    )
}

/// A Kafka sink table writing `topic` exactly once.
fn kafka_sink(servers: &str, topic: &str) -> String {
    kafka_sink_with(servers, topic, "exactly-once")
}

/// A Kafka sink table writing `topic` with `delivery`.
fn kafka_sink_with(servers: &str, topic: &str, delivery: &str) -> String {
    format!("type = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopic = \"{topic}\"\ndelivery = \"{delivery}\"\n")
}

const CHECKPOINTS: &str = "[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 30\n";

/// Proves: the source reads every message of three partitions with two
/// subtasks (format `lines`), the job's output goes through Kafka
/// transactions, and a read-committed consumer reads exactly the oracle's
/// word counts, with checkpoints (a transaction a checkpoint) and without
/// (one transaction at the end); and the at-least-once sink (flushed at
/// every barrier), with no failure, writes exactly them too. Cannot prove:
/// that an aborted transaction would stay invisible (none is aborted here).
#[test]
fn kafka_to_kafka_exactly_once_matches_the_oracle() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(3_000, 21);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("wc-in");
    broker.create_topic(&input, 3);
    broker.produce(&input, &messages(&text, 3, 5));
    for (run, checkpoint, delivery) in [
        ("checkpointed", CHECKPOINTS, "exactly-once"),
        ("unchecked", "", "exactly-once"),
        ("at-least-once", CHECKPOINTS, "at-least-once"),
    ] {
        let output = topic(&format!("wc-out-{run}"));
        broker.create_topic(&output, 1);
        let work = Workdir::new();
        let job = wordcount_job(
            &format!("wc-{run}"),
            &broker.servers,
            &input,
            checkpoint,
            &kafka_sink_with(&broker.servers, &output, delivery),
        );
        work.run_ok(&job, &[]);
        let mut committed = broker.read_committed(&output);
        committed.sort();
        assert_eq!(committed.len(), expected.len(), "{run}: records read back");
        assert_eq!(committed, expected, "{run}: output differs from the oracle");
    }
}

/// Whether `root` (a checkpoint folder) holds a completed checkpoint.
fn has_checkpoint(root: &std::path::Path) -> bool {
    let Ok(jobs) = std::fs::read_dir(root) else {
        return false;
    };
    jobs.flatten().any(|job| {
        std::fs::read_dir(job.path()).is_ok_and(|checkpoints| {
            checkpoints
                .flatten()
                .any(|c| c.file_name().to_string_lossy().starts_with("chk-") && c.path().join("_manifest").exists())
        })
    })
}

/// Proves that nothing uncommitted is read: a job whose checkpoint never
/// comes (its interval is an hour) writes the word counts into an open
/// transaction; once a read-uncommitted consumer sees every one of them in
/// the log, a read-committed consumer still reads none. (nisshi bounds
/// read-committed fetches by the last stable offset, so this can fail: a
/// sink writing outside a transaction would be read.)
#[test]
fn kafka_sink_output_is_invisible_until_its_checkpoint_completes() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(300, 31);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("open-in");
    let output = topic("open-out");
    broker.create_topic(&input, 3);
    broker.create_topic(&output, 1);
    broker.produce(&input, &messages(&text, 3, 32));
    let work = Workdir::new();
    let job = wordcount_job(
        "open-txn",
        &broker.servers,
        &input,
        "[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 3600000\n",
        &kafka_sink(&broker.servers, &output),
    )
    .replace("bounded = true", "bounded = false");
    work.write("job.toml", job);
    let mut child = weir()
        .current_dir(work.dir.path())
        .args(["run", "--quiet", "job.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = Vec::new();
    while written.len() < expected.len() {
        assert!(
            child.try_wait().expect("poll weir").is_none(),
            "weir ended before writing its output"
        );
        assert!(
            Instant::now() < deadline,
            "the open transaction holds {} of {} records after a minute",
            written.len(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(50));
        written = broker.read(&output, "read_uncommitted");
    }
    let committed = broker.read_committed(&output);
    child.kill().expect("SIGKILL weir");
    child.wait().expect("reap weir");
    written.sort();
    assert_eq!(written, expected, "the open transaction holds the word counts");
    assert_eq!(
        committed,
        Vec::<String>::new(),
        "read-committed reads an open transaction"
    );
}

/// Runs `job.toml` in `work` with `--restore latest`, killing it with
/// SIGKILL at random moments `kills` times (starting over with `reset`
/// when a run ends before its kill), then runs it to the end, which must
/// restore a checkpoint; returns that run's log.
fn kill_and_resume(work: &Workdir, kills: u32, seed: u64, reset: impl FnMut()) -> String {
    kill_times(work, kills, seed, reset);
    run_restored(work)
}

/// Runs `job.toml` in `work` with `--restore latest`, killing it with
/// SIGKILL `kills` times, each at a random moment after a checkpoint is
/// complete (starting over with `reset` when a run ends before its kill).
fn kill_times(work: &Workdir, kills: u32, seed: u64, mut reset: impl FnMut()) {
    let mut rng = Lcg::new(seed);
    let (mut killed, mut runs) = (0, 0);
    while killed < kills {
        runs += 1;
        assert!(runs < 40, "could not kill the job {kills} times in 40 runs");
        let mut child = weir()
            .current_dir(work.dir.path())
            .args(["run", "--quiet", "job.toml", "--restore", "latest"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weir starts");
        // Kill only once a checkpoint is complete, so that every restore
        // starts from one: wait for a manifest, then a random moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !has_checkpoint(&work.path("checkpoints")) && Instant::now() < deadline {
            if child.try_wait().expect("poll weir").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        match child.try_wait().expect("poll weir") {
            Some(status) => {
                assert!(status.success(), "weir failed on its own");
                std::fs::remove_dir_all(work.path("checkpoints")).ok();
                reset();
            }
            None => {
                child.kill().expect("SIGKILL weir");
                child.wait().expect("reap weir");
                killed += 1;
            }
        }
    }
}

/// Runs `job.toml` in `work` to the end from its latest checkpoint, which
/// must exist; returns the run's log.
fn run_restored(work: &Workdir) -> String {
    let output = weir()
        .current_dir(work.dir.path())
        .env("WEIR_LOG", "info")
        .args(["run", "--quiet", "job.toml", "--restore", "latest"])
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "the last run failed:\n{stderr}");
    assert!(
        stderr.contains("from checkpoint"),
        "the last run did not restore a checkpoint:\n{stderr}"
    );
    stderr
}

/// Proves the Kafka source's checkpointed offsets exact: a job reading
/// three partitions with two subtasks, killed with SIGKILL four times and
/// restored from its latest checkpoint each time, writes (through the
/// exactly-once `files` sink, proven by its own tests) exactly the oracle's
/// word counts: an offset restored too far would lose words, one restored
/// too early would count some twice.
#[test]
fn kafka_source_offsets_are_exact_through_kills() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(40_000, 8);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("kill-src-in");
    broker.create_topic(&input, 3);
    broker.produce(&input, &messages(&text, 3, 9));
    let work = Workdir::new();
    let sink = "type = \"files\"\npath = \"out\"\n";
    work.write(
        "job.toml",
        wordcount_job("kill-src", &broker.servers, &input, CHECKPOINTS, sink),
    );
    let stderr = kill_and_resume(&work, 4, 17, || {
        std::fs::remove_dir_all(work.path("out")).ok();
    });
    let mut committed = committed_in_order(&work.path("out"));
    committed.sort();
    assert_eq!(committed.len(), expected.len(), "lost or doubled counts:\n{stderr}");
    assert_eq!(committed, expected, "output after kills differs from the oracle");
}

/// Proves the source's splits are redistributed exactly on rescale: a job
/// reading three partitions with two subtasks is killed twice after a
/// checkpoint, then restored with three source subtasks (each partition
/// goes to the subtask Flink's rule names, with its checkpointed offset);
/// the output through the exactly-once `files` sink equals the oracle.
#[test]
fn kafka_source_rescales_from_two_to_three_subtasks_exactly() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(40_000, 41);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("rescale-in");
    broker.create_topic(&input, 3);
    broker.produce(&input, &messages(&text, 3, 42));
    let work = Workdir::new();
    let sink = "type = \"files\"\npath = \"out\"\n";
    let job = wordcount_job("rescale", &broker.servers, &input, CHECKPOINTS, sink);
    work.write("job.toml", &job);
    kill_times(&work, 2, 43, || {
        std::fs::remove_dir_all(work.path("out")).ok();
    });
    let source_at_three = job.replacen("parallelism = 2", "parallelism = 3", 1);
    assert_ne!(source_at_three, job);
    work.write("job.toml", source_at_three);
    let stderr = run_restored(&work);
    assert!(
        stderr.contains("reading 1 Kafka partition(s)"),
        "three subtasks read one partition each:\n{stderr}"
    );
    let mut committed = committed_in_order(&work.path("out"));
    committed.sort();
    assert_eq!(committed.len(), expected.len(), "lost or doubled counts:\n{stderr}");
    assert_eq!(committed, expected, "output after the rescale differs from the oracle");
}

/// Proves exactly-once end to end through crashes: a Kafka -> Kafka job
/// (three input partitions, two source subtasks) killed with SIGKILL at
/// random moments five times and restored from its latest checkpoint each
/// time writes exactly the oracle's word counts, each once, as a correct
/// read-committed consumer reads them. nisshi shows aborted records to
/// read-committed consumers, so the output is read from the log with its
/// transaction markers applied ([`log_reader`]): a transaction that a
/// restore failed to commit would lose records, one committed twice or a
/// replay outside a transaction would double them.
#[test]
fn kafka_to_kafka_is_exactly_once_through_kills() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(40_000, 12);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("kill-in");
    broker.create_topic(&input, 3);
    broker.produce(&input, &messages(&text, 3, 13));
    let work = Workdir::new();
    let attempt = std::cell::Cell::new(0);
    let write_job = |attempt: u32| {
        let output = topic(&format!("kill-out-{attempt}"));
        broker.create_topic(&output, 2);
        let sink = kafka_sink(&broker.servers, &output);
        work.write(
            "job.toml",
            wordcount_job("kill-kafka", &broker.servers, &input, CHECKPOINTS, &sink),
        );
        output
    };
    write_job(0);
    let stderr = kill_and_resume(&work, 5, 23, || {
        // A run that ended before its kill: start over into a new topic.
        attempt.set(attempt.get() + 1);
        write_job(attempt.get());
    });
    let output = topic(&format!("kill-out-{}", attempt.get()));
    let logs = log_reader::read_committed_by_markers(&broker.servers, &output);
    let open: usize = logs.iter().map(|log| log.open).sum();
    assert_eq!(open, 0, "transactions left open after the last run");
    let mut committed: Vec<String> = logs.into_iter().flat_map(|log| log.committed).collect();
    committed.sort();
    assert_eq!(committed.len(), expected.len(), "records committed\n{stderr}");
    assert_eq!(committed, expected, "the committed output differs from the oracle");
}

/// Proves that a crash between a checkpoint's completion and the sink's
/// commit loses nothing: with the fault-injection point
/// `WEIR_FAULT_CRASH_BEFORE_COMMIT`, the job aborts right after its first
/// checkpoint whose transaction holds records completes. The log then holds
/// that transaction open and no commit. The restored run commits it
/// through the protocol (`EndTxn` with the producer id and epoch read from
/// the log) before fencing, and the output, read with the markers applied,
/// is exactly the oracle: had the restore fenced first, the transaction
/// would be aborted and its records missing.
#[test]
fn kafka_transaction_of_a_completed_checkpoint_is_committed_after_a_crash_before_commit() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(20_000, 41);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("crash-in");
    let output = topic("crash-out");
    broker.create_topic(&input, 3);
    broker.create_topic(&output, 2);
    broker.produce(&input, &messages(&text, 3, 42));
    let work = Workdir::new();
    work.write(
        "job.toml",
        wordcount_job(
            "crash-before-commit",
            &broker.servers,
            &input,
            CHECKPOINTS,
            &kafka_sink(&broker.servers, &output),
        ),
    );
    let crashed = weir()
        .current_dir(work.dir.path())
        .env("WEIR_FAULT_CRASH_BEFORE_COMMIT", "1")
        .args(["run", "--quiet", "job.toml"])
        .output()
        .expect("weir runs");
    let crash_log = String::from_utf8_lossy(&crashed.stderr).into_owned();
    assert!(
        !crashed.status.success(),
        "the fault did not stop the run:\n{crash_log}"
    );
    assert!(
        crash_log.contains("WEIR_FAULT_CRASH_BEFORE_COMMIT: aborting after checkpoint"),
        "{crash_log}"
    );
    let before = log_reader::read_committed_by_markers(&broker.servers, &output);
    assert_eq!(
        before.iter().map(|log| log.commits).sum::<usize>(),
        0,
        "a transaction was committed before the crash"
    );
    let open_before: usize = before.iter().map(|log| log.open).sum();
    assert!(open_before > 0, "the crash left no open transaction with records");
    let stderr = run_restored(&work);
    let after = log_reader::read_committed_by_markers(&broker.servers, &output);
    assert_eq!(after.iter().map(|log| log.open).sum::<usize>(), 0, "open transactions");
    let mut committed: Vec<String> = after.into_iter().flat_map(|log| log.committed).collect();
    committed.sort();
    assert_eq!(committed.len(), expected.len(), "records committed\n{stderr}");
    assert_eq!(committed, expected, "the committed output differs from the oracle");
    assert!(
        stderr.contains("which the restored checkpoint recorded and the previous run left open"),
        "the restore did not commit the recorded transaction:\n{stderr}"
    );
}

/// Bad input at the sink, each with a message naming it: a broker nobody
/// listens on, a librdkafka setting that does not exist, and a topic that
/// does not exist.
#[test]
fn kafka_bad_input_names_the_sink() {
    let job = |servers: &str, topic: &str, properties: &str| {
        format!(
            "[job]\nname = \"bad-sink\"\n\n[[source]]\nuid = \"lines\"\ntype = \"file\"\npath = \"input.txt\"\n\n[[sink]]\nuid = \"out\"\ninput = \"lines\"\n{}{properties}\n",
            kafka_sink(servers, topic)
        )
    };
    let work = Workdir::new();
    work.write("input.txt", "a\nb\n");
    let unknown_property = work.weir(
        "run",
        &job("127.0.0.1:9", "t", "properties = { \"no.such.setting\" = 1 }"),
        &[],
    );
    assert!(!unknown_property.success);
    assert!(
        unknown_property
            .stderr
            .contains("sink `out`: cannot create the Kafka producer")
            && unknown_property.stderr.contains("no.such.setting"),
        "{}",
        unknown_property.stderr
    );
    let unreachable = work.weir("run", &job("127.0.0.1:9", "t", ""), &[]);
    assert!(!unreachable.success);
    assert!(
        unreachable
            .stderr
            .contains("sink `out`: cannot reach Kafka at 127.0.0.1:9 (asking for topic `t`)"),
        "{}",
        unreachable.stderr
    );
    let Some(broker) = Broker::get() else { return };
    let missing = topic("no-such-output");
    let finished = work.weir("run", &job(&broker.servers, &missing, ""), &[]);
    assert!(!finished.success);
    assert!(
        finished.stderr.contains(&format!(
            "sink `out`: topic `{missing}` does not exist on {}",
            broker.servers
        )),
        "{}",
        finished.stderr
    );
}

/// Bad input, each with a message naming the source: a broker nobody
/// listens on, a topic that does not exist, a librdkafka setting that does
/// not exist, and a setting Weir owns (refused when the job loads).
#[test]
fn kafka_bad_input_names_the_source() {
    let job = |servers: &str, topic: &str, properties: &str| {
        format!(
            r#"
[job]
name = "bad"

[[source]]
uid = "orders"
type = "kafka"
bootstrap_servers = "{servers}"
topics = ["{topic}"]
bounded = true
{properties}

[[sink]]
uid = "out"
input = "orders"
type = "stdout"
"#
        )
    };
    let work = Workdir::new();
    let refused = work.weir(
        "run",
        &job("127.0.0.1:9", "t", "properties = { \"group.id\" = \"g\" }"),
        &[],
    );
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("source `orders` → properties → group.id: `group.id` is set by Weir: use `group_id`"),
        "{}",
        refused.stderr
    );
    let unknown_property = work.weir(
        "run",
        &job("127.0.0.1:9", "t", "properties = { \"no.such.setting\" = 1 }"),
        &[],
    );
    assert!(!unknown_property.success);
    assert!(
        unknown_property
            .stderr
            .contains("source `orders`: cannot create the Kafka consumer")
            && unknown_property.stderr.contains("no.such.setting"),
        "{}",
        unknown_property.stderr
    );
    // Port 9 (discard): nothing listens on loopback.
    let unreachable = work.weir("run", &job("127.0.0.1:9", "t", ""), &[]);
    assert!(!unreachable.success);
    assert!(
        unreachable
            .stderr
            .contains("source `orders`: cannot reach Kafka at 127.0.0.1:9 (asking for topic `t`)"),
        "{}",
        unreachable.stderr
    );
    let Some(broker) = Broker::get() else { return };
    let missing = topic("no-such-topic");
    let finished = work.weir("run", &job(&broker.servers, &missing, ""), &[]);
    assert!(!finished.success);
    assert!(
        finished.stderr.contains(&format!(
            "source `orders`: topic `{missing}` does not exist on {}",
            broker.servers
        )),
        "{}",
        finished.stderr
    );
}
