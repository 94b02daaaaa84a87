//! Jobs: the job file ([`spec`]), its parameters ([`params`]), loading and
//! validation ([`load`]) and the executable plan ([`crate::plan`]).

pub(crate) mod async_spec;
pub(crate) mod error;
pub(crate) mod load;
pub(crate) mod params;
pub(crate) mod spec;
pub(crate) mod triggers;

pub(crate) use load::{LoadOptions, load_job};
