//! Decoding stored state for tools: `weir state dump` asks the module how to
//! read the entries of a savepoint (Flink's State Processor API reads state
//! with the job's serializers; here the module is the serializer).
//!
//! The SDK stores values and map keys postcard-encoded, so a module that
//! names the types of its states in [`export_functions!`](crate::export_functions)
//! lets the host print them as JSON:
//!
//! ```ignore
//! weir_sdk::export_functions! {
//!     keyed_process "count" => Count;
//!     states {
//!         value "count" => u64,
//!         map "speeds" => (String, u32),
//!     }
//! }
//! ```
//!
//! Keys are written by key selectors as raw bytes, so they are not decoded
//! here (the host shows them as text when they are UTF-8).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::exports::weir::udf::state_codec::{self, StatePart};
use crate::runtime::{Module, Runtime};

/// Decodes one stored item to JSON text.
type Decoder = fn(&[u8]) -> Option<String>;

/// How the entries of one state decode.
pub struct StateCodec {
    name: &'static str,
    user_key: Option<Decoder>,
    value: Decoder,
}

/// The key and value types of a map state, as a pair `(K, V)`.
pub trait MapTypes {
    /// The user key type.
    type Key: Serialize + DeserializeOwned;
    /// The value type.
    type Value: Serialize + DeserializeOwned;
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapTypes for (K, V) {
    type Key = K;
    type Value = V;
}

/// Decodes a postcard-encoded `T` and prints it as JSON.
fn json<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let value: T = postcard::from_bytes(bytes).ok()?;
    serde_json::to_string(&value).ok()
}

impl StateCodec {
    /// A state whose values are `T` (value, reducing and aggregating states).
    pub const fn value<T: Serialize + DeserializeOwned>(name: &'static str) -> Self {
        Self {
            name,
            user_key: None,
            value: json::<T>,
        }
    }

    /// A map state from `M::Key` to `M::Value`.
    pub const fn map<M: MapTypes>(name: &'static str) -> Self {
        Self {
            name,
            user_key: Some(json::<M::Key>),
            value: json::<M::Value>,
        }
    }
}

impl<M: Module> state_codec::Guest for Runtime<M> {
    fn decode(state: String, part: StatePart, items: Vec<Vec<u8>>) -> Vec<Option<String>> {
        let codec = M::STATE_CODECS.iter().find(|c| c.name == state);
        let decoder = match (codec, part) {
            (Some(codec), StatePart::Value) => Some(codec.value),
            (Some(codec), StatePart::UserKey) => codec.user_key,
            _ => None,
        };
        items.iter().map(|item| decoder.and_then(|d| d(item))).collect()
    }
}
