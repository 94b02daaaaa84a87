//! Restoring keyed state and timers from checkpointed snapshots.
//!
//! A subtask reads the snapshot of every old subtask whose key groups
//! overlap its own and keeps only the entries and timers of its key groups,
//! so restoring at another parallelism needs nothing more.

use std::collections::HashMap;
use std::io::BufReader;

use super::snapshot::{SnapshotItem, SnapshotReader};
use super::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateId, TtlConfig};
use crate::checkpoint::manifest::KeyedStateHandle;
use crate::checkpoint::storage::FileStore;
use crate::time::{TimeDomain, TimerService};

/// Loads the entries and timers of `range` from `handles` into `backend`
/// and `timers`. Returns the number of entries restored.
pub fn restore_keyed(
    backend: &mut dyn KeyedStateBackend,
    timers: &mut TimerService,
    files: &FileStore,
    handles: &[&KeyedStateHandle],
    range: KeyGroupRange,
) -> Result<u64, String> {
    let mut restored = 0;
    for handle in handles {
        let (start, end) = handle.key_groups;
        if end <= range.start || start >= range.end {
            continue;
        }
        let Some(file) = &handle.canonical else {
            return Err(format!(
                "a `{}` snapshot without a canonical file cannot be restored here",
                handle.backend
            ));
        };
        let path = files.path(file);
        let input = std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut reader = SnapshotReader::new(BufReader::with_capacity(1 << 20, input))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut states: HashMap<u32, StateId> = HashMap::new();
        while let Some(item) = reader.next_item().map_err(|e| format!("{}: {e}", path.display()))? {
            match item {
                SnapshotItem::State { index, name, kind, ttl } => {
                    let descriptor = StateDescriptor {
                        name,
                        kind,
                        ttl: ttl.map(|(ttl_ms, update_on_read)| TtlConfig { ttl_ms, update_on_read }),
                    };
                    let id = backend.register(&descriptor).map_err(|e| e.to_string())?;
                    states.insert(index, id);
                }
                SnapshotItem::Entry {
                    state,
                    key_group,
                    key,
                    user_key,
                    value,
                } => {
                    if !range.contains(super::KeyGroup(key_group)) {
                        continue;
                    }
                    let id = states
                        .get(&state)
                        .ok_or_else(|| format!("entry of undeclared state {state}"))?;
                    backend
                        .restore_entry(*id, &key, &user_key, &value)
                        .map_err(|e| e.to_string())?;
                    restored += 1;
                }
                SnapshotItem::Timer {
                    event_time,
                    key_group,
                    key,
                    timestamp,
                } => {
                    if range.contains(super::KeyGroup(key_group)) {
                        let domain = if event_time {
                            TimeDomain::EventTime
                        } else {
                            TimeDomain::ProcessingTime
                        };
                        timers.register(domain, &key, timestamp);
                    }
                }
            }
        }
    }
    Ok(restored)
}
