//! Restart strategies: whether, and after how long, a failed job restarts
//! from its latest checkpoint.

use std::time::Duration;

/// What to do when a task fails.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RestartStrategy {
    /// Fail the job.
    None,
    /// Restart up to `attempts` times, waiting `delay` each time.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart up to `attempts` times, waiting `initial × multiplierⁿ`
    /// (at most `max`) before restart `n + 1`.
    ExponentialBackoff {
        /// Restarts allowed.
        attempts: u32,
        /// The first wait.
        initial: Duration,
        /// The longest wait.
        max: Duration,
        /// Growth of the wait.
        multiplier: f64,
    },
}

impl RestartStrategy {
    /// The wait before restart number `restart` (1 for the first), or `None`
    /// if the job must fail instead.
    pub(crate) fn delay_before(&self, restart: u32) -> Option<Duration> {
        match *self {
            Self::None => None,
            Self::FixedDelay { attempts, delay } => (restart <= attempts).then_some(delay),
            Self::ExponentialBackoff {
                attempts,
                initial,
                max,
                multiplier,
            } => (restart <= attempts).then(|| {
                let factor = multiplier.powi(i32::try_from(restart.saturating_sub(1)).unwrap_or(i32::MAX));
                // Saturating: an enormous delay or multiplier waits `max`, never panics.
                Duration::try_from_secs_f64(initial.as_secs_f64() * factor)
                    .unwrap_or(Duration::MAX)
                    .min(max)
            }),
        }
    }

    /// The number of restarts allowed.
    pub(crate) fn attempts(&self) -> u32 {
        match *self {
            Self::None => 0,
            Self::FixedDelay { attempts, .. } | Self::ExponentialBackoff { attempts, .. } => attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_strategy() {
        assert_eq!(RestartStrategy::None.delay_before(1), None);
        let fixed = RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_millis(5),
        };
        assert_eq!(fixed.delay_before(2), Some(Duration::from_millis(5)));
        assert_eq!(fixed.delay_before(3), None);
        let backoff = RestartStrategy::ExponentialBackoff {
            attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            multiplier: 2.0,
        };
        let delays: Vec<_> = (1..=6)
            .map(|n| backoff.delay_before(n).map(|d| d.as_millis()))
            .collect();
        assert_eq!(
            delays,
            vec![Some(100), Some(200), Some(350), Some(350), Some(350), None]
        );
        let huge = RestartStrategy::ExponentialBackoff {
            attempts: 3,
            initial: Duration::from_millis(u64::MAX),
            max: Duration::from_secs(60),
            multiplier: 1e300,
        };
        assert_eq!(huge.delay_before(3), Some(Duration::from_secs(60)));
    }
}
