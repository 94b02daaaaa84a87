//! The test broker: `WEIR_TEST_KAFKA` when set, otherwise a private nisshi
//! started on a free loopback port (see the parent module), with the
//! test-side Kafka clients that create topics, produce input and read
//! output back.

use std::collections::{BTreeMap, HashSet};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// A message to produce, with everything a Kafka message can carry.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The partition.
    pub partition: i32,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The headers (name, value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The value.
    pub value: Vec<u8>,
    /// The timestamp, ms (the producer's clock when absent).
    pub timestamp: Option<i64>,
}

/// A broker for one test: shared (`WEIR_TEST_KAFKA`) or private (stopped
/// when dropped).
pub struct Broker {
    /// `host:port` of the broker.
    pub servers: String,
    child: Option<Child>,
    _log: Option<tempfile::TempDir>,
}

impl Broker {
    /// The broker to test against, or `None` (with a message) when there
    /// is none and this is not CI.
    pub fn get() -> Option<Self> {
        if let Ok(servers) = std::env::var("WEIR_TEST_KAFKA") {
            return Some(Self {
                servers,
                child: None,
                _log: None,
            });
        }
        let binary = std::env::var_os("WEIR_NISSHI").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir/nisshi/bin/nisshi")
        });
        if !binary.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "no Kafka test broker: {} is missing (scripts/test.sh installs it)",
                binary.display()
            );
            eprintln!(
                "SKIPPED: no Kafka test broker ({} is missing): run `source scripts/kafka-broker.sh && weir_kafka_install`",
                binary.display()
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = tempfile::tempdir().expect("a log folder");
        let log_file = std::fs::File::create(log.path().join("broker.log")).expect("a log file");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("nisshi starts");
        let broker = Self {
            servers: format!("127.0.0.1:{port}"),
            child: Some(child),
            _log: Some(log),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nisshi did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(broker)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .create()
            .expect("an admin client");
        let results = block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topics");
        for result in results {
            result.unwrap_or_else(|(topic, e)| panic!("create topic {topic}: {e}"));
        }
    }

    /// Produces `messages` (partition, value) to `topic`, not transactionally.
    pub fn produce(&self, topic: &str, messages: &[(i32, String)]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .create()
            .expect("a producer");
        for (partition, value) in messages {
            let mut record = BaseRecord::<(), str>::to(topic)
                .partition(*partition)
                .payload(value.as_str());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush the input");
    }

    /// Produces `messages` to `topic`, not transactionally, in order.
    pub fn produce_messages(&self, topic: &str, messages: &[Outgoing]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .create()
            .expect("a producer");
        for message in messages {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &message.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            let mut record = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(message.partition)
                .payload(message.value.as_slice())
                .headers(headers);
            if let Some(key) = &message.key {
                record = record.key(key.as_slice());
            }
            if let Some(timestamp) = message.timestamp {
                record = record.timestamp(timestamp);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush the input");
    }

    /// The offsets consumer group `group` has committed for `topic`'s
    /// partitions `0..partitions` (`None` where it has none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(topic, partition);
        }
        let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(10)) else {
            return vec![None; partitions as usize];
        };
        (0..partitions)
            .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            })
            .collect()
    }

    /// Every record of `topic` a read-committed consumer reads, partition
    /// after partition in offset order.
    pub fn read_committed(&self, topic: &str) -> Vec<String> {
        self.read(topic, "read_committed")
    }

    /// Every record of `topic` a consumer with `isolation` reads to the end
    /// of each partition, partition after partition in offset order.
    pub fn read(&self, topic: &str, isolation: &str) -> Vec<String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("group.id", format!("reader-{topic}"))
            .set("isolation.level", isolation)
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len() as i32;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("a partition");
        }
        consumer.assign(&assignment).expect("assign");
        let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        let mut at_end = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while at_end.len() < partitions as usize {
            assert!(Instant::now() < deadline, "could not read {topic} to its end");
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                    by_partition.entry(message.partition()).or_default().push(value);
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
            }
        }
        by_partition.into_values().flatten().collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// Polls `future` to completion (rdkafka's admin futures complete from
/// librdkafka's own threads, so no executor is needed).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
