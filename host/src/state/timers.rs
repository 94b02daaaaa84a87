//! Timers of a keyed operator: one per key, time domain and timestamp.
//!
//! Event-time timers fire when the operator's watermark passes their
//! timestamp; processing-time timers when the wall clock does. Timers are
//! kept ordered by timestamp, so firing is a walk from the front. The sets
//! are persistent (`imbl`), so a checkpoint clones them in constant time.

use imbl::OrdSet;

use crate::state::KeyGroup;
use crate::state::snapshot::{SnapshotItem, SnapshotWriter};
use crate::time::TimeDomain;

/// Registered timers of one subtask.
#[derive(Debug, Default, Clone)]
pub struct TimerService {
    event_time: OrdSet<(i64, Vec<u8>)>,
    processing_time: OrdSet<(i64, Vec<u8>)>,
}

/// Timers taken out of the service to be fired, as flat columns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueTimers {
    /// Keys, back to back.
    pub keys: Vec<u8>,
    /// End offset of each timer's key.
    pub key_ends: Vec<u32>,
    /// Each timer's timestamp.
    pub timestamps: Vec<i64>,
}

impl DueTimers {
    /// Number of timers.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }
}

impl TimerService {
    /// An empty service.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&mut self, domain: TimeDomain) -> &mut OrdSet<(i64, Vec<u8>)> {
        match domain {
            TimeDomain::EventTime => &mut self.event_time,
            TimeDomain::ProcessingTime => &mut self.processing_time,
        }
    }

    /// Registers a timer (a second registration does nothing).
    pub fn register(&mut self, domain: TimeDomain, key: &[u8], timestamp: i64) {
        self.set(domain).insert((timestamp, key.to_vec()));
    }

    /// Deletes a timer, if it exists.
    pub fn delete(&mut self, domain: TimeDomain, key: &[u8], timestamp: i64) {
        self.set(domain).remove(&(timestamp, key.to_vec()));
    }

    /// Takes up to `max` timers with timestamp `<= time`, in timestamp order.
    pub fn take_due(&mut self, domain: TimeDomain, time: i64, max: usize) -> DueTimers {
        let set = self.set(domain);
        let mut due = DueTimers::default();
        while due.len() < max {
            match set.get_min() {
                Some((timestamp, _)) if *timestamp <= time => {}
                _ => break,
            }
            let Some((timestamp, key)) = set.remove_min() else {
                break;
            };
            due.keys.extend_from_slice(&key);
            due.key_ends.push(u32::try_from(due.keys.len()).unwrap_or(u32::MAX));
            due.timestamps.push(timestamp);
        }
        due
    }

    /// The earliest event-time timer.
    pub fn next_event_time(&self) -> Option<i64> {
        self.event_time.get_min().map(|(timestamp, _)| *timestamp)
    }

    /// The earliest processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing_time.get_min().map(|(timestamp, _)| *timestamp)
    }

    /// Number of registered timers in both domains.
    pub fn len(&self) -> usize {
        self.event_time.len() + self.processing_time.len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every timer to a canonical snapshot.
    pub fn write_items<W: std::io::Write>(
        &self,
        writer: &mut SnapshotWriter<W>,
        max_parallelism: u32,
    ) -> std::io::Result<()> {
        for (event_time, set) in [(true, &self.event_time), (false, &self.processing_time)] {
            for (timestamp, key) in set {
                writer.write(&SnapshotItem::Timer {
                    event_time,
                    key_group: KeyGroup::of(key, max_parallelism).0,
                    key: key.clone(),
                    timestamp: *timestamp,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_once_per_key_and_timestamp() {
        let mut timers = TimerService::new();
        timers.register(TimeDomain::EventTime, b"b", 20);
        timers.register(TimeDomain::EventTime, b"a", 10);
        timers.register(TimeDomain::EventTime, b"a", 10);
        timers.register(TimeDomain::EventTime, b"c", 30);
        timers.delete(TimeDomain::EventTime, b"c", 30);
        timers.register(TimeDomain::ProcessingTime, b"p", 5);
        let due = timers.take_due(TimeDomain::EventTime, 25, 100);
        assert_eq!(due.timestamps, vec![10, 20]);
        assert_eq!(due.keys, b"ab");
        assert_eq!(due.key_ends, vec![1, 2]);
        assert!(timers.take_due(TimeDomain::EventTime, i64::MAX, 100).is_empty());
        assert_eq!(timers.next_processing_time(), Some(5));
        assert_eq!(timers.len(), 1);
    }
}
