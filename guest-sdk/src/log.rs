//! Writing to the host's log.

use crate::__bindings::weir::udf::host;

/// Severity of a log message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging information.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the function handled.
    Warn,
    /// Something failed.
    Error,
}

/// Writes `message` to the host's log, tagged with the operator (one host
/// call: keep it out of per-record paths).
pub fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => host::LogLevel::Trace,
        LogLevel::Debug => host::LogLevel::Debug,
        LogLevel::Info => host::LogLevel::Info,
        LogLevel::Warn => host::LogLevel::Warn,
        LogLevel::Error => host::LogLevel::Error,
    };
    host::log(level, message);
}
