//! Version 2 of the hot-swap test module (`counter-v1`): the same key
//! selector, changed logic (it emits `key,count,sum,distinct,v2`) and changed
//! state types, with migrations from v1's: `count` `u32` becomes
//! `(count, count when migrated)`, `values` elements and `seen` values
//! become `i64` (their encoding changes: postcard zig-zags signed integers).
//! `last` keeps its type name, `Last`, and gains a field: its migration
//! reads v1's `Last`, kept as `v1::Last` (the module path is not part of
//! the schema, so `v1::Last` has the schema v1 declared). The migration of
//! `values` refuses the value 666, for the test of a failing migration.

include!("function.rs");

/// `count`: v1's `u32` becomes `(count, count when migrated)`.
pub struct CountFromV1;

impl weir_sdk::Migration for CountFromV1 {
    const FUNCTION: &'static str = "count";
    const STATE: &'static str = "count";
    type Old = u32;
    type New = (u64, u64);

    fn migrate(_old_module_version: &str, count: u32) -> Result<(u64, u64)> {
        Ok((u64::from(count), u64::from(count)))
    }
}

/// `values`: each `u32` element becomes an `i64`; 666 is refused.
pub struct ValuesFromV1;

impl weir_sdk::Migration for ValuesFromV1 {
    const FUNCTION: &'static str = "count";
    const STATE: &'static str = "values";
    type Old = u32;
    type New = i64;

    fn migrate(old_module_version: &str, value: u32) -> Result<i64> {
        if value == 666 {
            return Err(Error::new(format!(
                "value 666 of counter {old_module_version} cannot be migrated"
            )));
        }
        Ok(i64::from(value))
    }
}

/// `seen`: each `u32` count becomes an `i64` (keys keep their encoding).
pub struct SeenFromV1;

impl weir_sdk::Migration for SeenFromV1 {
    const FUNCTION: &'static str = "count";
    const STATE: &'static str = "seen";
    type Old = u32;
    type New = i64;

    fn migrate(_old_module_version: &str, seen: u32) -> Result<i64> {
        Ok(i64::from(seen))
    }
}

/// v1's types, as v1 stored them.
mod v1 {
    /// v1's `Last`: the value only.
    #[derive(weir_sdk::serde::Deserialize)]
    #[serde(crate = "weir_sdk::serde")]
    pub struct Last {
        pub value: u32,
    }
}

/// `last`: v1's `Last` becomes v2's, marked as written by v1.
pub struct LastFromV1;

impl weir_sdk::Migration for LastFromV1 {
    const FUNCTION: &'static str = "count";
    const STATE: &'static str = "last";
    type Old = v1::Last;
    type New = Last;

    fn migrate(_old_module_version: &str, old: v1::Last) -> Result<Last> {
        Ok(Last {
            value: old.value,
            from_v1: true,
        })
    }
}

weir_sdk::export_functions! {
    key_selector "key" => Key<0>,
    keyed_process "count" => Count;
    migrations: CountFromV1, ValuesFromV1, SeenFromV1, LastFromV1,
}
