//! Loading a job file: parse, expand parameters, check everything, and build
//! the [`JobPlan`]. Every problem is reported with the file, line and field,
//! and all problems are reported at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::error::{JobFileError, JobFileErrors, Locator};
use super::plan::{
    Edge, FunctionRef, JobPlan, JoinConfig, Partitioning, SinkConfig, SourceConfig, StateBackendConfig, Vertex,
    VertexKind, Watermarks, WindowConfig,
};
use super::spec::{
    BackendKind, CheckpointSpec, JobSpec, KeyBySpec, PartitionSpec, RestartKind, RestartSpec, SinkKind, SourceKind,
    WatermarkKind, WatermarksSpec, WindowKind,
};
use crate::checkpoint::{CheckpointMode, CheckpointSettings};
use crate::connectors::generator::GeneratorConfig;
use crate::plan::restart::RestartStrategy;
use crate::time::watermarks::WatermarkStrategy;
use crate::time::windows::WindowAssigner;
use crate::wasm::{FunctionKind, UdfModule, WasmRuntime};
use std::time::Duration;

mod coerce;
mod document;
pub mod kafka;
mod limits;
mod two_input;
mod window_functions;

/// Default number of key groups.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// Default most records in one batch.
pub const DEFAULT_BATCH_SIZE: u32 = 1024;
/// Default batches a channel holds.
pub const DEFAULT_CHANNEL_CAPACITY: u32 = 16;
/// Default longest call into a function.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 10_000;
/// Default largest memory of one instance.
pub const DEFAULT_MEMORY_MB: u64 = 512;
/// Most key groups: Flink's upper bound of `maxParallelism` (2^15).
pub const MAX_MAX_PARALLELISM: u32 = 1 << 15;
/// Most records in one batch (2^20): batches are allocated whole.
pub const MAX_BATCH_SIZE: u32 = 1 << 20;
/// Most batches a channel holds.
pub const MAX_CHANNEL_CAPACITY: u32 = 1024;
/// Most records waiting in one channel (`batch_size × channel_capacity`, 2^24).
pub const MAX_RECORDS_PER_CHANNEL: u64 = 1 << 24;
/// Largest memory of one instance: all a 32-bit Wasm memory can address.
pub const MAX_MEMORY_MB: u64 = 4096;
/// Most sliding windows one record belongs to (`size_ms / slide_ms`).
pub const MAX_WINDOWS_PER_RECORD: i64 = 10_000;

/// How to load a job.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--param name=value` overrides.
    pub params: Vec<(String, String)>,
    /// Folders searched for modules after the job file's own folder.
    pub module_path: Vec<PathBuf>,
    /// Parallelism used where the job file sets none (defaults to the cores).
    pub default_parallelism: Option<u32>,
}

/// Reads, checks and plans the job in `file`.
pub fn load_job(file: &Path, options: &LoadOptions, wasm: &WasmRuntime) -> Result<JobPlan, JobFileErrors> {
    let locator = Locator::new(file, "");
    let text = std::fs::read_to_string(file)
        .map_err(|e| JobFileErrors(vec![locator.file_error(format!("cannot read the job file: {e}"))]))?;
    load_job_text(file, &text, options, wasm)
}

/// Checks and plans a job given as text (`file` is used in messages and to
/// resolve relative module paths).
pub fn load_job_text(
    file: &Path,
    text: &str,
    options: &LoadOptions,
    wasm: &WasmRuntime,
) -> Result<JobPlan, JobFileErrors> {
    let locator = Locator::new(file, text);
    let document::Document {
        spec,
        errors,
        unresolved,
    } = document::read(text, &locator, &options.params)?;
    let mut builder = Builder {
        locator,
        unresolved,
        errors,
        module_dirs: module_dirs(file, &options.module_path),
        wasm,
        modules: HashMap::new(),
    };
    let plan = builder.plan(&spec, options);
    if builder.errors.is_empty() {
        Ok(plan)
    } else {
        Err(JobFileErrors(builder.errors))
    }
}

fn module_dirs(file: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = vec![file.parent().map(Path::to_path_buf).unwrap_or_default()];
    dirs.extend(extra.iter().cloned());
    if let Some(path) = std::env::var_os("WEIR_MODULE_PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// Vertex under construction, before topological ordering.
struct Draft {
    uid: String,
    line: usize,
    parallelism: u32,
    kind: VertexKind,
    input: Option<DraftInput>,
    is_sink: bool,
    watermarks: Option<Watermarks>,
    window: Option<WindowConfig>,
    /// The second input of a two-input operator.
    second_input: Option<DraftInput>,
    join: Option<JoinConfig>,
}

struct DraftInput {
    uid: Spanned<String>,
    partitioning: Option<DraftPartitioning>,
    side_output: Option<String>,
}

enum DraftPartitioning {
    Explicit(Spanned<PartitionSpec>),
    KeyBy(FunctionRef),
}

struct Builder<'a> {
    locator: Locator,
    /// Start offsets of the values whose parameters are unset (reported).
    unresolved: HashSet<usize>,
    errors: Vec<JobFileError>,
    module_dirs: Vec<PathBuf>,
    wasm: &'a WasmRuntime,
    modules: HashMap<PathBuf, Arc<UdfModule>>,
}

impl Builder<'_> {
    fn plan(&mut self, spec: &JobSpec, options: &LoadOptions) -> JobPlan {
        let default_parallelism = spec
            .job
            .parallelism
            .as_ref()
            .map(|p| self.positive(p, "job → parallelism"))
            .or(options.default_parallelism)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        let settings = self.settings(spec);
        let max_parallelism = settings.max_parallelism;

        let mut drafts = Vec::new();
        for source in &spec.sources {
            drafts.push(self.source(source, default_parallelism));
        }
        for operator in &spec.operators {
            drafts.push(self.operator(operator, default_parallelism));
        }
        for sink in &spec.sinks {
            drafts.push(self.sink(sink));
        }
        if spec.sources.is_empty() {
            self.errors.push(self.locator.file_error("the job has no [[source]]"));
        }
        if spec.sinks.is_empty() {
            self.errors.push(self.locator.file_error("the job has no [[sink]]"));
        }
        for draft in &drafts {
            if draft.parallelism > max_parallelism {
                let error = self.line_error(
                    draft.line,
                    &format!("`{}` → parallelism", draft.uid),
                    format!("{} exceeds max_parallelism {max_parallelism}", draft.parallelism),
                );
                self.errors.push(error);
            }
        }
        let vertices = self.order(drafts);
        let mut settings = settings;
        settings.checkpoint = spec.checkpoint.as_ref().map(|c| self.checkpoint(c));
        settings.restart = self.restart(spec.restart.as_ref(), settings.checkpoint.is_some());
        settings.state_backend = match spec.job.state_backend.as_ref().map(|b| *b.get_ref()) {
            None | Some(BackendKind::Heap) => StateBackendConfig::Heap,
            Some(BackendKind::Rocksdb) => StateBackendConfig::RocksDb {
                dir: spec
                    .job
                    .state_dir
                    .as_ref()
                    .map_or_else(|| PathBuf::from("weir-state"), |d| self.path(d)),
                incremental: spec
                    .checkpoint
                    .as_ref()
                    .and_then(|c| c.get_ref().incremental)
                    .unwrap_or(true),
            },
        };
        let name = spec.job.name.clone().unwrap_or_else(|| {
            self.locator
                .file()
                .file_stem()
                .map_or("job".into(), |s| s.to_string_lossy().into_owned())
        });
        JobPlan {
            name,
            settings,
            vertices,
        }
    }

    /// The watermarks of vertex `uid`; a punctuated strategy's generator
    /// comes from `module` (else `default_module`, the operator's).
    fn watermarks(
        &mut self,
        spec: &Spanned<WatermarksSpec>,
        uid: &str,
        default_module: Option<&Spanned<String>>,
    ) -> Watermarks {
        let spec_ref = spec.get_ref();
        let field = |name: &str| format!("`{uid}` → watermarks → {name}");
        let mut punctuation = None;
        if spec_ref.strategy != WatermarkKind::Punctuated {
            for (given, name) in [
                (spec_ref.function.is_some(), "function"),
                (spec_ref.module.is_some(), "module"),
            ] {
                if given {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        field(name),
                        "only a punctuated strategy has a watermark generator function",
                    ));
                }
            }
        }
        let bound = match spec_ref.strategy {
            WatermarkKind::Punctuated => {
                if spec_ref.max_out_of_orderness_ms.is_some() {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        field("max_out_of_orderness_ms"),
                        "a punctuated strategy has no out-of-orderness bound: its function decides the watermarks",
                    ));
                }
                match (&spec_ref.function, spec_ref.module.as_ref().or(default_module)) {
                    (Some(function), Some(module)) => {
                        punctuation = self.watermark_generator(module, function, &field("module"), &field("function"));
                    }
                    (None, _) => self.errors.push(self.locator.error(
                        spec.span(),
                        field("function"),
                        "a punctuated strategy needs `function`, a watermark generator",
                    )),
                    (Some(_), None) => self.errors.push(self.locator.error(
                        spec.span(),
                        field("module"),
                        "a punctuated strategy on a source needs `module`",
                    )),
                }
                0
            }
            WatermarkKind::Monotonous => {
                if spec_ref.max_out_of_orderness_ms.is_some() {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        format!("`{uid}` → watermarks → max_out_of_orderness_ms"),
                        "a monotonous strategy has no out-of-orderness bound",
                    ));
                }
                0
            }
            WatermarkKind::BoundedOutOfOrderness => match spec_ref.max_out_of_orderness_ms {
                Some(bound) => i64::try_from(bound).unwrap_or(i64::MAX),
                None => {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        format!("`{uid}` → watermarks → max_out_of_orderness_ms"),
                        "bounded-out-of-orderness needs `max_out_of_orderness_ms`",
                    ));
                    0
                }
            },
        };
        Watermarks {
            strategy: WatermarkStrategy {
                max_out_of_orderness_ms: bound,
                // Default 0: a watermark after every batch, so the same input gives
                // the same output whatever the machine's speed.
                interval: Duration::from_millis(spec_ref.interval_ms.unwrap_or(0)),
                idle_timeout: spec_ref.idle_timeout_ms.map(Duration::from_millis),
                punctuated: spec_ref.strategy == WatermarkKind::Punctuated,
            },
            punctuation,
        }
    }

    /// Loads the watermark generator of a punctuated strategy.
    fn watermark_generator(
        &mut self,
        module: &Spanned<String>,
        function: &Spanned<String>,
        module_field: &str,
        function_field: &str,
    ) -> Option<FunctionRef> {
        let generator = self.function(module, function, module_field, function_field, Vec::new())?;
        if generator.kind != FunctionKind::WatermarkGenerator {
            self.errors.push(self.locator.error(
                function.span(),
                function_field,
                format!(
                    "expected a watermark generator, found `{}`, a {} function",
                    generator.function, generator.kind
                ),
            ));
            return None;
        }
        Some(generator)
    }

    fn window(&mut self, operator: &super::spec::OperatorSpec, uid: &str) -> Option<WindowConfig> {
        let spanned = operator.window.as_ref()?;
        let spec = spanned.get_ref();
        let field = |name: &str| format!("operator `{uid}` → window → {name}");
        let positive = |value: u64| i64::try_from(value).ok().filter(|v| *v > 0);
        let offset = spec.offset_ms.unwrap_or(0);
        let assigner = match spec.kind {
            WindowKind::Global => WindowAssigner::Global,
            WindowKind::Session => match spec.gap_ms.and_then(positive) {
                Some(gap) => WindowAssigner::Session { gap },
                None => {
                    self.errors.push(self.locator.error(
                        spanned.span(),
                        field("gap_ms"),
                        "a session window needs `gap_ms` of at least 1",
                    ));
                    return None;
                }
            },
            WindowKind::Tumbling | WindowKind::Sliding => {
                let Some(size) = spec.size_ms.and_then(positive) else {
                    self.errors.push(
                        self.locator
                            .error(spanned.span(), field("size_ms"), "must be at least 1"),
                    );
                    return None;
                };
                if spec.kind == WindowKind::Tumbling {
                    WindowAssigner::Tumbling { size, offset }
                } else {
                    match spec.slide_ms.and_then(positive) {
                        Some(slide) if slide <= size => {
                            if !self.sliding_windows(size, slide, spanned.span(), &field("slide_ms")) {
                                return None;
                            }
                            WindowAssigner::Sliding { size, slide, offset }
                        }
                        _ => {
                            self.errors.push(self.locator.error(
                                spanned.span(),
                                field("slide_ms"),
                                format!("a sliding window needs `slide_ms` between 1 and its size ({size})"),
                            ));
                            return None;
                        }
                    }
                }
            }
        };
        let time = super::triggers::window_time(spec);
        let lateness = operator.allowed_lateness_ms.unwrap_or(0);
        let trigger = super::triggers::trigger(operator.trigger.as_ref().map(|t| t.get_ref()), time)
            .and_then(|trigger| super::triggers::check(assigner, time, trigger, lateness).map(|()| trigger));
        let trigger = match trigger {
            Ok(trigger) => trigger,
            Err(problem) => {
                let span = match (problem.field.starts_with("trigger"), operator.trigger.as_ref()) {
                    (true, Some(trigger)) => trigger.span(),
                    _ => spanned.span(),
                };
                self.errors.push(self.locator.error(
                    span,
                    format!("operator `{uid}` → {}", problem.field),
                    problem.message,
                ));
                return None;
            }
        };
        Some(WindowConfig {
            assigner,
            allowed_lateness_ms: i64::try_from(lateness).unwrap_or(i64::MAX),
            late_output: operator.late_output.clone(),
            trigger,
            time,
            functions: Default::default(),
        })
    }

    fn checkpoint(&mut self, spec: &Spanned<CheckpointSpec>) -> CheckpointSettings {
        let spec = spec.get_ref();
        let field = |name: &str| format!("checkpoint → {name}");
        CheckpointSettings {
            dir: spec
                .dir
                .as_ref()
                .map_or_else(|| PathBuf::from("checkpoints"), |d| self.path(d)),
            interval_ms: spec
                .interval_ms
                .as_ref()
                .map_or(10_000, |v| self.positive_u64(v, &field("interval_ms"))),
            timeout_ms: spec
                .timeout_ms
                .as_ref()
                .map_or(600_000, |v| self.positive_u64(v, &field("timeout_ms"))),
            min_pause_ms: spec.min_pause_ms.unwrap_or(0),
            max_concurrent: spec
                .max_concurrent
                .as_ref()
                .map_or(1, |v| self.positive(v, &field("max_concurrent"))) as usize,
            tolerable_failures: spec.tolerable_failures.unwrap_or(0),
            retain: spec.retain.as_ref().map_or(3, |v| self.positive(v, &field("retain"))) as usize,
            mode: spec.mode.unwrap_or(CheckpointMode::ExactlyOnce),
        }
    }

    fn restart(&mut self, spec: Option<&Spanned<RestartSpec>>, checkpointing: bool) -> RestartStrategy {
        let Some(spec) = spec else {
            // As in Flink: with checkpoints a failed job restarts, without it fails.
            return if checkpointing {
                RestartStrategy::FixedDelay {
                    attempts: 3,
                    delay: Duration::from_secs(1),
                }
            } else {
                RestartStrategy::None
            };
        };
        let spec = spec.get_ref();
        let attempts = spec.attempts.unwrap_or(3);
        match spec.strategy.get_ref() {
            RestartKind::None => RestartStrategy::None,
            RestartKind::FixedDelay => RestartStrategy::FixedDelay {
                attempts,
                delay: Duration::from_millis(spec.delay_ms.unwrap_or(1_000)),
            },
            RestartKind::ExponentialBackoff => {
                let multiplier = spec.multiplier.unwrap_or(2.0);
                if multiplier.is_nan() || multiplier < 1.0 {
                    self.errors.push(self.locator.error(
                        spec.strategy.span(),
                        "restart → multiplier",
                        format!("must be at least 1.0, found {multiplier}"),
                    ));
                }
                RestartStrategy::ExponentialBackoff {
                    attempts,
                    initial: Duration::from_millis(spec.initial_delay_ms.unwrap_or(1_000)),
                    max: Duration::from_millis(spec.max_delay_ms.unwrap_or(60_000)),
                    multiplier: multiplier.max(1.0),
                }
            }
        }
    }

    fn source(&mut self, spanned: &Spanned<super::spec::SourceSpec>, default_parallelism: u32) -> Draft {
        let source = spanned.get_ref();
        let uid = source.uid.get_ref().clone();
        let field = |name: &str| format!("source `{uid}` → {name}");
        let mut parallelism = source
            .parallelism
            .as_ref()
            .map_or(default_parallelism, |p| self.positive(p, &field("parallelism")));
        let kind = match source.kind.get_ref() {
            SourceKind::File => {
                let path = match &source.path {
                    Some(path) => self.path(path),
                    None => {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            field("path"),
                            "a file source needs `path`",
                        ));
                        PathBuf::new()
                    }
                };
                // One file is read by one subtask; a folder's files are
                // split over the subtasks.
                if !path.is_dir() {
                    parallelism = 1;
                }
                SourceConfig::File {
                    path,
                    follow: source.follow.unwrap_or(false),
                }
            }
            SourceKind::Generator => {
                let defaults = GeneratorConfig::default();
                let config = GeneratorConfig {
                    events: source.events.as_ref().map(|e| *e.get_ref()),
                    seed: source.seed.unwrap_or(defaults.seed),
                    rate: source
                        .rate
                        .as_ref()
                        .map_or(defaults.rate, |r| self.positive_u64(r, &field("rate"))),
                    cameras: source
                        .cameras
                        .as_ref()
                        .map_or(defaults.cameras, |c| self.positive(c, &field("cameras"))),
                    plates: source
                        .plates
                        .as_ref()
                        .map_or(defaults.plates, |p| self.positive(p, &field("plates"))),
                    dirty: source.dirty.unwrap_or(defaults.dirty),
                    events_per_second: source
                        .events_per_second
                        .as_ref()
                        .map(|r| self.positive_u64(r, &field("events_per_second"))),
                    ..defaults
                };
                SourceConfig::Generator(config)
            }
            SourceKind::Kafka => SourceConfig::Kafka(self.kafka_source(spanned, &uid)),
        };
        let watermarks = source.watermarks.as_ref().map(|w| self.watermarks(w, &uid, None));
        Draft {
            uid,
            line: self.locator.line_of(spanned.span().start),
            parallelism,
            kind: VertexKind::Source(kind),
            input: None,
            is_sink: false,
            watermarks,
            window: None,
            second_input: None,
            join: None,
        }
    }

    fn operator(&mut self, spanned: &Spanned<super::spec::OperatorSpec>, default_parallelism: u32) -> Draft {
        let operator = spanned.get_ref();
        let uid = operator.uid.get_ref().clone();
        let field = |name: &str| format!("operator `{uid}` → {name}");
        let parallelism = operator
            .parallelism
            .as_ref()
            .map_or(default_parallelism, |p| self.positive(p, &field("parallelism")));
        let params = operator
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>();
        let function = self.function(
            &operator.module,
            &operator.function,
            &field("module"),
            &field("function"),
            params,
        );
        let mut partitioning = operator.partition.clone().map(DraftPartitioning::Explicit);
        if let Some(key_by) = &operator.key_by
            && let Some(selector) = self.key_selector(key_by, &uid)
        {
            partitioning = Some(DraftPartitioning::KeyBy(selector));
        }
        let kind = match function {
            Some(function) => {
                match function.kind {
                                        FunctionKind::KeySelector => self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("function"),
                        format!(
                            "`{}` is a key selector; use it in `key_by`, not as an operator",
                            function.function
                        ),
                    )),
                    FunctionKind::WatermarkGenerator => self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("function"),
                        format!(
                            "`{}` is a watermark generator; use it in `watermarks = {{ strategy = \"punctuated\", function = ... }}`, not as an operator",
                            function.function
                        ),
                    )),
                    FunctionKind::ProcessWindow if operator.window.is_none() => self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("window"),
                        format!(
                            "`{}` is a process-window function: the operator needs `window`",
                            function.function
                        ),
                    )),
                    FunctionKind::WindowTrigger => self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("function"),
                        format!(
                            "`{}` is a window trigger; use it in `trigger = {{ type = \"wasm\", function = ... }}`, not as an operator",
                            function.function
                        ),
                    )),
                    FunctionKind::WindowEvictor => self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("function"),
                        format!(
                            "`{}` is a window evictor; use it in `evictor = {{ type = \"wasm\", function = ... }}`, not as an operator",
                            function.function
                        ),
                    )),
                    FunctionKind::WindowAggregate if operator.window.is_none() => self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("window"),
                        format!(
                            "`{}` is a window aggregate: the operator needs `window` (tumbling, sliding or session)",
                            function.function
                        ),
                    )),
                    // Without `key_by`, windows are over the whole stream
                    // (Flink's `windowAll`): one subtask sees every record.
                    FunctionKind::WindowAggregate | FunctionKind::ProcessWindow
                        if operator.key_by.is_none() && parallelism != 1 =>
                    {
                        self.errors.push(self.locator.error(
                            operator.function.span(),
                            field("parallelism"),
                            format!(
                                "`{}` windows the whole stream (no `key_by`), which runs as one subtask: set `parallelism = 1` or add `key_by`",
                                function.function
                            ),
                        ))
                    }
                    kind if !matches!(
                        kind,
                        FunctionKind::WindowAggregate | FunctionKind::ProcessWindow | FunctionKind::Join
                    )
                        && operator.window.is_some() =>
                    {
                        self.errors.push(self.locator.error(
                            operator.function.span(),
                            field("window"),
                            format!(
                                "`{}` is a {kind} function; windows need a window-aggregate or process-window function",
                                function.function
                            ),
                        ))
                    }
                    FunctionKind::KeyedProcess if operator.key_by.is_none() => self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("key_by"),
                        format!(
                            "`{}` is a keyed process function: the operator needs `key_by`",
                            function.function
                        ),
                    )),
                    _ => {}
                }
                VertexKind::Operator(function)
            }
            None => VertexKind::Sink(SinkConfig::Stdout), // placeholder; errors were recorded
        };
        let mut window = self.window(operator, &uid);
        let main_kind = match &kind {
            VertexKind::Operator(function) => Some(function.kind),
            _ => None,
        };
        self.window_functions(operator, &uid, main_kind, window.as_mut());
        let function = match &kind {
            VertexKind::Operator(function) => Some(function),
            _ => None,
        };
        let (second_input, join) = self.two_input(operator, &uid, function, window.as_ref());
        let watermarks = operator
            .watermarks
            .as_ref()
            .map(|w| self.watermarks(w, &uid, Some(&operator.module)));
        Draft {
            uid,
            line: self.locator.line_of(spanned.span().start),
            parallelism,
            kind,
            input: Some(DraftInput {
                uid: operator.input.clone(),
                partitioning,
                side_output: operator.side_output.clone(),
            }),
            is_sink: false,
            watermarks,
            window,
            second_input,
            join,
        }
    }

    fn key_selector(&mut self, key_by: &Spanned<KeyBySpec>, uid: &str) -> Option<FunctionRef> {
        self.key_selector_at(key_by, &format!("operator `{uid}` → key_by"))
    }

    /// Loads the key selector of `key_by`; errors name fields under `at`.
    fn key_selector_at(&mut self, key_by: &Spanned<KeyBySpec>, at: &str) -> Option<FunctionRef> {
        let spec = key_by.get_ref();
        let field = |name: &str| format!("{at} → {name}");
        let selector = self.function(
            &spec.module,
            &spec.function,
            &field("module"),
            &field("function"),
            Vec::new(),
        )?;
        if selector.kind != FunctionKind::KeySelector {
            self.errors.push(self.locator.error(
                spec.function.span(),
                field("function"),
                format!(
                    "expected a key selector, found `{}`, a {} function",
                    selector.function, selector.kind
                ),
            ));
            return None;
        }
        Some(selector)
    }

    fn sink(&mut self, spanned: &Spanned<super::spec::SinkSpec>) -> Draft {
        let sink = spanned.get_ref();
        let uid = sink.uid.get_ref().clone();
        let kind = match sink.kind.get_ref() {
            SinkKind::Stdout => SinkConfig::Stdout,
            SinkKind::Kafka => SinkConfig::Kafka(self.kafka_sink(spanned, &uid)),
            SinkKind::Postgres => {
                let field = |name: &str| format!("sink `{uid}` → {name}");
                let mut required = |value: &Option<Spanned<String>>, name: &str| match value {
                    Some(value) => self.text(value).unwrap_or_default(),
                    None => {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            field(name),
                            format!("a postgres sink needs `{name}`"),
                        ));
                        String::new()
                    }
                };
                let connection = required(&sink.connection, "connection");
                let table = required(&sink.table, "table");
                let mut config = crate::connectors::postgres_sink::PostgresSinkConfig::new(&connection, &table);
                if let Some(column) = &sink.column {
                    config.column = column.clone();
                }
                SinkConfig::Postgres(config)
            }
            SinkKind::Files => match &sink.path {
                Some(path) => SinkConfig::Files { path: self.path(path) },
                None => {
                    self.errors.push(self.locator.error(
                        spanned.span(),
                        format!("sink `{uid}` → path"),
                        "a files sink needs `path` (a folder)",
                    ));
                    SinkConfig::Stdout
                }
            },
            SinkKind::File => match &sink.path {
                Some(path) => SinkConfig::File { path: self.path(path) },
                None => {
                    self.errors.push(self.locator.error(
                        spanned.span(),
                        format!("sink `{uid}` → path"),
                        "a file sink needs `path`",
                    ));
                    SinkConfig::Stdout
                }
            },
        };
        Draft {
            uid,
            line: self.locator.line_of(spanned.span().start),
            parallelism: 1,
            kind: VertexKind::Sink(kind),
            input: Some(DraftInput {
                uid: sink.input.clone(),
                partitioning: None,
                side_output: sink.side_output.clone(),
            }),
            is_sink: true,
            watermarks: None,
            window: None,
            second_input: None,
            join: None,
        }
    }

    /// Loads `module` and checks that it exports `function`.
    fn function(
        &mut self,
        module: &Spanned<String>,
        function: &Spanned<String>,
        module_field: &str,
        function_field: &str,
        params: Vec<(String, String)>,
    ) -> Option<FunctionRef> {
        if self.unresolved.contains(&function.span().start) {
            return None; // its unset parameter is reported
        }
        let path = self.module(module, module_field)?;
        let loaded = match self.modules.get(&path) {
            Some(loaded) => Arc::clone(loaded),
            None => match self.wasm.load(&path) {
                Ok(loaded) => {
                    self.modules.insert(path.clone(), Arc::clone(&loaded));
                    loaded
                }
                Err(e) => {
                    self.errors
                        .push(self.locator.error(module.span(), module_field, e.to_string()));
                    return None;
                }
            },
        };
        let name = function.get_ref();
        let Some(info) = loaded.info.function(name) else {
            let exported: Vec<String> = loaded
                .info
                .functions
                .iter()
                .map(|f| format!("{} ({})", f.name, f.kind))
                .collect();
            self.errors.push(self.locator.error(
                function.span(),
                function_field,
                format!(
                    "module {} exports no function `{name}`; it exports: {}",
                    loaded.display_name(),
                    if exported.is_empty() {
                        "nothing".to_string()
                    } else {
                        exported.join(", ")
                    }
                ),
            ));
            return None;
        };
        Some(FunctionRef {
            declared: loaded.digest.clone(),
            module: Arc::clone(&loaded),
            function: name.clone(),
            kind: info.kind,
            params,
        })
    }

    /// Resolves a module path: relative to the job file's folder, then the
    /// module search path.
    fn module(&mut self, module: &Spanned<String>, field: &str) -> Option<PathBuf> {
        let expanded = self.text(module)?;
        let relative = PathBuf::from(&expanded);
        let candidates: Vec<PathBuf> = if relative.is_absolute() {
            vec![relative.clone()]
        } else {
            self.module_dirs.iter().map(|dir| dir.join(&relative)).collect()
        };
        if let Some(found) = candidates.iter().find(|path| path.is_file()) {
            return Some(found.clone());
        }
        let searched: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        self.errors.push(self.locator.error(
            module.span(),
            field,
            format!("module `{expanded}` not found (looked in: {})", searched.join(", ")),
        ));
        None
    }

    /// The text of a string value (parameters are expanded already), or
    /// `None` if one of its parameters is unset.
    fn text(&self, value: &Spanned<String>) -> Option<String> {
        (!self.unresolved.contains(&value.span().start)).then(|| value.get_ref().clone())
    }

    fn path(&self, value: &Spanned<String>) -> PathBuf {
        PathBuf::from(self.text(value).unwrap_or_default())
    }

    fn positive(&mut self, value: &Spanned<u32>, field: &str) -> u32 {
        if *value.get_ref() == 0 {
            self.errors
                .push(self.locator.error(value.span(), field, "must be at least 1"));
            return 1;
        }
        *value.get_ref()
    }

    fn positive_u64(&mut self, value: &Spanned<u64>, field: &str) -> u64 {
        if *value.get_ref() == 0 {
            self.errors
                .push(self.locator.error(value.span(), field, "must be at least 1"));
            return 1;
        }
        *value.get_ref()
    }

    /// Checks uids and inputs and orders the vertices so that every vertex
    /// follows its input.
    fn order(&mut self, drafts: Vec<Draft>) -> Vec<Vertex> {
        let mut by_uid: HashMap<String, usize> = HashMap::new();
        for (index, draft) in drafts.iter().enumerate() {
            if draft.uid.is_empty() {
                self.errors
                    .push(self.line_error(draft.line, "uid", "must not be empty"));
            }
            if let Some(&first) = by_uid.get(&draft.uid) {
                self.errors.push(self.line_error(
                    draft.line,
                    "uid",
                    format!(
                        "duplicate uid `{}` (first used on line {})",
                        draft.uid, drafts[first].line
                    ),
                ));
            } else {
                by_uid.insert(draft.uid.clone(), index);
            }
        }
        let mut inputs: Vec<[Option<usize>; 2]> = vec![[None, None]; drafts.len()];
        for (index, draft) in drafts.iter().enumerate() {
            let declared = [(&draft.input, "input"), (&draft.second_input, "second_input")];
            for (slot, (input, name)) in declared.into_iter().enumerate() {
                let Some(DraftInput { uid: input, .. }) = input else {
                    continue;
                };
                match by_uid.get(input.get_ref()) {
                    Some(&from) if drafts[from].is_sink => self.errors.push(self.locator.error(
                        input.span(),
                        format!("`{}` → {name}", draft.uid),
                        format!("`{}` is a sink; sinks have no output", input.get_ref()),
                    )),
                    Some(&from) => inputs[index][slot] = Some(from),
                    None => {
                        let mut known: Vec<&str> =
                            drafts.iter().filter(|d| !d.is_sink).map(|d| d.uid.as_str()).collect();
                        known.sort_unstable();
                        self.errors.push(self.locator.error(
                            input.span(),
                            format!("`{}` → {name}", draft.uid),
                            format!(
                                "no source or operator has uid `{}` (known: {})",
                                input.get_ref(),
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        // Topological order: depth first over the inputs (two at most).
        let mut order = Vec::with_capacity(drafts.len());
        let mut state = vec![0u8; drafts.len()]; // 0 new, 1 visiting, 2 done
        for start in 0..drafts.len() {
            // (vertex, next input slot to visit)
            let mut stack = vec![(start, 0usize)];
            while let Some(&mut (index, ref mut slot)) = stack.last_mut() {
                if *slot == 0 {
                    match state[index] {
                        2 => {
                            stack.pop();
                            continue;
                        }
                        1 => {
                            self.errors.push(self.line_error(
                                drafts[index].line,
                                "input",
                                format!("`{}` is part of a cycle of inputs", drafts[index].uid),
                            ));
                            stack.pop();
                            continue;
                        }
                        _ => state[index] = 1,
                    }
                }
                if *slot < 2 {
                    let next = inputs[index][*slot];
                    *slot += 1;
                    if let Some(from) = next
                        && state[from] != 2
                    {
                        if state[from] == 1 {
                            self.errors.push(self.line_error(
                                drafts[from].line,
                                "input",
                                format!("`{}` is part of a cycle of inputs", drafts[from].uid),
                            ));
                        } else {
                            stack.push((from, 0));
                        }
                    }
                    continue;
                }
                state[index] = 2;
                order.push(index);
                stack.pop();
            }
        }
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(pos, &index)| (index, pos)).collect();
        let mut slots: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
        let mut vertices = Vec::with_capacity(order.len());
        for (pos, &index) in order.iter().enumerate() {
            let Some(draft) = slots[index].take() else {
                continue;
            };
            let mut edges = [draft.input, draft.second_input]
                .into_iter()
                .zip(inputs[index])
                .map(|(input, from)| {
                    let (
                        Some(from),
                        Some(DraftInput {
                            partitioning,
                            side_output,
                            ..
                        }),
                    ) = (from, input)
                    else {
                        return None;
                    };
                    let upstream_parallelism = vertices.get(position[&from]).map_or(1, |v: &Vertex| v.parallelism);
                    Some(Edge {
                        from: position[&from],
                        partitioning: self.partitioning(
                            partitioning,
                            upstream_parallelism,
                            &draft.uid,
                            draft.parallelism,
                        ),
                        side_output,
                    })
                });
            let input = edges.next().flatten();
            let second_input = edges.next().flatten();
            vertices.push(Vertex {
                index: pos,
                uid: draft.uid,
                parallelism: draft.parallelism,
                kind: draft.kind,
                input,
                watermarks: draft.watermarks,
                window: draft.window.clone(),
                second_input,
                join: draft.join,
            });
        }
        vertices
    }

    fn partitioning(
        &mut self,
        draft: Option<DraftPartitioning>,
        upstream_parallelism: u32,
        uid: &str,
        parallelism: u32,
    ) -> Partitioning {
        match draft {
            Some(DraftPartitioning::KeyBy(selector)) => Partitioning::KeyBy(selector),
            Some(DraftPartitioning::Explicit(spec)) => match spec.get_ref() {
                PartitionSpec::Forward if upstream_parallelism != parallelism => {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        format!("operator `{uid}` → partition"),
                        format!(
                            "forward needs equal parallelism, but the input has {upstream_parallelism} subtasks and this operator {parallelism}"
                        ),
                    ));
                    Partitioning::Rebalance
                }
                PartitionSpec::Forward => Partitioning::Forward,
                PartitionSpec::Rebalance => Partitioning::Rebalance,
                PartitionSpec::Broadcast => Partitioning::Broadcast,
            },
            None if upstream_parallelism == parallelism => Partitioning::Forward,
            None => Partitioning::Rebalance,
        }
    }

    fn line_error(&self, line: usize, field: &str, message: impl Into<String>) -> JobFileError {
        JobFileError {
            file: self.locator.file().to_path_buf(),
            line: Some(line),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}
