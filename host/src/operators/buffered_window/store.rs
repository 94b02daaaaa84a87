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
use crate::runtime::TaskError;
use crate::time::windows::Window;

/// The user key of chunk `index` of `window`.
fn chunk_key(window: Window, index: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&window.to_key());
    key[16..].copy_from_slice(&index.to_be_bytes());
    key
}

impl BufferedWindowOperator {
    fn chunk_count(&mut self, window: Window) -> Result<u32, TaskError> {
        let stored = self
            .parts
            .backend
            .get(self.buffer, &window.to_key())
            .map_err(|e| self.state_error(e))?;
        Ok(stored
            .and_then(|bytes| bytes.as_slice().try_into().ok().map(u32::from_le_bytes))
            .unwrap_or(0))
    }

    /// The window's whole contents (empty if none).
    pub(super) fn load(&mut self, window: Window) -> Result<Vec<u8>, TaskError> {
        if self.accumulating {
            let stored = self
                .parts
                .backend
                .get(self.buffer, &window.to_key())
                .map_err(|e| self.state_error(e))?;
            return Ok(stored.unwrap_or_default());
        }
        let mut contents = Vec::new();
        for index in 0..self.chunk_count(window)? {
            let chunk = self
                .parts
                .backend
                .get(self.chunks, &chunk_key(window, index))
                .map_err(|e| self.state_error(e))?;
            contents.extend_from_slice(&chunk.unwrap_or_default());
        }
        Ok(contents)
    }

    /// Appends encoded elements to the window.
    pub(super) fn append(&mut self, window: Window, elements: &[u8]) -> Result<(), TaskError> {
        if elements.is_empty() {
            return Ok(());
        }
        let count = self.chunk_count(window)?;
        self.parts
            .backend
            .put(self.chunks, &chunk_key(window, count), elements)
            .and_then(|()| {
                self.parts
                    .backend
                    .put(self.buffer, &window.to_key(), &(count + 1).to_le_bytes())
            })
            .map_err(|e| self.state_error(e))
    }

    /// Replaces the window's contents (empty: removes the window).
    pub(super) fn replace(&mut self, window: Window, contents: &[u8]) -> Result<(), TaskError> {
        self.remove(window)?;
        if contents.is_empty() {
            return Ok(());
        }
        if self.accumulating {
            return self
                .parts
                .backend
                .put(self.buffer, &window.to_key(), contents)
                .map_err(|e| self.state_error(e));
        }
        self.append(window, contents)
    }

    /// Removes the window's contents.
    pub(super) fn remove(&mut self, window: Window) -> Result<(), TaskError> {
        if !self.accumulating {
            for index in 0..self.chunk_count(window)? {
                self.parts
                    .backend
                    .delete(self.chunks, &chunk_key(window, index))
                    .map_err(|e| self.state_error(e))?;
            }
        }
        self.parts
            .backend
            .delete(self.buffer, &window.to_key())
            .map_err(|e| self.state_error(e))
    }
}
