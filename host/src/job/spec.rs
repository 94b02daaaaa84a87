//! The job file, as written: a TOML document describing sources, operators,
//! sinks and settings.
//!
//! ```toml
//! [job]
//! name = "wordcount"
//! parallelism = 2
//!
//! [params]                  # defaults for ${name} references
//! output = "counts.csv"
//!
//! [[source]]
//! uid = "lines"
//! type = "file"
//! path = "${input}"
//!
//! [[operator]]
//! uid = "count"
//! input = "lines"
//! module = "wordcount.wasm"
//! function = "count"
//! key_by = { module = "wordcount.wasm", function = "word" }
//!
//! [[sink]]
//! uid = "out"
//! input = "count"
//! type = "file"
//! path = "${output}"
//! ```
//!
//! Fields that later checks refer to are [`Spanned`], so that an error can
//! name the line it comes from.
//!
//! Any value may be given by parameters: a string that holds `${name}`
//! references is expanded before the fields are typed, and takes the type
//! of its field (`follow = "${follow}"`, `batch_size = "${batch}"`,
//! `state_backend = "${backend}"`). See `load::document`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole job file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSpec {
    /// Job-wide settings.
    #[serde(default)]
    pub job: JobSettings,
    /// Default values of parameters (`${name}`), overridden by `--param`:
    /// strings, or integers, floats and booleans taken as their text. They
    /// are not expanded themselves.
    #[serde(default)]
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "expanded by the document layer before the spec is read; declared so `[params]` is accepted"
        )
    )]
    pub params: BTreeMap<String, String>,
    /// Where records come from.
    #[serde(default, rename = "source")]
    pub sources: Vec<Spanned<SourceSpec>>,
    /// User functions.
    #[serde(default, rename = "operator")]
    pub operators: Vec<Spanned<OperatorSpec>>,
    /// Where results go.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<Spanned<SinkSpec>>,
    /// Lookup clients that async operators may be granted.
    #[serde(default, rename = "lookup")]
    pub lookups: Vec<Spanned<super::async_spec::LookupSpec>>,
    /// Checkpointing; off when absent.
    pub checkpoint: Option<Spanned<CheckpointSpec>>,
    /// What to do when a task fails.
    pub restart: Option<Spanned<RestartSpec>>,
    /// The HTTP endpoint (`weir run`'s `--http*` flags override it).
    pub http: Option<Spanned<HttpSpec>>,
}

/// The `[http]` table: where the job's HTTP endpoint listens and who may
/// call it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSpec {
    /// Port, 0 to 65535 (default 0: any free port); checked by the loader
    /// so that an error names the field.
    pub port: Option<Spanned<i64>>,
    /// IP address to bind (default `127.0.0.1`).
    pub bind: Option<Spanned<String>>,
    /// Bearer token (default: generated).
    pub token: Option<Spanned<String>>,
    /// PEM certificate chain: serve HTTPS (needs `key`).
    pub cert: Option<Spanned<String>>,
    /// PEM private key (needs `cert`).
    pub key: Option<Spanned<String>>,
    /// `/metrics` without the token on a non-loopback address.
    pub metrics_public: Option<bool>,
}

/// The `[checkpoint]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointSpec {
    /// Folder of checkpoints (default `checkpoints`); a folder per job inside.
    pub dir: Option<Spanned<String>>,
    /// Time between checkpoints, ms (default 10 000).
    pub interval_ms: Option<Spanned<u64>>,
    /// A checkpoint not complete after this long fails, ms (default 600 000).
    pub timeout_ms: Option<Spanned<u64>>,
    /// Least time between a completion and the next trigger, ms (default 0).
    pub min_pause_ms: Option<u64>,
    /// Most checkpoints in progress at once (default 1).
    pub max_concurrent: Option<Spanned<u32>>,
    /// Failed checkpoints in a row the job tolerates (default 0).
    pub tolerable_failures: Option<u32>,
    /// Completed checkpoints kept (default 3).
    pub retain: Option<Spanned<u32>>,
    /// `exactly-once` (default) or `at-least-once`.
    pub mode: Option<crate::plan::CheckpointMode>,
    /// RocksDB: checkpoints share unchanged files with earlier ones (default true).
    pub incremental: Option<bool>,
}

/// The `[restart]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestartSpec {
    /// `none`, `fixed-delay` or `exponential-backoff`.
    pub strategy: Spanned<RestartKind>,
    /// Restarts allowed before the job fails (default 3).
    pub attempts: Option<u32>,
    /// Delay before each restart (`fixed-delay`), ms (default 1 000).
    pub delay_ms: Option<u64>,
    /// First delay (`exponential-backoff`), ms (default 1 000).
    pub initial_delay_ms: Option<u64>,
    /// Largest delay (`exponential-backoff`), ms (default 60 000).
    pub max_delay_ms: Option<u64>,
    /// Growth of the delay (`exponential-backoff`, default 2.0).
    pub multiplier: Option<f64>,
}

/// Restart strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RestartKind {
    /// Fail the job at the first failure.
    None,
    /// Restart after a fixed delay.
    FixedDelay,
    /// Restart after a delay that grows with each failure.
    ExponentialBackoff,
}

/// The `[job]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSettings {
    /// The job's name (defaults to the file name).
    pub name: Option<String>,
    /// Default parallelism of every vertex (defaults to the number of
    /// cores); every vertex's parallelism is at most `max_parallelism`.
    pub parallelism: Option<Spanned<u32>>,
    /// Number of key groups, the upper bound of every parallelism: 1 to
    /// 32 768 as in Flink (default 128).
    pub max_parallelism: Option<Spanned<u32>>,
    /// Most records in one batch: 1 to 1 048 576 (default 1024).
    pub batch_size: Option<Spanned<u32>>,
    /// Batches a channel holds before its producer waits (backpressure): 1
    /// to 1024 (default 16), and `batch_size × channel_capacity` at most
    /// 16 777 216 records.
    pub channel_capacity: Option<Spanned<u32>>,
    /// Dead-letter file (JSON lines); defaults to `dead-letters.jsonl`.
    pub dead_letter: Option<Spanned<String>>,
    /// Limits applied to every Wasm instance.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Where keyed state lives: `heap` (default) or `rocksdb`.
    pub state_backend: Option<Spanned<BackendKind>>,
    /// Working folder of the RocksDB backend (default `weir-state`).
    pub state_dir: Option<Spanned<String>>,
}

/// Keyed state backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BackendKind {
    /// In memory; full snapshots.
    Heap,
    /// RocksDB on local disk; incremental snapshots when checkpoints ask.
    Rocksdb,
}

/// Resource limits of user functions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSpec {
    /// Longest one call into a function may run, in milliseconds.
    pub call_timeout_ms: Option<Spanned<u64>>,
    /// Largest linear memory of one instance, in MiB: 1 to 4096, all that
    /// a 32-bit Wasm memory can address (default 512).
    pub memory_mb: Option<Spanned<u64>>,
}

/// A `[[source]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceSpec {
    /// Stable identifier of the source (its state is saved under it).
    pub uid: Spanned<String>,
    /// Which connector.
    #[serde(rename = "type")]
    pub kind: Spanned<SourceKind>,
    /// File or folder of files to read (`file`).
    pub path: Option<Spanned<String>>,
    /// Keep waiting for more lines at the end of the files (`file`).
    pub follow: Option<bool>,
    /// Parallelism (a file source reading one file runs one subtask).
    pub parallelism: Option<Spanned<u32>>,
    /// Number of events to generate; endless when absent (`generator`).
    pub events: Option<Spanned<u64>>,
    /// Seed of the generator.
    pub seed: Option<u64>,
    /// Events per event-time second (`generator`).
    pub rate: Option<Spanned<u64>>,
    /// Number of cameras (`generator`).
    pub cameras: Option<Spanned<u32>>,
    /// Number of plates (`generator`).
    pub plates: Option<Spanned<u32>>,
    /// Share of dirty, late events (`generator`).
    pub dirty: Option<f64>,
    /// Wall-clock cap on events a second, per subtask (`generator`).
    pub events_per_second: Option<Spanned<u64>>,
    /// Generate watermarks from the records' event time.
    pub watermarks: Option<Spanned<WatermarksSpec>>,
    /// `host:port,...` of the Kafka brokers (`kafka`).
    pub bootstrap_servers: Option<Spanned<String>>,
    /// Topics read (`kafka`).
    pub topics: Option<Spanned<Vec<String>>>,
    /// A regular expression matching the whole names of the topics read
    /// (`kafka`, instead of `topics`).
    pub topic_pattern: Option<Spanned<String>>,
    /// How often to look for new partitions and topics, ms (`kafka`).
    pub discovery_interval_ms: Option<Spanned<u64>>,
    /// Consumer group (`kafka`, default `weir-{job}-{uid}`).
    pub group_id: Option<Spanned<String>>,
    /// `earliest`, `latest`, `committed` or `{ timestamp = ms }` (`kafka`).
    pub start: Option<Spanned<StartSpec>>,
    /// End at the end offsets of the start (`kafka`).
    pub bounded: Option<bool>,
    /// `raw`, `lines` or `json` (`kafka`).
    pub format: Option<crate::connectors::kafka::Format>,
    /// Hand the UDF key, value, headers and position as one JSON object
    /// (`kafka`, `format = "json"`).
    pub envelope: Option<Spanned<bool>>,
    /// `read-committed` (default) or `read-uncommitted` (`kafka`).
    pub isolation: Option<crate::connectors::kafka::Isolation>,
    /// Longest wait before a batch goes downstream, ms (`kafka`, default 100).
    pub linger_ms: Option<Spanned<u64>>,
    /// librdkafka settings (`kafka`).
    pub properties: Option<Spanned<BTreeMap<String, PropertyValue>>>,
}

/// A watermark strategy: `watermarks = { strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 5000 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatermarksSpec {
    /// `bounded-out-of-orderness`, `monotonous` or `punctuated`.
    pub strategy: WatermarkKind,
    /// How late a record may be and still be on time (bounded), ms.
    pub max_out_of_orderness_ms: Option<u64>,
    /// How often a watermark is emitted, ms (default 0: after every batch,
    /// deterministic; a positive value is Flink's wall-clock period).
    pub interval_ms: Option<u64>,
    /// After this long without records the stream is idle, ms (default: never).
    pub idle_timeout_ms: Option<u64>,
    /// The module of a punctuated strategy's watermark generator (default:
    /// the operator's module).
    pub module: Option<Spanned<String>>,
    /// The watermark generator of a punctuated strategy.
    pub function: Option<Spanned<String>>,
}

/// Watermark strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum WatermarkKind {
    /// The largest timestamp seen minus a bound.
    BoundedOutOfOrderness,
    /// Timestamps never decrease: the largest timestamp seen.
    Monotonous,
    /// A Wasm watermark generator declares watermarks after records.
    Punctuated,
}

/// Source connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SourceKind {
    /// Lines of a text file (CSV, JSON lines, plain text).
    File,
    /// The built-in traffic generator.
    Generator,
    /// Kafka topics.
    Kafka,
}

/// A `[[operator]]` table: a user function.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperatorSpec {
    /// Stable identifier of the operator (its state is saved under it).
    pub uid: Spanned<String>,
    /// The uid of the vertex this operator reads from.
    pub input: Spanned<String>,
    /// Read the input's side output of this name instead of its main output.
    pub side_output: Option<String>,
    /// Path of the Wasm component.
    pub module: Spanned<String>,
    /// Name of the exported function to run.
    pub function: Spanned<String>,
    /// Parallelism of this operator.
    pub parallelism: Option<Spanned<u32>>,
    /// Partition the input by the key a key selector computes.
    pub key_by: Option<Spanned<KeyBySpec>>,
    /// Partitioning of the input when not keyed.
    pub partition: Option<Spanned<PartitionSpec>>,
    /// Parameters handed to the function at start (`${name}` references
    /// in them are expanded like every value).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Generate watermarks from the event time of this operator's output.
    pub watermarks: Option<Spanned<WatermarksSpec>>,
    /// Windows in event or processing time (for a window-aggregate function or a window join).
    pub window: Option<Spanned<WindowSpec>>,
    /// How long after its end (event time) a window still takes late records, ms.
    pub allowed_lateness_ms: Option<u64>,
    /// Side output that receives records too late for every window.
    pub late_output: Option<String>,
    /// When windows fire (default: when the watermark passes their end).
    pub trigger: Option<Spanned<TriggerSpec>>,
    /// The second input of a join or keyed co-process function.
    pub second_input: Option<Spanned<SecondInputSpec>>,
    /// How a join function pairs its inputs' records.
    pub join: Option<Spanned<JoinSpec>>,
    /// A process-window function run on the window aggregate's result.
    pub process: Option<Spanned<ProcessSpec>>,
    /// Evicts elements of firing windows (the window buffers its elements).
    pub evictor: Option<Spanned<EvictorSpec>>,
    /// How an async-map function's lookups run.
    #[serde(rename = "async")]
    pub async_: Option<Spanned<super::async_spec::AsyncSpec>>,
    /// The `[[lookup]]`s granted to an async-map function, by name.
    pub lookups: Option<Spanned<Vec<String>>>,
}

/// `second_input = { input = "right", key_by = { module = "m.wasm", function = "key" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecondInputSpec {
    /// The uid of the vertex the second input reads from.
    pub input: Spanned<String>,
    /// Read that vertex's side output of this name instead of its main output.
    pub side_output: Option<String>,
    /// Partition the second input by the key a key selector computes.
    pub key_by: Option<Spanned<KeyBySpec>>,
    /// `"broadcast"`: every record to every subtask, unkeyed (broadcast
    /// state, for keyed co-process functions).
    pub partition: Option<Spanned<PartitionSpec>>,
}

/// `join = { type = "interval", lower_ms = -2000, upper_ms = 1000 }` or
/// `join = { type = "window" }` (with the operator's `window`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinSpec {
    /// `window` or `interval`.
    #[serde(rename = "type")]
    pub kind: JoinKind,
    /// Lower bound of the right record's time relative to the left's (`interval`), ms.
    pub lower_ms: Option<i64>,
    /// Upper bound of the right record's time relative to the left's (`interval`), ms.
    pub upper_ms: Option<i64>,
}

/// Joins of two keyed streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum JoinKind {
    /// Pairs of records of a key in the same window.
    Window,
    /// Pairs of records of a key within a time interval of each other.
    Interval,
}

/// `window = { type = "tumbling", size_ms = 60000, time = "processing" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowSpec {
    /// `tumbling`, `sliding` or `session`.
    #[serde(rename = "type")]
    pub kind: WindowKind,
    /// Window size, ms (`tumbling`, `sliding`).
    pub size_ms: Option<u64>,
    /// Inactivity gap that closes a session (`session`), ms.
    pub gap_ms: Option<u64>,
    /// Distance between window starts (`sliding`), ms: 1 to `size_ms`, and
    /// `size_ms / slide_ms` (the windows each record is copied into) at
    /// most 10 000.
    pub slide_ms: Option<u64>,
    /// Alignment offset (time-zone aligned windows), ms.
    pub offset_ms: Option<i64>,
    /// Which clock places records in windows and fires them (default `event`).
    pub time: Option<WindowTimeSpec>,
}

/// The clock of a window assigner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum WindowTimeSpec {
    /// By the records' timestamps, fired by watermarks.
    Event,
    /// By the wall clock when the operator processes a record.
    Processing,
}

/// Window assigners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum WindowKind {
    /// Fixed-size, non-overlapping windows.
    Tumbling,
    /// Fixed-size windows starting every `slide_ms`.
    Sliding,
    /// Session windows closed by an inactivity gap of `gap_ms`.
    Session,
    /// One window per key for all time, fired by a trigger.
    Global,
}

/// `trigger = { type = "count", count = 100, purge = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerSpec {
    /// `event-time` (default), `count`, `processing-time`,
    /// `continuous-event-time` or `continuous-processing-time`.
    #[serde(rename = "type")]
    pub kind: TriggerKind,
    /// Records per firing (`count`).
    pub count: Option<u64>,
    /// Empty the window after each firing (any trigger; default false).
    pub purge: Option<bool>,
    /// Time between firings (`continuous-event-time`, `continuous-processing-time`), ms.
    /// No upper bound on `size_ms / interval_ms`: a window holds one pending
    /// firing at a time, so a short interval costs firings, not memory.
    pub interval_ms: Option<u64>,
    /// The exported window-trigger function of the operator's module (`wasm`).
    pub function: Option<Spanned<String>>,
}

/// Triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TriggerKind {
    /// Fire when the watermark passes the window's end.
    EventTime,
    /// Fire every `count` records.
    Count,
    /// Fire when the wall clock passes the window's end.
    ProcessingTime,
    /// Fire every `interval_ms` of event time, and at the window's end.
    ContinuousEventTime,
    /// Fire every `interval_ms` of wall-clock time.
    ContinuousProcessingTime,
    /// A window-trigger function in Wasm.
    Wasm,
}

/// A key selector: a function of a module.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBySpec {
    /// Path of the Wasm component.
    pub module: Spanned<String>,
    /// Name of the exported key selector.
    pub function: Spanned<String>,
}

/// Partitioning of a non-keyed edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PartitionSpec {
    /// Subtask `i` sends to subtask `i` (same parallelism only).
    Forward,
    /// Round-robin over the downstream subtasks.
    Rebalance,
    /// Every record to every downstream subtask.
    Broadcast,
}

/// A `[[sink]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkSpec {
    /// Stable identifier of the sink.
    pub uid: Spanned<String>,
    /// The uid of the vertex this sink reads from.
    pub input: Spanned<String>,
    /// Read the input's side output of this name instead of its main output.
    pub side_output: Option<String>,
    /// Which connector.
    #[serde(rename = "type")]
    pub kind: Spanned<SinkKind>,
    /// File to write (`file`), or folder (`files`).
    pub path: Option<Spanned<String>>,
    /// Connection string (`postgres`): `host=… port=… user=… dbname=…`.
    pub connection: Option<Spanned<String>>,
    /// Table the rows go to (`postgres`).
    pub table: Option<Spanned<String>>,
    /// Text column that receives each record (`postgres`, default `line`).
    pub column: Option<String>,
    /// `host:port,...` of the Kafka brokers (`kafka`).
    pub bootstrap_servers: Option<Spanned<String>>,
    /// Topic written (`kafka`).
    pub topic: Option<Spanned<String>>,
    /// `exactly-once` (default) or `at-least-once` (`kafka`).
    pub delivery: Option<crate::connectors::kafka::Delivery>,
    /// `raw` (default) or `envelope` (`kafka`).
    pub format: Option<crate::connectors::kafka::SinkFormat>,
    /// `default`, `key-hash`, `round-robin`, `fixed` or `{ module, function }` (`kafka`).
    pub partitioner: Option<Spanned<PartitionerSpec>>,
    /// librdkafka settings (`kafka`).
    pub properties: Option<Spanned<BTreeMap<String, PropertyValue>>>,
}

/// The `partitioner` of a Kafka sink: a name, or a partitioner function
/// `{ module = "m.wasm", function = "f", params = { ... } }`.
#[derive(Debug)]
pub(crate) enum PartitionerSpec {
    /// `default`, `key-hash`, `round-robin` or `fixed`.
    Name(String),
    /// A partitioner function of a module.
    Wasm {
        /// Path of the Wasm component.
        module: Spanned<String>,
        /// Name of the exported partitioner.
        function: Spanned<String>,
        /// Parameters handed to the function at start.
        params: BTreeMap<String, String>,
    },
}

impl<'de> Deserialize<'de> for PartitionerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // By hand rather than `untagged`: an untagged enum buffers its
        // input, and the buffered table loses the spans of its fields.
        struct Partitioner;
        impl<'de> serde::de::Visitor<'de> for Partitioner {
            type Value = PartitionerSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a partitioner name or a table `{ module = \"...\", function = \"...\" }`")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<PartitionerSpec, E> {
                Ok(PartitionerSpec::Name(name.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PartitionerSpec, A::Error> {
                use serde::de::Error as _;
                let (mut module, mut function, mut params) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "module" => module = Some(map.next_value()?),
                        "function" => function = Some(map.next_value()?),
                        "params" => params = Some(map.next_value()?),
                        other => return Err(A::Error::unknown_field(other, &["module", "function", "params"])),
                    }
                }
                Ok(PartitionerSpec::Wasm {
                    module: module.ok_or_else(|| A::Error::missing_field("module"))?,
                    function: function.ok_or_else(|| A::Error::missing_field("function"))?,
                    params: params.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_any(Partitioner)
    }
}

/// Sink connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SinkKind {
    /// One record a line on standard output.
    Stdout,
    /// One record a line in a file.
    File,
    /// Exactly-once: a folder of part files committed with checkpoints.
    Files,
    /// Exactly-once: rows in a PostgreSQL table, by two-phase commit.
    Postgres,
    /// A Kafka topic, at least once or exactly once (transactions).
    Kafka,
}

/// `process = { function = "describe_window" }`: a process-window function of
/// the operator's module, run on the result of its window aggregate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProcessSpec {
    /// Name of the exported process-window function.
    pub function: Spanned<String>,
}

/// `evictor = { type = "count", count = 3, after = false }`,
/// `{ type = "time", size_ms = 500 }` or `{ type = "wasm", function = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvictorSpec {
    /// `count`, `time` or `wasm`.
    #[serde(rename = "type")]
    pub kind: EvictorKind,
    /// Elements to keep (`count`).
    pub count: Option<u64>,
    /// Keep the elements younger than the newest one by less than this, ms (`time`).
    pub size_ms: Option<u64>,
    /// Evict after the window function instead of before (`count`, `time`; default false).
    pub after: Option<bool>,
    /// The exported window-evictor function of the operator's module (`wasm`).
    pub function: Option<Spanned<String>>,
}

/// Evictors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EvictorKind {
    /// Keep the last `count` elements (Flink's `CountEvictor`).
    Count,
    /// Keep the elements within `size_ms` of the newest (Flink's `TimeEvictor`).
    Time,
    /// A window-evictor function in Wasm.
    Wasm,
}

/// The `start` of a Kafka source: a name or `{ timestamp = ms }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StartSpec {
    /// `earliest`, `latest` or `committed`.
    Name(String),
    /// `{ timestamp = ms }`.
    At(StartAt),
}

/// `start = { timestamp = ms }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartAt {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// A value of `properties`: librdkafka takes every setting as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum PropertyValue {
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean (`true`/`false`, as librdkafka spells them).
    Bool(bool),
}

impl std::fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Integer(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}
