//! The Kafka sink: at least once (flush at every barrier) or exactly once
//! (a pool of transactional producers, committed with checkpoints), both
//! behind [`TransactionalSink`] so that the runtime's two-phase-commit
//! operator drives them (see the module docs of [`super`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use serde::{Deserialize, Serialize};

use super::config::{Delivery, KafkaSinkConfig};
use super::message::{Messages, partition_count};
use super::resume::{self, Outcome, Position};
use super::{ClientScope, Logged, kafka_error};
use crate::connectors::{ConnectorError, Rejected, TransactionalSink};
use crate::record::batch::RecordBatch;

/// How long a flush or a transaction call may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long the metadata request at start may take (an unreachable
/// broker fails the sink after this long).
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Transactional producers a subtask keeps: one with the open transaction,
/// the others holding pre-committed transactions until their checkpoints
/// complete (two are enough with one checkpoint in flight; the rest is
/// room for a completion that arrives after the next barrier).
pub(crate) const POOL_SIZE: usize = 4;

/// The first byte of an encoded [`TransactionHandle`].
const HANDLE_VERSION: u8 = 2;

/// The first byte of a handle written before positions were recorded.
const HANDLE_VERSION_WITHOUT_POSITION: u8 = 1;

/// What the checkpoint records of a pre-committed transaction: its id and
/// where one of its records landed, which is enough to commit it after a
/// restore ([`resume`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TransactionHandle {
    /// The producer's `transactional.id`.
    pub transactional_id: String,
    /// Where its first acknowledged record landed; `None` for a
    /// transaction that wrote nothing.
    pub position: Option<Position>,
}

/// A handle of version 1 (its producer id and epoch were always `None`).
#[derive(Deserialize)]
struct HandleWithoutPosition {
    transactional_id: String,
    _producer_id: Option<i64>,
    _producer_epoch: Option<i16>,
}

impl TransactionHandle {
    fn encode(&self) -> Vec<u8> {
        // Encoding plain data into a Vec cannot fail.
        postcard::to_extend(self, vec![HANDLE_VERSION]).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, ConnectorError> {
        let invalid = |reason: String| ConnectorError::Checkpoint {
            what: "cannot read a Kafka transaction handle".into(),
            reason,
        };
        match bytes.split_first() {
            Some((&HANDLE_VERSION, body)) => postcard::from_bytes(body).map_err(|e| invalid(e.to_string())),
            Some((&HANDLE_VERSION_WITHOUT_POSITION, body)) => postcard::from_bytes::<HandleWithoutPosition>(body)
                .map(|old| Self {
                    transactional_id: old.transactional_id,
                    position: None,
                })
                .map_err(|e| invalid(e.to_string())),
            Some((version, _)) => Err(invalid(format!("unknown handle version {version}"))),
            None => Err(invalid("the handle is empty".into())),
        }
    }
}

/// A producer context that logs through [`Logged`], keeps the first
/// failed delivery, which fails the task at the next check, and the
/// position of the first record acknowledged since [`Delivered::reset`].
struct Delivered {
    logged: Logged,
    failed: Mutex<Option<KafkaError>>,
    /// Set once `first` holds a position (checked per delivery without a
    /// lock).
    positioned: AtomicBool,
    first: Mutex<Option<(i32, i64)>>,
}

impl Delivered {
    fn new(uid: &str) -> Self {
        Self {
            logged: Logged::new(uid),
            failed: Mutex::new(None),
            positioned: AtomicBool::new(false),
            first: Mutex::new(None),
        }
    }

    /// Forgets the first position (a new transaction begins).
    fn reset(&self) {
        if let Ok(mut first) = self.first.lock() {
            *first = None;
        }
        self.positioned.store(false, Ordering::Release);
    }

    /// The first position acknowledged since the last reset.
    fn first_position(&self) -> Option<(i32, i64)> {
        self.first.lock().ok().and_then(|first| *first)
    }
}

impl ClientContext for Delivered {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.logged.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logged.error(error, reason);
    }
}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                if !self.positioned.load(Ordering::Acquire)
                    && let Ok(mut first) = self.first.lock()
                {
                    first.get_or_insert((message.partition(), message.offset()));
                    self.positioned.store(true, Ordering::Release);
                }
            }
            Err((error, _)) => {
                if let Ok(mut failed) = self.failed.lock()
                    && failed.is_none()
                {
                    *failed = Some(error.clone());
                }
            }
        }
    }
}

type KafkaProducer = BaseProducer<Delivered>;

/// One transactional producer of the pool.
struct Member {
    id: String,
    producer: KafkaProducer,
    /// Holds a pre-committed transaction waiting for its checkpoint.
    pre_committed: bool,
}

enum Mode {
    AtLeastOnce(KafkaProducer),
    ExactlyOnce {
        pool: Vec<Member>,
        /// The member with the open transaction.
        open: usize,
    },
}

/// Writes records to one topic.
pub(crate) struct KafkaSink {
    uid: String,
    topic: String,
    /// `bootstrap.servers`.
    servers: String,
    /// The producers' `client.id`, also the prefix of their transactional
    /// ids: `weir-{job}-{uid}-{subtask}`.
    client_id: String,
    /// The `security.protocol` property, if set.
    security_protocol: Option<String>,
    mode: Mode,
    /// Records become messages here, with their partitions.
    messages: Messages,
    /// Records of the last batch that could not be messages.
    rejected: Vec<Rejected>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("uid", &self.uid)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Connects and checks the topic; exactly once, also creates the pool
    /// of transactional producers, which [`TransactionalSink::recover`]
    /// fences once the restored transactions are committed. `partitioner`
    /// is the started partitioner function when the config names one.
    pub(crate) fn open(
        config: &KafkaSinkConfig,
        scope: &ClientScope,
        partitioner: Option<crate::wasm::instance::PartitionerUdf>,
    ) -> Result<Self, ConnectorError> {
        let servers = &config.bootstrap_servers;
        let base = format!("weir-{}-{}-{}", scope.job, scope.uid, scope.subtask);
        let create = |transactional_id: Option<&str>| -> Result<KafkaProducer, ConnectorError> {
            let mut client = ClientConfig::new();
            // A topic that does not exist is an error (a typo should not
            // create a topic); `properties` may allow it again.
            client.set("allow.auto.create.topics", "false");
            for (key, value) in &config.properties {
                client.set(key, value);
            }
            client
                .set("bootstrap.servers", servers)
                .set("client.id", &base)
                .set("enable.idempotence", "true");
            if let Some(id) = transactional_id {
                client.set("transactional.id", id);
            }
            client
                .create_with_context(Delivered::new(&scope.uid))
                .map_err(|e| kafka_error("cannot create the Kafka producer", e))
        };
        let first = create(None)?;
        check_topic(&first, &config.topic, servers)?;
        let partitions = partition_count(first.client(), &config.topic, METADATA_TIMEOUT)
            .map_err(|e| kafka_error(format!("cannot read the partitions of topic `{}`", config.topic), e))?;
        let messages = Messages::new(
            &scope.uid,
            &config.topic,
            config.format,
            &config.partitioner,
            partitioner,
            partitions,
            scope.subtask,
        );
        let mode = match config.delivery {
            Delivery::AtLeastOnce => Mode::AtLeastOnce(first),
            Delivery::ExactlyOnce => {
                drop(first);
                let mut pool = Vec::with_capacity(POOL_SIZE);
                for index in 0..POOL_SIZE {
                    let id = format!("{base}-{index}");
                    let producer = create(Some(&id))?;
                    pool.push(Member {
                        id,
                        producer,
                        pre_committed: false,
                    });
                }
                Mode::ExactlyOnce { pool, open: 0 }
            }
        };
        Ok(Self {
            uid: scope.uid.clone(),
            topic: config.topic.clone(),
            servers: servers.clone(),
            client_id: base,
            security_protocol: config
                .properties
                .iter()
                .find(|(key, _)| key == "security.protocol")
                .map(|(_, value)| value.clone()),
            mode,
            messages,
            rejected: Vec::new(),
        })
    }

    /// Commits the restored transaction `handle` if the previous run did
    /// not ([`resume`]).
    fn commit_restored(&self, handle: &TransactionHandle) -> Result<(), ConnectorError> {
        let id = &handle.transactional_id;
        let Some(position) = &handle.position else {
            // Nothing acknowledged, or a handle of version 1, which had no
            // position yet.
            tracing::info!(
                uid = self.uid,
                "restored Kafka transaction `{id}` has no recorded record: nothing to commit"
            );
            return Ok(());
        };
        match resume::commit_recorded(
            resume::Cluster {
                servers: &self.servers,
                client_id: &self.client_id,
                security_protocol: self.security_protocol.as_deref(),
            },
            id,
            position,
        ) {
            Ok(Outcome::AlreadyCommitted) => {
                tracing::debug!(uid = self.uid, "restored Kafka transaction `{id}` was committed before");
                Ok(())
            }
            Ok(Outcome::Committed) => {
                tracing::info!(
                    uid = self.uid,
                    "committed Kafka transaction `{id}`, which the restored checkpoint recorded and the previous run left open"
                );
                Ok(())
            }
            Err(source) => Err(ConnectorError::Resume {
                topic: self.topic.clone(),
                source: Box::new(source),
            }),
        }
    }

    /// The producer records go to now.
    fn producer(&self) -> &KafkaProducer {
        match &self.mode {
            Mode::AtLeastOnce(producer) => producer,
            Mode::ExactlyOnce { pool, open } => &pool[*open].producer,
        }
    }
}

/// Begins a transaction on `member`.
fn begin(member: &Member) -> Result<(), ConnectorError> {
    member.producer.context().reset();
    member
        .producer
        .begin_transaction()
        .map_err(|e| kafka_error(format!("cannot begin a transaction of `{}`", member.id), e))
}

/// Fails if `topic` does not exist (and the broker did not create it).
fn check_topic(producer: &KafkaProducer, topic: &str, servers: &str) -> Result<(), ConnectorError> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| {
            kafka_error(
                format!("cannot reach Kafka at {servers} (asking for topic `{topic}`)"),
                e,
            )
        })?;
    let error = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(found) => found.error().map(RDKafkaErrorCode::from),
        None => Some(RDKafkaErrorCode::UnknownTopicOrPartition),
    };
    match error {
        Some(code) => Err(kafka_error(
            format!("topic `{topic}` does not exist on {servers}"),
            KafkaError::MetadataFetch(code),
        )),
        None => Ok(()),
    }
}

/// Fails with the first failed delivery of `producer`, if any.
fn check_deliveries(producer: &KafkaProducer, topic: &str) -> Result<(), ConnectorError> {
    // A fatal error (fenced, not authorised...) purges the queue: the
    // delivery reports then say only "purged", the fatal error says why.
    if let Some((code, reason)) = producer.client().fatal_error() {
        return Err(kafka_error(
            format!("the Kafka producer for topic `{topic}` failed for good: {reason}"),
            KafkaError::MessageProduction(code),
        ));
    }
    let failed = producer.context().failed.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(error) => Err(kafka_error(
            format!("a record could not be delivered to topic `{topic}`"),
            error,
        )),
        None => Ok(()),
    }
}

/// Flushes `producer`: every record sent so far is acknowledged.
fn flush(producer: &KafkaProducer, topic: &str) -> Result<(), ConnectorError> {
    producer
        .flush(TIMEOUT)
        .map_err(|e| kafka_error(format!("cannot flush the records for topic `{topic}`"), e))?;
    check_deliveries(producer, topic)
}

impl KafkaSink {
    /// Sends `batch`'s records into the open transaction.
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let messages = self
            .messages
            .build(batch, &mut self.rejected)
            .map_err(|e| ConnectorError::Partitioner(Box::new(e)))?;
        let producer = self.producer();
        for message in &messages {
            let mut message = message.record(&self.topic);
            loop {
                match producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: serve delivery reports
                        // until there is room (backpressure).
                        message = back;
                        producer.poll(Duration::from_millis(10));
                        check_deliveries(producer, &self.topic)?;
                    }
                    Err((error, _)) => {
                        return Err(kafka_error(
                            format!("cannot send a record to topic `{}`", self.topic),
                            error,
                        ));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
        check_deliveries(producer, &self.topic)
    }

    /// Flushes the open transaction and opens the next one.
    fn pre_commit_open(&mut self) -> Result<Vec<u8>, ConnectorError> {
        match &mut self.mode {
            Mode::AtLeastOnce(producer) => {
                flush(producer, &self.topic)?;
                Ok(Vec::new())
            }
            Mode::ExactlyOnce { pool, open } => {
                flush(&pool[*open].producer, &self.topic)?;
                pool[*open].pre_committed = true;
                let handle = TransactionHandle {
                    transactional_id: pool[*open].id.clone(),
                    position: pool[*open]
                        .producer
                        .context()
                        .first_position()
                        .map(|(partition, offset)| Position {
                            topic: self.topic.clone(),
                            partition,
                            offset,
                        }),
                };
                let Some(next) = (0..pool.len())
                    .map(|i| (*open + 1 + i) % pool.len())
                    .find(|i| !pool[*i].pre_committed)
                else {
                    return Err(ConnectorError::Checkpoint {
                        what: format!("cannot open a Kafka transaction for topic `{}`", self.topic),
                        reason: format!(
                            "all {POOL_SIZE} transactional producers hold pre-committed transactions whose checkpoints have not completed"
                        ),
                    });
                };
                begin(&pool[next])?;
                *open = next;
                Ok(handle.encode())
            }
        }
    }

    /// Commits the pre-committed transaction `handle` names.
    fn commit_handle(&mut self, handle: &TransactionHandle) -> Result<(), ConnectorError> {
        let Mode::ExactlyOnce { pool, .. } = &mut self.mode else {
            return Ok(());
        };
        // Not pre-committed by this run: committed already (commit is
        // idempotent), or a restored handle (see `recover`).
        let Some(member) = pool
            .iter_mut()
            .find(|m| m.pre_committed && m.id == handle.transactional_id)
        else {
            return Ok(());
        };
        member
            .producer
            .commit_transaction(TIMEOUT)
            .map_err(|e| kafka_error(format!("cannot commit the transaction of `{}`", member.id), e))?;
        member.pre_committed = false;
        Ok(())
    }

    /// The transactional id of the open transaction (exactly once).
    fn open_id(&self) -> Option<String> {
        match &self.mode {
            Mode::AtLeastOnce(_) => None,
            Mode::ExactlyOnce { pool, open } => Some(pool[*open].id.clone()),
        }
    }

    /// `error`, or [`ConnectorError::Fenced`] when it says that the open
    /// transaction's producer was fenced.
    fn fenced(&self, error: ConnectorError) -> ConnectorError {
        fenced(error, self.open_id())
    }
}

/// `error`, or [`ConnectorError::Fenced`] naming `transactional_id` when
/// librdkafka reports that the producer was fenced by another one.
fn fenced(error: ConnectorError, transactional_id: Option<String>) -> ConnectorError {
    let code = match &error {
        ConnectorError::Kafka { source, .. } => source.rdkafka_error_code(),
        _ => None,
    };
    match (code, transactional_id) {
        (
            Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch),
            Some(transactional_id),
        ) => ConnectorError::Fenced { transactional_id },
        _ => error,
    }
}

impl TransactionalSink for KafkaSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        self.write_batch(batch).map_err(|e| self.fenced(e))
    }

    fn rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }

    fn pre_commit(&mut self) -> Result<Vec<u8>, ConnectorError> {
        let open = self.open_id();
        self.pre_commit_open().map_err(|e| fenced(e, open))
    }

    fn commit(&mut self, transaction: &[u8]) -> Result<(), ConnectorError> {
        if matches!(self.mode, Mode::AtLeastOnce(_)) {
            return Ok(());
        }
        let handle = TransactionHandle::decode(transaction)?;
        self.commit_handle(&handle)
            .map_err(|e| fenced(e, Some(handle.transactional_id.clone())))
    }
    fn recover(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError> {
        // First the restored checkpoint's transactions: the previous run
        // committed them unless it stopped between the checkpoint's
        // completion and the commit, and then they are still open and are
        // committed now. Only then is the pool fenced, which aborts what
        // no checkpoint recorded.
        if matches!(self.mode, Mode::AtLeastOnce(_)) {
            return Ok(());
        }
        for bytes in pending {
            self.commit_restored(&TransactionHandle::decode(bytes)?)?;
        }
        let Mode::ExactlyOnce { pool, open } = &mut self.mode else {
            return Ok(());
        };
        for member in pool.iter() {
            member.producer.init_transactions(TIMEOUT).map_err(|e| {
                kafka_error(
                    format!("cannot initialise transactions of `{}` on {}", member.id, self.servers),
                    e,
                )
            })?;
        }
        *open = 0;
        begin(&pool[0])?;
        tracing::info!(
            uid = self.uid,
            "Kafka transactional ids {}-0..{POOL_SIZE} fenced",
            self.client_id
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_bad_bytes_are_refused() {
        let handle = TransactionHandle {
            transactional_id: "weir-job-out-0-1".into(),
            position: Some(Position {
                topic: "out".into(),
                partition: 2,
                offset: 41,
            }),
        };
        assert_eq!(TransactionHandle::decode(&handle.encode()).expect("decodes"), handle);
        // Version 1: the id, then two absent options.
        let old = [
            1, 16, b'w', b'e', b'i', b'r', b'-', b'j', b'o', b'b', b'-', b'o', b'u', b't', b'-', b'0', b'-', b'1', 0, 0,
        ];
        assert_eq!(
            TransactionHandle::decode(&old).expect("decodes"),
            TransactionHandle {
                transactional_id: "weir-job-out-0-1".into(),
                position: None,
            }
        );
        assert_eq!(
            TransactionHandle::decode(&[]).expect_err("empty").to_string(),
            "cannot read a Kafka transaction handle: the handle is empty"
        );
    }
}
