//! Time: the processing-time clock, time domains, watermarks and windows.
//! (Timers are keyed state: they live in the state module.)

pub mod clock;
pub mod watermarks;
pub mod window_set;
pub mod windows;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires on the watermark.
    EventTime,
    /// Fires on the wall clock.
    ProcessingTime,
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
