//! A function of a loaded module, as a plan names it.

use std::sync::Arc;

/// A function of a loaded module.
#[derive(Debug, Clone)]
pub struct FunctionRef {
    /// The module.
    pub module: Arc<super::UdfModule>,
    /// The function's name.
    pub function: String,
    /// The function's kind, as the module describes it.
    pub kind: super::FunctionKind,
    /// Parameters handed to the function at start.
    pub params: Vec<(String, String)>,
    /// The digest of the module the job file names. `module` differs from
    /// it after `weir upgrade`, or when a restore runs the module a
    /// checkpoint was taken with.
    pub declared: String,
}
