//! Key groups: the unit of keyed-state distribution.
//!
//! As in Flink, a key is hashed into one of `max_parallelism` key groups, and
//! each subtask of a keyed operator owns a contiguous range of key groups.
//! Changing an operator's parallelism moves whole key groups between
//! subtasks; `max_parallelism` never changes for the life of a job's state.

use xxhash_rust::xxh3::xxh3_64;

/// Index of a key group, `0..max_parallelism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGroup(pub u32);

/// A contiguous range of key groups, `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: u32,
    /// One past the last key group in the range.
    pub end: u32,
}

impl KeyGroup {
    /// The key group of `key`. Stable across runs, machines and versions.
    pub fn of(key: &[u8], max_parallelism: u32) -> Self {
        Self((xxh3_64(key) % u64::from(max_parallelism.max(1))) as u32)
    }

    /// The subtask that owns this key group (Flink's assignment formula).
    pub fn subtask(self, max_parallelism: u32, parallelism: u32) -> u32 {
        (u64::from(self.0) * u64::from(parallelism) / u64::from(max_parallelism.max(1))) as u32
    }
}

impl KeyGroupRange {
    /// The key groups owned by `subtask` out of `parallelism` subtasks.
    pub fn for_subtask(subtask: u32, parallelism: u32, max_parallelism: u32) -> Self {
        let p = u64::from(parallelism.max(1));
        let m = u64::from(max_parallelism);
        let start = (u64::from(subtask) * m).div_ceil(p);
        let end = ((u64::from(subtask) + 1) * m).div_ceil(p);
        Self {
            start: start as u32,
            end: end as u32,
        }
    }

    /// Whether `group` lies in this range.
    pub fn contains(self, group: KeyGroup) -> bool {
        (self.start..self.end).contains(&group.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_group_is_owned_by_the_subtask_whose_range_holds_it() {
        for max in [1u32, 7, 128, 1000] {
            for parallelism in 1..=max.min(9) {
                for group in 0..max {
                    let owner = KeyGroup(group).subtask(max, parallelism);
                    assert!(owner < parallelism);
                    let range = KeyGroupRange::for_subtask(owner, parallelism, max);
                    assert!(range.contains(KeyGroup(group)), "max {max} p {parallelism} kg {group}");
                }
            }
        }
    }

    #[test]
    fn key_groups_are_stable() {
        assert_eq!(KeyGroup::of(b"hello", 128), KeyGroup::of(b"hello", 128));
        assert!(KeyGroup::of(b"hello", 128).0 < 128);
    }
}
