//! The bottom layer: the data every other layer passes around.
//!
//! - [`batch`]: record batches laid out as flat columns (payloads, end
//!   offsets, event times, keys) — what crosses channels and the Wasm
//!   boundary — and [`batch::EventTime`].

pub mod batch;
pub(crate) mod url;
