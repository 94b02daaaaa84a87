//! Writes one record a line to standard output.

use std::io::Write;

use super::{ConnectorError, Sink};
use crate::record::batch::RecordBatch;

/// A sink that prints every record's payload on its own line.
#[derive(Debug, Default)]
pub(crate) struct StdoutSink;

impl Sink for StdoutSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for record in batch.iter() {
            out.write_all(record.payload)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|source| ConnectorError::Io {
                    what: "cannot write",
                    path: "standard output".into(),
                    source,
                })?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        std::io::stdout().flush().map_err(|source| ConnectorError::Io {
            what: "cannot write",
            path: "standard output".into(),
            source,
        })
    }
}
