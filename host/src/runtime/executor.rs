//! Turns a [`JobPlan`] into threads and channels, runs it to the end, and
//! reports what it did.
//!
//! Wiring: for an edge from vertex `u` (parallelism `p`) to vertex `v`
//! (parallelism `q`), forward edges get `p` channels (`i → i`); every other
//! edge gets `p × q` channels, so each consumer subtask can tell its input
//! channels apart (which watermark tracking and, later, barrier alignment
//! need).
//!
//! Failure: when a subtask fails, the job is cancelled: sources stop, and
//! every other subtask stops as soon as a channel it uses is closed. The
//! first failure is the job's error; the cancellations it caused are not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::TaskError;
use super::dead_letter::DeadLetters;
use super::message::Message;
use super::output::{Output, OutputEdge, Route};
use super::task::{run_operator, run_source};
use crate::connectors::Source;
use crate::connectors::file_sink::FileSink;
use crate::connectors::file_source::FileSource;
use crate::connectors::generator::GeneratorSource;
use crate::connectors::stdout_sink::StdoutSink;
use crate::job::plan::{
    FunctionRef, JobPlan, Partitioning, SinkConfig, SourceConfig, Vertex, VertexKind,
};
use crate::metrics::{VertexMetrics, VertexRole, progress};
use crate::operators::Operator;
use crate::operators::keyed_process::KeyedProcessOperator;
use crate::operators::sink::SinkOperator;
use crate::operators::transform::TransformOperator;
use crate::state::heap::HeapBackend;
use crate::wasm::FunctionKind;
use crate::wasm::instance::{InstanceSpec, UdfInstance};

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Print a progress line to stderr this often (`None`: never).
    pub progress: Option<Duration>,
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// The job's name.
    pub name: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Counters of each vertex, in plan order.
    pub vertices: Vec<VertexSummary>,
    /// Records sent to the dead-letter file.
    pub dead_letters: u64,
    /// The dead-letter file.
    pub dead_letter_path: std::path::PathBuf,
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
}

/// An outgoing edge before its subtask thread builds the route.
struct EdgeWiring {
    consumer: usize,
    targets: Vec<Sender<Message>>,
}

/// Runs `plan` to completion.
pub fn execute(
    plan: &JobPlan,
    engine: &wasmtime::Engine,
    options: &RunOptions,
) -> Result<JobSummary, TaskError> {
    let started = Instant::now();
    let capacity = plan.settings.channel_capacity;
    let mut outputs: Vec<Vec<Vec<EdgeWiring>>> = plan
        .vertices
        .iter()
        .map(|v| (0..v.parallelism).map(|_| Vec::new()).collect())
        .collect();
    let mut inputs: Vec<Vec<Vec<Receiver<Message>>>> = plan
        .vertices
        .iter()
        .map(|v| (0..v.parallelism).map(|_| Vec::new()).collect())
        .collect();
    for vertex in &plan.vertices {
        let Some(edge) = &vertex.input else { continue };
        let forward = matches!(edge.partitioning, Partitioning::Forward);
        for (s, producer) in outputs[edge.from].iter_mut().enumerate() {
            let mut targets = Vec::new();
            for (d, consumer) in inputs[vertex.index].iter_mut().enumerate() {
                if forward && s != d {
                    continue;
                }
                let (tx, rx) = bounded(capacity);
                targets.push(tx);
                consumer.push(rx);
            }
            producer.push(EdgeWiring {
                consumer: vertex.index,
                targets,
            });
        }
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
    let dead_letters = Arc::new(DeadLetters::new(&plan.settings.dead_letter));
    let cancel = Arc::new(AtomicBool::new(false));
    let failures: Mutex<Vec<TaskError>> = Mutex::new(Vec::new());
    let stop_progress = Arc::new(AtomicBool::new(false));
    let reporter = options.progress.map(|interval| {
        progress::report(
            metrics.clone(),
            Arc::clone(&dead_letters),
            Arc::clone(&stop_progress),
            interval,
        )
    });

    std::thread::scope(|scope| {
        for vertex in &plan.vertices {
            let subtask_outputs = std::mem::take(&mut outputs[vertex.index]);
            let subtask_inputs = std::mem::take(&mut inputs[vertex.index]);
            for (subtask, (wiring, receivers)) in
                subtask_outputs.into_iter().zip(subtask_inputs).enumerate()
            {
                let task = Subtask {
                    plan,
                    engine,
                    vertex,
                    subtask: subtask as u32,
                    metrics: Arc::clone(&metrics[vertex.index]),
                    dead_letters: Arc::clone(&dead_letters),
                    cancel: &cancel,
                };
                let failures = &failures;
                let name = format!("{}#{subtask}", vertex.uid);
                let spawned =
                    std::thread::Builder::new()
                        .name(name)
                        .spawn_scoped(scope, move || {
                            if let Err(error) = task.run(wiring, receivers) {
                                task.cancel.store(true, Ordering::Relaxed);
                                if !matches!(error, TaskError::Cancelled) {
                                    tracing::debug!("subtask failed: {error}");
                                    if let Ok(mut failures) = failures.lock() {
                                        failures.push(error);
                                    }
                                }
                            }
                        });
                if let Err(e) = spawned {
                    cancel.store(true, Ordering::Relaxed);
                    if let Ok(mut failures) = failures.lock() {
                        failures.push(TaskError::Connector {
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
        }
    });

    stop_progress.store(true, Ordering::Relaxed);
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    dead_letters.flush()?;
    let mut failures = failures.into_inner().unwrap_or_default();
    if !failures.is_empty() {
        return Err(failures.swap_remove(0));
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(TaskError::Cancelled);
    }
    Ok(JobSummary {
        name: plan.name.clone(),
        elapsed: started.elapsed(),
        vertices: metrics
            .iter()
            .map(|m| VertexSummary {
                uid: m.uid.clone(),
                role: m.role,
                records_in: m.records_in(),
                records_out: m.records_out(),
            })
            .collect(),
        dead_letters: dead_letters.count(),
        dead_letter_path: plan.settings.dead_letter.clone(),
    })
}

/// One subtask of one vertex, before it starts.
struct Subtask<'a> {
    plan: &'a JobPlan,
    engine: &'a wasmtime::Engine,
    vertex: &'a Vertex,
    subtask: u32,
    metrics: Arc<VertexMetrics>,
    dead_letters: Arc<DeadLetters>,
    cancel: &'a AtomicBool,
}

impl Subtask<'_> {
    fn run(
        &self,
        wiring: Vec<EdgeWiring>,
        receivers: Vec<Receiver<Message>>,
    ) -> Result<(), TaskError> {
        let mut out = self.output(wiring)?;
        match &self.vertex.kind {
            VertexKind::Source(config) => {
                let mut source = self.source(config)?;
                run_source(
                    &self.vertex.uid,
                    source.as_mut(),
                    &mut out,
                    self.plan.settings.batch_size,
                    self.cancel,
                )
            }
            VertexKind::Operator(function) => {
                let mut operator = self.operator(function)?;
                run_operator(operator.as_mut(), &receivers, &mut out)
            }
            VertexKind::Sink(config) => {
                let sink: Box<dyn crate::connectors::Sink> = match config {
                    SinkConfig::Stdout => Box::new(StdoutSink),
                    SinkConfig::File { path } => Box::new(FileSink::create(path).map_err(
                        |source| TaskError::Connector {
                            vertex: format!("sink `{}`", self.vertex.uid),
                            source,
                        },
                    )?),
                };
                let mut operator =
                    SinkOperator::new(&self.vertex.uid, sink, Arc::clone(&self.metrics));
                run_operator(&mut operator, &receivers, &mut out)
            }
        }
    }

    fn source(&self, config: &SourceConfig) -> Result<Box<dyn Source>, TaskError> {
        Ok(match config {
            SourceConfig::File { path } => {
                Box::new(
                    FileSource::open(path).map_err(|source| TaskError::Connector {
                        vertex: format!("source `{}`", self.vertex.uid),
                        source,
                    })?,
                )
            }
            SourceConfig::Generator(config) => Box::new(GeneratorSource::new(
                config.clone(),
                self.subtask,
                self.vertex.parallelism,
            )),
        })
    }

    fn instance(
        &self,
        uid: &str,
        function: &FunctionRef,
        parallelism: u32,
        keyed: bool,
    ) -> Result<UdfInstance, TaskError> {
        let spec = InstanceSpec {
            operator: uid,
            module: &function.module,
            function: &function.function,
            kind: function.kind,
            params: &function.params,
            subtask: self.subtask,
            parallelism,
            max_parallelism: self.plan.settings.max_parallelism,
            limits: self.plan.settings.limits,
        };
        let backend: Option<Box<dyn crate::state::KeyedStateBackend>> =
            keyed.then(|| Box::new(HeapBackend::new()) as Box<dyn crate::state::KeyedStateBackend>);
        Ok(UdfInstance::start(self.engine, &spec, backend)?)
    }

    fn operator(&self, function: &FunctionRef) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        let module = function.module.display_name();
        let metrics = Arc::clone(&self.metrics);
        Ok(match function.kind {
            FunctionKind::KeyedProcess => {
                let instance = self.instance(uid, function, self.vertex.parallelism, true)?;
                Box::new(KeyedProcessOperator::new(
                    uid,
                    module,
                    instance,
                    metrics,
                    self.plan.settings.batch_size,
                ))
            }
            _ => {
                let instance = self.instance(uid, function, self.vertex.parallelism, false)?;
                Box::new(TransformOperator::new(uid, module, instance, metrics))
            }
        })
    }

    /// Builds the routes of this subtask's outgoing edges (key selectors are
    /// instantiated here, on the producing subtask's thread).
    fn output(&self, wiring: Vec<EdgeWiring>) -> Result<Output, TaskError> {
        let mut edges = Vec::with_capacity(wiring.len());
        for EdgeWiring { consumer, targets } in wiring {
            let consumer = &self.plan.vertices[consumer];
            let Some(edge) = &consumer.input else {
                continue;
            };
            let route = match &edge.partitioning {
                Partitioning::Forward => Route::Forward,
                Partitioning::Rebalance => Route::Rebalance,
                Partitioning::Broadcast => Route::Broadcast,
                Partitioning::KeyBy(selector) => Route::KeyBy {
                    selector: Box::new(self.instance(
                        &consumer.uid,
                        selector,
                        consumer.parallelism,
                        false,
                    )?),
                    max_parallelism: self.plan.settings.max_parallelism,
                    consumer: consumer.uid.clone(),
                    module: selector.module.display_name(),
                },
            };
            edges.push(OutputEdge::new(edge.side_output.clone(), targets, route));
        }
        Ok(Output::new(
            edges,
            Arc::clone(&self.dead_letters),
            Arc::clone(&self.metrics),
        ))
    }
}
