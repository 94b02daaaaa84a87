//! The state of a subtask at start: its keyed state backend (heap or
//! RocksDB) and timers, or its operator state, with what the restored
//! checkpoint holds for its key groups loaded.

use crate::exchange::TaskError;
use crate::plan::StateBackendConfig;
use crate::state::KeyGroupRange;
use crate::state::heap::HeapBackend;
use crate::state::restore::{RestoreError, restore_keyed};
use crate::state::rocksdb::{RocksDbBackend, RocksDbOptions};
use crate::storage::manifest::KeyedStateHandle;
use crate::wasm::host_state::KeyedScope;

use super::subtask::Subtask;

impl Subtask<'_> {
    pub(super) fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(
            self.subtask,
            self.vertex.parallelism,
            self.plan().settings.max_parallelism,
        )
    }

    /// The keyed scope of this subtask: its state backend and timers, with
    /// the state of the restored checkpoint loaded for its key groups.
    pub(super) fn keyed_scope(&self) -> Result<KeyedScope, TaskError> {
        let uid = &self.vertex.uid;
        let restore_error = |source: RestoreError| TaskError::StateRestore {
            operator: uid.clone(),
            source,
        };
        let handles: Vec<&KeyedStateHandle> = self.restored().filter_map(|t| t.keyed.as_ref()).collect();
        let files = match (self.restore_files, &self.shared.storage, handles.is_empty()) {
            (Some(files), _, _) => Some(files),
            (None, Some(storage), _) => Some(storage.files()),
            (None, None, true) => None,
            (None, None, false) => return Err(restore_error(RestoreError::NoStorage)),
        };
        let max_parallelism = self.plan().settings.max_parallelism;
        let mut timers = crate::state::TimerService::new();
        let backend: Box<dyn crate::state::KeyedStateBackend> = match &self.plan().settings.state_backend {
            StateBackendConfig::Heap => {
                let mut backend = HeapBackend::new();
                if let Some(files) = files.filter(|_| !handles.is_empty()) {
                    restore_keyed(&mut backend, &mut timers, files, &handles, self.key_groups())
                        .map_err(restore_error)?;
                }
                Box::new(backend)
            }
            StateBackendConfig::RocksDb { dir, incremental } => {
                // A folder of its own for every subtask of every attempt of every run.
                let dir = dir.join(&self.plan().name).join(format!(
                    "{}-{}-{}-{}-{}",
                    uid.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
                    self.subtask,
                    std::process::id(),
                    self.attempt,
                    crate::time::now_ms()
                ));
                let options = RocksDbOptions {
                    incremental: *incremental,
                };
                match files.filter(|_| !handles.is_empty()) {
                    Some(files) => {
                        let (backend, _) = RocksDbBackend::restore(
                            &dir,
                            max_parallelism,
                            options,
                            files,
                            &handles,
                            self.key_groups(),
                            &mut timers,
                        )
                        .map_err(restore_error)?;
                        Box::new(backend)
                    }
                    None => Box::new(RocksDbBackend::open(&dir, max_parallelism, options).map_err(|source| {
                        TaskError::State {
                            operator: uid.clone(),
                            source,
                        }
                    })?),
                }
            }
        };
        let mut scope = KeyedScope::new(backend);
        scope.timers = timers;
        Ok(scope)
    }

    /// The operator-state scope of a map, filter or flat-map subtask: a heap
    /// backend with its share of the restored operator list states.
    pub(super) fn operator_scope(&self) -> Result<KeyedScope, TaskError> {
        let mut backend = HeapBackend::new();
        let old: Vec<(u32, &KeyedStateHandle)> = self
            .restored()
            .filter_map(|t| t.keyed.as_ref().map(|k| (t.task.subtask, k)))
            .collect();
        let old_parallelism = self
            .restored()
            .next()
            .map_or(self.vertex.parallelism, |t| t.parallelism);
        let files = self.restore_files.or(self.shared.storage.as_ref().map(|s| s.files()));
        if let (Some(files), false) = (files, old.is_empty()) {
            crate::state::operator::restore_operator_state(
                &mut backend,
                files,
                &old,
                old_parallelism,
                self.subtask,
                self.vertex.parallelism,
            )
            .map_err(|source| TaskError::StateRestore {
                operator: self.vertex.uid.clone(),
                source,
            })?;
        }
        Ok(KeyedScope::new(Box::new(backend)))
    }
}
