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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

/// An upgrade whose savepoint is taken: what `weir run` has to do.
#[derive(Debug)]
pub(crate) struct UpgradeRequest {
    /// The operator's uid.
    pub uid: String,
    /// The new module's file.
    pub module: PathBuf,
    /// The savepoint the job stopped with.
    pub savepoint: PathBuf,
    /// When the upgrade was asked for.
    pub requested: Instant,
    /// Where the outcome goes (what runs now, or the refusal). Both
    /// are the control API's text reply to `weir upgrade` (a wire
    /// payload, not an error to handle), so they stay strings.
    pub reply: Sender<Result<String, String>>,
}

/// Why an upgrade of operator `uid` to a new module is refused before the
/// job stops for it or while its savepoint is prepared for the new module.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeRefused {
    /// The new module does not load.
    #[error(transparent)]
    Module(#[from] crate::wasm::ModuleError),
    /// The job has no operator with this uid.
    #[error("job `{job}` has no operator `{uid}`")]
    NoOperator {
        /// The job's name.
        job: String,
        /// The uid asked for.
        uid: String,
    },
    /// The uid names a source or a sink.
    #[error("`{uid}` is not an operator: it runs no module")]
    NotAnOperator {
        /// The uid asked for.
        uid: String,
    },
    /// The new module lacks the operator's function, or has it with another kind.
    #[error("module {module} {source}")]
    Mismatch {
        /// The new module's name and version.
        module: String,
        /// What does not match.
        source: crate::plan::ModuleMismatch,
    },
    /// The savepoint cannot be read.
    #[error(transparent)]
    Savepoint(#[from] crate::checkpoint::savepoint::SavepointError),
    /// The savepoint's state does not fit the new module.
    #[error(transparent)]
    HotSwap(Box<crate::checkpoint::hot_swap::HotSwapError>),
    /// The migrated savepoint cannot be written.
    #[error(transparent)]
    Storage(#[from] crate::storage::files::StorageError),
}

impl From<crate::checkpoint::hot_swap::HotSwapError> for UpgradeRefused {
    fn from(error: crate::checkpoint::hot_swap::HotSwapError) -> Self {
        Self::HotSwap(Box::new(error))
    }
}

/// Checks an upgrade (operator uid, module file) before the job stops for it.
pub(crate) type Precheck = Box<dyn Fn(&str, &Path) -> Result<(), UpgradeRefused> + Send>;

/// Upgrades asked for through the control API.
#[derive(Clone)]
pub(crate) struct Upgrades {
    pending: Arc<AtomicBool>,
    sender: Sender<UpgradeRequest>,
    receiver: Receiver<UpgradeRequest>,
    precheck: Arc<Mutex<Option<Precheck>>>,
}

impl std::fmt::Debug for Upgrades {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrades")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Default for Upgrades {
    fn default() -> Self {
        let (sender, receiver) = unbounded();
        Self {
            pending: Arc::default(),
            sender,
            receiver,
            precheck: Arc::default(),
        }
    }
}

impl Upgrades {
    /// Sets the checks an upgrade of the running job must pass before the
    /// job stops for it (the operator exists, the module loads and has the
    /// operator's function).
    pub(crate) fn set_precheck(&self, precheck: Precheck) {
        if let Ok(mut slot) = self.precheck.lock() {
            *slot = Some(precheck);
        }
    }

    /// Runs the checks of [`Self::set_precheck`].
    pub(crate) fn precheck(&self, uid: &str, module: &Path) -> Result<(), UpgradeRefused> {
        match self.precheck.lock() {
            Ok(slot) => slot.as_ref().map_or(Ok(()), |check| check(uid, module)),
            Err(_) => Ok(()),
        }
    }

    /// Marks an upgrade as under way; `false` if one already is.
    pub(crate) fn begin(&self) -> bool {
        !self.pending.swap(true, Ordering::SeqCst)
    }

    /// Abandons the upgrade under way (its savepoint failed).
    pub(crate) fn abandon(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }

    /// Hands the upgrade, its savepoint taken, to `weir run`.
    pub(crate) fn submit(&self, request: UpgradeRequest) {
        let _ = self.sender.send(request);
    }

    /// After the job ended: the upgrade it ended for, if any.
    pub(crate) fn next(&self) -> Option<UpgradeRequest> {
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
