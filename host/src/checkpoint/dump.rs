//! Reading one keyed state of one operator out of a savepoint, for
//! `weir state dump` (in the spirit of Flink's State Processor API): the
//! savepoint is checked like a restore checks it, then the canonical
//! snapshot of every subtask of the operator is scanned for the entries of
//! that state, which come back sorted by key group, key and user key.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::savepoint::{ModuleMeta, SavepointError, StateMeta};
use crate::state::snapshot::{SnapshotItem, SnapshotReader};

/// Why a state cannot be dumped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DumpError {
    /// The savepoint cannot be read.
    #[error(transparent)]
    Savepoint(#[from] SavepointError),
    /// No keyed state for that uid.
    #[error("savepoint {path} has no keyed state for operator uid `{uid}`; it has keyed state for: {known}")]
    UnknownUid {
        /// The savepoint folder.
        path: PathBuf,
        /// The uid asked for.
        uid: String,
        /// The uids it has, quoted and comma-separated (or `none`).
        known: String,
    },
    /// The operator has no such state.
    #[error("operator `{uid}` in savepoint {path} has no state `{state}`; its states: {known}")]
    UnknownState {
        /// The savepoint folder.
        path: PathBuf,
        /// The operator's uid.
        uid: String,
        /// The state asked for.
        state: String,
        /// Its states, quoted, with their kinds.
        known: String,
    },
    /// A state file cannot be read.
    #[error("savepoint {path}: cannot read {file}: {reason}")]
    Read {
        /// The savepoint folder.
        path: PathBuf,
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
}

/// One entry of a state, as stored (without its TTL header).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StateEntry {
    /// The key group of `key`.
    pub key_group: u32,
    /// The key.
    pub key: Vec<u8>,
    /// The user key of a map state's entry (empty otherwise).
    pub user_key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A dumped state: its operator's module, its kind and its entries.
#[derive(Debug, Clone)]
pub(crate) struct StateDump {
    /// The module the operator ran, if it ran one.
    pub module: Option<ModuleMeta>,
    /// The state's name and kind.
    pub state: StateMeta,
    /// Its entries, sorted.
    pub entries: Vec<StateEntry>,
}

/// The entries of state `state` of operator `uid` in the savepoint `path`.
pub(crate) fn dump(path: &Path, uid: &str, state: &str) -> Result<StateDump, DumpError> {
    let (savepoint, files) = super::savepoint::load(path)?;
    let keyed: Vec<_> = savepoint.operators.iter().filter(|o| !o.states.is_empty()).collect();
    let Some(operator) = keyed.iter().find(|o| o.uid == uid) else {
        let known: Vec<String> = keyed.iter().map(|o| format!("`{}`", o.uid)).collect();
        return Err(DumpError::UnknownUid {
            path: path.to_path_buf(),
            uid: uid.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    let Some(meta) = operator.states.iter().find(|s| s.name == state) else {
        let mut known: Vec<String> = operator
            .states
            .iter()
            .map(|s| format!("`{}` ({})", s.name, s.kind))
            .collect();
        known.sort();
        return Err(DumpError::UnknownState {
            path: path.to_path_buf(),
            uid: uid.to_string(),
            state: state.to_string(),
            known: known.join(", "),
        });
    };
    let mut entries = Vec::new();
    for handle in savepoint.checkpoint.tasks_of(uid).filter_map(|t| t.keyed.as_ref()) {
        let Some(file) = &handle.canonical else { continue };
        let read_error = |reason: String| DumpError::Read {
            path: path.to_path_buf(),
            file: file.name.clone(),
            reason,
        };
        let input = std::fs::File::open(files.path(file)).map_err(|e| read_error(e.to_string()))?;
        let mut reader = SnapshotReader::new(BufReader::new(input)).map_err(|e| read_error(e.to_string()))?;
        // The state's number in this file, and whether its values carry a TTL header.
        let mut wanted: Option<(u32, bool)> = None;
        while let Some(item) = reader.next_item().map_err(|e| read_error(e.to_string()))? {
            match item {
                SnapshotItem::State { index, name, ttl, .. } if name == state => {
                    wanted = Some((index, ttl.is_some()));
                }
                SnapshotItem::Entry {
                    state: index,
                    key_group,
                    key,
                    user_key,
                    mut value,
                } => {
                    let Some((wanted_index, ttl)) = wanted else { continue };
                    if index != wanted_index {
                        continue;
                    }
                    if ttl {
                        let Some((_, stripped)) = crate::state::ttl::unwrap(&value) else {
                            return Err(read_error("an entry is too short for its TTL header".into()));
                        };
                        value = stripped.to_vec();
                    }
                    entries.push(StateEntry {
                        key_group,
                        key,
                        user_key,
                        value,
                    });
                }
                _ => {}
            }
        }
    }
    entries.sort();
    Ok(StateDump {
        module: operator.module.clone(),
        state: meta.clone(),
        entries,
    })
}
