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
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::sasl_proxy::SaslProxy;

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
    /// librdkafka settings every client of this broker needs (TLS, SASL).
    pub client_properties: Vec<(String, String)>,
    /// The broker, and the TLS proxy in front of it, if any.
    children: Vec<Child>,
    _log: Option<tempfile::TempDir>,
}

impl Broker {
    /// The broker to test against, or `None` (with a message) when there
    /// is none and this is not CI.
    pub fn get() -> Option<Self> {
        if let Ok(servers) = std::env::var("WEIR_TEST_KAFKA") {
            return Some(Self {
                servers,
                client_properties: Vec::new(),
                children: Vec::new(),
                _log: None,
            });
        }
        Self::start(&[], Vec::new())
    }

    /// A private broker reachable only over TLS: nisshi 0.6.0 cannot serve
    /// TLS itself (its `--cert` and `--key` options exclude each other), so
    /// `socat` terminates TLS in front of it with a self-signed certificate
    /// written into `dir`, and nisshi advertises the proxy's port. `None`
    /// as [`Broker::get`], or when `socat` is missing outside CI.
    pub fn secure(dir: &std::path::Path) -> Option<Self> {
        if Command::new("socat").arg("-V").stdout(Stdio::null()).status().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "socat is missing (scripts/test.sh installs it)"
            );
            eprintln!("SKIPPED: socat is missing (scripts/test.sh installs it)");
            return None;
        }
        let (cert, key) = (dir.join("broker.pem"), dir.join("broker.key"));
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(made.success(), "openssl could not make a certificate");
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let properties = [("security.protocol", "ssl"), ("ssl.ca.location", cert.as_str())];
        let tls_port = free_port();
        let mut broker = Self::start_on(
            None,
            Some(tls_port),
            &[],
            properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        )?;
        let plain = broker.servers.clone();
        let proxy = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,cert={cert},key={key},verify=0,fork,reuseaddr"
            ))
            .arg(format!("TCP:{plain}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts");
        broker.children.push(proxy);
        broker.servers = format!("127.0.0.1:{tls_port}");
        wait_for(tls_port);
        Some(broker)
    }

    /// A private broker behind a SASL/PLAIN gate ([`SaslProxy`]) that
    /// admits `user` with `password` only; nisshi advertises the gate's
    /// port. The broker's own clients authenticate as `user`. `None` as
    /// [`Broker::get`].
    pub fn behind_sasl(user: &str, password: &str) -> Option<(Self, SaslProxy)> {
        let port = free_port();
        let proxy = SaslProxy::start(&format!("127.0.0.1:{port}"), user, password);
        let properties = [
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", user),
            ("sasl.password", password),
        ];
        let mut broker = Self::start_on(
            Some(port),
            Some(proxy.port),
            &[],
            properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        )?;
        broker.servers = format!("127.0.0.1:{}", proxy.port);
        Some((broker, proxy))
    }

    /// Starts a private nisshi with `args`, or `None` as [`Broker::get`].
    fn start(args: &[&str], client_properties: Vec<(String, String)>) -> Option<Self> {
        Self::start_on(None, None, args, client_properties)
    }

    /// Starts a private nisshi with `args` on `port` (a free one if
    /// `None`) that advertises `advertised` (a port) instead of its own, or
    /// `None` as [`Broker::get`].
    fn start_on(
        port: Option<u16>,
        advertised: Option<u16>,
        args: &[&str],
        client_properties: Vec<(String, String)>,
    ) -> Option<Self> {
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
        let port = port.unwrap_or_else(free_port);
        let log = tempfile::tempdir().expect("a log folder");
        let log_file = std::fs::File::create(log.path().join("broker.log")).expect("a log file");
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://nisshi/"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("nisshi starts");
        let broker = Self {
            servers: format!("127.0.0.1:{port}"),
            client_properties,
            children: vec![child],
            _log: Some(log),
        };
        wait_for(port);
        Some(broker)
    }

    /// A client configuration for this broker.
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.servers);
        for (key, value) in &self.client_properties {
            config.set(key, value);
        }
        config
    }

    /// The job-file line that gives a Kafka source or sink this broker's
    /// client settings (empty for a plain broker).
    pub fn properties_line(&self) -> String {
        if self.client_properties.is_empty() {
            return String::new();
        }
        let pairs: Vec<String> = self
            .client_properties
            .iter()
            .map(|(key, value)| format!("\"{key}\" = \"{value}\""))
            .collect();
        format!("properties = {{ {} }}", pairs.join(", "))
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("an admin client");
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
        let producer: BaseProducer = self.config().create().expect("a producer");
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
        let producer: BaseProducer = self.config().create().expect("a producer");
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
        let consumer: BaseConsumer = self
            .config()
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
        self.read_with(topic, isolation).into_iter().map(|m| m.value).collect()
    }

    /// Every message of `topic` a read-committed consumer reads, with its
    /// partition, key, headers and timestamp, partition after partition in
    /// offset order.
    pub fn read_messages(&self, topic: &str) -> Vec<Read> {
        self.read_with(topic, "read_committed")
    }

    /// Every message of `topic` a consumer with `isolation` reads to the
    /// end of each partition, partition after partition in offset order.
    fn read_with(&self, topic: &str, isolation: &str) -> Vec<Read> {
        let consumer: BaseConsumer = self
            .config()
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
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut by_partition: BTreeMap<i32, Vec<Read>> = BTreeMap::new();
        let mut at_end = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while at_end.len() < partitions as usize {
            assert!(Instant::now() < deadline, "could not read {topic} to its end");
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    let headers = message
                        .headers()
                        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(text))).collect())
                        .unwrap_or_default();
                    by_partition.entry(message.partition()).or_default().push(Read {
                        partition: message.partition(),
                        key: message.key().map(text),
                        headers,
                        value: text(message.payload().unwrap_or_default()),
                        timestamp: message.timestamp().to_millis(),
                    });
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

/// A message read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Its partition.
    pub partition: i32,
    /// Its key (as text), if any.
    pub key: Option<String>,
    /// Its headers (name, value as text).
    pub headers: Vec<(String, Option<String>)>,
    /// Its value, as text.
    pub value: String,
    /// Its timestamp, ms.
    pub timestamp: Option<i64>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        for child in &mut self.children {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something listens on loopback `port` (a hang guard of 30 s).
fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
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
