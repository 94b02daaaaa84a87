//! The Kafka source's features beyond reading values: envelopes (key,
//! headers and position for the function), dead letters for malformed
//! messages, per-partition watermarks, topic patterns and partition
//! discovery. Each test runs the real `weir` against the test broker.

use super::broker::{Broker, Outgoing};
use super::topic;
use crate::harness::Workdir;

/// A bounded Kafka source `in` reading `topic` with `settings`, an
/// identity map, and a `file` sink into `out.txt`; dead letters go to
/// `dead.jsonl`.
fn identity_job(servers: &str, topic: &str, settings: &str) -> String {
    format!(
        r#"
[job]
name = "identity"
dead_letter = "dead.jsonl"

[[source]]
uid = "in"
type = "kafka"
bootstrap_servers = "{servers}"
topics = ["{topic}"]
bounded = true
linger_ms = 20
{settings}

[[operator]]
uid = "copy"
input = "in"
module = "testkit.wasm"
function = "identity"

[[sink]]
uid = "out"
input = "copy"
type = "file"
path = "out.txt"
"#
    )
}

/// A message of partition 0 with `value` at `timestamp`.
fn message(value: &[u8], timestamp: i64) -> Outgoing {
    Outgoing {
        value: value.to_vec(),
        timestamp: Some(timestamp),
        ..Outgoing::default()
    }
}

/// Proves that with `format = "json"` and `envelope = true` the function
/// sees exactly the envelope of each message (key, value, headers, topic,
/// partition, offset, timestamp), that a message that is not JSON goes to
/// the dead-letter output with its position and the parser's reason
/// (instead of failing the job or vanishing), and that with `lines` a line
/// that is not UTF-8 does too while the other lines of its message pass.
#[test]
fn kafka_envelope_reaches_the_function_and_malformed_messages_are_dead_letters() {
    let Some(broker) = Broker::get() else { return };
    let input = topic("envelope-in");
    broker.create_topic(&input, 1);
    let t = 1_700_000_000_000_i64;
    broker.produce_messages(
        &input,
        &[
            Outgoing {
                key: Some(b"k1".to_vec()),
                headers: vec![("trace".into(), Some(b"abc".to_vec())), ("flag".into(), None)],
                ..message(b"{\"n\": 1}", t)
            },
            message(b" [1,\"two\"]\n", t + 1),
            message(b"{\"n\":", t + 2),
            Outgoing {
                key: Some(b"k4".to_vec()),
                ..message(b"\"last\"", t + 3)
            },
        ],
    );
    let work = Workdir::new();
    let finished = work.run_ok(
        &identity_job(&broker.servers, &input, "format = \"json\"\nenvelope = true"),
        &[],
    );
    let envelope = |key: &str, value: &str, headers: &str, offset: i64| {
        format!(
            "{{\"key\":{key},\"value\":{value},\"headers\":{{{headers}}},\"topic\":\"{input}\",\"partition\":0,\"offset\":{offset},\"timestamp\":{}}}",
            t + offset
        )
    };
    assert_eq!(
        work.read("out.txt").lines().collect::<Vec<_>>(),
        [
            envelope("\"k1\"", "{\"n\": 1}", "\"trace\":\"abc\",\"flag\":null", 0),
            envelope("null", "[1,\"two\"]", "", 1),
            envelope("\"k4\"", "\"last\"", "", 3),
        ],
        "{}",
        finished.stderr
    );
    assert_eq!(
        work.read("dead.jsonl"),
        format!(
            "{{\"operator\":\"in\",\"module\":\"\",\"reason\":\"not a JSON message: EOF while parsing a value at line 1 column 5 (topic {input}, partition 0, offset 2)\",\"timestamp\":{},\"record\":\"{{\\\"n\\\":\"}}\n",
            t + 2
        )
    );

    let lines = topic("bad-lines-in");
    broker.create_topic(&lines, 1);
    broker.produce_messages(&lines, &[message(b"a\n\xff b\nc\n", t), message(b"d", t + 1)]);
    let work = Workdir::new();
    work.run_ok(&identity_job(&broker.servers, &lines, "format = \"lines\""), &[]);
    assert_eq!(work.read("out.txt"), "a\nc\nd\n");
    assert_eq!(
        work.read("dead.jsonl"),
        format!(
            "{{\"operator\":\"in\",\"module\":\"\",\"reason\":\"line 2 is not UTF-8: invalid utf-8 sequence of 1 bytes from index 0 (topic {lines}, partition 0, offset 0)\",\"timestamp\":{t},\"record_hex\":\"ff2062\"}}\n"
        )
    );
}

/// An envelope needs JSON: refused when the job loads, naming the field.
#[test]
fn kafka_envelope_without_json_is_refused() {
    let work = Workdir::new();
    let refused = work.weir(
        "run",
        &identity_job("127.0.0.1:9", "t", "format = \"lines\"\nenvelope = true"),
        &[],
    );
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("source `in` → envelope: needs `format = \"json\"`"),
        "{}",
        refused.stderr
    );
}

/// Base of the event times in the watermark tests (a multiple of the
/// 10-second windows).
const T: i64 = 1_700_000_000_000;

/// A follow-mode Kafka source `in` (consumer group `group`) -> identity
/// map -> tumbling 10 s windows of `concat` keyed by the first word, with
/// a late side output; `source_watermarks` or `map_watermarks` holds the
/// watermark strategy (on the source: one generator a partition; on the
/// map: one for the subtask's whole output, as with Flink's
/// `assignTimestampsAndWatermarks` after the source). Checkpoints every
/// 50 ms commit the source's offsets to the group.
fn window_job(servers: &str, topic: &str, group: &str, source_watermarks: &str, map_watermarks: &str) -> String {
    format!(
        r#"
[job]
name = "kafka-windows"

[checkpoint]
dir = "checkpoints"
interval_ms = 50

[[source]]
uid = "in"
type = "kafka"
bootstrap_servers = "{servers}"
topics = ["{topic}"]
group_id = "{group}"
linger_ms = 20
parallelism = 1
{source_watermarks}

[[operator]]
uid = "copy"
input = "in"
module = "testkit.wasm"
function = "identity"
parallelism = 1
{map_watermarks}

[[operator]]
uid = "win"
input = "copy"
module = "testkit.wasm"
function = "concat"
parallelism = 1
key_by = {{ module = "testkit.wasm", function = "first_word" }}
window = {{ type = "tumbling", size_ms = 10000 }}
late_output = "late"

[[sink]]
uid = "out"
input = "win"
type = "file"
path = "out.txt"

[[sink]]
uid = "late"
input = "win"
side_output = "late"
type = "file"
path = "late.txt"
"#
    )
}

/// A record `key text` of `partition` at `timestamp`.
fn event(partition: i32, key: &str, text: &str, timestamp: i64) -> Outgoing {
    Outgoing {
        partition,
        value: format!("{key} {text}").into_bytes(),
        timestamp: Some(timestamp),
        ..Outgoing::default()
    }
}

/// The oracle of `concat` over tumbling 10 s windows: one line
/// `key,start,end,texts` per key and window, the texts sorted.
fn window_oracle(events: &[Outgoing]) -> Vec<String> {
    let mut windows: std::collections::BTreeMap<(String, i64), Vec<String>> = Default::default();
    for e in events {
        let text = String::from_utf8(e.value.clone()).expect("text");
        let key = text.split(' ').next().unwrap_or_default().to_string();
        let start = e.timestamp.expect("a timestamp").div_euclid(10_000) * 10_000;
        windows.entry((key, start)).or_default().push(text);
    }
    let mut lines: Vec<String> = windows
        .into_iter()
        .map(|((key, start), mut texts)| {
            texts.sort();
            format!("{key},{start},{},{}", start + 10_000, texts.join("|"))
        })
        .collect();
    lines.sort();
    lines
}

/// The lines of `name` in `work`, sorted (none when it does not exist).
fn lines_of(work: &Workdir, name: &str) -> Vec<String> {
    std::fs::read_to_string(work.path(name))
        .map(|text| crate::harness::sorted_lines(&text))
        .unwrap_or_default()
}

/// Proves per-partition watermarks: partition 1 runs 1000 s ahead of
/// partition 0 in event time. The job first reads partition 0's first 20 s
/// and all of partition 1 (the test waits until the source has committed
/// those offsets, so they are read), then partition 0's next 20 s arrive.
/// With the strategy on the source, partition 0 holds the watermark back
/// and no record is late: the windows equal the oracle and the late output
/// is empty. The same job with the strategy on the map after the source
/// (one watermark for the subtask) has moved its watermark past partition
/// 0's next records, and all of them go to the late output (which shows
/// this test fails without per-partition watermarks).
#[test]
fn kafka_per_partition_watermarks_keep_a_slow_partition_on_time() {
    let Some(broker) = Broker::get() else { return };
    let key = |i: i64| if i % 3 == 0 { "a" } else { "b" };
    let slow: Vec<Outgoing> = (0..40)
        .map(|i| event(0, key(i), &format!("s{i}"), T + i * 1_000))
        .collect();
    let fast: Vec<Outgoing> = (0..20)
        .map(|i| event(1, key(i), &format!("f{i}"), T + 1_000_000 + i * 1_000))
        .collect();
    // Far ahead in both partitions: every window above fires.
    let ends = [
        event(0, "z", "end0", T + 3_000_000),
        event(1, "z", "end1", T + 3_000_000),
    ];
    let expected = window_oracle(&[&slow[..], &fast[..]].concat());
    let bounded = "watermarks = { strategy = \"bounded-out-of-orderness\", max_out_of_orderness_ms = 1000 }";
    for (run, on_source) in [("per-partition", true), ("single", false)] {
        let input = topic(&format!("wm-{run}"));
        let group = format!("group-{input}");
        broker.create_topic(&input, 2);
        broker.produce_messages(&input, &[&slow[..20], &fast[..]].concat());
        let work = Workdir::new();
        let (source, map) = if on_source { (bounded, "") } else { ("", bounded) };
        let mut running =
            crate::harness::Running::start(&work, &window_job(&broker.servers, &input, &group, source, map));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while broker.committed(&group, &input, 2) != [Some(20), Some(20)] {
            assert!(
                std::time::Instant::now() < deadline,
                "{run}: the source did not commit offsets 20 and 20 in a minute"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        broker.produce_messages(&input, &[&slow[20..], &ends[..]].concat());
        if on_source {
            running.wait_for_lines("out.txt", expected.len());
        } else {
            running.wait_for_lines("late.txt", 20);
        }
        drop(running);
        let (out, late) = (lines_of(&work, "out.txt"), lines_of(&work, "late.txt"));
        if on_source {
            assert_eq!(out, expected, "{run}: windows differ from the oracle");
            assert_eq!(late, Vec::<String>::new(), "{run}: late records");
        } else {
            let next: Vec<String> = slow[20..]
                .iter()
                .map(|e| String::from_utf8(e.value.clone()).expect("text"))
                .collect();
            assert!(
                next.iter().all(|record| late.contains(record)),
                "{run}: partition 0's next records are not all late: {late:?}"
            );
            assert_ne!(out, expected, "{run}: a single watermark lost nothing");
        }
    }
}

/// Starts `weir run job.toml --restore latest` in `work`, its log (at
/// `info`) going to `log`.
fn start_restoring(work: &Workdir, log: &str) -> std::process::Child {
    let log = std::fs::File::create(work.path(log)).expect("log file");
    crate::harness::weir()
        .current_dir(work.path(""))
        .env("WEIR_LOG", "info")
        .args(["run", "--quiet", "job.toml", "--restore", "latest"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("weir starts")
}

/// Waits until the `files` sink folder `out` of `work` has committed at
/// least `lines` lines (at most two minutes), then kills `child` with
/// SIGKILL; returns the committed lines, sorted.
fn kill_once_committed(work: &Workdir, mut child: std::process::Child, lines: usize, what: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let committed = || crate::harness::committed_in_order(&work.path("out"));
    while committed().len() < lines {
        assert!(
            child.try_wait().expect("polls").is_none(),
            "{what}: the job ended early"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {} of {lines} window lines committed in two minutes: {:?}",
            committed().len(),
            committed()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL weir");
    child.wait().expect("reap weir");
    let mut out = committed();
    out.sort();
    out
}

/// Proves that each partition's watermark generator survives a SIGKILL and
/// a restore with its split. Partition 0 is slow (event time T..T+40 s),
/// partition 1 runs 1000 s ahead; output goes through the exactly-once
/// `files` sink. Run 1 reads partition 0's first 20 s and all of partition
/// 1 and is killed once the group has offsets 20 and 20 (they are committed
/// from a completed checkpoint, so the restore starts from one taken after
/// the fast partition ran ahead). Run 2 restores and only partition 0 gets
/// records (its next 20 s, then one at T+2000 s): its records must not be
/// late (a single watermark would have passed them), and the fast window
/// [T+1000 s, T+1010 s) must fire — only partition 1's restored generator
/// (max T+1019 s) can let it, as partition 1 reads nothing in this run. It
/// is killed once those windows are committed. Run 3 restores and only
/// partition 1 gets a record (T+3000 s): the window [T+1010 s, T+1020 s)
/// fires only through partition 0's restored generator (max T+2000 s).
/// A forgotten generator would hold its window back and the test would
/// fail waiting; at the end the committed windows equal the oracle, none
/// lost or doubled, and the committed late output is empty.
#[test]
fn kafka_per_partition_watermarks_survive_kills_and_restores() {
    let Some(broker) = Broker::get() else { return };
    let key = |i: i64| if i % 3 == 0 { "a" } else { "b" };
    let slow: Vec<Outgoing> = (0..40)
        .map(|i| event(0, key(i), &format!("s{i}"), T + i * 1_000))
        .collect();
    let fast: Vec<Outgoing> = (0..20)
        .map(|i| event(1, key(i), &format!("f{i}"), T + 1_000_000 + i * 1_000))
        .collect();
    let ahead = event(0, "z", "ahead0", T + 2_000_000);
    let end = event(1, "z", "end1", T + 3_000_000);
    let input = topic("wm-kill");
    let group = format!("group-{input}");
    broker.create_topic(&input, 2);
    broker.produce_messages(&input, &[&slow[..20], &fast[..]].concat());
    let bounded = "watermarks = { strategy = \"bounded-out-of-orderness\", max_out_of_orderness_ms = 1000 }";
    let job = window_job(&broker.servers, &input, &group, bounded, "")
        .replace(
            "type = \"file\"\npath = \"out.txt\"",
            "type = \"files\"\npath = \"out\"",
        )
        .replace(
            "type = \"file\"\npath = \"late.txt\"",
            "type = \"files\"\npath = \"late\"",
        );
    assert!(job.contains("path = \"out\"") && job.contains("path = \"late\""));
    let work = Workdir::new();
    work.write("job.toml", &job);

    // Run 1: killed after a checkpoint holding offsets 20 and 20.
    let mut first = start_restoring(&work, "run1.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while broker.committed(&group, &input, 2) != [Some(20), Some(20)] {
        assert!(first.try_wait().expect("polls").is_none(), "run 1 ended early");
        assert!(
            std::time::Instant::now() < deadline,
            "run 1 did not commit offsets 20 and 20 in a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    first.kill().expect("SIGKILL weir");
    first.wait().expect("reap weir");

    // Run 2: only the slow partition moves on.
    broker.produce_messages(&input, &[&slow[20..], std::slice::from_ref(&ahead)].concat());
    let second_expected = window_oracle(&[&slow[..], &fast[..10]].concat());
    let second = start_restoring(&work, "run2.log");
    let out = kill_once_committed(&work, second, second_expected.len(), "run 2");
    assert!(
        work.read("run2.log").contains("from checkpoint"),
        "run 2 did not restore"
    );
    assert_eq!(out, second_expected, "run 2: windows differ from the oracle");

    // Run 3: only the fast partition moves on.
    broker.produce_messages(&input, std::slice::from_ref(&end));
    let expected = window_oracle(&[&slow[..], &fast[..]].concat());
    let third = start_restoring(&work, "run3.log");
    let out = kill_once_committed(&work, third, expected.len(), "run 3");
    assert!(
        work.read("run3.log").contains("from checkpoint"),
        "run 3 did not restore"
    );
    assert_eq!(out, expected, "windows after the kills differ from the oracle");
    let late = crate::harness::committed_in_order(&work.path("late"));
    assert_eq!(late, Vec::<String>::new(), "late records after the kills");
}

/// Proves idleness per partition: partition 1 stays empty, partition 0
/// holds 30 s of records. With `idle_timeout_ms`, the empty partition stops
/// holding the watermark back and the windows up to partition 0's
/// watermark fire while the job runs (without it none would: the test
/// would wait two minutes and fail); exactly those windows, as the oracle
/// has them.
#[test]
fn kafka_an_empty_partition_goes_idle_and_does_not_hold_windows_back() {
    let Some(broker) = Broker::get() else { return };
    let input = topic("wm-idle");
    broker.create_topic(&input, 2);
    let events: Vec<Outgoing> = (0..30)
        .map(|i| event(0, if i % 2 == 0 { "a" } else { "b" }, &format!("r{i}"), T + i * 1_000))
        .collect();
    broker.produce_messages(&input, &events);
    // The watermark is T + 29 000 - 1 000 - 1: the windows before T + 20 000 fire.
    let expected = window_oracle(&events[..20]);
    let work = Workdir::new();
    let source = "watermarks = { strategy = \"bounded-out-of-orderness\", max_out_of_orderness_ms = 1000, idle_timeout_ms = 200 }";
    let job = window_job(&broker.servers, &input, &format!("group-{input}"), source, "");
    let mut running = crate::harness::Running::start(&work, &job);
    running.wait_for_lines("out.txt", expected.len());
    drop(running);
    assert_eq!(lines_of(&work, "out.txt"), expected);
    assert_eq!(lines_of(&work, "late.txt"), Vec::<String>::new());
}

/// Proves topic patterns and discovery: a follow-mode source of two
/// subtasks reads every topic whose whole name matches `disc-[ab]-PID`,
/// looking for new ones every 100 ms. It first reads topic `a` (two
/// partitions); then topic `b` (three partitions) is created and written
/// while the job runs, and its records are read too, each exactly once;
/// topic `c`, which does not match, is never read. (nisshi 0.6.0 cannot
/// add partitions to a topic — it has no CreatePartitions — so a new
/// topic stands for new partitions: both go through the same path.)
#[test]
fn kafka_topic_pattern_discovers_new_topics_while_running() {
    let Some(broker) = Broker::get() else { return };
    let records = |name: &str, count: i32, partitions: i32| -> Vec<Outgoing> {
        (0..count)
            .map(|i| Outgoing {
                partition: i % partitions,
                value: format!("{name}{i}").into_bytes(),
                ..Outgoing::default()
            })
            .collect()
    };
    let (a, b, c) = (topic("disc-a"), topic("disc-b"), topic("disc-c"));
    broker.create_topic(&a, 2);
    broker.create_topic(&c, 1);
    broker.produce_messages(&a, &records("a", 10, 2));
    broker.produce_messages(&c, &records("c", 5, 1));
    let job = format!(
        r#"
[job]
name = "discovery"

[[source]]
uid = "in"
type = "kafka"
bootstrap_servers = "{}"
topic_pattern = "disc-[ab]-{}"
discovery_interval_ms = 100
format = "lines"
linger_ms = 20
parallelism = 2

[[operator]]
uid = "copy"
input = "in"
module = "testkit.wasm"
function = "identity"

[[sink]]
uid = "out"
input = "copy"
type = "file"
path = "out.txt"
"#,
        broker.servers,
        std::process::id()
    );
    let work = Workdir::new();
    let mut running = crate::harness::Running::start(&work, &job);
    running.wait_for_lines("out.txt", 10);
    broker.create_topic(&b, 3);
    broker.produce_messages(&b, &records("b", 15, 3));
    running.wait_for_lines("out.txt", 25);
    drop(running);
    let mut expected: Vec<String> = (0..10)
        .map(|i| format!("a{i}"))
        .chain((0..15).map(|i| format!("b{i}")))
        .collect();
    expected.sort();
    assert_eq!(lines_of(&work, "out.txt"), expected);
}

/// `topics` and `topic_pattern` exclude each other; a pattern must be a
/// regular expression; a bounded source does not discover.
#[test]
fn kafka_topic_pattern_and_discovery_mistakes_are_refused() {
    let work = Workdir::new();
    let cases = [
        (
            "topic_pattern = \"x.*\"",
            "source `in` → topics: give either `topics` or `topic_pattern`, not both",
        ),
        (
            "discovery_interval_ms = 1000",
            "source `in` → discovery_interval_ms: a bounded source reads the partitions it finds at start",
        ),
    ];
    for (setting, message) in cases {
        let refused = work.weir("run", &identity_job("127.0.0.1:9", "t", setting), &[]);
        assert!(!refused.success);
        assert!(refused.stderr.contains(message), "{setting}: {}", refused.stderr);
    }
    let bad_pattern = identity_job("127.0.0.1:9", "t", "").replace("topics = [\"t\"]", "topic_pattern = \"(\"");
    let refused = work.weir("run", &bad_pattern, &[]);
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("source `in` → topic_pattern: not a regular expression"),
        "{}",
        refused.stderr
    );
}
