//! Where operator state lives and how it is redistributed.
//!
//! Operator list states (Flink's non-keyed `ListState`) of map, filter and
//! flat-map functions are map states of a heap backend per subtask (as in
//! Flink, operator state is always kept on the heap), named
//! `operator-split/<name>` or `operator-union/<name>`, under the empty key,
//! element `i` under the user key `i` (big-endian `u32`). They go into
//! checkpoints and savepoints like keyed state (a canonical snapshot per
//! subtask that has any).
//!
//! On a restore, the lists of the old subtasks are concatenated in subtask
//! order. A `split` list goes back to its own subtask when the parallelism
//! is unchanged, and is otherwise cut into even, contiguous shares (subtask
//! `t` of `q` gets elements `t·n/q .. (t+1)·n/q`). A `union` list is given
//! whole to every subtask (as Flink does on every restore).

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;

use super::restore::RestoreError;
use super::snapshot::{SnapshotItem, SnapshotReader};
use super::{KeyedStateBackend, StateDescriptor, StateKind};
use crate::storage::files::FileStore;
use crate::storage::manifest::KeyedStateHandle;

/// The name prefix of `split` operator list states.
pub const SPLIT: &str = "operator-split/";
/// The name prefix of `union` operator list states.
pub const UNION: &str = "operator-union/";
/// The key operator states are stored under.
pub const KEY: &[u8] = &[];

/// The user key of element `index`.
pub fn element_key(index: usize) -> [u8; 4] {
    u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes()
}

/// An element of a restored list: its old subtask, user key and value.
type Element = (u32, Vec<u8>, Vec<u8>);

/// Loads this subtask's share of the operator list states of `old` (each
/// old subtask's index and snapshot; they ran at `old_parallelism`) into
/// `backend`, for subtask `subtask` of `parallelism`. Returns the number of
/// elements restored.
pub fn restore_operator_state(
    backend: &mut dyn KeyedStateBackend,
    files: &FileStore,
    old: &[(u32, &KeyedStateHandle)],
    old_parallelism: u32,
    subtask: u32,
    parallelism: u32,
) -> Result<u64, RestoreError> {
    let mut lists: BTreeMap<String, Vec<Element>> = BTreeMap::new();
    for (old_subtask, handle) in old {
        let Some(file) = &handle.canonical else {
            return Err(RestoreError::NotCanonical { subtask: *old_subtask });
        };
        let path = files.path(file);
        let input = std::fs::File::open(&path).map_err(|source| RestoreError::Open {
            path: path.clone(),
            source,
        })?;
        let read_error = |source| RestoreError::Read {
            path: path.clone(),
            source,
        };
        let mut reader = SnapshotReader::new(BufReader::new(input)).map_err(read_error)?;
        let mut names: HashMap<u32, String> = HashMap::new();
        while let Some(item) = reader.next_item().map_err(read_error)? {
            match item {
                SnapshotItem::State { index, name, .. } if name.starts_with(SPLIT) || name.starts_with(UNION) => {
                    lists.entry(name.clone()).or_default();
                    names.insert(index, name);
                }
                SnapshotItem::Entry {
                    state, user_key, value, ..
                } => {
                    if let Some(name) = names.get(&state) {
                        lists
                            .entry(name.clone())
                            .or_default()
                            .push((*old_subtask, user_key, value));
                    }
                }
                _ => {}
            }
        }
    }
    let mut restored = 0;
    for (name, mut elements) in lists {
        elements.sort();
        let share: Vec<Vec<u8>> = if name.starts_with(UNION) {
            elements.into_iter().map(|(_, _, value)| value).collect()
        } else if old_parallelism == parallelism {
            elements
                .into_iter()
                .filter(|(old, _, _)| *old == subtask)
                .map(|(_, _, value)| value)
                .collect()
        } else {
            let n = elements.len();
            let q = parallelism.max(1) as usize;
            let t = subtask as usize;
            let (start, end) = (t * n / q, (t + 1) * n / q);
            elements
                .into_iter()
                .skip(start)
                .take(end - start)
                .map(|(_, _, value)| value)
                .collect()
        };
        let descriptor = StateDescriptor {
            name,
            kind: StateKind::Map,
            ttl: None,
        };
        let id = backend.register(&descriptor)?;
        for (index, value) in share.iter().enumerate() {
            backend.restore_entry(id, KEY, &element_key(index), value)?;
            restored += 1;
        }
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TimerService;
    use crate::state::heap::HeapBackend;
    use crate::state::{KeyGroupRange, StateId};
    use crate::storage::files::CheckpointStorage;

    /// A heap snapshot holding `items` in `name`.
    fn snapshot(storage: &CheckpointStorage, file: &str, name: &str, items: &[&str]) -> KeyedStateHandle {
        let mut backend = HeapBackend::new();
        let id = backend
            .register(&StateDescriptor {
                name: name.into(),
                kind: StateKind::Map,
                ttl: None,
            })
            .unwrap();
        backend.set_current_key(KEY);
        for (i, item) in items.iter().enumerate() {
            backend.put(id, &element_key(i), item.as_bytes()).unwrap();
        }
        let range = KeyGroupRange { start: 0, end: 128 };
        backend
            .snapshot()
            .unwrap()
            .persist(storage.files(), file, &TimerService::new(), range, 128)
            .unwrap()
    }

    fn restored(storage: &CheckpointStorage, old: &[(u32, &KeyedStateHandle)], subtask: u32, q: u32) -> Vec<String> {
        let mut backend = HeapBackend::new();
        restore_operator_state(&mut backend, storage.files(), old, 2, subtask, q).unwrap();
        backend.set_current_key(KEY);
        let mut entries = backend.entries(StateId(0)).unwrap();
        entries.sort();
        entries
            .into_iter()
            .map(|(_, v)| String::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn split_lists_keep_their_subtask_or_are_cut_evenly_and_unions_go_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(dir.path(), "job").unwrap();
        let split = |f: &str, items: &[&str]| snapshot(&storage, f, "operator-split/x", items);
        let (a, b) = (split("a", &["a1", "a2", "a3"]), split("b", &["b1"]));
        let old = [(0, &a), (1, &b)];
        assert_eq!(restored(&storage, &old, 1, 2), ["b1"]);
        assert_eq!(restored(&storage, &old, 0, 3), ["a1"]);
        assert_eq!(restored(&storage, &old, 1, 3), ["a2"]);
        assert_eq!(restored(&storage, &old, 2, 3), ["a3", "b1"]);
        let union = |f: &str, items: &[&str]| snapshot(&storage, f, "operator-union/x", items);
        let (a, b) = (union("c", &["a1"]), union("d", &["b1", "b2"]));
        let old = [(1, &b), (0, &a)];
        assert_eq!(restored(&storage, &old, 1, 2), ["a1", "b1", "b2"]);
    }
}
