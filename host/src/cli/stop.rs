//! `weir stop [--savepoint DIR] JOB_ID`: stop a running job with a final
//! savepoint (sources stop, every two-phase-commit sink commits it, the job
//! ends) and print the savepoint's path.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::control::registry;

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
    println!("{}", super::savepoint::take(&job, "stop", args.savepoint.as_deref())?);
    Ok(ExitCode::SUCCESS)
}
