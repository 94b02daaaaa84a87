//! Histograms with fixed bucket bounds: [`AtomicHistogram`] for the
//! runtime to record into (once per batch or per checkpoint, lock-free), and
//! [`Histogram`], a copy that readers encode.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket upper bounds for durations in seconds: 10 µs to 60 s.
const SECONDS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0,
];

/// Bucket upper bounds for sizes in bytes: 1 KiB to 1 GiB.
const BYTES: &[f64] = &[
    1024.0,
    16_384.0,
    262_144.0,
    1_048_576.0,
    16_777_216.0,
    268_435_456.0,
    1_073_741_824.0,
];

/// A histogram at one moment: bucket bounds, the count per bucket (not
/// cumulative; the last bucket counts what exceeds every bound), the sum.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram of durations in seconds.
    pub(crate) fn seconds() -> Self {
        Self::with_bounds(SECONDS)
    }

    /// An empty histogram of sizes in bytes.
    pub(crate) fn bytes() -> Self {
        Self::with_bounds(BYTES)
    }

    fn with_bounds(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Adds one observation.
    pub(crate) fn observe(&mut self, value: f64) {
        let bucket = bucket_of(self.bounds, value);
        self.counts[bucket] += 1;
        self.sum += value;
    }

    /// Adds the observations of `other` (same bounds).
    pub(crate) fn merge(&mut self, other: &Histogram) {
        if self.bounds.len() == other.bounds.len() {
            for (count, more) in self.counts.iter_mut().zip(&other.counts) {
                *count += more;
            }
            self.sum += other.sum;
        }
    }

    /// How many observations.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the observations.
    pub(crate) fn sum(&self) -> f64 {
        self.sum
    }

    /// Cumulative buckets as Prometheus wants them: (upper bound, count of
    /// observations at or below it), the last one `+Inf`.
    pub(crate) fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, count)| {
                total += count;
                (self.bounds.get(i).copied().unwrap_or(f64::INFINITY), total)
            })
            .collect()
    }
}

fn bucket_of(bounds: &[f64], value: f64) -> usize {
    bounds.iter().position(|bound| value <= *bound).unwrap_or(bounds.len())
}

/// A histogram of durations recorded without a lock (relaxed atomics).
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self {
            counts: (0..=SECONDS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    /// Adds one duration.
    pub(crate) fn observe(&self, duration: std::time::Duration) {
        let bucket = bucket_of(SECONDS, duration.as_secs_f64());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A copy, in seconds.
    pub(crate) fn read(&self) -> Histogram {
        Histogram {
            bounds: SECONDS,
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_at_infinity() {
        let mut sizes = Histogram::bytes();
        for value in [10.0, 1024.0, 1025.0, 5e9] {
            sizes.observe(value);
        }
        let buckets = sizes.cumulative();
        assert_eq!(buckets[0], (1024.0, 2));
        assert_eq!(buckets[1], (16_384.0, 3));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 4)));
        assert_eq!(sizes.count(), 4);
        assert_eq!(sizes.sum(), 10.0 + 1024.0 + 1025.0 + 5e9);
    }

    #[test]
    fn atomic_durations_read_as_seconds_and_merge() {
        let calls = AtomicHistogram::default();
        calls.observe(Duration::from_micros(3));
        calls.observe(Duration::from_millis(2));
        let mut read = calls.read();
        assert_eq!(read.cumulative()[0], (0.000_01, 1));
        assert_eq!(read.cumulative()[5], (0.005, 2));
        assert!((read.sum() - 0.002_003).abs() < 1e-12);
        read.merge(&calls.read());
        assert_eq!(read.count(), 4);
    }
}
