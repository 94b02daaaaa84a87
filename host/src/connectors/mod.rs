//! Connectors: where records come from ([`Source`]) and where they go
//! ([`Sink`]): files, the traffic generator, stdout, PostgreSQL and Kafka
//! ([`kafka`]).
//!
//! A source fills batches; a sink writes them. Both run on their own subtask
//! threads, so blocking I/O here never stalls another operator.

pub(crate) mod file_sink;
pub(crate) mod file_source;
pub(crate) mod files_sink;
pub(crate) mod generator;
pub(crate) mod kafka;
pub(crate) mod postgres_sink;
pub(crate) mod stdout_sink;

use crate::record::batch::RecordBatch;
use crate::storage::CheckpointId;

/// Errors of connectors: always about an external system (a file, a broker).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectorError {
    /// An I/O operation on a named resource failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done (`cannot open`, `cannot write`...).
        what: &'static str,
        /// The resource.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A database operation failed, or a database connector was given
    /// something it cannot use (a bad table name, a record that is not text).
    #[error("{what}: {message}")]
    Database {
        /// What was being done (`cannot connect to ...`, `cannot prepare
        /// transaction ...`...).
        what: String,
        /// The database's (or the driver's) explanation.
        message: String,
    },
    /// A record cannot be written as a row of a database table.
    #[error("{what}: {source}")]
    Row {
        /// What was being done (`cannot write into ...`).
        what: String,
        /// What is wrong with the record.
        source: postgres_sink::RowError,
    },
    /// A Kafka client operation failed, or Kafka lacks what the job names
    /// (a topic).
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done (`cannot reach Kafka at ...`, `topic ... does
        /// not exist on ...`...).
        what: String,
        /// librdkafka's error (boxed: it is large, and errors travel in
        /// every `Result` of the runtime).
        source: Box<rdkafka::error::KafkaError>,
    },
    /// Another producer took over this sink's transactional id: a second
    /// run writes with the same ids. Restarting would only fence it back,
    /// so this failure is permanent ([`ConnectorError::is_permanent`]).
    #[error(
        "transactional producer `{transactional_id}` was fenced: another run writes with the same transactional ids (a second run of this job, or a job with the same name and sink uid); stop it or rename one of the jobs (nothing is restarted: the runs would fence each other in turn)"
    )]
    Fenced {
        /// The fenced transactional id.
        transactional_id: String,
    },
    /// A transaction a restored checkpoint recorded could not be committed.
    #[error("cannot commit the restored Kafka transaction for topic `{topic}`: {source}")]
    Resume {
        /// The sink's topic.
        topic: String,
        /// Why (boxed: the protocol error is large).
        source: Box<kafka::resume::ResumeError>,
    },
    /// A Kafka sink's partitioner failed or chose a partition the topic
    /// does not have (boxed: it is large).
    #[error(transparent)]
    Partitioner(Box<kafka::message::PartitionError>),
    /// Checkpointed connector state cannot be used.
    #[error("{what}: {reason}")]
    Checkpoint {
        /// What was being restored.
        what: String,
        /// Why it cannot be.
        reason: String,
    },
}

impl ConnectorError {
    /// Whether restarting the job cannot help (the executor then stops
    /// instead of restarting): a fenced producer, a restored transaction
    /// found aborted.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Self::Fenced { .. } => true,
            Self::Resume { source, .. } => source.is_permanent(),
            _ => false,
        }
    }
}

/// Whether a source has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceStatus {
    /// The batch holds records (or the source is waiting for more).
    More,
    /// The input is exhausted; the batch holds the last records, if any.
    End,
}

/// Input a source could not turn into records, for the dead-letter output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// The input as it came.
    pub payload: Vec<u8>,
    /// Its event time.
    pub timestamp: crate::record::batch::EventTime,
    /// Why it is not a record, and where it came from.
    pub reason: String,
}

/// Reads records from outside the job. Sources are replayable: a position
/// taken between two batches can be sought back to after a failure.
pub(crate) trait Source: Send {
    /// Appends up to `max` records to `batch`.
    fn next_batch(&mut self, batch: &mut RecordBatch, max: usize) -> Result<SourceStatus, ConnectorError>;

    /// The position of the next record (checkpointed at a barrier).
    fn position(&self) -> u64;

    /// Continues from `position`, a value [`Source::position`] returned.
    fn seek(&mut self, position: u64) -> Result<(), ConnectorError>;

    /// The splits this subtask reads, each with its position, opaque to
    /// the runtime (Flink's union list state of splits): a restore at
    /// another parallelism gives every new subtask a share of all the old
    /// subtasks' splits. Empty: the source cannot be rescaled.
    fn splits(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// At the barrier of checkpoint `checkpoint`: the position and the
    /// splits to acknowledge. A source that acts when a checkpoint completes
    /// (the Kafka source commits its offsets to the consumer group) notes
    /// here what the checkpoint holds.
    fn snapshot(&mut self, checkpoint: CheckpointId) -> (u64, Vec<Vec<u8>>) {
        let _ = checkpoint;
        (self.position(), self.splits())
    }

    /// What the last [`Source::next_batch`] could not turn into records
    /// (the runtime sends it to the dead-letter output).
    fn rejected(&mut self) -> Vec<Rejected> {
        Vec::new()
    }

    /// Whether this source generates its own watermarks (the Kafka
    /// source's per-partition watermarks) through
    /// [`Source::poll_watermark`], instead of the output's generator.
    fn own_watermarks(&self) -> bool {
        false
    }

    /// What this source's own watermarks say now, if anything (asked after
    /// every batch, empty ones included).
    fn poll_watermark(&mut self) -> Option<crate::time::watermarks::WatermarkEvent> {
        None
    }

    /// Checkpoint `checkpoint` completed. Best effort: what a source does
    /// here is never needed for correctness.
    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) {
        let _ = checkpoint;
    }
}

/// Writes records outside the job.
pub(crate) trait Sink: Send {
    /// Writes every record of `batch`.
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;

    /// Makes everything written so far durable (end of input).
    fn finish(&mut self) -> Result<(), ConnectorError>;
}

/// A sink that writes in transactions, for exactly-once output with
/// checkpoints (two-phase commit). The runtime drives it through
/// the two-phase-commit operator (`operators::two_phase_commit`):
///
/// 1. records go into the open transaction ([`TransactionalSink::write`]);
/// 2. at a checkpoint barrier the transaction is made durable but invisible
///    ([`TransactionalSink::pre_commit`]) and its handle is saved in the
///    checkpoint; a new transaction opens;
/// 3. when the checkpoint completes, the transaction becomes visible
///    ([`TransactionalSink::commit`]);
/// 4. after a failure, the handles saved in the restored checkpoint are
///    committed (their checkpoint completed) and every other transaction the
///    subtask left behind is aborted ([`TransactionalSink::recover`]).
pub(crate) trait TransactionalSink: Send {
    /// Writes records into the open transaction.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;

    /// What the last [`TransactionalSink::write`] could not write (the
    /// runtime sends it to the dead-letter output).
    fn rejected(&mut self) -> Vec<Rejected> {
        Vec::new()
    }

    /// Pre-commits the open transaction, opens the next one, and returns the
    /// handle that commits the pre-committed one later.
    fn pre_commit(&mut self) -> Result<Vec<u8>, ConnectorError>;

    /// Makes a pre-committed transaction visible. Idempotent: committing a
    /// transaction that is already committed succeeds.
    fn commit(&mut self, transaction: &[u8]) -> Result<(), ConnectorError>;

    /// On start: commits `pending` (saved in the restored checkpoint) and
    /// aborts every other transaction this subtask left behind.
    fn recover(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError>;

    /// End of input: pre-commits and commits the open transaction at once
    /// (used when the job runs without checkpoints).
    fn finish(&mut self) -> Result<(), ConnectorError> {
        let transaction = self.pre_commit()?;
        self.commit(&transaction)
    }
}
