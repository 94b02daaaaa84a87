//! Keyed state: what user functions remember per key.
//!
//! Every state kind of the WIT contract (value, list, map, reducing,
//! aggregating) maps onto one small key-value model that both backends
//! implement: an entry is addressed by *(state, current key, user key)*.
//! Value-like states use the empty user key; a map state uses one user key per
//! map entry; a list state keeps its elements framed in one value. Time-to-live
//! is layered on top of the backend ([`ttl`]) so that every backend gets it.
//!
//! Keys are spread over *key groups* ([`key_group`]): the unit in which keyed
//! state moves between subtasks when a job is rescaled.

pub mod broadcast;
pub mod cache;
#[cfg(test)]
mod conformance;
pub mod heap;
pub mod key_group;
pub mod operator;
pub mod restore;
pub mod rocksdb;
pub mod snapshot;
pub mod timers;
pub mod ttl;

pub use key_group::{KeyGroup, KeyGroupRange};
pub use timers::TimerService;

/// The kinds of keyed state, as the WIT contract names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A list of values per key.
    List,
    /// A map per key.
    Map,
    /// A running reduction per key.
    Reducing,
    /// An aggregate accumulator per key.
    Aggregating,
}

impl std::fmt::Display for StateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::Value => "value",
            Self::List => "list",
            Self::Map => "map",
            Self::Reducing => "reducing",
            Self::Aggregating => "aggregating",
        };
        f.write_str(name)
    }
}

/// Time-to-live of state entries, in processing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlConfig {
    /// How long an entry lives after its last write, in milliseconds.
    pub ttl_ms: u64,
    /// Whether a read also refreshes the time-to-live.
    pub update_on_read: bool,
}

/// A state as a function declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDescriptor {
    /// The state's name, unique within its operator.
    pub name: String,
    /// The state's kind.
    pub kind: StateKind,
    /// Optional time-to-live.
    pub ttl: Option<TtlConfig>,
}

/// Identifies a registered state within one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateId(pub u32);

/// Errors of keyed state access.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state name was opened again with another kind or time-to-live.
    #[error("state `{name}` is already declared as {existing} state; it cannot also be {requested} state")]
    KindConflict {
        /// The state's name.
        name: String,
        /// The kind it was first declared with.
        existing: StateKind,
        /// The kind requested now.
        requested: StateKind,
    },
    /// Keyed state was used while no key was selected.
    #[error("keyed state was accessed outside a keyed context (no current key)")]
    NoCurrentKey,
    /// A state id that this backend never handed out.
    #[error("unknown state id {0}")]
    UnknownState(u32),
    /// A stored value could not be decoded (corruption or a bug).
    #[error("corrupt state entry in `{name}`: {reason}")]
    Corrupt {
        /// The state's name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The storage engine failed.
    #[error("state storage failed: {0}")]
    Storage(String),
}

/// Result of state operations.
pub type StateResult<T> = Result<T, StateError>;

/// A store of keyed state for one subtask.
///
/// The backend keeps a *current key*; every read and write applies to it.
/// Implementations: [`heap::HeapBackend`] (in memory, full snapshots); a
/// RocksDB backend follows the same trait. Methods take `&mut self` so that a
/// backend can reuse buffers and keep iterators without locking.
pub trait KeyedStateBackend: Send {
    /// Registers a state (idempotent for an identical descriptor).
    fn register(&mut self, descriptor: &StateDescriptor) -> StateResult<StateId>;

    /// The descriptor of a registered state.
    fn descriptor(&self, state: StateId) -> StateResult<&StateDescriptor>;

    /// Makes `key` the current key.
    fn set_current_key(&mut self, key: &[u8]);

    /// The current key, if one is set.
    fn current_key(&self) -> Option<&[u8]>;

    /// Reads the entry `user_key` of `state` for the current key.
    fn get(&mut self, state: StateId, user_key: &[u8]) -> StateResult<Option<Vec<u8>>>;

    /// Writes the entry `user_key` of `state` for the current key.
    fn put(&mut self, state: StateId, user_key: &[u8], value: &[u8]) -> StateResult<()>;

    /// Deletes the entry `user_key` of `state` for the current key.
    fn delete(&mut self, state: StateId, user_key: &[u8]) -> StateResult<()>;

    /// All entries of `state` for the current key, ordered by user key.
    fn entries(&mut self, state: StateId) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Deletes every entry of `state` for the current key.
    fn clear(&mut self, state: StateId) -> StateResult<()>;

    /// Number of keys that have at least one entry in some state (for metrics).
    fn key_count(&self) -> usize;

    /// The backend's name, as checkpoints record it (`heap`, `rocksdb`).
    fn name(&self) -> &'static str;

    /// Takes a consistent view of every state, for a checkpoint. The record
    /// path waits for this call, so it must be cheap (a copy-on-write clone,
    /// a storage-engine snapshot); the view is written out later, on another
    /// thread, by [`StateView::persist`].
    fn snapshot(&mut self) -> StateResult<Box<dyn StateView>>;

    /// Adds an entry read back from a snapshot (restore). The key need not
    /// be the current key.
    fn restore_entry(&mut self, state: StateId, key: &[u8], user_key: &[u8], value: &[u8]) -> StateResult<()>;
}

/// A consistent view of a backend's state, written out off the record path.
pub trait StateView: Send {
    /// Writes the view, with `timers`, into `files` under names starting
    /// with `name`, and returns the handle a manifest records.
    fn persist(
        self: Box<Self>,
        files: &crate::storage::files::FileStore,
        name: &str,
        timers: &crate::state::TimerService,
        key_groups: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<crate::storage::manifest::KeyedStateHandle, crate::storage::files::StorageError>;
}
