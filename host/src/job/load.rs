//! Loading a job file: parse, expand parameters, check everything, and build
//! the [`JobPlan`]. Every problem is reported with the file, line and field,
//! and all problems are reported at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::error::{JobFileError, JobFileErrors, Locator};
use super::spec::{BackendKind, JobSpec, PartitionSpec};
use crate::plan::{FunctionRef, JobPlan, StateBackendConfig, VertexKind, Watermarks};
use crate::wasm::{UdfModule, WasmRuntime};

mod coerce;
mod connectors;
mod document;
mod graph;
mod http;
mod kafka;
mod limits;
mod lookup;
mod operator;
mod recovery;
mod two_input;
mod watermarks;
mod window;

/// Default number of key groups.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// Default most records in one batch.
pub(crate) const DEFAULT_BATCH_SIZE: u32 = 1024;
/// Default batches a channel holds.
pub(crate) const DEFAULT_CHANNEL_CAPACITY: u32 = 16;
/// Default longest call into a function.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 10_000;
/// Default largest memory of one instance.
pub const DEFAULT_MEMORY_MB: u64 = 512;
/// Most key groups: Flink's upper bound of `maxParallelism` (2^15).
pub(crate) const MAX_MAX_PARALLELISM: u32 = 1 << 15;
/// Most records in one batch (2^20): batches are allocated whole.
pub(crate) const MAX_BATCH_SIZE: u32 = 1 << 20;
/// Most batches a channel holds.
pub(crate) const MAX_CHANNEL_CAPACITY: u32 = 1024;
/// Most records waiting in one channel (`batch_size × channel_capacity`, 2^24).
pub(crate) const MAX_RECORDS_PER_CHANNEL: u64 = 1 << 24;
/// Largest memory of one instance: all a 32-bit Wasm memory can address.
pub(crate) const MAX_MEMORY_MB: u64 = 4096;
/// Most sliding windows one record belongs to (`size_ms / slide_ms`).
pub(crate) const MAX_WINDOWS_PER_RECORD: i64 = 10_000;

/// How to load a job.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadOptions {
    /// `--param name=value` overrides.
    pub params: Vec<(String, String)>,
    /// Folders searched for modules after the job file's own folder.
    pub module_path: Vec<PathBuf>,
    /// Parallelism used where the job file sets none (defaults to the cores).
    pub default_parallelism: Option<u32>,
}

/// Reads, checks and plans the job in `file`.
pub(crate) fn load_job(file: &Path, options: &LoadOptions, wasm: &WasmRuntime) -> Result<JobPlan, JobFileErrors> {
    let locator = Locator::new(file, "");
    let text = std::fs::read_to_string(file)
        .map_err(|e| JobFileErrors(vec![locator.file_error(format!("cannot read the job file: {e}"))]))?;
    load_job_text(file, &text, options, wasm)
}

/// Checks and plans a job given as text (`file` is used in messages and to
/// resolve relative module paths).
pub(crate) fn load_job_text(
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

/// Vertex under construction, before topological ordering. A two-input
/// operator's second edge is wired from `second_input` by `order`.
struct Draft {
    uid: String,
    line: usize,
    parallelism: u32,
    kind: VertexKind,
    input: Option<DraftInput>,
    /// The second input of a two-input operator.
    second_input: Option<DraftInput>,
    is_sink: bool,
    watermarks: Option<Watermarks>,
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
        let lookups = self.lookups(&spec.lookups);
        for operator in &spec.operators {
            drafts.push(self.operator(operator, default_parallelism, &lookups));
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
        settings.http = self.http(spec.http.as_ref());
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

    fn line_error(&self, line: usize, field: &str, message: impl Into<String>) -> JobFileError {
        JobFileError {
            file: self.locator.file().to_path_buf(),
            line: Some(line),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}
