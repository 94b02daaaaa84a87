//! Where broadcast state lives: each broadcast map state is a map state of
//! the operator's keyed backend, named `broadcast/<name>`, under the empty
//! key. So it is checkpointed, snapshotted and put in savepoints like any
//! keyed state, by both backends. Restoring differs: every subtask takes
//! the copy of the first snapshot that has one (old subtask 0's), whatever
//! its key groups, and ignores the others (they are equal), so that a
//! rescaled job has the state on every subtask (Flink's replication).

/// The prefix of the names of broadcast states in the keyed backend.
pub const PREFIX: &str = "broadcast/";

/// The key broadcast states are stored under.
pub const KEY: &[u8] = &[];

/// Whether a keyed-backend state name is that of a broadcast state.
pub fn is_broadcast(name: &str) -> bool {
    name.starts_with(PREFIX)
}
