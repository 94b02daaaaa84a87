//! The Kafka source's checkpointed state: one split per partition, with the
//! offset of the next record to read (Flink's `KafkaPartitionSplit`).
//!
//! A subtask's splits are what it acknowledges at a barrier
//! ([`crate::connectors::Source::splits`]); on restore every subtask gets
//! the splits of all old subtasks and keeps those of the partitions the
//! assignment rule ([`super::assign`]) gives it, at any parallelism. A
//! subtask that reads no partition acknowledges one [`Split::Empty`], so
//! that the runtime still sees a rescalable source (one whose subtasks all
//! have splits).

use serde::{Deserialize, Serialize};

use crate::connectors::ConnectorError;

/// The first byte of every encoded split: the encoding's version (1: no
/// watermark state; 2: with it).
const VERSION: u8 = 2;

/// One checkpointed split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Split {
    /// A partition and where to continue in it.
    Partition(PartitionSplit),
    /// The subtask read no partition.
    Empty,
}

/// A partition's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionSplit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub next: i64,
    /// A bounded source's end offset (exclusive), once known: it stops
    /// there.
    pub end: Option<i64>,
    /// The partition's own watermark progress (per-partition watermarks).
    pub watermark: PartitionWatermark,
}

/// What a checkpoint keeps of a partition's watermark generator: it
/// travels with the partition to whichever subtask reads it next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionWatermark {
    /// The largest timestamp read from the partition (`i64::MIN`: none).
    pub max_timestamp: i64,
    /// Whether the partition had gone idle.
    pub idle: bool,
}

impl Default for PartitionWatermark {
    fn default() -> Self {
        Self {
            max_timestamp: i64::MIN,
            idle: false,
        }
    }
}

/// Version 1 of [`Split`] (before per-partition watermarks).
#[derive(Deserialize)]
enum SplitV1 {
    Partition {
        topic: String,
        partition: i32,
        next: i64,
        end: Option<i64>,
    },
    Empty,
}

impl Split {
    /// The split as checkpoint bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Encoding plain data into a Vec cannot fail.
        postcard::to_extend(self, vec![VERSION]).unwrap_or_default()
    }

    /// A split that [`Split::encode`] wrote.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, ConnectorError> {
        let invalid = |reason: String| ConnectorError::Checkpoint {
            what: "cannot restore a Kafka source split".into(),
            reason,
        };
        match bytes.split_first() {
            Some((&VERSION, body)) => postcard::from_bytes(body).map_err(|e| invalid(e.to_string())),
            Some((1, body)) => match postcard::from_bytes(body).map_err(|e| invalid(e.to_string()))? {
                SplitV1::Partition {
                    topic,
                    partition,
                    next,
                    end,
                } => Ok(Self::Partition(PartitionSplit {
                    topic,
                    partition,
                    next,
                    end,
                    watermark: PartitionWatermark::default(),
                })),
                SplitV1::Empty => Ok(Self::Empty),
            },
            Some((version, _)) => Err(invalid(format!("unknown split version {version}"))),
            None => Err(invalid("the split is empty".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_round_trip_and_bad_bytes_are_refused() {
        let split = Split::Partition(PartitionSplit {
            topic: "words".into(),
            partition: 3,
            next: 42,
            end: Some(100),
            watermark: PartitionWatermark {
                max_timestamp: 7,
                idle: true,
            },
        });
        assert_eq!(Split::decode(&split.encode()).expect("decodes"), split);
        // Version 1 (no watermark): tag 0, "words", 3, 42, Some(100).
        let v1 = [1, 0, 5, b'w', b'o', b'r', b'd', b's', 6, 84, 1, 200, 1];
        let Split::Partition(old) = Split::decode(&v1).expect("decodes version 1") else {
            panic!("a partition split");
        };
        assert_eq!(
            (old.next, old.end, old.watermark),
            (42, Some(100), PartitionWatermark::default())
        );
        assert_eq!(Split::decode(&Split::Empty.encode()).expect("decodes"), Split::Empty);
        let error = Split::decode(&[9, 1]).expect_err("unknown version");
        assert_eq!(
            error.to_string(),
            "cannot restore a Kafka source split: unknown split version 9"
        );
    }
}
