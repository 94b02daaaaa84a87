//! The validated job: a graph of vertices, each with its parallelism, its
//! resolved configuration and the edge it reads from.
//!
//! A plan is what the runtime executes. It holds no TOML and no unresolved
//! `${param}`: every path is expanded and every module is loaded and checked.
//! The job loader (`job`) builds it; the runtime and the checkpoint
//! layer run it, so it sits below both.

pub(crate) mod http;
pub(crate) mod restart;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

/// A validated, executable job.
#[derive(Debug, Clone)]
pub(crate) struct JobPlan {
    /// The job's name.
    pub name: String,
    /// Job-wide settings.
    pub settings: Settings,
    /// Vertices in topological order: every vertex comes after its input.
    pub vertices: Vec<Vertex>,
}

/// Job-wide settings with their defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Most records in one batch.
    pub batch_size: usize,
    /// Batches a channel holds before its producer waits.
    pub channel_capacity: usize,
    /// Where rejected records go.
    pub dead_letter: PathBuf,
    /// Limits of every Wasm instance.
    pub limits: Limits,
    /// Checkpointing, if on.
    pub checkpoint: Option<CheckpointSettings>,
    /// What to do when a task fails.
    pub restart: restart::RestartStrategy,
    /// Where keyed state lives.
    pub state_backend: StateBackendConfig,
    /// The HTTP endpoint (the `[http]` table).
    pub http: http::HttpSettings,
}

/// The keyed state backend of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateBackendConfig {
    /// In memory.
    Heap,
    /// RocksDB in a local working folder.
    RocksDb {
        /// The working folder (one subfolder per subtask and run).
        dir: PathBuf,
        /// Incremental checkpoints.
        incremental: bool,
    },
}

/// An async operator's settings (defined with the operator).
pub(crate) use crate::operators::async_io::config::{AsyncConfig, AsyncMode, LookupConfig, LookupKind, OnFailure};

/// Resource limits of a Wasm instance (defined by the Wasm layer).
pub(crate) use crate::wasm::Limits;

/// One vertex of the dataflow graph.
#[derive(Debug, Clone)]
pub(crate) struct Vertex {
    /// Position in [`JobPlan::vertices`].
    pub index: usize,
    /// The uid from the job file.
    pub uid: String,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// What the vertex does.
    pub kind: VertexKind,
    /// The edge this vertex reads from (none for sources).
    pub input: Option<Edge>,
    /// Watermarks this vertex generates for its output, if any.
    pub watermarks: Option<Watermarks>,
}

impl Vertex {
    /// The edges this vertex reads from, with their side: the first input
    /// (`input`) and, for a two-input operator, its second.
    pub(crate) fn inputs(&self) -> impl Iterator<Item = (Side, &Edge)> + '_ {
        let second = match &self.kind {
            VertexKind::Operator(operator) => operator.second_input(),
            _ => None,
        };
        let first = self.input.as_ref().map(|edge| (Side::First, edge));
        first.into_iter().chain(second.map(|edge| (Side::Second, edge)))
    }

    /// The edge of `side`, if the vertex reads one there.
    pub(crate) fn input_of(&self, side: Side) -> Option<&Edge> {
        self.inputs().find(|(s, _)| *s == side).map(|(_, edge)| edge)
    }
}

/// What an operator vertex runs: decided once by the job loader, so that
/// building the operator is one `match` that meets no impossible shape.
#[derive(Debug, Clone)]
pub(crate) enum OperatorPlan {
    /// A map, filter or flat-map function (operator state only).
    Transform(FunctionRef),
    /// A keyed process function: keyed state and timers.
    KeyedProcess(FunctionRef),
    /// Windows with an incremental aggregate (one accumulator per window).
    Window {
        /// The window-aggregate function.
        aggregate: FunctionRef,
        /// Assigner, trigger, lateness.
        window: WindowConfig,
    },
    /// Windows that buffer their elements: a process-window function, or an
    /// aggregate with a process function, an evictor or a Wasm trigger.
    BufferedWindow {
        /// What runs when a window fires.
        function: BufferedWindowFunction,
        /// Assigner, trigger, lateness, evictor, Wasm trigger.
        window: WindowConfig,
    },
    /// Pairs of records of a key in the same window, from two keyed inputs.
    WindowJoin {
        /// The join function.
        function: FunctionRef,
        /// The windows (tumbling or sliding).
        assigner: WindowAssigner,
        /// The second (right) input.
        second: Edge,
    },
    /// Pairs with `left + lower_ms <= right <= left + upper_ms`, from two
    /// keyed inputs.
    IntervalJoin {
        /// The join function.
        function: FunctionRef,
        /// Lower bound of the right record's time relative to the left's, ms.
        lower_ms: i64,
        /// Upper bound of the right record's time relative to the left's, ms.
        upper_ms: i64,
        /// The second (right) input.
        second: Edge,
    },
    /// An async lookup function: lookups run on the subtask's own I/O
    /// runtime, the records in flight are checkpointed.
    Async {
        /// The async-map function.
        function: FunctionRef,
        /// Mode, capacity, timeout, retries, failure handling, lookups.
        config: AsyncConfig,
    },
    /// A keyed co-process function: two inputs, shared keyed state and
    /// timers; the second input keyed or broadcast.
    CoProcess {
        /// The co-process function.
        function: FunctionRef,
        /// The second input (keyed, or broadcast: see its partitioning).
        second: Edge,
    },
}

/// What a buffering window operator runs when a window fires.
#[derive(Debug, Clone)]
pub(crate) enum BufferedWindowFunction {
    /// A process-window function over all the window's elements.
    Process(FunctionRef),
    /// A window aggregate, and the process-window function that gets its
    /// result (Flink's `aggregate(aggFn, processWindowFn)`), if any.
    Aggregate {
        /// The aggregate.
        aggregate: FunctionRef,
        /// The process-window function.
        process: Option<FunctionRef>,
    },
}

impl OperatorPlan {
    /// The operator's main function (the one named by `function` in the job
    /// file): its module is the operator's module.
    pub(crate) fn function(&self) -> &FunctionRef {
        match self {
            Self::Transform(f) | Self::KeyedProcess(f) | Self::Async { function: f, .. } => f,
            Self::Window { aggregate, .. } => aggregate,
            Self::BufferedWindow { function, .. } => match function {
                BufferedWindowFunction::Process(f) => f,
                BufferedWindowFunction::Aggregate { aggregate, .. } => aggregate,
            },
            Self::WindowJoin { function, .. }
            | Self::IntervalJoin { function, .. }
            | Self::CoProcess { function, .. } => function,
        }
    }

    /// Every function the operator runs from its module: the main one and a
    /// buffering window's process function, evictor and trigger.
    pub(crate) fn functions_mut(&mut self) -> Vec<&mut FunctionRef> {
        match self {
            Self::Transform(f) | Self::KeyedProcess(f) | Self::Async { function: f, .. } => vec![f],
            Self::Window { aggregate, .. } => vec![aggregate],
            Self::BufferedWindow { function, window } => {
                let mut all = match function {
                    BufferedWindowFunction::Process(f) => vec![f],
                    BufferedWindowFunction::Aggregate { aggregate, process } => {
                        std::iter::once(aggregate).chain(process.as_mut()).collect()
                    }
                };
                if let Some(crate::operators::window_config::EvictorConfig::Wasm(f)) = &mut window.functions.evictor {
                    all.push(f);
                }
                all.extend(window.functions.trigger.as_mut());
                all
            }
            Self::WindowJoin { function, .. }
            | Self::IntervalJoin { function, .. }
            | Self::CoProcess { function, .. } => vec![function],
        }
    }

    /// The second input of a two-input operator.
    pub(crate) fn second_input(&self) -> Option<&Edge> {
        match self {
            Self::WindowJoin { second, .. } | Self::IntervalJoin { second, .. } | Self::CoProcess { second, .. } => {
                Some(second)
            }
            _ => None,
        }
    }

    /// The second input of a two-input operator, to wire it.
    pub(crate) fn second_input_mut(&mut self) -> Option<&mut Edge> {
        match self {
            Self::WindowJoin { second, .. } | Self::IntervalJoin { second, .. } | Self::CoProcess { second, .. } => {
                Some(second)
            }
            _ => None,
        }
    }

    /// Runs every function of the operator from `module` instead (an
    /// upgrade), after checking that `module` exports each of them with the
    /// same kind; on a mismatch nothing changes.
    pub(crate) fn swap_module(&mut self, module: &Arc<UdfModule>) -> Result<(), ModuleMismatch> {
        for function in self.functions_mut() {
            match module.info.function(&function.function) {
                Some(info) if info.kind == function.kind => {}
                Some(info) => {
                    return Err(ModuleMismatch::Kind {
                        function: function.function.clone(),
                        found: info.kind,
                        expected: function.kind,
                    });
                }
                None => {
                    return Err(ModuleMismatch::Missing {
                        function: function.function.clone(),
                    });
                }
            }
        }
        for function in self.functions_mut() {
            function.module = Arc::clone(module);
        }
        Ok(())
    }
}

/// Why a module cannot replace an operator's (the message follows the
/// module's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ModuleMismatch {
    /// It does not export one of the operator's functions.
    #[error("has no function `{function}`")]
    Missing {
        /// The function.
        function: String,
    },
    /// It exports one as another kind.
    #[error("has `{function}` as a {found} function, not a {expected} function")]
    Kind {
        /// The function.
        function: String,
        /// Its kind in the module.
        found: FunctionKind,
        /// Its kind in the operator.
        expected: FunctionKind,
    },
}

pub(crate) use crate::operators::Side;
use crate::time::windows::WindowAssigner;
use crate::wasm::{FunctionKind, UdfModule};

/// How a vertex generates the watermarks of its output.
#[derive(Debug, Clone)]
pub(crate) struct Watermarks {
    /// Bound, emission interval and idleness.
    pub strategy: crate::time::watermarks::WatermarkStrategy,
    /// The Wasm watermark generator of a punctuated strategy.
    pub punctuation: Option<FunctionRef>,
}

pub(crate) use crate::operators::window_config::{Trigger, WindowConfig};

/// What a vertex does.
#[derive(Debug, Clone)]
#[expect(clippy::large_enum_variant, reason = "one per vertex, built once by the loader")]
pub(crate) enum VertexKind {
    /// Reads records from outside.
    Source(SourceConfig),
    /// Runs user functions.
    Operator(OperatorPlan),
    /// Writes records outside.
    Sink(SinkConfig),
}

/// A source connector and its settings.
#[derive(Debug, Clone)]
pub(crate) enum SourceConfig {
    /// Lines of a file.
    File {
        /// The file, or a folder whose files are split over the subtasks.
        path: PathBuf,
        /// Wait for more lines at the end instead of ending.
        follow: bool,
    },
    /// The built-in traffic generator.
    Generator(crate::connectors::generator::GeneratorConfig),
    /// Kafka topics.
    Kafka(crate::connectors::kafka::KafkaSourceConfig),
}

/// A sink connector and its settings.
#[derive(Debug, Clone)]
pub(crate) enum SinkConfig {
    /// Standard output.
    Stdout,
    /// A file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Exactly-once part files in a folder.
    Files {
        /// The folder.
        path: PathBuf,
    },
    /// Exactly-once rows in a PostgreSQL table.
    Postgres(crate::connectors::postgres_sink::PostgresSinkConfig),
    /// A Kafka topic, at least once or exactly once.
    Kafka(crate::connectors::kafka::KafkaSinkConfig),
}

/// A function of a loaded module (defined by the Wasm layer).
pub(crate) use crate::wasm::FunctionRef;

/// How records move from one vertex to the next.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    /// The upstream vertex.
    pub from: usize,
    /// How records are distributed over the downstream subtasks.
    pub partitioning: Partitioning,
    /// The upstream's side output this edge carries (`None`: main output).
    pub side_output: Option<String>,
}

/// Distribution of records over downstream subtasks.
#[derive(Debug, Clone)]
pub(crate) enum Partitioning {
    /// Subtask `i` to subtask `i`.
    Forward,
    /// Round-robin, batch by batch.
    Rebalance,
    /// Every record to every subtask.
    Broadcast,
    /// By key group of the key a key selector computes.
    KeyBy(FunctionRef),
}

/// Whether operators align barriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CheckpointMode {
    /// Align barriers: state and outputs are exactly once.
    ExactlyOnce,
    /// Do not align: after a recovery some records may count twice.
    AtLeastOnce,
}

/// Checkpoint settings of a job, with their defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointSettings {
    /// Folder of the job's checkpoints.
    pub dir: std::path::PathBuf,
    /// Time between two triggers, ms.
    pub interval_ms: u64,
    /// A checkpoint not complete after this long is aborted, ms.
    pub timeout_ms: u64,
    /// Least time between the end of one checkpoint and the next trigger, ms.
    pub min_pause_ms: u64,
    /// Most checkpoints in progress at once.
    pub max_concurrent: usize,
    /// Failed checkpoints in a row that the job tolerates.
    pub tolerable_failures: u32,
    /// Completed checkpoints kept on disk.
    pub retain: usize,
    /// Aligned or not.
    pub mode: CheckpointMode,
}
