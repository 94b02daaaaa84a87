//! `weir savepoint JOB_ID [DIR]`: take a savepoint of a running job and
//! print its path; `weir savepoint dispose DIR`: delete a savepoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use crate::checkpoint::savepoint;
use crate::control::client::{Client, segment};
use crate::control::registry::{self, JobEntry};

/// Arguments of `weir savepoint`.
#[derive(Debug, Args)]
pub(super) struct SavepointArgs {
    /// `JOB_ID [DIR]`: the job (as `weir list` shows it) and the folder to
    /// create the savepoint in (default: `<checkpoint dir>/<job>/savepoints`);
    /// or `dispose DIR`: the savepoint folder to delete.
    #[arg(value_name = "JOB_ID [DIR] | dispose DIR", num_args = 1..=2, required = true)]
    args: Vec<String>,
}

pub(super) fn savepoint(args: SavepointArgs) -> anyhow::Result<ExitCode> {
    match args.args.as_slice() {
        [command, dir] if command == "dispose" => {
            savepoint::dispose(Path::new(dir))?;
            println!("disposed of savepoint {dir}");
        }
        [command] if command == "dispose" => bail!("`weir savepoint dispose` needs the savepoint folder"),
        [id, rest @ ..] => {
            let job = registry::find(&registry::folder(), id)?;
            let dir = rest.first().map(PathBuf::from);
            println!("{}", take(&job, "savepoints", dir.as_deref())?);
        }
        [] => bail!("`weir savepoint` needs a job id"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks `job` for a savepoint in `dir` (`route`: `savepoints`, or `stop`
/// to stop with it) and returns its path.
pub(super) fn take(job: &JobEntry, route: &str, dir: Option<&Path>) -> anyhow::Result<String> {
    let body = match dir {
        Some(dir) => serde_json::json!({ "target_directory": absolute(dir)?.display().to_string() }),
        None => serde_json::json!({}),
    };
    let answer = Client::new(job)?.post(&format!("/jobs/{}/{route}", segment(&job.id)), &body)?;
    match answer["path"].as_str() {
        Some(path) => Ok(path.to_string()),
        None => Err(crate::control::ControlError::Protocol(answer.to_string()).into()),
    }
}

/// `dir` made absolute (the job may run in another folder).
pub(super) fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(dir)?)
}
