//! One subtask of a vertex: its wiring, sources and sinks, its restored
//! state (keyed and operator), and the thread body that runs it. Operators
//! are built in [`super::build`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::Receiver;

use super::coordinator_link::CoordinatorLink;
use super::task::{run_operator, run_operator_inputs, run_source};
use crate::exchange::TaskError;
use crate::exchange::message::Message;
use crate::exchange::output::{Output, OutputEdge, Route};
use crate::metrics::SubtaskMetrics;
use crate::plan::{JobPlan, Partitioning, Side, Vertex, VertexKind};
use crate::state::KeyGroupRange;
use crate::storage::files::FileStore;
use crate::storage::manifest::{GeneratorState, Manifest, TaskState, WatermarkSnapshot};

use super::executor::Shared;
use super::wiring::{EdgeWiring, InputChannel};

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

    pub(super) fn metrics(&self) -> Arc<SubtaskMetrics> {
        self.shared.metrics[self.vertex.index].subtask(self.subtask)
    }

    pub(super) fn run(&self, wiring: Vec<EdgeWiring>, channels: Vec<InputChannel>) -> Result<(), TaskError> {
        let (receivers, sides): (Vec<Receiver<Message>>, Vec<Side>) = channels.into_iter().unzip();
        let mut out = self.output(wiring)?;
        let link = self.link.as_ref();
        match &self.vertex.kind {
            VertexKind::Source(config) => {
                let mut source = self.source(config)?;
                if source.own_watermarks() {
                    out = out.with_watermarks(None);
                }
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
    pub(super) fn restored(&self) -> impl Iterator<Item = &TaskState> + '_ {
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
