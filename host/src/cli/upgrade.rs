//! `weir upgrade JOB_ID --operator UID --module NEW.wasm`: swap the module of
//! one operator of a running job, with no record lost or duplicated.
//!
//! The job does it itself, in its `weir run` process: it stops with a
//! savepoint (sources stop at their savepoint positions, every
//! two-phase-commit sink commits the savepoint's transactions), swaps the
//! module of the operator, checks (and migrates) the state as a restore
//! with another module version does (migrated state becomes a savepoint of
//! the new module in `<checkpoint dir>/<job>/migrated/`, so nothing migrates
//! twice), and restores from the savepoint. The
//! job keeps its id. The command prints what runs now and the pause: from
//! the stop request until the new attempt's tasks start. A refused swap
//! prints the refusal and the job goes on with its old module, restored from
//! the same savepoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::savepoint::absolute;

use crate::checkpoint::hot_swap::{plan_schemas, prepare_restore};
use crate::checkpoint::resolve::operator_modules;
use crate::control::client::{Client, segment};
use crate::control::registry;
use crate::control::upgrade::{UpgradeRefused, UpgradeRequest};
use crate::plan::{JobPlan, VertexKind};
use crate::runtime::executor::{RestoreFrom, RunOptions};
use crate::wasm::WasmRuntime;

/// Arguments of `weir upgrade`.
#[derive(Debug, Args)]
pub(super) struct UpgradeArgs {
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
    let path = format!(
        "/jobs/{}/vertices/{}/upgrade",
        segment(&job.id),
        segment(&args.operator)
    );
    let body = serde_json::json!({ "module": module.display().to_string() });
    let answer = Client::new(&job)?.post(&path, &body)?;
    match answer["message"].as_str() {
        Some(message) => println!("{message}"),
        None => return Err(crate::control::ControlError::Protocol(answer.to_string()).into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The job ended for `request`: returns the plan to run next (with the new
/// module, or the old one if the swap is refused) and makes `options`
/// restore from the upgrade's savepoint. Answers the request.
pub(super) fn resume(plan: JobPlan, wasm: &WasmRuntime, request: UpgradeRequest, options: &mut RunOptions) -> JobPlan {
    let restore_from = |dir: PathBuf| {
        Some(RestoreFrom::Savepoint {
            dir,
            allow_non_restored_state: false,
        })
    };
    options.restore = restore_from(request.savepoint.clone());
    let resumed = options.api.as_ref().map(|c| Arc::clone(&c.resumed));
    if let Some(resumed) = &resumed
        && let Ok(mut resumed) = resumed.lock()
    {
        *resumed = None;
    }
    match swapped(&plan, wasm, &request) {
        Ok((next, module, restore)) => {
            options.restore = restore_from(restore);
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

/// The checks of an upgrade before the job stops for it, for
/// [`crate::control::upgrade::Upgrades::set_precheck`].
pub(super) fn precheck(plan: &JobPlan, wasm: &Arc<WasmRuntime>) -> crate::control::upgrade::Precheck {
    let plan = plan.clone();
    let wasm = Arc::clone(wasm);
    Box::new(move |uid, module| with_module(&plan, &wasm, uid, module).map(|_| ()))
}

/// `plan` with the module of operator `uid` swapped for the one in `path`.
fn with_module(
    plan: &JobPlan,
    wasm: &WasmRuntime,
    uid: &str,
    path: &Path,
) -> Result<(JobPlan, String), UpgradeRefused> {
    // The uid first: an unknown operator is refused whatever the module.
    let index = plan
        .vertices
        .iter()
        .position(|v| v.uid == uid)
        .ok_or_else(|| UpgradeRefused::NoOperator {
            job: plan.name.clone(),
            uid: uid.to_string(),
        })?;
    if !matches!(plan.vertices[index].kind, VertexKind::Operator(_)) {
        return Err(UpgradeRefused::NotAnOperator { uid: uid.to_string() });
    }
    let module = wasm.load(path)?;
    let mut next = plan.clone();
    let VertexKind::Operator(operator) = &mut next.vertices[index].kind else {
        return Err(UpgradeRefused::NotAnOperator { uid: uid.to_string() });
    };
    let name = format!("{} {}", module.info.name, module.info.version);
    operator
        .swap_module(&module)
        .map_err(|source| UpgradeRefused::Mismatch {
            module: name.clone(),
            source,
        })?;
    Ok((next, name))
}

/// `plan` with the module of operator `request.uid` swapped, after the
/// checks of a restore from the savepoint; also says what the module is and
/// which savepoint to restore (the upgrade's, or its migrated copy).
fn swapped(
    plan: &JobPlan,
    wasm: &WasmRuntime,
    request: &UpgradeRequest,
) -> Result<(JobPlan, String, PathBuf), UpgradeRefused> {
    let (next, module) = with_module(plan, wasm, &request.uid, &request.module)?;
    // The checks (and migrations) of the restore, before the job stops for
    // good: a refusal keeps the old module.
    let (savepoint, files) = crate::checkpoint::savepoint::load(&request.savepoint)?;
    let scratch = next.settings.checkpoint.as_ref().map_or_else(
        || std::env::temp_dir().join("weir-migrated"),
        |c| c.dir.join(&next.name).join("migrated"),
    );
    let (mut checkpoint, migrated) = prepare_restore(
        &next,
        wasm.engine(),
        &format!("savepoint {}", request.savepoint.display()),
        &savepoint,
        files,
        false,
        &scratch,
    )?;
    if checkpoint == savepoint.checkpoint {
        return Ok((next, module, request.savepoint.clone()));
    }
    // The migrated state as a savepoint of the new module, so that the
    // restore (and any restart before the next checkpoint) does not migrate
    // again.
    checkpoint.modules = operator_modules(&next, &plan_schemas(&next, wasm.engine()), None);
    let written = crate::checkpoint::savepoint::write(&checkpoint, &migrated, &scratch);
    // The migrated files now live (hard-linked) in the new savepoint.
    if let Some(dir) = checkpoint
        .files()
        .next()
        .and_then(|f| migrated.path(f).parent().map(Path::to_path_buf))
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok((next, module, written?))
}
