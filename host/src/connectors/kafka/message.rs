//! What a record becomes in the Kafka sink (Flink's
//! `KafkaRecordSerializationSchema` and `FlinkKafkaPartitioner`): a message
//! with a value and, with an envelope, a key, headers, a partition and a
//! timestamp; and the partition of every message that does not name its
//! own ([`Partitioner`]).
//!
//! ## Formats
//!
//! With `format = "raw"` (the default) the record's bytes are the value,
//! byte for byte, with no key and no headers. (Records reach a sink
//! without a key column: a sink's input is always forward or rebalance,
//! and a key selector's keys live only on the edge into its keyed
//! operator. A key has to be written with an envelope.)
//!
//! With `format = "envelope"` each record is a JSON object shaped like the
//! Kafka source's envelope (see [`super::format`]):
//!
//! ```json
//! {"key":"k1","value":{"n":1},"headers":{"trace":"abc","flag":null},"partition":2,"timestamp":1700000000000}
//! ```
//!
//! - `value` (required): any JSON; the message's value is its JSON text as
//!   the record spells it (white space around it removed). A JSON string
//!   is written with its quotes: `"value":"hi"` writes `"hi"`, so that a
//!   source with `format = "json"` reads back the same value (and its
//!   envelope shows the same `value`).
//! - `key`: a string, or `null` (or absent) for a message without a key.
//! - `headers`: an object of strings or `null`s, written in the record's
//!   order (a name given twice is sent twice).
//! - `partition`: the partition, which wins over the sink's partitioner; a
//!   partition the topic lacks makes the record a dead letter.
//! - `timestamp`: the message's timestamp in ms (default: the record's
//!   event time).
//! - `topic` and `offset`, which the source's envelope carries, are
//!   accepted and ignored, so that a source's envelope can be written
//!   unchanged (the message goes to the sink's topic).
//!
//! Any other field, or a record that is not such an object, makes the
//! record a dead letter ([`Rejected`]) whose reason names the sink and what
//! is wrong; the job goes on.
//!
//! The envelope is read without copying: a small scanner walks the object's
//! members and serde_json reads each member's value in place, borrowing
//! strings without escapes and the value's text from the record. (serde_json's
//! `RawValue` would do the same but needs a feature that rebuilds wasmtime's
//! macros.)
//!
//! ## Partitions
//!
//! The partition count is read from the topic's metadata when the sink
//! starts; partitions added while the job runs are used after a restart.

use std::borrow::Cow;
use std::fmt;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use serde::de::{Deserialize, Deserializer, IgnoredAny, Visitor};

use super::config::{Partitioner, SinkFormat};
use crate::connectors::Rejected;
use crate::record::batch::RecordBatch;
use crate::wasm::instance::PartitionerUdf;

/// A header: its name and its value, if it has one.
pub(crate) type MessageHeader<'a> = (Cow<'a, str>, Option<Cow<'a, str>>);

/// One message to send, borrowed from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// The key, if any.
    pub(crate) key: Option<Cow<'a, str>>,
    /// The value.
    pub(crate) value: &'a [u8],
    /// The headers, in order.
    pub(crate) headers: Vec<MessageHeader<'a>>,
    /// The partition; `None` leaves the choice to librdkafka.
    pub(crate) partition: Option<i32>,
    /// The timestamp in ms; negative: none (the broker's clock).
    pub(crate) timestamp: i64,
}

impl<'a> Message<'a> {
    /// The librdkafka record of this message, for `topic`.
    pub(crate) fn record<'m>(&'m self, topic: &'m str) -> BaseRecord<'m, [u8], [u8]> {
        let mut record = BaseRecord::to(topic).payload(self.value);
        if let Some(key) = &self.key {
            record = record.key(key.as_bytes());
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        if self.timestamp >= 0 {
            record = record.timestamp(self.timestamp);
        }
        if !self.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
            for (name, value) in &self.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: value.as_deref().map(str::as_bytes),
                });
            }
            record = record.headers(headers);
        }
        record
    }
}

/// Why a record is not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// The record does not start with `{`.
    #[error("expected a JSON object")]
    NotAnObject,
    /// Broken JSON between members.
    #[error("expected {expected} at byte {at}")]
    Syntax {
        /// What was expected.
        expected: &'static str,
        /// Where, in bytes from the record's start.
        at: usize,
    },
    /// A member's name or value cannot be read.
    #[error("`{field}`: {reason}")]
    Field {
        /// The member (`headers → name` for a header).
        field: String,
        /// serde_json's reason.
        reason: String,
    },
    /// A member an envelope does not have.
    #[error("unknown field `{0}`, expected one of `key`, `value`, `headers`, `partition`, `timestamp`")]
    Unknown(String),
    /// A member given twice.
    #[error("duplicate field `{0}`")]
    Duplicate(&'static str),
    /// No `value`.
    #[error("missing field `value`")]
    MissingValue,
    /// A negative partition or timestamp.
    #[error("`{field}` must be 0 or more, found {value}")]
    Negative {
        /// `partition` or `timestamp`.
        field: &'static str,
        /// What was given.
        value: i64,
    },
}

/// Reads the envelope `record` (see the module docs).
pub(crate) fn parse_envelope(record: &[u8]) -> Result<Message<'_>, EnvelopeError> {
    let mut scanner = Scanner { text: record, at: 0 };
    if scanner.peek() != Some(b'{') {
        return Err(EnvelopeError::NotAnObject);
    }
    let mut message = Message {
        key: None,
        value: &[],
        headers: Vec::new(),
        partition: None,
        timestamp: -1,
    };
    let (mut has_value, mut seen) = (false, 0u8);
    scanner.object(|scanner, name| {
        let (bit, field) = match &*name.0 {
            "key" => (1, "key"),
            "value" => (2, "value"),
            "headers" => (4, "headers"),
            "partition" => (8, "partition"),
            "timestamp" => (16, "timestamp"),
            "topic" | "offset" => {
                scanner.value::<IgnoredAny>(&name.0)?;
                return Ok(());
            }
            other => return Err(EnvelopeError::Unknown(other.to_owned())),
        };
        if seen & bit != 0 {
            return Err(EnvelopeError::Duplicate(field));
        }
        seen |= bit;
        match field {
            "key" => message.key = scanner.value::<Option<Text<'_>>>(field)?.0.map(|t| t.0),
            "value" => {
                message.value = scanner.value::<IgnoredAny>(field)?.1;
                has_value = true;
            }
            "headers" => {
                if scanner.peek() != Some(b'{') {
                    return Err(EnvelopeError::Field {
                        field: field.into(),
                        reason: "expected an object of strings or nulls".into(),
                    });
                }
                scanner.object(|scanner, name| {
                    let what = format!("headers → {}", name.0);
                    let value = scanner.value::<Option<Text<'_>>>(&what)?.0;
                    message.headers.push((name.0, value.map(|t| t.0)));
                    Ok(())
                })?;
            }
            "partition" => {
                let partition = scanner.value::<Option<i32>>(field)?.0;
                if let Some(value) = partition.filter(|p| *p < 0) {
                    return Err(EnvelopeError::Negative {
                        field,
                        value: value.into(),
                    });
                }
                message.partition = partition;
            }
            _ => {
                if let Some(timestamp) = scanner.value::<Option<i64>>(field)?.0 {
                    if timestamp < 0 {
                        return Err(EnvelopeError::Negative {
                            field,
                            value: timestamp,
                        });
                    }
                    message.timestamp = timestamp;
                }
            }
        }
        Ok(())
    })?;
    if scanner.peek().is_some() {
        return Err(EnvelopeError::Syntax {
            expected: "the end of the record",
            at: scanner.at,
        });
    }
    if !has_value {
        return Err(EnvelopeError::MissingValue);
    }
    Ok(message)
}

/// Walks a JSON text member by member.
struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    /// The next byte that is not white space.
    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
        self.text.get(self.at).copied()
    }

    /// Takes `byte`, which must come next.
    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), EnvelopeError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(EnvelopeError::Syntax { expected, at: self.at })
        }
    }

    /// Reads the next JSON value as a `T`, and its text; `field` names it
    /// in errors.
    fn value<T: Deserialize<'a>>(&mut self, field: &str) -> Result<(T, &'a [u8]), EnvelopeError> {
        self.peek();
        let start = self.at;
        let mut values = serde_json::Deserializer::from_slice(&self.text[start..]).into_iter::<T>();
        let failed = |reason: String| EnvelopeError::Field {
            field: field.to_owned(),
            reason,
        };
        match values.next() {
            Some(Ok(value)) => {
                self.at = start + values.byte_offset();
                Ok((value, &self.text[start..self.at]))
            }
            Some(Err(error)) => Err(failed(without_position(&error))),
            None => Err(failed("EOF while parsing a value".into())),
        }
    }

    /// Reads an object, handing each member's name to `member`, which
    /// reads the member's value.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Text<'a>) -> Result<(), EnvelopeError>,
    ) -> Result<(), EnvelopeError> {
        self.expect(b'{', "`{`")?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(EnvelopeError::Syntax {
                    expected: "a field name",
                    at: self.at,
                });
            }
            let (name, _) = self.value::<Text<'a>>("field name")?;
            self.expect(b':', "`:`")?;
            member(self, name)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => {
                    return Err(EnvelopeError::Syntax {
                        expected: "`,` or `}`",
                        at: self.at,
                    });
                }
            }
        }
    }
}

/// serde_json's message without its position (which would count from the
/// member, not from the record).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => text[..at].to_owned(),
        _ => text,
    }
}

/// A JSON string, borrowed from the record unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Strings;
        impl<'de> Visitor<'de> for Strings {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Strings)
    }
}

/// Kafka's `Utils.murmur2`: the hash of Java's default partitioner.
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's Java default partitioner gives `key` among
/// `partitions`: `toPositive(murmur2(key)) % partitions`.
pub(crate) fn key_hash_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) as u32 % partitions.max(1)
}

/// A partitioner failed, or chose a partition the topic does not have.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PartitionError {
    /// The partitioner function trapped or broke the contract.
    #[error(transparent)]
    Function(#[from] crate::wasm::UdfError),
    /// The partitioner function returned a partition out of range.
    #[error(
        "partitioner `{function}` of module {module} returned partition {value}, but topic `{topic}` has {partitions} partitions (0..={last})",
        last = .partitions.saturating_sub(1)
    )]
    OutOfRange {
        /// The function.
        function: String,
        /// The module, `name@version (file)`.
        module: String,
        /// What it returned.
        value: u32,
        /// The topic.
        topic: String,
        /// The topic's partition count.
        partitions: u32,
    },
}

/// How partitions are chosen, with what each way keeps between batches.
enum Choice {
    Default,
    KeyHash,
    RoundRobin,
    Fixed,
    Wasm {
        udf: Box<PartitionerUdf>,
        function: String,
        module: String,
        /// The messages handed to the function (reused).
        scratch: RecordBatch,
        /// Which of them have a key (reused).
        has_key: Vec<bool>,
    },
}

/// Turns a sink's records into messages, and gives them partitions.
pub(crate) struct Messages {
    uid: String,
    topic: String,
    format: SinkFormat,
    choice: Choice,
    /// The topic's partition count at start.
    partitions: u32,
    /// The next partition of round robin (and of key-hash without a key).
    next: u32,
    /// This subtask's index.
    subtask: u32,
}

impl fmt::Debug for Messages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messages")
            .field("uid", &self.uid)
            .field("format", &self.format)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Messages {
    /// The messages of sink `uid` (subtask `subtask`) for `topic` of
    /// `partitions` partitions; `udf` is the started partitioner function
    /// when `partitioner` is one.
    pub(crate) fn new(
        uid: &str,
        topic: &str,
        format: SinkFormat,
        partitioner: &Partitioner,
        udf: Option<PartitionerUdf>,
        partitions: u32,
        subtask: u32,
    ) -> Self {
        let choice = match (partitioner, udf) {
            (Partitioner::Default, _) => Choice::Default,
            (Partitioner::KeyHash, _) => Choice::KeyHash,
            (Partitioner::RoundRobin, _) => Choice::RoundRobin,
            (Partitioner::Fixed, _) => Choice::Fixed,
            (Partitioner::Wasm(function), Some(udf)) => Choice::Wasm {
                udf: Box::new(udf),
                function: function.function.clone(),
                module: function.module.display_name(),
                scratch: RecordBatch::default(),
                has_key: Vec::new(),
            },
            // The runtime starts the function whenever the config names one.
            (Partitioner::Wasm(_), None) => Choice::Default,
        };
        let partitions = partitions.max(1);
        Self {
            uid: uid.to_owned(),
            topic: topic.to_owned(),
            format,
            choice,
            partitions,
            next: subtask % partitions,
            subtask,
        }
    }

    /// The messages of `batch`, each with its partition chosen (unless
    /// librdkafka's partitioner chooses); what cannot be a message goes to
    /// `rejected`.
    pub(crate) fn build<'b>(
        &mut self,
        batch: &'b RecordBatch,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Vec<Message<'b>>, PartitionError> {
        let mut messages = Vec::with_capacity(batch.len());
        for record in batch.iter() {
            let message = match self.format {
                SinkFormat::Raw => Message {
                    key: None,
                    value: record.payload,
                    headers: Vec::new(),
                    partition: None,
                    timestamp: record.timestamp,
                },
                SinkFormat::Envelope => {
                    let checked = parse_envelope(record.payload)
                        .map_err(|e| format!("not a Kafka envelope: {e}"))
                        .and_then(|message| self.in_range(message));
                    match checked {
                        Ok(mut message) => {
                            if message.timestamp < 0 {
                                message.timestamp = record.timestamp;
                            }
                            message
                        }
                        Err(reason) => {
                            rejected.push(Rejected {
                                payload: record.payload.to_vec(),
                                timestamp: record.timestamp,
                                reason: format!("sink `{}`: {reason}", self.uid),
                            });
                            continue;
                        }
                    }
                }
            };
            messages.push(message);
        }
        self.choose(&mut messages)?;
        Ok(messages)
    }

    /// `message`, or why its partition is not one of the topic's.
    fn in_range<'m>(&self, message: Message<'m>) -> Result<Message<'m>, String> {
        match message.partition {
            Some(partition) if partition as u32 >= self.partitions => Err(format!(
                "partition {partition} is out of range: topic `{}` has {} partitions",
                self.topic, self.partitions
            )),
            _ => Ok(message),
        }
    }

    /// Gives a partition to every message that has none.
    fn choose(&mut self, messages: &mut [Message<'_>]) -> Result<(), PartitionError> {
        let partitions = self.partitions;
        let unset = |m: &&mut Message<'_>| m.partition.is_none();
        match &mut self.choice {
            Choice::Default => {}
            Choice::Fixed => {
                let fixed = (self.subtask % partitions) as i32;
                messages
                    .iter_mut()
                    .filter(unset)
                    .for_each(|m| m.partition = Some(fixed));
            }
            Choice::RoundRobin => {
                for message in messages.iter_mut().filter(unset) {
                    message.partition = Some(self.next as i32);
                    self.next = (self.next + 1) % partitions;
                }
            }
            Choice::KeyHash => {
                for message in messages.iter_mut().filter(unset) {
                    let partition = match &message.key {
                        Some(key) => key_hash_partition(key.as_bytes(), partitions),
                        None => {
                            let next = self.next;
                            self.next = (self.next + 1) % partitions;
                            next
                        }
                    };
                    message.partition = Some(partition as i32);
                }
            }
            Choice::Wasm {
                udf,
                function,
                module,
                scratch,
                has_key,
            } => {
                scratch.clear();
                has_key.clear();
                for message in messages.iter().filter(|m| m.partition.is_none()) {
                    let key = message.key.as_deref().unwrap_or_default();
                    scratch.push_keyed(message.value, message.timestamp, key.as_bytes());
                    has_key.push(message.key.is_some());
                }
                if scratch.is_empty() {
                    return Ok(());
                }
                let chosen = udf.partition(scratch, has_key, partitions)?;
                for (message, value) in messages.iter_mut().filter(unset).zip(chosen) {
                    if value >= partitions {
                        return Err(PartitionError::OutOfRange {
                            function: function.clone(),
                            module: module.clone(),
                            value,
                            topic: self.topic.clone(),
                            partitions,
                        });
                    }
                    message.partition = Some(value as i32);
                }
            }
        }
        Ok(())
    }
}

/// The partition count of `topic`, from the broker's metadata.
pub(crate) fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: std::time::Duration,
) -> Result<u32, rdkafka::error::KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(text: &str) -> Result<Message<'_>, String> {
        parse_envelope(text.as_bytes()).map_err(|e| e.to_string())
    }

    fn plain(value: &'static str) -> Message<'static> {
        Message {
            key: None,
            value: value.as_bytes(),
            headers: Vec::new(),
            partition: None,
            timestamp: -1,
        }
    }

    #[test]
    fn a_full_envelope_is_read_in_place() {
        let text = r#" {"key":"k1", "value": {"n": [1, 2]} ,"headers":{"trace":"abc","flag":null,"trace":"x\"y"},"partition":2,"timestamp":1700000000000} "#;
        let message = envelope(text).expect("an envelope");
        assert_eq!(
            message,
            Message {
                key: Some("k1".into()),
                value: br#"{"n": [1, 2]}"#,
                headers: vec![
                    ("trace".into(), Some("abc".into())),
                    ("flag".into(), None),
                    ("trace".into(), Some("x\"y".into())),
                ],
                partition: Some(2),
                timestamp: 1_700_000_000_000,
            }
        );
        // Borrowed, except the string with an escape.
        assert!(matches!(message.key, Some(Cow::Borrowed(_))));
        assert!(matches!(message.headers[0].1, Some(Cow::Borrowed(_))));
        assert!(matches!(message.headers[2].1, Some(Cow::Owned(_))));
    }

    #[test]
    fn values_are_their_json_text_and_optional_fields_may_be_null_or_absent() {
        assert_eq!(envelope(r#"{"value":"hi"}"#), Ok(plain(r#""hi""#)));
        assert_eq!(envelope(r#"{"value":12.5e1}"#), Ok(plain("12.5e1")));
        assert_eq!(envelope(r#"{"value":null,"key":null}"#), Ok(plain("null")));
        assert_eq!(
            envelope(r#"{"key":null,"value":[],"headers":{},"partition":null,"timestamp":null}"#),
            Ok(plain("[]"))
        );
        // The source's envelope passes unchanged (its position is ignored).
        let source = r#"{"key":"k","value":1,"headers":{},"topic":"in","partition":0,"offset":41,"timestamp":7}"#;
        let message = envelope(source).expect("a source envelope");
        assert_eq!(
            (message.key.as_deref(), message.value, message.partition),
            (Some("k"), &b"1"[..], Some(0))
        );
        assert_eq!(message.timestamp, 7);
    }

    #[test]
    fn malformed_envelopes_say_what_is_wrong() {
        let cases = [
            ("hello", "expected a JSON object"),
            ("[1]", "expected a JSON object"),
            ("", "expected a JSON object"),
            (r#"{"key":"k"}"#, "missing field `value`"),
            (
                r#"{"value":1,"colour":"red"}"#,
                "unknown field `colour`, expected one of `key`, `value`, `headers`, `partition`, `timestamp`",
            ),
            (r#"{"value":1,"value":2}"#, "duplicate field `value`"),
            (
                r#"{"value":1,"key":7}"#,
                "`key`: invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"value":1,"headers":[]}"#,
                "`headers`: expected an object of strings or nulls",
            ),
            (
                r#"{"value":1,"headers":{"h":1}}"#,
                "`headers → h`: invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"value":1,"partition":"2"}"#,
                "`partition`: invalid type: string \"2\", expected i32",
            ),
            (
                r#"{"value":1,"partition":-1}"#,
                "`partition` must be 0 or more, found -1",
            ),
            (
                r#"{"value":1,"timestamp":-5}"#,
                "`timestamp` must be 0 or more, found -5",
            ),
            (
                r#"{"value":1,"partition":1.5}"#,
                "`partition`: invalid type: floating point `1.5`, expected i32",
            ),
            (r#"{"value":}"#, "`value`: expected value"),
            (r#"{"value":1"#, "expected `,` or `}` at byte 10"),
            (r#"{"value":1 "key":null}"#, "expected `,` or `}` at byte 11"),
            (r#"{"value" 1}"#, "expected `:` at byte 9"),
            (r#"{value:1}"#, "expected a field name at byte 1"),
            (r#"{"value":1} x"#, "expected the end of the record at byte 12"),
            (r#"{"value":[1,}"#, "`value`: expected value"),
        ];
        for (text, expected) in cases {
            assert_eq!(envelope(text), Err(expected.to_string()), "{text}");
        }
    }

    #[test]
    fn murmur2_matches_kafkas_published_values() {
        // Kafka's `UtilsTest.testMurmur2` and librdkafka's `rdmurmur2.c`.
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
            ("kafka", -798_503_068),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
        }
        // toPositive(-973932308) = 1173551340; % 3 = 0 (and so on).
        assert_eq!(key_hash_partition(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(
            key_hash_partition(b"foobar", 10),
            (-790_332_482_i32 & 0x7fff_ffff) as u32 % 10
        );
        assert_eq!(key_hash_partition(b"abc", 4), 479_470_107 % 4);
    }

    fn batch(records: &[&str]) -> RecordBatch {
        let mut batch = RecordBatch::default();
        for (i, record) in records.iter().enumerate() {
            batch.push(record.as_bytes(), 100 + i as i64);
        }
        batch
    }

    fn partitions_of(partitioner: Partitioner, format: SinkFormat, subtask: u32, records: &[&str]) -> Vec<Option<i32>> {
        let mut messages = Messages::new("out", "t", format, &partitioner, None, 3, subtask);
        let batch = batch(records);
        let mut rejected = Vec::new();
        let built = messages.build(&batch, &mut rejected).expect("messages");
        assert!(rejected.is_empty(), "{rejected:?}");
        built.iter().map(|m| m.partition).collect()
    }

    #[test]
    fn each_partitioner_chooses_as_documented() {
        let raw = ["a", "b", "c", "d", "e"];
        assert_eq!(
            partitions_of(Partitioner::Default, SinkFormat::Raw, 0, &raw),
            [None, None, None, None, None]
        );
        assert_eq!(
            partitions_of(Partitioner::RoundRobin, SinkFormat::Raw, 0, &raw),
            [Some(0), Some(1), Some(2), Some(0), Some(1)]
        );
        assert_eq!(
            partitions_of(Partitioner::RoundRobin, SinkFormat::Raw, 2, &raw),
            [Some(2), Some(0), Some(1), Some(2), Some(0)]
        );
        assert_eq!(
            partitions_of(Partitioner::Fixed, SinkFormat::Raw, 4, &raw),
            [Some(1); 5]
        );
        // Key hash: Kafka's rule for keys; round robin without one; an
        // explicit partition wins over every partitioner.
        let keyed = [
            r#"{"key":"21","value":1}"#,
            r#"{"key":"abc","value":2}"#,
            r#"{"value":3}"#,
            r#"{"key":"21","value":4,"partition":2}"#,
            r#"{"value":5}"#,
        ];
        assert_eq!(
            partitions_of(Partitioner::KeyHash, SinkFormat::Envelope, 0, &keyed),
            [Some(0), Some(479_470_107 % 3), Some(0), Some(2), Some(1)]
        );
        assert_eq!(
            partitions_of(Partitioner::Fixed, SinkFormat::Envelope, 1, &keyed),
            [Some(1), Some(1), Some(1), Some(2), Some(1)]
        );
    }

    #[test]
    fn records_that_are_not_envelopes_become_dead_letters_and_the_rest_go_on() {
        let mut messages = Messages::new("out", "t", SinkFormat::Envelope, &Partitioner::Default, None, 3, 0);
        let batch = batch(&[
            r#"{"value":1}"#,
            "oops",
            r#"{"value":2,"partition":3}"#,
            r#"{"value":3}"#,
        ]);
        let mut rejected = Vec::new();
        let built = messages.build(&batch, &mut rejected).expect("messages");
        assert_eq!(
            built.iter().map(|m| (m.value, m.timestamp)).collect::<Vec<_>>(),
            [(&b"1"[..], 100), (&b"3"[..], 103)]
        );
        assert_eq!(
            rejected,
            [
                Rejected {
                    payload: b"oops".to_vec(),
                    timestamp: 101,
                    reason: "sink `out`: not a Kafka envelope: expected a JSON object".into(),
                },
                Rejected {
                    payload: br#"{"value":2,"partition":3}"#.to_vec(),
                    timestamp: 102,
                    reason: "sink `out`: partition 3 is out of range: topic `t` has 3 partitions".into(),
                },
            ]
        );
    }

    #[test]
    fn a_message_becomes_the_librdkafka_record_it_describes() {
        let message = envelope(r#"{"key":"k","value":"v","headers":{"h":"1","n":null},"partition":1,"timestamp":9}"#)
            .expect("an envelope");
        let record = message.record("t");
        assert_eq!(record.topic, "t");
        assert_eq!(record.key, Some(&b"k"[..]));
        assert_eq!(record.payload, Some(&br#""v""#[..]));
        assert_eq!(record.partition, Some(1));
        assert_eq!(record.timestamp, Some(9));
        let headers = record.headers.as_ref().expect("headers");
        use rdkafka::message::Headers as _;
        let read: Vec<(&str, Option<&[u8]>)> = headers.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(read, [("h", Some(&b"1"[..])), ("n", None)]);
        let raw = plain("x");
        let record = raw.record("t");
        assert_eq!((record.key, record.partition, record.timestamp), (None, None, None));
        assert!(record.headers.is_none());
    }
}
