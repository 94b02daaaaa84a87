//! Lines of a text file as records (CSV, JSON lines or plain text).
//!
//! Each line, without its `\n`, is one record's payload; its timestamp is the
//! time it was read (ingestion time), until an operator assigns event time.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{ConnectorError, Source, SourceStatus};
use crate::runtime::batch::RecordBatch;

/// Reads a file line by line.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    line: Vec<u8>,
    offset: u64,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, ConnectorError> {
        let file = File::open(path).map_err(|source| ConnectorError::Io {
            what: "cannot open input file",
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            line: Vec::new(),
            offset: 0,
        })
    }
}

impl Source for FileSource {
    fn next_batch(&mut self, batch: &mut RecordBatch, max: usize) -> Result<SourceStatus, ConnectorError> {
        let now = crate::time::now_ms();
        for _ in 0..max {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|source| ConnectorError::Io {
                    what: "cannot read input file",
                    path: self.path.display().to_string(),
                    source,
                })?;
            if read == 0 {
                return Ok(SourceStatus::End);
            }
            self.offset += read as u64;
            let payload = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            batch.push(payload, now);
        }
        Ok(SourceStatus::More)
    }

    /// The byte offset of the next line.
    fn position(&self) -> u64 {
        self.offset
    }

    fn seek(&mut self, position: u64) -> Result<(), ConnectorError> {
        use std::io::Seek;
        self.reader
            .seek(std::io::SeekFrom::Start(position))
            .map_err(|source| ConnectorError::Io {
                what: "cannot seek in input file",
                path: self.path.display().to_string(),
                source,
            })?;
        self.offset = position;
        Ok(())
    }
}
