//! The elements of one window as one state value: each element is its
//! timestamp (8 bytes, little-endian), its length (4 bytes, little-endian)
//! and its payload, back to back, in arrival order.
//!
//! Appending a batch's elements to a window reads and writes the value once
//! per batch; merging windows (sessions) concatenates values.

use crate::record::batch::EventTime;

const HEADER: usize = 12;

/// Appends an element to an encoded window.
pub(super) fn append(buffer: &mut Vec<u8>, payload: &[u8], timestamp: EventTime) {
    buffer.reserve(HEADER + payload.len());
    buffer.extend_from_slice(&timestamp.to_le_bytes());
    buffer.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    buffer.extend_from_slice(payload);
}

/// The elements of an encoded window: `(timestamp, payload)`. A truncated
/// element (corrupt state) ends the iteration.
pub(super) fn iter(buffer: &[u8]) -> impl Iterator<Item = (EventTime, &[u8])> {
    let mut rest = buffer;
    std::iter::from_fn(move || {
        let header = rest.get(..HEADER)?;
        let timestamp = EventTime::from_le_bytes(header[..8].try_into().ok()?);
        let len = u32::from_le_bytes(header[8..].try_into().ok()?) as usize;
        let payload = rest.get(HEADER..HEADER + len)?;
        rest = &rest[HEADER + len..];
        Some((timestamp, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_elements_in_order() {
        let mut buffer = Vec::new();
        append(&mut buffer, b"first", -5);
        append(&mut buffer, b"", 7);
        append(&mut buffer, b"third", i64::MAX);
        let all: Vec<(i64, &[u8])> = iter(&buffer).collect();
        assert_eq!(all, vec![(-5, &b"first"[..]), (7, &b""[..]), (i64::MAX, &b"third"[..])]);
        buffer.truncate(buffer.len() - 1);
        assert_eq!(iter(&buffer).count(), 2);
    }
}
