//! State shapes and migrations.
//!
//! Every state a function opens declares its *schema* to the host: by
//! default the name of its value type ([`schema_of`]), or a schema the author
//! sets with [`OpenContext::set_state_schema`](crate::OpenContext::set_state_schema).
//! Savepoints record the schemas. When a job restores a savepoint with a new
//! version of a module and a state's schema changed, the new module must
//! export a [`Migration`] from the old schema: the host runs it over every
//! stored value before any record is processed (map states: every value,
//! keys keep their encoding; list states: every element). A schema change
//! without a migration is refused before the job starts.
//!
//! ```no_run
//! use weir_sdk::{Migration, Result};
//!
//! /// v1 counted in a `u32`; v2 keeps `(count, sum)`.
//! struct CountV1;
//!
//! impl Migration for CountV1 {
//!     const FUNCTION: &'static str = "count";
//!     const STATE: &'static str = "count";
//!     type Old = u32;
//!     type New = (u64, u64);
//!
//!     fn migrate(_old_module_version: &str, count: u32) -> Result<(u64, u64)> {
//!         Ok((u64::from(count), 0))
//!     }
//! }
//! ```
//!
//! Export it after the functions: `weir_sdk::export_functions! { keyed_process
//! "count" => Count; migrations: CountV1 }`.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::exports::weir::udf::state_migration;
use crate::__bindings::weir::udf::state_schema;
use crate::Result;

/// The schema the SDK declares for a state whose values are of type `T`:
/// the type's name (as [`std::any::type_name`] spells it). Renaming the type,
/// or moving it to another crate, changes it.
pub fn schema_of<T: ?Sized>() -> String {
    std::any::type_name::<T>().to_owned()
}

thread_local! {
    /// Schemas the author set for states not opened yet.
    static EXPLICIT: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// Sets the schema state `name` will declare when it is opened.
pub(crate) fn set_schema(name: &str, schema: &str) {
    EXPLICIT.with_borrow_mut(|explicit| explicit.insert(name.to_owned(), schema.to_owned()));
}

/// Declares the schema of state `name`, whose values are `T`s, to the host.
pub(crate) fn declare<T: ?Sized>(name: &str) {
    let schema = EXPLICIT
        .with_borrow(|explicit| explicit.get(name).cloned())
        .unwrap_or_else(schema_of::<T>);
    state_schema::declare(name, &schema);
}

/// Migrates the values of one state from the schema an older version of the
/// module wrote them in.
pub trait Migration: 'static {
    /// The function whose state it migrates (its name in
    /// [`export_functions!`](crate::export_functions)).
    const FUNCTION: &'static str;
    /// The state's name.
    const STATE: &'static str;
    /// The old value type (list states: the element; map states: the value).
    type Old: DeserializeOwned;
    /// The new value type, as the new module opens the state.
    type New: Serialize;

    /// The schema the old module declared: by default [`schema_of`] the old
    /// type. Override it if the old module set an explicit schema or named
    /// the type otherwise.
    fn old_schema() -> String {
        schema_of::<Self::Old>()
    }

    /// Turns one old value into a new one. An error fails the restore with
    /// its message.
    fn migrate(old_module_version: &str, old: Self::Old) -> Result<Self::New>;
}

/// One migration a module exports. Not part of the API.
#[doc(hidden)]
pub struct MigrationEntry {
    function: &'static str,
    state: &'static str,
    old_schema: fn() -> String,
    migrate: fn(&str, &[u8]) -> Result<Vec<u8>>,
}

impl MigrationEntry {
    /// The entry of migration `M`.
    pub const fn of<M: Migration>() -> Self {
        Self {
            function: M::FUNCTION,
            state: M::STATE,
            old_schema: M::old_schema,
            migrate: migrate_one::<M>,
        }
    }
}

fn migrate_one<M: Migration>(old_module_version: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let old: M::Old = postcard::from_bytes(bytes).map_err(|e| {
        crate::Error::new(format!(
            "state `{}`: a stored value does not decode as {}: {e}",
            M::STATE,
            std::any::type_name::<M::Old>()
        ))
    })?;
    let new = M::migrate(old_module_version, old)?;
    postcard::to_allocvec(&new)
        .map_err(|e| crate::Error::new(format!("state `{}`: a migrated value cannot be encoded: {e}", M::STATE)))
}

/// The WIT `migrations` export over `entries`.
pub(crate) fn describe(entries: &[MigrationEntry]) -> Vec<state_migration::MigrationInfo> {
    entries
        .iter()
        .map(|entry| state_migration::MigrationInfo {
            function: entry.function.to_owned(),
            state: entry.state.to_owned(),
            from_schema: (entry.old_schema)(),
        })
        .collect()
}

/// The WIT `migrate` export over `entries`: one call per chunk of values.
pub(crate) fn migrate(
    entries: &[MigrationEntry],
    function: &str,
    old_module_version: &str,
    state: &str,
    old_schema: &str,
    values: Vec<Vec<u8>>,
) -> std::result::Result<Vec<Vec<u8>>, String> {
    let entry = entries
        .iter()
        .find(|e| e.function == function && e.state == state && (e.old_schema)() == old_schema)
        .ok_or_else(|| {
            format!("no migration of state `{state}` of function `{function}` from schema `{old_schema}`")
        })?;
    values
        .iter()
        .map(|value| (entry.migrate)(old_module_version, value).map_err(crate::Error::into_reason))
        .collect()
}
