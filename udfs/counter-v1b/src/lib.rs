//! `counter-v1` whose state type `Last` gained a field but kept its name,
//! and which exports no migration: a restore of counter-v1's savepoint must
//! be refused (the schema of `last` changed from `Last@c0f71d96`), not run
//! with every record failing to decode its old `Last`.

use weir_sdk::serde::{Deserialize, Serialize};

include!("../../counter-v1/src/function.rs");

/// The key's last record: its value and the key's count then.
#[derive(Serialize, Deserialize)]
#[serde(crate = "weir_sdk::serde")]
pub struct Last {
    value: u32,
    count: u32,
}

impl Last {
    /// The `Last` of the `count`th record, of value `value`.
    fn record(value: u32, count: u32) -> Self {
        Self { value, count }
    }
}

weir_sdk::export_functions! {
    key_selector "key" => Key<0>,
    key_selector "second" => Key<1>,
    keyed_process "count" => Count,
}
