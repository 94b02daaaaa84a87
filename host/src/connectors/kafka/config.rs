//! The settings of the Kafka source and sink, as the job file gives them
//! (after parsing and validation by the job loader).

use std::time::Duration;

use serde::Deserialize;

/// Where a partition that has no checkpointed offset starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartFrom {
    /// The first offset still in the log.
    Earliest,
    /// The end of the log when the source starts.
    Latest,
    /// The consumer group's committed offset (earliest when it has none).
    Committed,
    /// The first record whose timestamp is at or after this many
    /// milliseconds since the Unix epoch (the end when there is none).
    Timestamp(i64),
}

/// How a Kafka message becomes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Format {
    /// One record a message: its value, byte for byte.
    #[default]
    Raw,
    /// One record per line of the message's value (`\n`-separated, without
    /// the `\n`; a final empty line is dropped), as the file source reads
    /// lines (CSV, JSON lines, plain text). A line that is not UTF-8 goes
    /// to the dead-letter output.
    Lines,
    /// One record a message: a JSON document, leading and trailing white
    /// space removed. A message that is not one JSON document goes to the
    /// dead-letter output, with its topic, partition and offset.
    Json,
}

/// Which records a consumer reads from transactional producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Isolation {
    /// Only records of committed transactions (and non-transactional ones).
    #[default]
    ReadCommitted,
    /// Everything, including open and aborted transactions.
    ReadUncommitted,
}

impl Isolation {
    /// librdkafka's name of the level (`isolation.level`).
    pub(crate) fn property(self) -> &'static str {
        match self {
            Self::ReadCommitted => "read_committed",
            Self::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// The delivery guarantee of the Kafka sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Delivery {
    /// Every record at least once: the producer is flushed, and every
    /// delivery awaited, at each checkpoint barrier.
    AtLeastOnce,
    /// Every record exactly once for read-committed consumers: records go
    /// into a Kafka transaction committed when its checkpoint completes.
    #[default]
    ExactlyOnce,
}

/// What a record becomes in a Kafka sink (see [`super::message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SinkFormat {
    /// The record's bytes are the message's value; no key, no headers.
    #[default]
    Raw,
    /// The record is a JSON envelope (`key`, `value`, `headers`,
    /// `partition`, `timestamp`) that the message is made of.
    Envelope,
}

/// How a Kafka sink chooses the partition of a message that does not name
/// its own (see [`super::message`]).
#[derive(Debug, Clone, Default)]
pub(crate) enum Partitioner {
    /// librdkafka's partitioner (its `partitioner` property, by default
    /// `consistent_random`: a CRC32 hash of the key, random without one).
    #[default]
    Default,
    /// Kafka's Java default: murmur2 of the key, made positive, modulo the
    /// partition count; messages without a key go round robin.
    KeyHash,
    /// Every partition in turn, starting at the subtask's index.
    RoundRobin,
    /// Flink's `FlinkFixedPartitioner`: the subtask index modulo the
    /// partition count.
    Fixed,
    /// A partitioner function of a module.
    Wasm(crate::wasm::FunctionRef),
}

impl PartialEq for Partitioner {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Wasm(a), Self::Wasm(b)) => {
                a.declared == b.declared && a.function == b.function && a.params == b.params
            }
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// A `type = "kafka"` source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KafkaSourceConfig {
    /// `bootstrap.servers`: `host:port,...`.
    pub bootstrap_servers: String,
    /// The topics read (by name); empty with `topic_pattern`.
    pub topics: Vec<String>,
    /// A regular expression: every topic whose whole name matches it is
    /// read (instead of `topics`).
    pub topic_pattern: Option<super::discovery::TopicPattern>,
    /// How often the source looks for new partitions (and, with
    /// `topic_pattern`, new topics); `None`: only at start.
    pub discovery_interval: Option<Duration>,
    /// The consumer group offsets are committed to (for monitoring) and,
    /// with [`StartFrom::Committed`], read from. Default `weir-{job}-{uid}`.
    pub group_id: Option<String>,
    /// Where partitions without a checkpointed offset start.
    pub start: StartFrom,
    /// Whether the source ends once it has read each partition to its end:
    /// a partition's end is where the reader first catches up with it (the
    /// fetch's high watermark, or the last stable offset under
    /// read-committed), kept in checkpoints from then on. (Flink's
    /// `setBounded(OffsetsInitializer.latest())` asks for the end offsets at
    /// start instead; nisshi 0.6.0, the test broker, answers that request
    /// wrongly, with the last record batch's base offset plus one.)
    pub bounded: bool,
    /// How messages become records.
    pub format: Format,
    /// With [`Format::Json`]: each record is a JSON object holding the
    /// message's key, value, headers, topic, partition, offset and
    /// timestamp (see [`super::format`]) instead of the value alone.
    pub envelope: bool,
    /// `isolation.level`.
    pub isolation: Isolation,
    /// A batch goes downstream when it is full or after this long.
    pub linger: Duration,
    /// Further librdkafka settings, passed on as they are.
    pub properties: Vec<(String, String)>,
}

/// A `type = "kafka"` sink.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KafkaSinkConfig {
    /// `bootstrap.servers`: `host:port,...`.
    pub bootstrap_servers: String,
    /// The topic written.
    pub topic: String,
    /// At-least-once or exactly-once.
    pub delivery: Delivery,
    /// What a record becomes.
    pub format: SinkFormat,
    /// How messages without a partition of their own get one.
    pub partitioner: Partitioner,
    /// Further librdkafka settings, passed on as they are.
    pub properties: Vec<(String, String)>,
}

/// librdkafka settings that Weir sets itself: a job file that sets one in
/// `properties` is refused, with the field to use instead when there is
/// one.
pub(crate) const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `bootstrap_servers`"),
    ("metadata.broker.list", "use `bootstrap_servers`"),
    ("group.id", "use `group_id`"),
    ("isolation.level", "use `isolation`"),
    ("enable.auto.commit", "offsets are committed when checkpoints complete"),
    (
        "enable.auto.offset.store",
        "offsets are committed when checkpoints complete",
    ),
    (
        "transactional.id",
        "Weir derives it from the job, the sink uid and the subtask",
    ),
    ("enable.idempotence", "Weir sets it from `delivery`"),
];

/// Why `key` cannot be set in `properties`, if it cannot.
pub(crate) fn reserved_property(key: &str) -> Option<&'static str> {
    RESERVED_PROPERTIES
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weir_owned_properties_are_reserved() {
        assert_eq!(reserved_property("group.id"), Some("use `group_id`"));
        assert_eq!(reserved_property("fetch.max.bytes"), None);
        assert_eq!(Isolation::default().property(), "read_committed");
    }
}
