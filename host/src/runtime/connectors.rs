//! The sources and sinks of a subtask, built from the plan's connector
//! settings; transactional sinks run behind the two-phase-commit operator.

use crate::connectors::file_sink::FileSink;
use crate::connectors::file_source::{FileSource, assigned_files};
use crate::connectors::files_sink::FilesSink;
use crate::connectors::generator::{GeneratorSource, redistribute};
use crate::connectors::postgres_sink::PostgresSink;
use crate::connectors::stdout_sink::StdoutSink;
use crate::connectors::{Source, TransactionalSink};
use crate::exchange::TaskError;
use crate::operators::Operator;
use crate::operators::sink::SinkOperator;
use crate::operators::two_phase_commit::TwoPhaseCommitOperator;
use crate::plan::{SinkConfig, SourceConfig, VertexKind};

use super::subtask::Subtask;

impl Subtask<'_> {
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

    pub(super) fn source(&self, config: &SourceConfig) -> Result<Box<dyn Source>, TaskError> {
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
                // Periodic strategies become per-partition watermarks.
                let watermarks = self.vertex.watermarks.as_ref().map(|w| w.strategy);
                let watermarks = watermarks.filter(|s| !s.punctuated);
                let scope = self.kafka_scope();
                let source = crate::connectors::kafka::KafkaSource::open(config, &scope, &restored, watermarks)
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

    pub(super) fn sink(&self, config: &SinkConfig) -> Result<Box<dyn Operator>, TaskError> {
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
                // A partitioner function runs here, on the sink's thread.
                let partitioner = match &config.partitioner {
                    crate::connectors::kafka::config::Partitioner::Wasm(function) => {
                        Some(self.instance_of(uid, function, self.vertex.parallelism, None)?)
                    }
                    _ => None,
                };
                let sink = crate::connectors::kafka::KafkaSink::open(config, &self.kafka_scope(), partitioner)
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
            self.link.is_some(),
        )?))
    }
}
