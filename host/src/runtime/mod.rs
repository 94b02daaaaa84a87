//! The dataflow runtime: how subtasks run and how records move between them.
//!
//! Every vertex of the plan runs as `parallelism` subtasks, each on its own
//! OS thread (a Wasm call is synchronous CPU work and must not block an async
//! executor). Subtasks exchange [`Message`]s over bounded channels, one per
//! (producer subtask, consumer subtask) pair: a full channel blocks its
//! producer, so a slow consumer slows its producers (backpressure) and memory
//! stays bounded by `channel_capacity × batch_size` per channel.
//!
//! - batches themselves live in [`crate::record`].
//! - [`message`]: what travels on a channel.
//! - [`output`]: partitioning a subtask's output over its consumers.
//! - [`dead_letter`]: where rejected records go.
//! - [`task`]: the loops of source, operator and sink subtasks.
//! - [`executor`]: wiring the plan into threads and channels, and running it.

mod build;
mod connectors;
pub mod coordinator_link;
pub mod executor;
mod state_backends;
mod subtask;
pub mod task;
mod wiring;

pub use crate::exchange::{Message, TaskError, dead_letter, message, output};
