//! State shapes and migrations on the Wasm side: the host half of the
//! `state-schema` import, a probe that learns which states (and schemas) a
//! function opens, and calls of a module's `state-migration` export.
//!
//! A restore from a savepoint compares the schemas the savepoint recorded
//! with those the job's module declares; this module tells it the latter
//! and runs the migrations, one guest call per chunk of values.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Store;

use super::bindings::exports::weir::udf::{library, state_migration};
use super::bindings::weir::udf::{state_schema, types as wit};
use super::host_state::{HostState, KeyedScope};
use super::instance::new_store;
use super::module::UdfModule;
use crate::job::plan::Limits;

impl state_schema::Host for HostState {
    fn declare(&mut self, name: String, schema: String) -> wasmtime::Result<()> {
        self.schemas.retain(|(n, _)| *n != name);
        self.schemas.push((name, schema));
        Ok(())
    }
}

/// A migration a module offers: of `state` of `function`, from `from_schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    /// The function whose state it migrates.
    pub function: String,
    /// The state.
    pub state: String,
    /// The schema it migrates from.
    pub from_schema: String,
}

/// Starts `function` of `module` in a throwaway instance (an empty heap
/// backend, no records) and returns the states it opens, with the schema
/// each declares (`""` when the module declares none).
pub fn declared_schemas(
    engine: &wasmtime::Engine,
    module: &Arc<UdfModule>,
    function: &str,
    operator: &str,
    params: &[(String, String)],
    max_parallelism: u32,
    limits: Limits,
) -> Result<BTreeMap<String, String>, String> {
    let mut state = HostState::new(operator, limits);
    state.keyed = Some(KeyedScope::new(Box::new(crate::state::heap::HeapBackend::new())));
    let mut store = new_store(engine, state, limits.call_timeout_ms);
    let pre = &module.pre;
    let instance = pre.instantiate(&mut store).map_err(|e| format!("{e:#}"))?;
    let library = library::GuestIndices::new(pre)
        .and_then(|i| i.load(&mut store, &instance))
        .map_err(|e| format!("{e:#}"))?;
    let task = wit::TaskInfo {
        function: function.to_string(),
        operator_uid: operator.to_string(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism,
        params: params.to_vec(),
    };
    library
        .call_init(&mut store, &task)
        .map_err(|e| format!("{e:#}"))?
        .map_err(|reason| format!("function `{function}` could not start: {reason}"))?;
    let data = store.data_mut();
    let mut schemas: BTreeMap<String, String> = data.schemas.drain(..).collect();
    if let Some(scope) = &data.keyed {
        // States opened without a declared schema (modules not built with
        // the SDK): ids are dense from 0.
        let mut id = 0;
        while let Ok(descriptor) = scope.backend.descriptor(crate::state::StateId(id)) {
            schemas.entry(descriptor.name.clone()).or_default();
            id += 1;
        }
    }
    Ok(schemas)
}

/// An instance of a module that runs its state migrations.
pub struct Migrator {
    store: Store<HostState>,
    exports: Option<state_migration::Guest>,
    limits: Limits,
}

impl Migrator {
    /// Instantiates `module` for migrations. A module without the
    /// `state-migration` export offers none.
    pub fn new(
        engine: &wasmtime::Engine,
        module: &Arc<UdfModule>,
        operator: &str,
        limits: Limits,
    ) -> Result<Self, String> {
        let mut store = new_store(engine, HostState::new(operator, limits), limits.call_timeout_ms);
        let pre = &module.pre;
        let instance = pre.instantiate(&mut store).map_err(|e| format!("{e:#}"))?;
        let exports = state_migration::GuestIndices::new(pre)
            .and_then(|i| i.load(&mut store, &instance))
            .ok();
        Ok(Self { store, exports, limits })
    }

    /// The migrations the module offers.
    pub fn migrations(&mut self) -> Result<Vec<MigrationInfo>, String> {
        let Some(exports) = &self.exports else {
            return Ok(Vec::new());
        };
        super::instance::arm_deadline(&mut self.store, self.limits.call_timeout_ms);
        let infos = exports.call_migrations(&mut self.store).map_err(|e| format!("{e:#}"))?;
        Ok(infos
            .into_iter()
            .map(|i| MigrationInfo {
                function: i.function,
                state: i.state,
                from_schema: i.from_schema,
            })
            .collect())
    }

    /// Migrates a chunk of `values` of `state` of `function`, written by
    /// module version `old_version` in schema `old_schema`.
    pub fn migrate(
        &mut self,
        function: &str,
        old_version: &str,
        state: &str,
        old_schema: &str,
        values: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, String> {
        let Some(exports) = &self.exports else {
            return Err("the module exports no state migrations".into());
        };
        super::instance::arm_deadline(&mut self.store, self.limits.call_timeout_ms);
        let migrated = exports
            .call_migrate(&mut self.store, function, old_version, state, old_schema, values)
            .map_err(|e| {
                let panic = self.store.data().panic.as_ref().map(|p| p.message.clone());
                panic.unwrap_or_else(|| format!("{e:#}"))
            })??;
        if migrated.len() != values.len() {
            return Err(format!(
                "the migration of state `{state}` returned {} values for {}",
                migrated.len(),
                values.len()
            ));
        }
        Ok(migrated)
    }
}
