//! Lines of text files as records (CSV, JSON lines or plain text).
//!
//! Each line, without its `\n`, is one record's payload; its timestamp is the
//! time it was read (ingestion time), until an operator assigns event time.
//!
//! The path is one file (read by one subtask) or a folder: its files, sorted
//! by name, are split over the subtasks (file `i` goes to subtask
//! `i % parallelism`), as Flink's `FileSource` splits files over readers. A
//! subtask with no file has nothing to read.
//!
//! With `follow`, a subtask does not end at the end of its last file: it
//! waits there for more lines, like `tail -f` (Flink's
//! `monitorContinuously`, without discovering new files). A line is read
//! only once its `\n` has been written. Such a source never ends; a subtask
//! that has nothing to read is *quiet*, which is what idleness detection is
//! for.
//!
//! The checkpointed position is the index of the current file (high 24 bits)
//! and the byte offset in it (low 40 bits).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConnectorError, Source, SourceStatus};
use crate::record::batch::RecordBatch;

/// Bits of a position that hold the byte offset.
const OFFSET_BITS: u32 = 40;

/// How long a following source waits before it looks for new lines again.
const FOLLOW_POLL: Duration = Duration::from_millis(20);

/// Reads lines from its share of the files.
#[derive(Debug)]
pub(crate) struct FileSource {
    files: Vec<PathBuf>,
    /// Index into `files` of the file being read.
    current: usize,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
    offset: u64,
    follow: bool,
}

/// The files of `path` that subtask `subtask` of `parallelism` reads: `path`
/// itself if it is a file (subtask 0 only), else every `parallelism`-th file
/// of the folder, by name.
pub(crate) fn assigned_files(path: &Path, subtask: u32, parallelism: u32) -> Result<Vec<PathBuf>, ConnectorError> {
    let io_error = |source| ConnectorError::Io {
        what: "cannot list input folder",
        path: path.display().to_string(),
        source,
    };
    if !path.is_dir() {
        return Ok(if subtask == 0 {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        if entry.file_type().map_err(io_error)?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 % u64::from(parallelism.max(1)) == u64::from(subtask))
        .map(|(_, file)| file)
        .collect())
}

impl FileSource {
    /// Reads `files` in order; with `follow`, waits at the end of the last
    /// one for more lines.
    pub(crate) fn open(files: Vec<PathBuf>, follow: bool) -> Result<Self, ConnectorError> {
        let mut source = Self {
            files,
            current: 0,
            reader: None,
            line: Vec::new(),
            offset: 0,
            follow,
        };
        source.open_current(0)?;
        Ok(source)
    }

    fn path(&self) -> String {
        self.files
            .get(self.current)
            .map_or_else(String::new, |p| p.display().to_string())
    }

    /// Opens file `current` at `offset` (nothing when past the last file).
    fn open_current(&mut self, offset: u64) -> Result<(), ConnectorError> {
        self.reader = None;
        self.offset = offset;
        let Some(path) = self.files.get(self.current) else {
            return Ok(());
        };
        let mut file = File::open(path).map_err(|source| ConnectorError::Io {
            what: "cannot open input file",
            path: path.display().to_string(),
            source,
        })?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|source| ConnectorError::Io {
                    what: "cannot seek in input file",
                    path: path.display().to_string(),
                    source,
                })?;
        }
        self.reader = Some(BufReader::with_capacity(1 << 20, file));
        Ok(())
    }

    /// Whether the current file is the last one.
    fn at_last_file(&self) -> bool {
        self.current + 1 >= self.files.len()
    }
}

impl Source for FileSource {
    fn next_batch(&mut self, batch: &mut RecordBatch, max: usize) -> Result<SourceStatus, ConnectorError> {
        let now = crate::time::now_ms();
        while batch.len() < max {
            // Fast path: the whole lines in the reader's buffer, found with
            // `memchr`, each copied once, straight into the batch.
            if let Some(reader) = self.reader.as_mut() {
                let buffer = reader.fill_buf().map_err(|source| ConnectorError::Io {
                    what: "cannot read input file",
                    path: self
                        .files
                        .get(self.current)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    source,
                })?;
                let mut used = 0;
                while batch.len() < max {
                    let Some(end) = memchr::memchr(b'\n', &buffer[used..]) else {
                        break;
                    };
                    batch.push(&buffer[used..used + end], now);
                    used += end + 1;
                }
                if used > 0 {
                    reader.consume(used);
                    self.offset += used as u64;
                    continue;
                }
            }
            // A line across the end of the buffer, or the end of the file.
            let Some(reader) = self.reader.as_mut() else {
                // No file at all: a follower stays, quiet; others end.
                if self.follow {
                    std::thread::sleep(FOLLOW_POLL);
                    return Ok(SourceStatus::More);
                }
                return Ok(SourceStatus::End);
            };
            self.line.clear();
            let read = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|source| ConnectorError::Io {
                    what: "cannot read input file",
                    path: self.path(),
                    source,
                })?;
            let complete = self.line.last() == Some(&b'\n');
            if read == 0 || (self.follow && self.at_last_file() && !complete) {
                if !self.at_last_file() {
                    self.current += 1;
                    self.open_current(0)?;
                    continue;
                }
                if !self.follow {
                    return Ok(SourceStatus::End);
                }
                if read > 0 {
                    // Half a line: read it again once it is complete.
                    self.open_current(self.offset)?;
                }
                if batch.is_empty() {
                    std::thread::sleep(FOLLOW_POLL);
                }
                return Ok(SourceStatus::More);
            }
            self.offset += read as u64;
            let payload = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            batch.push(payload, now);
        }
        Ok(SourceStatus::More)
    }

    /// The current file's index and the byte offset of the next line.
    fn position(&self) -> u64 {
        ((self.current as u64) << OFFSET_BITS) | self.offset
    }

    fn seek(&mut self, position: u64) -> Result<(), ConnectorError> {
        self.current = usize::try_from(position >> OFFSET_BITS).unwrap_or(usize::MAX);
        self.open_current(position & ((1 << OFFSET_BITS) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(batch: &RecordBatch) -> Vec<String> {
        batch
            .iter()
            .map(|r| String::from_utf8_lossy(r.payload).into_owned())
            .collect()
    }

    #[test]
    fn a_folder_is_split_over_subtasks_by_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["c.txt", "a.txt", "b.txt"] {
            std::fs::write(dir.path().join(name), format!("{name}\n")).expect("write");
        }
        let names = |subtask| {
            assigned_files(dir.path(), subtask, 2)
                .expect("lists")
                .iter()
                .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(0), ["a.txt", "c.txt"]);
        assert_eq!(names(1), ["b.txt"]);
        let mut source = FileSource::open(assigned_files(dir.path(), 0, 2).expect("lists"), false).expect("opens");
        let mut batch = RecordBatch::default();
        assert_eq!(source.next_batch(&mut batch, 10).expect("reads"), SourceStatus::End);
        assert_eq!(payloads(&batch), ["a.txt", "c.txt"]);
    }

    #[test]
    fn positions_resume_in_the_right_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), "1\n2\n").expect("write");
        std::fs::write(dir.path().join("b"), "3\n4\n").expect("write");
        let files = assigned_files(dir.path(), 0, 1).expect("lists");
        let mut source = FileSource::open(files.clone(), false).expect("opens");
        let mut batch = RecordBatch::default();
        source.next_batch(&mut batch, 3).expect("reads");
        assert_eq!(payloads(&batch), ["1", "2", "3"]);
        let position = source.position();
        let mut resumed = FileSource::open(files, false).expect("opens");
        resumed.seek(position).expect("seeks");
        let mut rest = RecordBatch::default();
        assert_eq!(resumed.next_batch(&mut rest, 10).expect("reads"), SourceStatus::End);
        assert_eq!(payloads(&rest), ["4"]);
    }

    #[test]
    fn a_follower_waits_for_complete_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, "1\n2").expect("write");
        let mut source = FileSource::open(vec![path.clone()], true).expect("opens");
        let mut batch = RecordBatch::default();
        assert_eq!(source.next_batch(&mut batch, 10).expect("reads"), SourceStatus::More);
        assert_eq!(payloads(&batch), ["1"], "the half line waits");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("opens");
        std::io::Write::write_all(&mut file, b"0\n3\n").expect("appends");
        let mut more = RecordBatch::default();
        assert_eq!(source.next_batch(&mut more, 10).expect("reads"), SourceStatus::More);
        assert_eq!(payloads(&more), ["20", "3"]);
        let mut quiet = FileSource::open(Vec::new(), true).expect("opens");
        assert_eq!(quiet.next_batch(&mut batch, 10).expect("reads"), SourceStatus::More);
    }
}
