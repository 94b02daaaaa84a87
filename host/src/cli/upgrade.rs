//! `weir upgrade JOB_ID --operator UID --module NEW.wasm`: swap the module of
//! one operator of a running job, with no record lost or duplicated.
//!
//! The job does it itself, in its `weir run` process: it stops with a
//! savepoint (sources stop at their savepoint positions, every
//! two-phase-commit sink commits the savepoint's transactions), swaps the
//! module of the operator, checks (and migrates) the state as a restore
//! with another module version does, and restores from the savepoint. The
//! job keeps its id. The command prints what runs now and the pause: from
//! the stop request until the new attempt's tasks start. A refused swap
//! prints the refusal and the job goes on with its old module, restored from
//! the same savepoint.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::savepoint::absolute;
use crate::checkpoint::hot_swap::prepare_restore;
use crate::control::upgrade::UpgradeRequest;
use crate::control::{client, registry};
use crate::job::plan::{JobPlan, VertexKind};
use crate::runtime::executor::{RestoreFrom, RunOptions};
use crate::wasm::WasmRuntime;

/// Arguments of `weir upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The job, as `weir list` shows it.
    job_id: String,
    /// The uid of the operator whose module changes.
    #[arg(long, value_name = "UID")]
    operator: String,
    /// The new module: a component file.
    #[arg(long, value_name = "FILE")]
    module: PathBuf,
}

pub(super) fn upgrade(args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let job = registry::find(&registry::folder(), &args.job_id)?;
    let module = absolute(&args.module)?;
    let request = format!("upgrade {} {}", args.operator, module.display());
    println!("{}", client::call(&job, &request)?);
    Ok(ExitCode::SUCCESS)
}

/// The job ended for `request`: returns the plan to run next (with the new
/// module, or the old one if the swap is refused) and makes `options`
/// restore from the upgrade's savepoint. Answers the request.
pub(super) fn resume(plan: JobPlan, wasm: &WasmRuntime, request: UpgradeRequest, options: &mut RunOptions) -> JobPlan {
    options.restore = Some(RestoreFrom::Savepoint {
        dir: request.savepoint.clone(),
        allow_non_restored_state: false,
    });
    let resumed = options.control.as_ref().map(|c| Arc::clone(&c.resumed));
    if let Some(resumed) = &resumed
        && let Ok(mut resumed) = resumed.lock()
    {
        *resumed = None;
    }
    match swapped(&plan, wasm, &request) {
        Ok((next, module)) => {
            let savepoint = request.savepoint.display().to_string();
            let uid = request.uid.clone();
            let answer = move |pause: Duration| {
                format!(
                    "operator `{uid}` now runs {module}, restored from {savepoint}; paused {} ms",
                    pause.as_millis()
                )
            };
            let _ = std::thread::Builder::new().name("upgrade".into()).spawn(move || {
                // Answers once the new attempt runs (or gives up after long).
                let deadline = Instant::now() + Duration::from_secs(600);
                while Instant::now() < deadline {
                    let started = resumed.as_ref().and_then(|r| r.lock().ok().and_then(|r| *r));
                    if let Some(started) = started {
                        let _ = request
                            .reply
                            .send(Ok(answer(started.duration_since(request.requested))));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                let _ = request.reply.send(Err("the upgraded job did not start".into()));
            });
            next
        }
        Err(reason) => {
            tracing::warn!("upgrade refused: {reason}");
            let _ = request.reply.send(Err(format!(
                "upgrade refused: {reason}; the job goes on with its old module, restored from {}",
                request.savepoint.display()
            )));
            plan
        }
    }
}

/// `plan` with the module of operator `request.uid` swapped, after the
/// checks of a restore from the savepoint; also says what the module is.
fn swapped(plan: &JobPlan, wasm: &WasmRuntime, request: &UpgradeRequest) -> Result<(JobPlan, String), String> {
    let module = wasm.load(&request.module).map_err(|e| e.to_string())?;
    let mut next = plan.clone();
    let vertex = next
        .vertices
        .iter_mut()
        .find(|v| v.uid == request.uid)
        .ok_or_else(|| format!("job `{}` has no operator `{}`", plan.name, request.uid))?;
    let VertexKind::Operator(function) = &mut vertex.kind else {
        return Err(format!("`{}` is not an operator: it runs no module", request.uid));
    };
    let info = module.info.function(&function.function).ok_or_else(|| {
        format!(
            "module {} has no function `{}`",
            module.display_name(),
            function.function
        )
    })?;
    if info.kind != function.kind {
        return Err(format!(
            "function `{}` of module {} is a {} function, not a {} function",
            function.function,
            module.display_name(),
            info.kind,
            function.kind
        ));
    }
    function.module = Arc::clone(&module);
    // The checks (and migrations) of the restore, before the job stops for
    // good: a refusal keeps the old module.
    let (savepoint, files) = crate::checkpoint::savepoint::load(&request.savepoint).map_err(|e| e.to_string())?;
    let scratch = std::env::temp_dir().join(format!("weir-upgrade-{}", std::process::id()));
    let checked = prepare_restore(
        &next,
        wasm.engine(),
        &request.savepoint,
        &savepoint,
        files,
        false,
        &scratch,
    );
    let _ = std::fs::remove_dir_all(&scratch);
    checked.map_err(|e| e.to_string())?;
    Ok((next, format!("{} {}", module.info.name, module.info.version)))
}
