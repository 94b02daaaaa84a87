//! Kafka in and out: a source that reads topics with offsets in Weir's
//! checkpoints, and a sink that writes a topic at least once or exactly once
//! through Kafka transactions committed with checkpoints (librdkafka,
//! through `rdkafka`).
//!
//! - [`config`]: the settings a job file gives;
//! - [`assign`]: which subtask reads which partition (Flink's rule);
//! - [`discovery`]: which topics and partitions there are, at start and,
//!   with `discovery_interval_ms`, while running;
//! - [`split`]: the source's checkpointed state, one split a partition;
//! - [`mod@format`]: how a message becomes records (or a dead letter);
//! - [`watermarks`]: per-partition watermarks, merged by minimum;
//! - [`source`]: the source; [`sink`]: the sink; [`message`]: what a
//!   record becomes in the sink (envelopes, partitioners);
//! - [`resume`]: committing a restored transaction after a crash, through
//!   [`protocol`], a small client of Kafka's wire protocol.
//!
//! ## Threads
//!
//! librdkafka runs its own I/O threads (one per broker, plus a main
//! thread): fetching, producing, retries and the protocol happen there,
//! whatever thread calls the client. Weir's subtask thread only moves data
//! in and out of librdkafka's queues: the source polls a `BaseConsumer`
//! with a timeout (the batch's `linger_ms`), the sink enqueues into a
//! `BaseProducer` and polls it for delivery reports. An async client on
//! tokio would add a second hand-over (a channel from a tokio task to the
//! subtask thread) for no gain in I/O, and the Wasm calls have to stay on
//! the subtask threads anyway (see `NOTES`: synchronous CPU work off the
//! async workers). Blocking calls (metadata at start, `flush` and the
//! transaction calls at a barrier) block only the subtask that makes them,
//! as the file and PostgreSQL connectors do.
//!
//! ## Source
//!
//! Partitions are assigned manually (`assign`, no group rebalancing), each
//! to the subtask [`assign::owner`] names, starting from the checkpointed
//! offset when the restored checkpoint has one and from `start` otherwise.
//! The offsets a barrier saw are committed to the consumer group when that
//! checkpoint completes, for monitoring only: Weir never reads them back,
//! except with `start = "committed"` for partitions the checkpoint lacks.
//! Event time is the message's timestamp (ingestion time when a message
//! has none); operators that assign event time (a parsing function) replace
//! it as with any other source.
//!
//! With a watermark strategy (periodic, not punctuated), every partition
//! has its own watermark generator and the subtask's watermark is their
//! minimum ([`watermarks`]).
//!
//! Topics are named (`topics`) or matched (`topic_pattern`); with
//! `discovery_interval_ms`, new partitions and topics are found and read
//! while the job runs ([`discovery`]).
//!
//! ## Sink, exactly once
//!
//! Each subtask owns a small pool of transactional producers with ids
//! `weir-{job}-{uid}-{subtask}-{index}` (a pool because a transaction
//! pre-committed at a barrier stays open until its checkpoint completes,
//! while the next one already takes records). Records go into the open
//! transaction; at a barrier the producer is flushed (every record
//! acknowledged by the broker: the pre-commit), a handle of its
//! transaction goes into the checkpoint (its transactional id and where its
//! first record landed), and the next producer of the pool begins a
//! transaction; when the checkpoint completes, the pre-committed
//! transaction is committed.
//!
//! On start, [`resume`] first commits every transaction the restored
//! checkpoint recorded that the previous run left open (it crashed after
//! the checkpoint completed and before committing): librdkafka cannot
//! resume another producer's transaction, so Weir reads the producer id
//! and epoch from the recorded record's batch and sends `EndTxn` itself,
//! as Flink's `resumeTransaction` does ([`protocol`] is the small client).
//! Only then is every id of the pool fenced with `init_transactions`,
//! which aborts whatever a crashed run left open that no checkpoint
//! recorded: the records of an uncompleted checkpoint, which the restored
//! run replays. A restored transaction found aborted (a
//! `transaction.timeout.ms` shorter than the checkpoint took) fails the
//! restore, naming it: its records cannot be had again.
//!
//! A transaction stays open from one barrier until the next checkpoint
//! completes, so librdkafka's `transaction.timeout.ms` (60 s by default,
//! settable in `properties`; the broker caps it) must exceed the checkpoint
//! interval plus the time a checkpoint takes; without checkpoints the whole
//! run is one transaction, committed at the end of the input.
//!
//! ## Sink, at least once
//!
//! A plain idempotent producer; at every barrier it is flushed and every
//! delivery report awaited, so that the checkpoint covers only records the
//! broker has. A failed delivery fails the task (the job restarts from its
//! checkpoint): nothing is dropped silently.

//! ## Testing against nisshi 0.6.0
//!
//! The end-to-end tests (`tests/e2e/kafka.rs`) run against nisshi 0.6.0,
//! the Kafka-compatible broker that builds here. Found while writing them:
//! transactions work through librdkafka (`init_transactions`, commit,
//! fencing) and read-committed fetches stop at open transactions, but
//! aborted records are visible to read-committed consumers (the tests
//! read the log with its transaction markers applied instead), a fetch
//! with no wait answers nothing (the protocol client waits up to 500 ms), and ListOffsets
//! `latest` answers the last record batch's base offset plus one (not the
//! end of the partition), so the bounded source takes its ends from the
//! fetches (end-of-partition events) instead.

pub(crate) mod assign;
pub(crate) mod config;
pub(crate) mod discovery;
pub(crate) mod format;
pub(crate) mod message;
#[cfg(test)]
mod mock_tests;
pub(crate) mod protocol;
pub(crate) mod resume;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod split;
pub(crate) mod watermarks;

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult};

pub(crate) use config::{Delivery, Format, Isolation, KafkaSinkConfig, KafkaSourceConfig, SinkFormat, StartFrom};
pub(crate) use sink::KafkaSink;
pub(crate) use source::KafkaSource;

use super::ConnectorError;

/// Who a Kafka client works for (its logs name it), and the job it runs in.
#[derive(Debug, Clone)]
pub(crate) struct ClientScope {
    /// The job's name.
    pub job: String,
    /// The source or sink uid.
    pub uid: String,
    /// This subtask.
    pub subtask: u32,
    /// The vertex's parallelism.
    pub parallelism: u32,
}

/// A client context that sends librdkafka's logs and errors to `tracing`,
/// naming the source or sink.
#[derive(Debug)]
pub(crate) struct Logged {
    uid: String,
}

impl Logged {
    pub(crate) fn new(uid: &str) -> Self {
        Self { uid: uid.to_string() }
    }
}

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let uid = &self.uid;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(uid, facility, "librdkafka: {message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(uid, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(uid, facility, "librdkafka: {message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(uid, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka retries on its own (a broker down, a connection
        // refused); what cannot be retried surfaces where it matters. The
        // end of a partition is news, not an error.
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            tracing::debug!(uid = self.uid, "librdkafka: {reason}");
            return;
        }
        tracing::warn!(uid = self.uid, "librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for Logged {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(
                uid = self.uid,
                "cannot commit offsets to the consumer group (they serve monitoring only): {error}"
            );
        }
    }
}

/// A connector error about Kafka: `what` was being done.
fn kafka_error(what: impl Into<String>, source: KafkaError) -> ConnectorError {
    ConnectorError::Kafka {
        what: what.into(),
        source: Box::new(source),
    }
}
