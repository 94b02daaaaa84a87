//! One subtask of a vertex: its wiring, sources and sinks, its restored
//! state (keyed and operator), and the thread body that runs it. Operators
//! are built in [`super::build`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::Receiver;

use super::TaskError;
use super::coordinator_link::CoordinatorLink;
use super::message::Message;
use super::output::{Output, OutputEdge, Route};
use super::task::{run_operator, run_operator_inputs, run_source};
use crate::checkpoint::manifest::{GeneratorState, KeyedStateHandle, Manifest, TaskState, WatermarkSnapshot};
use crate::checkpoint::storage::FileStore;
use crate::connectors::file_sink::FileSink;
use crate::connectors::file_source::{FileSource, assigned_files};
use crate::connectors::files_sink::FilesSink;
use crate::connectors::generator::{GeneratorSource, redistribute};
use crate::connectors::postgres_sink::PostgresSink;
use crate::connectors::stdout_sink::StdoutSink;
use crate::connectors::{Source, TransactionalSink};
use crate::metrics::VertexMetrics;
use crate::operators::Operator;
use crate::operators::sink::SinkOperator;
use crate::operators::two_phase_commit::TwoPhaseCommitOperator;
use crate::plan::StateBackendConfig;
use crate::plan::{JobPlan, Partitioning, Side, SinkConfig, SourceConfig, Vertex, VertexKind};
use crate::state::KeyGroupRange;
use crate::state::heap::HeapBackend;
use crate::state::restore::{RestoreError, restore_keyed};
use crate::state::rocksdb::{RocksDbBackend, RocksDbOptions};
use crate::wasm::host_state::KeyedScope;

use super::executor::{EdgeWiring, InputChannel, Shared};

/// One subtask of one vertex, before it starts.
pub(super) struct Subtask<'a> {
    pub(super) shared: &'a Shared<'a>,
    pub(super) plan: &'a JobPlan,
    pub(super) vertex: &'a Vertex,
    pub(super) subtask: u32,
    pub(super) attempt: u32,
    pub(super) restore: Option<&'a Manifest>,
    pub(super) restore_files: Option<&'a FileStore>,
    pub(super) link: Option<CoordinatorLink>,
    pub(super) cancel: &'a AtomicBool,
}

impl Subtask<'_> {
    pub(super) fn plan(&self) -> &JobPlan {
        self.plan
    }

    pub(super) fn metrics(&self) -> Arc<VertexMetrics> {
        Arc::clone(&self.shared.metrics[self.vertex.index])
    }

    pub(super) fn run(&self, wiring: Vec<EdgeWiring>, channels: Vec<InputChannel>) -> Result<(), TaskError> {
        let (receivers, sides): (Vec<Receiver<Message>>, Vec<Side>) = channels.into_iter().unzip();
        let mut out = self.output(wiring)?;
        let link = self.link.as_ref();
        match &self.vertex.kind {
            VertexKind::Source(config) => {
                let mut source = self.source(config)?;
                run_source(
                    &self.vertex.uid,
                    source.as_mut(),
                    &mut out,
                    self.plan().settings.batch_size,
                    self.cancel,
                    link,
                    self.restored_watermarks(),
                )
            }
            VertexKind::Operator(plan) => {
                let mut operator = self.operator(plan)?;
                let restored = self.restored_watermarks();
                run_operator_inputs(operator.as_mut(), &receivers, &sides, &mut out, link, restored)
            }
            VertexKind::Sink(config) => {
                let mut operator = self.sink(config)?;
                run_operator(operator.as_mut(), &receivers, &mut out, link)
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
            SinkConfig::Postgres(config) => {
                let sink = PostgresSink::connect(config, &self.plan().name, uid, self.subtask)
                    .map_err(|e| self.connector_error(e))?;
                self.two_phase_commit(Box::new(sink))?
            }
        })
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
            self.link.is_some(),
        )?))
    }

    pub(super) fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(
            self.subtask,
            self.vertex.parallelism,
            self.plan().settings.max_parallelism,
        )
    }

    /// The keyed scope of this subtask: its state backend and timers, with
    /// the state of the restored checkpoint loaded for its key groups.
    pub(super) fn keyed_scope(&self) -> Result<KeyedScope, TaskError> {
        let uid = &self.vertex.uid;
        let restore_error = |source: RestoreError| TaskError::StateRestore {
            operator: uid.clone(),
            source,
        };
        let handles: Vec<&KeyedStateHandle> = self.restored().filter_map(|t| t.keyed.as_ref()).collect();
        let files = match (self.restore_files, &self.shared.storage, handles.is_empty()) {
            (Some(files), _, _) => Some(files),
            (None, Some(storage), _) => Some(storage.files()),
            (None, None, true) => None,
            (None, None, false) => return Err(restore_error(RestoreError::NoStorage)),
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
    pub(super) fn operator_scope(&self) -> Result<KeyedScope, TaskError> {
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
            .map_err(|source| TaskError::StateRestore {
                operator: self.vertex.uid.clone(),
                source,
            })?;
        }
        Ok(KeyedScope::new(Box::new(backend)))
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
            let Some(edge) = consumer.input_of(input) else {
                continue;
            };
            let route = match &edge.partitioning {
                Partitioning::Forward => Route::Forward,
                Partitioning::Rebalance => Route::Rebalance,
                Partitioning::Broadcast => Route::Broadcast,
                Partitioning::KeyBy(selector) => Route::KeyBy {
                    selector: Box::new(self.instance_of(&consumer.uid, selector, consumer.parallelism, None)?),
                    max_parallelism: self.plan().settings.max_parallelism,
                    consumer: consumer.uid.clone(),
                    module: selector.module.display_name(),
                },
            };
            edges.push(OutputEdge::new(edge.side_output.clone(), targets, route));
        }
        let watermarks = self.vertex.watermarks.as_ref();
        let punctuation = match watermarks.and_then(|w| w.punctuation.as_ref()) {
            Some(generator) => Some(self.instance_of(&self.vertex.uid, generator, self.vertex.parallelism, None)?),
            None => None,
        };
        Ok(
            Output::new(edges, Arc::clone(&self.shared.dead_letters), self.metrics())
                .with_watermarks(watermarks.map(|w| w.strategy))
                .with_punctuation(punctuation),
        )
    }
}

/// The event-time progress that subtask `subtask` of `parallelism`
/// inherits from the `old` subtasks of its vertex: its own at the same
/// parallelism; after rescaling, the least progress of the old subtasks
/// whose state it takes over (those with overlapping key groups when the
/// vertex is keyed with `max_parallelism` key groups, otherwise all of
/// them), so that nothing restored runs ahead of what it inherits.
pub(super) fn inherited_watermarks(
    old: &[&TaskState],
    subtask: u32,
    parallelism: u32,
    keyed: Option<u32>,
) -> WatermarkSnapshot {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TaskId;

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
