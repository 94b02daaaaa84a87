//! Host bindings generated from `wit/` by wasmtime's `bindgen!`.
//!
//! Imports are *trappable*: a host function returns `wasmtime::Result`, and
//! an error (such as using keyed state with no current key) traps the guest,
//! which fails the task with the error's message.
#![allow(missing_docs, unsafe_code, clippy::all)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "any-module",
    imports: { default: trappable },
});
