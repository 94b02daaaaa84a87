//! Kafka over TLS and with SASL: the settings pass through `properties`
//! to librdkafka, built with TLS (OpenSSL) and SASL PLAIN, SCRAM and
//! OAUTHBEARER.

use super::broker::Broker;
use super::{CHECKPOINTS, kafka_sink, messages, topic, wordcount_job};
use crate::harness::Workdir;
use crate::oracle;
use std::sync::atomic::Ordering;

/// Proves: a Kafka -> Kafka job whose source and sink set
/// `security.protocol = "ssl"` and a CA file reads and writes a broker
/// reachable only over TLS, exactly-once output equal to the oracle; the
/// same source without those settings fails with a message naming it.
#[test]
fn kafka_over_tls_matches_the_oracle_and_plaintext_is_refused() {
    let work = Workdir::new();
    let Some(broker) = Broker::secure(work.dir.path()) else {
        return;
    };
    let text = oracle::text(2_000, 51);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("tls-in");
    let output = topic("tls-out");
    broker.create_topic(&input, 3);
    broker.create_topic(&output, 1);
    broker.produce(&input, &messages(&text, 3, 52));
    let properties = broker.properties_line();
    let secure_job = wordcount_job(
        "tls",
        &broker.servers,
        &input,
        CHECKPOINTS,
        &format!("{}{properties}\n", kafka_sink(&broker.servers, &output)),
    )
    .replace("bounded = true", &format!("bounded = true\n{properties}"));
    work.run_ok(&secure_job, &[]);
    let mut committed = broker.read_committed(&output);
    committed.sort();
    assert_eq!(committed, expected, "the output over TLS differs from the oracle");

    let plain_job = wordcount_job("plain", &broker.servers, &input, CHECKPOINTS, "type = \"stdout\"\n");
    let refused = work.weir("run", &plain_job, &[]);
    assert!(!refused.success, "a plaintext client read a TLS-only broker");
    assert!(
        refused.stderr.contains(&format!(
            "source `lines`: cannot reach Kafka at {} (asking for topic `{input}`)",
            broker.servers
        )),
        "{}",
        refused.stderr
    );
}

/// Proves: a Kafka -> Kafka job whose source and sink set
/// `security.protocol = "sasl_plaintext"` with SASL PLAIN credentials
/// authenticates (a gate in front of the broker checks the exact user and
/// password, [`super::sasl_proxy`]) and its output equals the oracle; the
/// same job with a wrong password is refused by the gate and fails with a
/// message naming the source.
#[test]
fn kafka_with_sasl_plain_matches_the_oracle_and_a_wrong_password_is_refused() {
    let Some((broker, gate)) = Broker::behind_sasl("weir", "s3cret") else {
        return;
    };
    let text = oracle::text(2_000, 53);
    let expected = oracle::word_count_lines(&oracle::word_counts(&text));
    let input = topic("sasl-in");
    let output = topic("sasl-out");
    broker.create_topic(&input, 3);
    broker.create_topic(&output, 1);
    broker.produce(&input, &messages(&text, 3, 54));
    let properties = broker.properties_line();
    let job = |properties: &str| {
        wordcount_job(
            "sasl",
            &broker.servers,
            &input,
            CHECKPOINTS,
            &format!("{}{properties}\n", kafka_sink(&broker.servers, &output)),
        )
        .replace("bounded = true", &format!("bounded = true\n{properties}"))
    };
    let work = Workdir::new();
    let refused_before = gate.refused.load(Ordering::Relaxed);
    work.run_ok(&job(&properties), &[]);
    let mut committed = broker.read_committed(&output);
    committed.sort();
    assert_eq!(committed, expected, "the output with SASL differs from the oracle");
    assert_eq!(
        gate.refused.load(Ordering::Relaxed),
        refused_before,
        "a right password was refused"
    );
    assert!(gate.authenticated.load(Ordering::Relaxed) > 0, "nothing authenticated");

    let wrong = work.weir("run", &job(&properties.replace("s3cret", "wrong")), &[]);
    assert!(!wrong.success, "a wrong password was let in");
    assert!(
        wrong
            .stderr
            .contains(&format!("source `lines`: cannot reach Kafka at {}", broker.servers))
            || wrong
                .stderr
                .contains(&format!("sink `counts`: cannot reach Kafka at {}", broker.servers)),
        "{}",
        wrong.stderr
    );
    assert!(
        gate.refused.load(Ordering::Relaxed) > refused_before,
        "the gate refused nobody"
    );
}
