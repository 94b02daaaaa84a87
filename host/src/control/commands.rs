//! What the control API does to a running job: take a savepoint, stop with
//! one, or upgrade an operator's module. The HTTP handlers
//! ([`super::http_control`]) run these on a blocking thread: a savepoint
//! waits for its checkpoint to complete, an upgrade for the job to run
//! again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crossbeam_channel::{Sender, bounded, unbounded};

use super::upgrade::{UpgradeRefused, UpgradeRequest, Upgrades};
use crate::checkpoint::savepoint::{ApiHandle, SavepointFailure, SavepointRequest};

/// Why a control command was not carried out. The messages are what
/// `weir savepoint`, `weir stop` and `weir upgrade` print.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// The job has no `[checkpoint]` table.
    #[error("job `{job}` has no [checkpoint] table; {what} need checkpointing")]
    NoCheckpointing {
        /// The job's name.
        job: String,
        /// `savepoints` or `upgrades`.
        what: &'static str,
    },
    /// The job is ending and takes no more requests.
    #[error("the job is ending")]
    Ending,
    /// The checkpoint coordinator could not take the savepoint.
    #[error("the savepoint failed: {0}")]
    Failed(SavepointFailure),
    /// The job failed or ended while the savepoint was pending.
    #[error("the savepoint was abandoned: the job failed or ended before it completed")]
    Abandoned,
    /// Another upgrade is under way.
    #[error("an upgrade of job `{0}` is already under way")]
    UpgradeUnderWay(String),
    /// The upgrade was refused before the job stopped for it.
    #[error("upgrade refused: {0}; the job goes on unchanged")]
    Refused(UpgradeRefused),
    /// The upgrade was refused after the stop (or the job ended meanwhile):
    /// `weir run`'s own words.
    #[error("{0}")]
    Upgrade(String),
}

impl CommandError {
    /// Whether the command named an operator the job does not have.
    pub(crate) fn is_unknown_operator(&self) -> bool {
        matches!(self, Self::Refused(UpgradeRefused::NoOperator { .. }))
    }
}

/// A running job as the control API sees it.
#[derive(Debug, Clone)]
pub(crate) struct JobControl {
    /// The job id (as in the registry).
    pub id: String,
    /// The job's name.
    pub name: String,
    checkpointing: bool,
    requests: Sender<SavepointRequest>,
    upgrades: Upgrades,
}

impl JobControl {
    /// The control of job `name` with id `id`, and the job's side of the
    /// link for [`crate::runtime::executor::RunOptions`]. Savepoints can be
    /// taken only if the job is `checkpointing`.
    pub(crate) fn new(id: &str, name: &str, checkpointing: bool) -> (Self, ApiHandle) {
        let (requests, receiver) = unbounded();
        let control = Self {
            id: id.to_string(),
            name: name.to_string(),
            checkpointing,
            requests,
            upgrades: Upgrades::default(),
        };
        let api = ApiHandle {
            requests: receiver,
            last_completed: Arc::new(AtomicU64::new(0)),
            resumed: Arc::default(),
        };
        (control, api)
    }

    /// Upgrades asked for through the API, for `weir run` to carry out.
    pub(crate) fn upgrades(&self) -> &Upgrades {
        &self.upgrades
    }

    /// Takes a savepoint into `target` (default: the job's savepoint
    /// folder), and stops the job with it if `stop`; returns its path.
    pub(crate) fn savepoint(&self, target: Option<PathBuf>, stop: bool) -> Result<PathBuf, CommandError> {
        if !self.checkpointing {
            return Err(CommandError::NoCheckpointing {
                job: self.name.clone(),
                what: "savepoints",
            });
        }
        let (reply, answer) = bounded(1);
        self.requests
            .send(SavepointRequest { target, stop, reply })
            .map_err(|_| CommandError::Ending)?;
        match answer.recv() {
            Ok(Ok(path)) => Ok(path),
            Ok(Err(reason)) => Err(CommandError::Failed(reason)),
            Err(_) => Err(CommandError::Abandoned),
        }
    }

    /// Upgrades operator `uid` to the module in `module`: stop with a
    /// savepoint, then wait for `weir run` to restore the job with the new
    /// module; returns what runs now and the pause.
    pub(crate) fn upgrade(&self, uid: &str, module: &Path) -> Result<String, CommandError> {
        if !self.checkpointing {
            return Err(CommandError::NoCheckpointing {
                job: self.name.clone(),
                what: "upgrades",
            });
        }
        self.upgrades.precheck(uid, module).map_err(CommandError::Refused)?;
        if !self.upgrades.begin() {
            return Err(CommandError::UpgradeUnderWay(self.name.clone()));
        }
        let requested = std::time::Instant::now();
        let savepoint = match self.savepoint(None, true) {
            Ok(path) => path,
            Err(error) => {
                self.upgrades.abandon();
                return Err(error);
            }
        };
        let (reply, outcome) = bounded(1);
        self.upgrades.submit(UpgradeRequest {
            uid: uid.to_string(),
            module: module.to_path_buf(),
            savepoint,
            requested,
            reply,
        });
        outcome
            .recv()
            .unwrap_or_else(|_| Err("the job ended before the upgrade completed".into()))
            .map_err(CommandError::Upgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_without_checkpointing_are_refused_and_savepoints_reach_the_coordinator() {
        let (control, api) = JobControl::new("0123456789abcdef", "demo", false);
        assert_eq!(
            control.savepoint(None, false).map_err(|e| e.to_string()),
            Err("job `demo` has no [checkpoint] table; savepoints need checkpointing".into())
        );
        assert_eq!(
            control.upgrade("count", Path::new("m.wasm")).map_err(|e| e.to_string()),
            Err("job `demo` has no [checkpoint] table; upgrades need checkpointing".into())
        );
        drop(api);

        let (control, api) = JobControl::new("0123456789abcdef", "demo", true);
        let coordinator = std::thread::spawn(move || {
            let request = api.requests.recv().expect("a request");
            assert!(request.stop);
            let target = request.target.clone().expect("a target");
            request
                .reply
                .send(Ok(target.join("savepoint-demo-000001")))
                .expect("sent");
            // The next request is abandoned: the job ends.
            let request = api.requests.recv().expect("a request");
            drop(request);
        });
        assert_eq!(
            control
                .savepoint(Some(PathBuf::from("/sp")), true)
                .map_err(|e| e.to_string()),
            Ok(PathBuf::from("/sp/savepoint-demo-000001"))
        );
        assert_eq!(
            control.savepoint(None, false).map_err(|e| e.to_string()),
            Err("the savepoint was abandoned: the job failed or ended before it completed".into())
        );
        coordinator.join().expect("the coordinator");
        assert_eq!(
            control.savepoint(None, false).map_err(|e| e.to_string()),
            Err("the job is ending".into())
        );
    }
}
