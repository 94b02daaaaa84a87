//! State shapes and migrations: the schema every state declares
//! ([`schema_of`], or one the author sets) and the [`Migration`]s a module
//! exports for state an older version wrote. The user docs are on those two
//! items.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::exports::weir::udf::state_migration;
use crate::__bindings::weir::udf::state_schema;
use crate::Result;

/// The schema the SDK declares for a state whose values are of type `T`,
/// unless the author sets one: `Name@fingerprint`, the type's name without
/// module paths (`Plate`, `Vec<Plate>`, `(u64, u64)`) and 8 hex digits of a
/// 32-bit fingerprint of its serde shape; the name alone for a type whose
/// shape cannot be traced (see below).
///
/// It traces the type each call: call it once per state (the SDK does, when
/// the state opens), not per record.
///
/// # Shapes
///
/// The fingerprint is traced from the type's `Deserialize` implementation:
/// the SDK builds values of the type with a deserializer that writes down
/// what it is asked for (every field, every variant of every enum in it),
/// writes that down as a canonical text (`Plate;Plate=struct{id:u64,tags:seq<str>};`)
/// and hashes it (64-bit FNV-1a folded to 32 bits), so it is the same on
/// every build and platform. What is in it is what postcard's encoding
/// depends on, and names. Changing a field's type, adding, removing, renaming or
/// reordering a field, adding, removing, renaming or reordering an enum
/// variant (at any depth) changes the schema, so a restore with the changed
/// type asks for a migration instead of failing every record on decoding.
/// The module path is left out (a type keeps its schema when its crate is
/// renamed or it moves to another module), and so are the paths in its
/// generic arguments (`Vec<Plate>`). Types the SDK cannot trace (those that
/// need a self-describing format, such as `#[serde(flatten)]`,
/// `#[serde(untagged)]` or `serde_json::Value`; those whose `Deserialize`
/// rejects invented values, e.g. a string that must parse; one generic
/// container with two shapes in one type) get their name alone as schema:
/// set a schema for them, and bump it when their shape changes.
pub fn schema_of<T: DeserializeOwned>() -> String {
    crate::shape::schema::<T>()
}

thread_local! {
    /// Schemas the author set for states not opened yet.
    static EXPLICIT: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// Sets the schema state `name` will declare when it is opened.
pub(crate) fn set_schema(name: &str, schema: &str) {
    EXPLICIT.with_borrow_mut(|explicit| explicit.insert(name.to_owned(), schema.to_owned()));
}

/// The schema state `name`, whose values are `T`s, declares: the one the
/// author set, else [`schema_of`] `T`.
fn schema_for<T: DeserializeOwned>(name: &str) -> String {
    EXPLICIT
        .with_borrow(|explicit| explicit.get(name).cloned())
        .unwrap_or_else(schema_of::<T>)
}

/// Declares the schema of state `name`, whose values are `T`s, to the host
/// (once, when the state opens).
pub(crate) fn declare<T: DeserializeOwned>(name: &str) {
    state_schema::declare(name, &schema_for::<T>(name));
}

/// Migrates the values of one state from the schema an older version of the
/// module wrote them in.
///
/// Every state a function opens declares its *schema* to the host. By
/// default it is [`schema_of`] the state's value type: the type's name
/// without module paths, `@`, and a fingerprint of the type's serde shape
/// (its fields, their types, its enum variants: see [`schema_of`]), e.g.
/// `Plate@c4770720` or `u32@9af21e7b`. An author can set a schema instead,
/// with [`OpenContext::set_state_schema`](crate::OpenContext::set_state_schema);
/// it is declared as written. Savepoints record the schemas. When a job
/// restores a savepoint with a new version of a module and a state's schema
/// changed, the new module must export a [`Migration`] from the old schema:
/// the host runs it over every stored value before any record is processed
/// (map states: every value, keys keep their encoding; list states: every
/// element). A schema change without a migration is refused before the job
/// starts, naming the state with its old and new schema.
///
/// ```no_run
/// use weir_sdk::{Migration, Result};
///
/// /// v1 counted in a `u32`; v2 keeps `(count, sum)`.
/// struct CountV1;
///
/// impl Migration for CountV1 {
///     const FUNCTION: &'static str = "count";
///     const STATE: &'static str = "count";
///     type Old = u32;
///     type New = (u64, u64);
///
///     fn migrate(_old_module_version: &str, count: u32) -> Result<(u64, u64)> {
///         Ok((u64::from(count), 0))
///     }
/// }
/// ```
///
/// Export it after the functions: `weir_sdk::export_functions! { keyed_process
/// "count" => Count; migrations: CountV1 }`.
///
/// # Migrating a type that kept its name
///
/// When `Plate` gains a field, the new module has two `Plate`s: keep the old
/// definition in a module of its own and migrate from it. Since the module
/// path is not part of the schema, the default [`Migration::old_schema`] of
/// `type Old = v1::Plate` is the schema the old module declared:
///
/// ```no_run
/// use weir_sdk::serde::{Deserialize, Serialize};
/// use weir_sdk::{Migration, Result};
///
/// mod v1 {
///     use weir_sdk::serde::Deserialize;
///
///     /// `Plate` as version 1 stored it.
///     #[derive(Deserialize)]
///     #[serde(crate = "weir_sdk::serde")]
///     pub struct Plate {
///         pub number: String,
///     }
/// }
///
/// /// `Plate` now.
/// #[derive(Serialize, Deserialize)]
/// #[serde(crate = "weir_sdk::serde")]
/// pub struct Plate {
///     number: String,
///     sightings: u64,
/// }
///
/// struct PlateFromV1;
///
/// impl Migration for PlateFromV1 {
///     const FUNCTION: &'static str = "plates";
///     const STATE: &'static str = "plate";
///     type Old = v1::Plate;
///     type New = Plate;
///
///     fn migrate(_old_module_version: &str, old: v1::Plate) -> Result<Plate> {
///         Ok(Plate { number: old.number, sightings: 0 })
///     }
/// }
/// ```
///
/// If the old type is gone, override [`Migration::old_schema`] with the old
/// schema written out (the refusal of a restore without the migration names
/// it: `` `plate` (Plate@26369b64 -> Plate@73fe20b2) `` for the `Plate`s
/// above), and decode `Old` as any type of the same shape.
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
    /// type (the module path does not count, so an old `Plate` kept as
    /// `v1::Plate` has the old `Plate`'s schema). Override it if the old
    /// module set a schema, named the type otherwise, or if the old type's
    /// shape could not be traced.
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
    // Tracing the old type is the costly part: only for this state's entries.
    let entry = entries
        .iter()
        .filter(|e| e.function == function && e.state == state)
        .find(|e| (e.old_schema)() == old_schema)
        .ok_or_else(|| {
            format!("no migration of state `{state}` of function `{function}` from schema `{old_schema}`")
        })?;
    values
        .iter()
        .map(|value| (entry.migrate)(old_module_version, value).map_err(crate::Error::into_reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::{Migration, schema_for, schema_of, set_schema};
    use crate::Result;

    /// What version 1 of a module stored, at its crate root.
    mod old_module {
        #[derive(serde::Deserialize)]
        #[expect(dead_code, reason = "only traced")]
        pub struct Plate {
            pub number: String,
        }
    }

    /// Version 1's `Plate`, kept in version 2.
    mod v1 {
        #[derive(serde::Deserialize)]
        pub struct Plate {
            pub number: String,
        }
    }

    /// Version 2's `Plate`: a field more, the same name.
    #[derive(Serialize, Deserialize)]
    struct Plate {
        number: String,
        sightings: u64,
    }

    struct PlateFromV1;

    impl Migration for PlateFromV1 {
        const FUNCTION: &'static str = "plates";
        const STATE: &'static str = "plate";
        type Old = v1::Plate;
        type New = Plate;

        fn migrate(_old_module_version: &str, old: v1::Plate) -> Result<Plate> {
            Ok(Plate {
                number: old.number,
                sightings: 0,
            })
        }
    }

    #[test]
    fn a_migration_from_an_old_type_kept_under_its_name_names_the_old_schema() {
        // The values the docs of `Migration` quote.
        assert_eq!(schema_of::<old_module::Plate>(), "Plate@26369b64");
        assert_eq!(schema_of::<Plate>(), "Plate@73fe20b2");
        assert_eq!(PlateFromV1::old_schema(), schema_of::<old_module::Plate>());
    }

    #[test]
    fn an_author_set_schema_is_declared_as_written() {
        assert_eq!(schema_for::<u32>("plain"), schema_of::<u32>());
        assert!(schema_of::<u32>().starts_with("u32@"));
        set_schema("counted", "count-v2");
        assert_eq!(schema_for::<u32>("counted"), "count-v2");
    }
}
