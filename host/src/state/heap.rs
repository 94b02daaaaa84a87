//! The heap backend: keyed state in hash maps, snapshotted in full.
//!
//! Each registered state is a map from key to that key's entries; entries are
//! ordered by user key so that map iteration is deterministic. Lookups borrow
//! the caller's key bytes, so reading state allocates only the value returned.

use std::collections::{BTreeMap, HashMap};

use super::{KeyedStateBackend, StateDescriptor, StateError, StateId, StateResult};

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keyed state held in memory.
#[derive(Debug, Default)]
pub struct HeapBackend {
    states: Vec<HeapState>,
    current_key: Option<Vec<u8>>,
}

#[derive(Debug)]
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
        let key = self
            .current_key
            .as_deref()
            .ok_or(StateError::NoCurrentKey)?;
        let state = self
            .states
            .get_mut(state.0 as usize)
            .ok_or(StateError::UnknownState(state.0))?;
        Ok((state, key))
    }
}

impl KeyedStateBackend for HeapBackend {
    fn register(&mut self, descriptor: &StateDescriptor) -> StateResult<StateId> {
        if let Some(index) = self
            .states
            .iter()
            .position(|s| s.descriptor.name == descriptor.name)
        {
            let existing = &self.states[index].descriptor;
            if existing.kind != descriptor.kind {
                return Err(StateError::KindConflict {
                    name: descriptor.name.clone(),
                    existing: existing.kind,
                    requested: descriptor.kind,
                });
            }
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
        Ok(state
            .by_key
            .get(key)
            .and_then(|entries| entries.get(user_key))
            .cloned())
    }

    fn put(&mut self, state: StateId, user_key: &[u8], value: &[u8]) -> StateResult<()> {
        let (state, key) = self.state_and_key(state)?;
        let entries = match state.by_key.get_mut(key) {
            Some(entries) => entries,
            None => state.by_key.entry(key.to_vec()).or_default(),
        };
        match entries.get_mut(user_key) {
            Some(existing) => {
                existing.clear();
                existing.extend_from_slice(value);
            }
            None => {
                entries.insert(user_key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&mut self, state: StateId, user_key: &[u8]) -> StateResult<()> {
        let (state, key) = self.state_and_key(state)?;
        if let Some(entries) = state.by_key.get_mut(key) {
            entries.remove(user_key);
            if entries.is_empty() {
                state.by_key.remove(key);
            }
        }
        Ok(())
    }

    fn entries(&mut self, state: StateId) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let (state, key) = self.state_and_key(state)?;
        Ok(state
            .by_key
            .get(key)
            .map(|entries| {
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateKind;

    fn descriptor(name: &str, kind: StateKind) -> StateDescriptor {
        StateDescriptor {
            name: name.into(),
            kind,
            ttl: None,
        }
    }

    #[test]
    fn entries_are_scoped_to_the_current_key() {
        let mut backend = HeapBackend::new();
        let count = backend
            .register(&descriptor("count", StateKind::Value))
            .unwrap();
        backend.set_current_key(b"a");
        backend.put(count, b"", b"1").unwrap();
        backend.set_current_key(b"b");
        assert_eq!(backend.get(count, b"").unwrap(), None);
        backend.put(count, b"", b"2").unwrap();
        backend.set_current_key(b"a");
        assert_eq!(backend.get(count, b"").unwrap(), Some(b"1".to_vec()));
        backend.clear(count).unwrap();
        assert_eq!(backend.get(count, b"").unwrap(), None);
        assert_eq!(backend.key_count(), 1);
    }

    #[test]
    fn map_entries_come_back_ordered_by_user_key() {
        let mut backend = HeapBackend::new();
        let map = backend.register(&descriptor("m", StateKind::Map)).unwrap();
        backend.set_current_key(b"k");
        backend.put(map, b"zeta", b"1").unwrap();
        backend.put(map, b"alpha", b"2").unwrap();
        backend.delete(map, b"nothing").unwrap();
        let keys: Vec<_> = backend
            .entries(map)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"alpha".to_vec(), b"zeta".to_vec()]);
    }

    #[test]
    fn a_name_cannot_change_kind_and_access_needs_a_key() {
        let mut backend = HeapBackend::new();
        let value = backend
            .register(&descriptor("s", StateKind::Value))
            .unwrap();
        assert_eq!(
            backend
                .register(&descriptor("s", StateKind::Value))
                .unwrap(),
            value
        );
        let err = backend
            .register(&descriptor("s", StateKind::List))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "state `s` is already declared as value state; it cannot also be list state"
        );
        assert!(matches!(
            backend.get(value, b""),
            Err(StateError::NoCurrentKey)
        ));
    }
}
