//! The host side of the `broadcast-state` import: broadcast map states kept
//! in the operator's keyed backend (see [`crate::state::broadcast`]),
//! writable only while the operator processes its broadcast input.

use wasmtime::component::Resource;
use wasmtime::format_err as anyhow;

use super::bindings::weir::udf::broadcast_state::{self, BroadcastMapState};
use super::host_state::{HostState, KeyedScope};
use crate::state::broadcast::{KEY, PREFIX};
use crate::state::{StateDescriptor, StateId, StateKind};

impl HostState {
    fn broadcast_scope(&mut self) -> wasmtime::Result<&mut KeyedScope> {
        self.keyed
            .as_mut()
            .ok_or_else(|| anyhow!("broadcast state is only available to keyed co-process functions"))
    }

    /// Runs `f` with the current key switched to the broadcast key, then
    /// switches back.
    fn with_broadcast_key<R>(
        &mut self,
        write: bool,
        f: impl FnOnce(&mut KeyedScope) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        let scope = self.broadcast_scope()?;
        if write && !scope.broadcast_side {
            return Err(anyhow!(
                "broadcast state is read-only here: only the broadcast input (process_element2) may write it"
            ));
        }
        let previous = scope.backend.current_key().map(<[u8]>::to_vec);
        scope.backend.set_current_key(KEY);
        let result = f(scope);
        if let Some(previous) = previous {
            scope.backend.set_current_key(&previous);
        }
        result
    }
}

impl broadcast_state::Host for HostState {}

impl broadcast_state::HostBroadcastMapState for HostState {
    fn new(&mut self, name: String) -> wasmtime::Result<Resource<BroadcastMapState>> {
        let descriptor = StateDescriptor {
            name: format!("{PREFIX}{name}"),
            kind: StateKind::Map,
            ttl: None,
        };
        let id = self.broadcast_scope()?.backend.register(&descriptor)?;
        Ok(Resource::new_own(id.0))
    }

    fn get(&mut self, this: Resource<BroadcastMapState>, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.with_broadcast_key(false, |scope| Ok(scope.backend.get(StateId(this.rep()), &key)?))
    }

    fn put(&mut self, this: Resource<BroadcastMapState>, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.with_broadcast_key(true, |scope| {
            Ok(scope.backend.put(StateId(this.rep()), &key, &value)?)
        })
    }

    fn remove(&mut self, this: Resource<BroadcastMapState>, key: Vec<u8>) -> wasmtime::Result<()> {
        self.with_broadcast_key(true, |scope| Ok(scope.backend.delete(StateId(this.rep()), &key)?))
    }

    fn contains(&mut self, this: Resource<BroadcastMapState>, key: Vec<u8>) -> wasmtime::Result<bool> {
        self.with_broadcast_key(false, |scope| {
            Ok(scope.backend.get(StateId(this.rep()), &key)?.is_some())
        })
    }

    fn entries(&mut self, this: Resource<BroadcastMapState>) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with_broadcast_key(false, |scope| Ok(scope.backend.entries(StateId(this.rep()))?))
    }

    fn drop(&mut self, _this: Resource<BroadcastMapState>) -> wasmtime::Result<()> {
        Ok(())
    }
}
