//! Functions for the tests of two-input operators (joins, co-process).
//!
//! Records are `key timestamp text` (as for `stamp` and `first_word`).

use std::io::Write as _;

use weir_sdk::{
    Context, Emitter, Error, Filter, JoinFunction, KeyedCoProcessFunction, MapState, OpenContext, Record, Result,
    TaskInfo, Timer,
};

/// The words of a `key timestamp text` record.
fn words<'a>(record: &Record<'a>) -> Result<(&'a str, i64, &'a str)> {
    let text = record.payload_str()?;
    let mut parts = text.splitn(3, ' ');
    match (parts.next(), parts.next().and_then(|t| t.parse().ok()), parts.next()) {
        (Some(key), Some(timestamp), Some(rest)) => Ok((key, timestamp, rest)),
        _ => Err(Error::new(format!("expected `key timestamp text`, found \"{text}\""))),
    }
}

/// Keeps the records whose text (third word) starts with the parameter
/// `prefix`: splits one stream into the two inputs of a join.
pub struct Side {
    prefix: String,
}

impl Filter for Side {
    fn open(task: &TaskInfo) -> Result<Self> {
        let prefix = task
            .param("prefix")
            .ok_or_else(|| Error::new("side needs the parameter `prefix`"))?;
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    fn filter(&mut self, record: &Record<'_>) -> Result<bool> {
        Ok(words(record)?.2.starts_with(&self.prefix))
    }
}

/// Joins two records into `key,left_ts,left_text,right_ts,right_text,ts`,
/// where `ts` is the result's timestamp as the host set it.
pub struct Pair;

impl JoinFunction for Pair {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn join(&mut self, key: &[u8], left: &Record<'_>, right: &Record<'_>, out: &mut Emitter<'_>) -> Result<()> {
        let (_, left_ts, left_text) = words(left)?;
        let (_, right_ts, right_text) = words(right)?;
        let mut line = Vec::new();
        line.extend_from_slice(key);
        write!(
            line,
            ",{left_ts},{left_text},{right_ts},{right_text},{}",
            out.timestamp()
        )?;
        out.emit(&line);
        Ok(())
    }
}

/// Fraud-rule style enrichment in event time. The first input carries
/// values (`key ts d<value>`), the second thresholds (`key ts t<threshold>`).
/// When the watermark passes a value's timestamp, the value is compared with
/// the key's threshold in force at that time (the latest one at or before
/// it; the larger of two at the same time): above it, the function emits
/// `key,ts,value,threshold`; with no threshold yet, it sends `key,ts,value`
/// to the side output `no-rule`.
pub struct ThresholdAlerts {
    pending: MapState<i64, Vec<i64>>,
    thresholds: MapState<i64, i64>,
}

fn number(text: &str, prefix: char) -> Result<i64> {
    text.strip_prefix(prefix)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::new(format!("expected `{prefix}<integer>`, found \"{text}\"")))
}

impl KeyedCoProcessFunction for ThresholdAlerts {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        Ok(Self {
            pending: ctx.map_state("pending"),
            thresholds: ctx.map_state("thresholds"),
        })
    }

    fn process_element1(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let (_, timestamp, text) = words(record)?;
        let value = number(text, 'd')?;
        let mut values = self.pending.get(&timestamp)?.unwrap_or_default();
        values.push(value);
        self.pending.put(&timestamp, &values)?;
        ctx.register_event_time_timer(timestamp);
        Ok(())
    }

    fn process_element2(&mut self, record: &Record<'_>, _ctx: &mut Context<'_>) -> Result<()> {
        let (_, timestamp, text) = words(record)?;
        let threshold = number(text, 't')?;
        let current = self.thresholds.get(&timestamp)?;
        self.thresholds
            .put(&timestamp, &current.map_or(threshold, |c| c.max(threshold)))
    }

    fn on_timer(&mut self, timer: &Timer<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let at = timer.timestamp();
        let mut values = self.pending.get(&at)?.unwrap_or_default();
        self.pending.remove(&at)?;
        values.sort_unstable();
        let in_force = self
            .thresholds
            .entries()?
            .into_iter()
            .filter(|(since, _)| *since <= at)
            .max_by_key(|(since, _)| *since);
        let key = String::from_utf8_lossy(ctx.key()).into_owned();
        match in_force {
            Some((since, threshold)) => {
                // Older thresholds can no longer be in force: later values are later than `at`.
                for (old, _) in self.thresholds.entries()? {
                    if old < since {
                        self.thresholds.remove(&old)?;
                    }
                }
                for value in values.into_iter().filter(|v| *v > threshold) {
                    ctx.emit(format!("{key},{at},{value},{threshold}").as_bytes());
                }
            }
            None => {
                for value in values {
                    ctx.side_output("no-rule", format!("{key},{at},{value}").as_bytes());
                }
            }
        }
        Ok(())
    }
}
