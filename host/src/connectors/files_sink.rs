//! The exactly-once file sink: a folder of part files, each committed
//! atomically with a checkpoint (Flink's `FileSink` in spirit).
//!
//! ```text
//! <path>/part-0000-00000003          committed: what readers see
//! <path>/.pending/part-0000-00000004 pre-committed at a barrier, durable
//! <path>/.in-progress/part-0000-00000005  being written
//! ```
//!
//! A transaction is one part file. Pre-commit flushes and syncs it and
//! renames it into `.pending/`; commit renames it into the folder. Renames
//! are atomic, so a reader never sees half a file, and committing twice is
//! harmless. On recovery, pending files named by the checkpoint are
//! committed, and every other pending or in-progress file of this subtask is
//! deleted. Empty transactions leave no file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{ConnectorError, TransactionalSink};
use crate::record::batch::RecordBatch;

/// A transactional sink writing part files into a folder.
#[derive(Debug)]
pub(crate) struct FilesSink {
    dir: PathBuf,
    subtask: u32,
    sequence: u64,
    open: Option<(String, BufWriter<File>)>,
    written: u64,
}

const PENDING: &str = ".pending";
const IN_PROGRESS: &str = ".in-progress";

impl FilesSink {
    /// A sink for subtask `subtask` writing into `dir`.
    pub(crate) fn open(dir: &Path, subtask: u32) -> Result<Self, ConnectorError> {
        for sub in [PENDING, IN_PROGRESS] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| io_error("cannot create", &path, e))?;
        }
        let mut sink = Self {
            dir: dir.to_path_buf(),
            subtask,
            sequence: 0,
            open: None,
            written: 0,
        };
        sink.sequence = sink.highest_sequence()? + 1;
        Ok(sink)
    }

    fn prefix(&self) -> String {
        format!("part-{:04}-", self.subtask)
    }

    /// The highest sequence number of any part file of this subtask.
    fn highest_sequence(&self) -> Result<u64, ConnectorError> {
        let prefix = self.prefix();
        let mut highest = 0;
        for dir in [self.dir.clone(), self.dir.join(PENDING), self.dir.join(IN_PROGRESS)] {
            let entries = std::fs::read_dir(&dir).map_err(|e| io_error("cannot list", &dir, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(sequence) = name.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) {
                    highest = highest.max(sequence);
                }
            }
        }
        Ok(highest)
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, ConnectorError> {
        if self.open.is_none() {
            let name = format!("{}{:08}", self.prefix(), self.sequence);
            self.sequence += 1;
            let path = self.dir.join(IN_PROGRESS).join(&name);
            let file = File::create(&path).map_err(|e| io_error("cannot create", &path, e))?;
            self.open = Some((name, BufWriter::with_capacity(1 << 20, file)));
        }
        match &mut self.open {
            Some((_, writer)) => Ok(writer),
            None => unreachable_writer(&self.dir),
        }
    }
}

fn unreachable_writer<T>(dir: &Path) -> Result<T, ConnectorError> {
    Err(io_error(
        "no open part file in",
        dir,
        std::io::Error::other("internal error"),
    ))
}

fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> ConnectorError {
    ConnectorError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

impl TransactionalSink for FilesSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.is_empty() {
            return Ok(());
        }
        let dir = self.dir.clone();
        let writer = self.writer()?;
        for record in batch.iter() {
            writer
                .write_all(record.payload)
                .and_then(|()| writer.write_all(b"\n"))
                .map_err(|e| io_error("cannot write into", &dir, e))?;
        }
        self.written += batch.len() as u64;
        Ok(())
    }

    fn pre_commit(&mut self) -> Result<Vec<u8>, ConnectorError> {
        let Some((name, mut writer)) = self.open.take() else {
            return Ok(Vec::new()); // an empty transaction
        };
        let from = self.dir.join(IN_PROGRESS).join(&name);
        writer.flush().map_err(|e| io_error("cannot write", &from, e))?;
        writer
            .get_ref()
            .sync_all()
            .map_err(|e| io_error("cannot sync", &from, e))?;
        let to = self.dir.join(PENDING).join(&name);
        std::fs::rename(&from, &to).map_err(|e| io_error("cannot pre-commit", &from, e))?;
        Ok(name.into_bytes())
    }

    fn commit(&mut self, transaction: &[u8]) -> Result<(), ConnectorError> {
        if transaction.is_empty() {
            return Ok(());
        }
        let name = String::from_utf8_lossy(transaction).into_owned();
        let pending = self.dir.join(PENDING).join(&name);
        let committed = self.dir.join(&name);
        match std::fs::rename(&pending, &committed) {
            Ok(()) => Ok(()),
            Err(_) if committed.exists() => Ok(()), // committed before a restart
            Err(e) => Err(io_error("cannot commit", &pending, e)),
        }
    }

    fn recover(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError> {
        for transaction in pending {
            self.commit(transaction)?;
        }
        let prefix = self.prefix();
        for sub in [PENDING, IN_PROGRESS] {
            let dir = self.dir.join(sub);
            let entries = std::fs::read_dir(&dir).map_err(|e| io_error("cannot list", &dir, e))?;
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_file(entry.path()).map_err(|e| io_error("cannot abort", &entry.path(), e))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lines: &[&str]) -> RecordBatch {
        let mut batch = RecordBatch::default();
        for line in lines {
            batch.push(line.as_bytes(), 0);
        }
        batch
    }

    fn committed(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn only_committed_transactions_are_visible_and_recovery_aborts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FilesSink::open(dir.path(), 0).unwrap();
        sink.write(&batch(&["a", "b"])).unwrap();
        let first = sink.pre_commit().unwrap();
        sink.write(&batch(&["c"])).unwrap();
        let second = sink.pre_commit().unwrap();
        sink.write(&batch(&["d"])).unwrap();
        assert!(committed(dir.path()).is_empty());
        sink.commit(&first).unwrap();
        sink.commit(&first).unwrap();
        assert_eq!(committed(dir.path()), vec!["part-0000-00000001"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("part-0000-00000001")).unwrap(),
            "a\nb\n"
        );

        // A crash: the restored checkpoint knew only `second`; `d` is lost
        // (it will be replayed) and must not appear.
        drop(sink);
        let mut sink = FilesSink::open(dir.path(), 0).unwrap();
        sink.recover(&[second]).unwrap();
        assert_eq!(committed(dir.path()), vec!["part-0000-00000001", "part-0000-00000002"]);
        assert_eq!(std::fs::read_dir(dir.path().join(IN_PROGRESS)).unwrap().count(), 0);
        sink.write(&batch(&["e"])).unwrap();
        sink.finish().unwrap();
        assert_eq!(committed(dir.path()).len(), 3);
        assert_eq!(sink.pre_commit().unwrap(), Vec::<u8>::new());
    }
}
