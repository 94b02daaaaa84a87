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
//! Failed checkpoints: a checkpoint that is declined, expires or cannot be
//! written is abandoned — its files are deleted
//! ([`CheckpointStorage::discard`]), subtasks are told
//! ([`ToTask::Abort`]) and the failure counts towards the job's tolerance. A
//! two-phase-commit sink whose input has ended waits for its last
//! pre-committed checkpoint and says so ([`ToCoordinator::AwaitsCommit`]):
//! if that checkpoint fails, nothing can ever commit its output (it will
//! acknowledge no later checkpoint), so the coordinator fails the attempt,
//! which closes every control channel and ends every wait.
//!
//! Savepoints: a request from the control API triggers a checkpoint at once;
//! when it completes, it is copied into a savepoint folder
//! ([`super::savepoint`]) before retention runs, and the requester gets the
//! path. A stop request sends [`ToTask::Stop`] to the sources, and nothing
//! is triggered after it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::savepoint::{SavepointFailure, SavepointRequest, SavepointSettings};
use crate::metrics::checkpoints::{CheckpointRecord, CheckpointStatus};
use crate::metrics::live::LiveMetrics;
use crate::plan::CheckpointSettings;
use crate::storage::files::{CheckpointStorage, StorageError};
use crate::storage::manifest::{Manifest, TaskState};
use crate::storage::{Barrier, CheckpointId, TaskId};

/// From a subtask to the coordinator.
#[derive(Debug)]
pub(crate) enum ToCoordinator {
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
    /// The subtask's input has ended, and it waits until checkpoint `id` (or
    /// a later one) completes to commit what it pre-committed for it. It
    /// acknowledges no other checkpoint.
    AwaitsCommit {
        /// The subtask.
        task: TaskId,
        /// Its last pre-committed checkpoint.
        id: CheckpointId,
    },
    /// The subtask has finished.
    Finished(TaskId),
}

/// From the coordinator to a subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToTask {
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
pub(crate) enum CheckpointError {
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
    /// A subtask whose input has ended waits to commit what it pre-committed
    /// for a checkpoint that failed: no later checkpoint can commit it.
    #[error(
        "the final checkpoint {id} failed, so `{task}` can never commit the output it pre-committed for it: {cause}"
    )]
    FinalCheckpointFailed {
        /// The checkpoint.
        id: CheckpointId,
        /// The subtask that waits.
        task: TaskId,
        /// Why the checkpoint failed.
        cause: String,
    },
}

struct Pending {
    barrier: Barrier,
    started: Instant,
    acks: HashMap<TaskId, TaskState>,
    /// The savepoint this checkpoint is for, if any.
    savepoint: Option<SavepointRequest>,
}

/// What the coordinator knows about the checkpoints of one attempt.
#[derive(Default)]
struct Progress {
    /// Checkpoints triggered and neither complete nor abandoned.
    pending: BTreeMap<CheckpointId, Pending>,
    /// Each subtask's latest acknowledged state, and for which checkpoint (a
    /// finished subtask's is carried into later manifests).
    latest: HashMap<TaskId, (CheckpointId, TaskState)>,
    finished: HashSet<TaskId>,
    /// Sources that wait for their last trigger.
    at_end: HashSet<TaskId>,
    /// Checkpoints failed in a row.
    failures: u32,
    /// The newest complete checkpoint.
    last_completed: Option<CheckpointId>,
    /// Why each checkpoint abandoned since `last_completed` failed.
    failed: BTreeMap<CheckpointId, String>,
    /// Every checkpoint abandoned in this attempt (their remaining files go
    /// at its end).
    abandoned: BTreeSet<CheckpointId>,
    /// Subtasks whose input has ended, with the checkpoint each waits for.
    awaiting: BTreeMap<TaskId, CheckpointId>,
    /// A stop savepoint was triggered: nothing more is.
    stopping: bool,
}

impl Progress {
    /// Whether a checkpoint `id` or later has completed.
    fn covered(&self, id: CheckpointId) -> bool {
        self.last_completed.is_some_and(|done| done >= id)
    }

    /// The state files that a checkpoint completed later may still name:
    /// those of every latest and every pending acknowledgement.
    fn live_files(&self) -> HashSet<String> {
        let latest = self.latest.values().map(|(_, state)| state);
        let acks = self.pending.values().flat_map(|p| p.acks.values());
        state_files(latest.chain(acks))
    }
}

/// The names of the state files that `states` refer to.
fn state_files<'a>(states: impl Iterator<Item = &'a TaskState>) -> HashSet<String> {
    states
        .filter_map(|state| state.keyed.as_ref())
        .flat_map(|k| k.canonical.iter().chain(k.native.iter().map(|(_, f)| f)))
        .map(|file| file.name.clone())
        .collect()
}

/// Everything the coordinator needs for one attempt of a job.
pub(crate) struct Coordinator {
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
    pub modules: Vec<crate::storage::manifest::OperatorModule>,
    /// Where each checkpoint's outcome is recorded for the HTTP endpoint.
    pub live: Option<Arc<LiveMetrics>>,
}

impl Coordinator {
    /// Runs until every subtask has gone; fails if too many checkpoints fail
    /// in a row, or if a subtask waits to commit output that no checkpoint
    /// can commit any more. Checkpoints still pending at the end are
    /// abandoned and their files deleted.
    pub(crate) fn run(mut self, inbox: Receiver<ToCoordinator>) -> Result<(), CheckpointError> {
        let restored = CheckpointId(self.next_id.saturating_sub(1));
        let mut progress = Progress {
            latest: self
                .finished
                .iter()
                .map(|(task, state)| (task.clone(), (restored, state.clone())))
                .collect(),
            finished: self.finished.keys().cloned().collect(),
            ..Progress::default()
        };
        let result = self.coordinate(&mut progress, &inbox);
        // Nothing acknowledges a checkpoint any more.
        let unfinished: Vec<CheckpointId> = progress.pending.keys().copied().collect();
        for id in unfinished {
            // (A savepoint's requester learns when its reply channel closes.)
            progress.pending.remove(&id);
            progress.abandoned.insert(id);
        }
        if !progress.abandoned.is_empty() {
            match self.storage.discard_all(&progress.abandoned, &progress.live_files()) {
                Ok(deleted) => tracing::debug!("deleted {deleted} files of abandoned checkpoints"),
                Err(error) => tracing::warn!("cannot delete the files of abandoned checkpoints: {error}"),
            }
        }
        result
    }

    fn coordinate(&mut self, progress: &mut Progress, inbox: &Receiver<ToCoordinator>) -> Result<(), CheckpointError> {
        let interval = Duration::from_millis(self.settings.interval_ms);
        let mut last_trigger = Instant::now();
        // `None` until a checkpoint completes (no pause before the first;
        // subtracting the pause from now could underflow the clock).
        let mut last_completion: Option<Instant> = None;
        loop {
            let now = Instant::now();
            self.savepoint_requests(progress);
            let finished = &progress.finished;
            let all_sources_waiting = self
                .sources
                .iter()
                .filter(|s| !finished.contains(*s))
                .all(|s| progress.at_end.contains(s))
                && self.sources.iter().any(|s| progress.at_end.contains(s));
            let due = now.duration_since(last_trigger) >= interval
                && last_completion
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(self.settings.min_pause_ms))
                && progress.pending.len() < self.settings.max_concurrent;
            let has_live_sources = self.sources.iter().any(|s| !finished.contains(s));
            if has_live_sources
                && !progress.stopping
                && (due || (all_sources_waiting && !waiting_trigger_sent(progress)))
            {
                let barrier = Barrier {
                    id: CheckpointId(self.next_id),
                    timestamp_ms: crate::time::now_ms(),
                };
                self.next_id += 1;
                tracing::debug!("triggering checkpoint {}", barrier.id);
                for source in &self.sources {
                    if !progress.finished.contains(source)
                        && let Some(channel) = self.to_tasks.get(source)
                    {
                        let _ = channel.send(ToTask::Trigger(barrier));
                    }
                }
                progress.pending.insert(
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
            let expired: Vec<CheckpointId> = progress
                .pending
                .iter()
                .filter(|(_, p)| now.duration_since(p.started) > timeout)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                let Some(p) = progress.pending.remove(&id) else {
                    continue;
                };
                let p = fail_savepoint(p, SavepointFailure::Expired);
                self.abandon(progress, p, format!("checkpoint {id} expired before completing"))?;
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
                ToCoordinator::Ack { id, state } => self.on_ack(progress, id, state),
                ToCoordinator::Decline { id, task, reason } => {
                    if let Some(p) = progress.pending.remove(&id) {
                        let p = fail_savepoint(
                            p,
                            SavepointFailure::Declined {
                                task: task.clone(),
                                reason: reason.clone(),
                            },
                        );
                        self.abandon(progress, p, format!("checkpoint {id} declined by {task}: {reason}"))?;
                    } else {
                        // A late writer of an abandoned checkpoint: its temporaries.
                        self.discard(progress, id, &HashSet::new());
                    }
                }
                ToCoordinator::SourceAtEnd(task) => {
                    progress.at_end.insert(task);
                }
                ToCoordinator::AwaitsCommit { task, id } => {
                    progress.awaiting.insert(task, id);
                    check_awaiting(progress)?;
                }
                ToCoordinator::Finished(task) => {
                    progress.awaiting.remove(&task);
                    progress.finished.insert(task);
                }
            }
            // Complete every checkpoint that has all its acknowledgements.
            let complete: Vec<CheckpointId> = progress
                .pending
                .iter()
                .filter(|(_, p)| {
                    self.tasks.iter().all(|t| {
                        p.acks.contains_key(t) || (progress.finished.contains(t) && progress.latest.contains_key(t))
                    })
                })
                .map(|(id, _)| *id)
                .collect();
            for id in complete {
                let Some(p) = progress.pending.remove(&id) else {
                    continue;
                };
                match self.complete(&p, progress) {
                    Ok(()) => {
                        self.record(&p, None);
                        progress.failures = 0;
                        progress.last_completed = Some(id);
                        progress.failed.retain(|failed, _| *failed > id);
                        progress.awaiting.retain(|_, awaited| *awaited > id);
                        last_completion = Some(Instant::now());
                        // Older checkpoints can no longer be the latest.
                        let older: Vec<CheckpointId> = progress.pending.range(..id).map(|(id, _)| *id).collect();
                        for old in older {
                            let Some(p) = progress.pending.remove(&old) else {
                                continue;
                            };
                            let p = fail_savepoint(p, SavepointFailure::Superseded);
                            progress.abandoned.insert(old);
                            self.discard(progress, old, &state_files(p.acks.values()));
                            self.broadcast(ToTask::Abort(old));
                        }
                        self.broadcast(ToTask::Complete(id));
                    }
                    Err(error) => {
                        self.abandon(progress, p, format!("checkpoint {id} could not be written: {error}"))?;
                    }
                }
            }
        }
    }

    /// Records a subtask's acknowledgement. It may come after its checkpoint
    /// was abandoned: the state still counts as the subtask's latest (a
    /// finished subtask's is carried into later checkpoints), and its files
    /// go once a later acknowledgement replaces it.
    fn on_ack(&self, progress: &mut Progress, id: CheckpointId, state: TaskState) {
        let task = state.task.clone();
        if state.finished {
            progress.finished.insert(task.clone());
        }
        let replaced = progress.latest.insert(task.clone(), (id, state.clone()));
        if let Some(p) = progress.pending.get_mut(&id) {
            p.acks.insert(task, state);
        }
        if let Some((old, old_state)) = replaced
            && progress.abandoned.contains(&old)
        {
            self.discard(progress, old, &state_files(std::iter::once(&old_state)));
        }
    }

    /// Abandons checkpoint `p` (already out of `pending`) because of
    /// `cause`: deletes its files, counts the failure and tells subtasks.
    /// Fails the attempt when too many checkpoints failed in a row, or when a
    /// subtask waits to commit what it pre-committed for it.
    fn abandon(&self, progress: &mut Progress, p: Pending, cause: String) -> Result<(), CheckpointError> {
        let id = p.barrier.id;
        self.record(&p, Some(cause.clone()));
        progress.abandoned.insert(id);
        self.discard(progress, id, &state_files(p.acks.values()));
        progress.failures += 1;
        progress.failed.insert(id, cause.clone());
        self.check_failures(progress.failures, cause)?;
        check_awaiting(progress)?;
        self.broadcast(ToTask::Abort(id));
        Ok(())
    }

    /// Deletes the temporaries of the abandoned checkpoint `id` and those of
    /// its `files` that no later checkpoint may name.
    fn discard(&self, progress: &Progress, id: CheckpointId, files: &HashSet<String>) {
        match self.storage.discard(id, files, &progress.live_files()) {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!("deleted {deleted} files of abandoned checkpoint {id}"),
            Err(error) => tracing::warn!("cannot delete the files of abandoned checkpoint {id}: {error}"),
        }
    }

    /// Triggers the savepoints asked for since the last call. A stop
    /// savepoint sends [`ToTask::Stop`], after which nothing is triggered.
    fn savepoint_requests(&mut self, progress: &mut Progress) {
        let Some(settings) = &self.savepoints else { return };
        while let Ok(request) = settings.api.requests.try_recv() {
            let live: Vec<&TaskId> = self
                .sources
                .iter()
                .filter(|s| !progress.finished.contains(*s))
                .collect();
            if progress.stopping {
                let _ = request.reply.send(Err(SavepointFailure::Stopping));
                continue;
            }
            if live.is_empty() {
                let _ = request.reply.send(Err(SavepointFailure::SourcesFinished));
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
            progress.stopping = request.stop;
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
            progress.pending.insert(
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

    /// Records checkpoint `p` in the history: completed, or failed with
    /// `failure`.
    fn record(&self, p: &Pending, failure: Option<String>) {
        let Some(live) = &self.live else {
            return;
        };
        let mut acknowledged = BTreeMap::new();
        let mut state_sizes = BTreeMap::new();
        for (task, state) in &p.acks {
            *acknowledged.entry(task.uid.clone()).or_insert(0u32) += 1;
            if let Some(keyed) = &state.keyed {
                let size: u64 = keyed
                    .canonical
                    .iter()
                    .chain(keyed.native.iter().map(|(_, file)| file))
                    .map(|file| file.size)
                    .sum();
                *state_sizes
                    .entry((task.uid.clone(), keyed.backend.clone()))
                    .or_insert(0u64) += size;
            }
        }
        let completed = failure.is_none();
        let record = CheckpointRecord {
            id: p.barrier.id.0,
            status: if completed {
                CheckpointStatus::Completed
            } else {
                CheckpointStatus::Failed
            },
            is_savepoint: p.savepoint.is_some(),
            trigger_timestamp: p.barrier.timestamp_ms,
            duration_ms: u64::try_from(p.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            size_bytes: if completed { state_sizes.values().sum() } else { 0 },
            acknowledged,
            failure_message: failure,
        };
        live.checkpoints().record(record, completed.then_some(state_sizes));
    }

    /// Writes the manifest of `pending`, which has every acknowledgement:
    /// from then on the checkpoint is complete.
    fn complete(&self, pending: &Pending, progress: &Progress) -> Result<(), StorageError> {
        let mut tasks = Vec::with_capacity(self.tasks.len());
        for task in &self.tasks {
            let state = match pending.acks.get(task) {
                Some(state) => state.clone(),
                None => {
                    let mut state = progress
                        .latest
                        .get(task)
                        .map(|(_, state)| state.clone())
                        .ok_or_else(|| StorageError::Format(format!("no state for finished subtask {task}")))?;
                    state.finished = progress.finished.contains(task);
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
                .api
                .last_completed
                .store(manifest.id.0, std::sync::atomic::Ordering::Relaxed);
            if let Some(request) = &pending.savepoint {
                let target = request.target.as_ref().unwrap_or(&settings.default_dir);
                let written = super::savepoint::write(&manifest, self.storage.files(), target);
                if let Ok(path) = &written {
                    tracing::info!("savepoint written to {}", path.display());
                }
                let _ = request.reply.send(written.map_err(SavepointFailure::Write));
            }
        }
        // Retention runs after the savepoint has its own copy of the files.
        // The checkpoint is complete whether or not it succeeds.
        if let Err(error) = self.storage.retain(self.settings.retain) {
            tracing::warn!(
                "cannot delete checkpoints older than the {} retained: {error}",
                self.settings.retain
            );
        }
        Ok(())
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

/// Whether a trigger already went out to the sources that wait at the end.
fn waiting_trigger_sent(progress: &Progress) -> bool {
    progress
        .pending
        .values()
        .any(|p| progress.at_end.iter().all(|source| !p.acks.contains_key(source)))
}

/// Fails the attempt if a subtask whose input has ended waits for a
/// checkpoint that was abandoned and that no later one covers: the subtask
/// acknowledges nothing more, so no later checkpoint can complete either.
fn check_awaiting(progress: &Progress) -> Result<(), CheckpointError> {
    for (task, &id) in &progress.awaiting {
        if progress.pending.contains_key(&id) || progress.covered(id) {
            continue;
        }
        let cause = progress
            .failed
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("checkpoint {id} was abandoned"));
        tracing::debug!("{task} waits for checkpoint {id}, which failed");
        return Err(CheckpointError::FinalCheckpointFailed {
            id,
            task: task.clone(),
            cause,
        });
    }
    Ok(())
}

/// Tells whoever asked for the savepoint of an abandoned checkpoint why.
fn fail_savepoint(mut pending: Pending, reason: SavepointFailure) -> Pending {
    if let Some(request) = pending.savepoint.take() {
        let _ = request.reply.send(Err(reason));
    }
    pending
}

#[cfg(test)]
mod tests;
