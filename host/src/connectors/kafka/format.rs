//! How a Kafka message becomes records ([`Format`]), and what happens to
//! a message that cannot: it becomes a [`Rejected`] record for the
//! dead-letter output, its reason naming the topic, partition and offset,
//! instead of failing the job or vanishing.
//!
//! With `envelope = true` (JSON only) the record is one JSON object that
//! carries what a function cannot otherwise see of the message:
//!
//! ```json
//! {"key":"k1","value":{"n":1},"headers":{"trace":"abc"},"topic":"orders","partition":0,"offset":41,"timestamp":1700000000000}
//! ```
//!
//! `key` is a JSON string, or `null` for a message without one; `headers`
//! maps each header's name to its value as a string (`null` without a
//! value), in the message's order (a name sent twice appears twice);
//! `value` is the message's JSON value as it was sent (white space around
//! it removed); `timestamp` is the message's timestamp in ms (its event
//! time). A key or header value that is not UTF-8 rejects the message.

use std::io::Write as _;

use serde::de::IgnoredAny;

use super::config::Format;
use crate::connectors::Rejected;
use crate::record::batch::RecordBatch;

/// Where a message comes from, for dead letters and envelopes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position<'a> {
    /// The topic.
    pub(crate) topic: &'a str,
    /// The partition.
    pub(crate) partition: i32,
    /// The message's offset.
    pub(crate) offset: i64,
}

impl std::fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {}, partition {}, offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// What an envelope carries besides the value and the position.
#[derive(Debug, Default)]
pub(crate) struct Meta<'a> {
    /// The message's key.
    pub(crate) key: Option<&'a [u8]>,
    /// The message's headers, in order.
    pub(crate) headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// Turns messages into records of one [`Format`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decoder {
    /// The format.
    pub(crate) format: Format,
    /// JSON records wrapped in an envelope (see the module docs).
    pub(crate) envelope: bool,
}

impl Decoder {
    /// Appends the records of one message to `batch`, or what cannot be
    /// records to `rejected`. `meta` is read only with an envelope.
    pub(crate) fn push<'m>(
        &self,
        batch: &mut RecordBatch,
        rejected: &mut Vec<Rejected>,
        value: &[u8],
        timestamp: i64,
        position: Position<'_>,
        meta: impl FnOnce() -> Meta<'m>,
    ) {
        let reject = |rejected: &mut Vec<Rejected>, payload: &[u8], reason: String| {
            rejected.push(Rejected {
                payload: payload.to_vec(),
                timestamp,
                reason: format!("{reason} ({position})"),
            });
        };
        match self.format {
            Format::Raw => batch.push(value, timestamp),
            Format::Json => {
                let value = value.trim_ascii();
                if let Err(error) = serde_json::from_slice::<IgnoredAny>(value) {
                    return reject(rejected, value, format!("not a JSON message: {error}"));
                }
                if !self.envelope {
                    return batch.push(value, timestamp);
                }
                match envelope(value, timestamp, position, &meta()) {
                    Ok(record) => batch.push(&record, timestamp),
                    Err(reason) => reject(rejected, value, reason),
                }
            }
            Format::Lines => {
                let value = value.strip_suffix(b"\n").unwrap_or(value);
                if value.is_empty() {
                    return;
                }
                let checked = std::str::from_utf8(value).is_ok();
                for (index, line) in value.split(|b| *b == b'\n').enumerate() {
                    let check = if checked {
                        Ok(())
                    } else {
                        std::str::from_utf8(line).map(|_| ())
                    };
                    match check {
                        Ok(()) => batch.push(line, timestamp),
                        Err(error) => reject(rejected, line, format!("line {} is not UTF-8: {error}", index + 1)),
                    }
                }
            }
        }
    }
}

/// The envelope of a message whose JSON value is `value` (already
/// validated), or why the message cannot have one.
fn envelope(value: &[u8], timestamp: i64, position: Position<'_>, meta: &Meta<'_>) -> Result<Vec<u8>, String> {
    let text = |bytes: &[u8], what: &dyn Fn() -> String| {
        std::str::from_utf8(bytes)
            .map(|t| t.to_owned())
            .map_err(|error| format!("{} is not UTF-8: {error}", what()))
    };
    let mut out = Vec::with_capacity(value.len() + 128);
    out.extend_from_slice(b"{\"key\":");
    match meta.key {
        Some(key) => json_string(&mut out, &text(key, &|| "the key".into())?),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(value);
    out.extend_from_slice(b",\"headers\":{");
    for (index, (name, header)) in meta.headers.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        json_string(&mut out, name);
        out.push(b':');
        match header {
            Some(bytes) => json_string(&mut out, &text(bytes, &|| format!("header `{name}`"))?),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"},\"topic\":");
    json_string(&mut out, position.topic);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        ",\"partition\":{},\"offset\":{},\"timestamp\":{timestamp}}}",
        position.partition, position.offset
    );
    Ok(out)
}

/// Appends `text` as a JSON string.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Position<'static> = Position {
        topic: "t",
        partition: 2,
        offset: 9,
    };

    fn decode(format: Format, envelope: bool, value: &[u8], meta: Meta<'_>) -> (Vec<String>, Vec<(String, String)>) {
        let mut batch = RecordBatch::default();
        let mut rejected = Vec::new();
        Decoder { format, envelope }.push(&mut batch, &mut rejected, value, 7, AT, || meta);
        assert!(batch.iter().all(|r| r.timestamp == 7));
        (
            batch
                .iter()
                .map(|r| String::from_utf8_lossy(r.payload).into_owned())
                .collect(),
            rejected
                .into_iter()
                .map(|r| (String::from_utf8_lossy(&r.payload).into_owned(), r.reason))
                .collect(),
        )
    }

    fn records(format: Format, value: &[u8]) -> Vec<String> {
        let (records, rejected) = decode(format, false, value, Meta::default());
        assert!(rejected.is_empty(), "{rejected:?}");
        records
    }

    #[test]
    fn formats_turn_a_message_into_records() {
        assert_eq!(records(Format::Raw, b" a\nb\n"), [" a\nb\n"]);
        assert_eq!(records(Format::Lines, b"a\n\nb\n"), ["a", "", "b"]);
        assert_eq!(records(Format::Lines, b"one"), ["one"]);
        assert!(records(Format::Lines, b"").is_empty());
        assert_eq!(records(Format::Json, b" {\"a\": 1}\n"), ["{\"a\": 1}"]);
    }

    #[test]
    fn what_is_not_json_or_not_utf8_is_rejected_with_its_position() {
        let (records, rejected) = decode(Format::Json, false, b"{\"a\": 1} x", Meta::default());
        assert!(records.is_empty());
        assert_eq!(
            rejected,
            [(
                "{\"a\": 1} x".to_string(),
                "not a JSON message: trailing characters at line 1 column 10 (topic t, partition 2, offset 9)"
                    .to_string()
            )]
        );
        let (records, rejected) = decode(Format::Lines, false, b"ok\n\xff\xfe\nfine\n", Meta::default());
        assert_eq!(records, ["ok", "fine"]);
        assert_eq!(
            rejected[0].1,
            "line 2 is not UTF-8: invalid utf-8 sequence of 1 bytes from index 0 (topic t, partition 2, offset 9)"
        );
    }

    #[test]
    fn an_envelope_carries_key_headers_and_position() {
        let meta = Meta {
            key: Some(b"k\"1"),
            headers: vec![("trace", Some(b"abc")), ("empty", None)],
        };
        let (records, rejected) = decode(Format::Json, true, b" [1, 2]\n", meta);
        assert!(rejected.is_empty());
        assert_eq!(
            records,
            [
                r#"{"key":"k\"1","value":[1, 2],"headers":{"trace":"abc","empty":null},"topic":"t","partition":2,"offset":9,"timestamp":7}"#
            ]
        );
        let parsed: serde_json::Value = serde_json::from_str(&records[0]).expect("valid JSON");
        assert_eq!(parsed["value"][1], 2);
        let (records, _) = decode(Format::Json, true, b"1", Meta::default());
        assert_eq!(
            records,
            [r#"{"key":null,"value":1,"headers":{},"topic":"t","partition":2,"offset":9,"timestamp":7}"#]
        );
        let bad_key = Meta {
            key: Some(b"\xff"),
            headers: Vec::new(),
        };
        let (records, rejected) = decode(Format::Json, true, b"1", bad_key);
        assert!(records.is_empty());
        assert_eq!(
            rejected[0].1,
            "the key is not UTF-8: invalid utf-8 sequence of 1 bytes from index 0 (topic t, partition 2, offset 9)"
        );
    }
}
