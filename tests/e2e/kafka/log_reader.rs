//! What a correct read-committed consumer would read, computed from the
//! partition log itself.
//!
//! nisshi 0.6.0 bounds read-committed fetches by the last stable offset
//! (open transactions stay invisible) but never lists aborted transactions
//! in its fetch answers, so librdkafka shows aborted records to
//! read-committed readers. It does write the transaction markers (control
//! batches with a commit or abort record) into every partition a
//! transaction touched. This reader fetches the raw record batches with
//! `read_uncommitted` over Kafka's wire protocol (the `kafka-protocol`
//! crate's codecs) and applies the markers itself: a transactional
//! producer's records count once its commit marker follows them, are
//! dropped at an abort marker, and stay invisible while no marker follows
//! (an open transaction). Non-transactional records always count.
//!
//! The reader is the tests' own, independent of the host's protocol client.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

/// A blocking connection that sends one request at a time.
struct Wire {
    stream: TcpStream,
    correlation: i32,
}

impl Wire {
    fn connect(servers: &str) -> Self {
        let stream = TcpStream::connect(servers).expect("the broker accepts a connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a timeout");
        Self { stream, correlation: 0 }
    }

    fn send<R: Request>(&mut self, request: R, version: i16) -> R::Response {
        self.correlation += 1;
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("weir-test-log-reader")))
            .encode(&mut frame, R::header_version(version))
            .expect("header encodes");
        request.encode(&mut frame, version).expect("request encodes");
        let size = u32::try_from(frame.len()).expect("small request");
        self.stream.write_all(&size.to_be_bytes()).expect("send");
        self.stream.write_all(&frame).expect("send");
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).expect("an answer");
        let mut answer = vec![0u8; u32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut answer).expect("the whole answer");
        let mut answer = Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version)).expect("a header");
        assert_eq!(header.correlation_id, self.correlation, "answers arrive in order");
        R::Response::decode(&mut answer, version).expect("the answer decodes")
    }
}

/// The number of partitions of `topic`.
fn partitions(wire: &mut Wire, topic: &str) -> i32 {
    let metadata: MetadataResponse = wire.send(
        MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.into())))),
        ])),
        1,
    );
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .expect("the topic exists");
    i32::try_from(found.partitions.len()).expect("few partitions")
}

/// Fetches one answer's worth of `partition` from `offset`, uncommitted
/// records included.
fn fetch(wire: &mut Wire, topic: &str, partition: i32, offset: i64) -> (i64, Bytes) {
    let answer: FetchResponse = wire.send(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            // nisshi answers nothing with a zero wait.
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_isolation_level(0)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(4 << 20),
                    ]),
            ]),
        4,
    );
    let data = answer
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .expect("the partition is answered");
    assert_eq!(data.error_code, 0, "fetching {topic}/{partition} at {offset}");
    (data.high_watermark, data.records.unwrap_or_default())
}

/// Splits off the complete record batches at the front of `bytes` (a
/// fetch may end with a partial one).
fn complete_batches(bytes: &mut Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while bytes.remaining() >= 12 {
        let length = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let whole = 12 + usize::try_from(length).expect("a positive length");
        if bytes.remaining() < whole {
            break;
        }
        out.push(bytes.split_to(whole));
    }
    out
}

/// How the log of one partition reads to a correct read-committed
/// consumer, and what else it holds.
#[derive(Debug, Default)]
pub struct PartitionLog {
    /// Values of committed (and non-transactional) records, in log order
    /// of their commit markers (records of one transaction in offset
    /// order).
    pub committed: Vec<String>,
    /// How many transactional records an abort marker dropped.
    pub aborted: usize,
    /// How many transactional records no marker follows yet.
    pub open: usize,
    /// How many commit markers the partition holds.
    pub commits: usize,
}

/// Reads every partition of `topic` to its high watermark and applies the
/// transaction markers (see the module docs).
pub fn read_committed_by_markers(servers: &str, topic: &str) -> Vec<PartitionLog> {
    let mut wire = Wire::connect(servers);
    (0..partitions(&mut wire, topic))
        .map(|partition| {
            let mut log = PartitionLog::default();
            // Records of each producer id's open transaction.
            let mut pending: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            let mut offset = 0;
            loop {
                let (high_watermark, mut bytes) = fetch(&mut wire, topic, partition, offset);
                let batches = complete_batches(&mut bytes);
                if batches.is_empty() {
                    assert!(
                        offset >= high_watermark,
                        "{topic}/{partition}: stuck at offset {offset}"
                    );
                    break;
                }
                for mut batch in batches {
                    let set = RecordBatchDecoder::decode(&mut batch).expect("a record batch");
                    for record in set.records {
                        offset = offset.max(record.offset + 1);
                        let value =
                            || String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
                        if record.control {
                            let key = record.key.as_deref().unwrap_or_default();
                            let records = pending.remove(&record.producer_id).unwrap_or_default();
                            match key.get(2..4) {
                                Some([0, 1]) => {
                                    log.commits += 1;
                                    log.committed.extend(records);
                                }
                                Some([0, 0]) => log.aborted += records.len(),
                                other => panic!("{topic}/{partition}: a control record of type {other:?}"),
                            }
                        } else if record.transactional {
                            pending.entry(record.producer_id).or_default().push(value());
                        } else {
                            log.committed.push(value());
                        }
                    }
                }
                if offset >= high_watermark {
                    break;
                }
            }
            log.open = pending.values().map(Vec::len).sum();
            log
        })
        .collect()
}
