//! The Kafka sink's features beyond writing values: envelopes (key,
//! headers, partition and timestamp from the record), dead letters for
//! records that are not envelopes, and the partitioners (Kafka's key hash,
//! round robin, Flink's fixed partitioner, a Wasm partitioner function).
//! Each test runs the real `weir` against the test broker and reads the
//! messages back with their partitions, keys and headers.

use std::collections::BTreeMap;

use super::broker::{Broker, Read};
use super::topic;
use crate::harness::{Workdir, module};

/// A job that reads `in.txt` (one record a line) and writes every line to
/// Kafka sink `out` (exactly once) with `settings`; dead letters go to
/// `dead.jsonl`; the first failure fails the job. The job is named after
/// its topic: tests run at once on one broker, and the sink's transactional
/// ids carry the job's name, so two jobs of one name would fence each other.
fn sink_job(servers: &str, topic: &str, settings: &str) -> String {
    format!(
        r#"
[job]
name = "sink-{topic}"
dead_letter = "dead.jsonl"

[restart]
strategy = "none"

[[source]]
uid = "in"
type = "file"
path = "in.txt"

[[sink]]
uid = "out"
input = "in"
type = "kafka"
bootstrap_servers = "{servers}"
topic = "{topic}"
{settings}
"#
    )
}

/// Kafka's `Utils.murmur2`, written again from the Java source (the
/// oracle of the key-hash partitioner, independent of the sink's code).
fn java_murmur2(data: &[u8]) -> i32 {
    let m: i32 = 0x5bd1e995;
    let mut h: i32 = 0x9747b28c_u32 as i32 ^ data.len() as i32;
    let length4 = data.len() / 4;
    for i in 0..length4 {
        let i4 = i * 4;
        let mut k = (data[i4] as i32 & 0xff)
            + ((data[i4 + 1] as i32 & 0xff) << 8)
            + ((data[i4 + 2] as i32 & 0xff) << 16)
            + ((data[i4 + 3] as i32 & 0xff) << 24);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> 24) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rest = data.len() % 4;
    let base = data.len() & !3;
    if rest >= 3 {
        h ^= (data[base + 2] as i32 & 0xff) << 16;
    }
    if rest >= 2 {
        h ^= (data[base + 1] as i32 & 0xff) << 8;
    }
    if rest >= 1 {
        h ^= data[base] as i32 & 0xff;
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// The partition of Kafka's Java default partitioner for `key`.
fn java_partition(key: &str, partitions: i32) -> i32 {
    (java_murmur2(key.as_bytes()) & 0x7fffffff) % partitions
}

/// The dead letters of `work` as (operator, reason, record).
fn dead_letters(work: &Workdir) -> Vec<(String, String, String)> {
    work.read("dead.jsonl")
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a dead letter is JSON");
            let field = |name: &str| entry[name].as_str().unwrap_or_default().to_string();
            (field("operator"), field("reason"), field("record"))
        })
        .collect()
}

/// Proves that with `format = "envelope"` each record's key, headers,
/// partition, timestamp and value land in its message exactly (the value
/// as its JSON text), that an explicit partition wins over the key hash,
/// and that records that are not envelopes (not JSON, an unknown field, a
/// partition the topic lacks) go to the dead-letter output with the sink's
/// uid and the reason, while the job goes on and succeeds.
#[test]
fn kafka_sink_envelopes_become_messages_and_bad_records_dead_letters() {
    let Some(broker) = Broker::get() else { return };
    let output = topic("sink-envelope");
    broker.create_topic(&output, 3);
    let work = Workdir::new();
    let t = 1_700_000_000_000_i64;
    work.write(
        "in.txt",
        [
            format!(
                r#"{{"key":"k1","value":{{"n": 1}},"headers":{{"trace":"abc","flag":null}},"partition":2,"timestamp":{t}}}"#
            ),
            format!(r#"{{"key":"user-7","value":"text","timestamp":{}}}"#, t + 1),
            "not json".to_string(),
            r#"{"value":1,"colour":"red"}"#.to_string(),
            r#"{"value":2,"partition":3}"#.to_string(),
            format!(r#"{{"key":null,"value":null,"partition":1,"timestamp":{}}}"#, t + 2),
            format!(r#"{{"key":"k\"q","value":[1, 2],"partition":2,"headers":{{"h":"x"}},"timestamp":{}}}"#, t + 3),
        ]
        .join("\n")
            + "\n",
    );
    let finished = work.run_ok(
        &sink_job(
            &broker.servers,
            &output,
            "format = \"envelope\"\npartitioner = \"key-hash\"",
        ),
        &[],
    );
    let read = broker.read_messages(&output);
    let message = |partition, key: Option<&str>, headers: &[(&str, Option<&str>)], value: &str, at| Read {
        partition,
        key: key.map(str::to_string),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect(),
        value: value.to_string(),
        timestamp: Some(at),
    };
    let mut expected = vec![
        message(
            2,
            Some("k1"),
            &[("trace", Some("abc")), ("flag", None)],
            r#"{"n": 1}"#,
            t,
        ),
        message(java_partition("user-7", 3), Some("user-7"), &[], r#""text""#, t + 1),
        message(1, None, &[], "null", t + 2),
        message(2, Some("k\"q"), &[("h", Some("x"))], "[1, 2]", t + 3),
    ];
    expected.sort_by_key(|m| m.partition);
    assert_eq!(read, expected, "{}", finished.stderr);
    assert_eq!(
        dead_letters(&work),
        [
            (
                "out".to_string(),
                "sink `out`: not a Kafka envelope: expected a JSON object".to_string(),
                "not json".to_string()
            ),
            (
                "out".to_string(),
                "sink `out`: not a Kafka envelope: unknown field `colour`, expected one of `key`, `value`, `headers`, `partition`, `timestamp`".to_string(),
                r#"{"value":1,"colour":"red"}"#.to_string()
            ),
            (
                "out".to_string(),
                format!("sink `out`: partition 3 is out of range: topic `{output}` has 3 partitions"),
                r#"{"value":2,"partition":3}"#.to_string()
            ),
        ]
    );
}

/// Proves that `partitioner = "key-hash"` puts every message in the
/// partition Kafka's Java default partitioner gives its key
/// (`toPositive(murmur2(key)) % partitions`, computed here from the Java
/// source), so equal keys share a partition, and with the exact count per
/// partition.
#[test]
fn kafka_sink_key_hash_follows_kafkas_java_partitioner() {
    let Some(broker) = Broker::get() else { return };
    let output = topic("sink-key-hash");
    broker.create_topic(&output, 4);
    let work = Workdir::new();
    let keys: Vec<String> = (0..60).map(|i| format!("customer-{}", i % 12)).collect();
    let lines: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| format!(r#"{{"key":"{key}","value":{i}}}"#))
        .collect();
    work.write("in.txt", lines.join("\n") + "\n");
    work.run_ok(
        &sink_job(
            &broker.servers,
            &output,
            "format = \"envelope\"\npartitioner = \"key-hash\"",
        ),
        &[],
    );
    let read = broker.read_messages(&output);
    assert_eq!(read.len(), 60);
    for message in &read {
        let key = message.key.as_deref().expect("a key");
        assert_eq!(message.partition, java_partition(key, 4), "{message:?}");
        assert_eq!(keys[message.value.parse::<usize>().expect("a number")], key);
    }
    let mut expected: BTreeMap<i32, usize> = BTreeMap::new();
    for key in &keys {
        *expected.entry(java_partition(key, 4)).or_default() += 1;
    }
    let mut counted: BTreeMap<i32, usize> = BTreeMap::new();
    for message in &read {
        *counted.entry(message.partition).or_default() += 1;
    }
    assert_eq!(counted, expected);
    assert!(expected.len() > 1, "the keys spread over several partitions");
}

/// Proves that `partitioner = "round-robin"` sends record `i` of the one
/// sink subtask to partition `i % 3` (four records each, in order), and
/// that `partitioner = "fixed"` (Flink's `FlinkFixedPartitioner`) sends
/// every record of subtask 0 to partition 0.
#[test]
fn kafka_sink_round_robin_spreads_evenly_and_fixed_keeps_one_partition() {
    let Some(broker) = Broker::get() else { return };
    let lines: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    for (name, partitioner) in [("rr", "round-robin"), ("fixed", "fixed")] {
        let output = topic(&format!("sink-{name}"));
        broker.create_topic(&output, 3);
        let work = Workdir::new();
        work.write("in.txt", lines.join("\n") + "\n");
        work.run_ok(
            &sink_job(&broker.servers, &output, &format!("partitioner = \"{partitioner}\"")),
            &[],
        );
        let read: Vec<(i32, String)> = broker
            .read_messages(&output)
            .into_iter()
            .map(|m| {
                assert_eq!(
                    (m.key, m.headers.len()),
                    (None, 0),
                    "a raw record has no key or headers"
                );
                (m.partition, m.value)
            })
            .collect();
        let expected: Vec<(i32, String)> = match partitioner {
            "round-robin" => (0..3)
                .flat_map(|p| (0..4).map(move |k| (p, format!("r{}", p + 3 * k))))
                .collect(),
            _ => lines.iter().map(|l| (0, l.clone())).collect(),
        };
        assert_eq!(read, expected, "{partitioner}");
    }
}

/// Proves that a Wasm partitioner function (`by_number` of testkit: the
/// value modulo the partition count) chooses each message's partition,
/// except where the envelope names one, and that a partitioner returning a
/// partition the topic lacks fails the job with a message naming the sink,
/// the function, the module and the value.
#[test]
fn kafka_sink_wasm_partitioner_chooses_partitions_and_out_of_range_fails() {
    let Some(broker) = Broker::get() else { return };
    let output = topic("sink-wasm");
    broker.create_topic(&output, 3);
    let work = Workdir::new();
    let values = [5, 7, 2, 9, 4, 11];
    let lines: Vec<String> = values
        .iter()
        .map(|v| match v {
            7 => format!(r#"{{"key":"k{v}","value":{v},"partition":0}}"#),
            _ => format!(r#"{{"key":"k{v}","value":{v}}}"#),
        })
        .collect();
    work.write("in.txt", lines.join("\n") + "\n");
    let settings = "format = \"envelope\"\npartitioner = { module = \"testkit.wasm\", function = \"by_number\" }";
    work.run_ok(&sink_job(&broker.servers, &output, settings), &[]);
    let read: Vec<(i32, String, Option<String>)> = broker
        .read_messages(&output)
        .into_iter()
        .map(|m| (m.partition, m.value, m.key))
        .collect();
    // 5 % 3 = 2, 7 (explicit) 0, 2 % 3 = 2, 9 % 3 = 0, 4 % 3 = 1, 11 % 3 = 2.
    let expected: Vec<(i32, String, Option<String>)> = [(0, 7), (0, 9), (1, 4), (2, 5), (2, 2), (2, 11)]
        .into_iter()
        .map(|(p, v)| (p, v.to_string(), Some(format!("k{v}"))))
        .collect();
    assert_eq!(read, expected);

    let failing = topic("sink-wasm-range");
    broker.create_topic(&failing, 3);
    let settings = "partitioner = { module = \"testkit.wasm\", function = \"out_of_range\" }";
    let failed = work.weir("run", &sink_job(&broker.servers, &failing, settings), &[]);
    assert!(!failed.success, "an out-of-range partition must fail the job");
    let expected = format!(
        "sink `out`: partitioner `out_of_range` of module testkit@0.1.0 ({}) returned partition 3, but topic `{failing}` has 3 partitions (0..=2)",
        module("testkit").display()
    );
    assert!(
        failed.stderr.contains(&expected),
        "expected `{expected}` in:\n{}",
        failed.stderr
    );
    assert_eq!(broker.read_messages(&failing), [], "nothing is written");
}

/// Job-file errors of the sink's new fields name the field and the line
/// (no broker needed: the job is refused when it loads).
#[test]
fn kafka_sink_bad_partitioners_are_refused_with_field_and_line() {
    let work = Workdir::new();
    let job = |settings: &str| sink_job("127.0.0.1:9", "t", settings);
    // Errors name the job file by its full path.
    let folder = format!("{}/", work.dir.path().display());
    let refused = work.weir("run", &job("partitioner = \"hash\""), &[]);
    assert!(!refused.success);
    assert_eq!(
        refused.stderr.replace(&folder, ""),
        "error: job.toml:20: sink `out` → partitioner: expected `default`, `key-hash`, `round-robin`, `fixed` or `{ module = \"...\", function = \"...\" }`, found `hash`\n"
    );
    let wrong_kind = work.weir(
        "run",
        &job("partitioner = { module = \"testkit.wasm\", function = \"identity\" }"),
        &[],
    );
    assert!(!wrong_kind.success);
    assert_eq!(
        wrong_kind.stderr.replace(&folder, ""),
        "error: job.toml:20: sink `out` → partitioner → function: expected a partitioner, found `identity`, a map function\n"
    );
    let keyless = work.weir("run", &job("partitioner = \"key-hash\""), &[]);
    assert!(!keyless.success);
    assert_eq!(
        keyless.stderr.replace(&folder, ""),
        "error: job.toml:20: sink `out` → partitioner: key-hash needs keys, and raw records have none: use `format = \"envelope\"` (a `key` per record)\n"
    );
    let partitioner_as_operator = format!(
        "{}\n[[operator]]\nuid = \"p\"\ninput = \"in\"\nmodule = \"testkit.wasm\"\nfunction = \"by_number\"\n",
        job("")
    );
    let misused = work.weir("run", &partitioner_as_operator, &[]);
    assert!(!misused.success);
    assert!(
        misused.stderr.contains(
            "operator `p` → function: `by_number` is a Kafka partitioner; use it in a kafka sink's `partitioner = { module = ..., function = ... }`, not as an operator"
        ),
        "{}",
        misused.stderr
    );
    let bad_format = work.weir("run", &job("format = \"avro\""), &[]);
    assert!(!bad_format.success);
    assert!(
        bad_format
            .stderr
            .contains("unknown variant `avro`, expected `raw` or `envelope`"),
        "{}",
        bad_format.stderr
    );
}
