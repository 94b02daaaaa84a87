//! What a window's Wasm trigger keeps between calls, as one state value:
//! its opaque state and the timers it registered in each time domain.
//!
//! The timer service holds timers per key and timestamp only, so a fired
//! timer is matched to the windows whose trigger registered it here.
//! Deleting a trigger timer only removes it from this list: the timer
//! service's entry (possibly shared with another window of the key) stays
//! and fires as a no-op.

use crate::time::TimeDomain;

/// A window's trigger state and timers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct TriggerRecord {
    /// The trigger's own state (empty: none yet).
    pub state: Vec<u8>,
    /// Registered event-time timers.
    pub event_time: Vec<i64>,
    /// Registered processing-time timers.
    pub processing_time: Vec<i64>,
}

impl TriggerRecord {
    /// The timers of `domain`.
    pub(super) fn timers(&mut self, domain: TimeDomain) -> &mut Vec<i64> {
        match domain {
            TimeDomain::EventTime => &mut self.event_time,
            TimeDomain::ProcessingTime => &mut self.processing_time,
        }
    }

    /// Records a registered timer; false if it was registered already.
    pub(super) fn register(&mut self, domain: TimeDomain, timestamp: i64) -> bool {
        let timers = self.timers(domain);
        if timers.contains(&timestamp) {
            return false;
        }
        timers.push(timestamp);
        true
    }

    /// Forgets a timer; true if it was registered.
    pub(super) fn remove(&mut self, domain: TimeDomain, timestamp: i64) -> bool {
        let timers = self.timers(domain);
        let before = timers.len();
        timers.retain(|t| *t != timestamp);
        timers.len() != before
    }

    /// Encodes the record: state length (4 bytes), state, then each domain's
    /// timer count (4 bytes) and timers (8 bytes each), little-endian.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(12 + self.state.len() + 8 * (self.event_time.len() + self.processing_time.len()));
        out.extend_from_slice(&(self.state.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.state);
        for timers in [&self.event_time, &self.processing_time] {
            out.extend_from_slice(&(timers.len() as u32).to_le_bytes());
            for timer in timers {
                out.extend_from_slice(&timer.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`TriggerRecord::encode`]; `None` if the bytes are corrupt.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
            rest = tail;
            Some(head)
        };
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let state = take(len)?.to_vec();
        let mut domains = [Vec::new(), Vec::new()];
        for timers in &mut domains {
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            for _ in 0..count {
                timers.push(i64::from_le_bytes(take(8)?.try_into().ok()?));
            }
        }
        let [event_time, processing_time] = domains;
        rest.is_empty().then_some(Self {
            state,
            event_time,
            processing_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_corrupt_bytes() {
        let mut record = TriggerRecord {
            state: vec![1, 2, 3],
            ..TriggerRecord::default()
        };
        assert!(record.register(TimeDomain::EventTime, -7));
        assert!(!record.register(TimeDomain::EventTime, -7));
        assert!(record.register(TimeDomain::ProcessingTime, 99));
        let bytes = record.encode();
        assert_eq!(TriggerRecord::decode(&bytes), Some(record.clone()));
        assert_eq!(TriggerRecord::decode(&bytes[..bytes.len() - 1]), None);
        assert!(record.remove(TimeDomain::EventTime, -7));
        assert!(!record.remove(TimeDomain::EventTime, -7));
        assert_eq!(
            TriggerRecord::decode(&TriggerRecord::default().encode()),
            Some(TriggerRecord::default())
        );
    }
}
