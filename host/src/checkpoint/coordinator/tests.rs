//! The coordinator, driven through its channels as subtasks would: a
//! failed checkpoint reaches every subtask that waits on it, and its files
//! are deleted.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::*;
use crate::plan::{CheckpointMode, CheckpointSettings};
use crate::storage::files::FileRef;
use crate::storage::manifest::KeyedStateHandle;

/// Long enough that only a bug makes a test wait for it.
const HANG: Duration = Duration::from_secs(60);

fn task(uid: &str) -> TaskId {
    TaskId {
        uid: uid.into(),
        subtask: 0,
    }
}

/// A coordinator of the job `source → keyed → sink` running on its own
/// thread, with the subtasks' ends of its channels.
struct Job {
    _dir: tempfile::TempDir,
    storage: CheckpointStorage,
    to_coordinator: Sender<ToCoordinator>,
    from_coordinator: HashMap<TaskId, Receiver<ToTask>>,
    result: Receiver<Result<(), CheckpointError>>,
}

impl Job {
    /// Checkpoints are triggered only when every source waits at its end.
    fn start(tolerable_failures: u32) -> Self {
        Self::with_timeout(tolerable_failures, 3_600_000)
    }

    /// The same, with checkpoints that expire after `timeout_ms`.
    fn with_timeout(tolerable_failures: u32, timeout_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let storage = CheckpointStorage::open(dir.path(), "job").expect("storage");
        let tasks = vec![task("source"), task("keyed"), task("sink")];
        let mut to_tasks = HashMap::new();
        let mut from_coordinator = HashMap::new();
        for task in &tasks {
            let (tx, rx) = unbounded();
            to_tasks.insert(task.clone(), tx);
            from_coordinator.insert(task.clone(), rx);
        }
        let coordinator = Coordinator {
            settings: CheckpointSettings {
                dir: dir.path().to_path_buf(),
                interval_ms: 3_600_000,
                timeout_ms,
                min_pause_ms: 0,
                max_concurrent: 1,
                tolerable_failures,
                retain: 3,
                mode: CheckpointMode::ExactlyOnce,
            },
            storage: storage.clone(),
            job: "job".into(),
            max_parallelism: 128,
            tasks,
            to_tasks,
            sources: vec![task("source")],
            next_id: 1,
            finished: HashMap::new(),
            savepoints: None,
            modules: Vec::new(),
            live: None,
        };
        let (to_coordinator, inbox) = unbounded();
        let (done, result) = unbounded();
        std::thread::spawn(move || {
            let _ = done.send(coordinator.run(inbox));
        });
        Self {
            _dir: dir,
            storage,
            to_coordinator,
            from_coordinator,
            result,
        }
    }

    fn send(&self, message: ToCoordinator) {
        self.to_coordinator.send(message).expect("the coordinator runs");
    }

    /// The next message to subtask `uid`.
    fn next(&self, uid: &str) -> ToTask {
        self.from_coordinator[&task(uid)]
            .recv_timeout(HANG)
            .unwrap_or_else(|e| panic!("no message for {uid}: {e}"))
    }

    /// The source reaches its end and gets its trigger; returns its id.
    fn source_ends(&self) -> CheckpointId {
        self.send(ToCoordinator::SourceAtEnd(task("source")));
        match self.next("source") {
            ToTask::Trigger(barrier) => barrier.id,
            other => panic!("expected a trigger, got {other:?}"),
        }
    }

    fn ack(&self, id: CheckpointId, uid: &str, finished: bool, keyed: Option<FileRef>, transactions: usize) {
        let state = TaskState {
            task: task(uid),
            parallelism: 1,
            source_position: (uid == "source").then_some(7),
            transactions: vec![vec![1]; transactions],
            keyed: keyed.map(|file| KeyedStateHandle {
                backend: "heap".into(),
                key_groups: (0, 128),
                canonical: Some(file),
                native: Vec::new(),
            }),
            finished,
            source_splits: Vec::new(),
            watermarks: Default::default(),
        };
        self.send(ToCoordinator::Ack { id, state });
    }

    /// Writes the keyed subtask's state file for checkpoint `id`.
    fn keyed_state(&self, id: CheckpointId) -> FileRef {
        let mut writer = self
            .storage
            .files()
            .create(&format!("chk{id}-keyed-0.keyed"))
            .expect("create");
        writer.write_all(b"state").expect("write");
        writer.finish().expect("finish")
    }

    /// Leaves the temporary of a state file whose writing failed.
    fn half_written(&self, name: &str) {
        let mut writer = self.storage.files().create(name).expect("create");
        writer.flush().expect("flush");
    }

    /// Waits for the coordinator to end.
    fn result(&self) -> Result<(), CheckpointError> {
        self.result.recv_timeout(HANG).expect("the coordinator ends")
    }

    /// The names in `files/`.
    fn files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.storage.root().join("files"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn declined(job: &Job, id: CheckpointId) {
    job.half_written(&format!("chk{id}-keyed-0.keyed"));
    job.send(ToCoordinator::Decline {
        id,
        task: task("keyed"),
        reason: "cannot write keyed state: No space left on device (os error 28)".into(),
    });
}

const FAILED: &str = "the final checkpoint 1 failed, so `sink#0` can never commit the output it pre-committed for it: checkpoint 1 declined by keyed#0: cannot write keyed state: No space left on device (os error 28)";

#[test]
fn a_declined_final_checkpoint_fails_the_attempt_when_the_sink_already_waits_for_it() {
    let job = Job::start(1);
    let id = job.source_ends();
    job.ack(id, "source", true, None, 0);
    job.ack(id, "sink", false, None, 1);
    job.send(ToCoordinator::AwaitsCommit { task: task("sink"), id });
    declined(&job, id);
    assert_eq!(job.result().expect_err("the attempt fails").to_string(), FAILED);
    assert_eq!(job.files(), BTreeSet::new(), "the declined checkpoint's files are gone");
    assert!(job.storage.completed().expect("list").is_empty());
}

#[test]
fn a_declined_final_checkpoint_fails_the_attempt_when_the_sink_starts_waiting_after_its_abort() {
    let job = Job::start(1);
    let id = job.source_ends();
    job.ack(id, "source", true, None, 0);
    job.ack(id, "sink", false, None, 1);
    declined(&job, id);
    // The sink read the abort while its input had not ended yet.
    assert_eq!(job.next("sink"), ToTask::Abort(id));
    job.send(ToCoordinator::AwaitsCommit { task: task("sink"), id });
    assert_eq!(job.result().expect_err("the attempt fails").to_string(), FAILED);
    assert_eq!(job.files(), BTreeSet::new());
}

#[test]
fn a_sink_that_acknowledges_a_final_checkpoint_after_it_was_declined_fails_the_attempt() {
    let job = Job::start(1);
    let id = job.source_ends();
    job.ack(id, "source", true, None, 0);
    // The keyed subtask declines before the barrier reaches the sink, which
    // then acknowledges the abandoned checkpoint and waits for it.
    declined(&job, id);
    job.ack(id, "sink", false, None, 1);
    job.send(ToCoordinator::AwaitsCommit { task: task("sink"), id });
    assert_eq!(job.result().expect_err("the attempt fails").to_string(), FAILED);
}

#[test]
fn a_sink_that_waits_for_an_expired_final_checkpoint_fails_the_attempt() {
    // Every checkpoint expires after 1 ms, and none is ever too many.
    let job = Job::with_timeout(u32::MAX, 1);
    let id = job.source_ends();
    job.half_written(&format!("chk{id}-keyed-0.keyed"));
    while job.next("sink") != ToTask::Abort(id) {}
    job.ack(id, "source", true, None, 0);
    job.ack(id, "sink", false, None, 1);
    job.send(ToCoordinator::AwaitsCommit { task: task("sink"), id });
    assert_eq!(
        job.result().expect_err("the attempt fails").to_string(),
        "the final checkpoint 1 failed, so `sink#0` can never commit the output it pre-committed for it: checkpoint 1 expired before completing"
    );
    assert_eq!(job.files(), BTreeSet::new());
}

#[test]
fn beyond_the_tolerance_the_failure_count_is_the_error() {
    let job = Job::start(0);
    let id = job.source_ends();
    job.ack(id, "source", true, None, 0);
    job.ack(id, "sink", false, None, 1);
    job.send(ToCoordinator::AwaitsCommit { task: task("sink"), id });
    declined(&job, id);
    assert_eq!(
        job.result().expect_err("the attempt fails").to_string(),
        "1 checkpoints failed in a row, more than the 0 tolerated; the last: checkpoint 1 declined by keyed#0: cannot write keyed state: No space left on device (os error 28)"
    );
    assert_eq!(job.files(), BTreeSet::new());
}

#[test]
fn a_failed_checkpoint_no_one_waits_for_is_aborted_its_files_go_and_the_next_one_completes() {
    let job = Job::start(1);
    let first = job.source_ends();
    let state = job.keyed_state(first);
    job.ack(first, "keyed", false, Some(state), 0);
    job.half_written(&format!("chk{first}-keyed-0.timers"));
    job.send(ToCoordinator::Decline {
        id: first,
        task: task("sink"),
        reason: "the database is down".into(),
    });
    for uid in ["source", "keyed", "sink"] {
        assert_eq!(job.next(uid), ToTask::Abort(first), "{uid}");
    }
    // The source still waits at its end: it gets another trigger.
    let second = match job.next("source") {
        ToTask::Trigger(barrier) => barrier.id,
        other => panic!("expected a trigger, got {other:?}"),
    };
    assert_eq!(second, CheckpointId(2));
    job.ack(second, "source", true, None, 0);
    let state = job.keyed_state(second);
    job.ack(second, "keyed", false, Some(state), 0);
    job.ack(second, "sink", false, None, 1);
    job.send(ToCoordinator::AwaitsCommit {
        task: task("sink"),
        id: second,
    });
    for uid in ["source", "keyed", "sink"] {
        assert_eq!(job.next(uid), ToTask::Complete(second), "{uid}");
    }
    // The keyed state of checkpoint 1 was its latest until checkpoint 2's
    // replaced it; the temporary went at once.
    assert_eq!(job.files(), BTreeSet::from(["chk2-keyed-0.keyed".to_string()]));
    assert_eq!(job.storage.completed().expect("list"), [second]);
    for uid in ["source", "keyed", "sink"] {
        job.send(ToCoordinator::Finished(task(uid)));
    }
    let Job {
        to_coordinator, result, ..
    } = job;
    drop(to_coordinator);
    assert!(result.recv_timeout(HANG).expect("the coordinator ends").is_ok());
}
