//! Turns a [`JobPlan`] into threads and channels, runs it to the end —
//! restarting it from its latest checkpoint after a failure, as its restart
//! strategy allows — and reports what it did.
//!
//! An attempt wires the graph (`super::wiring`), starts the checkpoint
//! coordinator when checkpointing is on, and runs one thread per subtask
//! (`super::subtask`), which builds its operator (`super::build`),
//! source or sink (`super::connectors`) and restored state
//! (`super::state_backends`). Every start from saved state goes through
//! [`crate::checkpoint::resolve`].
//!
//! Failure: when a subtask fails, the attempt is cancelled: sources stop,
//! and every other subtask stops as soon as a channel it uses is closed. The
//! first failure is the attempt's error; the cancellations it caused are not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use super::coordinator_link::CoordinatorLink;
use crate::checkpoint::coordinator::Coordinator;
use crate::checkpoint::hot_swap::{Schemas, plan_schemas};
use crate::checkpoint::resolve::{Resolved, find, operator_modules, resolve};
use crate::checkpoint::savepoint::SavepointSettings;
use crate::exchange::TaskError;
use crate::exchange::dead_letter::DeadLetters;
use crate::metrics::exceptions::ExceptionRecord;
use crate::metrics::{VertexMetrics, VertexRole, progress};
use crate::plan::{JobPlan, VertexKind};
use crate::storage::TaskId;
use crate::storage::files::{CheckpointStorage, FileStore};
use crate::storage::manifest::Manifest;
use crate::wasm::WasmRuntime;

use super::subtask::Subtask;
use super::wiring::{CheckpointChannels, all_tasks, wire};

pub(crate) use crate::checkpoint::resolve::RestoreFrom;

/// How to run a job.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    /// Print a progress line to stderr this often (`None`: never).
    pub progress: Option<Duration>,
    /// Start from a checkpoint.
    pub restore: Option<RestoreFrom>,
    /// Savepoint requests from the control API (needs checkpointing).
    pub api: Option<crate::checkpoint::savepoint::ApiHandle>,
    /// Where to publish the counters for the HTTP endpoint, if it runs.
    pub live: Option<Arc<crate::metrics::live::LiveMetrics>>,
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub(crate) struct JobSummary {
    /// The job's name.
    pub name: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Counters of each vertex, in plan order (over every attempt).
    pub vertices: Vec<VertexSummary>,
    /// Records sent to the dead-letter file.
    pub dead_letters: u64,
    /// The dead-letter file.
    pub dead_letter_path: PathBuf,
    /// Restarts after failures.
    pub restarts: u32,
}

/// Counters of one vertex.
#[derive(Debug, Clone)]
pub(crate) struct VertexSummary {
    /// The vertex's uid.
    pub uid: String,
    /// Its role.
    pub role: VertexRole,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Records too late for every window.
    pub late: u64,
}

/// What lives across the attempts of one run.
pub(super) struct Shared<'a> {
    pub(super) engine: &'a wasmtime::Engine,
    pub(super) metrics: Vec<Arc<VertexMetrics>>,
    pub(super) dead_letters: Arc<DeadLetters>,
    pub(super) storage: Option<CheckpointStorage>,
    pub(super) savepoints: Option<SavepointSettings>,
    /// The counters, checkpoint history and failures the HTTP endpoint reads.
    pub(super) live: Option<Arc<crate::metrics::live::LiveMetrics>>,
}

/// A restore point that does not fit the job fails it, cause kept.
impl From<crate::checkpoint::resolve::ResolveError> for TaskError {
    fn from(error: crate::checkpoint::resolve::ResolveError) -> Self {
        Self::Checkpoint(Box::new(error))
    }
}

/// Runs `plan` to completion, restarting after failures as its restart
/// strategy allows. Every start from saved state — the first, from
/// `options.restore`, and every restart — goes through
/// [`crate::checkpoint::resolve`], which decides the modules that run.
pub(crate) fn execute(plan: &JobPlan, wasm: &WasmRuntime, options: &RunOptions) -> Result<JobSummary, TaskError> {
    let _span = tracing::info_span!("job", job = %plan.name).entered();
    let started = Instant::now();
    let engine = wasm.engine();
    let storage = match &plan.settings.checkpoint {
        Some(settings) => Some(CheckpointStorage::open(&settings.dir, &plan.name)?),
        None => None,
    };
    let scratch = plan.settings.checkpoint.as_ref().map_or_else(
        || std::env::temp_dir().join("weir-migrated"),
        |c| c.dir.join(&plan.name).join("migrated"),
    );
    let point = match (&options.restore, &storage) {
        (None, _) => None,
        (Some(RestoreFrom::Latest | RestoreFrom::Checkpoint(_)), None) => {
            return Err(TaskError::NoCheckpointTable);
        }
        (Some(from), storage) => {
            let point = find(from, storage.as_ref())?;
            if let (None, Some(storage)) = (&point, storage) {
                tracing::warn!(
                    "no complete checkpoint in {}; starting from the beginning",
                    storage.root().display()
                );
            }
            point
        }
    };
    let fresh = || Resolved {
        plan: plan.clone(),
        restore: None,
    };
    let mut current = match point {
        Some(point) => resolve(plan, wasm, point, &scratch)?,
        None => fresh(),
    };
    if let Some((manifest, _)) = &current.restore {
        check_source_parallelism(&current.plan, manifest)?;
    }
    let metrics: Vec<Arc<VertexMetrics>> = plan
        .vertices
        .iter()
        .map(|v| {
            let role = match v.kind {
                VertexKind::Source(_) => VertexRole::Source,
                VertexKind::Operator(_) => VertexRole::Operator,
                VertexKind::Sink(_) => VertexRole::Sink,
            };
            Arc::new(VertexMetrics::new(&v.uid, role, v.parallelism))
        })
        .collect();
    let shared = Shared {
        engine,
        metrics,
        dead_letters: Arc::new(DeadLetters::appending(
            &plan.settings.dead_letter,
            options.restore.is_some(),
        )),
        savepoints: match (&options.api, &plan.settings.checkpoint) {
            (Some(api), Some(settings)) => Some(SavepointSettings {
                api: api.clone(),
                default_dir: settings.dir.join(&plan.name).join("savepoints"),
            }),
            _ => None,
        },
        storage,
        live: options.live.clone(),
    };
    if let Some(live) = &options.live {
        let dead_letters = Arc::clone(&shared.dead_letters);
        live.publish(&shared.metrics, Arc::new(move || dead_letters.count()));
    }
    let stop_progress = Arc::new(AtomicBool::new(false));
    let reporter = options.progress.map(|interval| {
        let dead_letters = Arc::clone(&shared.dead_letters);
        progress::report(
            shared.metrics.clone(),
            move || dead_letters.count(),
            Arc::clone(&stop_progress),
            interval,
        )
    });

    // A restart goes back to where the run started until a later
    // checkpoint completes.
    let initial = current.clone();
    let mut restarts = 0u32;
    let mut schemas: Option<(Vec<String>, Schemas)> = None;
    let result = loop {
        if let Some((manifest, _)) = &current.restore {
            tracing::info!("restoring job `{}` from checkpoint {}", plan.name, manifest.id);
        }
        // Probing the schemas starts every keyed function once: only when
        // the modules changed (a restart usually runs the same ones).
        let digests = module_digests(&current.plan);
        if shared.storage.is_some() && schemas.as_ref().is_none_or(|(of, _)| *of != digests) {
            schemas = Some((digests, plan_schemas(&current.plan, engine)));
        }
        let empty = Schemas::default();
        let schemas = schemas.as_ref().map_or(&empty, |(_, schemas)| schemas);
        let restore = current.restore.as_ref();
        match run_attempt(
            &shared,
            &current.plan,
            schemas,
            restore.map(|(m, _)| m),
            restore.map(|(_, f)| f),
            restarts,
        ) {
            Ok(()) => break Ok(()),
            Err(error) => {
                let delay = if error.is_permanent() {
                    None
                } else {
                    plan.settings.restart.delay_before(restarts + 1)
                };
                if let Some(live) = &options.live {
                    live.exceptions()
                        .record(exception_record(&error, restarts, delay.is_some()));
                }
                if error.is_permanent() {
                    break Err(error);
                }
                restarts += 1;
                if let Some(live) = &options.live {
                    live.add_restart();
                }
                let Some(delay) = delay else {
                    break Err(error);
                };
                let latest = match &shared.storage {
                    Some(storage) => find(&RestoreFrom::Latest, Some(storage))?,
                    None => None,
                };
                let initial_id = initial.restore.as_ref().map(|(m, _)| m.id);
                current = match latest {
                    Some(point) if initial_id.is_none_or(|id| point.manifest.id > id) => {
                        resolve(plan, wasm, point, &scratch)?
                    }
                    _ => initial.clone(),
                };
                let from = current
                    .restore
                    .as_ref()
                    .map_or("the beginning".to_string(), |(m, _)| format!("checkpoint {}", m.id));
                tracing::warn!(
                    "job `{}` failed: {error}; restarting from {from} in {} ms (restart {restarts} of {})",
                    plan.name,
                    delay.as_millis(),
                    plan.settings.restart.attempts()
                );
                std::thread::sleep(delay);
            }
        }
    };
    stop_progress.store(true, Ordering::Relaxed);
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    shared.dead_letters.flush()?;
    result?;
    Ok(JobSummary {
        name: plan.name.clone(),
        elapsed: started.elapsed(),
        vertices: shared
            .metrics
            .iter()
            .map(|m| VertexSummary {
                uid: m.uid.clone(),
                role: m.role,
                records_in: m.records_in(),
                records_out: m.records_out(),
                late: m.late(),
            })
            .collect(),
        dead_letters: shared.dead_letters.count(),
        dead_letter_path: plan.settings.dead_letter.clone(),
        restarts,
    })
}

/// What the exception log keeps of `error`, which ended attempt `attempt`.
fn exception_record(error: &TaskError, attempt: u32, restarted: bool) -> ExceptionRecord {
    let blame = error.blame();
    ExceptionRecord {
        timestamp: crate::time::now_ms(),
        attempt,
        exception: error.to_string(),
        operator: blame.operator,
        module: blame.module,
        position: blame.position,
        cause: blame.cause,
        restarted,
    }
}

/// The digest of every operator's module, in plan order.
fn module_digests(plan: &JobPlan) -> Vec<String> {
    plan.vertices
        .iter()
        .filter_map(|v| match &v.kind {
            VertexKind::Operator(operator) => Some(operator.function().module.digest.clone()),
            _ => None,
        })
        .collect()
}

/// Refuses, before anything starts, a restore that changes the parallelism
/// of a source that cannot be rescaled (one without splits: file sources).
fn check_source_parallelism(plan: &JobPlan, manifest: &Manifest) -> Result<(), TaskError> {
    for vertex in &plan.vertices {
        let VertexKind::Source(_) = vertex.kind else { continue };
        let old: Vec<_> = manifest.tasks_of(&vertex.uid).collect();
        let Some(first) = old.first() else { continue };
        if first.parallelism == vertex.parallelism || old.iter().all(|t| !t.source_splits.is_empty()) {
            continue;
        }
        return Err(TaskError::Restore {
            vertex: vertex.uid.clone(),
            reason: format!(
                "it was checkpointed with parallelism {} and now has {}; a file source cannot be rescaled (its positions are per subtask): keep its parallelism at {} and rescale the operators behind it",
                first.parallelism, vertex.parallelism, first.parallelism
            ),
        });
    }
    Ok(())
}

/// Runs every subtask once, from `restore` if given.
fn run_attempt(
    shared: &Shared<'_>,
    plan: &JobPlan,
    schemas: &Schemas,
    restore: Option<&Manifest>,
    restore_files: Option<&FileStore>,
    attempt: u32,
) -> Result<(), TaskError> {
    let (mut outputs, mut inputs) = wire(plan);
    let all_tasks = all_tasks(plan);
    let mut channels = match (&plan.settings.checkpoint, &shared.storage) {
        (Some(settings), Some(storage)) => Some(CheckpointChannels::new(settings, storage, &all_tasks)),
        _ => None,
    };

    let cancel = Arc::new(AtomicBool::new(false));
    let failures: Mutex<Vec<TaskError>> = Mutex::new(Vec::new());
    let fail = |error: TaskError| {
        cancel.store(true, Ordering::Relaxed);
        if !matches!(error, TaskError::Cancelled) {
            tracing::debug!("subtask failed: {error}");
            if let Ok(mut failures) = failures.lock() {
                failures.push(error);
            }
        }
    };

    if let Some(settings) = &shared.savepoints
        && let Ok(mut resumed) = settings.api.resumed.lock()
    {
        *resumed = Some(Instant::now());
    }
    std::thread::scope(|scope| {
        if let Some(plane) = &mut channels {
            // Nothing is in flight between attempts: drop what failed checkpoints left.
            if let Err(error) = plane.storage.sweep_orphans() {
                tracing::warn!("cannot clean the checkpoint folder: {error}");
            }
            let last = plane
                .storage
                .completed()
                .ok()
                .and_then(|ids| ids.last().copied())
                .map_or(0, |id| id.0);
            let restored = restore.map_or(0, |m| m.id.0);
            let coordinator = Coordinator {
                settings: plane.settings.clone(),
                storage: plane.storage.clone(),
                job: plan.name.clone(),
                max_parallelism: plan.settings.max_parallelism,
                tasks: all_tasks.clone(),
                to_tasks: std::mem::take(&mut plane.to_tasks),
                sources: plan
                    .vertices
                    .iter()
                    .filter(|v| matches!(v.kind, VertexKind::Source(_)))
                    .flat_map(|v| {
                        (0..v.parallelism).map(move |subtask| TaskId {
                            uid: v.uid.clone(),
                            subtask,
                        })
                    })
                    .collect(),
                next_id: last.max(restored) + 1,
                finished: HashMap::new(),
                live: shared.live.clone(),
                savepoints: shared.savepoints.clone(),
                // After the sweep: the module copies stay with every checkpoint.
                modules: operator_modules(plan, schemas, Some(plane.storage.files())),
            };
            let (_, inbox) = unbounded();
            let inbox = std::mem::replace(&mut plane.inbox, inbox);
            let fail = &fail;
            scope.spawn(move || {
                let _span = tracing::info_span!("coordinator", job = %coordinator.job).entered();
                if let Err(error) = coordinator.run(inbox) {
                    fail(TaskError::Checkpoint(Box::new(error)));
                }
            });
        }
        for vertex in &plan.vertices {
            let subtask_outputs = std::mem::take(&mut outputs[vertex.index]);
            let subtask_inputs = std::mem::take(&mut inputs[vertex.index]);
            for (subtask, (wiring, receivers)) in subtask_outputs.into_iter().zip(subtask_inputs).enumerate() {
                let task_id = TaskId {
                    uid: vertex.uid.clone(),
                    subtask: subtask as u32,
                };
                let task_link = channels.as_mut().and_then(|plane| {
                    Some(CoordinatorLink {
                        task: task_id.clone(),
                        parallelism: vertex.parallelism,
                        to_coordinator: plane.to_coordinator.clone(),
                        from_coordinator: plane.from_coordinator.remove(&task_id)?,
                        files: plane.storage.files().clone(),
                        mode: plane.settings.mode,
                        max_parallelism: plan.settings.max_parallelism,
                        writers: std::cell::RefCell::new(Vec::new()),
                        cancel: Arc::clone(&cancel),
                    })
                });
                let task = Subtask {
                    shared,
                    plan,
                    vertex,
                    subtask: subtask as u32,
                    attempt,
                    restore,
                    restore_files,
                    link: task_link,
                    cancel: &cancel,
                };
                let fail = &fail;
                let name = format!("{}#{subtask}", vertex.uid);
                let spawned = std::thread::Builder::new().name(name).spawn_scoped(scope, move || {
                    // Every line the subtask logs names its job, uid and index.
                    let _span = tracing::info_span!(
                        "subtask",
                        job = %task.plan.name,
                        uid = %task.vertex.uid,
                        subtask = task.subtask
                    )
                    .entered();
                    tracing::debug!("subtask started (attempt {})", task.attempt);
                    match task.run(wiring, receivers) {
                        Ok(()) => tracing::debug!("subtask finished"),
                        Err(error) => fail(error),
                    }
                });
                if let Err(e) = spawned {
                    fail(TaskError::Connector {
                        vertex: vertex.uid.clone(),
                        source: crate::connectors::ConnectorError::Io {
                            what: "cannot start a thread for",
                            path: vertex.uid.clone(),
                            source: e,
                        },
                    });
                }
            }
        }
        // Only subtasks (and their snapshot threads) hold the coordinator's
        // inbox from here on: it stops when they are all gone.
        drop(channels.take());
    });

    let mut failures = failures.into_inner().unwrap_or_default();
    if !failures.is_empty() {
        return Err(failures.swap_remove(0));
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(TaskError::Cancelled);
    }
    Ok(())
}
