//! `weir upgrade` on the job's side: the link between the control API,
//! which takes the stop-with-savepoint of an upgrade, and `weir run`, which
//! swaps the operator's module and restores the job from that savepoint in
//! the same process (so the job keeps its id and registry entry).
//!
//! The request answers once the upgraded job runs again, with the pause:
//! from the stop request until the new attempt's tasks start (state
//! restored and migrated). A refused swap (say, a shape change without a
//! migration) answers with the refusal; the job then goes on with its old
//! module, restored from the same savepoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

/// An upgrade whose savepoint is taken: what `weir run` has to do.
#[derive(Debug)]
pub struct UpgradeRequest {
    /// The operator's uid.
    pub uid: String,
    /// The new module's file.
    pub module: PathBuf,
    /// The savepoint the job stopped with.
    pub savepoint: PathBuf,
    /// When the upgrade was asked for.
    pub requested: Instant,
    /// Where the outcome goes (the text after `ok`, or the refusal).
    pub reply: Sender<Result<String, String>>,
}

/// Upgrades asked for through the control API.
#[derive(Debug, Clone)]
pub struct Upgrades {
    pending: Arc<AtomicBool>,
    sender: Sender<UpgradeRequest>,
    receiver: Receiver<UpgradeRequest>,
}

impl Default for Upgrades {
    fn default() -> Self {
        let (sender, receiver) = unbounded();
        Self {
            pending: Arc::default(),
            sender,
            receiver,
        }
    }
}

impl Upgrades {
    /// Marks an upgrade as under way; `false` if one already is.
    pub fn begin(&self) -> bool {
        !self.pending.swap(true, Ordering::SeqCst)
    }

    /// Abandons the upgrade under way (its savepoint failed).
    pub fn abandon(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }

    /// Hands the upgrade, its savepoint taken, to `weir run`.
    pub fn submit(&self, request: UpgradeRequest) {
        let _ = self.sender.send(request);
    }

    /// After the job ended: the upgrade it ended for, if any.
    pub fn next(&self) -> Option<UpgradeRequest> {
        loop {
            match self.receiver.recv_timeout(Duration::from_millis(20)) {
                Ok(request) => {
                    self.pending.store(false, Ordering::SeqCst);
                    return Some(request);
                }
                Err(RecvTimeoutError::Timeout) if self.pending.load(Ordering::SeqCst) => {}
                Err(_) => return None,
            }
        }
    }
}
