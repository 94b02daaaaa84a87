//! The dataflow runtime: how subtasks run and how records move between them.
//!
//! Every vertex of the plan runs as `parallelism` subtasks, each on its own
//! OS thread (a Wasm call is synchronous CPU work and must not block an async
//! executor). Subtasks exchange [`crate::exchange::Message`]s over bounded channels, one per
//! (producer subtask, consumer subtask) pair: a full channel blocks its
//! producer, so a slow consumer slows its producers (backpressure) and memory
//! stays bounded by `channel_capacity × batch_size` per channel.
//!
//! - batches live in [`crate::record`]; messages, outputs and dead letters
//!   in [`crate::exchange`].
//! - [`executor`]: running the plan, attempt by attempt, with restarts.
//! - [`wiring`]: the channels of an attempt.
//! - [`subtask`]: one subtask's thread; [`build`] (operators from the plan),
//!   [`connectors`] (sources and sinks), [`state_backends`] (restored state).
//! - [`task`]: the loops of source, operator and sink subtasks, barrier
//!   alignment; [`coordinator_link`]: a subtask's link to the coordinator.

mod build;
mod connectors;
pub(crate) mod coordinator_link;
pub(crate) mod executor;
mod state_backends;
mod subtask;
pub(crate) mod task;
mod wiring;
