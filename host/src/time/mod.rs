//! Time: the processing-time clock, timers, watermarks and windows.

pub mod clock;
pub mod timers;
pub mod watermarks;
pub mod window_set;
pub mod windows;

pub use timers::{TimeDomain, TimerService};

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
