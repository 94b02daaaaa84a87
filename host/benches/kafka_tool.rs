//! The Kafka side of `scripts/kafka-demo.sh` and `scripts/bench-kafka.sh`:
//! creates topics, reads a topic back as a read-committed consumer, and
//! measures the latency of a job from a topic to a topic.
//!
//! ```text
//! kafka_tool create  SERVERS TOPIC:PARTITIONS...
//! kafka_tool read    SERVERS TOPIC [HEAD]          # count, then the first HEAD records
//! kafka_tool latency SERVERS IN OUT RATE SECONDS WARMUP_SECONDS
//! ```
//!
//! `latency` produces `RATE` messages a second for `SECONDS` seconds into
//! `IN`, each holding its sequence number and the wall-clock time it was
//! handed to the producer (`send_ns,seq,padding`, about the size of a
//! traffic passing), while a read-committed consumer in the same process
//! reads `OUT` (which the job under test fills from `IN`, unchanged). For
//! every message received it takes the receive time minus the send time;
//! the messages of the first `WARMUP_SECONDS` (the job starting) are left
//! out. It waits for the output until 60 s after the last send at most
//! (what has not come then is missing). It prints a summary on stderr and one line on stdout:
//! `sent received missing duplicates p50_ms p99_ms max_ms`.
//!
//! It is a bench binary (`harness = false`) so that it is built only for
//! the scripts, not with Weir; a misuse or a broker failure ends it with a
//! message (`expect`), as befits a measuring tool.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const USAGE: &str = "usage:
  kafka_tool create  SERVERS TOPIC:PARTITIONS...
  kafka_tool read    SERVERS TOPIC [HEAD]
  kafka_tool latency SERVERS IN OUT RATE SECONDS WARMUP_SECONDS";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    let number = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| usage());
    match arg(0) {
        "create" if args.len() >= 3 => create(arg(1), &args[2..]),
        "read" => {
            let head = args.get(3).map_or(0, |_| number(3) as usize);
            let records = read_committed(arg(1), arg(2), Duration::from_secs(120));
            println!("{}", records.len());
            for record in records.iter().take(head) {
                println!("{record}");
            }
        }
        "latency" if args.len() == 7 => latency(arg(1), arg(2), arg(3), number(4), number(5), number(6)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

/// Creates each `TOPIC:PARTITIONS` (a topic that exists already is an error).
fn create(servers: &str, specs: &[String]) {
    let topics: Vec<(String, i32)> = specs
        .iter()
        .map(|spec| {
            let (name, partitions) = spec.rsplit_once(':').unwrap_or_else(|| usage());
            (name.to_string(), partitions.parse().unwrap_or_else(|_| usage()))
        })
        .collect();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .expect("cannot create a Kafka admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = block_on(admin.create_topics(
        &new,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("the broker did not answer CreateTopics");
    for result in results {
        match result {
            Ok(topic) => eprintln!("kafka_tool: created topic {topic}"),
            Err((topic, error)) => {
                eprintln!("kafka_tool: cannot create topic {topic}: {error}");
                std::process::exit(1);
            }
        }
    }
}

/// A consumer of every partition of `topic` from its beginning.
fn consumer(servers: &str, topic: &str, eof: bool) -> (BaseConsumer, usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("kafka-tool-{topic}"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("cannot create a Kafka consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("cannot read the topic's metadata");
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    assert!(partitions > 0, "topic {topic} has no partitions (does it exist?)");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition to assign");
    }
    consumer.assign(&assignment).expect("cannot assign the partitions");
    (consumer, partitions)
}

/// Every committed record of `topic`, partition after partition in offset
/// order.
fn read_committed(servers: &str, topic: &str, timeout: Duration) -> Vec<String> {
    let (consumer, partitions) = consumer(servers, topic, true);
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut at_end = HashSet::new();
    let deadline = Instant::now() + timeout;
    while at_end.len() < partitions {
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
            Some(Err(error)) => panic!("reading {topic}: {error}"),
        }
    }
    by_partition.into_values().flatten().collect()
}

/// Nanoseconds since the Unix epoch (the clock producer and consumer share).
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Produces at `rate` a second into `input` for `seconds` while reading
/// `output`; prints the latency percentiles after the warm-up.
fn latency(servers: &str, input: &str, output: &str, rate: u64, seconds: u64, warmup: u64) {
    let total = rate * seconds;
    let skip = rate * warmup;
    let (consumer, _) = consumer(servers, output, false);
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    let reader = std::thread::spawn(move || receive(consumer, total, skip, deadline));

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "1")
        .create()
        .expect("cannot create a Kafka producer");
    eprintln!("kafka_tool: producing {total} messages at {rate}/s into {input}");
    let started = Instant::now();
    let mut sent = 0u64;
    let mut payload = String::with_capacity(48);
    while sent < total {
        let due = (started.elapsed().as_micros() as u64 * rate / 1_000_000).min(total);
        while sent < due {
            payload.clear();
            use std::fmt::Write;
            write!(payload, "{},{sent},CAM0000,P0000000,100", now_ns()).expect("a String takes writes");
            let mut record = BaseRecord::<(), str>::to(input).partition(0).payload(payload.as_str());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(1));
                    }
                }
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(500));
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("cannot flush the input messages");
    let behind = started.elapsed().as_secs_f64() - seconds as f64;
    eprintln!("kafka_tool: produced {total} messages (the producer ended {behind:.2} s behind schedule)");
    let (received, duplicates, mut latencies) = reader.join().expect("the reader thread panicked");
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |ns| *ns as f64 / 1e6)
    };
    let missing = total - received.min(total);
    eprintln!(
        "kafka_tool: received {received} of {total} ({missing} missing, {duplicates} duplicates); after {warmup} s of warm-up: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
    println!(
        "{total} {received} {missing} {duplicates} {:.1} {:.1} {:.1}",
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
}

/// Reads until every one of `total` messages came, nothing came for 30 s,
/// or `deadline` passed; returns the messages received, the duplicates, and
/// the latencies (ns) of the messages numbered `skip` and up.
fn receive(consumer: BaseConsumer, total: u64, skip: u64, deadline: Instant) -> (u64, u64, Vec<u64>) {
    let mut seen = vec![false; total as usize];
    let mut received = 0u64;
    let mut duplicates = 0u64;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut last = Instant::now();
    while received < total && last.elapsed() < Duration::from_secs(30) && Instant::now() < deadline {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = result.expect("cannot read the output topic");
        let arrived = now_ns();
        last = Instant::now();
        let payload = message.payload().unwrap_or_default();
        let mut fields = std::str::from_utf8(payload).unwrap_or_default().split(',');
        let (Some(Ok(sent)), Some(Ok(seq))) = (
            fields.next().map(str::parse::<u64>),
            fields.next().map(str::parse::<usize>),
        ) else {
            panic!("not a message of this tool in the output: {payload:?}");
        };
        match seen.get_mut(seq) {
            Some(true) => duplicates += 1,
            Some(flag) => {
                *flag = true;
                received += 1;
                if seq as u64 >= skip {
                    latencies.push(arrived.saturating_sub(sent));
                }
            }
            None => panic!("message number {seq} was never sent"),
        }
    }
    (received, duplicates, latencies)
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
