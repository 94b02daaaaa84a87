//! The local control API of running jobs, which `weir list`, `weir savepoint`
//! and `weir stop` talk to.
//!
//! Every `weir run` registers its job in a registry folder
//! (`$WEIR_HOME/jobs`, `WEIR_HOME` defaulting to `~/.weir`): a JSON entry
//! `<id>.json` (id, name, pid, endpoint, start time) and a Unix domain socket
//! `<id>.sock`, the endpoint. The protocol is one request line and one
//! response line per connection:
//!
//! ```text
//! status                 -> ok <last completed checkpoint id, 0 for none>
//! savepoint [DIR]        -> ok <savepoint path>
//! stop [DIR]             -> ok <savepoint path>     (the job then ends)
//! upgrade UID MODULE     -> ok <what runs now, and the pause>
//! (anything failing)     -> error <message>
//! ```
//!
//! The entry and the socket are removed when the job ends; an entry whose
//! socket no longer answers (the process died) is stale: it is ignored, and
//! removed by `weir list`.
//!
//! With `weir run --http PORT` the job also serves Prometheus metrics and a
//! REST API over HTTP on `127.0.0.1` ([`http`]); its address is written into
//! the registry entry.

pub(crate) mod client;
pub(crate) mod dashboard;
pub(crate) mod graph;
pub(crate) mod http;
pub(crate) mod metrics_text;
pub(crate) mod registry;
pub(crate) mod rest;
pub(crate) mod server;
pub(crate) mod upgrade;

/// Errors of the control API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// An I/O operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or socket.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No running job has this id.
    #[error("no running job has the id `{0}` (see `weir list`)")]
    UnknownJob(String),
    /// Several running jobs start with this id.
    #[error("`{0}` is the beginning of several job ids; give more of it")]
    AmbiguousJob(String),
    /// The job answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The job's answer could not be understood.
    #[error("unexpected answer from the job: {0}")]
    Protocol(String),
}
