//! A write-back cache over one map state of a keyed backend.
//!
//! Hot operators (the window operator's accumulators) touch the same few
//! thousand entries again and again: one per key and open window. Going to
//! the backend for each of them costs a persistent-map path copy (heap) or a
//! RocksDB read and write per record. The cache keeps those entries in a
//! plain hash map with a fast hasher; they reach the backend only when the
//! operator flushes, which it does before every snapshot (so checkpoints see
//! exactly the operator's state) and before it reads the backend directly.
//!
//! Entries are addressed by a stable slot number, so an operator can resolve
//! each record to its entry once and then work with plain indices. Slots stay
//! valid until [`MapStateCache::flush_and_trim`] evicts them.

use std::hash::Hasher as _;

use hashbrown::HashTable;
use rustc_hash::FxHasher;

use super::{KeyedStateBackend, StateId, StateResult};

/// A cached entry: the backend key, the map's user key, and the value
/// (empty: absent).
struct CachedEntry {
    /// `len(key) as u32 LE ++ key ++ user key`.
    address: Box<[u8]>,
    value: Vec<u8>,
    dirty: bool,
}

impl CachedEntry {
    fn key(&self) -> &[u8] {
        let len = key_len(&self.address);
        &self.address[4..4 + len]
    }

    fn user_key(&self) -> &[u8] {
        let len = key_len(&self.address);
        &self.address[4 + len..]
    }
}

fn key_len(address: &[u8]) -> usize {
    let mut len = [0u8; 4];
    len.copy_from_slice(&address[..4]);
    u32::from_le_bytes(len) as usize
}

/// A write-back cache over the map state `state`; see the module docs.
pub struct MapStateCache {
    state: StateId,
    /// Slots of `entries`, by the hash of their key and user key: looked up
    /// with the borrowed keys, so a hit copies nothing.
    index: HashTable<u32>,
    entries: Vec<CachedEntry>,
    /// Slots of removed entries, for reuse.
    free: Vec<u32>,
    scratch: Vec<u8>,
    /// Most entries kept after a flush.
    capacity: usize,
}

impl MapStateCache {
    /// A cache over `state` that keeps at most about `capacity` entries
    /// between flushes.
    pub fn new(state: StateId, capacity: usize) -> Self {
        Self {
            state,
            index: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
            scratch: Vec::new(),
            capacity,
        }
    }

    fn address(&mut self, key: &[u8], user_key: &[u8]) {
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.scratch.extend_from_slice(key);
        self.scratch.extend_from_slice(user_key);
    }

    fn hash(key: &[u8], user_key: &[u8]) -> u64 {
        let mut hasher = FxHasher::default();
        hasher.write(key);
        hasher.write_u8(0xff);
        hasher.write(user_key);
        hasher.finish()
    }

    /// The slot of (`key`, `user_key`), if it is cached.
    fn find(&self, hash: u64, key: &[u8], user_key: &[u8]) -> Option<u32> {
        let entries = &self.entries;
        self.index
            .find(hash, |&slot| {
                let entry = &entries[slot as usize];
                entry.key() == key && entry.user_key() == user_key
            })
            .copied()
    }

    /// The slot of entry (`key`, `user_key`), read from the backend on a
    /// miss.
    pub fn slot(&mut self, backend: &mut dyn KeyedStateBackend, key: &[u8], user_key: &[u8]) -> StateResult<u32> {
        let hash = Self::hash(key, user_key);
        if let Some(slot) = self.find(hash, key, user_key) {
            return Ok(slot);
        }
        self.address(key, user_key);
        backend.set_current_key(key);
        let value = backend.get(self.state, user_key)?.unwrap_or_default();
        let entry = CachedEntry {
            address: self.scratch.as_slice().into(),
            value,
            dirty: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                slot
            }
            None => {
                self.entries.push(entry);
                u32::try_from(self.entries.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let entries = &self.entries;
        self.index.insert_unique(hash, slot, |&slot| {
            let entry = &entries[slot as usize];
            Self::hash(entry.key(), entry.user_key())
        });
        Ok(slot)
    }

    /// The value in `slot` (empty: absent).
    pub fn value(&self, slot: u32) -> &[u8] {
        &self.entries[slot as usize].value
    }

    /// The backend key of `slot`.
    pub fn key(&self, slot: u32) -> &[u8] {
        self.entries[slot as usize].key()
    }

    /// The map's user key of `slot`.
    pub fn user_key(&self, slot: u32) -> &[u8] {
        self.entries[slot as usize].user_key()
    }

    /// Sets the value in `slot` (empty: absent); the backend learns it at
    /// the next flush.
    pub fn set(&mut self, slot: u32, value: &[u8]) {
        let entry = &mut self.entries[slot as usize];
        entry.value.clear();
        entry.value.extend_from_slice(value);
        entry.dirty = true;
    }

    /// Removes entry (`key`, `user_key`) from the cache and the backend.
    pub fn remove(&mut self, backend: &mut dyn KeyedStateBackend, key: &[u8], user_key: &[u8]) -> StateResult<()> {
        let hash = Self::hash(key, user_key);
        let entries = &self.entries;
        let found = self.index.find_entry(hash, |&slot| {
            let entry = &entries[slot as usize];
            entry.key() == key && entry.user_key() == user_key
        });
        if let Ok(found) = found {
            let (slot, _) = found.remove();
            let entry = &mut self.entries[slot as usize];
            entry.value = Vec::new();
            entry.dirty = false;
            entry.address = Box::default();
            self.free.push(slot);
        }
        backend.set_current_key(key);
        backend.delete(self.state, user_key)
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Writes every changed entry to the backend.
    pub fn flush(&mut self, backend: &mut dyn KeyedStateBackend) -> StateResult<()> {
        for entry in &mut self.entries {
            if !entry.dirty {
                continue;
            }
            entry.dirty = false;
            let len = key_len(&entry.address);
            let (key, user_key) = entry.address[4..].split_at(len);
            backend.set_current_key(key);
            if entry.value.is_empty() {
                backend.delete(self.state, user_key)?;
            } else {
                backend.put(self.state, user_key, &entry.value)?;
            }
        }
        Ok(())
    }

    /// Flushes, and drops every entry if there are more than the capacity
    /// (slots are invalid afterwards).
    pub fn flush_and_trim(&mut self, backend: &mut dyn KeyedStateBackend) -> StateResult<()> {
        self.flush(backend)?;
        if self.index.len() > self.capacity {
            self.index.clear();
            self.entries.clear();
            self.free.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::heap::HeapBackend;
    use crate::state::{StateDescriptor, StateKind};

    fn backend() -> (HeapBackend, StateId) {
        let mut backend = HeapBackend::new();
        let state = backend
            .register(&StateDescriptor {
                name: "m".into(),
                kind: StateKind::Map,
                ttl: None,
            })
            .expect("registers");
        (backend, state)
    }

    #[test]
    fn reads_through_and_writes_back_on_flush() {
        let (mut backend, state) = backend();
        backend.set_current_key(b"k");
        backend.put(state, b"a", b"old").expect("put");
        let mut cache = MapStateCache::new(state, 10);
        let a = cache.slot(&mut backend, b"k", b"a").expect("slot");
        assert_eq!(cache.value(a), b"old");
        let b = cache.slot(&mut backend, b"k", b"b").expect("slot");
        assert_eq!(cache.value(b), b"");
        assert_eq!(cache.slot(&mut backend, b"k", b"a").expect("slot"), a, "a hit");
        cache.set(a, b"new");
        cache.set(b, b"fresh");
        assert_eq!((cache.key(b), cache.user_key(b)), (&b"k"[..], &b"b"[..]));
        backend.set_current_key(b"k");
        assert_eq!(backend.get(state, b"a").expect("get").as_deref(), Some(&b"old"[..]));
        cache.flush(&mut backend).expect("flush");
        backend.set_current_key(b"k");
        assert_eq!(backend.get(state, b"a").expect("get").as_deref(), Some(&b"new"[..]));
        assert_eq!(backend.get(state, b"b").expect("get").as_deref(), Some(&b"fresh"[..]));
    }

    #[test]
    fn removal_reaches_the_backend_and_frees_the_slot() {
        let (mut backend, state) = backend();
        let mut cache = MapStateCache::new(state, 10);
        let a = cache.slot(&mut backend, b"k1", b"a").expect("slot");
        cache.set(a, b"1");
        cache.flush(&mut backend).expect("flush");
        cache.remove(&mut backend, b"k1", b"a").expect("remove");
        assert!(cache.is_empty());
        backend.set_current_key(b"k1");
        assert_eq!(backend.get(state, b"a").expect("get"), None);
        let b = cache.slot(&mut backend, b"k2", b"b").expect("slot");
        assert_eq!(b, a, "the slot is reused");
        assert_eq!(cache.value(b), b"");
    }

    #[test]
    fn trimming_keeps_the_state_and_drops_the_entries() {
        let (mut backend, state) = backend();
        let mut cache = MapStateCache::new(state, 1);
        for key in [&b"x"[..], b"y"] {
            let slot = cache.slot(&mut backend, key, b"w").expect("slot");
            cache.set(slot, key);
        }
        cache.flush_and_trim(&mut backend).expect("trim");
        assert_eq!(cache.len(), 0);
        let slot = cache.slot(&mut backend, b"y", b"w").expect("slot");
        assert_eq!(cache.value(slot), b"y");
    }
}
