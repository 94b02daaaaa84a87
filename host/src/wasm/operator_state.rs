//! The host side of the `operator-state` import: operator list states kept
//! in the subtask's heap backend (see [`crate::state::operator`]).

use wasmtime::component::Resource;
use wasmtime::format_err as anyhow;

use super::bindings::weir::udf::operator_state::{self, OperatorListState, Redistribution};
use super::host_state::{HostState, KeyedScope};
use crate::state::operator::{KEY, SPLIT, UNION, element_key};
use crate::state::{StateDescriptor, StateId, StateKind};

impl HostState {
    /// Runs `f` on the operator-state scope with the current key set to the
    /// operator-state key.
    fn with_operator_key<R>(&mut self, f: impl FnOnce(&mut KeyedScope) -> wasmtime::Result<R>) -> wasmtime::Result<R> {
        let scope = self
            .keyed
            .as_mut()
            .ok_or_else(|| anyhow!("operator state is only available to map, filter and flat-map functions"))?;
        scope.backend.set_current_key(KEY);
        f(scope)
    }
}

/// The elements of a list, in order.
fn elements(scope: &mut KeyedScope, state: StateId) -> wasmtime::Result<Vec<Vec<u8>>> {
    let mut entries = scope.backend.entries(state)?;
    entries.sort();
    Ok(entries.into_iter().map(|(_, value)| value).collect())
}

impl operator_state::Host for HostState {}

impl operator_state::HostOperatorListState for HostState {
    fn new(&mut self, name: String, redistribution: Redistribution) -> wasmtime::Result<Resource<OperatorListState>> {
        let prefix = match redistribution {
            Redistribution::Split => SPLIT,
            Redistribution::Union => UNION,
        };
        let descriptor = StateDescriptor {
            name: format!("{prefix}{name}"),
            kind: StateKind::Map,
            ttl: None,
        };
        let id = self.with_operator_key(|scope| Ok(scope.backend.register(&descriptor)?))?;
        Ok(Resource::new_own(id.0))
    }

    fn get(&mut self, this: Resource<OperatorListState>) -> wasmtime::Result<Vec<Vec<u8>>> {
        self.with_operator_key(|scope| elements(scope, StateId(this.rep())))
    }

    fn update(&mut self, this: Resource<OperatorListState>, values: Vec<Vec<u8>>) -> wasmtime::Result<()> {
        self.with_operator_key(|scope| {
            let state = StateId(this.rep());
            scope.backend.clear(state)?;
            for (index, value) in values.iter().enumerate() {
                scope.backend.put(state, &element_key(index), value)?;
            }
            Ok(())
        })
    }

    fn add(&mut self, this: Resource<OperatorListState>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.with_operator_key(|scope| {
            let state = StateId(this.rep());
            let len = scope.backend.entries(state)?.len();
            Ok(scope.backend.put(state, &element_key(len), &value)?)
        })
    }

    fn clear(&mut self, this: Resource<OperatorListState>) -> wasmtime::Result<()> {
        self.with_operator_key(|scope| Ok(scope.backend.clear(StateId(this.rep()))?))
    }

    fn drop(&mut self, _this: Resource<OperatorListState>) -> wasmtime::Result<()> {
        Ok(())
    }
}
