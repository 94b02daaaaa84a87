//! The Kafka source: a consumer per subtask, polled on the subtask's own
//! thread, reading the partitions [`super::assign`] gives it from the
//! offsets in its splits (see the module docs of [`super`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::config::{KafkaSourceConfig, StartFrom};
use super::discovery::Topics;
use super::format::{Decoder, Meta, Position};
use super::split::{PartitionSplit, Split};
use super::watermarks::SplitWatermarks;
use super::{ClientScope, Logged, assign, kafka_error};
use crate::connectors::{ConnectorError, Rejected, Source, SourceStatus};
use crate::record::batch::RecordBatch;
use crate::storage::CheckpointId;
use crate::time::watermarks::{WatermarkEvent, WatermarkStrategy};

/// How long a metadata or offset request at start may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Snapshots kept for committing offsets when their checkpoint completes
/// (older ones, of checkpoints that never complete, are dropped).
const MAX_SNAPSHOTS: usize = 16;

/// Reads this subtask's partitions of the configured topics.
pub(crate) struct KafkaSource {
    uid: String,
    consumer: BaseConsumer<Logged>,
    decoder: Decoder,
    /// Messages of the last batch that are not records.
    rejected: Vec<Rejected>,
    linger: Duration,
    bounded: bool,
    /// The partitions read, with the next offset of each.
    partitions: Vec<PartitionSplit>,
    /// The index in `partitions` of the last message's partition.
    last: usize,
    /// Per-partition watermarks, when the source has a strategy.
    watermarks: Option<SplitWatermarks>,
    /// The topics read, this subtask and the parallelism (for discovery).
    topics: Topics,
    servers: String,
    scope: ClientScope,
    /// How often to look for new partitions, and when next.
    discovery: Option<(Duration, Instant)>,
    /// The offsets acknowledged at barriers whose checkpoints have not
    /// completed yet.
    snapshots: VecDeque<(CheckpointId, TopicPartitionList)>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("uid", &self.uid)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Connects, finds this subtask's partitions and where each starts: at
    /// its offset in `restored` (the encoded splits of every subtask of the
    /// restored checkpoint), or else by `config.start`. With `strategy`,
    /// each partition generates its own (see [`super::watermarks`]).
    pub(crate) fn open(
        config: &KafkaSourceConfig,
        scope: &ClientScope,
        restored: &[Vec<u8>],
        strategy: Option<WatermarkStrategy>,
    ) -> Result<Self, ConnectorError> {
        let servers = &config.bootstrap_servers;
        let mut client = ClientConfig::new();
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let group = config
            .group_id
            .clone()
            .unwrap_or_else(|| format!("weir-{}-{}", scope.job, scope.uid));
        client
            .set("bootstrap.servers", servers)
            .set("group.id", &group)
            .set(
                "client.id",
                format!("weir-{}-{}-{}", scope.job, scope.uid, scope.subtask),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", config.isolation.property())
            .set("enable.partition.eof", if config.bounded { "true" } else { "false" });
        let consumer: BaseConsumer<Logged> = client
            .create_with_context(Logged::new(&scope.uid))
            .map_err(|e| kafka_error("cannot create the Kafka consumer", e))?;

        let mut restored_splits = HashMap::new();
        for bytes in restored {
            if let Split::Partition(split) = Split::decode(bytes)? {
                restored_splits.insert((split.topic.clone(), split.partition), split);
            }
        }

        let topics = match &config.topic_pattern {
            Some(pattern) => Topics::Pattern(pattern.clone()),
            None => Topics::Named(config.topics.clone()),
        };
        // After a restore, a partition the checkpoint does not know was
        // created since: it starts at its earliest offset (as in Flink).
        let start = if restored.is_empty() {
            config.start
        } else {
            StartFrom::Earliest
        };
        let found = topics.partitions(&consumer, servers)?;
        if found.is_empty() && config.discovery_interval.is_none() {
            return Err(kafka_error(
                format!(
                    "no topic on {servers} matches topic_pattern `{}`",
                    config
                        .topic_pattern
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition),
            ));
        }
        let mut partitions = Vec::new();
        for (topic, count) in &found {
            for partition in 0..*count {
                if assign::owner(topic, partition, scope.parallelism) != scope.subtask {
                    continue;
                }
                let split = match restored_splits.remove(&(topic.clone(), partition)) {
                    Some(split) => split,
                    None => new_split(&consumer, start, topic, partition)?,
                };
                partitions.push(split);
            }
        }

        let mut assignment = TopicPartitionList::new();
        for split in partitions.iter().filter(|s| !is_done(s)) {
            assignment
                .add_partition_offset(&split.topic, split.partition, Offset::Offset(split.next))
                .map_err(|e| kafka_error(format!("cannot assign {}/{}", split.topic, split.partition), e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error("cannot assign the partitions", e))?;
        tracing::info!(
            uid = scope.uid,
            subtask = scope.subtask,
            "reading {} Kafka partition(s) from {servers}: {}",
            partitions.len(),
            partitions
                .iter()
                .map(|s| format!("{}/{}@{}..{:?}", s.topic, s.partition, s.next, s.end))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let watermarks = strategy.map(|strategy| SplitWatermarks::new(strategy, partitions.len()));
        Ok(Self {
            uid: scope.uid.clone(),
            consumer,
            decoder: Decoder {
                format: config.format,
                envelope: config.envelope,
            },
            rejected: Vec::new(),
            linger: config.linger,
            bounded: config.bounded,
            partitions,
            last: 0,
            watermarks,
            topics,
            servers: servers.clone(),
            scope: scope.clone(),
            discovery: config.discovery_interval.map(|every| (every, Instant::now() + every)),
            snapshots: VecDeque::new(),
        })
    }

    /// Whether a bounded source has read every partition to its end.
    fn finished(&self) -> bool {
        self.bounded && self.partitions.iter().all(is_done)
    }

    /// Looks for partitions this subtask should read and does not yet
    /// (see [`super::discovery`]): each is read from its earliest offset.
    fn discover(&mut self) -> Result<(), ConnectorError> {
        let found = self.topics.partitions(&self.consumer, &self.servers)?;
        let mut added = TopicPartitionList::new();
        for (topic, count) in &found {
            for partition in 0..*count {
                let known = self
                    .partitions
                    .iter()
                    .any(|s| s.partition == partition && &s.topic == topic);
                if known || assign::owner(topic, partition, self.scope.parallelism) != self.scope.subtask {
                    continue;
                }
                let split = new_split(&self.consumer, StartFrom::Earliest, topic, partition)?;
                added
                    .add_partition_offset(topic, partition, Offset::Offset(split.next))
                    .map_err(|e| kafka_error(format!("cannot assign {topic}/{partition}"), e))?;
                tracing::info!(
                    uid = self.uid,
                    subtask = self.scope.subtask,
                    "discovered Kafka partition {topic}/{partition}, reading it from offset {}",
                    split.next
                );
                self.partitions.push(split);
                if let Some(watermarks) = &mut self.watermarks {
                    watermarks.add_partition();
                }
            }
        }
        if added.count() > 0 {
            self.consumer
                .incremental_assign(&added)
                .map_err(|e| kafka_error("cannot assign the discovered partitions", e))?;
        }
        Ok(())
    }

    /// Runs discovery when it is due; a failure is logged and retried at
    /// the next interval.
    fn discover_when_due(&mut self) {
        let Some((every, due)) = self.discovery else {
            return;
        };
        let now = Instant::now();
        if now < due {
            return;
        }
        self.discovery = Some((every, now + every));
        if let Err(error) = self.discover() {
            tracing::warn!(
                uid = self.uid,
                "cannot look for new Kafka partitions (retried in {every:?}): {error}"
            );
        }
    }

    /// After an end-of-partition event for `partition`: a bounded split of
    /// that partition whose end is not known yet ends where it is. With
    /// several topics, the event does not say which topic reached its end
    /// (rdkafka drops it): then each candidate asks the broker for its end
    /// offset instead.
    fn reached_end(&mut self, partition: i32) -> Result<(), ConnectorError> {
        if !self.bounded {
            return Ok(());
        }
        let candidates: Vec<usize> = (0..self.partitions.len())
            .filter(|i| self.partitions[*i].partition == partition && self.partitions[*i].end.is_none())
            .collect();
        if let [only] = candidates[..] {
            let split = &mut self.partitions[only];
            split.end = Some(split.next);
            return Ok(());
        }
        for index in candidates {
            let split = &self.partitions[index];
            let (_, high) = watermarks(&self.consumer, &split.topic, split.partition)?;
            if split.next >= high {
                self.partitions[index].end = Some(self.partitions[index].next);
            }
        }
        Ok(())
    }
}

/// The index of `partition` of `topic` in `partitions`, looked for at
/// `last` (the previous message's) first.
fn find(partitions: &[PartitionSplit], last: &mut usize, topic: &str, partition: i32) -> Option<usize> {
    let hit = |s: &PartitionSplit| s.partition == partition && s.topic == topic;
    if partitions.get(*last).is_some_and(hit) {
        return Some(*last);
    }
    *last = partitions.iter().position(hit)?;
    Some(*last)
}

/// Whether a bounded partition is read to its end.
fn is_done(split: &PartitionSplit) -> bool {
    split.end.is_some_and(|end| split.next >= end)
}

/// The split of a partition no checkpoint knows, starting by `start`.
fn new_split(
    consumer: &BaseConsumer<Logged>,
    start: StartFrom,
    topic: &str,
    partition: i32,
) -> Result<PartitionSplit, ConnectorError> {
    let (low, high) = watermarks(consumer, topic, partition)?;
    Ok(PartitionSplit {
        topic: topic.to_string(),
        partition,
        next: start_offset(consumer, start, topic, partition, (low, high))?,
        // A bounded partition's end is where the reader first reaches the
        // end of the partition.
        end: None,
        watermark: Default::default(),
    })
}

/// The low and high watermarks (first offset, end offset) of a partition.
fn watermarks(consumer: &BaseConsumer<Logged>, topic: &str, partition: i32) -> Result<(i64, i64), ConnectorError> {
    consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(format!("cannot read the offsets of {topic}/{partition}"), e))
}

/// Where a partition with no checkpointed offset starts, as a concrete
/// offset (so that the first checkpoint, taken before any record arrives,
/// already pins it).
fn start_offset(
    consumer: &BaseConsumer<Logged>,
    start: StartFrom,
    topic: &str,
    partition: i32,
    (low, high): (i64, i64),
) -> Result<i64, ConnectorError> {
    let found = |list: rdkafka::error::KafkaResult<TopicPartitionList>, what: &str| {
        let list =
            list.map_err(|e| kafka_error(format!("cannot look up the {what} offset of {topic}/{partition}"), e))?;
        Ok::<_, ConnectorError>(match list.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        })
    };
    let mut list = TopicPartitionList::new();
    Ok(match start {
        StartFrom::Earliest => low,
        StartFrom::Latest => high,
        StartFrom::Committed => {
            list.add_partition(topic, partition);
            // A committed offset below the log's start (deleted by
            // retention) starts at the log's start.
            found(consumer.committed_offsets(list, REQUEST_TIMEOUT), "committed")?.map_or(low, |offset| offset.max(low))
        }
        StartFrom::Timestamp(ms) => {
            list.add_partition_offset(topic, partition, Offset::Offset(ms))
                .map_err(|e| kafka_error(format!("cannot look up offsets by time in {topic}/{partition}"), e))?;
            // No record at or after the time: the end.
            found(consumer.offsets_for_times(list, REQUEST_TIMEOUT), "timestamp")?.unwrap_or(high)
        }
    })
}

impl Source for KafkaSource {
    fn next_batch(&mut self, batch: &mut RecordBatch, max: usize) -> Result<SourceStatus, ConnectorError> {
        if self.finished() {
            return Ok(SourceStatus::End);
        }
        self.discover_when_due();
        if self.partitions.is_empty() {
            // Nothing to read (more subtasks than partitions): quiet.
            std::thread::sleep(self.linger);
            return Ok(SourceStatus::More);
        }
        let now = crate::time::now_ms();
        let deadline = Instant::now() + self.linger;
        while batch.len() < max {
            let Some(polled) = self.consumer.poll(deadline.saturating_duration_since(Instant::now())) else {
                break;
            };
            let message = match polled {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.reached_end(partition)?;
                    if self.finished() {
                        break;
                    }
                    continue;
                }
                Err(error) => return Err(kafka_error("cannot read from Kafka", error)),
            };
            let (offset, timestamp) = (message.offset(), message.timestamp().to_millis().unwrap_or(now));
            let Some(index) = find(&self.partitions, &mut self.last, message.topic(), message.partition()) else {
                continue;
            };
            let split = &mut self.partitions[index];
            if offset < split.next || is_done(split) {
                continue;
            }
            split.next = offset + 1;
            if let Some(watermarks) = &mut self.watermarks {
                watermarks.on_record(index, split, timestamp);
            }
            let position = Position {
                topic: message.topic(),
                partition: message.partition(),
                offset,
            };
            let meta = || Meta {
                key: message.key(),
                headers: message
                    .headers()
                    .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
                    .unwrap_or_default(),
            };
            let payload = message.payload().unwrap_or_default();
            self.decoder
                .push(batch, &mut self.rejected, payload, timestamp, position, meta);
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(if self.finished() {
            SourceStatus::End
        } else {
            SourceStatus::More
        })
    }

    fn own_watermarks(&self) -> bool {
        self.watermarks.is_some()
    }

    fn poll_watermark(&mut self) -> Option<WatermarkEvent> {
        let watermarks = self.watermarks.as_mut()?;
        watermarks.poll(&mut self.partitions, is_done, Instant::now())
    }

    fn rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }

    /// Kafka positions are per partition: see [`Source::splits`].
    fn position(&self) -> u64 {
        0
    }

    /// Positions are restored from splits when the source opens.
    fn seek(&mut self, _position: u64) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn splits(&self) -> Vec<Vec<u8>> {
        if self.partitions.is_empty() {
            return vec![Split::Empty.encode()];
        }
        self.partitions
            .iter()
            .map(|split| Split::Partition(split.clone()).encode())
            .collect()
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> (u64, Vec<Vec<u8>>) {
        let mut offsets = TopicPartitionList::new();
        for split in &self.partitions {
            // Only fails for negative offsets, which a split never holds.
            let _ = offsets.add_partition_offset(&split.topic, split.partition, Offset::Offset(split.next));
        }
        if self.snapshots.len() >= MAX_SNAPSHOTS {
            self.snapshots.pop_front();
        }
        self.snapshots.push_back((checkpoint, offsets));
        (self.position(), self.splits())
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) {
        let mut latest = None;
        while self.snapshots.front().is_some_and(|(id, _)| *id <= checkpoint) {
            latest = self.snapshots.pop_front();
        }
        if let Some((_, offsets)) = latest
            && offsets.count() > 0
            && let Err(error) = self.consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::warn!(
                uid = self.uid,
                "cannot commit offsets to the consumer group (they serve monitoring only): {error}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_partitions_are_done_at_their_end() {
        let split = |next, end| PartitionSplit {
            topic: "t".into(),
            partition: 0,
            next,
            end,
            watermark: Default::default(),
        };
        assert!(is_done(&split(10, Some(10))));
        assert!(!is_done(&split(9, Some(10))));
        assert!(!is_done(&split(1_000, None)));
    }
}
