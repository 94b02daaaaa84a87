//! Connectors: where records come from ([`Source`]) and where they go
//! ([`Sink`]).
//!
//! A source fills batches; a sink writes them. Both run on their own subtask
//! threads, so blocking I/O here never stalls another operator.

pub mod file_sink;
pub mod file_source;
pub mod generator;
pub mod stdout_sink;

use crate::runtime::batch::RecordBatch;

/// Errors of connectors: always about an external system (a file, a broker).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
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
}

/// Whether a source has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// The batch holds records (or the source is waiting for more).
    More,
    /// The input is exhausted; the batch holds the last records, if any.
    End,
}

/// Reads records from outside the job.
pub trait Source: Send {
    /// Appends up to `max` records to `batch`.
    fn next_batch(
        &mut self,
        batch: &mut RecordBatch,
        max: usize,
    ) -> Result<SourceStatus, ConnectorError>;
}

/// Writes records outside the job.
pub trait Sink: Send {
    /// Writes every record of `batch`.
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;

    /// Makes everything written so far durable (end of input).
    fn finish(&mut self) -> Result<(), ConnectorError>;
}
