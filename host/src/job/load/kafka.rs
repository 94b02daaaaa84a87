//! The `type = "kafka"` source and sink tables of a job file, checked and
//! turned into [`KafkaSourceConfig`] and [`KafkaSinkConfig`].
//!
//! ```toml
//! [[source]]
//! uid = "words"
//! type = "kafka"
//! bootstrap_servers = "127.0.0.1:9092"
//! topics = ["words"]              # or topic_pattern = "words-.*" (whole names)
//! discovery_interval_ms = 10000   # look for new partitions and topics (default: never)
//! group_id = "wordcount"          # default weir-{job}-{uid}
//! start = "earliest"              # latest, committed, { timestamp = 1700000000000 }
//! format = "lines"                # raw (default), json
//! envelope = false                # json only: { key, value, headers, topic, partition, offset, timestamp }
//! isolation = "read-committed"    # default; or read-uncommitted
//! linger_ms = 100                 # a batch leaves when full or after this long
//! bounded = false                 # true: end at the end offsets of the first start
//! properties = { "fetch.min.bytes" = 1 }   # any librdkafka setting
//!
//! [[sink]]
//! uid = "counts"
//! input = "count"
//! type = "kafka"
//! bootstrap_servers = "127.0.0.1:9092"
//! topic = "counts"
//! delivery = "exactly-once"       # default; or at-least-once
//! format = "envelope"             # raw (default): the record is the value
//! partitioner = "key-hash"        # default, round-robin, fixed, { module = "p.wasm", function = "f" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::Builder;
use crate::connectors::kafka::config::{Partitioner, reserved_property};
use crate::connectors::kafka::{Format, KafkaSinkConfig, KafkaSourceConfig, SinkFormat, StartFrom};
use crate::job::spec::{PartitionerSpec, PropertyValue, SinkSpec, SourceSpec, StartSpec};
use crate::wasm::FunctionKind;

/// Default `linger_ms`: Flink's default buffer timeout.
const DEFAULT_LINGER_MS: u64 = 100;

impl Builder<'_> {
    /// The settings of Kafka source `uid`; errors are recorded.
    pub(super) fn kafka_source(&mut self, spanned: &Spanned<SourceSpec>, uid: &str) -> KafkaSourceConfig {
        let source = spanned.get_ref();
        let field = |name: &str| format!("source `{uid}` → {name}");
        let bootstrap_servers = self.kafka_servers(&source.bootstrap_servers, spanned, &field("bootstrap_servers"));
        let topics = match &source.topics {
            Some(topics) if topics.get_ref().is_empty() || topics.get_ref().iter().any(String::is_empty) => {
                self.errors.push(self.locator.error(
                    topics.span(),
                    field("topics"),
                    "needs at least one topic, and no empty name",
                ));
                Vec::new()
            }
            Some(topics) if source.topic_pattern.is_some() => {
                self.errors.push(self.locator.error(
                    topics.span(),
                    field("topics"),
                    "give either `topics` or `topic_pattern`, not both",
                ));
                Vec::new()
            }
            Some(topics) => topics.get_ref().clone(),
            None if source.topic_pattern.is_some() => Vec::new(),
            None => {
                self.errors.push(self.locator.error(
                    spanned.span(),
                    field("topics"),
                    "a kafka source needs `topics` (a list of topic names) or `topic_pattern` (a regular expression)",
                ));
                Vec::new()
            }
        };
        let topic_pattern = source.topic_pattern.as_ref().and_then(|pattern| {
            match crate::connectors::kafka::discovery::TopicPattern::new(pattern.get_ref()) {
                Ok(compiled) => Some(compiled),
                Err(error) => {
                    self.errors.push(self.locator.error(
                        pattern.span(),
                        field("topic_pattern"),
                        format!("not a regular expression: {error}"),
                    ));
                    None
                }
            }
        });
        let discovery_interval = source.discovery_interval_ms.as_ref().map(|interval| {
            if source.bounded == Some(true) {
                self.errors.push(self.locator.error(
                    interval.span(),
                    field("discovery_interval_ms"),
                    "a bounded source reads the partitions it finds at start: drop `bounded` or the discovery",
                ));
            }
            Duration::from_millis(self.positive_u64(interval, &field("discovery_interval_ms")))
        });
        let start = match source.start.as_ref() {
            None => StartFrom::Earliest,
            Some(start) => match start.get_ref() {
                StartSpec::At(at) => StartFrom::Timestamp(at.timestamp),
                StartSpec::Name(name) => match name.as_str() {
                    "earliest" => StartFrom::Earliest,
                    "latest" => StartFrom::Latest,
                    "committed" => StartFrom::Committed,
                    other => {
                        self.errors.push(self.locator.error(
                            start.span(),
                            field("start"),
                            format!(
                                "expected `earliest`, `latest`, `committed` or `{{ timestamp = ms }}`, found `{other}`"
                            ),
                        ));
                        StartFrom::Earliest
                    }
                },
            },
        };
        let linger_ms = source
            .linger_ms
            .as_ref()
            .map_or(DEFAULT_LINGER_MS, |l| self.positive_u64(l, &field("linger_ms")));
        let format = source.format.unwrap_or_default();
        let envelope = match &source.envelope {
            Some(envelope) if *envelope.get_ref() && format != Format::Json => {
                self.errors.push(self.locator.error(
                    envelope.span(),
                    field("envelope"),
                    "needs `format = \"json\"` (the envelope is a JSON object holding the message's JSON value)",
                ));
                false
            }
            Some(envelope) => *envelope.get_ref(),
            None => false,
        };
        KafkaSourceConfig {
            bootstrap_servers,
            topics,
            topic_pattern,
            discovery_interval,
            group_id: source.group_id.as_ref().and_then(|g| self.text(g)),
            start,
            bounded: source.bounded.unwrap_or(false),
            format,
            envelope,
            isolation: source.isolation.unwrap_or_default(),
            linger: Duration::from_millis(linger_ms),
            properties: self.kafka_properties(source.properties.as_ref(), &field("properties")),
        }
    }

    /// The settings of Kafka sink `uid`; errors are recorded.
    pub(super) fn kafka_sink(&mut self, spanned: &Spanned<SinkSpec>, uid: &str) -> KafkaSinkConfig {
        let sink = spanned.get_ref();
        let field = |name: &str| format!("sink `{uid}` → {name}");
        let bootstrap_servers = self.kafka_servers(&sink.bootstrap_servers, spanned, &field("bootstrap_servers"));
        let topic = match &sink.topic {
            Some(topic) if topic.get_ref().is_empty() => {
                self.errors
                    .push(self.locator.error(topic.span(), field("topic"), "must not be empty"));
                String::new()
            }
            Some(topic) => self.text(topic).unwrap_or_default(),
            None => {
                self.errors.push(
                    self.locator
                        .error(spanned.span(), field("topic"), "a kafka sink needs `topic`"),
                );
                String::new()
            }
        };
        let partitioner = sink.partitioner.as_ref().map_or(Partitioner::Default, |p| {
            self.kafka_partitioner(p, &field("partitioner"))
        });
        let format = sink.format.unwrap_or_default();
        if let (Partitioner::KeyHash, SinkFormat::Raw, Some(spec)) = (&partitioner, format, &sink.partitioner) {
            self.errors.push(self.locator.error(
                spec.span(),
                field("partitioner"),
                "key-hash needs keys, and raw records have none: use `format = \"envelope\"` (a `key` per record)",
            ));
        }
        KafkaSinkConfig {
            bootstrap_servers,
            topic,
            delivery: sink.delivery.unwrap_or_default(),
            format,
            partitioner,
            properties: self.kafka_properties(sink.properties.as_ref(), &field("properties")),
        }
    }

    /// A Kafka sink's `partitioner`: a name, or a partitioner function.
    fn kafka_partitioner(&mut self, spec: &Spanned<PartitionerSpec>, field: &str) -> Partitioner {
        match spec.get_ref() {
            PartitionerSpec::Name(name) => match name.as_str() {
                "default" => Partitioner::Default,
                "key-hash" => Partitioner::KeyHash,
                "round-robin" => Partitioner::RoundRobin,
                "fixed" => Partitioner::Fixed,
                other => {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        field,
                        format!(
                            "expected `default`, `key-hash`, `round-robin`, `fixed` or `{{ module = \"...\", function = \"...\" }}`, found `{other}`"
                        ),
                    ));
                    Partitioner::Default
                }
            },
            PartitionerSpec::Wasm {
                module,
                function,
                params,
            } => {
                let params = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let function_field = format!("{field} → function");
                let Some(found) =
                    self.function(module, function, &format!("{field} → module"), &function_field, params)
                else {
                    return Partitioner::Default;
                };
                if found.kind != FunctionKind::Partitioner {
                    self.errors.push(self.locator.error(
                        function.span(),
                        function_field,
                        format!(
                            "expected a partitioner, found `{}`, a {} function",
                            found.function, found.kind
                        ),
                    ));
                    return Partitioner::Default;
                }
                Partitioner::Wasm(found)
            }
        }
    }

    /// `bootstrap_servers`, which is required.
    fn kafka_servers<T>(&mut self, value: &Option<Spanned<String>>, table: &Spanned<T>, field: &str) -> String {
        match value {
            Some(servers) if !servers.get_ref().trim().is_empty() => self.text(servers).unwrap_or_default(),
            Some(servers) => {
                self.errors
                    .push(self.locator.error(servers.span(), field, "must not be empty"));
                String::new()
            }
            None => {
                self.errors.push(self.locator.error(
                    table.span(),
                    field,
                    "a kafka connector needs `bootstrap_servers` (`host:port,...`)",
                ));
                String::new()
            }
        }
    }

    /// `properties` as librdkafka's text settings, refusing those Weir sets.
    fn kafka_properties(
        &mut self,
        properties: Option<&Spanned<BTreeMap<String, PropertyValue>>>,
        field: &str,
    ) -> Vec<(String, String)> {
        let Some(properties) = properties else {
            return Vec::new();
        };
        let mut settings = Vec::new();
        for (key, value) in properties.get_ref() {
            if let Some(why) = reserved_property(key) {
                self.errors.push(self.locator.error(
                    properties.span(),
                    format!("{field} → {key}"),
                    format!("`{key}` is set by Weir: {why}"),
                ));
                continue;
            }
            settings.push((key.clone(), value.to_string()));
        }
        settings
    }
}
