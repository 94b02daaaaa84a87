//! The built-in evictors (Flink's `CountEvictor` and `TimeEvictor`): which
//! elements of firing windows to remove.

use crate::time::window_set::WindowSet;

/// Positions in `set.elements` a count evictor removes: all but the last
/// `count` elements of each window (in arrival order).
pub(super) fn by_count(set: &WindowSet, count: u64) -> Vec<bool> {
    let mut evict = vec![false; set.elements.len()];
    for w in 0..set.len() {
        let range = set.range(w);
        let excess = (range.len() as u64).saturating_sub(count) as usize;
        for flag in &mut evict[range.start..range.start + excess] {
            *flag = true;
        }
    }
    evict
}

/// Positions in `set.elements` a time evictor removes: as Flink's
/// `TimeEvictor`, the elements whose timestamp is at or below the newest
/// timestamp of their window minus `size_ms`.
pub(super) fn by_time(set: &WindowSet, size_ms: i64) -> Vec<bool> {
    let mut evict = vec![false; set.elements.len()];
    for w in 0..set.len() {
        let range = set.range(w);
        let Some(newest) = set.elements.timestamps[range.clone()].iter().max() else {
            continue;
        };
        let cutoff = newest.saturating_sub(size_ms);
        for i in range {
            evict[i] = set.elements.timestamps[i] <= cutoff;
        }
    }
    evict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::windows::Window;

    fn set() -> WindowSet {
        let mut set = WindowSet::default();
        set.begin(b"k", Window { start: 0, end: 100 });
        for ts in [50, 10, 90, 40] {
            set.push(b"x", ts);
        }
        set.begin(b"k", Window { start: 100, end: 200 });
        set.push(b"y", 150);
        set
    }

    #[test]
    fn count_keeps_the_last_elements_of_each_window() {
        assert_eq!(by_count(&set(), 2), vec![true, true, false, false, false]);
        assert_eq!(by_count(&set(), 9), vec![false; 5]);
    }

    #[test]
    fn time_keeps_the_elements_newer_than_the_newest_minus_the_size() {
        // Newest of the first window: 90; cutoff 50 (50 itself is evicted).
        assert_eq!(by_time(&set(), 40), vec![true, true, false, true, false]);
    }
}
