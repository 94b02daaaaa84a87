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
                headers: vec![
                    ("trace".into(), Some(b"abc".to_vec())),
                    ("flag".into(), None),
                ],
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
