//! The heap backend: keyed state in persistent (copy-on-write) hash maps.
//!
//! Each registered state maps a key to that key's entries, ordered by user
//! key so that map iteration is deterministic. The maps are `imbl`
//! persistent maps: taking a checkpoint clones them in constant time and the
//! clone is written out on another thread while records keep updating the
//! live maps (only the parts that change are copied). Lookups borrow the
//! caller's key bytes, so reading state allocates only the value returned.

use imbl::{HashMap, OrdMap};

use super::snapshot::CanonicalFile;
use super::{KeyGroup, KeyGroupRange, KeyedStateBackend, StateDescriptor, StateError, StateId, StateResult, StateView};
use crate::state::TimerService;
use crate::storage::files::{FileStore, StorageError};
use crate::storage::manifest::KeyedStateHandle;

/// The entries of one key in one state. Value-like states (value, list,
/// reducing, aggregating) only ever use the empty user key, so they get a
/// single buffer, overwritten in place; map states get an ordered map.
/// `Single(v)` means exactly the map `{ [] → v }`.
#[derive(Debug, Clone)]
enum Entries {
    Single(Vec<u8>),
    Map(OrdMap<Vec<u8>, Vec<u8>>),
}

impl Entries {
    fn new(user_key: &[u8], value: &[u8]) -> Self {
        if user_key.is_empty() {
            Self::Single(value.to_vec())
        } else {
            Self::Map(OrdMap::unit(user_key.to_vec(), value.to_vec()))
        }
    }

    fn get(&self, user_key: &[u8]) -> Option<&Vec<u8>> {
        match self {
            Self::Single(value) => user_key.is_empty().then_some(value),
            Self::Map(map) => map.get(user_key),
        }
    }

    fn put(&mut self, user_key: &[u8], value: &[u8]) {
        match self {
            Self::Single(existing) if user_key.is_empty() => {
                existing.clear();
                existing.extend_from_slice(value);
            }
            Self::Single(existing) => {
                let mut map = OrdMap::unit(Vec::new(), std::mem::take(existing));
                map.insert(user_key.to_vec(), value.to_vec());
                *self = Self::Map(map);
            }
            Self::Map(map) => match map.get_mut(user_key) {
                Some(existing) => {
                    existing.clear();
                    existing.extend_from_slice(value);
                }
                None => {
                    map.insert(user_key.to_vec(), value.to_vec());
                }
            },
        }
    }

    /// Removes an entry; returns whether none is left.
    fn remove(&mut self, user_key: &[u8]) -> bool {
        match self {
            Self::Single(_) => user_key.is_empty(),
            Self::Map(map) => {
                map.remove(user_key);
                map.is_empty()
            }
        }
    }

    fn for_each(&self, mut each: impl FnMut(&[u8], &[u8])) {
        match self {
            Self::Single(value) => each(&[], value),
            Self::Map(map) => map.iter().for_each(|(k, v)| each(k, v)),
        }
    }
}

/// Keyed state held in memory.
#[derive(Debug, Default)]
pub struct HeapBackend {
    states: Vec<HeapState>,
    current_key: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct HeapState {
    descriptor: StateDescriptor,
    by_key: HashMap<Vec<u8>, Entries>,
}

impl HeapBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self, state: StateId) -> StateResult<&HeapState> {
        self.states
            .get(state.0 as usize)
            .ok_or(StateError::UnknownState(state.0))
    }

    /// The state and the current key, split so both can be borrowed at once.
    fn state_and_key(&mut self, state: StateId) -> StateResult<(&mut HeapState, &[u8])> {
        let key = self.current_key.as_deref().ok_or(StateError::NoCurrentKey)?;
        let state = self
            .states
            .get_mut(state.0 as usize)
            .ok_or(StateError::UnknownState(state.0))?;
        Ok((state, key))
    }
}

fn put_entry(state: &mut HeapState, key: &[u8], user_key: &[u8], value: &[u8]) {
    match state.by_key.get_mut(key) {
        Some(entries) => entries.put(user_key, value),
        None => {
            state.by_key.insert(key.to_vec(), Entries::new(user_key, value));
        }
    }
}

impl KeyedStateBackend for HeapBackend {
    fn register(&mut self, descriptor: &StateDescriptor) -> StateResult<StateId> {
        if let Some(index) = self.states.iter().position(|s| s.descriptor.name == descriptor.name) {
            let existing = &self.states[index].descriptor;
            if existing.kind != descriptor.kind {
                return Err(StateError::KindConflict {
                    name: descriptor.name.clone(),
                    existing: existing.kind,
                    requested: descriptor.kind,
                });
            }
            // A restored state learns its time-to-live from the function.
            self.states[index].descriptor.ttl = descriptor.ttl;
            return Ok(StateId(index as u32));
        }
        self.states.push(HeapState {
            descriptor: descriptor.clone(),
            by_key: HashMap::new(),
        });
        Ok(StateId((self.states.len() - 1) as u32))
    }

    fn descriptor(&self, state: StateId) -> StateResult<&StateDescriptor> {
        Ok(&self.state(state)?.descriptor)
    }

    fn set_current_key(&mut self, key: &[u8]) {
        match &mut self.current_key {
            Some(current) => {
                current.clear();
                current.extend_from_slice(key);
            }
            None => self.current_key = Some(key.to_vec()),
        }
    }

    fn current_key(&self) -> Option<&[u8]> {
        self.current_key.as_deref()
    }

    fn get(&mut self, state: StateId, user_key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        let (state, key) = self.state_and_key(state)?;
        Ok(state.by_key.get(key).and_then(|entries| entries.get(user_key)).cloned())
    }

    fn put(&mut self, state: StateId, user_key: &[u8], value: &[u8]) -> StateResult<()> {
        let key = self.current_key.take().ok_or(StateError::NoCurrentKey)?;
        let result = match self.states.get_mut(state.0 as usize) {
            Some(heap_state) => {
                put_entry(heap_state, &key, user_key, value);
                Ok(())
            }
            None => Err(StateError::UnknownState(state.0)),
        };
        self.current_key = Some(key);
        result
    }

    fn delete(&mut self, state: StateId, user_key: &[u8]) -> StateResult<()> {
        let (state, key) = self.state_and_key(state)?;
        let now_empty = match state.by_key.get_mut(key) {
            Some(entries) => entries.remove(user_key),
            None => false,
        };
        if now_empty {
            state.by_key.remove(key);
        }
        Ok(())
    }

    fn entries(&mut self, state: StateId) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let (state, key) = self.state_and_key(state)?;
        let mut all = Vec::new();
        if let Some(entries) = state.by_key.get(key) {
            entries.for_each(|k, v| all.push((k.to_vec(), v.to_vec())));
        }
        Ok(all)
    }

    fn clear(&mut self, state: StateId) -> StateResult<()> {
        let (state, key) = self.state_and_key(state)?;
        state.by_key.remove(key);
        Ok(())
    }

    fn key_count(&self) -> usize {
        let mut keys: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        for state in &self.states {
            keys.extend(state.by_key.keys().map(Vec::as_slice));
        }
        keys.len()
    }

    fn name(&self) -> &'static str {
        "heap"
    }

    fn snapshot(&mut self) -> StateResult<Box<dyn StateView>> {
        Ok(Box::new(HeapView {
            states: self.states.clone(),
        }))
    }

    fn restore_entry(&mut self, state: StateId, key: &[u8], user_key: &[u8], value: &[u8]) -> StateResult<()> {
        let heap_state = self
            .states
            .get_mut(state.0 as usize)
            .ok_or(StateError::UnknownState(state.0))?;
        put_entry(heap_state, key, user_key, value);
        Ok(())
    }
}

/// A copy-on-write clone of every state.
struct HeapView {
    states: Vec<HeapState>,
}

impl StateView for HeapView {
    fn persist(
        self: Box<Self>,
        files: &FileStore,
        name: &str,
        timers: &TimerService,
        key_groups: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<KeyedStateHandle, StorageError> {
        let mut file = CanonicalFile::create(files, name)?;
        for (index, state) in self.states.iter().enumerate() {
            file.state(index as u32, &state.descriptor)?;
            for (key, entries) in &state.by_key {
                let key_group = KeyGroup::of(key, max_parallelism).0;
                let mut written = Ok(());
                entries.for_each(|user_key, value| {
                    if written.is_ok() {
                        written = file.entry(index as u32, key_group, key, user_key, value);
                    }
                });
                written?;
            }
        }
        file.finish("heap", timers, key_groups, max_parallelism)
    }
}

// The backend's behaviour is tested against every backend at once, heap
// included, in `state::rocksdb::tests`.
