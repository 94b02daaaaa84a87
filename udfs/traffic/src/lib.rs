//! Traffic cameras: parse passings, find cloned plates (the same plate seen
//! in two cities less than a minute apart) and silent cameras (no passing
//! for 30 minutes of event time), and count the flow per camera and window
//! (`flow`), and enrich passings with their camera's road from a lookup the
//! host runs (`enrich`, an async map).
//!
//! Input lines are CSV `ts_ms,camera_id,plate,speed_kmh`, e.g.
//! `1767225600123,CAM0042,P0012345,87`.

mod enrich;

use std::fmt;
use std::io::Write as _;

use weir_sdk::serde::{Deserialize, Serialize};
use weir_sdk::{
    Context, Error, KeySelector, KeyWriter, KeyedProcessFunction, Map, OpenContext, Record, RecordWriter, Result,
    TaskInfo, Timer, ValueState, Window, WindowAggregate,
};

/// Two passings of a plate in different cities closer than this (ms) mean
/// the plate is cloned.
const CLONE_WINDOW_MS: u64 = 60_000;

/// A camera that sees no passing for this long (ms) is silent.
const SILENCE_MS: i64 = 30 * 60_000;

/// A car passing a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "weir_sdk::serde")]
pub struct Passing {
    /// When, in ms since the Unix epoch.
    pub ts_ms: i64,
    /// The camera's number (`CAM0042` is 42).
    pub camera: u32,
    /// The plate's number (`P0012345` is 12345).
    pub plate: u32,
    /// The speed, in km/h.
    pub speed: u32,
}

impl Passing {
    /// Parses a CSV line `ts_ms,camera_id,plate,speed_kmh` (a trailing `\r`
    /// is ignored).
    pub fn parse(line: &[u8]) -> Result<Self> {
        if let Some(passing) = Self::parse_fixed(line).or_else(|| Self::parse_plain(line)) {
            return Ok(passing);
        }
        Self::parse_explained(line)
    }

    /// The layout the workload's generator writes, field by field at fixed
    /// positions (`1767225600123,CAM0042,P0012345,87`): straight-line code,
    /// no search for commas. `None` for any other layout.
    fn parse_fixed(line: &[u8]) -> Option<Self> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let head: &[u8; 31] = line.get(..31)?.try_into().ok()?;
        if head[13] != b',' || head[14..17] != *b"CAM" || head[21] != b',' || head[22] != b'P' || head[30] != b',' {
            return None;
        }
        let speed = &line[31..];
        if speed.is_empty() || speed.len() > 3 {
            return None;
        }
        // Eight digits at a time (SWAR): the timestamp's first eight, then
        // its last five (the eight ending there, the three before blanked to
        // `0`); the plate's seven (its `P` blanked); the camera's four (`,CAM` blanked).
        let word = |at: usize| u64::from_le_bytes(*head[at..at + 8].first_chunk::<8>().unwrap_or(&[0; 8]));
        const ZEROS: u64 = 0x3030_3030_3030_3030;
        let ts_high = eight_digits(word(0))?;
        let ts_low = eight_digits((word(5) & !0xff_ffff) | (ZEROS & 0xff_ffff))?;
        let plate = eight_digits((word(22) & !0xff) | (ZEROS & 0xff))?;
        let camera = eight_digits((word(13) & !0xffff_ffff) | (ZEROS & 0xffff_ffff))?;
        Some(Self {
            ts_ms: i64::try_from(ts_high * 100_000 + ts_low).ok()?,
            camera: u32::try_from(camera).ok()?,
            plate: u32::try_from(plate).ok()?,
            speed: u32::try_from(fixed_digits(speed)?).ok()?,
        })
    }

    /// The common case, byte by byte: plain digits, no signs. `None` for
    /// anything else, which [`Passing::parse_explained`] then parses or
    /// explains (so both agree on every line they accept).
    fn parse_plain(line: &[u8]) -> Option<Self> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (ts_ms, rest) = leading_number(line, i64::MAX.unsigned_abs())?;
        let (camera, rest) = leading_number(rest.strip_prefix(b",CAM")?, u64::from(u32::MAX))?;
        let (plate, rest) = leading_number(rest.strip_prefix(b",P")?, u64::from(u32::MAX))?;
        let (speed, rest) = leading_number(rest.strip_prefix(b",")?, u64::from(u32::MAX))?;
        if !rest.is_empty() {
            return None;
        }
        Some(Self {
            ts_ms: i64::try_from(ts_ms).ok()?,
            camera: u32::try_from(camera).ok()?,
            plate: u32::try_from(plate).ok()?,
            speed: u32::try_from(speed).ok()?,
        })
    }

    /// Parses with `str` tools and explains what is wrong with a bad line.
    fn parse_explained(line: &[u8]) -> Result<Self> {
        let line = std::str::from_utf8(line).map_err(|_| Error::new("line is not valid UTF-8"))?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = line.split(',');
        let (Some(ts_ms), Some(camera), Some(plate), Some(speed), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(Error::new(format!(
                "expected 4 fields (ts_ms,camera_id,plate,speed_kmh), found {}",
                line.split(',').count()
            )));
        };
        Ok(Self {
            ts_ms: ts_ms
                .parse()
                .map_err(|_| Error::new(format!("ts_ms: not an integer: \"{ts_ms}\"")))?,
            camera: prefixed_number(camera, "CAM").ok_or_else(|| {
                Error::new(format!(
                    "camera_id: expected CAM followed by digits, found \"{camera}\""
                ))
            })?,
            plate: prefixed_number(plate, "P")
                .ok_or_else(|| Error::new(format!("plate: expected P followed by digits, found \"{plate}\"")))?,
            speed: speed
                .parse()
                .map_err(|_| Error::new(format!("speed_kmh: not an integer: \"{speed}\"")))?,
        })
    }

    /// The record encoding of a passing: the four fields little-endian, in
    /// order. A fixed layout, because every operator of the traffic jobs
    /// decodes every passing (postcard's varints cost several times more in
    /// Wasm).
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        bytes[..8].copy_from_slice(&self.ts_ms.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.camera.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.plate.to_le_bytes());
        bytes[16..].copy_from_slice(&self.speed.to_le_bytes());
        bytes
    }

    /// Length of [`Passing::encode`].
    pub const ENCODED_LEN: usize = 20;

    /// Decodes [`Passing::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let Ok(bytes) = <&[u8; Self::ENCODED_LEN]>::try_from(bytes) else {
            return Err(Error::new(format!(
                "a passing is {} bytes (the output of `parse`), found {}",
                Self::ENCODED_LEN,
                bytes.len()
            )));
        };
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[..8]);
        Ok(Self {
            ts_ms: i64::from_le_bytes(ts),
            camera: u32_at(8),
            plate: u32_at(12),
            speed: u32_at(16),
        })
    }

    /// The camera's id, e.g. `CAM0042`.
    pub fn camera_id(&self) -> CameraId {
        CameraId(self.camera)
    }

    /// The plate's id, e.g. `P0012345`.
    pub fn plate_id(&self) -> PlateId {
        PlateId(self.plate)
    }

    /// The city of the camera: cameras are numbered by hundreds per city.
    pub fn city(&self) -> u32 {
        self.camera / 100
    }
}

/// The number eight ASCII digits spell (`word`, little-endian: the first
/// digit in the lowest byte), or `None` if any byte is not a digit: a few
/// 64-bit operations instead of eight steps.
#[inline(always)]
fn eight_digits(word: u64) -> Option<u64> {
    let values = word.wrapping_sub(0x3030_3030_3030_3030);
    // A byte below `0` borrows into its high bit; one above `9` carries into
    // it once 0x76 is added.
    if (values | values.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    let pairs = (values.wrapping_mul(10) + (values >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    Some((quads.wrapping_mul(10_000) + (quads >> 32)) & 0xffff_ffff)
}

/// `digits` (at most 19, all ASCII digits) as a number.
#[inline(always)]
fn fixed_digits(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut valid = true;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        valid &= digit <= 9;
        value = value * 10 + u64::from(digit);
    }
    valid.then_some(value)
}

/// The run of ASCII digits at the start of `bytes` (at least one, at most
/// `max`) as a number, and the bytes after it.
fn leading_number(bytes: &[u8], max: u64) -> Option<(u64, &[u8])> {
    // One pass. 19 digits always fit in a u64, so plain arithmetic cannot
    // overflow (and `checked_mul` would cost a 128-bit multiply in Wasm).
    let mut value = 0u64;
    let mut digits = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        digits += 1;
        if digits > 19 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    (digits > 0 && value <= max).then(|| (value, &bytes[digits..]))
}

/// Writes `prefix` and `number` padded with zeros to `width` digits, as
/// `format!("{prefix}{number:0width$}")` does, without the formatting
/// machinery (this runs once per record in key selectors).
fn write_padded(out: &mut impl std::io::Write, prefix: &[u8], number: u32, width: usize) -> std::io::Result<()> {
    let mut digits = [b'0'; 10];
    let mut n = number;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.write_all(prefix)?;
    out.write_all(&digits[start..])
}

/// `prefix` followed by ASCII digits, as a number.
fn prefixed_number(field: &str, prefix: &str) -> Option<u32> {
    let digits = field.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A camera id, displayed as `CAM0042`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CameraId(pub u32);

impl fmt::Display for CameraId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAM{:04}", self.0)
    }
}

/// A plate id, displayed as `P0012345`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlateId(pub u32);

impl fmt::Display for PlateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{:07}", self.0)
    }
}

/// Parses CSV lines into encoded [`Passing`]s ([`Passing::encode`]), timestamped with
/// their `ts_ms`.
pub struct Parse;

impl Map for Parse {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        let passing = Passing::parse(record.payload())?;
        out.write_bytes(&passing.encode());
        out.set_timestamp(passing.ts_ms);
        Ok(())
    }
}

/// Keys a passing by its plate (`P0012345`).
pub struct PlateKey;

impl KeySelector for PlateKey {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()> {
        let passing = Passing::decode(record.payload())?;
        write_padded(key, b"P", passing.plate, 7)?;
        Ok(())
    }
}

/// Keys a passing by its camera id (`CAM0042`).
pub struct CameraKey;

impl KeySelector for CameraKey {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()> {
        let passing = Passing::decode(record.payload())?;
        write_padded(key, b"CAM", passing.camera, 4)?;
        Ok(())
    }
}

/// Keys a passing by its camera number, 4 bytes little-endian: a compact
/// key is cheaper to compute, hash and compare than `CAM0042` (about 10%
/// of traffic Q1's CPU time).
pub struct CameraNumberKey;

/// The camera id of a key of [`CameraKey`] (the id itself) or of
/// [`CameraNumberKey`] (4 bytes), as text.
pub fn camera_id_of_key(key: &[u8]) -> Result<String> {
    match <[u8; 4]>::try_from(key) {
        Ok(number) => Ok(CameraId(u32::from_le_bytes(number)).to_string()),
        Err(_) => String::from_utf8(key.to_vec()).map_err(|_| Error::new("a camera key is not UTF-8")),
    }
}

impl KeySelector for CameraNumberKey {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()> {
        let passing = Passing::decode(record.payload())?;
        key.write_bytes(&passing.camera.to_le_bytes());
        Ok(())
    }
}

/// Per plate: emits `plate,ts_ms_first,camera_first,ts_ms_second,camera_second`
/// when a plate passes cameras of two cities less than a minute apart.
pub struct ClonedPlates {
    previous: ValueState<Passing>,
    line: Vec<u8>,
}

impl KeyedProcessFunction for ClonedPlates {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        Ok(Self {
            previous: ctx.value_state("previous"),
            line: Vec::new(),
        })
    }

    fn process_element(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let current = Passing::decode(record.payload())?;
        if let Some(first) = self.previous.get()?
            && first.city() != current.city()
            && first.ts_ms.abs_diff(current.ts_ms) < CLONE_WINDOW_MS
        {
            self.line.clear();
            write!(
                self.line,
                "{},{},{},{},{}",
                current.plate_id(),
                first.ts_ms,
                first.camera_id(),
                current.ts_ms,
                current.camera_id()
            )?;
            ctx.emit(&self.line);
        }
        self.previous.set(&current)
    }
}

/// Per camera: emits `camera_id,last_seen_ts,timer_ts` when a camera has seen
/// no passing for 30 minutes of event time.
pub struct SilentCameras {
    last_seen: ValueState<i64>,
    line: Vec<u8>,
}

impl KeyedProcessFunction for SilentCameras {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        Ok(Self {
            last_seen: ctx.value_state("last_seen"),
            line: Vec::new(),
        })
    }

    fn process_element(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let passing = Passing::decode(record.payload())?;
        let last_seen = self.last_seen.get()?;
        if last_seen.is_none_or(|last_seen| passing.ts_ms > last_seen) {
            if let Some(last_seen) = last_seen {
                ctx.delete_event_time_timer(last_seen.saturating_add(SILENCE_MS));
            }
            self.last_seen.set(&passing.ts_ms)?;
            ctx.register_event_time_timer(passing.ts_ms.saturating_add(SILENCE_MS));
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let last_seen = self
            .last_seen
            .get()?
            .unwrap_or(timer.timestamp().saturating_sub(SILENCE_MS));
        self.line.clear();
        let camera = camera_id_of_key(timer.key())?;
        write!(self.line, "{camera},{last_seen},{}", timer.timestamp())?;
        ctx.emit(&self.line);
        Ok(())
    }
}

/// The flow of a camera in a window: `(count, sum_speed, max_speed)` over
/// its passings.
pub type FlowAcc = (u64, u64, u32);

/// Per camera and window (keyed by [`CameraKey`] or [`CameraNumberKey`]): the number of passings,
/// the sum of their speeds and the highest speed, as
/// `camera_id,window_start_ms,count,sum_speed,max_speed`, e.g.
/// `CAM0042,1767225600000,17,1402,131`.
pub struct Flow;

impl Flow {
    /// Adds a passing to a flow.
    pub fn add_passing(acc: &mut FlowAcc, passing: &Passing) {
        let (count, sum, max) = acc;
        *count += 1;
        *sum += u64::from(passing.speed);
        *max = (*max).max(passing.speed);
    }

    /// Writes the result line of a flow (without a line end).
    pub fn write_line(out: &mut impl std::io::Write, camera: &str, window: Window, acc: &FlowAcc) -> Result<()> {
        let (count, sum, max) = acc;
        write!(out, "{camera},{},{count},{sum},{max}", window.start)?;
        Ok(())
    }
}

impl WindowAggregate for Flow {
    type Acc = FlowAcc;

    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn create_accumulator(&self) -> FlowAcc {
        (0, 0, 0)
    }

    fn add(&self, acc: &mut FlowAcc, record: &Record<'_>) -> Result<()> {
        let passing = Passing::decode(record.payload())?;
        Self::add_passing(acc, &passing);
        Ok(())
    }

    fn merge(&self, a: FlowAcc, b: FlowAcc) -> FlowAcc {
        (a.0 + b.0, a.1 + b.1, a.2.max(b.2))
    }

    fn result(&self, key: &[u8], window: Window, acc: &FlowAcc, out: &mut RecordWriter<'_>) -> Result<()> {
        Self::write_line(out, &camera_id_of_key(key)?, window, acc)
    }
}

weir_sdk::export_functions! {
    map "parse" => Parse,
    key_selector "plate" => PlateKey,
        key_selector "camera" => CameraKey,
    key_selector "camera_number" => CameraNumberKey,
    keyed_process "cloned_plates" => ClonedPlates,
    keyed_process "silent_cameras" => SilentCameras,
    window_aggregate "flow" => Flow,
    async_map "enrich" => enrich::Enrich,
    map "event_time" => enrich::EventTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> std::result::Result<Passing, String> {
        Passing::parse(line.as_bytes()).map_err(Error::into_reason)
    }

    #[test]
    fn parses_a_line() {
        let passing = Passing {
            ts_ms: 1_767_225_600_123,
            camera: 42,
            plate: 12345,
            speed: 87,
        };
        assert_eq!(parse("1767225600123,CAM0042,P0012345,87\r"), Ok(passing));
        assert_eq!(passing.camera_id().to_string(), "CAM0042");
        assert_eq!(passing.plate_id().to_string(), "P0012345");
        assert_eq!(passing.city(), 0);
    }

    #[test]
    fn the_plain_parser_agrees_with_the_explaining_one() {
        let lines = [
            "1767225600123,CAM0042,P0012345,87",
            "0,CAM0,P0,0\r",
            "9223372036854775807,CAM4294967295,P4294967295,4294967295",
            "9223372036854775808,CAM1,P1,1",
            "1,CAM4294967296,P1,1",
            "+5,CAM1,P1,1",
            "-5,CAM1,P1,1",
            "1,CAM1,P1,1,",
            "1,CAM1,P1,",
            "1,CAM1,P1",
            "1,CAM1,P1,1\r\r",
            "00000000000000000000001,CAM1,P1,1",
            "1,cam1,P1,1",
        ];
        for line in lines {
            let fixed = Passing::parse_fixed(line.as_bytes());
            if fixed.is_some() {
                assert_eq!(fixed, Passing::parse_explained(line.as_bytes()).ok(), "{line}");
            }
            let plain = Passing::parse_plain(line.as_bytes());
            let explained = Passing::parse_explained(line.as_bytes()).ok();
            if plain.is_some() {
                assert_eq!(plain, explained, "{line}");
            }
            assert_eq!(parse(line).ok(), explained, "{line}");
        }
        assert!(Passing::parse_plain(b"1767225600123,CAM0042,P0012345,87").is_some());
        assert!(Passing::parse_fixed(b"1767225600123,CAM0042,P0012345,87").is_some());
        assert!(Passing::parse_fixed(b"1767225600123,CAM0042,P0012345,137\r").is_some());
        assert_eq!(eight_digits(u64::from_le_bytes(*b"12345678")), Some(12_345_678));
        assert_eq!(eight_digits(u64::from_le_bytes(*b"00000000")), Some(0));
        assert_eq!(eight_digits(u64::from_le_bytes(*b"1234567/")), None);
        assert_eq!(eight_digits(u64::from_le_bytes(*b":2345678")), None);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let line = format!(
                "{:013},CAM{:04},P{:07},{}",
                seed % 10_000_000_000_000,
                seed % 10_000,
                seed % 10_000_000,
                seed % 140
            );
            assert_eq!(
                Passing::parse_fixed(line.as_bytes()),
                Passing::parse_explained(line.as_bytes()).ok(),
                "{line}"
            );
        }
        for odd in [
            "1767225600123,CAM0042,P0012345,",
            "1767225600123,CAM0042,P0012345,1377",
            "1767225600123,CAM0042,P001234x,87",
            "176722560012,CAM00423,P0012345,87",
        ] {
            assert_eq!(Passing::parse_fixed(odd.as_bytes()), None, "{odd}");
        }
    }

    #[test]
    fn round_trips_the_record_encoding() {
        let passing = Passing {
            ts_ms: -1_767_225_600_123,
            camera: 42,
            plate: u32::MAX,
            speed: 87,
        };
        assert_eq!(Passing::decode(&passing.encode()).ok(), Some(passing));
        assert_eq!(
            Passing::decode(b"short").map_err(Error::into_reason),
            Err("a passing is 20 bytes (the output of `parse`), found 5".to_owned())
        );
    }

    #[test]
    fn pads_ids_like_the_formatter() {
        for (number, width) in [(0, 4), (42, 4), (9999, 4), (12345, 4), (7, 7), (u32::MAX, 7), (5, 0)] {
            let mut out = Vec::new();
            write_padded(&mut out, b"X", number, width).expect("writes");
            assert_eq!(String::from_utf8(out).expect("ascii"), format!("X{number:0width$}"));
        }
    }

    #[test]
    fn explains_bad_lines() {
        let cases = [
            (
                "1,CAM1,P1",
                "expected 4 fields (ts_ms,camera_id,plate,speed_kmh), found 3",
            ),
            ("x,CAM1,P1,1", "ts_ms: not an integer: \"x\""),
            (
                "1,CAMx,P1,1",
                "camera_id: expected CAM followed by digits, found \"CAMx\"",
            ),
            (
                "1,CAM,P1,1",
                "camera_id: expected CAM followed by digits, found \"CAM\"",
            ),
            ("1,CAM1,Q1,1", "plate: expected P followed by digits, found \"Q1\""),
            ("1,CAM1,P+1,1", "plate: expected P followed by digits, found \"P+1\""),
            ("1,CAM1,P1,-1", "speed_kmh: not an integer: \"-1\""),
        ];
        for (line, reason) in cases {
            assert_eq!(parse(line), Err(reason.to_owned()), "{line}");
        }
        assert_eq!(
            Passing::parse(b"\xff").map_err(Error::into_reason),
            Err("line is not valid UTF-8".to_owned())
        );
    }

    #[test]
    fn computes_the_flow_of_a_window() {
        let flow = Flow;
        let passing = |speed| Passing {
            ts_ms: 1_767_225_600_000,
            camera: 42,
            plate: 1,
            speed,
        };
        let mut a = flow.create_accumulator();
        Flow::add_passing(&mut a, &passing(80));
        Flow::add_passing(&mut a, &passing(131));
        let mut b = flow.create_accumulator();
        Flow::add_passing(&mut b, &passing(100));
        let acc = flow.merge(a, b);
        assert_eq!(acc, (3, 311, 131));
        let window = Window {
            start: 1_767_225_600_000,
            end: 1_767_225_660_000,
        };
        for key in [&42u32.to_le_bytes()[..], b"CAM0042"] {
            let mut line = Vec::new();
            Flow::write_line(&mut line, &camera_id_of_key(key).expect("a key"), window, &acc).expect("writes");
            assert_eq!(line, b"CAM0042,1767225600000,3,311,131");
        }
        let mut line = Vec::new();
        Flow::write_line(&mut line, "CAM0042", window, &acc).expect("writes");
        assert_eq!(line, b"CAM0042,1767225600000,3,311,131");
    }
}
