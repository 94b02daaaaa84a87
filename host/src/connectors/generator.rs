//! The built-in traffic generator: road-side cameras reporting passings.
//!
//! Lines are `ts_ms,camera_id,plate,speed_kmh`, the format of the project's
//! traffic workload. Event `i` is a pure function of the seed and `i` (a
//! counter-based random generator), so the stream is deterministic whatever
//! the parallelism: subtask `s` of `p` produces events `s, s + p, s + 2p, ...`
//! and a test can regenerate any event on its own.
//!
//! Event time advances at `rate` events per event-second; each event is
//! delayed up to 4 s; after the first 11 minutes a `dirty` share of events
//! carries a timestamp 5 to 10 minutes old.

use super::{ConnectorError, Source, SourceStatus};
use crate::record::batch::RecordBatch;

/// 2026-01-01T00:00:00Z.
pub(crate) const DEFAULT_START_MS: i64 = 1_767_225_600_000;

/// Settings of the generator.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GeneratorConfig {
    /// Number of events; endless when `None`.
    pub events: Option<u64>,
    /// Seed of the random generator.
    pub seed: u64,
    /// Events per event-time second.
    pub rate: u64,
    /// Number of cameras (`CAM0000..`).
    pub cameras: u32,
    /// Number of plates (`P0000000..`).
    pub plates: u32,
    /// Share of dirty, late events after the first 11 minutes.
    pub dirty: f64,
    /// Event time of the first event.
    pub start_ms: i64,
    /// Wall-clock cap on events a second, per subtask (none: as fast as
    /// possible). It keeps a job running long enough to operate on it.
    pub events_per_second: Option<u64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            events: None,
            seed: 42,
            rate: 5_000,
            cameras: 2_000,
            plates: 500_000,
            dirty: 0.001,
            start_ms: DEFAULT_START_MS,
            events_per_second: None,
        }
    }
}

/// One generated passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Passing {
    /// Event time, ms.
    pub ts_ms: i64,
    /// Camera number.
    pub camera: u32,
    /// Plate number.
    pub plate: u32,
    /// Speed in km/h.
    pub speed: u32,
}

impl GeneratorConfig {
    /// Event number `index`.
    pub(crate) fn passing(&self, index: u64) -> Passing {
        let mut rng = SplitMix64::new(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let offset = (index.saturating_mul(1000) / self.rate.max(1)) as i64;
        let base = self.start_ms + offset;
        let mut ts_ms = base - rng.below(4_000) as i64;
        let dirty_draw = rng.unit();
        if offset > 11 * 60_000 && dirty_draw < self.dirty {
            ts_ms = base - (300_000 + rng.below(300_000)) as i64;
        }
        let camera = rng.below(u64::from(self.cameras)) as u32;
        let u = rng.unit();
        let plate = ((f64::from(self.plates) * u * u * u) as u32).min(self.plates.saturating_sub(1));
        let speed = 20 + rng.below(120) as u32;
        Passing {
            ts_ms,
            camera,
            plate,
            speed,
        }
    }
}

impl Passing {
    /// Appends the CSV line (without newline) to `out`.
    pub(crate) fn write_csv(&self, out: &mut Vec<u8>) {
        push_int(out, self.ts_ms);
        out.extend_from_slice(b",CAM");
        push_padded(out, u64::from(self.camera), 4);
        out.extend_from_slice(b",P");
        push_padded(out, u64::from(self.plate), 7);
        out.push(b',');
        push_int(out, i64::from(self.speed));
    }
}

/// A source of generated passings for one subtask.
///
/// Event `i` is the same passing at any parallelism. The events are cut
/// into splits, arithmetic progressions `next, next + stride, …`: subtask
/// `s` of `p` starts with the one split `(s, p)`. A subtask may hold several
/// splits after a rescale (see [`redistribute`]); it emits the event with
/// the smallest index among them first.
#[derive(Debug)]
pub(crate) struct GeneratorSource {
    config: GeneratorConfig,
    /// The splits: (next event, stride).
    splits: Vec<(u64, u64)>,
    /// When the first batch was asked for, and events emitted since (throttling).
    started: Option<(std::time::Instant, u64)>,
}

impl GeneratorSource {
    /// The generator for subtask `subtask` of `parallelism`.
    pub(crate) fn new(config: GeneratorConfig, subtask: u32, parallelism: u32) -> Self {
        Self {
            config,
            splits: vec![(u64::from(subtask), u64::from(parallelism.max(1)))],
            started: None,
        }
    }

    /// The generator continuing `splits` (as [`Source::splits`] encodes them).
    pub(crate) fn with_splits(config: GeneratorConfig, splits: &[Vec<u8>]) -> Result<Self, ConnectorError> {
        let splits = splits
            .iter()
            .map(|bytes| decode_split(bytes))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ConnectorError::Io {
                what: "cannot restore",
                path: "generator".into(),
                source: std::io::Error::other("a checkpointed generator split is not 16 bytes"),
            })?;
        Ok(Self {
            config,
            splits,
            started: None,
        })
    }

    /// The index of the split whose next event comes first, if any is left.
    fn current(&self) -> Option<usize> {
        self.splits
            .iter()
            .enumerate()
            .filter(|(_, (next, _))| self.config.events.is_none_or(|events| *next < events))
            .min_by_key(|(_, (next, _))| *next)
            .map(|(i, _)| i)
    }
}

fn decode_split(bytes: &[u8]) -> Option<(u64, u64)> {
    let next = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let stride = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (bytes.len() == 16 && stride > 0).then_some((next, stride))
}

/// Subtask `subtask` of `parallelism`'s share of the splits of the old
/// subtasks (`old`: each old subtask's index and splits; they ran at
/// `old_parallelism`): its own splits at the same parallelism, otherwise
/// every `parallelism`-th split of all of them in old-subtask order.
pub(crate) fn redistribute(
    old: &[(u32, &[Vec<u8>])],
    old_parallelism: u32,
    subtask: u32,
    parallelism: u32,
) -> Vec<Vec<u8>> {
    let mut old: Vec<&(u32, &[Vec<u8>])> = old.iter().collect();
    old.sort_by_key(|(s, _)| *s);
    if old_parallelism == parallelism {
        return old
            .iter()
            .filter(|(s, _)| *s == subtask)
            .flat_map(|(_, splits)| splits.iter().cloned())
            .collect();
    }
    old.iter()
        .flat_map(|(_, splits)| splits.iter())
        .enumerate()
        .filter(|(i, _)| *i as u64 % u64::from(parallelism.max(1)) == u64::from(subtask))
        .map(|(_, split)| split.clone())
        .collect()
}

impl Source for GeneratorSource {
    fn next_batch(&mut self, batch: &mut RecordBatch, max: usize) -> Result<SourceStatus, ConnectorError> {
        let max = self.throttle(max);
        let mut line = Vec::with_capacity(40);
        for _ in 0..max {
            let Some(current) = self.current() else {
                return Ok(SourceStatus::End);
            };
            let (next, stride) = &mut self.splits[current];
            let passing = self.config.passing(*next);
            line.clear();
            passing.write_csv(&mut line);
            batch.push(&line, passing.ts_ms);
            *next += *stride;
            if let Some((_, emitted)) = &mut self.started {
                *emitted += 1;
            }
        }
        Ok(if self.current().is_none() {
            SourceStatus::End
        } else {
            SourceStatus::More
        })
    }

    /// The index of the next event of this subtask's first split.
    fn position(&self) -> u64 {
        self.splits.first().map_or(0, |(next, _)| *next)
    }

    fn seek(&mut self, position: u64) -> Result<(), ConnectorError> {
        if let Some((next, _)) = self.splits.first_mut() {
            *next = position;
        }
        Ok(())
    }

    /// Each split as `next` and `stride`, little-endian `u64`s.
    fn splits(&self) -> Vec<Vec<u8>> {
        self.splits
            .iter()
            .map(|(next, stride)| [next.to_le_bytes(), stride.to_le_bytes()].concat())
            .collect()
    }
}

impl GeneratorSource {
    /// How many events the throttle lets out now (at most `max`); waits a
    /// little when it lets none out, so that the source does not spin.
    fn throttle(&mut self, max: usize) -> usize {
        let Some(per_second) = self.config.events_per_second else {
            return max;
        };
        let (started, emitted) = *self.started.get_or_insert((std::time::Instant::now(), 0));
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let allowed = (elapsed_ms.saturating_mul(per_second) / 1000).saturating_sub(emitted);
        if allowed == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        max.min(allowed as usize)
    }
}

/// SplitMix64: a tiny, well-mixed 64-bit generator.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0), by multiply-shift.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound.max(1))) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn push_int(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_padded(out, value.unsigned_abs(), 1);
}

fn push_padded(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(n)));
    out.extend(digits[..n].iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_traffic_format() {
        let config = GeneratorConfig::default();
        let mut line = Vec::new();
        config.passing(0).write_csv(&mut line);
        let text = String::from_utf8(line).unwrap();
        let fields: Vec<&str> = text.split(',').collect();
        assert_eq!(fields.len(), 4);
        let ts: i64 = fields[0].parse().unwrap();
        assert!((DEFAULT_START_MS - 4_000..=DEFAULT_START_MS).contains(&ts));
        assert!(fields[1].starts_with("CAM") && fields[1].len() == 7);
        assert!(fields[2].starts_with('P') && fields[2].len() == 8);
        let speed: u32 = fields[3].parse().unwrap();
        assert!((20..140).contains(&speed));
    }

    #[test]
    fn subtasks_partition_the_same_stream() {
        let config = GeneratorConfig {
            events: Some(1_000),
            ..GeneratorConfig::default()
        };
        let collect = |parallelism: u32| {
            let mut all = Vec::new();
            for subtask in 0..parallelism {
                let mut source = GeneratorSource::new(config.clone(), subtask, parallelism);
                let mut batch = RecordBatch::default();
                while source.next_batch(&mut batch, 64).unwrap() == SourceStatus::More {}
                all.extend(batch.iter().map(|r| r.payload.to_vec()));
            }
            all.sort();
            all
        };
        let single = collect(1);
        assert_eq!(single.len(), 1_000);
        assert_eq!(single, collect(3));
    }

    #[test]
    fn splits_redistributed_at_another_parallelism_emit_the_rest_once() {
        let config = GeneratorConfig {
            events: Some(1_000),
            ..GeneratorConfig::default()
        };
        let drain = |source: &mut GeneratorSource, max: usize, into: &mut Vec<Vec<u8>>| {
            let mut batch = RecordBatch::default();
            source.next_batch(&mut batch, max).unwrap();
            into.extend(batch.iter().map(|r| r.payload.to_vec()));
        };
        // Two subtasks, unevenly far, then three, then one.
        let mut seen = Vec::new();
        let mut old = Vec::new();
        for (subtask, emitted) in [(0u32, 100), (1, 37)] {
            let mut source = GeneratorSource::new(config.clone(), subtask, 2);
            drain(&mut source, emitted, &mut seen);
            old.push((subtask, source.splits()));
        }
        let old_refs: Vec<(u32, &[Vec<u8>])> = old.iter().map(|(s, v)| (*s, v.as_slice())).collect();
        let mut middle = Vec::new();
        for subtask in 0..3 {
            let splits = redistribute(&old_refs, 2, subtask, 3);
            let mut source = GeneratorSource::with_splits(config.clone(), &splits).unwrap();
            drain(&mut source, 50, &mut seen);
            middle.push((subtask, source.splits()));
        }
        let middle_refs: Vec<(u32, &[Vec<u8>])> = middle.iter().map(|(s, v)| (*s, v.as_slice())).collect();
        let mut last = GeneratorSource::with_splits(config.clone(), &redistribute(&middle_refs, 3, 0, 1)).unwrap();
        let mut batch = RecordBatch::default();
        while last.next_batch(&mut batch, 64).unwrap() == SourceStatus::More {}
        seen.extend(batch.iter().map(|r| r.payload.to_vec()));
        seen.sort();
        let mut all = Vec::new();
        let mut single = GeneratorSource::new(config.clone(), 0, 1);
        let mut batch = RecordBatch::default();
        while single.next_batch(&mut batch, 64).unwrap() == SourceStatus::More {}
        all.extend(batch.iter().map(|r| r.payload.to_vec()));
        all.sort();
        assert_eq!(seen, all);
    }

    #[test]
    fn dirty_events_appear_only_after_eleven_minutes() {
        let config = GeneratorConfig {
            dirty: 0.5,
            ..GeneratorConfig::default()
        };
        let early = config.passing(100);
        assert!(early.ts_ms > DEFAULT_START_MS - 4_000);
        let late_index = 12 * 60 * 5_000;
        let late: Vec<_> = (late_index..late_index + 100).map(|i| config.passing(i)).collect();
        let base = DEFAULT_START_MS + 12 * 60_000;
        assert!(late.iter().any(|p| p.ts_ms < base - 290_000));
    }

    #[test]
    fn integers_are_padded() {
        let mut out = Vec::new();
        push_padded(&mut out, 42, 4);
        out.push(b' ');
        push_int(&mut out, -7);
        assert_eq!(out, b"0042 -7");
    }
}
