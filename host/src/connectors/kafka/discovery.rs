//! Which topics and partitions a Kafka source reads: the topics named in
//! `topics`, or every topic whose whole name matches `topic_pattern`, with
//! the partitions the broker lists for them.
//!
//! With `discovery_interval_ms`, the source asks again at that interval
//! (Flink's `partition.discovery.interval.ms`): a partition it did not
//! read before — a topic's new partition, or a partition of a new matching
//! topic — goes to the subtask the assignment rule ([`super::assign`])
//! names, which reads it from its earliest offset, without a restart; it
//! is a split like the others from then on (checkpointed, redistributed on
//! rescale). Each subtask discovers on its own: the rule needs no
//! coordination. A failed look-up is logged and tried again at the next
//! interval.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use regex::Regex;

use super::{Logged, kafka_error};
use crate::connectors::ConnectorError;

/// How long a metadata request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The topics a source reads.
#[derive(Debug, Clone)]
pub(crate) enum Topics {
    /// These, by name (each must exist).
    Named(Vec<String>),
    /// Every topic whose whole name matches.
    Pattern(TopicPattern),
}

/// A `topic_pattern`: a regular expression that matches whole topic names.
#[derive(Debug, Clone)]
pub(crate) struct TopicPattern {
    /// As the job file gives it.
    text: String,
    /// Anchored at both ends.
    regex: Regex,
}

impl TopicPattern {
    /// `pattern` as a regular expression matching whole topic names.
    pub(crate) fn new(pattern: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            text: pattern.to_string(),
            regex: Regex::new(&format!("^(?:{pattern})$"))?,
        })
    }

    /// Whether `topic` matches as a whole.
    pub(crate) fn is_match(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }
}

impl std::fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for TopicPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Topics {
    /// The topics read and their partition counts, as the broker lists
    /// them now, sorted by name. A named topic must exist; a pattern may
    /// match nothing (yet).
    pub(crate) fn partitions(
        &self,
        consumer: &BaseConsumer<Logged>,
        servers: &str,
    ) -> Result<Vec<(String, i32)>, ConnectorError> {
        match self {
            Self::Named(names) => names
                .iter()
                .map(|topic| Ok((topic.clone(), partition_count(consumer, topic, servers)?)))
                .collect(),
            Self::Pattern(pattern) => {
                let metadata = consumer
                    .fetch_metadata(None, REQUEST_TIMEOUT)
                    .map_err(|e| kafka_error(format!("cannot reach Kafka at {servers} (listing topics)"), e))?;
                let mut found: Vec<(String, i32)> = metadata
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty() && pattern.is_match(t.name()))
                    .map(|t| {
                        let count = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
                        (t.name().to_string(), count)
                    })
                    .collect();
                found.sort();
                Ok(found)
            }
        }
    }
}

/// The number of partitions of `topic`, which must exist.
fn partition_count(consumer: &BaseConsumer<Logged>, topic: &str, servers: &str) -> Result<i32, ConnectorError> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT).map_err(|e| {
        kafka_error(
            format!("cannot reach Kafka at {servers} (asking for topic `{topic}`)"),
            e,
        )
    })?;
    let missing = |code| kafka_error(format!("topic `{topic}` does not exist on {servers}"), code);
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        )));
    };
    if let Some(error) = found.error() {
        return Err(missing(KafkaError::MetadataFetch(error.into())));
    }
    if found.partitions().is_empty() {
        return Err(missing(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        )));
    }
    Ok(i32::try_from(found.partitions().len()).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_whole_topic_names() {
        let pattern = TopicPattern::new("orders-.*").expect("a regular expression");
        assert!(pattern.is_match("orders-eu"));
        assert!(!pattern.is_match("old-orders-eu"), "anchored at the start");
        let alternatives = TopicPattern::new("a|b").expect("a regular expression");
        assert!(
            alternatives.is_match("b") && !alternatives.is_match("ab"),
            "anchored as a whole"
        );
        assert!(TopicPattern::new("(").is_err());
    }
}
