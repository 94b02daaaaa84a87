//! Version 1 of a small stateful module, for the hot-swap tests: per key,
//! a count, the values seen, how often each value was seen and the last
//! record.
//!
//! Input records are comma-separated text; the key is their first field
//! (key selector `key`) or their second (`second`), and the value is the last field
//! as a `u32` (0 if it is not one). Per record it emits
//! `key,count,sum,distinct`: the key's count of records, the sum of its
//! values and its number of distinct values.

use weir_sdk::serde::{Deserialize, Serialize};

include!("function.rs");

/// The key's last record: its value (state `last`, schema
/// `Last@c0f71d96`).
#[derive(Serialize, Deserialize)]
#[serde(crate = "weir_sdk::serde")]
pub struct Last {
    value: u32,
}

impl Last {
    /// The `Last` of the `count`th record, of value `value`.
    fn record(value: u32, _count: u32) -> Self {
        Self { value }
    }
}

weir_sdk::export_functions! {
    key_selector "key" => Key<0>,
    key_selector "second" => Key<1>,
    keyed_process "count" => Count,
}
