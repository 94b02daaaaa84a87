//! The dead-letter output: records a function rejected, with the reason.
//!
//! One JSON object a line: the operator, the module, the reason, the
//! record's event time, and the record itself (as text when it is UTF-8,
//! otherwise as hex). The file is created at the first dead letter, so a
//! clean run leaves none behind; a run that continues from saved state
//! appends to it, so nothing an earlier run rejected is lost. Every dead
//! letter is counted.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::TaskError;
use crate::record::batch::RecordRef;

/// The shared dead-letter file of a job.
#[derive(Debug)]
pub(crate) struct DeadLetters {
    path: PathBuf,
    append: bool,
    writer: Mutex<Option<BufWriter<File>>>,
    count: AtomicU64,
}

#[derive(Serialize)]
struct Entry<'a> {
    operator: &'a str,
    module: &'a str,
    reason: &'a str,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_hex: Option<String>,
}

impl DeadLetters {
    /// Dead letters go to `path`, replacing what it holds.
    #[cfg(test)]
    pub(crate) fn new(path: &Path) -> Self {
        Self::appending(path, false)
    }

    /// Dead letters go to `path`, after what it holds if `append`.
    pub(crate) fn appending(path: &Path, append: bool) -> Self {
        Self {
            path: path.to_path_buf(),
            append,
            writer: Mutex::new(None),
            count: AtomicU64::new(0),
        }
    }

    /// Number of dead letters so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes one rejected record.
    pub(crate) fn write(
        &self,
        operator: &str,
        module: &str,
        record: RecordRef<'_>,
        reason: &str,
    ) -> Result<(), TaskError> {
        let text = std::str::from_utf8(record.payload).ok();
        let entry = Entry {
            operator,
            module,
            reason,
            timestamp: record.timestamp,
            record: text,
            record_hex: text
                .is_none()
                .then(|| record.payload.iter().map(|b| format!("{b:02x}")).collect()),
        };
        let io_error = |source| TaskError::DeadLetter {
            path: self.path.display().to_string(),
            source,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| io_error(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| io_error(std::io::Error::other("lock poisoned")))?;
        if guard.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io_error)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(self.append)
                .truncate(!self.append)
                .open(&self.path)
                .map_err(io_error)?;
            *guard = Some(BufWriter::new(file));
        }
        if let Some(writer) = guard.as_mut() {
            writer.write_all(&line).map_err(io_error)?;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes the file, if one was created.
    pub(crate) fn flush(&self) -> Result<(), TaskError> {
        let io_error = |source| TaskError::DeadLetter {
            path: self.path.display().to_string(),
            source,
        };
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| io_error(std::io::Error::other("lock poisoned")))?;
        if let Some(writer) = guard.as_mut() {
            writer.flush().map_err(io_error)?;
        }
        Ok(())
    }
}
