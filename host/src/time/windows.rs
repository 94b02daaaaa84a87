//! Window assigners: which event-time windows a record belongs to.
//!
//! As in Flink, windows are aligned to the epoch plus an `offset` (for
//! time-zone aligned windows): the window of size `s` holding timestamp `t`
//! starts at `t - (t - offset + s) mod s`. A tumbling window is a sliding
//! window whose slide equals its size.

use serde::{Deserialize, Serialize};

use crate::record::batch::EventTime;

/// A time window, `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in the window.
    pub start: EventTime,
    /// First millisecond after the window.
    pub end: EventTime,
}

impl Window {
    /// The window of the global assigner: all time.
    pub const GLOBAL: Window = Window {
        start: EventTime::MIN,
        end: EventTime::MAX,
    };

    /// Whether two windows overlap or touch (Flink's `TimeWindow.intersects`).
    pub fn intersects(self, other: Window) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(self, other: Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// The largest timestamp in the window (its event-time trigger time).
    pub fn max_timestamp(self) -> EventTime {
        self.end - 1
    }

    /// Encodes the window so that byte order is time order (for state keys).
    pub fn to_key(self) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&((self.start as u64) ^ (1 << 63)).to_be_bytes());
        key[8..].copy_from_slice(&((self.end as u64) ^ (1 << 63)).to_be_bytes());
        key
    }

    /// Decodes [`Window::to_key`].
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let start: [u8; 8] = key.get(..8)?.try_into().ok()?;
        let end: [u8; 8] = key.get(8..16)?.try_into().ok()?;
        Some(Self {
            start: (u64::from_be_bytes(start) ^ (1 << 63)) as i64,
            end: (u64::from_be_bytes(end) ^ (1 << 63)) as i64,
        })
    }
}

/// Assigns records to windows by event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        /// Window size, ms.
        size: i64,
        /// Alignment offset, ms.
        offset: i64,
    },
    /// Fixed-size windows starting every `slide`.
    Sliding {
        /// Window size, ms.
        size: i64,
        /// Distance between window starts, ms.
        slide: i64,
        /// Alignment offset, ms.
        offset: i64,
    },
    /// Session windows: a record opens `[t, t + gap)`, and windows of the
    /// same key that overlap or touch merge into one.
    Session {
        /// The inactivity gap that closes a session, ms.
        gap: i64,
    },
    /// One window per key for all time; it fires only through a trigger
    /// (Flink's `GlobalWindows`).
    Global,
}

/// Start of the window of size `size` (aligned to `offset`) holding `timestamp`.
pub fn window_start(timestamp: EventTime, offset: i64, size: i64) -> EventTime {
    timestamp - (timestamp - offset + size).rem_euclid(size)
}

impl WindowAssigner {
    /// Calls `each` with every window `timestamp` belongs to, latest first.
    pub fn assign(self, timestamp: EventTime, mut each: impl FnMut(Window)) {
        match self {
            Self::Tumbling { size, offset } => {
                let start = window_start(timestamp, offset, size);
                each(Window {
                    start,
                    end: start + size,
                });
            }
            Self::Sliding { size, slide, offset } => {
                let mut start = window_start(timestamp, offset, slide);
                while start > timestamp - size {
                    each(Window {
                        start,
                        end: start + size,
                    });
                    start -= slide;
                }
            }
            Self::Session { gap } => each(Window {
                start: timestamp,
                end: timestamp.saturating_add(gap),
            }),
            Self::Global => each(Window::GLOBAL),
        }
    }

    /// Whether windows merge (session windows).
    pub fn is_merging(self) -> bool {
        matches!(self, Self::Session { .. })
    }

    /// Whether every record lands in exactly one window.
    pub fn is_tumbling(self) -> bool {
        matches!(self, Self::Tumbling { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(assigner: WindowAssigner, timestamp: i64) -> Vec<(i64, i64)> {
        let mut all = Vec::new();
        assigner.assign(timestamp, |w| all.push((w.start, w.end)));
        all
    }

    #[test]
    fn tumbling_windows_are_aligned_to_the_epoch_plus_offset() {
        let minute = WindowAssigner::Tumbling {
            size: 60_000,
            offset: 0,
        };
        assert_eq!(windows(minute, 125_000), vec![(120_000, 180_000)]);
        assert_eq!(windows(minute, 120_000), vec![(120_000, 180_000)]);
        assert_eq!(windows(minute, 119_999), vec![(60_000, 120_000)]);
        assert_eq!(windows(minute, -1), vec![(-60_000, 0)]);
        let shifted = WindowAssigner::Tumbling {
            size: 60_000,
            offset: 15_000,
        };
        assert_eq!(windows(shifted, 125_000), vec![(75_000, 135_000)]);
    }

    #[test]
    fn sliding_windows_cover_a_timestamp_size_over_slide_times() {
        let sliding = WindowAssigner::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        assert_eq!(windows(sliding, 12), vec![(10, 20), (5, 15)]);
        assert_eq!(windows(sliding, 10), vec![(10, 20), (5, 15)]);
        let uneven = WindowAssigner::Sliding {
            size: 10,
            slide: 3,
            offset: 0,
        };
        assert_eq!(windows(uneven, 9), vec![(9, 19), (6, 16), (3, 13), (0, 10)]);
    }

    #[test]
    fn session_windows_start_at_the_record_and_merge_when_they_touch() {
        let session = WindowAssigner::Session { gap: 30 };
        assert_eq!(windows(session, 100), vec![(100, 130)]);
        let a = Window { start: 100, end: 130 };
        assert!(a.intersects(Window { start: 130, end: 160 }));
        assert!(!a.intersects(Window { start: 131, end: 161 }));
        assert_eq!(
            a.cover(Window { start: 120, end: 170 }),
            Window { start: 100, end: 170 }
        );
    }

    #[test]
    fn window_keys_sort_in_time_order() {
        let a = Window { start: -5, end: 5 };
        let b = Window { start: 3, end: 13 };
        assert!(a.to_key() < b.to_key());
        assert_eq!(Window::from_key(&b.to_key()), Some(b));
    }
}
