//! `weir run JOB`: run a job to completion, with progress and a summary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::endpoint::{Endpoint, HttpArgs};
use super::{JobArgs, wasm_runtime};
use crate::control::commands::JobControl;
use crate::control::registry;
use crate::job::load_job;
use crate::metrics::live::LiveMetrics;
use crate::metrics::{VertexRole, thousands};
use crate::runtime::executor::{JobSummary, RestoreFrom, RunOptions, execute};

/// Arguments of `weir run`.
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Print no progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Start from a checkpoint: `latest`, or a checkpoint folder
    /// (`checkpoints/<job>/chk-000042`).
    #[arg(long, value_name = "latest|DIR")]
    restore: Option<String>,
    /// Start from a savepoint folder; state is matched by operator uid.
    #[arg(long, value_name = "DIR", conflicts_with = "restore")]
    from_savepoint: Option<std::path::PathBuf>,
    /// With `--from-savepoint`: skip the state of operator uids the job does
    /// not have instead of refusing the savepoint.
    #[arg(long, requires = "from_savepoint")]
    allow_non_restored_state: bool,
    /// When a bounded input has been read to its end (and every window and
    /// timer has fired), write the final checkpoint as a savepoint into
    /// this folder (Flink's stop-with-savepoint `--drain`).
    #[arg(long, value_name = "DIR")]
    savepoint_at_end: Option<std::path::PathBuf>,
    #[command(flatten)]
    http: HttpArgs,
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let wasm = wasm_runtime()?;
    let plan = match load_job(&args.job.job, &args.job.load_options(), &wasm) {
        Ok(plan) => plan,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.savepoint_at_end.is_some() && plan.settings.checkpoint.is_none() {
        eprintln!(
            "error: --savepoint-at-end needs checkpoints, but job `{}` has no [checkpoint] table",
            plan.name
        );
        return Ok(ExitCode::FAILURE);
    }
    let started = std::time::Instant::now();
    let mut restore = args.restore.map(|r| match r.as_str() {
        "latest" => RestoreFrom::Latest,
        dir => RestoreFrom::Checkpoint(dir.into()),
    });
    if let Some(dir) = args.from_savepoint {
        restore = Some(RestoreFrom::Savepoint {
            dir,
            allow_non_restored_state: args.allow_non_restored_state,
        });
    }
    // The HTTP endpoint: metrics, REST API and the control plane of
    // `weir list`, `weir savepoint`, `weir stop` and `weir upgrade`.
    let id = registry::new_id(&plan.name);
    let (control, api) = JobControl::new(&id, &plan.name, plan.settings.checkpoint.is_some());
    let live = Arc::new(LiveMetrics::default());
    let last_completed = Arc::clone(&api.last_completed);
    let endpoint = match Endpoint::start(
        &args.http,
        &plan,
        &control,
        last_completed,
        Arc::clone(&live),
        args.quiet,
    ) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut options = RunOptions {
        progress: (!args.quiet).then_some(Duration::from_secs(1)),
        restore,
        api: Some(api),
        live: Some(live),
    };
    let mut plan = plan;
    // The summary covers every part of the run: the attempts before and
    // after each upgrade.
    let mut total: Option<JobSummary> = None;
    let mut upgrades = 0u32;
    let result = loop {
        control.upgrades().set_precheck(super::upgrade::precheck(&plan, &wasm));
        let result = execute(&plan, &wasm, &options).map(|part| merge(total.take(), part));
        // `weir upgrade` stopped the job: go on with the swapped module.
        match result {
            Ok(summary) => match control.upgrades().next() {
                Some(request) => {
                    total = Some(summary);
                    upgrades += 1;
                    plan = super::upgrade::resume(plan, &wasm, request, &mut options);
                }
                None => break Ok(summary),
            },
            result => break result,
        }
    };
    drop(options);
    drop(endpoint);
    match result {
        Ok(mut summary) => {
            summary.elapsed = started.elapsed();
            print_summary(&summary, upgrades);
            if let (Some(dir), Some(settings)) = (&args.savepoint_at_end, &plan.settings.checkpoint) {
                let written = crate::storage::files::CheckpointStorage::open(&settings.dir, &plan.name)
                    .map_err(crate::checkpoint::savepoint::SavepointError::from)
                    .and_then(|storage| crate::checkpoint::savepoint::write_final(&storage, dir));
                match written {
                    Ok(path) => eprintln!("weir: savepoint written to {}", path.display()),
                    Err(error) => {
                        eprintln!("error: {error}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: job `{}` failed: {error}", plan.name);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The summary of a run so far (`total`) followed by `part`: counters add up.
fn merge(total: Option<JobSummary>, mut part: JobSummary) -> JobSummary {
    let Some(total) = total else { return part };
    for vertex in &mut part.vertices {
        if let Some(before) = total.vertices.iter().find(|v| v.uid == vertex.uid) {
            vertex.records_in += before.records_in;
            vertex.records_out += before.records_out;
            vertex.late += before.late;
        }
    }
    part.restarts += total.restarts;
    part.dead_letters += total.dead_letters;
    part
}

fn print_summary(summary: &JobSummary, upgrades: u32) {
    eprintln!(
        "weir: job `{}` finished in {:.2} s",
        summary.name,
        summary.elapsed.as_secs_f64()
    );
    for vertex in &summary.vertices {
        let (role, counts) = match vertex.role {
            VertexRole::Source => ("source", format!("out {}", thousands(vertex.records_out))),
            VertexRole::Operator => (
                "operator",
                format!(
                    "in {}  out {}",
                    thousands(vertex.records_in),
                    thousands(vertex.records_out)
                ),
            ),
            VertexRole::Sink => ("sink", format!("in {}", thousands(vertex.records_in))),
        };
        let counts = if vertex.late > 0 {
            format!("{counts}  late {}", thousands(vertex.late))
        } else {
            counts
        };
        eprintln!("  {role:<8} {:<20} {counts}", vertex.uid);
    }
    if summary.restarts > 0 {
        eprintln!("  restarts: {}", summary.restarts);
    }
    if upgrades > 0 {
        eprintln!("  upgrades: {upgrades}");
    }
    if summary.dead_letters > 0 {
        eprintln!(
            "  dead letters: {} (in {})",
            thousands(summary.dead_letters),
            summary.dead_letter_path.display()
        );
    } else {
        eprintln!("  dead letters: 0");
    }
}
