use std::collections::BTreeMap;

use super::*;
use crate::state::TtlConfig;
use crate::state::heap::HeapBackend;
use crate::state::restore::restore_keyed;
use crate::state::snapshot::SnapshotItem;
use crate::state::snapshot::SnapshotReader;
use crate::state::snapshot::SnapshotWriter;
use crate::storage::files::CheckpointStorage;
use crate::storage::manifest::{Manifest, TaskState};
use crate::storage::{CheckpointId, TaskId};
use crate::time::TimeDomain;

const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 128 };

fn descriptor(name: &str, kind: StateKind) -> StateDescriptor {
    StateDescriptor {
        name: name.into(),
        kind,
        ttl: None,
    }
}

fn rocks(dir: &Path, incremental: bool) -> RocksDbBackend {
    RocksDbBackend::open(dir, 128, RocksDbOptions { incremental }).unwrap()
}

/// Runs `check` against the heap backend and both RocksDB modes.
fn for_every_backend(check: impl Fn(&mut dyn KeyedStateBackend)) {
    check(&mut HeapBackend::new());
    for incremental in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        check(&mut rocks(&dir.path().join("state"), incremental));
    }
}

#[test]
fn entries_are_scoped_to_the_current_key() {
    for_every_backend(|backend| {
        let count = backend.register(&descriptor("count", StateKind::Value)).unwrap();
        backend.set_current_key(b"a");
        backend.put(count, b"", b"1").unwrap();
        backend.set_current_key(b"b");
        assert_eq!(backend.get(count, b"").unwrap(), None);
        backend.put(count, b"", b"2").unwrap();
        backend.set_current_key(b"a");
        assert_eq!(backend.current_key(), Some(&b"a"[..]));
        assert_eq!(backend.get(count, b"").unwrap(), Some(b"1".to_vec()));
        backend.clear(count).unwrap();
        assert_eq!(backend.get(count, b"").unwrap(), None);
        assert_eq!(backend.key_count(), 1);
    });
}

#[test]
fn map_entries_come_back_ordered_by_user_key() {
    for_every_backend(|backend| {
        let map = backend.register(&descriptor("m", StateKind::Map)).unwrap();
        backend.set_current_key(b"k");
        backend.put(map, b"zeta", b"1").unwrap();
        backend.put(map, b"alpha", b"2").unwrap();
        backend.delete(map, b"nothing").unwrap();
        let keys: Vec<_> = backend.entries(map).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"alpha".to_vec(), b"zeta".to_vec()]);
    });
}

#[test]
fn a_name_cannot_change_kind_and_access_needs_a_key() {
    for_every_backend(|backend| {
        let value = backend.register(&descriptor("s", StateKind::Value)).unwrap();
        assert_eq!(backend.register(&descriptor("s", StateKind::Value)).unwrap(), value);
        let err = backend.register(&descriptor("s", StateKind::List)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "state `s` is already declared as value state; it cannot also be list state"
        );
        assert!(matches!(backend.get(value, b""), Err(StateError::NoCurrentKey)));
        assert!(matches!(backend.put(value, b"", b"x"), Err(StateError::NoCurrentKey)));
        assert!(matches!(backend.entries(value), Err(StateError::NoCurrentKey)));
        assert!(matches!(backend.clear(value), Err(StateError::NoCurrentKey)));
        assert_eq!(backend.current_key(), None);
        backend.set_current_key(b"k");
        assert!(matches!(
            backend.get(StateId(99), b""),
            Err(StateError::UnknownState(99))
        ));
    });
}

#[test]
fn keys_that_prefix_each_other_stay_apart() {
    for_every_backend(|backend| {
        let map = backend.register(&descriptor("m", StateKind::Map)).unwrap();
        let value = backend.register(&descriptor("v", StateKind::Value)).unwrap();
        for key in [&b"a"[..], b"ab", b"", b"\xff\xff"] {
            backend.set_current_key(key);
            backend.put(map, b"x", key).unwrap();
            backend.put(map, b"y", key).unwrap();
            backend.put(value, b"", key).unwrap();
        }
        backend.set_current_key(b"a");
        assert_eq!(
            backend.entries(map).unwrap(),
            vec![(b"x".to_vec(), b"a".to_vec()), (b"y".to_vec(), b"a".to_vec())]
        );
        backend.clear(map).unwrap();
        assert!(backend.entries(map).unwrap().is_empty());
        assert_eq!(backend.get(value, b"").unwrap(), Some(b"a".to_vec()));
        backend.set_current_key(b"ab");
        assert_eq!(backend.entries(map).unwrap().len(), 2);
        backend.set_current_key(b"");
        assert_eq!(backend.entries(map).unwrap().len(), 2);
        assert_eq!(backend.key_count(), 4);
    });
}

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

fn storage(dir: &Path) -> CheckpointStorage {
    CheckpointStorage::open(dir, "job").unwrap()
}

fn persist(
    view: Box<dyn StateView>,
    storage: &CheckpointStorage,
    name: &str,
    timers: &TimerService,
    range: KeyGroupRange,
) -> KeyedStateHandle {
    view.persist(storage.files(), name, timers, range, 128).unwrap()
}

#[test]
fn a_snapshot_is_not_affected_by_later_writes() {
    for incremental in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir.path().join("chk"));
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

const KEYS: usize = 300;

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn states() -> Vec<StateDescriptor> {
    vec![
        descriptor("count", StateKind::Value),
        StateDescriptor {
            name: "seen".into(),
            kind: StateKind::Map,
            ttl: Some(TtlConfig {
                ttl_ms: 60_000,
                update_on_read: true,
            }),
        },
        descriptor("items", StateKind::List),
    ]
}

/// Writes keys `range` into every state, and a timer per key.
fn fill(backend: &mut dyn KeyedStateBackend, timers: &mut TimerService, keys: std::ops::Range<usize>, tag: &str) {
    let ids: Vec<_> = states().iter().map(|d| backend.register(d).unwrap()).collect();
    for i in keys {
        backend.set_current_key(&key(i));
        backend.put(ids[0], b"", format!("{tag}{i}").as_bytes()).unwrap();
        for m in 0..i % 4 {
            backend.put(ids[1], format!("m{m}").as_bytes(), tag.as_bytes()).unwrap();
        }
        if i % 5 == 0 {
            backend.put(ids[2], b"", b"list").unwrap();
        }
        let domain = if i % 2 == 0 {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        };
        timers.register(domain, &key(i), i as i64);
    }
}

type Dump = BTreeMap<(String, Vec<u8>), Vec<(Vec<u8>, Vec<u8>)>>;

/// The states a backend declares, by name, before anything registers them.
fn declared(backend: &dyn KeyedStateBackend) -> Vec<StateDescriptor> {
    let mut declared: Vec<_> = (0..)
        .map_while(|id| backend.descriptor(StateId(id)).ok().cloned())
        .collect();
    declared.sort_by(|a, b| a.name.cmp(&b.name));
    declared
}

fn expected_declared() -> Vec<StateDescriptor> {
    let mut states = states();
    states.sort_by(|a, b| a.name.cmp(&b.name));
    states
}

/// Every non-empty (state, key) of the first `KEYS` keys, with its entries.
fn dump(backend: &mut dyn KeyedStateBackend) -> Dump {
    let mut dump = BTreeMap::new();
    for descriptor in states() {
        let id = backend.register(&descriptor).unwrap();
        assert_eq!(backend.descriptor(id).unwrap(), &descriptor);
        for i in 0..KEYS {
            backend.set_current_key(&key(i));
            let entries = backend.entries(id).unwrap();
            if !entries.is_empty() {
                dump.insert((descriptor.name.clone(), key(i)), entries);
            }
        }
    }
    dump
}

fn timer_items(timers: &TimerService) -> Vec<SnapshotItem> {
    let mut writer = SnapshotWriter::new(Vec::new()).unwrap();
    timers.write_items(&mut writer, 128).unwrap();
    let bytes = writer.finish();
    let mut reader = SnapshotReader::new(bytes.as_slice()).unwrap();
    let mut items = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        items.push(item);
    }
    items
}

/// Restores `handles` for `range` into a heap backend.
fn into_heap(
    storage: &CheckpointStorage,
    handles: &[&KeyedStateHandle],
    range: KeyGroupRange,
) -> (Dump, TimerService, usize) {
    let mut heap = HeapBackend::new();
    let mut timers = TimerService::new();
    restore_keyed(&mut heap, &mut timers, storage.files(), handles, range).unwrap();
    assert_eq!(declared(&heap), expected_declared());
    let count = heap.key_count();
    (dump(&mut heap), timers, count)
}

/// Restores `handles` for `range` into a RocksDB backend in `dir`.
fn into_rocks(
    dir: &Path,
    storage: &CheckpointStorage,
    handles: &[&KeyedStateHandle],
    range: KeyGroupRange,
    incremental: bool,
) -> (RocksDbBackend, TimerService) {
    let mut timers = TimerService::new();
    let (backend, _) = RocksDbBackend::restore(
        dir,
        128,
        RocksDbOptions { incremental },
        storage.files(),
        handles,
        range,
        &mut timers,
    )
    .unwrap();
    assert_eq!(declared(&backend), expected_declared());
    (backend, timers)
}

#[test]
fn a_full_snapshot_restores_identically_into_heap_and_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir.path().join("chk"));
    let mut backend = rocks(&dir.path().join("state"), false);
    let mut timers = TimerService::new();
    fill(&mut backend, &mut timers, 0..KEYS, "v");
    let expected = dump(&mut backend);
    assert_eq!(expected.len(), KEYS + KEYS / 4 * 3 + KEYS / 5);
    let handle = persist(backend.snapshot().unwrap(), &storage, "full", &timers, ALL);
    assert!(handle.native.is_empty());
    assert!(!RocksDbBackend::can_restore_natively(&[&handle], ALL));

    let (heap, heap_timers, heap_keys) = into_heap(&storage, &[&handle], ALL);
    assert_eq!(heap, expected);
    assert_eq!(heap_keys, KEYS);
    assert_eq!(timer_items(&heap_timers), timer_items(&timers));

    let (mut restored, restored_timers) = into_rocks(&dir.path().join("restored"), &storage, &[&handle], ALL, false);
    assert_eq!(dump(&mut restored), expected);
    assert_eq!(restored.key_count(), KEYS);
    assert_eq!(timer_items(&restored_timers), timer_items(&timers));
    // The time-to-live came back with the descriptor.
    let seen = restored.register(&states()[1]).unwrap();
    assert_eq!(restored.descriptor(seen).unwrap().ttl, states()[1].ttl);
}

#[test]
fn a_heap_snapshot_restores_into_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir.path().join("chk"));
    let mut heap = HeapBackend::new();
    let mut timers = TimerService::new();
    fill(&mut heap, &mut timers, 0..KEYS, "h");
    let expected = dump(&mut heap);
    let handle = persist(heap.snapshot().unwrap(), &storage, "heap", &timers, ALL);
    for incremental in [false, true] {
        let (mut restored, restored_timers) =
            into_rocks(&dir.path().join("restored"), &storage, &[&handle], ALL, incremental);
        assert_eq!(dump(&mut restored), expected);
        assert_eq!(timer_items(&restored_timers), timer_items(&timers));
        // And the restored state checkpoints again.
        let again = persist(
            restored.snapshot().unwrap(),
            &storage,
            &format!("again-{incremental}"),
            &restored_timers,
            ALL,
        );
        assert_eq!(into_heap(&storage, &[&again], ALL).0, expected);
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
    let storage = storage(&dir.path().join("chk"));
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
fn a_restore_keeps_only_the_subtasks_key_groups() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir.path().join("chk"));
    let halves = [
        KeyGroupRange { start: 0, end: 64 },
        KeyGroupRange { start: 64, end: 128 },
    ];
    for incremental in [false, true] {
        let mut backend = rocks(&dir.path().join("state"), incremental);
        let mut timers = TimerService::new();
        fill(&mut backend, &mut timers, 0..KEYS, "v");
        let expected = dump(&mut backend);
        let handle = persist(
            backend.snapshot().unwrap(),
            &storage,
            &format!("all-{incremental}"),
            &timers,
            ALL,
        );
        drop(backend);
        let mut keys = 0;
        let mut timer_count = 0;
        for (index, half) in halves.into_iter().enumerate() {
            assert!(!RocksDbBackend::can_restore_natively(&[&handle], half));
            let (mut part, part_timers) = into_rocks(
                &dir.path().join(format!("half-{index}")),
                &storage,
                &[&handle],
                half,
                incremental,
            );
            let (heap, heap_timers, heap_keys) = into_heap(&storage, &[&handle], half);
            let restored = dump(&mut part);
            assert_eq!(restored, heap);
            let in_half: Dump = expected
                .iter()
                .filter(|((_, key), _)| half.contains(KeyGroup::of(key, 128)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(restored, in_half);
            assert_eq!(part.key_count(), heap_keys);
            keys += heap_keys;
            assert_eq!(timer_items(&part_timers), timer_items(&heap_timers));
            timer_count += part_timers.len();
        }
        assert_eq!(keys, KEYS);
        assert_eq!(timer_count, KEYS);
    }
}

#[test]
fn states_may_be_registered_before_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir.path().join("chk"));
    let mut source = rocks(&dir.path().join("source"), true);
    let mut timers = TimerService::new();
    fill(&mut source, &mut timers, 0..KEYS, "v");
    let expected = dump(&mut source);
    let handle = persist(source.snapshot().unwrap(), &storage, "native", &timers, ALL);
    let mut target = rocks(&dir.path().join("target"), false);
    let other = target.register(&descriptor("other", StateKind::Value)).unwrap();
    let count = target.register(&descriptor("count", StateKind::Value)).unwrap();
    let mut restored_timers = TimerService::new();
    let scratch = dir.path().join("scratch");
    let restored = crate::state::restore::restore_keyed_in(
        &mut target,
        &mut restored_timers,
        storage.files(),
        &[&handle],
        ALL,
        &scratch,
    )
    .unwrap();
    assert_eq!(restored as usize, expected.values().map(Vec::len).sum::<usize>());
    assert_eq!(target.register(&descriptor("count", StateKind::Value)).unwrap(), count);
    assert_eq!(target.descriptor(other).unwrap().name, "other");
    assert_eq!(dump(&mut target), expected);
    assert_eq!(timer_items(&restored_timers), timer_items(&timers));
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the scratch folder is cleaned"
    );
}

#[test]
fn a_native_snapshot_of_other_key_groups_is_read_entry_by_entry() {
    // Two subtasks' native snapshots restored into one subtask (scale in).
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir.path().join("chk"));
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
