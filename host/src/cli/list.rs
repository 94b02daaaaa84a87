//! `weir list`: the running jobs (id, name, uptime, last completed
//! checkpoint), from the registry; stale entries are removed.

use std::process::ExitCode;

use clap::Args;

use crate::control::client::Client;
use crate::control::registry::{self, JobEntry};

/// Arguments of `weir list`.
#[derive(Debug, Args)]
pub(super) struct ListArgs {}

pub(super) fn list(_args: ListArgs) -> anyhow::Result<ExitCode> {
    let jobs = registry::running(&registry::folder(), true)?;
    if jobs.is_empty() {
        println!("No running jobs.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<16}  {:<24}  {:>10}  LAST CHECKPOINT", "JOB ID", "NAME", "UPTIME");
    let now = crate::time::now_ms();
    for job in jobs {
        // A job that ends between the listing and this call shows `-`.
        let checkpoint = match last_checkpoint(&job) {
            Some(0) | None => "-".to_string(),
            Some(id) => id.to_string(),
        };
        let uptime = uptime((now - job.started_ms).max(0) / 1000);
        println!("{:<16}  {:<24}  {uptime:>10}  {checkpoint}", job.id, job.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// The id of the job's last completed checkpoint (0: none), from its
/// `/metrics`; `None` if it does not answer.
fn last_checkpoint(job: &JobEntry) -> Option<u64> {
    let metrics = Client::new(job).ok()?.get("/metrics").ok()?;
    metrics
        .lines()
        .find(|line| line.starts_with("weir_job_last_completed_checkpoint_id{"))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse::<f64>().ok())
        .map(|id| id as u64)
}

/// `1h02m03s`, `2m03s`, `3s`.
fn uptime(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}
