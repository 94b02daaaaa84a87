//! Jobs: the job file ([`spec`]), its parameters ([`params`]), loading and
//! validation ([`load`]) and the executable plan ([`plan`]).

pub mod error;
pub mod load;
pub mod params;
pub mod plan;
pub mod spec;
pub mod triggers;

pub use error::{JobFileError, JobFileErrors};
pub use load::{LoadOptions, load_job, load_job_text};
pub use plan::JobPlan;
