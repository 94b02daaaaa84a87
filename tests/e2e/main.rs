//! End-to-end tests: each runs the real `weir` binary on fixed inputs and
//! compares what it wrote with an oracle computed independently, in plain
//! Rust, inside the test (no Weir code).
//!
//! The UDF components are built once per test run ([`harness::udf_dir`]).

mod async_lookup;
mod bad_input;
mod broadcast;
mod chaos;
mod checkpoint_faults;
mod dashboard;
mod diagnostics;
mod event_time;
mod exactly_once;
mod harness;
mod hot_swap;
mod http;
mod http_control;
mod joins;
mod kafka;
mod observability;
mod operator_state;
mod oracle;
mod partitioning;
mod processing_time;
mod rescale;
mod restore_paths;
mod savepoints;
mod state_dump;
mod state_kinds;
mod traffic;
mod watermarks;
mod windows_buffered;
mod wordcount;
