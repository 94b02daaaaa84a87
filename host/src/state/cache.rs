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

/// Bytes of an address kept inside the entry (no pointer to follow on a
/// lookup); longer addresses go to the heap.
const INLINE: usize = 30;

/// `key ++ user key`, inline when short.
enum Address {
    Inline { bytes: [u8; INLINE], len: u8 },
    Heap(Box<[u8]>),
}

impl Address {
    fn new(key: &[u8], user_key: &[u8]) -> Self {
        let len = key.len() + user_key.len();
        if len <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            bytes[key.len()..len].copy_from_slice(user_key);
            Self::Inline { bytes, len: len as u8 }
        } else {
            Self::Heap([key, user_key].concat().into_boxed_slice())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline { bytes, len } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

/// A cached entry: the backend key, the map's user key, and the value
/// (empty: absent).
struct CachedEntry {
    address: Address,
    key_len: usize,
    value: Vec<u8>,
    dirty: bool,
}

impl CachedEntry {
    fn key(&self) -> &[u8] {
        &self.address.bytes()[..self.key_len]
    }

    fn user_key(&self) -> &[u8] {
        &self.address.bytes()[self.key_len..]
    }

    fn is(&self, key: &[u8], user_key: &[u8]) -> bool {
        let bytes = self.address.bytes();
        self.key_len == key.len() && bytes.len() == key.len() + user_key.len() && {
            let (k, u) = bytes.split_at(self.key_len);
            k == key && u == user_key
        }
    }
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

            capacity,
        }
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
            .find(hash, |&slot| entries[slot as usize].is(key, user_key))
            .copied()
    }

    /// The slot of entry (`key`, `user_key`), read from the backend on a
    /// miss.
    pub fn slot(&mut self, backend: &mut dyn KeyedStateBackend, key: &[u8], user_key: &[u8]) -> StateResult<u32> {
        let hash = Self::hash(key, user_key);
        if let Some(slot) = self.find(hash, key, user_key) {
            return Ok(slot);
        }
        backend.set_current_key(key);
        let value = backend.get(self.state, user_key)?.unwrap_or_default();
        let entry = CachedEntry {
            address: Address::new(key, user_key),
            key_len: key.len(),
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
        let found = self
            .index
            .find_entry(hash, |&slot| entries[slot as usize].is(key, user_key));
        if let Ok(found) = found {
            let (slot, _) = found.remove();
            let entry = &mut self.entries[slot as usize];
            entry.value = Vec::new();
            entry.dirty = false;
            entry.address = Address::Inline {
                bytes: [0; INLINE],
                len: 0,
            };
            entry.key_len = 0;
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
            let (key, user_key) = entry.address.bytes().split_at(entry.key_len);
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
