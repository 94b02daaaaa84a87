//! What a function's states are, learned by starting it.
//!
//! A module's `describe` names its functions, but the states a function
//! opens are only known once it runs its `init`: the SDK opens them there,
//! declaring the schema of each (`state-schema`) just before. So the host
//! starts the function in a throwaway instance, with an empty heap backend
//! and no records, and reads what it registered. Hot swaps compare the
//! schemas with a savepoint's; `weir inspect` prints them.

use std::sync::Arc;

use super::bindings::exports::weir::udf::library;
use super::bindings::weir::udf::types as wit;
use super::host_state::{HostState, KeyedScope};
use super::instance::new_store;
use super::module::UdfModule;
use super::{GuestCallError, Limits};
use crate::state::{StateDescriptor, StateId};

/// A state a function opened, with the schema it declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedState {
    /// Its name, kind and time-to-live, as registered.
    pub descriptor: StateDescriptor,
    /// The schema declared for it (`""` when none was: a module not built
    /// with the SDK).
    pub schema: String,
}

/// What starting a function showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// The states it opened, in the order it opened them.
    pub states: Vec<OpenedState>,
    /// Every schema it declared, by state name, in order (a state may be
    /// declared and not opened).
    pub declared: Vec<(String, String)>,
}

/// Who runs the probed function.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec<'a> {
    /// The function.
    pub function: &'a str,
    /// The operator uid it is told.
    pub operator: &'a str,
    /// Its parameters.
    pub params: &'a [(String, String)],
    /// The job's max parallelism.
    pub max_parallelism: u32,
    /// Limits of the instance.
    pub limits: Limits,
}

/// Starts `spec.function` of `module` in a throwaway instance (an empty heap
/// backend, no records) and returns the states it opens and the schemas it
/// declares.
pub fn probe(engine: &wasmtime::Engine, module: &Arc<UdfModule>, spec: ProbeSpec<'_>) -> Result<Probe, GuestCallError> {
    let mut state = HostState::new(spec.operator, spec.limits);
    state.keyed = Some(KeyedScope::new(Box::new(crate::state::heap::HeapBackend::new())));
    let mut store = new_store(engine, state, spec.limits.call_timeout_ms);
    let pre = &module.pre;
    let instance = pre.instantiate(&mut store).map_err(GuestCallError::Wasmtime)?;
    let library = library::GuestIndices::new(pre)
        .and_then(|i| i.load(&mut store, &instance))
        .map_err(GuestCallError::Wasmtime)?;
    let task = wit::TaskInfo {
        function: spec.function.to_string(),
        operator_uid: spec.operator.to_string(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: spec.max_parallelism,
        params: spec.params.to_vec(),
    };
    library
        .call_init(&mut store, &task)
        .map_err(GuestCallError::Wasmtime)?
        .map_err(|reason| {
            // The SDK already says which function could not start.
            let prefix = format!("function `{}` could not start: ", spec.function);
            GuestCallError::Refused(if reason.starts_with(&prefix) {
                reason
            } else {
                format!("{prefix}{reason}")
            })
        })?;
    let data = store.data_mut();
    let declared = std::mem::take(&mut data.schemas);
    let mut states = Vec::new();
    if let Some(scope) = &data.keyed {
        // Ids are dense from 0.
        let mut id = 0;
        while let Ok(descriptor) = scope.backend.descriptor(StateId(id)) {
            let schema = declared
                .iter()
                .find(|(name, _)| *name == descriptor.name)
                .map(|(_, schema)| schema.clone())
                .unwrap_or_default();
            states.push(OpenedState {
                descriptor: descriptor.clone(),
                schema,
            });
            id += 1;
        }
    }
    Ok(Probe { states, declared })
}
