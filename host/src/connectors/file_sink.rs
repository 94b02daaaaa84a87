//! Writes one record a line to a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{ConnectorError, Sink};
use crate::record::batch::RecordBatch;

/// A file sink: every record's payload followed by `\n`.
#[derive(Debug)]
pub(crate) struct FileSink {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl FileSink {
    /// Creates (or truncates) `path`, creating its folder if needed.
    pub(crate) fn create(path: &Path) -> Result<Self, ConnectorError> {
        let io_error = |what, source| ConnectorError::Io {
            what,
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create the folder of", e))?;
        }
        let file = File::create(path).map_err(|e| io_error("cannot create output file", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, file),
        })
    }

    fn io_error(&self, what: &'static str, source: std::io::Error) -> ConnectorError {
        ConnectorError::Io {
            what,
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl Sink for FileSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        for record in batch.iter() {
            self.writer
                .write_all(record.payload)
                .and_then(|()| self.writer.write_all(b"\n"))
                .map_err(|e| self.io_error("cannot write output file", e))?;
        }
        // Each batch reaches the file at once, so the output of a job that
        // runs for long (or forever) can be read while it runs.
        self.writer
            .flush()
            .map_err(|e| self.io_error("cannot write output file", e))
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        self.writer
            .flush()
            .map_err(|e| self.io_error("cannot write output file", e))?;
        self.writer
            .get_ref()
            .sync_all()
            .map_err(|e| self.io_error("cannot sync output file", e))
    }
}
