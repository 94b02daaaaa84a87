//! The channels of one attempt: one bounded channel per (producer subtask,
//! consumer subtask) pair of every edge (`i → i` only for forward edges),
//! each tagged with the consumer's input it feeds, and, with checkpointing,
//! the channels between the coordinator and every subtask.

use std::collections::HashMap;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::checkpoint::coordinator::{ToCoordinator, ToTask};
use crate::exchange::Message;
use crate::plan::CheckpointSettings;
use crate::plan::{JobPlan, Partitioning, Side};
use crate::storage::TaskId;
use crate::storage::files::CheckpointStorage;

/// An incoming channel, with the consumer's logical input it belongs to.
pub(super) type InputChannel = (Receiver<Message>, Side);

/// An outgoing edge before its subtask thread builds the route.
pub(super) struct EdgeWiring {
    /// The consuming vertex.
    pub(super) consumer: usize,
    /// Which input of the consumer the edge is.
    pub(super) input: Side,
    /// One channel per consumer subtask it reaches.
    pub(super) targets: Vec<Sender<Message>>,
}

/// The checkpoint channels of one attempt, when checkpointing is on.
pub(super) struct CheckpointChannels {
    pub(super) settings: CheckpointSettings,
    pub(super) storage: CheckpointStorage,
    pub(super) inbox: Receiver<ToCoordinator>,
    pub(super) to_coordinator: Sender<ToCoordinator>,
    pub(super) to_tasks: HashMap<TaskId, Sender<ToTask>>,
    pub(super) from_coordinator: HashMap<TaskId, Receiver<ToTask>>,
}

/// Per vertex and subtask: its outgoing edges and its incoming channels.
pub(super) type Wiring = (Vec<Vec<Vec<EdgeWiring>>>, Vec<Vec<Vec<InputChannel>>>);

/// Creates the data channels of every edge of `plan`.
pub(super) fn wire(plan: &JobPlan) -> Wiring {
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

    (outputs, inputs)
}

/// Every subtask of `plan`, vertex by vertex.
pub(super) fn all_tasks(plan: &JobPlan) -> Vec<TaskId> {
    plan.vertices
        .iter()
        .flat_map(|v| {
            (0..v.parallelism).map(move |subtask| TaskId {
                uid: v.uid.clone(),
                subtask,
            })
        })
        .collect()
}

impl CheckpointChannels {
    /// The channels between a coordinator and `tasks`.
    pub(super) fn new(settings: &CheckpointSettings, storage: &CheckpointStorage, tasks: &[TaskId]) -> Self {
        let (to_coordinator, inbox) = unbounded();
        let mut to_tasks = HashMap::new();
        let mut from_coordinator = HashMap::new();
        for task in tasks {
            let (tx, rx) = unbounded();
            to_tasks.insert(task.clone(), tx);
            from_coordinator.insert(task.clone(), rx);
        }
        Self {
            settings: settings.clone(),
            storage: storage.clone(),
            inbox,
            to_coordinator,
            to_tasks,
            from_coordinator,
        }
    }
}
