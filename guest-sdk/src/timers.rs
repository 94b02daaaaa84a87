//! Timers: the ones that fire, and registering them for the current key.

use crate::__bindings::weir::udf::{timers, types as wit};
use crate::EventTime;
use crate::runtime::scope;

/// Which clock a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Event time: fires when the watermark passes the timer.
    EventTime,
    /// Processing time: fires when the host's wall clock passes the timer.
    ProcessingTime,
}

impl TimeDomain {
    /// Converts the WIT enum.
    pub(crate) fn from_wit(domain: wit::TimeDomain) -> Self {
        match domain {
            wit::TimeDomain::EventTime => Self::EventTime,
            wit::TimeDomain::ProcessingTime => Self::ProcessingTime,
        }
    }
}

/// A timer that fired.
#[derive(Clone, Copy, Debug)]
pub struct Timer<'a> {
    timestamp: EventTime,
    domain: TimeDomain,
    key: &'a [u8],
}

impl<'a> Timer<'a> {
    /// A timer of `key`.
    pub(crate) fn new(timestamp: EventTime, domain: TimeDomain, key: &'a [u8]) -> Self {
        Self { timestamp, domain, key }
    }

    /// The time the timer was registered for, in its domain's clock (ms).
    pub fn timestamp(&self) -> EventTime {
        self.timestamp
    }

    /// The clock the timer belongs to.
    pub fn domain(&self) -> TimeDomain {
        self.domain
    }

    /// The key the timer belongs to.
    pub fn key(&self) -> &'a [u8] {
        self.key
    }
}

/// Registers an event-time timer for the current key.
pub(crate) fn register_event_time(timestamp: EventTime) {
    scope::select_current_key();
    timers::register_event_time_timer(timestamp);
}

/// Deletes an event-time timer of the current key.
pub(crate) fn delete_event_time(timestamp: EventTime) {
    scope::select_current_key();
    timers::delete_event_time_timer(timestamp);
}

/// Registers a processing-time timer for the current key.
pub(crate) fn register_processing_time(timestamp: i64) {
    scope::select_current_key();
    timers::register_processing_time_timer(timestamp);
}

/// Deletes a processing-time timer of the current key.
pub(crate) fn delete_processing_time(timestamp: i64) {
    scope::select_current_key();
    timers::delete_processing_time_timer(timestamp);
}
