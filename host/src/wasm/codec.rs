//! Calls a module's optional `state-codec` export, which turns stored state
//! bytes into JSON text for tools such as `weir state dump`.
//!
//! Whether the codec knows a state ([`decodes`], for `weir inspect`) is
//! asked by decoding a value of [`PROBE_LEN`] zero bytes: the SDK stores
//! values with postcard, in which zero bytes are a valid encoding of every
//! number, `bool`, string, sequence, map and `Option` (and of the first
//! variant of an enum), and of structs and tuples of them, so a codec that
//! has the state's type decodes it. A type that refuses zeros (`char`,
//! `NonZero*`, custom validation) reads as "no codec".

use super::GuestCallError;
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
) -> Result<Vec<Option<String>>, GuestCallError> {
    let Some((mut store, codec)) = instantiate(runtime, module)? else {
        return Ok(vec![None; items.len()]);
    };
    let part = match part {
        Part::Key => StatePart::Key,
        Part::UserKey => StatePart::UserKey,
        Part::Value => StatePart::Value,
    };
    super::instance::arm_deadline(&mut store, super::instance::DESCRIBE_LIMITS.call_timeout_ms);
    let decoded = codec
        .call_decode(&mut store, state, part, items)
        .map_err(GuestCallError::Wasmtime)?;
    if decoded.len() != items.len() {
        return Err(GuestCallError::DecodeCount {
            returned: decoded.len(),
            expected: items.len(),
        });
    }
    Ok(decoded)
}

/// Length of the value [`decodes`] asks the codec to decode.
pub const PROBE_LEN: usize = 4096;

/// Whether `module`'s codec decodes the values of each of `states` (all
/// `false` if it exports no codec); see the module docs for how it is asked.
pub fn decodes(runtime: &WasmRuntime, module: &UdfModule, states: &[&str]) -> Result<Vec<bool>, GuestCallError> {
    let Some((mut store, codec)) = instantiate(runtime, module)? else {
        return Ok(vec![false; states.len()]);
    };
    let zeros = vec![vec![0u8; PROBE_LEN]];
    let mut known = Vec::with_capacity(states.len());
    for state in states {
        super::instance::arm_deadline(&mut store, super::instance::DESCRIBE_LIMITS.call_timeout_ms);
        let decoded = codec
            .call_decode(&mut store, state, StatePart::Value, &zeros)
            .map_err(GuestCallError::Wasmtime)?;
        known.push(matches!(decoded.first(), Some(Some(_))));
    }
    Ok(known)
}

/// An instance of `module` and its codec export, if it has one.
fn instantiate(
    runtime: &WasmRuntime,
    module: &UdfModule,
) -> Result<Option<(wasmtime::Store<HostState>, state_codec::Guest)>, GuestCallError> {
    let Ok(indices) = state_codec::GuestIndices::new(&module.pre) else {
        return Ok(None);
    };
    let limits = super::instance::DESCRIBE_LIMITS;
    let mut store = super::instance::new_store(
        runtime.engine(),
        HostState::new("state-codec", limits),
        limits.call_timeout_ms,
    );
    let instance = module.pre.instantiate(&mut store).map_err(GuestCallError::Wasmtime)?;
    let codec = indices.load(&mut store, &instance).map_err(GuestCallError::Wasmtime)?;
    Ok(Some((store, codec)))
}
