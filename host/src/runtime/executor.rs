//! Turns a [`JobPlan`] into threads and channels, runs it to the end —
//! restarting it from its latest checkpoint after a failure, as its restart
//! strategy allows — and reports what it did.
//!
//! Wiring: for an edge from vertex `u` (parallelism `p`) to vertex `v`
//! (parallelism `q`), forward edges get `p` channels (`i → i`); every other
//! edge gets `p × q` channels, so each consumer subtask can tell its input
//! channels apart (for watermarks and barrier alignment). A two-input
//! vertex (join, co-process) gets the channels of both its edges; each
//! channel is tagged with the logical input (0 or 1) it belongs to.
//!
//! Failure: when a subtask fails, the attempt is cancelled: sources stop,
//! and every other subtask stops as soon as a channel it uses is closed. The
//! first failure is the attempt's error; the cancellations it caused are not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::TaskError;
use super::control::TaskControl;
use super::dead_letter::DeadLetters;
use super::message::Message;
use super::output::{Output, OutputEdge, Route};
use super::task::{run_operator, run_operator_inputs, run_source};
use crate::checkpoint::coordinator::{Coordinator, ToCoordinator, ToTask};
use crate::checkpoint::hot_swap::{Schemas, plan_schemas};
use crate::checkpoint::manifest::{GeneratorState, KeyedStateHandle, Manifest, TaskState, WatermarkSnapshot};
use crate::checkpoint::resolve::{ResolveError, Resolved, find, operator_modules, resolve};
use crate::checkpoint::savepoint::SavepointSettings;
use crate::checkpoint::storage::{CheckpointStorage, FileStore};
use crate::checkpoint::{CheckpointSettings, TaskId};
use crate::connectors::file_sink::FileSink;
use crate::connectors::file_source::{FileSource, assigned_files};
use crate::connectors::files_sink::FilesSink;
use crate::connectors::generator::{GeneratorSource, redistribute};
use crate::connectors::postgres_sink::PostgresSink;
use crate::connectors::stdout_sink::StdoutSink;
use crate::connectors::{Source, TransactionalSink};
use crate::metrics::{VertexMetrics, VertexRole, progress};
use crate::operators::Operator;
use crate::operators::buffered_window::{
    BufferedWindowOperator, BufferedWindowParts, Evictor, WindowFunction, runs_buffered,
};
use crate::operators::co_process::CoProcessOperator;
use crate::operators::interval_join::IntervalJoinOperator;
use crate::operators::keyed_process::KeyedProcessOperator;
use crate::operators::sink::SinkOperator;
use crate::operators::transform::TransformOperator;
use crate::operators::two_phase_commit::TwoPhaseCommitOperator;
use crate::operators::window::WindowOperator;
use crate::operators::window_config::EvictorConfig;
use crate::operators::window_join::WindowJoinOperator;
use crate::plan::StateBackendConfig;
use crate::plan::{FunctionRef, JobPlan, JoinConfig, Partitioning, SinkConfig, SourceConfig, Vertex, VertexKind};
use crate::state::KeyGroupRange;
use crate::state::heap::HeapBackend;
use crate::state::restore::restore_keyed;
use crate::state::rocksdb::{RocksDbBackend, RocksDbOptions};
use crate::wasm::FunctionKind;
use crate::wasm::WasmRuntime;
use crate::wasm::host_state::KeyedScope;
use crate::wasm::instance::{InstanceSpec, UdfInstance};

pub use crate::checkpoint::resolve::RestoreFrom;

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Print a progress line to stderr this often (`None`: never).
    pub progress: Option<Duration>,
    /// Start from a checkpoint.
    pub restore: Option<RestoreFrom>,
    /// Savepoint requests from the control API (needs checkpointing).
    pub control: Option<crate::checkpoint::savepoint::JobControl>,
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobSummary {
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
pub struct VertexSummary {
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
struct Shared<'a> {
    engine: &'a wasmtime::Engine,
    metrics: Vec<Arc<VertexMetrics>>,
    dead_letters: Arc<DeadLetters>,
    storage: Option<CheckpointStorage>,
    savepoints: Option<SavepointSettings>,
}

/// Runs `plan` to completion, restarting after failures as its restart
/// strategy allows. Every start from saved state — the first, from
/// `options.restore`, and every restart — goes through
/// [`crate::checkpoint::resolve`], which decides the modules that run.
pub fn execute(plan: &JobPlan, wasm: &WasmRuntime, options: &RunOptions) -> Result<JobSummary, TaskError> {
    let started = Instant::now();
    let engine = wasm.engine();
    let storage_error = |e: crate::checkpoint::storage::StorageError| TaskError::Checkpoint(e.to_string());
    let resolve_error = |e: ResolveError| TaskError::Checkpoint(e.to_string());
    let storage = match &plan.settings.checkpoint {
        Some(settings) => Some(CheckpointStorage::open(&settings.dir, &plan.name).map_err(storage_error)?),
        None => None,
    };
    let scratch = plan.settings.checkpoint.as_ref().map_or_else(
        || std::env::temp_dir().join("weir-migrated"),
        |c| c.dir.join(&plan.name).join("migrated"),
    );
    let point = match (&options.restore, &storage) {
        (None, _) => None,
        (Some(RestoreFrom::Latest | RestoreFrom::Checkpoint(_)), None) => {
            return Err(TaskError::Checkpoint(
                "the job has no [checkpoint] table, so there is nothing to restore from".into(),
            ));
        }
        (Some(from), storage) => {
            let point = find(from, storage.as_ref()).map_err(resolve_error)?;
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
        Some(point) => resolve(plan, wasm, point, &scratch).map_err(resolve_error)?,
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
            Arc::new(VertexMetrics::new(&v.uid, role))
        })
        .collect();
    let shared = Shared {
        engine,
        metrics,
        dead_letters: Arc::new(DeadLetters::appending(
            &plan.settings.dead_letter,
            options.restore.is_some(),
        )),
        savepoints: match (&options.control, &plan.settings.checkpoint) {
            (Some(control), Some(settings)) => Some(SavepointSettings {
                control: control.clone(),
                default_dir: settings.dir.join(&plan.name).join("savepoints"),
            }),
            _ => None,
        },
        storage,
    };
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
                restarts += 1;
                let Some(delay) = plan.settings.restart.delay_before(restarts) else {
                    break Err(error);
                };
                let latest = match &shared.storage {
                    Some(storage) => find(&RestoreFrom::Latest, Some(storage)).map_err(resolve_error)?,
                    None => None,
                };
                let initial_id = initial.restore.as_ref().map(|(m, _)| m.id);
                current = match latest {
                    Some(point) if initial_id.is_none_or(|id| point.manifest.id > id) => {
                        resolve(plan, wasm, point, &scratch).map_err(resolve_error)?
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

/// The digest of every operator's module, in plan order.
fn module_digests(plan: &JobPlan) -> Vec<String> {
    plan.vertices
        .iter()
        .filter_map(|v| match &v.kind {
            VertexKind::Operator(function) => Some(function.module.digest.clone()),
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

/// The event-time progress that subtask `subtask` of `parallelism`
/// inherits from the `old` subtasks of its vertex: its own at the same
/// parallelism; after rescaling, the least progress of the old subtasks
/// whose state it takes over (those with overlapping key groups when the
/// vertex is keyed with `max_parallelism` key groups, otherwise all of
/// them), so that nothing restored runs ahead of what it inherits.
fn inherited_watermarks(old: &[&TaskState], subtask: u32, parallelism: u32, keyed: Option<u32>) -> WatermarkSnapshot {
    let Some(first) = old.first() else {
        return WatermarkSnapshot::default();
    };
    let rescaled = first.parallelism != parallelism;
    let inherited: Vec<&TaskState> = old
        .iter()
        .copied()
        .filter(|t| match (rescaled, keyed) {
            (false, _) => t.task.subtask == subtask,
            (true, None) => true,
            (true, Some(max_parallelism)) => {
                let mine = KeyGroupRange::for_subtask(subtask, parallelism, max_parallelism);
                let theirs = KeyGroupRange::for_subtask(t.task.subtask, t.parallelism, max_parallelism);
                theirs.start < mine.end && mine.start < theirs.end
            }
        })
        .collect();
    WatermarkSnapshot {
        input: inherited.iter().filter_map(|t| t.watermarks.input).min(),
        output: GeneratorState::merge(inherited.iter().filter_map(|t| t.watermarks.output)),
    }
}

/// An incoming channel, with the consumer's logical input it belongs to.
type InputChannel = (Receiver<Message>, usize);

/// An outgoing edge before its subtask thread builds the route.
struct EdgeWiring {
    consumer: usize,
    /// Which input of the consumer the edge is (0, or 1 for a second input).
    input: usize,
    targets: Vec<Sender<Message>>,
}

/// The control channels of one attempt, when checkpointing is on.
struct ControlPlane {
    settings: CheckpointSettings,
    storage: CheckpointStorage,
    inbox: Receiver<ToCoordinator>,
    to_coordinator: Sender<ToCoordinator>,
    to_tasks: HashMap<TaskId, Sender<ToTask>>,
    from_coordinator: HashMap<TaskId, Receiver<ToTask>>,
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
    let capacity = plan.settings.channel_capacity;
    let mut outputs: Vec<Vec<Vec<EdgeWiring>>> = plan
        .vertices
        .iter()
        .map(|v| (0..v.parallelism).map(|_| Vec::new()).collect())
        .collect();
    let mut inputs: Vec<Vec<Vec<InputChannel>>> = plan
        .vertices
        .iter()
        .map(|v| (0..v.parallelism).map(|_| Vec::new()).collect())
        .collect();
    for vertex in &plan.vertices {
        for (input, edge) in vertex.inputs() {
            let forward = matches!(edge.partitioning, Partitioning::Forward);
            for (s, producer) in outputs[edge.from].iter_mut().enumerate() {
                let mut targets = Vec::new();
                for (d, consumer) in inputs[vertex.index].iter_mut().enumerate() {
                    if forward && s != d {
                        continue;
                    }
                    let (tx, rx) = bounded(capacity);
                    targets.push(tx);
                    consumer.push((rx, input));
                }
                producer.push(EdgeWiring {
                    consumer: vertex.index,
                    input,
                    targets,
                });
            }
        }
    }

    let all_tasks: Vec<TaskId> = plan
        .vertices
        .iter()
        .flat_map(|v| {
            (0..v.parallelism).map(move |subtask| TaskId {
                uid: v.uid.clone(),
                subtask,
            })
        })
        .collect();
    let mut control = match (&plan.settings.checkpoint, &shared.storage) {
        (Some(settings), Some(storage)) => {
            let (to_coordinator, inbox) = unbounded();
            let mut to_tasks = HashMap::new();
            let mut from_coordinator = HashMap::new();
            for task in &all_tasks {
                let (tx, rx) = unbounded();
                to_tasks.insert(task.clone(), tx);
                from_coordinator.insert(task.clone(), rx);
            }
            Some(ControlPlane {
                settings: settings.clone(),
                storage: storage.clone(),
                inbox,
                to_coordinator,
                to_tasks,
                from_coordinator,
            })
        }
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
        && let Ok(mut resumed) = settings.control.resumed.lock()
    {
        *resumed = Some(Instant::now());
    }
    std::thread::scope(|scope| {
        if let Some(plane) = &mut control {
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
                savepoints: shared.savepoints.clone(),
                // After the sweep: the module copies stay with every checkpoint.
                modules: operator_modules(plan, schemas, Some(plane.storage.files())),
            };
            let (_, inbox) = unbounded();
            let inbox = std::mem::replace(&mut plane.inbox, inbox);
            let fail = &fail;
            scope.spawn(move || {
                if let Err(error) = coordinator.run(inbox) {
                    fail(TaskError::Checkpoint(error.to_string()));
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
                let task_control = control.as_mut().and_then(|plane| {
                    Some(TaskControl {
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
                    control: task_control,
                    cancel: &cancel,
                };
                let fail = &fail;
                let name = format!("{}#{subtask}", vertex.uid);
                let spawned = std::thread::Builder::new().name(name).spawn_scoped(scope, move || {
                    if let Err(error) = task.run(wiring, receivers) {
                        fail(error);
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
        drop(control.take());
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

/// One subtask of one vertex, before it starts.
struct Subtask<'a> {
    shared: &'a Shared<'a>,
    plan: &'a JobPlan,
    vertex: &'a Vertex,
    subtask: u32,
    attempt: u32,
    restore: Option<&'a Manifest>,
    restore_files: Option<&'a FileStore>,
    control: Option<TaskControl>,
    cancel: &'a AtomicBool,
}

impl Subtask<'_> {
    fn plan(&self) -> &JobPlan {
        self.plan
    }

    fn metrics(&self) -> Arc<VertexMetrics> {
        Arc::clone(&self.shared.metrics[self.vertex.index])
    }

    fn run(&self, wiring: Vec<EdgeWiring>, channels: Vec<InputChannel>) -> Result<(), TaskError> {
        let (receivers, input_of): (Vec<Receiver<Message>>, Vec<usize>) = channels.into_iter().unzip();
        let mut out = self.output(wiring)?;
        let control = self.control.as_ref();
        match &self.vertex.kind {
            VertexKind::Source(config) => {
                let mut source = self.source(config)?;
                run_source(
                    &self.vertex.uid,
                    source.as_mut(),
                    &mut out,
                    self.plan().settings.batch_size,
                    self.cancel,
                    control,
                    self.restored_watermarks(),
                )
            }
            VertexKind::Operator(function) => {
                let mut operator = self.operator(function)?;
                let restored = self.restored_watermarks();
                run_operator_inputs(operator.as_mut(), &receivers, &input_of, &mut out, control, restored)
            }
            VertexKind::Sink(config) => {
                let mut operator = self.sink(config)?;
                run_operator(operator.as_mut(), &receivers, &mut out, control)
            }
        }
    }

    /// The restored states of this vertex's subtasks.
    fn restored(&self) -> impl Iterator<Item = &TaskState> + '_ {
        self.restore.into_iter().flat_map(|m| m.tasks_of(&self.vertex.uid))
    }

    /// The event-time progress this subtask inherits from the restored
    /// checkpoint (see [`inherited_watermarks`]).
    fn restored_watermarks(&self) -> WatermarkSnapshot {
        let old: Vec<&TaskState> = self.restored().collect();
        let keyed = matches!(
            self.vertex.input.as_ref().map(|edge| &edge.partitioning),
            Some(Partitioning::KeyBy(_))
        );
        inherited_watermarks(
            &old,
            self.subtask,
            self.vertex.parallelism,
            keyed.then_some(self.plan().settings.max_parallelism),
        )
    }

    fn connector_error(&self, source: crate::connectors::ConnectorError) -> TaskError {
        let role = match self.vertex.kind {
            VertexKind::Source(_) => "source",
            _ => "sink",
        };
        TaskError::Connector {
            vertex: format!("{role} `{}`", self.vertex.uid),
            source,
        }
    }

    fn source(&self, config: &SourceConfig) -> Result<Box<dyn Source>, TaskError> {
        let mut source: Box<dyn Source> = match config {
            SourceConfig::File { path, follow } => {
                let files =
                    assigned_files(path, self.subtask, self.vertex.parallelism).map_err(|e| self.connector_error(e))?;
                Box::new(FileSource::open(files, *follow).map_err(|e| self.connector_error(e))?)
            }
            SourceConfig::Generator(config) => Box::new(GeneratorSource::new(
                config.clone(),
                self.subtask,
                self.vertex.parallelism,
            )),
            // Restored from every old subtask's splits, at any parallelism.
            SourceConfig::Kafka(config) => {
                let restored: Vec<Vec<u8>> = self.restored().flat_map(|t| t.source_splits.clone()).collect();
                let source = crate::connectors::kafka::KafkaSource::open(config, &self.kafka_scope(), &restored)
                    .map_err(|e| self.connector_error(e))?;
                return Ok(Box::new(source));
            }
        };
        let old: Vec<(u32, &[Vec<u8>])> = self
            .restored()
            .map(|t| (t.task.subtask, t.source_splits.as_slice()))
            .collect();
        let old_parallelism = self.restored().next().map(|t| t.parallelism);
        if let (SourceConfig::Generator(config), Some(old_parallelism), true) = (
            config,
            old_parallelism,
            old.iter().all(|(_, splits)| !splits.is_empty()),
        ) {
            // Rescalable: a share of every old subtask's splits.
            let mine = redistribute(&old, old_parallelism, self.subtask, self.vertex.parallelism);
            let source = GeneratorSource::with_splits(config.clone(), &mine).map_err(|e| self.connector_error(e))?;
            return Ok(Box::new(source));
        }
        if let Some(state) = self.restored().find(|t| t.task.subtask == self.subtask) {
            if state.parallelism != self.vertex.parallelism {
                return Err(TaskError::Restore {
                    vertex: self.vertex.uid.clone(),
                    reason: format!(
                        "it was checkpointed with parallelism {} and now has {}; a file source cannot be rescaled (its positions are per subtask): keep its parallelism at {} and rescale the operators behind it",
                        state.parallelism, self.vertex.parallelism, state.parallelism
                    ),
                });
            }
            if let Some(position) = state.source_position {
                source.seek(position).map_err(|e| self.connector_error(e))?;
            }
        }
        Ok(source)
    }

    fn sink(&self, config: &SinkConfig) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        Ok(match config {
            SinkConfig::Stdout => Box::new(SinkOperator::new(uid, Box::new(StdoutSink), self.metrics())),
            SinkConfig::File { path } => Box::new(SinkOperator::new(
                uid,
                Box::new(FileSink::create(path).map_err(|e| self.connector_error(e))?),
                self.metrics(),
            )),
            SinkConfig::Files { path } => {
                let sink = FilesSink::open(path, self.subtask).map_err(|e| self.connector_error(e))?;
                self.two_phase_commit(Box::new(sink))?
            }
            SinkConfig::Kafka(config) => {
                let sink = crate::connectors::kafka::KafkaSink::open(config, &self.kafka_scope())
                    .map_err(|e| self.connector_error(e))?;
                self.two_phase_commit(Box::new(sink))?
            }
            SinkConfig::Postgres(config) => {
                let sink = PostgresSink::connect(config, &self.plan().name, uid, self.subtask)
                    .map_err(|e| self.connector_error(e))?;
                self.two_phase_commit(Box::new(sink))?
            }
        })
    }

    /// Who a Kafka client of this subtask works for.
    fn kafka_scope(&self) -> crate::connectors::kafka::ClientScope {
        crate::connectors::kafka::ClientScope {
            job: self.plan().name.clone(),
            uid: self.vertex.uid.clone(),
            subtask: self.subtask,
            parallelism: self.vertex.parallelism,
        }
    }

    /// Wraps a transactional sink in the two-phase-commit protocol, after
    /// committing the transactions of the restored checkpoint. Those of old
    /// subtasks beyond today's parallelism go to subtask 0.
    fn two_phase_commit(&self, sink: Box<dyn TransactionalSink>) -> Result<Box<dyn Operator>, TaskError> {
        let transactions: Vec<Vec<u8>> = self
            .restored()
            .filter(|t| {
                t.task.subtask == self.subtask || (self.subtask == 0 && t.task.subtask >= self.vertex.parallelism)
            })
            .flat_map(|t| t.transactions.iter().cloned())
            .collect();
        Ok(Box::new(TwoPhaseCommitOperator::new(
            &self.vertex.uid,
            sink,
            &transactions,
            self.metrics(),
            self.control.is_some(),
        )?))
    }

    fn instance(
        &self,
        uid: &str,
        function: &FunctionRef,
        parallelism: u32,
        keyed: Option<KeyedScope>,
    ) -> Result<UdfInstance, TaskError> {
        let mut params = function.params.clone();
        params.push(("weir.attempt".into(), self.attempt.to_string()));
        let spec = InstanceSpec {
            operator: uid,
            module: &function.module,
            function: &function.function,
            kind: function.kind,
            params: &params,
            subtask: self.subtask,
            parallelism,
            max_parallelism: self.plan().settings.max_parallelism,
            limits: self.plan().settings.limits,
        };
        Ok(UdfInstance::start(self.shared.engine, &spec, keyed)?)
    }

    fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(
            self.subtask,
            self.vertex.parallelism,
            self.plan().settings.max_parallelism,
        )
    }

    /// The keyed scope of this subtask: its state backend and timers, with
    /// the state of the restored checkpoint loaded for its key groups.
    fn keyed_scope(&self) -> Result<KeyedScope, TaskError> {
        let uid = &self.vertex.uid;
        let restore_error = |reason: String| TaskError::StateRestore {
            operator: uid.clone(),
            reason,
        };
        let handles: Vec<&KeyedStateHandle> = self.restored().filter_map(|t| t.keyed.as_ref()).collect();
        let files = match (self.restore_files, &self.shared.storage, handles.is_empty()) {
            (Some(files), _, _) => Some(files),
            (None, Some(storage), _) => Some(storage.files()),
            (None, None, true) => None,
            (None, None, false) => return Err(restore_error("no checkpoint storage".into())),
        };
        let max_parallelism = self.plan().settings.max_parallelism;
        let mut timers = crate::state::TimerService::new();
        let backend: Box<dyn crate::state::KeyedStateBackend> = match &self.plan().settings.state_backend {
            StateBackendConfig::Heap => {
                let mut backend = HeapBackend::new();
                if let Some(files) = files.filter(|_| !handles.is_empty()) {
                    restore_keyed(&mut backend, &mut timers, files, &handles, self.key_groups())
                        .map_err(restore_error)?;
                }
                Box::new(backend)
            }
            StateBackendConfig::RocksDb { dir, incremental } => {
                // A folder of its own for every subtask of every attempt of every run.
                let dir = dir.join(&self.plan().name).join(format!(
                    "{}-{}-{}-{}-{}",
                    uid.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
                    self.subtask,
                    std::process::id(),
                    self.attempt,
                    crate::time::now_ms()
                ));
                let options = RocksDbOptions {
                    incremental: *incremental,
                };
                match files.filter(|_| !handles.is_empty()) {
                    Some(files) => {
                        let (backend, _) = RocksDbBackend::restore(
                            &dir,
                            max_parallelism,
                            options,
                            files,
                            &handles,
                            self.key_groups(),
                            &mut timers,
                        )
                        .map_err(restore_error)?;
                        Box::new(backend)
                    }
                    None => Box::new(RocksDbBackend::open(&dir, max_parallelism, options).map_err(|source| {
                        TaskError::State {
                            operator: uid.clone(),
                            source,
                        }
                    })?),
                }
            }
        };
        let mut scope = KeyedScope::new(backend);
        scope.timers = timers;
        Ok(scope)
    }

    /// The operator-state scope of a map, filter or flat-map subtask: a heap
    /// backend with its share of the restored operator list states.
    fn operator_scope(&self) -> Result<KeyedScope, TaskError> {
        let mut backend = HeapBackend::new();
        let old: Vec<(u32, &KeyedStateHandle)> = self
            .restored()
            .filter_map(|t| t.keyed.as_ref().map(|k| (t.task.subtask, k)))
            .collect();
        let old_parallelism = self
            .restored()
            .next()
            .map_or(self.vertex.parallelism, |t| t.parallelism);
        let files = self.restore_files.or(self.shared.storage.as_ref().map(|s| s.files()));
        if let (Some(files), false) = (files, old.is_empty()) {
            crate::state::operator::restore_operator_state(
                &mut backend,
                files,
                &old,
                old_parallelism,
                self.subtask,
                self.vertex.parallelism,
            )
            .map_err(|reason| TaskError::StateRestore {
                operator: self.vertex.uid.clone(),
                reason,
            })?;
        }
        Ok(KeyedScope::new(Box::new(backend)))
    }

    fn operator(&self, function: &FunctionRef) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        let module = function.module.display_name();
        Ok(match function.kind {
            FunctionKind::KeyedProcess => {
                let instance = self.instance(uid, function, self.vertex.parallelism, Some(self.keyed_scope()?))?;
                Box::new(KeyedProcessOperator::new(
                    uid,
                    module,
                    instance,
                    self.metrics(),
                    self.plan().settings.batch_size,
                    self.key_groups(),
                ))
            }
            FunctionKind::WindowAggregate | FunctionKind::ProcessWindow
                if self
                    .vertex
                    .window
                    .as_ref()
                    .is_some_and(|config| runs_buffered(function.kind, config)) =>
            {
                self.buffered_window(function)?
            }
            FunctionKind::ProcessWindow | FunctionKind::WindowEvictor | FunctionKind::WindowTrigger => {
                return Err(TaskError::StateRestore {
                    operator: uid.clone(),
                    reason: format!("internal error: a {} function as an operator", function.kind),
                });
            }
            FunctionKind::WindowAggregate => {
                let config = self.vertex.window.clone().ok_or_else(|| TaskError::StateRestore {
                    operator: uid.clone(),
                    reason: "internal error: a window aggregate without a window".into(),
                })?;
                let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
                let instance = self.instance(uid, function, self.vertex.parallelism, None)?;
                Box::new(WindowOperator::new(
                    uid,
                    module,
                    instance,
                    self.metrics(),
                    backend,
                    timers,
                    config,
                    self.key_groups(),
                    self.plan().settings.batch_size,
                )?)
            }
            FunctionKind::KeyedCoProcess => {
                let instance = self.instance(uid, function, self.vertex.parallelism, Some(self.keyed_scope()?))?;
                let operator = CoProcessOperator::new(
                    uid,
                    module,
                    instance,
                    self.metrics(),
                    self.plan().settings.batch_size,
                    self.key_groups(),
                );
                let second = self.vertex.second_input.as_ref();
                match second.map(|edge| &edge.partitioning) {
                    Some(Partitioning::Broadcast) => Box::new(operator.with_broadcast_input()),
                    _ => Box::new(operator),
                }
            }
            FunctionKind::Join => {
                let config = self.vertex.join.ok_or_else(|| TaskError::StateRestore {
                    operator: uid.clone(),
                    reason: "internal error: a join without its join settings".into(),
                })?;
                let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
                let instance = self.instance(uid, function, self.vertex.parallelism, None)?;
                let batch_size = self.plan().settings.batch_size;
                match config {
                    JoinConfig::Window(assigner) => Box::new(WindowJoinOperator::new(
                        uid,
                        module,
                        instance,
                        self.metrics(),
                        backend,
                        timers,
                        assigner,
                        self.key_groups(),
                        batch_size,
                    )?),
                    JoinConfig::Interval { lower_ms, upper_ms } => Box::new(IntervalJoinOperator::new(
                        uid,
                        module,
                        instance,
                        self.metrics(),
                        backend,
                        timers,
                        (lower_ms, upper_ms),
                        self.key_groups(),
                        batch_size,
                    )?),
                }
            }
            FunctionKind::Map | FunctionKind::Filter | FunctionKind::FlatMap => {
                let scope = self.operator_scope()?;
                let instance = self.instance(uid, function, self.vertex.parallelism, Some(scope))?;
                Box::new(
                    TransformOperator::new(uid, module, instance, self.metrics())
                        .with_operator_state(self.key_groups()),
                )
            }
            FunctionKind::KeySelector | FunctionKind::WatermarkGenerator => {
                let instance = self.instance(uid, function, self.vertex.parallelism, None)?;
                Box::new(TransformOperator::new(uid, module, instance, self.metrics()))
            }
        })
    }

    /// A window operator that buffers whole windows (process-window
    /// functions, `process`, evictors): one instance per function.
    fn buffered_window(&self, function: &FunctionRef) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        let config = self.vertex.window.clone().ok_or_else(|| TaskError::StateRestore {
            operator: uid.clone(),
            reason: "internal error: a window function without a window".into(),
        })?;
        let parallelism = self.vertex.parallelism;
        let main = self.instance(uid, function, parallelism, None)?;
        let window_function = match (function.kind, &config.functions.process) {
            (FunctionKind::ProcessWindow, _) => WindowFunction::Process(main),
            (_, process) => WindowFunction::Aggregate {
                aggregate: main,
                process: match process {
                    Some(process) => Some(self.instance(uid, process, parallelism, None)?),
                    None => None,
                },
            },
        };
        let evictor = match &config.functions.evictor {
            None => None,
            Some(EvictorConfig::Count { count, after }) => Some(Evictor::Count {
                count: *count,
                after: *after,
            }),
            Some(EvictorConfig::Time { size_ms, after }) => Some(Evictor::Time {
                size_ms: *size_ms,
                after: *after,
            }),
            Some(EvictorConfig::Wasm(evictor)) => {
                Some(Evictor::Wasm(self.instance(uid, evictor, parallelism, None)?))
            }
        };
        let config_trigger = config.functions.trigger.clone();
        let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
        Ok(Box::new(BufferedWindowOperator::new(BufferedWindowParts {
            uid: uid.clone(),
            module: function.module.display_name(),
            metrics: self.metrics(),
            backend,
            timers,
            config,
            key_groups: self.key_groups(),
            timer_batch: self.plan().settings.batch_size,
            function: window_function,
            evictor,
            trigger: match &config_trigger {
                Some(trigger) => Some(self.instance(uid, trigger, parallelism, None)?),
                None => None,
            },
        })?))
    }

    /// Builds the routes of this subtask's outgoing edges (key selectors are
    /// instantiated here, on the producing subtask's thread).
    fn output(&self, wiring: Vec<EdgeWiring>) -> Result<Output, TaskError> {
        let mut edges = Vec::with_capacity(wiring.len());
        for EdgeWiring {
            consumer,
            input,
            targets,
        } in wiring
        {
            let consumer = &self.plan().vertices[consumer];
            let Some((_, edge)) = consumer.inputs().nth(input) else {
                continue;
            };
            let route = match &edge.partitioning {
                Partitioning::Forward => Route::Forward,
                Partitioning::Rebalance => Route::Rebalance,
                Partitioning::Broadcast => Route::Broadcast,
                Partitioning::KeyBy(selector) => Route::KeyBy {
                    selector: Box::new(self.instance(&consumer.uid, selector, consumer.parallelism, None)?),
                    max_parallelism: self.plan().settings.max_parallelism,
                    consumer: consumer.uid.clone(),
                    module: selector.module.display_name(),
                },
            };
            edges.push(OutputEdge::new(edge.side_output.clone(), targets, route));
        }
        let watermarks = self.vertex.watermarks.as_ref();
        let punctuation = match watermarks.and_then(|w| w.punctuation.as_ref()) {
            Some(generator) => Some(self.instance(&self.vertex.uid, generator, self.vertex.parallelism, None)?),
            None => None,
        };
        Ok(
            Output::new(edges, Arc::clone(&self.shared.dead_letters), self.metrics())
                .with_watermarks(watermarks.map(|w| w.strategy))
                .with_punctuation(punctuation),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(subtask: u32, parallelism: u32, input: i64, max_timestamp: i64) -> TaskState {
        TaskState {
            task: TaskId {
                uid: "op".into(),
                subtask,
            },
            parallelism,
            source_position: None,
            transactions: Vec::new(),
            keyed: None,
            finished: false,
            source_splits: Vec::new(),
            watermarks: WatermarkSnapshot {
                input: Some(input),
                output: Some(GeneratorState {
                    max_timestamp,
                    emitted: max_timestamp - 10,
                    idle: false,
                }),
            },
        }
    }

    #[test]
    fn a_subtask_inherits_its_own_watermarks_or_the_least_of_those_it_takes_over() {
        let states = [old(0, 2, 100, 500), old(1, 2, 300, 900)];
        let refs: Vec<&TaskState> = states.iter().collect();
        // Same parallelism: its own.
        assert_eq!(inherited_watermarks(&refs, 1, 2, Some(128)), states[1].watermarks);
        // Keyed, 2 -> 4: subtask 3 (key groups 96..128) only overlaps old 1.
        assert_eq!(inherited_watermarks(&refs, 3, 4, Some(128)), states[1].watermarks);
        // Keyed, 2 -> 1: both, the least progress of each.
        let merged = inherited_watermarks(&refs, 0, 1, Some(128));
        assert_eq!(merged.input, Some(100));
        assert_eq!(merged.output.map(|g| (g.max_timestamp, g.emitted)), Some((500, 490)));
        // Not keyed: every old subtask.
        assert_eq!(inherited_watermarks(&refs, 2, 3, None).input, Some(100));
        // Nothing restored.
        assert_eq!(inherited_watermarks(&[], 0, 1, None), WatermarkSnapshot::default());
    }
}
