//! State shapes and migrations on the Wasm side: the host half of the
//! `state-schema` import, the schemas a function declares (learned by
//! [`super::probe`]), and calls of a module's `state-migration` export.
//!
//! A restore from a savepoint compares the schemas the savepoint recorded
//! with those the job's module declares; this module tells it the latter
//! and runs the migrations, one guest call per chunk of values.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Store;

use super::bindings::exports::weir::udf::state_migration;
use super::bindings::weir::udf::state_schema;
use super::host_state::HostState;
use super::instance::new_store;
use super::module::UdfModule;
use super::probe::ProbeSpec;
use super::{GuestCallError, Limits};

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
/// each declares (`""` when the module declares none; see [`super::probe`]).
pub fn declared_schemas(
    engine: &wasmtime::Engine,
    module: &Arc<UdfModule>,
    function: &str,
    operator: &str,
    params: &[(String, String)],
    max_parallelism: u32,
    limits: Limits,
) -> Result<BTreeMap<String, String>, GuestCallError> {
    let spec = ProbeSpec {
        function,
        operator,
        params,
        max_parallelism,
        limits,
    };
    let probe = super::probe::probe(engine, module, spec)?;
    let mut schemas: BTreeMap<String, String> = probe.declared.into_iter().collect();
    // States opened without a declared schema (modules not built with the SDK).
    for state in probe.states {
        schemas.entry(state.descriptor.name).or_default();
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
    ) -> Result<Self, GuestCallError> {
        let mut store = new_store(engine, HostState::new(operator, limits), limits.call_timeout_ms);
        let pre = &module.pre;
        let instance = pre.instantiate(&mut store).map_err(GuestCallError::Wasmtime)?;
        let exports = state_migration::GuestIndices::new(pre)
            .and_then(|i| i.load(&mut store, &instance))
            .ok();
        Ok(Self { store, exports, limits })
    }

    /// The migrations the module offers.
    pub fn migrations(&mut self) -> Result<Vec<MigrationInfo>, GuestCallError> {
        let Some(exports) = &self.exports else {
            return Ok(Vec::new());
        };
        super::instance::arm_deadline(&mut self.store, self.limits.call_timeout_ms);
        let infos = exports
            .call_migrations(&mut self.store)
            .map_err(GuestCallError::Wasmtime)?;
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
    ) -> Result<Vec<Vec<u8>>, GuestCallError> {
        let Some(exports) = &self.exports else {
            return Err(GuestCallError::NoMigrations);
        };
        super::instance::arm_deadline(&mut self.store, self.limits.call_timeout_ms);
        let migrated = exports
            .call_migrate(&mut self.store, function, old_version, state, old_schema, values)
            .map_err(|e| match &self.store.data().panic {
                Some(panic) => GuestCallError::Panic(panic.message.clone()),
                None => GuestCallError::Wasmtime(e),
            })?
            .map_err(GuestCallError::Refused)?;
        if migrated.len() != values.len() {
            return Err(GuestCallError::MigrationCount {
                state: state.to_string(),
                returned: migrated.len(),
                expected: values.len(),
            });
        }
        Ok(migrated)
    }
}
