//! Committing, after a restore, the transaction a checkpoint recorded.
//!
//! A sink pre-commits a transaction at a barrier and commits it when the
//! checkpoint completes. A crash between the two leaves the transaction
//! open on the broker while the restored checkpoint says it belongs to the
//! output: it must be committed, not aborted (its records come before the
//! checkpoint's source positions, so nothing replays them). librdkafka can
//! neither resume another producer's transaction nor tell a producer's id
//! and epoch, so Weir does what Flink's `resumeTransaction` does through
//! the protocol itself ([`super::protocol`]):
//!
//! 1. The checkpoint records the transactional id and the position (topic,
//!    partition, offset) of one record the transaction wrote, from its
//!    delivery report ([`Position`]).
//! 2. At the restore, before the pool's ids are fenced, that partition is
//!    read from the recorded offset with `read_uncommitted`: the record's
//!    batch header carries the producer id and epoch.
//! 3. Reading on, the first control batch of that producer id is the
//!    transaction's end marker, which the coordinator writes into every
//!    partition the transaction touched, after its records. A commit
//!    marker: the previous run committed it, nothing to do. An abort
//!    marker: it was aborted (a transaction timeout shorter than the
//!    checkpoint took): its records are lost, and the restore fails
//!    saying so. No marker up to the partition's end: the transaction is
//!    still open, and no later transaction of the same id can have begun
//!    (the pool begins one only after the previous one ended, which would
//!    have written a marker here).
//! 4. An open transaction is committed with `EndTxn(id, producer id,
//!    epoch, commit)` sent to its coordinator (`FindCoordinator`, key type
//!    1), retried while the coordinator answers with a retriable error.
//!
//! A transaction that wrote nothing records no position and needs nothing.
//! Fencing the pool afterwards (`init_transactions`) then aborts only what
//! no checkpoint recorded.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, EndTxnRequest, FetchRequest, FindCoordinatorRequest, MetadataRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use serde::{Deserialize, Serialize};

use super::protocol::{Connection, ProtocolError, check};

/// How many bytes one fetch asks for.
const FETCH_BYTES: i32 = 1 << 20;

/// How often `EndTxn` is retried while the coordinator is busy.
const END_ATTEMPTS: u32 = 20;

/// The pause between two `EndTxn` attempts.
const END_PAUSE: Duration = Duration::from_millis(250);

/// Where one record of a transaction landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

/// What became of a recorded transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The previous run had committed it.
    AlreadyCommitted,
    /// It was open; it is committed now.
    Committed,
}

impl ResumeError {
    /// Whether a restart would meet the same failure (the transaction is
    /// aborted for good).
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Self::Aborted { .. })
    }
}

/// Why a recorded transaction could not be committed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResumeError {
    /// It was aborted before the restore: its records are lost.
    #[error(
        "transaction `{transactional_id}` (producer id {producer_id}) was aborted before the restore: another run fenced the same transactional ids (a second run of this job, or a job with the same name and sink uid), or `transaction.timeout.ms` is shorter than a checkpoint takes. The records of that completed checkpoint are lost; restore an earlier checkpoint or savepoint to write them again (nothing is restarted)"
    )]
    Aborted {
        /// The transactional id.
        transactional_id: String,
        /// Its producer id.
        producer_id: i64,
    },
    /// The recorded record is gone (retention) or is not transactional.
    #[error("transaction `{transactional_id}`: {what}")]
    Unreadable {
        /// The transactional id.
        transactional_id: String,
        /// What was found instead.
        what: String,
    },
    /// The protocol exchange failed.
    #[error("cannot commit transaction `{transactional_id}`: {source}")]
    Protocol {
        /// The transactional id.
        transactional_id: String,
        /// The cause.
        source: ProtocolError,
    },
}

/// The header fields of one record batch that matter here.
#[derive(Debug, Clone, Copy)]
struct BatchHeader {
    base_offset: i64,
    last_offset: i64,
    producer_id: i64,
    producer_epoch: i16,
    transactional: bool,
    control: bool,
}

/// Splits raw fetched bytes into whole record batches (a fetch may end
/// with a partial one, which is dropped), with their headers.
fn batches(mut bytes: Bytes) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    // baseOffset i64, batchLength i32, then batchLength bytes: leader epoch
    // i32, magic i8, crc u32, attributes i16, lastOffsetDelta i32, two
    // timestamps i64, producerId i64, producerEpoch i16, ...
    while bytes.len() >= 12 {
        let be_i64 = |b: &[u8], at: usize| i64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        let length = i32::from_be_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
        let Ok(length) = usize::try_from(length) else { break };
        if bytes.len() < 12 + length || length < 49 || bytes[16] != 2 {
            break;
        }
        let batch = bytes.split_to(12 + length);
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let delta = i32::from_be_bytes(batch[23..27].try_into().unwrap_or([0; 4]));
        let base_offset = be_i64(&batch, 0);
        let header = BatchHeader {
            base_offset,
            last_offset: base_offset + i64::from(delta),
            producer_id: be_i64(&batch, 43),
            producer_epoch: i16::from_be_bytes([batch[51], batch[52]]),
            transactional: attributes & (1 << 4) != 0,
            control: attributes & (1 << 5) != 0,
        };
        out.push((header, batch));
    }
    out
}

/// Whether a control batch is a commit marker (`Some(false)`: abort).
fn is_commit(batch: &Bytes) -> Option<bool> {
    let mut buffer = batch.clone();
    let set = RecordBatchDecoder::decode(&mut buffer).ok()?;
    let key = set.records.first()?.key.as_ref()?;
    // Control record key: version i16, type i16 (0 abort, 1 commit).
    match key.get(2..4) {
        Some([0, 1]) => Some(true),
        Some([0, 0]) => Some(false),
        _ => None,
    }
}

/// The cluster the recorded transactions live on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cluster<'a> {
    /// `bootstrap.servers`.
    pub servers: &'a str,
    /// The `client.id` the requests carry.
    pub client_id: &'a str,
    /// The sink's `security.protocol` setting, if it has one.
    pub security_protocol: Option<&'a str>,
}

/// Commits the transaction `transactional_id` whose record landed at
/// `position`, if it is still open (see the module docs).
pub(crate) fn commit_recorded(
    cluster: Cluster<'_>,
    transactional_id: &str,
    position: &Position,
) -> Result<Outcome, ResumeError> {
    let protocol = |source| ResumeError::Protocol {
        transactional_id: transactional_id.to_string(),
        source,
    };
    if let Some(security) = cluster.security_protocol
        && !security.eq_ignore_ascii_case("plaintext")
    {
        return Err(protocol(ProtocolError::Security {
            protocol: security.to_string(),
        }));
    }
    let Cluster { servers, client_id, .. } = cluster;
    let unreadable = |what: String| ResumeError::Unreadable {
        transactional_id: transactional_id.to_string(),
        what,
    };
    let mut bootstrap = Connection::bootstrap(servers, client_id).map_err(protocol)?;
    let mut leader = leader_of(&mut bootstrap, position, client_id).map_err(protocol)?;
    let mut offset = position.offset;
    let mut producer: Option<(i64, i16)> = None;
    loop {
        let (high_watermark, fetched) = fetch(&mut leader, position, offset).map_err(protocol)?;
        let found = batches(fetched);
        if found.is_empty() {
            if offset < high_watermark {
                return Err(unreadable(format!(
                    "nothing could be read from {} partition {} at offset {offset} (high watermark {high_watermark})",
                    position.topic, position.partition
                )));
            }
            break;
        }
        for (header, batch) in &found {
            offset = offset.max(header.last_offset + 1);
            let Some((producer_id, _)) = producer else {
                if header.last_offset < position.offset {
                    continue;
                }
                if header.base_offset > position.offset || !header.transactional || header.control {
                    return Err(unreadable(format!(
                        "the record it wrote at {} partition {} offset {} is gone or not transactional",
                        position.topic, position.partition, position.offset
                    )));
                }
                producer = Some((header.producer_id, header.producer_epoch));
                continue;
            };
            if header.control && header.producer_id == producer_id {
                return match is_commit(batch) {
                    Some(true) => Ok(Outcome::AlreadyCommitted),
                    Some(false) => Err(ResumeError::Aborted {
                        transactional_id: transactional_id.to_string(),
                        producer_id,
                    }),
                    None => Err(unreadable(format!(
                        "an unreadable transaction marker at {} partition {} offset {}",
                        position.topic, position.partition, header.base_offset
                    ))),
                };
            }
        }
        if offset >= high_watermark {
            break;
        }
    }
    let Some((producer_id, epoch)) = producer else {
        return Err(unreadable(format!(
            "the record it wrote at {} partition {} offset {} is gone (retention?)",
            position.topic, position.partition, position.offset
        )));
    };
    end_transaction(&mut bootstrap, client_id, transactional_id, producer_id, epoch).map_err(protocol)?;
    Ok(Outcome::Committed)
}

/// A connection to the leader of `position`'s partition.
fn leader_of(bootstrap: &mut Connection, position: &Position, client_id: &str) -> Result<Connection, ProtocolError> {
    let topic = TopicName(StrBytes::from_string(position.topic.clone()));
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic))]));
    let metadata = bootstrap.call(&request, 1)?;
    let missing = |what: String| ProtocolError::Missing { what };
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == position.topic))
        .ok_or_else(|| missing(format!("topic `{}` is not in the cluster's metadata", position.topic)))?;
    check(found.error_code, || format!("metadata of topic `{}`", position.topic))?;
    let partition = found
        .partitions
        .iter()
        .find(|p| p.partition_index == position.partition)
        .ok_or_else(|| {
            missing(format!(
                "topic `{}` has no partition {}",
                position.topic, position.partition
            ))
        })?;
    let broker = metadata
        .brokers
        .iter()
        .find(|b| b.node_id == partition.leader_id)
        .ok_or_else(|| {
            missing(format!(
                "the leader of `{}` partition {} is unknown",
                position.topic, position.partition
            ))
        })?;
    let address = format!("{}:{}", broker.host.as_str(), broker.port);
    if address == bootstrap.address() {
        return Connection::open(bootstrap.address(), client_id);
    }
    Connection::open(&address, client_id)
}

/// Reads `position`'s partition from `offset`, uncommitted records
/// included: the high watermark and the raw record batches.
fn fetch(leader: &mut Connection, position: &Position, offset: i64) -> Result<(i64, Bytes), ProtocolError> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        // nisshi 0.6.0 answers nothing at all with a zero wait; with one
        // byte wanted, a broker answers as soon as it has any.
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES)
        .with_isolation_level(0)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(position.topic.clone())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(position.partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(FETCH_BYTES),
                ]),
        ]);
    let response = leader.call(&request, 4)?;
    let data = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == position.partition)
        .ok_or_else(|| ProtocolError::Missing {
            what: format!(
                "the fetch answered nothing for `{}` partition {}",
                position.topic, position.partition
            ),
        })?;
    check(data.error_code, || {
        format!(
            "fetch of `{}` partition {} at offset {offset}",
            position.topic, position.partition
        )
    })?;
    Ok((data.high_watermark, data.records.unwrap_or_default()))
}

/// Sends `EndTxn(commit)` to the transaction's coordinator, retrying while
/// it is busy.
fn end_transaction(
    bootstrap: &mut Connection,
    client_id: &str,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
) -> Result<(), ProtocolError> {
    let id = StrBytes::from_string(transactional_id.to_string());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let found = bootstrap.call(
            &FindCoordinatorRequest::default().with_key(id.clone()).with_key_type(1),
            1,
        )?;
        check(found.error_code, || {
            format!("finding the coordinator of `{transactional_id}`")
        })?;
        let mut coordinator = Connection::open(&format!("{}:{}", found.host.as_str(), found.port), client_id)?;
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(id.clone()))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_committed(true);
        let answer = coordinator.call(&request, 1)?;
        match ResponseError::try_from_code(answer.error_code) {
            None => return Ok(()),
            Some(
                error @ (ResponseError::ConcurrentTransactions
                | ResponseError::CoordinatorLoadInProgress
                | ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable),
            ) if attempt < END_ATTEMPTS => {
                tracing::debug!("EndTxn of `{transactional_id}`: {error}, retrying");
                std::thread::sleep(END_PAUSE);
            }
            Some(source) => {
                return Err(ProtocolError::Broker {
                    what: format!("EndTxn(commit) of `{transactional_id}` (producer id {producer_id}, epoch {epoch})"),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record batch header of `records` records at `base`, with the
    /// given attributes and producer.
    fn header_bytes(base: i64, records: i32, attributes: i16, producer: i64, epoch: i16) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
        body.push(2); // magic
        body.extend_from_slice(&0u32.to_be_bytes()); // crc (unchecked here)
        body.extend_from_slice(&attributes.to_be_bytes());
        body.extend_from_slice(&(records - 1).to_be_bytes());
        body.extend_from_slice(&[0; 16]); // timestamps
        body.extend_from_slice(&producer.to_be_bytes());
        body.extend_from_slice(&epoch.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes()); // base sequence
        body.extend_from_slice(&records.to_be_bytes());
        let mut out = base.to_be_bytes().to_vec();
        out.extend_from_slice(&i32::try_from(body.len()).expect("small").to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn batch_headers_are_read_and_a_partial_batch_is_dropped() {
        let mut bytes = header_bytes(10, 3, 1 << 4, 7, 2);
        bytes.extend(header_bytes(13, 1, (1 << 4) | (1 << 5), 7, 2));
        let partial = header_bytes(14, 5, 0, -1, -1);
        bytes.extend_from_slice(&partial[..partial.len() - 1]);
        let found = batches(Bytes::from(bytes));
        assert_eq!(found.len(), 2);
        let (first, second) = (found[0].0, found[1].0);
        assert_eq!((first.base_offset, first.last_offset), (10, 12));
        assert_eq!((first.producer_id, first.producer_epoch), (7, 2));
        assert!(first.transactional && !first.control);
        assert_eq!((second.base_offset, second.last_offset), (13, 13));
        assert!(second.transactional && second.control);
    }
}
