//! The CLI's side of the control API: one request, one answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use super::ControlError;
use super::registry::JobEntry;

/// Sends `request` (one line) to `job` and returns the text after `ok`.
pub(crate) fn call(job: &JobEntry, request: &str) -> Result<String, ControlError> {
    let io = |what| {
        let path = job.endpoint.clone();
        move |source| ControlError::Io { what, path, source }
    };
    let mut stream = UnixStream::connect(&job.endpoint).map_err(io("cannot connect to"))?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(io("cannot write to"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(io("cannot read from"))?;
    let answer = answer.trim_end_matches('\n');
    if let Some(text) = answer.strip_prefix("ok ") {
        Ok(text.to_string())
    } else if let Some(message) = answer.strip_prefix("error ") {
        Err(ControlError::Refused(message.to_string()))
    } else if answer.is_empty() {
        Err(ControlError::Refused(format!(
            "job `{}` ended before it answered",
            job.id
        )))
    } else {
        Err(ControlError::Protocol(answer.to_string()))
    }
}
