//! What travels on a channel between two subtasks.

use crate::record::batch::{EventTime, RecordBatch};
use crate::storage::Barrier;

/// A message from one subtask to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// Records.
    Data(RecordBatch),
    /// No record with an earlier event time will follow on this channel.
    Watermark(EventTime),
    /// The producer is idle: leave it out of watermark computations until it
    /// sends a record or a watermark again.
    Idle,
    /// Records before this belong to the checkpoint, records after do not.
    Barrier(Barrier),
    /// The producer has finished; nothing follows.
    End,
    /// The job stops with a savepoint (`weir stop`): nothing follows, and
    /// unlike [`Message::End`] the watermark does not jump to the maximum,
    /// so no event-time timer fires for the records after the savepoint.
    Stop,
}
