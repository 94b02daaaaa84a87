//! The validated job, as the loader hands it to the runtime: see
//! [`crate::plan`].

pub use crate::plan::*;
