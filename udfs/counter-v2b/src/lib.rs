//! `counter-v2` without its migrations: v1's state read in v2's shapes,
//! which a restore must refuse.

include!("../../counter-v2/src/function.rs");

weir_sdk::export_functions! {
    key_selector "key" => Key<0>,
    keyed_process "count" => Count,
}
