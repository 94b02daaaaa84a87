//! Which subtask reads which partition: Flink's
//! `KafkaTopicPartitionAssigner`, so that a job moved from Flink spreads its
//! partitions the same way.
//!
//! A topic's partitions start at an index computed from the topic's Java
//! `String.hashCode()` and go round-robin from there:
//! `start = (hash(topic) * 31 & 0x7FFFFFFF) % parallelism`, partition `p`
//! goes to `(start + p) % parallelism`. The rule depends only on the topic,
//! the partition and the parallelism: every subtask computes its own share
//! without talking to the others (manual `assign`, no group rebalancing),
//! and after a rescale each partition has exactly one new owner.

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16
/// code units, in wrapping 32-bit arithmetic.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16()
        .fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The subtask (of `parallelism`) that reads `partition` of `topic`.
pub(crate) fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let parallelism = i64::from(parallelism.max(1));
    let start = i64::from(java_hash(topic).wrapping_mul(31) & 0x7FFF_FFFF) % parallelism;
    let owner = (start + i64::from(partition)).rem_euclid(parallelism);
    // In range by construction: 0 <= owner < parallelism <= u32::MAX.
    u32::try_from(owner).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_java() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("abc"), 96354);
        assert_eq!(java_hash("input-topic"), -1_393_968_788);
    }

    #[test]
    fn partitions_go_round_robin_from_the_topics_start_index() {
        // Values computed with Flink's formula by hand (see the module docs).
        let owners = |topic| (0..5).map(|p| owner(topic, p, 3)).collect::<Vec<_>>();
        assert_eq!(owners("abc"), [0, 1, 2, 0, 1]);
        assert_eq!(owners("words"), [2, 0, 1, 2, 0]);
        assert_eq!(owners("input-topic"), [1, 2, 0, 1, 2]);
        assert!((0..64).all(|p| owner("t", p, 1) == 0));
    }
}
