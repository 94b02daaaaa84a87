//! Windows that fire together, with their buffered elements, as flat
//! columns: what a process-window function or an evictor gets in one call.

use crate::record::batch::{EventTime, RecordBatch, span};
use crate::time::windows::Window;

/// Windows, their keys and their elements. Window `i` belongs to key
/// `keys[span(key_ends, i)]` and holds records `span(window_ends, i)` of
/// `elements`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WindowSet {
    /// Keys, back to back.
    pub keys: Vec<u8>,
    /// End offset of each window's key.
    pub key_ends: Vec<u32>,
    /// The windows.
    pub windows: Vec<Window>,
    /// All elements, window after window.
    pub elements: RecordBatch,
    /// End (in `elements`) of each window's elements.
    pub window_ends: Vec<u32>,
}

impl WindowSet {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Starts window `window` of `key`; elements pushed next belong to it.
    pub fn begin(&mut self, key: &[u8], window: Window) {
        self.keys.extend_from_slice(key);
        self.key_ends.push(offset(self.keys.len()));
        self.windows.push(window);
        self.window_ends.push(offset(self.elements.len()));
    }

    /// Appends an element to the window begun last.
    pub fn push(&mut self, payload: &[u8], timestamp: EventTime) {
        self.elements.push(payload, timestamp);
        if let Some(end) = self.window_ends.last_mut() {
            *end = offset(self.elements.len());
        }
    }

    /// The key of window `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        &self.keys[span(&self.key_ends, i)]
    }

    /// The positions in `elements` of window `i`'s elements.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        span(&self.window_ends, i)
    }

    /// Keeps only the elements for which `keep(position)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut kept = RecordBatch::with_capacity(self.elements.len(), self.elements.payload_bytes());
        let mut ends = Vec::with_capacity(self.window_ends.len());
        for w in 0..self.len() {
            for i in self.range(w) {
                if keep(i) {
                    kept.push(self.elements.payload(i), self.elements.timestamps[i]);
                }
            }
            ends.push(offset(kept.len()));
        }
        self.elements = kept;
        self.window_ends = ends;
    }
}

fn offset(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retains_elements_window_by_window() {
        let mut set = WindowSet::default();
        set.begin(b"a", Window { start: 0, end: 10 });
        set.push(b"x", 1);
        set.push(b"y", 2);
        set.begin(b"bb", Window { start: 10, end: 20 });
        set.begin(b"c", Window { start: 20, end: 30 });
        set.push(b"z", 25);
        assert_eq!(set.window_ends, vec![2, 2, 3]);
        assert_eq!(set.key(1), b"bb");
        set.retain(|i| i != 0);
        assert_eq!(set.window_ends, vec![1, 1, 2]);
        assert_eq!(set.elements.payload(0), b"y");
        assert_eq!(set.range(2), 1..2);
    }
}
