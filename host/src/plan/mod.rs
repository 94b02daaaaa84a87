//! The validated job: a graph of vertices, each with its parallelism, its
//! resolved configuration and the edge it reads from.
//!
//! A plan is what the runtime executes. It holds no TOML and no unresolved
//! `${param}`: every path is expanded and every module is loaded and checked.
//! The job loader (`job`) builds it; the runtime and the checkpoint
//! layer run it, so it sits below both.

pub mod restart;

use std::path::PathBuf;

use serde::Deserialize;

/// A validated, executable job.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// The job's name.
    pub name: String,
    /// Job-wide settings.
    pub settings: Settings,
    /// Vertices in topological order: every vertex comes after its input.
    pub vertices: Vec<Vertex>,
}

/// Job-wide settings with their defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
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
}

/// The keyed state backend of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackendConfig {
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

/// Resource limits of a Wasm instance (defined by the Wasm layer).
pub use crate::wasm::Limits;

/// One vertex of the dataflow graph.
#[derive(Debug, Clone)]
pub struct Vertex {
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
    /// Windows, for a window-aggregate operator.
    pub window: Option<WindowConfig>,
    /// The second input of a two-input operator (join, co-process).
    pub second_input: Option<Edge>,
    /// How a join operator matches the records of its two inputs.
    pub join: Option<JoinConfig>,
}

impl Vertex {
    /// The edges this vertex reads from, with their input index (0: `input`,
    /// 1: `second_input`).
    pub fn inputs(&self) -> impl Iterator<Item = (usize, &Edge)> + '_ {
        self.input.iter().chain(self.second_input.iter()).enumerate()
    }
}

/// How a join pairs the records of its two inputs (both keyed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinConfig {
    /// Every pair of records of a key in the same event-time window
    /// (tumbling or sliding), when the window fires.
    Window(crate::time::windows::WindowAssigner),
    /// Every pair with `left + lower_ms <= right <= left + upper_ms`, as
    /// soon as both have arrived.
    Interval {
        /// Lower bound of the right record's time relative to the left's, ms.
        lower_ms: i64,
        /// Upper bound of the right record's time relative to the left's, ms.
        upper_ms: i64,
    },
}

/// How a vertex generates the watermarks of its output.
#[derive(Debug, Clone)]
pub struct Watermarks {
    /// Bound, emission interval and idleness.
    pub strategy: crate::time::watermarks::WatermarkStrategy,
    /// The Wasm watermark generator of a punctuated strategy.
    pub punctuation: Option<FunctionRef>,
}

pub use crate::operators::window_config::{Trigger, WindowConfig};

/// What a vertex does.
#[derive(Debug, Clone)]
pub enum VertexKind {
    /// Reads records from outside.
    Source(SourceConfig),
    /// Runs a user function.
    Operator(FunctionRef),
    /// Writes records outside.
    Sink(SinkConfig),
}

/// A source connector and its settings.
#[derive(Debug, Clone)]
pub enum SourceConfig {
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
pub enum SinkConfig {
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
pub use crate::wasm::FunctionRef;

/// How records move from one vertex to the next.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The upstream vertex.
    pub from: usize,
    /// How records are distributed over the downstream subtasks.
    pub partitioning: Partitioning,
    /// The upstream's side output this edge carries (`None`: main output).
    pub side_output: Option<String>,
}

/// Distribution of records over downstream subtasks.
#[derive(Debug, Clone)]
pub enum Partitioning {
    /// Subtask `i` to subtask `i`.
    Forward,
    /// Round-robin, batch by batch.
    Rebalance,
    /// Every record to every subtask.
    Broadcast,
    /// By key group of the key a key selector computes.
    KeyBy(FunctionRef),
}

impl JobPlan {
    /// The vertices that read from vertex `index`.
    pub fn consumers(&self, index: usize) -> impl Iterator<Item = &Vertex> + '_ {
        self.vertices
            .iter()
            .filter(move |v| v.inputs().any(|(_, edge)| edge.from == index))
    }
}

/// Whether operators align barriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointMode {
    /// Align barriers: state and outputs are exactly once.
    ExactlyOnce,
    /// Do not align: after a recovery some records may count twice.
    AtLeastOnce,
}

/// Checkpoint settings of a job, with their defaults applied.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
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
