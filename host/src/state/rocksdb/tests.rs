use crate::state::conformance::{
    ALL, KEYS, descriptor, dump, fill, into_heap, into_rocks, persist, rocks, timer_items,
};

use super::*;
use crate::state::heap::HeapBackend;
use crate::state::restore::restore_keyed;
use crate::storage::manifest::{Manifest, TaskState};
use crate::storage::{CheckpointId, TaskId};

#[test]
fn a_rocksdb_backend_is_named_and_cleans_up_its_folder() {
    for incremental in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state");
        std::fs::create_dir_all(folder.join("stale")).unwrap();
        let mut backend = rocks(&folder, incremental);
        assert_eq!(backend.name(), "rocksdb");
        assert_eq!(backend.dir(), folder);
        assert!(!folder.join("stale").exists(), "leftovers are cleared");
        let value = backend.register(&descriptor("v", StateKind::Value)).unwrap();
        backend.set_current_key(b"k");
        backend.put(value, b"", b"1").unwrap();
        let view = backend.snapshot().unwrap();
        drop(backend);
        assert!(folder.exists(), "a pending snapshot keeps the folder");
        drop(view);
        assert!(!folder.exists());
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(RocksDbBackend::open(&dir.path().join("x"), 1 << 17, RocksDbOptions::default()).is_err());
}

#[test]
fn a_snapshot_is_not_affected_by_later_writes() {
    for incremental in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::state::conformance::storage(&dir.path().join("chk"));
        let mut backend = rocks(&dir.path().join("state"), incremental);
        let value = backend.register(&descriptor("v", StateKind::Value)).unwrap();
        backend.set_current_key(b"k");
        backend.put(value, b"", b"before").unwrap();
        let view = backend.snapshot().unwrap();
        backend.put(value, b"", b"after").unwrap();
        backend.set_current_key(b"other");
        backend.put(value, b"", b"new").unwrap();
        let handle = persist(view, &storage, "t", &TimerService::new(), ALL);
        assert_eq!(handle.backend, "rocksdb");
        assert_eq!(handle.native.is_empty(), !incremental);
        let mut heap = HeapBackend::new();
        restore_keyed(&mut heap, &mut TimerService::new(), storage.files(), &[&handle], ALL).unwrap();
        let value = heap.register(&descriptor("v", StateKind::Value)).unwrap();
        heap.set_current_key(b"k");
        assert_eq!(heap.get(value, b"").unwrap(), Some(b"before".to_vec()));
        assert_eq!(heap.key_count(), 1, "incremental: {incremental}");
    }
}

fn manifest(id: u64, handle: &KeyedStateHandle) -> Manifest {
    Manifest {
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
            keyed: Some(handle.clone()),
            finished: false,
            source_splits: Vec::new(),
            watermarks: Default::default(),
        }],
        modules: Vec::new(),
    }
}

fn ssts(handle: &KeyedStateHandle) -> Vec<&(String, FileRef)> {
    handle
        .native
        .iter()
        .filter(|(name, _)| name.ends_with(".sst"))
        .collect()
}

#[test]
fn incremental_checkpoints_share_unchanged_files_and_survive_retention() {
    let dir = tempfile::tempdir().unwrap();
    let storage = crate::state::conformance::storage(&dir.path().join("chk"));
    let mut backend = rocks(&dir.path().join("state"), true);
    let mut timers = TimerService::new();
    fill(&mut backend, &mut timers, 0..200, "one");
    let first_state = dump(&mut backend);
    let first_timers = timer_items(&timers);
    let first = persist(backend.snapshot().unwrap(), &storage, "chk1-op-0", &timers, ALL);
    storage.commit(&manifest(1, &first)).unwrap();

    // A few more keys, and one changed.
    fill(&mut backend, &mut timers, 200..KEYS, "two");
    fill(&mut backend, &mut timers, 0..1, "changed");
    let second_state = dump(&mut backend);
    let second = persist(backend.snapshot().unwrap(), &storage, "chk2-op-0", &timers, ALL);
    storage.commit(&manifest(2, &second)).unwrap();

    let options = &first
        .native
        .iter()
        .find(|(name, _)| name.starts_with("OPTIONS-"))
        .unwrap()
        .1;
    let options = std::fs::read_to_string(storage.files().path(options)).unwrap();
    assert!(options.contains("avoid_flush_during_shutdown=true"), "{options}");
    assert!(first.canonical.is_some() && second.canonical.is_some());
    assert!(first.native.iter().any(|(name, _)| name == "CURRENT"));
    assert!(first.native.iter().any(|(name, _)| name.starts_with("MANIFEST-")));
    assert!(!ssts(&first).is_empty());
    for sst in ssts(&first) {
        assert!(
            second.native.contains(sst),
            "{} is shared by the second checkpoint",
            sst.0
        );
    }
    assert!(
        ssts(&second).len() > ssts(&first).len(),
        "the second checkpoint adds files"
    );
    // Metadata files are stored afresh for every checkpoint.
    let first_current = &first.native.iter().find(|(name, _)| name == "CURRENT").unwrap().1;
    let second_current = &second.native.iter().find(|(name, _)| name == "CURRENT").unwrap().1;
    assert_ne!(first_current.name, second_current.name);

    // Each checkpoint restores to its own state, natively or entry by entry.
    let (mut one, one_timers) = into_rocks(&dir.path().join("r1"), &storage, &[&first], ALL, true);
    assert_eq!(dump(&mut one), first_state);
    assert_eq!(timer_items(&one_timers), first_timers);
    let (mut two, two_timers) = into_rocks(&dir.path().join("r2"), &storage, &[&second], ALL, true);
    assert_eq!(dump(&mut two), second_state);
    assert_eq!(timer_items(&two_timers), timer_items(&timers));
    assert_eq!(into_heap(&storage, &[&second], ALL).0, second_state);
    drop((one, two));

    // Dropping the first checkpoint keeps the files the second shares.
    storage.retain(1).unwrap();
    assert!(
        !storage.files().path(first_current).exists(),
        "unshared files are deleted"
    );
    let loaded = storage.load(CheckpointId(2)).unwrap();
    let handle = loaded.tasks[0].keyed.as_ref().unwrap();
    assert!(RocksDbBackend::can_restore_natively(&[handle], ALL));
    let (mut two, two_timers) = into_rocks(&dir.path().join("r3"), &storage, &[handle], ALL, true);
    assert_eq!(dump(&mut two), second_state);
    assert_eq!(timer_items(&two_timers), timer_items(&timers));

    // A natively restored database shares its files with its own checkpoints.
    fill(&mut two, &mut TimerService::new(), 0..1, "third");
    let third = persist(two.snapshot().unwrap(), &storage, "chk3-op-0", &two_timers, ALL);
    for sst in ssts(&second) {
        assert!(third.native.contains(sst), "{} is shared after a restore", sst.0);
    }
}

#[test]
fn a_native_snapshot_of_other_key_groups_is_read_entry_by_entry() {
    // Two subtasks' native snapshots restored into one subtask (scale in).
    let dir = tempfile::tempdir().unwrap();
    let storage = crate::state::conformance::storage(&dir.path().join("chk"));
    let halves = [
        KeyGroupRange { start: 0, end: 64 },
        KeyGroupRange { start: 64, end: 128 },
    ];
    let mut whole = HeapBackend::new();
    let mut whole_timers = TimerService::new();
    fill(&mut whole, &mut whole_timers, 0..KEYS, "v");
    let whole_handle = persist(whole.snapshot().unwrap(), &storage, "whole", &whole_timers, ALL);
    let mut handles = Vec::new();
    for (index, half) in halves.into_iter().enumerate() {
        let (mut part, part_timers) = into_rocks(
            &dir.path().join(format!("half-{index}")),
            &storage,
            &[&whole_handle],
            half,
            true,
        );
        handles.push(persist(
            part.snapshot().unwrap(),
            &storage,
            &format!("half-{index}"),
            &part_timers,
            half,
        ));
    }
    let handles: Vec<_> = handles.iter().collect();
    assert!(!RocksDbBackend::can_restore_natively(&handles, ALL));
    assert!(RocksDbBackend::can_restore_natively(&handles, halves[1]));
    let (mut merged, merged_timers) = into_rocks(&dir.path().join("merged"), &storage, &handles, ALL, true);
    assert_eq!(dump(&mut merged), dump(&mut whole));
    assert_eq!(timer_items(&merged_timers), timer_items(&whole_timers));
}
