//! Where a window's contents live in keyed state.
//!
//! An accumulator is one value of the map state `window-buffer` (user key:
//! the window). Elements are appended in chunks, one per batch that adds to
//! the window: the map state `window-chunks` (user key: the window, then the
//! chunk's number) holds them, and `window-buffer` holds the window's chunk
//! count. Adding a batch to a window thus costs the batch, not the window;
//! a window is read whole only when it fires or merges, and rewritten whole
//! only when an evictor, a purge or a merge changes it.
//!
//! Every method works on the backend's current key.

use super::BufferedWindowOperator;
use crate::exchange::TaskError;
use crate::state::{KeyedStateBackend, StateId, StateResult};
use crate::time::windows::Window;

/// The states that hold windows' contents.
#[derive(Debug, Clone, Copy)]
pub(super) struct Store {
    /// Accumulators, or chunk counts.
    pub buffer: StateId,
    /// Chunks of elements.
    pub chunks: StateId,
    /// Windows hold an accumulator, not elements.
    pub accumulating: bool,
}

/// The user key of chunk `index` of `window`.
fn chunk_key(window: Window, index: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&window.to_key());
    key[16..].copy_from_slice(&index.to_be_bytes());
    key
}

impl Store {
    fn chunk_count(self, backend: &mut dyn KeyedStateBackend, window: Window) -> StateResult<u32> {
        let stored = backend.get(self.buffer, &window.to_key())?;
        Ok(stored
            .and_then(|bytes| bytes.as_slice().try_into().ok().map(u32::from_le_bytes))
            .unwrap_or(0))
    }

    /// The window's whole contents (empty if none).
    pub(super) fn load(self, backend: &mut dyn KeyedStateBackend, window: Window) -> StateResult<Vec<u8>> {
        if self.accumulating {
            return Ok(backend.get(self.buffer, &window.to_key())?.unwrap_or_default());
        }
        let mut contents = Vec::new();
        for index in 0..self.chunk_count(backend, window)? {
            if let Some(chunk) = backend.get(self.chunks, &chunk_key(window, index))? {
                contents.extend_from_slice(&chunk);
            }
        }
        Ok(contents)
    }

    /// Appends encoded elements to the window.
    pub(super) fn append(
        self,
        backend: &mut dyn KeyedStateBackend,
        window: Window,
        elements: &[u8],
    ) -> StateResult<()> {
        if elements.is_empty() {
            return Ok(());
        }
        let count = self.chunk_count(backend, window)?;
        backend.put(self.chunks, &chunk_key(window, count), elements)?;
        backend.put(self.buffer, &window.to_key(), &(count + 1).to_le_bytes())
    }

    /// Replaces the window's contents (empty: removes the window).
    pub(super) fn replace(
        self,
        backend: &mut dyn KeyedStateBackend,
        window: Window,
        contents: &[u8],
    ) -> StateResult<()> {
        self.remove(backend, window)?;
        if contents.is_empty() {
            Ok(())
        } else if self.accumulating {
            backend.put(self.buffer, &window.to_key(), contents)
        } else {
            self.append(backend, window, contents)
        }
    }

    /// Removes the window's contents.
    pub(super) fn remove(self, backend: &mut dyn KeyedStateBackend, window: Window) -> StateResult<()> {
        if !self.accumulating {
            for index in 0..self.chunk_count(backend, window)? {
                backend.delete(self.chunks, &chunk_key(window, index))?;
            }
        }
        backend.delete(self.buffer, &window.to_key())
    }
}

impl BufferedWindowOperator {
    /// [`Store::load`] for the current key.
    pub(super) fn load(&mut self, window: Window) -> Result<Vec<u8>, TaskError> {
        self.store
            .load(self.context.backend.as_mut(), window)
            .map_err(|e| self.context.state_error(e))
    }

    /// [`Store::append`] for the current key.
    pub(super) fn append(&mut self, window: Window, elements: &[u8]) -> Result<(), TaskError> {
        self.store
            .append(self.context.backend.as_mut(), window, elements)
            .map_err(|e| self.context.state_error(e))
    }

    /// [`Store::replace`] for the current key.
    pub(super) fn replace(&mut self, window: Window, contents: &[u8]) -> Result<(), TaskError> {
        self.store
            .replace(self.context.backend.as_mut(), window, contents)
            .map_err(|e| self.context.state_error(e))
    }

    /// [`Store::remove`] for the current key.
    pub(super) fn remove(&mut self, window: Window) -> Result<(), TaskError> {
        self.store
            .remove(self.context.backend.as_mut(), window)
            .map_err(|e| self.context.state_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::heap::HeapBackend;
    use crate::state::{StateDescriptor, StateKind};

    fn store(backend: &mut HeapBackend, accumulating: bool) -> Store {
        let mut map = |name: &str| {
            backend
                .register(&StateDescriptor {
                    name: name.into(),
                    kind: StateKind::Map,
                    ttl: None,
                })
                .expect("registers")
        };
        Store {
            buffer: map("window-buffer"),
            chunks: map("window-chunks"),
            accumulating,
        }
    }

    #[test]
    fn appends_chunks_and_reads_them_back_in_order() {
        let mut backend = HeapBackend::new();
        let store = store(&mut backend, false);
        let (a, b) = (Window { start: 0, end: 10 }, Window { start: 10, end: 20 });
        backend.set_current_key(b"k");
        store.append(&mut backend, a, b"one").expect("append");
        store.append(&mut backend, a, b"").expect("append nothing");
        store.append(&mut backend, b, b"other").expect("append");
        store.append(&mut backend, a, b"two").expect("append");
        assert_eq!(store.load(&mut backend, a).expect("load"), b"onetwo");
        store.replace(&mut backend, a, b"new").expect("replace");
        assert_eq!(store.load(&mut backend, a).expect("load"), b"new");
        assert_eq!(backend.entries(store.chunks).expect("entries").len(), 2);
        store.replace(&mut backend, a, b"").expect("replace with nothing");
        assert_eq!(store.load(&mut backend, a).expect("load"), b"");
        assert_eq!(store.load(&mut backend, b).expect("load"), b"other");
        store.remove(&mut backend, b).expect("remove");
        assert!(backend.entries(store.chunks).expect("entries").is_empty());
        assert!(backend.entries(store.buffer).expect("entries").is_empty());
    }

    #[test]
    fn keeps_an_accumulator_as_one_value() {
        let mut backend = HeapBackend::new();
        let store = store(&mut backend, true);
        let window = Window { start: 0, end: 10 };
        backend.set_current_key(b"k");
        store.replace(&mut backend, window, b"acc").expect("replace");
        assert_eq!(store.load(&mut backend, window).expect("load"), b"acc");
        store.remove(&mut backend, window).expect("remove");
        assert_eq!(store.load(&mut backend, window).expect("load"), b"");
    }
}
