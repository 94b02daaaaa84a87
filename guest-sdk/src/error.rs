//! Record-level errors.

use std::fmt;

/// Why a function could not handle a record.
///
/// Returning `Err` for a record sends that record to the job's dead-letter
/// output with this reason; the job goes on with the next record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    reason: String,
}

/// The result of handling one record.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this reason, meant for the person reading dead letters.
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }

    /// The reason given for the error.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The reason, owned.
    pub fn into_reason(self) -> String {
        self.reason
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(reason: String) -> Self {
        Self::new(reason)
    }
}

impl From<&str> for Error {
    fn from(reason: &str) -> Self {
        Self::new(reason)
    }
}

/// Lets `write!` on a [`RecordWriter`](crate::RecordWriter) or
/// [`KeyWriter`](crate::KeyWriter) use `?` (writing to them never fails).
impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::new(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_reason() {
        let error = Error::from("bad record");
        assert_eq!(error.reason(), "bad record");
        assert_eq!(error.to_string(), "bad record");
        assert_eq!(Error::from(String::from("x")), Error::new("x"));
    }
}
