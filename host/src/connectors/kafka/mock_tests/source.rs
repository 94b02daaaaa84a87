//! The Kafka source against the mock cluster: partition assignment,
//! offsets and restore, offset commits, discovery, per-partition
//! watermarks, and the errors of bad input.

use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{Feeder, GUARD, cluster, scope, source_config};
use crate::connectors::kafka::discovery::TopicPattern;
use crate::connectors::kafka::split::{PartitionSplit, Split};
use crate::connectors::kafka::{KafkaSource, KafkaSourceConfig, assign};
use crate::connectors::{Source, SourceStatus};
use crate::record::batch::RecordBatch;
use crate::storage::CheckpointId;
use crate::time::watermarks::{WatermarkEvent, WatermarkStrategy};

/// The payloads (as text) and timestamps of a batch.
fn records(batch: &RecordBatch) -> Vec<(String, i64)> {
    (0..batch.len())
        .map(|i| {
            let text = String::from_utf8(batch.payload(i).to_vec()).expect("UTF-8");
            (text, batch.timestamps[i])
        })
        .collect()
}

/// Reads exactly `count` records (never asking for more).
fn read(source: &mut KafkaSource, count: usize) -> Vec<(String, i64)> {
    let deadline = Instant::now() + GUARD;
    let mut read = Vec::new();
    while read.len() < count {
        assert!(
            Instant::now() < deadline,
            "hung after {} of {count} records",
            read.len()
        );
        let mut batch = RecordBatch::default();
        source.next_batch(&mut batch, count - read.len()).expect("reads");
        read.extend(records(&batch));
    }
    read
}

/// Reads a bounded source to its end.
fn read_to_end(source: &mut KafkaSource) -> Vec<String> {
    let deadline = Instant::now() + GUARD;
    let mut read = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "hung after {} records", read.len());
        let mut batch = RecordBatch::default();
        let status = source.next_batch(&mut batch, 100).expect("reads");
        read.extend(records(&batch).into_iter().map(|(text, _)| text));
        if status == SourceStatus::End {
            return read;
        }
    }
}

/// The partition splits a source reads.
fn splits(encoded: &[Vec<u8>]) -> Vec<PartitionSplit> {
    encoded
        .iter()
        .filter_map(|bytes| match Split::decode(bytes).expect("a split") {
            Split::Partition(split) => Some(split),
            Split::Empty => None,
        })
        .collect()
}

/// The `(topic, partition)`s a source reads, sorted.
fn assigned(source: &KafkaSource) -> Vec<(String, i32)> {
    let mut partitions: Vec<_> = splits(&source.splits())
        .into_iter()
        .map(|s| (s.topic, s.partition))
        .collect();
    partitions.sort();
    partitions
}

/// The partition a test record named `topic/partition/offset` came from.
fn partition_of(name: &str) -> i32 {
    name.split('/')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("a test record")
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[test]
fn subtasks_read_the_partitions_flinks_rule_gives_them_exactly_once() {
    // Flink's rule starts `words` at subtask 1 of 2 and 2 of 3: a plain
    // `partition % parallelism` would differ.
    let cluster = cluster(&[("words", 5)]);
    let servers = cluster.bootstrap_servers();
    let sent = Feeder::new(&servers).fill("words", 5, 0, 3);
    for parallelism in [2, 3] {
        let mut everything = Vec::new();
        for subtask in 0..parallelism {
            let config = source_config(&servers, &["words"], true);
            let mut source = KafkaSource::open(&config, &scope("in", subtask, parallelism), &[], None).expect("opens");
            let mine: Vec<i32> = (0..5)
                .filter(|p| assign::owner("words", *p, parallelism) == subtask)
                .collect();
            let expected: Vec<_> = mine.iter().map(|p| ("words".to_string(), *p)).collect();
            assert_eq!(assigned(&source), expected, "subtask {subtask} of {parallelism}");
            let read = read_to_end(&mut source);
            let own: Vec<String> = sent
                .iter()
                .filter(|n| mine.contains(&partition_of(n)))
                .cloned()
                .collect();
            assert_eq!(sorted(read.clone()), sorted(own), "subtask {subtask} of {parallelism}");
            everything.extend(read);
        }
        assert_eq!(sorted(everything), sorted(sent.clone()), "parallelism {parallelism}");
    }
}

/// The consumer group's committed offsets of `partitions` of `topic` once
/// they equal `expected` (or whatever they are when the guard runs out).
fn committed_when(servers: &str, group: &str, topic: &str, expected: &[(i32, Offset)]) -> Vec<(i32, Offset)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    for (partition, _) in expected {
        list.add_partition(topic, *partition);
    }
    let deadline = Instant::now() + GUARD;
    loop {
        let committed = consumer
            .committed_offsets(list.clone(), GUARD)
            .expect("committed offsets");
        let found: Vec<_> = committed
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        if found == expected || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_source_restored_from_its_splits_loses_and_repeats_nothing_and_commits_the_snapshot() {
    let cluster = cluster(&[("orders", 3)]);
    let servers = cluster.bootstrap_servers();
    let feeder = Feeder::new(&servers);
    let mut sent = feeder.fill("orders", 3, 0, 4);
    let config = source_config(&servers, &["orders"], false);
    let scope = scope("in", 0, 1);
    let mut source = KafkaSource::open(&config, &scope, &[], None).expect("opens");
    let before: Vec<String> = read(&mut source, 5).into_iter().map(|(n, _)| n).collect();
    let (_, first) = source.snapshot(CheckpointId(1));
    read(&mut source, 2);
    let (_, second) = source.snapshot(CheckpointId(2));
    // Each split's next offset is one past the last record read from its
    // partition (partitions are read in order from offset 0).
    let offsets = |encoded: &[Vec<u8>]| -> Vec<(i32, Offset)> {
        let mut offsets: Vec<_> = splits(encoded)
            .into_iter()
            .map(|s| (s.partition, Offset::Offset(s.next)))
            .collect();
        offsets.sort_by_key(|(p, _)| *p);
        offsets
    };
    let read_of = |p: i32| i64::try_from(before.iter().filter(|n| partition_of(n) == p).count()).expect("small");
    let expected: Vec<_> = (0..3).map(|p| (p, Offset::Offset(read_of(p)))).collect();
    assert_eq!(offsets(&first), expected);
    for name in &before {
        let offset: i64 = name.rsplit('/').next().and_then(|o| o.parse().ok()).expect("an offset");
        assert!(
            offset < read_of(partition_of(name)),
            "{name}: partitions are read in order"
        );
    }

    // Checkpoint 1 completes: its offsets, not the later snapshot's, are
    // committed to the consumer group `weir-{job}-{uid}`.
    source.checkpoint_complete(CheckpointId(1));
    assert_eq!(committed_when(&servers, "weir-mock-in", "orders", &expected), expected);
    source.checkpoint_complete(CheckpointId(2));
    let later = offsets(&second);
    assert_ne!(later, expected, "the second snapshot moved on");
    assert_eq!(committed_when(&servers, "weir-mock-in", "orders", &later), later);
    drop(source);

    // Restored from checkpoint 1, with more input since: everything not
    // read before checkpoint 1, once.
    sent.extend(feeder.fill("orders", 3, 4, 3));
    let bounded = source_config(&servers, &["orders"], true);
    let mut restored = KafkaSource::open(&bounded, &scope, &first, None).expect("restores");
    let rest = read_to_end(&mut restored);
    let expected_rest: Vec<String> = sent.iter().filter(|n| !before.contains(n)).cloned().collect();
    assert_eq!(sorted(rest), sorted(expected_rest));
}

#[test]
fn new_topics_matching_the_pattern_are_assigned_and_read_without_a_restart() {
    // The mock cluster cannot add partitions to a topic: a new topic stands
    // for them (discovery treats both alike: partitions it did not read).
    let cluster = cluster(&[("disc-a", 2), ("other", 2)]);
    let servers = cluster.bootstrap_servers();
    let feeder = Feeder::new(&servers);
    let mut sent = feeder.fill("disc-a", 2, 0, 2);
    feeder.fill("other", 2, 0, 2);
    let mut config = source_config(&servers, &[], false);
    config.topic_pattern = Some(TopicPattern::new("disc-.*").expect("a pattern"));
    config.discovery_interval = Some(Duration::from_millis(100));
    let mut sources: Vec<KafkaSource> = (0..2)
        .map(|subtask| KafkaSource::open(&config, &scope("in", subtask, 2), &[], None).expect("opens"))
        .collect();
    let mut read: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let mut read_all = |sources: &mut [KafkaSource], total: usize| {
        let deadline = Instant::now() + GUARD;
        while read.iter().map(Vec::len).sum::<usize>() < total {
            assert!(Instant::now() < deadline, "hung: read {read:?}");
            for (source, read) in sources.iter_mut().zip(read.iter_mut()) {
                let mut batch = RecordBatch::default();
                source.next_batch(&mut batch, 100).expect("reads");
                read.extend(records(&batch).into_iter().map(|(n, _)| n));
            }
        }
        read.clone()
    };
    read_all(&mut sources, 4);
    cluster.create_topic("disc-b", 3, 1).expect("a new topic");
    sent.extend(feeder.fill("disc-b", 3, 0, 2));
    let read = read_all(&mut sources, 10);
    let owned = |subtask| {
        let mut mine = Vec::new();
        for (topic, partitions) in [("disc-a", 2), ("disc-b", 3)] {
            mine.extend(
                (0..partitions)
                    .filter(|p| assign::owner(topic, *p, 2) == subtask)
                    .map(|p| (topic.to_string(), p)),
            );
        }
        mine
    };
    for (subtask, source) in (0..2).zip(&sources) {
        let mine = owned(subtask);
        assert_eq!(assigned(source), mine, "subtask {subtask}");
        let expected: Vec<String> = sent
            .iter()
            .filter(|n| mine.iter().any(|(t, p)| n.starts_with(&format!("{t}/{p}/"))))
            .cloned()
            .collect();
        assert_eq!(
            sorted(read[subtask as usize].clone()),
            sorted(expected),
            "subtask {subtask}"
        );
    }
}

/// Bounded out-of-orderness of 100 ms, a watermark at every poll.
fn strategy(idle: Option<Duration>) -> WatermarkStrategy {
    WatermarkStrategy {
        max_out_of_orderness_ms: 100,
        interval: Duration::ZERO,
        idle_timeout: idle,
        punctuated: false,
    }
}

#[test]
fn the_watermark_is_the_minimum_over_the_partitions() {
    let cluster = cluster(&[("events", 2)]);
    let servers = cluster.bootstrap_servers();
    let feeder = Feeder::new(&servers);
    for (partition, timestamp) in [(0, 1_000), (0, 3_000), (0, 2_000), (1, 10_000), (1, 11_000)] {
        feeder.send("events", partition, "e", timestamp);
    }
    feeder.flush();
    let config = source_config(&servers, &["events"], false);
    let mut source = KafkaSource::open(&config, &scope("in", 0, 1), &[], Some(strategy(None))).expect("opens");
    assert!(source.own_watermarks());
    let mut timestamps: Vec<i64> = read(&mut source, 5).into_iter().map(|(_, t)| t).collect();
    timestamps.sort_unstable();
    assert_eq!(
        timestamps,
        [1_000, 2_000, 3_000, 10_000, 11_000],
        "event time is the message's"
    );
    // Partition 0 (largest 3000) holds partition 1 (11000) back.
    assert_eq!(source.poll_watermark(), Some(WatermarkEvent::Watermark(2_899)));
    feeder.send("events", 0, "e", 20_000);
    feeder.flush();
    read(&mut source, 1);
    assert_eq!(source.poll_watermark(), Some(WatermarkEvent::Watermark(10_899)));
    feeder.send("events", 1, "e", 15_000);
    feeder.flush();
    read(&mut source, 1);
    assert_eq!(source.poll_watermark(), Some(WatermarkEvent::Watermark(14_899)));
}

#[test]
fn an_empty_partition_holds_the_watermark_back_until_it_goes_idle() {
    let cluster = cluster(&[("quiet", 2), ("late", 2)]);
    let servers = cluster.bootstrap_servers();
    let feeder = Feeder::new(&servers);

    // Without idleness, the empty partition 1 holds the watermark back
    // until it delivers.
    feeder.send("late", 0, "e", 5_000);
    feeder.flush();
    let config = source_config(&servers, &["late"], false);
    let mut held = KafkaSource::open(&config, &scope("in", 0, 1), &[], Some(strategy(None))).expect("opens");
    read(&mut held, 1);
    assert_eq!(held.poll_watermark(), None);
    feeder.send("late", 1, "e", 7_000);
    feeder.flush();
    read(&mut held, 1);
    assert_eq!(held.poll_watermark(), Some(WatermarkEvent::Watermark(4_899)));

    // With idleness, partition 1 (empty) stops counting once idle. Partition
    // 0 keeps delivering the same timestamp, so that the first watermark is
    // exact whenever it comes (were partition 0 idle for a moment too, the
    // subtask says idle first, which is allowed before it).
    let config = source_config(&servers, &["quiet"], false);
    let idle = Some(Duration::from_millis(300));
    let mut source = KafkaSource::open(&config, &scope("in", 0, 1), &[], Some(strategy(idle))).expect("opens");
    let deadline = Instant::now() + GUARD;
    let mut before = Vec::new();
    let first = loop {
        assert!(Instant::now() < deadline, "hung: {before:?}");
        feeder.send("quiet", 0, "e", 5_000);
        feeder.flush();
        read(&mut source, 1);
        match source.poll_watermark() {
            Some(WatermarkEvent::Watermark(watermark)) => break watermark,
            other => before.push(other),
        }
    };
    assert_eq!(first, 4_899);
    assert!(
        before.iter().all(|e| matches!(e, None | Some(WatermarkEvent::Idle))),
        "{before:?}"
    );
}

#[test]
fn bad_source_input_gets_the_messages_the_end_to_end_tests_assert() {
    let cluster = cluster(&[("t", 1)]);
    let servers = cluster.bootstrap_servers();
    let open = |config: &KafkaSourceConfig| {
        KafkaSource::open(config, &scope("orders", 0, 1), &[], None)
            .expect_err("refused")
            .to_string()
    };
    let missing = open(&source_config(&servers, &["no-such-topic"], true));
    assert_eq!(
        missing,
        format!(
            "topic `no-such-topic` does not exist on {servers}: Meta data fetch error: UnknownTopicOrPartition (Broker: Unknown topic or partition)"
        )
    );
    let mut unknown = source_config(&servers, &["t"], true);
    unknown.properties = vec![("no.such.setting".into(), "1".into())];
    let unknown = open(&unknown);
    assert_eq!(
        unknown,
        r#"cannot create the Kafka consumer: Client config error: No such configuration property: "no.such.setting" no.such.setting 1"#
    );
}

#[test]
fn an_unreachable_cluster_is_named_by_the_source() {
    let cluster = cluster(&[("t", 1)]);
    let servers = cluster.bootstrap_servers();
    cluster.broker_down(-1).expect("down");
    let error = KafkaSource::open(
        &source_config(&servers, &["t"], true),
        &scope("orders", 0, 1),
        &[],
        None,
    )
    .expect_err("unreachable")
    .to_string();
    assert_eq!(
        error,
        format!(
            "cannot reach Kafka at {servers} (asking for topic `t`): Meta data fetch error: BrokerTransportFailure (Local: Broker transport failure)"
        )
    );
}
