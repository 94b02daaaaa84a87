//! Kafka sink partitioners: a function that chooses the partition of each
//! message a Kafka sink writes (Flink's `FlinkKafkaPartitioner`).

use crate::{Record, Result, TaskInfo};

/// Chooses the Kafka partition of each message a sink writes, when the
/// sink's `partitioner = { module = "...", function = "..." }` names it.
///
/// The host calls it with the messages of a whole batch at once; for each,
/// the [`Record`] holds the message's value as its payload, the record's
/// event time, and the message's key ([`Record::key`], `None` for a message
/// without one). A message whose envelope names its partition does not
/// reach the function.
///
/// Export it with the kind `partitioner` in
/// [`export_functions!`](crate::export_functions).
///
/// ```
/// use weir_sdk::{Partitioner, Record, Result, TaskInfo};
///
/// /// Messages whose key starts with `vip-` go to partition 0, the others
/// /// spread over the rest by key length.
/// struct Vip;
///
/// impl Partitioner for Vip {
///     fn open(_task: &TaskInfo) -> Result<Self> {
///         Ok(Self)
///     }
///
///     fn partition(&mut self, message: &Record<'_>, partitions: u32) -> u32 {
///         match message.key() {
///             Some(key) if key.starts_with(b"vip-") || partitions == 1 => 0,
///             Some(key) => 1 + key.len() as u32 % (partitions - 1),
///             None => 0,
///         }
///     }
/// }
/// ```
pub trait Partitioner: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// The partition of `message`, in `0..partitions` (the topic's
    /// partition count, read when the sink starts). A partition out of
    /// range fails the task, with the value in the message.
    fn partition(&mut self, message: &Record<'_>, partitions: u32) -> u32;
}
