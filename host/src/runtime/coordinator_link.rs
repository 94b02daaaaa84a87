//! A subtask's link to the checkpoint coordinator.
//!
//! Acknowledging a checkpoint is where asynchronous snapshots happen: the
//! subtask hands over a consistent view of its state, and a short-lived
//! thread writes it into checkpoint storage and then acknowledges, while the
//! subtask goes back to its records.

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::coordinator::{ToCoordinator, ToTask};
use crate::operators::OperatorSnapshot;
use crate::plan::CheckpointMode;
use crate::storage::files::FileStore;
use crate::storage::manifest::{TaskState, WatermarkSnapshot};
use crate::storage::{CheckpointId, TaskId};

/// The checkpointing side of one subtask.
///
/// It keeps the threads that write its snapshots: before the subtask reports
/// that it has finished, every acknowledgement must have gone out, or the
/// coordinator could complete a checkpoint with the subtask's older state.
pub(crate) struct CoordinatorLink {
    /// Who this subtask is.
    pub task: TaskId,
    /// Its vertex's parallelism.
    pub parallelism: u32,
    /// Messages to the coordinator.
    pub to_coordinator: Sender<ToCoordinator>,
    /// Messages from the coordinator.
    pub from_coordinator: Receiver<ToTask>,
    /// Where state files go.
    pub files: FileStore,
    /// Aligned or not.
    pub mode: CheckpointMode,
    /// The job's key groups.
    pub max_parallelism: u32,
    /// Snapshot writers still running.
    pub writers: std::cell::RefCell<Vec<std::thread::JoinHandle<()>>>,
    /// Set when the attempt is cancelled (another subtask failed): a
    /// subtask waiting on the coordinator alone checks it.
    pub cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CoordinatorLink {
    fn state(&self, finished: bool, watermarks: WatermarkSnapshot) -> TaskState {
        TaskState {
            task: self.task.clone(),
            parallelism: self.parallelism,
            source_position: None,
            transactions: Vec::new(),
            keyed: None,
            finished,
            source_splits: Vec::new(),
            watermarks,
        }
    }

    /// A source acknowledges checkpoint `id` at `position` (and `splits`),
    /// with the progress of its watermark generator.
    pub(crate) fn ack_source(
        &self,
        id: CheckpointId,
        (position, splits): (u64, Vec<Vec<u8>>),
        watermarks: WatermarkSnapshot,
        finished: bool,
    ) {
        let state = TaskState {
            source_position: Some(position),
            source_splits: splits,
            ..self.state(finished, watermarks)
        };
        let _ = self.to_coordinator.send(ToCoordinator::Ack { id, state });
    }

    /// An operator acknowledges checkpoint `id` with its event-time
    /// progress; its keyed state is written on another thread, and the
    /// acknowledgement follows when it is.
    pub(crate) fn ack_operator(&self, id: CheckpointId, snapshot: OperatorSnapshot, watermarks: WatermarkSnapshot) {
        let mut state = self.state(false, watermarks);
        state.transactions = snapshot.transactions;
        let Some(keyed) = snapshot.keyed else {
            let _ = self.to_coordinator.send(ToCoordinator::Ack { id, state });
            return;
        };
        let files = self.files.clone();
        let to_coordinator = self.to_coordinator.clone();
        let task = self.task.clone();
        let max_parallelism = self.max_parallelism;
        let name = format!("chk{}-{}-{}", id.0, sanitize(&task.uid), task.subtask);
        let spawned = std::thread::Builder::new()
            .name(format!("snapshot-{task}"))
            .spawn(move || {
                match keyed
                    .state
                    .persist(&files, &name, &keyed.timers, keyed.key_groups, max_parallelism)
                {
                    Ok(handle) => {
                        state.keyed = Some(handle);
                        let _ = to_coordinator.send(ToCoordinator::Ack { id, state });
                    }
                    Err(error) => {
                        let _ = to_coordinator.send(ToCoordinator::Decline {
                            id,
                            task,
                            reason: error.to_string(),
                        });
                    }
                }
            });
        match spawned {
            Ok(writer) => {
                let mut writers = self.writers.borrow_mut();
                writers.retain(|w| !w.is_finished());
                writers.push(writer);
            }
            Err(error) => {
                let _ = self.to_coordinator.send(ToCoordinator::Decline {
                    id,
                    task: self.task.clone(),
                    reason: format!("cannot start the snapshot thread: {error}"),
                });
            }
        }
    }

    /// The subtask has finished: waits for its snapshot writers, then says so.
    pub(crate) fn finished(&self) {
        for writer in self.writers.borrow_mut().drain(..) {
            let _ = writer.join();
        }
        let _ = self.to_coordinator.send(ToCoordinator::Finished(self.task.clone()));
    }
}

impl Drop for CoordinatorLink {
    /// A subtask that failed leaves no snapshot writer behind: the next
    /// attempt may reuse its checkpoint ids, and so its file names.
    fn drop(&mut self) {
        for writer in self.writers.get_mut().drain(..) {
            let _ = writer.join();
        }
    }
}

/// A uid made safe for a file name.
fn sanitize(uid: &str) -> String {
    uid.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
