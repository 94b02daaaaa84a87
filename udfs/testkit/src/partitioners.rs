//! Kafka sink partitioners, for the tests of the Kafka sink.

use weir_sdk::{Partitioner, Record, Result, TaskInfo};

/// Reads each message's value as an unsigned integer (white space around
/// it ignored) and sends it to partition `value % partitions`; a value
/// that is not such a number panics (the task fails).
pub struct ByNumber;

impl Partitioner for ByNumber {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn partition(&mut self, message: &Record<'_>, partitions: u32) -> u32 {
        let text = std::str::from_utf8(message.payload()).unwrap_or_default().trim();
        let value: u64 = text
            .parse()
            .unwrap_or_else(|_| panic!("by_number: `{text}` is not an unsigned integer"));
        (value % u64::from(partitions.max(1))) as u32
    }
}

/// Answers `partitions` (one past the last partition) for every message:
/// the sink must fail the task.
pub struct OutOfRange;

impl Partitioner for OutOfRange {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn partition(&mut self, _message: &Record<'_>, partitions: u32) -> u32 {
        partitions
    }
}
