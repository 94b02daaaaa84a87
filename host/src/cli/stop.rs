//! `weir stop [--savepoint DIR] JOB_ID`: stop a running job with a final
//! savepoint (sources stop, every two-phase-commit sink commits it, the job
//! ends) and print the savepoint's path.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::savepoint::absolute;
use crate::control::{client, registry};

/// Arguments of `weir stop`.
#[derive(Debug, Args)]
pub(super) struct StopArgs {
    /// Folder to create the savepoint in (default:
    /// `<checkpoint dir>/<job>/savepoints`).
    #[arg(long, value_name = "DIR")]
    savepoint: Option<PathBuf>,
    /// The job, as `weir list` shows it.
    job_id: String,
}

pub(super) fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    let job = registry::find(&registry::folder(), &args.job_id)?;
    let request = match &args.savepoint {
        Some(dir) => format!("stop {}", absolute(dir)?.display()),
        None => "stop".to_string(),
    };
    println!("{}", client::call(&job, &request)?);
    Ok(ExitCode::SUCCESS)
}
