//! Why a one-off call into a module failed: the calls made outside a
//! running operator, to learn about a module or to rewrite its state
//! (probing the states a function opens, listing and running state
//! migrations, decoding state with the module's codec).
//!
//! Whose fault it is shows in the variant: Wasmtime's (or the module's
//! trap) in [`GuestCallError::Wasmtime`], the module refusing in
//! [`GuestCallError::Refused`] and [`GuestCallError::Panic`], the module
//! breaking the call's contract in the count variants.

/// Why a one-off call into a module failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestCallError {
    /// Wasmtime failed: the module could not be instantiated or linked, or
    /// the call trapped or ran out of time. Shown with its whole chain.
    #[error("{0:#}")]
    Wasmtime(#[source] wasmtime::Error),
    /// The guest panicked during the call: its panic message.
    #[error("{0}")]
    Panic(String),
    /// The guest returned an error (a WIT `result` error): its message.
    #[error("{0}")]
    Refused(String),
    /// A migration was asked of a module that exports none.
    #[error("the module exports no state migrations")]
    NoMigrations,
    /// A migration returned another number of values than it was given.
    #[error("the migration of state `{state}` returned {returned} values for {expected}")]
    MigrationCount {
        /// The state being migrated.
        state: String,
        /// The number of values returned.
        returned: usize,
        /// The number of values given.
        expected: usize,
    },
    /// The codec returned another number of results than it was given items.
    #[error("state-codec.decode returned {returned} results for {expected} items")]
    DecodeCount {
        /// The number of results returned.
        returned: usize,
        /// The number of items given.
        expected: usize,
    },
}
