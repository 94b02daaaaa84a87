//! The control plane of running jobs: the job's HTTP endpoint ([`http`]),
//! which `weir list`, `weir savepoint`, `weir stop` and `weir upgrade` call
//! ([`client`]).
//!
//! Every `weir run` serves HTTP (`127.0.0.1`, any free port, unless told
//! otherwise) and registers its job in a registry folder
//! (`$WEIR_HOME/jobs`, `WEIR_HOME` defaulting to `~/.weir`): a JSON entry
//! `<id>.json` (id, name, pid, start time, the endpoint's address, scheme
//! and bearer token, and with HTTPS its certificate), mode 0600. The entry
//! is removed when the job ends; an entry whose endpoint no longer answers
//! (the process died) is stale: it is ignored, and removed by `weir list`.
//!
//! ```text
//! POST /jobs/{id}/savepoints               take a savepoint        (http_control)
//! POST /jobs/{id}/stop                     stop with a savepoint
//! POST /jobs/{id}/vertices/{uid}/upgrade   swap an operator's module
//! GET  /metrics, /jobs, /jobs/{id}         metrics and the REST API (http)
//! ```
//!
//! POST routes always need the token, and every route does when the
//! endpoint is bound to a non-loopback address ([`http_auth`]); HTTPS is
//! [`http_tls`]. What the commands do to the job is [`commands`].

pub(crate) mod client;
pub(crate) mod commands;
pub(crate) mod dashboard;
pub(crate) mod graph;
pub(crate) mod http;
pub(crate) mod http_auth;
pub(crate) mod http_control;
pub(crate) mod http_tls;
pub(crate) mod metrics_text;
pub(crate) mod registry;
pub(crate) mod rest;
pub(crate) mod upgrade;

/// Errors of the control API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// An I/O operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
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
    /// The job's endpoint could not be reached (or went away mid-answer).
    #[error("cannot reach job `{id}` at {url}: {source}")]
    Unreachable {
        /// The job id.
        id: String,
        /// The endpoint.
        url: String,
        /// The cause.
        source: Box<ureq::Error>,
    },
    /// The job's certificate, named in its registry entry, is not PEM.
    #[error("the job's certificate {path} cannot be read: {reason}")]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
