//! Checkpoint storage: what abandoned checkpoints leave is deleted, what a
//! complete checkpoint names never is, and a restore refuses checkpoints that
//! fail their checks.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;

use super::*;
use crate::storage::TaskId;
use crate::storage::manifest::{KeyedStateHandle, TaskState};

fn storage() -> (tempfile::TempDir, CheckpointStorage) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let storage = CheckpointStorage::open(dir.path(), "job").expect("open the storage");
    (dir, storage)
}

/// Stores a state file `name` holding its own name.
fn store(storage: &CheckpointStorage, name: &str) -> FileRef {
    let mut writer = storage.files().create(name).expect("create");
    writer.write_all(name.as_bytes()).expect("write");
    writer.finish().expect("finish")
}

/// Leaves the temporary of `name`, as a writer that failed does.
fn half_written(storage: &CheckpointStorage, name: &str) {
    let mut writer = storage.files().create(name).expect("create");
    writer.write_all(&[0; 10]).expect("write");
    writer.flush().expect("flush");
}

/// Commits checkpoint `id` naming `files`.
fn commit(storage: &CheckpointStorage, id: u64, files: &[&FileRef]) {
    let manifest = Manifest {
        id: CheckpointId(id),
        job: "job".into(),
        timestamp_ms: 0,
        max_parallelism: 128,
        tasks: vec![TaskState {
            task: TaskId {
                uid: "op".into(),
                subtask: 0,
            },
            parallelism: 1,
            source_position: None,
            transactions: Vec::new(),
            keyed: Some(KeyedStateHandle {
                backend: "rocksdb".into(),
                key_groups: (0, 128),
                canonical: None,
                native: files.iter().map(|f| (f.name.clone(), (*f).clone())).collect(),
            }),
            finished: false,
            source_splits: Vec::new(),
            watermarks: Default::default(),
        }],
        modules: Vec::new(),
    };
    storage.commit(&manifest).expect("commit");
}

/// The names in `files/`.
fn listing(storage: &CheckpointStorage) -> BTreeSet<String> {
    std::fs::read_dir(&storage.files().dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Checkpoint 1 is complete (a shared SST and its own MANIFEST); checkpoint
/// 3 is complete and carries a state of failed checkpoint 2; checkpoint 2
/// left its own files, a temporary, a new shared SST and a folder without
/// manifest; checkpoint 20 is in progress.
fn failed_checkpoint_2(storage: &CheckpointStorage) {
    let shared = store(storage, "00ff-000007.sst");
    let own = store(storage, "chk1-op-0-MANIFEST-000005");
    commit(storage, 1, &[&shared, &own]);
    let carried = store(storage, "chk2-op-3.keyed");
    commit(storage, 3, &[&shared, &carried]);
    for name in [
        "chk2-op-0-MANIFEST-000009",
        "chk2-op-1.keyed",
        "chk2-op-2.keyed",
        "00ff-000011.sst",
        "chk20-op-0.keyed",
    ] {
        store(storage, name);
    }
    half_written(storage, "chk2-op-4.timers");
    half_written(storage, "chk20-op-1.keyed");
    let folder = storage.checkpoint_dir(CheckpointId(2));
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join(".manifest.tmp"), "half").expect("half a manifest");
}

#[test]
fn discarding_deletes_the_temporaries_and_the_acknowledged_files_nothing_else_may_name() {
    let (_dir, storage) = storage();
    failed_checkpoint_2(&storage);
    let acknowledged = set(&[
        "chk2-op-0-MANIFEST-000009",
        "chk2-op-1.keyed",
        "chk2-op-3.keyed",
        "00ff-000011.sst",
    ]);
    let deleted = storage
        .discard(CheckpointId(2), &acknowledged, &set(&["chk2-op-1.keyed"]))
        .expect("discard");
    assert_eq!(deleted, 2, "the temporary and one acknowledged file");
    assert_eq!(
        listing(&storage),
        names(&[
            "00ff-000007.sst",
            "chk1-op-0-MANIFEST-000005",
            "chk2-op-3.keyed",  // named by complete checkpoint 3
            "chk2-op-1.keyed",  // kept: a later checkpoint may carry it
            "chk2-op-2.keyed",  // not acknowledged yet: a late acknowledgement may name it
            "00ff-000011.sst",  // shared: a checkpoint in progress may reuse it
            "chk20-op-0.keyed", // another checkpoint's
            ".chk20-op-1.keyed.tmp",
        ])
    );
    assert!(
        !storage.checkpoint_dir(CheckpointId(2)).exists(),
        "the folder without manifest is gone"
    );
    for id in [1, 3] {
        storage
            .load(CheckpointId(id))
            .expect("complete checkpoints stay intact");
    }
}

#[test]
fn at_the_end_of_an_attempt_every_own_file_of_abandoned_checkpoints_goes() {
    let (_dir, storage) = storage();
    failed_checkpoint_2(&storage);
    let abandoned: BTreeSet<CheckpointId> = [CheckpointId(2), CheckpointId(20)].into();
    let deleted = storage
        .discard_all(&abandoned, &set(&["chk2-op-1.keyed"]))
        .expect("discard");
    assert_eq!(deleted, 5);
    assert_eq!(
        listing(&storage),
        names(&[
            "00ff-000007.sst",
            "chk1-op-0-MANIFEST-000005",
            "chk2-op-3.keyed",
            "chk2-op-1.keyed",
            "00ff-000011.sst",
        ])
    );
    assert!(!storage.checkpoint_dir(CheckpointId(2)).exists());
    for id in [1, 3] {
        storage
            .load(CheckpointId(id))
            .expect("complete checkpoints stay intact");
    }
}

#[test]
fn when_a_manifest_cannot_be_read_only_temporaries_are_discarded() {
    let (_dir, storage) = storage();
    failed_checkpoint_2(&storage);
    let manifest = storage.checkpoint_dir(CheckpointId(3)).join(MANIFEST);
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &bytes[..bytes.len() - 1]).expect("truncate the manifest");
    let abandoned: BTreeSet<CheckpointId> = [CheckpointId(2), CheckpointId(20)].into();
    assert_eq!(storage.discard_all(&abandoned, &HashSet::new()).expect("discard"), 2);
    let left = listing(&storage);
    assert!(left.iter().all(|name| !name.ends_with(".tmp")), "{left:?}");
    assert!(left.contains("chk2-op-0-MANIFEST-000009") && left.contains("chk2-op-3.keyed"));
}

#[test]
fn the_sweep_before_a_run_deletes_every_orphan_and_keeps_what_manifests_name() {
    let (_dir, storage) = storage();
    failed_checkpoint_2(&storage);
    half_written(&storage, "00ff-000012.sst"); // a shared file's interrupted copy
    let savepoints = storage.root().join("savepoints");
    std::fs::create_dir_all(&savepoints).expect("savepoints");
    storage.sweep_orphans().expect("sweep");
    assert_eq!(
        listing(&storage),
        names(&["00ff-000007.sst", "chk1-op-0-MANIFEST-000005", "chk2-op-3.keyed"])
    );
    assert!(
        !storage.checkpoint_dir(CheckpointId(2)).exists(),
        "the folder without manifest is gone"
    );
    assert!(savepoints.is_dir(), "other folders stay");
    assert_eq!(storage.completed().expect("list"), [CheckpointId(1), CheckpointId(3)]);
}

#[test]
fn with_an_unreadable_manifest_the_sweep_still_deletes_temporaries_and_folders_without_manifest() {
    let (_dir, storage) = storage();
    failed_checkpoint_2(&storage);
    let manifest = storage.checkpoint_dir(CheckpointId(3)).join(MANIFEST);
    let mut bytes = std::fs::read(&manifest).expect("manifest");
    bytes[12] ^= 1;
    std::fs::write(&manifest, bytes).expect("corrupt the manifest");
    storage.sweep_orphans().expect("sweep");
    assert_eq!(
        listing(&storage),
        names(&[
            "00ff-000007.sst",
            "chk1-op-0-MANIFEST-000005",
            "chk2-op-3.keyed",
            // Checkpoint 3's manifest may name any of these.
            "chk2-op-0-MANIFEST-000009",
            "chk2-op-1.keyed",
            "chk2-op-2.keyed",
            "00ff-000011.sst",
            "chk20-op-0.keyed",
        ])
    );
    assert!(!storage.checkpoint_dir(CheckpointId(2)).exists());
}

#[test]
fn restoring_the_latest_refuses_when_every_checkpoint_fails_its_checks_and_says_why_for_each() {
    let (dir, storage) = storage();
    assert!(
        matches!(storage.latest_intact(), Ok((None, refused)) if refused.is_empty()),
        "no checkpoint at all: start from the beginning"
    );
    let mut files = Vec::new();
    for id in 1..=3 {
        files.push(store(&storage, &format!("chk{id}-op-0.keyed")));
        commit(&storage, id, &[&files[id as usize - 1]]);
    }
    // Checkpoint 3: a truncated manifest; checkpoint 2: a changed state file.
    let manifest = storage.checkpoint_dir(CheckpointId(3)).join(MANIFEST);
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &bytes[..bytes.len() - 1]).expect("truncate");
    std::fs::write(storage.files().path(&files[1]), "chk2-op-0.keyeX").expect("change a state file");

    let (manifest, refused) = storage.latest_intact().expect("checkpoint 1 is intact");
    assert_eq!(manifest.map(|m| m.id), Some(CheckpointId(1)));
    let refused: Vec<String> = refused.iter().map(ToString::to_string).collect();
    assert_eq!(
        refused,
        [
            "checkpoint 3 is corrupt: checksum mismatch in the manifest",
            "checkpoint 2 is corrupt: checksum mismatch in chk2-op-0.keyed",
        ]
    );

    std::fs::remove_file(storage.files().path(&files[0])).expect("delete a state file");
    let error = storage.latest_intact().expect_err("no checkpoint is intact");
    let root = dir.path().join("job");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot restore the latest checkpoint: no checkpoint in {} is intact (checkpoint 3 is corrupt: checksum mismatch in the manifest; checkpoint 2 is corrupt: checksum mismatch in chk2-op-0.keyed; checkpoint 1 is corrupt: cannot open {}: No such file or directory (os error 2)); run without --restore to start from the beginning",
            root.display(),
            root.join("files/chk1-op-0.keyed").display()
        )
    );
}

#[test]
fn only_own_state_files_and_their_temporaries_belong_to_a_checkpoint() {
    assert_eq!(written_for("chk12-op-0.keyed"), Some((CheckpointId(12), false)));
    assert_eq!(written_for(".chk12-op-0.keyed.tmp"), Some((CheckpointId(12), true)));
    assert_eq!(
        written_for("chk12-op-0-MANIFEST-000005"),
        Some((CheckpointId(12), false))
    );
    for shared in [
        "00ff-000007.sst",
        ".00ff-000007.sst.tmp",
        "chk+1-op",
        "chk-000001",
        ".chk1-op.keyed",
        "chkx-op",
    ] {
        assert_eq!(written_for(shared), None, "{shared}");
    }
}
