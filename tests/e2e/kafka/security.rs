//! Kafka over TLS: the settings pass through `properties` to librdkafka,
//! built with TLS (OpenSSL).

use super::broker::Broker;
use super::{CHECKPOINTS, kafka_sink, messages, topic, wordcount_job};
use crate::harness::Workdir;
use crate::oracle;

/// Proves: a Kafka -> Kafka job whose source and sink set
/// `security.protocol = "ssl"` and a CA file reads and writes a broker
/// reachable only over TLS, exactly-once output equal to the oracle; the
/// same source without those settings fails with a message naming it.
/// Cannot prove on nisshi 0.6.0: SASL (with `--authentication`, its
/// handshake with librdkafka never completes, PLAIN included).
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
