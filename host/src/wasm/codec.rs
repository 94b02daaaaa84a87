//! Calls a module's optional `state-codec` export, which turns stored state
//! bytes into JSON text for tools such as `weir state dump`.

use super::bindings::exports::weir::udf::state_codec::{self, StatePart};
use super::engine::WasmRuntime;
use super::host_state::HostState;
use super::module::UdfModule;

/// The part of a state entry to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The key.
    Key,
    /// A map state's user key.
    UserKey,
    /// The value.
    Value,
}

/// Asks `module` to decode `items`, the `part` of entries of state `state`:
/// one JSON text per item, `None` where the module cannot decode it (or
/// exports no codec at all). An error if the module traps.
pub fn decode(
    runtime: &WasmRuntime,
    module: &UdfModule,
    state: &str,
    part: Part,
    items: &[Vec<u8>],
) -> Result<Vec<Option<String>>, String> {
    let Ok(indices) = state_codec::GuestIndices::new(&module.pre) else {
        return Ok(vec![None; items.len()]);
    };
    let limits = super::instance::DESCRIBE_LIMITS;
    let mut store = super::instance::new_store(
        runtime.engine(),
        HostState::new("state-codec", limits),
        limits.call_timeout_ms,
    );
    let instance = module.pre.instantiate(&mut store).map_err(|e| format!("{e:#}"))?;
    let codec = indices.load(&mut store, &instance).map_err(|e| format!("{e:#}"))?;
    super::instance::arm_deadline(&mut store, limits.call_timeout_ms);
    let part = match part {
        Part::Key => StatePart::Key,
        Part::UserKey => StatePart::UserKey,
        Part::Value => StatePart::Value,
    };
    let decoded = codec
        .call_decode(&mut store, state, part, items)
        .map_err(|e| format!("{e:#}"))?;
    if decoded.len() != items.len() {
        return Err(format!(
            "state-codec.decode returned {} results for {} items",
            decoded.len(),
            items.len()
        ));
    }
    Ok(decoded)
}
