//! The Wasm side of the host: how user functions are compiled, checked,
//! instantiated and called.
//!
//! - [`engine`]: one wasmtime engine per process, epoch interruption on, and
//!   compiled components cached on disk by content digest.
//! - [`module`]: a loaded module: its component, what it exports, and the
//!   checks that refuse a wrong module before a job starts.
//! - [`host_state`]: the store's data and the host side of every WIT import
//!   (log, key scope, keyed state, timers).
//! - [`instance`]: one typed handle per function kind and subtask, whose calls move
//!   record batches across the boundary as flat columns.
//! - [`migration`]: state schemas a module declares, and its state
//!   migrations (hot swap on savepoint restore).
//! - `broadcast`: the host side of broadcast state.
//! - `operator_state`: the host side of operator list state.
//! - [`codec`]: a module's optional decoder of its stored state.
//! - `trap`: why a call failed, in words (time, memory, stack, panic).
//! - `guest_output`: a guest's stdout and stderr, as lines in the log.
//! - [`probe`]: what a function's states are, learned by starting it.
//! - [`bindings`]: what `bindgen!` generates from `wit/` (never committed).

pub mod bindings;
mod broadcast;
pub mod call_error;
pub mod codec;
pub mod engine;
pub mod function;
mod guest_output;
pub mod host_state;
pub mod instance;
pub mod migration;
pub mod module;
mod operator_state;
pub mod probe;
mod trap;

pub use call_error::GuestCallError;
pub use engine::{EngineOptions, WasmRuntime};
pub use function::FunctionRef;
pub use instance::UdfError;
pub use module::{FunctionInfo, FunctionKind, ModuleError, ModuleInfo, UdfModule};

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "weir:udf";
/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";

/// Resource limits of a Wasm instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest one call may run, in milliseconds.
    pub call_timeout_ms: u64,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
}
