//! The conformance suite of the keyed state backends: every backend (heap,
//! RocksDB full and incremental) must scope entries by key, order map
//! entries, keep state kinds, and restore any backend's snapshot, of all key
//! groups or some, into the same entries and timers. A new backend joins
//! by being added to [`for_every_backend`] and the restore helpers.

use std::collections::BTreeMap;
use std::path::Path;

use crate::state::heap::HeapBackend;
use crate::state::restore::restore_keyed;
use crate::state::rocksdb::{RocksDbBackend, RocksDbOptions};
use crate::state::snapshot::{SnapshotItem, SnapshotReader, SnapshotWriter};
use crate::state::{
    KeyGroup, KeyGroupRange, KeyedStateBackend, StateDescriptor, StateError, StateId, StateKind, StateView,
    TimerService, TtlConfig,
};
use crate::storage::files::CheckpointStorage;
use crate::storage::manifest::KeyedStateHandle;
use crate::time::TimeDomain;

pub(super) const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 128 };

pub(super) fn descriptor(name: &str, kind: StateKind) -> StateDescriptor {
    StateDescriptor {
        name: name.into(),
        kind,
        ttl: None,
    }
}

pub(super) fn rocks(dir: &Path, incremental: bool) -> RocksDbBackend {
    RocksDbBackend::open(dir, 128, RocksDbOptions { incremental }).unwrap()
}

/// Runs `check` against the heap backend and both RocksDB modes.
pub(super) fn for_every_backend(check: impl Fn(&mut dyn KeyedStateBackend)) {
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

pub(super) fn storage(dir: &Path) -> CheckpointStorage {
    CheckpointStorage::open(dir, "job").unwrap()
}

pub(super) fn persist(
    view: Box<dyn StateView>,
    storage: &CheckpointStorage,
    name: &str,
    timers: &TimerService,
    range: KeyGroupRange,
) -> KeyedStateHandle {
    view.persist(storage.files(), name, timers, range, 128).unwrap()
}

pub(super) const KEYS: usize = 300;

pub(super) fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

pub(super) fn states() -> Vec<StateDescriptor> {
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
pub(super) fn fill(
    backend: &mut dyn KeyedStateBackend,
    timers: &mut TimerService,
    keys: std::ops::Range<usize>,
    tag: &str,
) {
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

pub(super) type Dump = BTreeMap<(String, Vec<u8>), Vec<(Vec<u8>, Vec<u8>)>>;

/// The states a backend declares, by name, before anything registers them.
pub(super) fn declared(backend: &dyn KeyedStateBackend) -> Vec<StateDescriptor> {
    let mut declared: Vec<_> = (0..)
        .map_while(|id| backend.descriptor(StateId(id)).ok().cloned())
        .collect();
    declared.sort_by(|a, b| a.name.cmp(&b.name));
    declared
}

pub(super) fn expected_declared() -> Vec<StateDescriptor> {
    let mut states = states();
    states.sort_by(|a, b| a.name.cmp(&b.name));
    states
}

/// Every non-empty (state, key) of the first `KEYS` keys, with its entries.
pub(super) fn dump(backend: &mut dyn KeyedStateBackend) -> Dump {
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

pub(super) fn timer_items(timers: &TimerService) -> Vec<SnapshotItem> {
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
pub(super) fn into_heap(
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
pub(super) fn into_rocks(
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
