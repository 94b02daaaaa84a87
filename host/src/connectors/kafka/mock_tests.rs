//! The Kafka source and sink driven directly against librdkafka's
//! in-process mock cluster ([`MockCluster`]): no broker, no Wasm, every
//! test with its own cluster.
//!
//! What the mock cluster is good for: its partitions, offsets, consumer
//! groups and offset commits are real, and it injects faults (an error for
//! the next requests of an API, a broker down). So these tests pin the
//! source's partition assignment, offsets, restore, discovery and
//! per-partition watermarks exactly, and the sink's call sequence and
//! error paths.
//!
//! What it cannot prove: its transactions are protocol stubs (`EndTxn`
//! writes no markers, fetches ignore `read_committed`, a second
//! `init_transactions` fences nothing), so nothing here says anything about
//! what a read-committed consumer sees; the end-to-end tests against
//! nisshi (`tests/e2e/kafka.rs`) do. It cannot add partitions to a topic
//! either (no CreatePartitions, and creating an existing topic fails), so
//! discovery is shown with a topic pattern and a new topic.
//!
//! [`source`] tests the source, [`sink`] the sink; this module holds what
//! both use. No test asserts a duration: waits loop until an exact
//! outcome, with [`GUARD`] only as a guard against hanging.

mod sink;
mod source;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::config::Partitioner;
use super::{ClientScope, Delivery, Format, Isolation, KafkaSinkConfig, KafkaSourceConfig, SinkFormat, StartFrom};

/// How long a wait may last before the test fails as hung (never reached
/// when the code works).
const GUARD: Duration = Duration::from_secs(30);

/// A mock cluster of one broker with `topics` (name, partitions).
fn cluster(topics: &[(&str, i32)]) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    for (topic, partitions) in topics {
        cluster.create_topic(topic, *partitions, 1).expect("a mock topic");
    }
    cluster
}

/// Subtask `subtask` of `parallelism` of the source or sink `uid` of job `mock`.
fn scope(uid: &str, subtask: u32, parallelism: u32) -> ClientScope {
    ClientScope {
        job: "mock".into(),
        uid: uid.into(),
        subtask,
        parallelism,
    }
}

/// A raw source of `topics`, from the earliest offsets.
fn source_config(servers: &str, topics: &[&str], bounded: bool) -> KafkaSourceConfig {
    KafkaSourceConfig {
        bootstrap_servers: servers.into(),
        topics: topics.iter().map(ToString::to_string).collect(),
        topic_pattern: None,
        discovery_interval: None,
        group_id: None,
        start: StartFrom::Earliest,
        bounded,
        format: Format::Raw,
        envelope: false,
        isolation: Isolation::ReadUncommitted,
        linger: Duration::from_millis(20),
        properties: Vec::new(),
    }
}

/// A raw sink of `topic` whose subtask writes to the partition of its
/// index (the fixed partitioner).
fn sink_config(servers: &str, topic: &str, delivery: Delivery, properties: &[(&str, &str)]) -> KafkaSinkConfig {
    KafkaSinkConfig {
        bootstrap_servers: servers.into(),
        topic: topic.into(),
        delivery,
        format: SinkFormat::Raw,
        partitioner: Partitioner::Fixed,
        properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// A plain producer of test input.
struct Feeder(BaseProducer);

impl Feeder {
    fn new(servers: &str) -> Self {
        Self(
            ClientConfig::new()
                .set("bootstrap.servers", servers)
                .create()
                .expect("a producer"),
        )
    }

    /// Writes `count` records to each of `partitions` of `topic`, named
    /// `topic/partition/offset` (the partitions start empty or hold
    /// `from` records), with timestamp 1000 + the offset.
    fn fill(&self, topic: &str, partitions: i32, from: i64, count: i64) -> Vec<String> {
        let mut sent = Vec::new();
        for partition in 0..partitions {
            for offset in from..from + count {
                let name = format!("{topic}/{partition}/{offset}");
                self.send(topic, partition, &name, 1_000 + offset);
                sent.push(name);
            }
        }
        self.flush();
        sent
    }

    fn send(&self, topic: &str, partition: i32, payload: &str, timestamp: i64) {
        let record = BaseRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(payload)
            .timestamp(timestamp);
        self.0.send(record).map_err(|(e, _)| e).expect("queued");
    }

    fn flush(&self) {
        self.0.flush(GUARD).expect("the test input is written");
    }
}

/// What `partitions` of `topic` hold, read with a plain consumer (which,
/// on the mock cluster, sees every record: no transaction markers):
/// `(partition, offset, payload)` in log order.
fn topic_contents(servers: &str, topic: &str, partitions: i32) -> Vec<(i32, i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "mock-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&list).expect("assigned");
    let (mut ended, mut read) = (BTreeSet::new(), Vec::new());
    let deadline = Instant::now() + GUARD;
    while ended.len() < usize::try_from(partitions).expect("positive") {
        assert!(Instant::now() < deadline, "hung reading {topic}");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => read.push((
                message.partition(),
                message.offset(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(error)) => panic!("cannot read {topic}: {error}"),
        }
    }
    read.sort();
    read
}
