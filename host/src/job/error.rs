//! Errors in a job file, located by file, line and field.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An error found in a job file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobFileError {
    /// The job file.
    pub file: PathBuf,
    /// 1-based line, if the error has a location.
    pub line: Option<usize>,
    /// The field at fault (`operator "count" → module`), if known.
    pub field: Option<String>,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for JobFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobFileError {}

/// Every error found in one job file (validation reports them all at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobFileErrors(pub Vec<JobFileError>);

impl fmt::Display for JobFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JobFileErrors {}

/// Turns byte offsets of a job file into line numbers.
#[derive(Debug, Clone)]
pub(crate) struct Locator {
    file: PathBuf,
    line_starts: Vec<usize>,
}

impl Locator {
    /// Indexes the lines of `text`, the contents of `file`.
    pub(crate) fn new(file: &Path, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file: file.to_path_buf(),
            line_starts,
        }
    }

    /// The job file.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// The 1-based line of byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// An error at `span`, about `field`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> JobFileError {
        JobFileError {
            file: self.file.clone(),
            line: Some(self.line_of(span.start)),
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// An error about the whole file.
    pub(crate) fn file_error(&self, message: impl Into<String>) -> JobFileError {
        JobFileError {
            file: self.file.clone(),
            line: None,
            field: None,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines() {
        let locator = Locator::new(Path::new("job.toml"), "a\nbc\n\nd");
        assert_eq!(locator.line_of(0), 1);
        assert_eq!(locator.line_of(2), 2);
        assert_eq!(locator.line_of(3), 2);
        assert_eq!(locator.line_of(5), 3);
        assert_eq!(locator.line_of(6), 4);
        let error = locator.error(2..3, "operator \"x\" → module", "file not found");
        assert_eq!(error.to_string(), "job.toml:2: operator \"x\" → module: file not found");
    }
}
