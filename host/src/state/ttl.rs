//! Time-to-live for state entries, layered over any backend.
//!
//! An entry of a state with a TTL is stored as an 8-byte big-endian expiry
//! time (processing time, ms) followed by the value. An expired entry reads
//! as absent and is deleted when it is found (Flink's `NeverReturnExpired`
//! visibility with cleanup on access).

/// Length of the expiry header.
const HEADER: usize = 8;

/// Wraps `value` with its expiry time.
pub fn wrap(value: &[u8], expires_at_ms: i64, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER + value.len());
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(value);
}

/// Splits a stored entry into its expiry time and value; `None` if the
/// entry is too short to carry a header.
pub fn unwrap(stored: &[u8]) -> Option<(i64, &[u8])> {
    let header: [u8; HEADER] = stored.get(..HEADER)?.try_into().ok()?;
    Some((i64::from_be_bytes(header), &stored[HEADER..]))
}

/// Whether an entry that expires at `expires_at_ms` is expired at `now_ms`.
pub fn is_expired(expires_at_ms: i64, now_ms: i64) -> bool {
    expires_at_ms <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_values_round_trip_and_expire() {
        let mut stored = Vec::new();
        wrap(b"value", 1_000, &mut stored);
        let (expires, value) = unwrap(&stored).unwrap();
        assert_eq!((expires, value), (1_000, &b"value"[..]));
        assert!(!is_expired(expires, 999));
        assert!(is_expired(expires, 1_000));
        assert_eq!(unwrap(b"short"), None);
    }
}
