//! The checkpoint coordinator: triggers checkpoints, collects every
//! subtask's acknowledgement, completes checkpoints and tells subtasks.
//!
//! It runs on its own thread and talks to subtasks over channels only:
//! [`ToCoordinator`] from subtasks, [`ToTask`] to them. It stops when every
//! subtask has dropped its end of the channel (the attempt is over).
//!
//! Bounded inputs: a source that reaches the end of its input waits for one
//! more trigger, emits that barrier and only then ends, so the final
//! checkpoint covers everything; when every source waits, the coordinator
//! triggers at once. A subtask that has finished is no longer asked to
//! acknowledge; its last state is carried into later manifests.
//!
//! Savepoints: a request from the control API triggers a checkpoint at once;
//! when it completes, it is copied into a savepoint folder
//! ([`super::savepoint`]) before retention runs, and the requester gets the
//! path. A stop request sends [`ToTask::Stop`] to the sources, and nothing
//! is triggered after it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::manifest::{Manifest, TaskState};
use super::savepoint::{SavepointRequest, SavepointSettings};
use super::storage::{CheckpointStorage, StorageError};
use super::{Barrier, CheckpointId, CheckpointSettings, TaskId};

/// From a subtask to the coordinator.
#[derive(Debug)]
pub enum ToCoordinator {
    /// The subtask's state for a checkpoint is written.
    Ack {
        /// The checkpoint.
        id: CheckpointId,
        /// The subtask's state.
        state: TaskState,
    },
    /// The subtask could not take or write its snapshot.
    Decline {
        /// The checkpoint.
        id: CheckpointId,
        /// The subtask.
        task: TaskId,
        /// Why.
        reason: String,
    },
    /// A source reached the end of its input and waits for a last trigger.
    SourceAtEnd(TaskId),
    /// The subtask has finished.
    Finished(TaskId),
}

/// From the coordinator to a subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToTask {
    /// (Sources) take a snapshot and emit this barrier.
    Trigger(Barrier),
    /// (Sources) take a snapshot, emit this barrier and stop: the savepoint
    /// of `weir stop`. No watermark follows.
    Stop(Barrier),
    /// The checkpoint is complete: commit what was pre-committed for it.
    Complete(CheckpointId),
    /// The checkpoint was abandoned.
    Abort(CheckpointId),
}

/// Why the coordinator gave up: the job must fail. (It fails the job before
/// telling subtasks, so the job's error is this one, not a consequence.)
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// More checkpoints failed in a row than the job tolerates.
    #[error("{failures} checkpoints failed in a row, more than the {tolerable} tolerated; the last: {last}")]
    TooManyFailures {
        /// Failures in a row.
        failures: u32,
        /// The tolerated number.
        tolerable: u32,
        /// The last failure.
        last: String,
    },
}

struct Pending {
    barrier: Barrier,
    started: Instant,
    acks: HashMap<TaskId, TaskState>,
    /// The savepoint this checkpoint is for, if any.
    savepoint: Option<SavepointRequest>,
}

/// Everything the coordinator needs for one attempt of a job.
pub struct Coordinator {
    /// Settings.
    pub settings: CheckpointSettings,
    /// Where checkpoints go.
    pub storage: CheckpointStorage,
    /// The job's name.
    pub job: String,
    /// Key groups of the job.
    pub max_parallelism: u32,
    /// Every subtask of the job.
    pub tasks: Vec<TaskId>,
    /// The control channel of every subtask.
    pub to_tasks: HashMap<TaskId, Sender<ToTask>>,
    /// The source subtasks.
    pub sources: Vec<TaskId>,
    /// The first id to use (one after the restored checkpoint).
    pub next_id: u64,
    /// States of subtasks that had finished in the restored checkpoint.
    pub finished: HashMap<TaskId, TaskState>,
    /// Savepoints asked for through the control API (`None`: none can be).
    pub savepoints: Option<SavepointSettings>,
    /// The module of every operator, recorded in every checkpoint.
    pub modules: Vec<super::manifest::OperatorModule>,
}

impl Coordinator {
    /// Runs until every subtask has gone; fails if too many checkpoints fail.
    pub fn run(mut self, inbox: Receiver<ToCoordinator>) -> Result<(), CheckpointError> {
        let interval = Duration::from_millis(self.settings.interval_ms);
        let mut pending: BTreeMap<CheckpointId, Pending> = BTreeMap::new();
        let mut latest: HashMap<TaskId, TaskState> = self.finished.clone();
        let mut finished: HashSet<TaskId> = self.finished.keys().cloned().collect();
        let mut at_end: HashSet<TaskId> = HashSet::new();
        let mut failures = 0u32;
        let mut last_trigger = Instant::now();
        let mut last_completion = Instant::now() - Duration::from_millis(self.settings.min_pause_ms);
        let mut stopping = false;
        loop {
            let now = Instant::now();
            self.savepoint_requests(&mut pending, &finished, &mut stopping);
            let all_sources_waiting = self
                .sources
                .iter()
                .filter(|s| !finished.contains(*s))
                .all(|s| at_end.contains(s))
                && self.sources.iter().any(|s| at_end.contains(s));
            let due = now.duration_since(last_trigger) >= interval
                && now.duration_since(last_completion) >= Duration::from_millis(self.settings.min_pause_ms)
                && pending.len() < self.settings.max_concurrent;
            let has_live_sources = self.sources.iter().any(|s| !finished.contains(s));
            if has_live_sources
                && !stopping
                && (due || (all_sources_waiting && !self.waiting_trigger_sent(&pending, &at_end)))
            {
                let barrier = Barrier {
                    id: CheckpointId(self.next_id),
                    timestamp_ms: crate::time::now_ms(),
                };
                self.next_id += 1;
                tracing::debug!("triggering checkpoint {}", barrier.id);
                for source in &self.sources {
                    if !finished.contains(source)
                        && let Some(channel) = self.to_tasks.get(source)
                    {
                        let _ = channel.send(ToTask::Trigger(barrier));
                    }
                }
                pending.insert(
                    barrier.id,
                    Pending {
                        barrier,
                        started: now,
                        acks: HashMap::new(),
                        savepoint: None,
                    },
                );
                last_trigger = now;
            }

            // Time out checkpoints that take too long.
            let timeout = Duration::from_millis(self.settings.timeout_ms);
            let expired: Vec<CheckpointId> = pending
                .iter()
                .filter(|(_, p)| now.duration_since(p.started) > timeout)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                fail_savepoint(pending.remove(&id), "the savepoint expired before completing");
                failures += 1;
                self.check_failures(failures, format!("checkpoint {id} expired before completing"))?;
                self.broadcast(ToTask::Abort(id));
            }

            let wait = interval
                .saturating_sub(now.duration_since(last_trigger))
                .max(Duration::from_millis(1));
            let message = match inbox.recv_timeout(wait.min(Duration::from_millis(50))) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match message {
                ToCoordinator::Ack { id, state } => {
                    latest.insert(state.task.clone(), state.clone());
                    if state.finished {
                        finished.insert(state.task.clone());
                    }
                    if let Some(p) = pending.get_mut(&id) {
                        p.acks.insert(state.task.clone(), state);
                    }
                }
                ToCoordinator::Decline { id, task, reason } => {
                    if let Some(p) = pending.remove(&id) {
                        fail_savepoint(Some(p), &format!("the savepoint was declined by {task}: {reason}"));
                        failures += 1;
                        self.check_failures(failures, format!("checkpoint {id} declined by {task}: {reason}"))?;
                        self.broadcast(ToTask::Abort(id));
                    }
                }
                ToCoordinator::SourceAtEnd(task) => {
                    at_end.insert(task);
                }
                ToCoordinator::Finished(task) => {
                    finished.insert(task);
                }
            }
            // Complete every checkpoint that has all its acknowledgements.
            let complete: Vec<CheckpointId> = pending
                .iter()
                .filter(|(_, p)| {
                    self.tasks
                        .iter()
                        .all(|t| p.acks.contains_key(t) || (finished.contains(t) && latest.contains_key(t)))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in complete {
                let Some(p) = pending.remove(&id) else { continue };
                match self.complete(&p, &latest, &finished) {
                    Ok(()) => {
                        failures = 0;
                        last_completion = Instant::now();
                        // Older checkpoints can no longer be the latest.
                        let older: Vec<CheckpointId> = pending.range(..id).map(|(id, _)| *id).collect();
                        for old in older {
                            fail_savepoint(pending.remove(&old), "a later checkpoint completed first");
                            self.broadcast(ToTask::Abort(old));
                        }
                        self.broadcast(ToTask::Complete(id));
                    }
                    Err(error) => {
                        failures += 1;
                        self.check_failures(failures, format!("checkpoint {id} could not be written: {error}"))?;
                        self.broadcast(ToTask::Abort(id));
                    }
                }
            }
        }
    }

    /// Triggers the savepoints asked for since the last call. A stop
    /// savepoint sends [`ToTask::Stop`], after which nothing is triggered.
    fn savepoint_requests(
        &mut self,
        pending: &mut BTreeMap<CheckpointId, Pending>,
        finished: &HashSet<TaskId>,
        stopping: &mut bool,
    ) {
        let Some(settings) = &self.savepoints else { return };
        while let Ok(request) = settings.control.requests.try_recv() {
            let live: Vec<&TaskId> = self.sources.iter().filter(|s| !finished.contains(*s)).collect();
            if *stopping {
                let _ = request.reply.send(Err("the job is stopping".into()));
                continue;
            }
            if live.is_empty() {
                let _ = request
                    .reply
                    .send(Err("every source has finished; the job is about to end".into()));
                continue;
            }
            let barrier = Barrier {
                id: CheckpointId(self.next_id),
                timestamp_ms: crate::time::now_ms(),
            };
            self.next_id += 1;
            tracing::info!(
                "triggering savepoint {}{}",
                barrier.id,
                if request.stop { " and stopping" } else { "" }
            );
            *stopping = request.stop;
            for source in live {
                if let Some(channel) = self.to_tasks.get(source) {
                    let message = if request.stop {
                        ToTask::Stop(barrier)
                    } else {
                        ToTask::Trigger(barrier)
                    };
                    let _ = channel.send(message);
                }
            }
            pending.insert(
                barrier.id,
                Pending {
                    barrier,
                    started: Instant::now(),
                    acks: HashMap::new(),
                    savepoint: Some(request),
                },
            );
        }
    }

    /// Whether a trigger already went out to the sources that wait at the end.
    fn waiting_trigger_sent(&self, pending: &BTreeMap<CheckpointId, Pending>, at_end: &HashSet<TaskId>) -> bool {
        pending
            .values()
            .any(|p| at_end.iter().all(|source| !p.acks.contains_key(source)))
    }

    fn complete(
        &self,
        pending: &Pending,
        latest: &HashMap<TaskId, TaskState>,
        finished: &HashSet<TaskId>,
    ) -> Result<(), StorageError> {
        let mut tasks = Vec::with_capacity(self.tasks.len());
        for task in &self.tasks {
            let state = match pending.acks.get(task) {
                Some(state) => state.clone(),
                None => {
                    let mut state = latest
                        .get(task)
                        .cloned()
                        .ok_or_else(|| StorageError::Format(format!("no state for finished subtask {task}")))?;
                    state.finished = finished.contains(task);
                    state
                }
            };
            tasks.push(state);
        }
        let manifest = Manifest {
            id: pending.barrier.id,
            job: self.job.clone(),
            timestamp_ms: pending.barrier.timestamp_ms,
            max_parallelism: self.max_parallelism,
            tasks,
            modules: self.modules.clone(),
        };
        self.storage.commit(&manifest)?;
        tracing::info!("checkpoint {} complete", manifest.id);
        if let Some(settings) = &self.savepoints {
            settings
                .control
                .last_completed
                .store(manifest.id.0, std::sync::atomic::Ordering::Relaxed);
            if let Some(request) = &pending.savepoint {
                let target = request.target.as_ref().unwrap_or(&settings.default_dir);
                let written = super::savepoint::write(&manifest, self.storage.files(), target);
                if let Ok(path) = &written {
                    tracing::info!("savepoint written to {}", path.display());
                }
                let _ = request.reply.send(written.map_err(|e| e.to_string()));
            }
        }
        // Retention runs after the savepoint has its own copy of the files.
        self.storage.retain(self.settings.retain)
    }

    fn broadcast(&self, message: ToTask) {
        for channel in self.to_tasks.values() {
            let _ = channel.send(message);
        }
    }

    fn check_failures(&self, failures: u32, last: String) -> Result<(), CheckpointError> {
        tracing::warn!("{last}");
        if failures > self.settings.tolerable_failures {
            return Err(CheckpointError::TooManyFailures {
                failures,
                tolerable: self.settings.tolerable_failures,
                last,
            });
        }
        Ok(())
    }
}

/// Tells whoever asked for the savepoint of an abandoned checkpoint why.
fn fail_savepoint(pending: Option<Pending>, reason: &str) {
    if let Some(request) = pending.and_then(|p| p.savepoint) {
        let _ = request.reply.send(Err(reason.to_string()));
    }
}
