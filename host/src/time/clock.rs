//! The processing-time clock, injectable so that operators which read the
//! wall clock (processing-time windows and triggers) can be tested exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of processing time, in milliseconds since the Unix epoch.
pub trait Clock: Send {
    /// The current time.
    fn now_ms(&self) -> i64;
}

/// The wall clock ([`super::now_ms`]); what jobs run with.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        super::now_ms()
    }
}

/// A clock that moves only when told to; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    /// Sets the time.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
