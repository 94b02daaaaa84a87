//! Traffic Q1 as a hand-written, single-threaded Rust loop: the yardstick
//! the issue compares Weir with ("within 3x of a hand-written loop").
//!
//! It reads the CSV, parses each line by hand, keeps one accumulator per
//! camera and 1-minute window in hash maps, keeps the watermark (largest
//! timestamp − 5 s − 1) after every record, drops late passings and writes a
//! window's lines when the watermark passes its end, like the job
//! `examples/traffic-q1.toml`. No Wasm, no threads, no checkpoints.
//!
//! ```sh
//! cargo bench -p weir --bench q1_baseline -- traffic.csv flow-baseline.csv
//! ```
//!
//! It prints the events, the late ones, the windows and the wall-clock rate.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

const WINDOW_MS: i64 = 60_000;
const BOUND_MS: i64 = 5_000;

/// `(count, sum of speeds, max speed)`.
type Flow = (u64, u64, u32);

fn number(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    field
        .iter()
        .try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0')))
}

/// `ts_ms,CAMnnnn,Pnnnnnnn,speed` as (ts, camera, speed).
fn parse(line: &[u8]) -> Option<(i64, u32, u32)> {
    let mut fields = line.split(|&b| b == b',');
    let ts = i64::try_from(number(fields.next()?)?).ok()?;
    let camera = u32::try_from(number(fields.next()?.strip_prefix(b"CAM")?)?).ok()?;
    fields.next()?.strip_prefix(b"P")?;
    let speed = u32::try_from(number(fields.next()?)?).ok()?;
    Some((ts, camera, speed))
}

/// Writes and forgets the windows the watermark has passed; returns how many.
fn emit(out: &mut impl Write, windows: &mut BTreeMap<i64, HashMap<u32, Flow>>, watermark: i64) -> std::io::Result<u64> {
    let mut emitted = 0;
    while let Some(entry) = windows.first_entry() {
        if *entry.key() + WINDOW_MS - 1 > watermark {
            break;
        }
        let (start, cameras) = entry.remove_entry();
        for (camera, (count, sum, max)) in cameras {
            writeln!(out, "CAM{camera:04},{start},{count},{sum},{max}")?;
            emitted += 1;
        }
    }
    Ok(emitted)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let (Some(input), Some(output)) = (args.first(), args.get(1)) else {
        eprintln!("usage: q1_baseline TRAFFIC.csv OUTPUT.csv");
        std::process::exit(2);
    };
    let start = Instant::now();
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
    let mut out = BufWriter::new(std::fs::File::create(output)?);
    // Open windows by start, then camera.
    let mut windows: BTreeMap<i64, HashMap<u32, Flow>> = BTreeMap::new();
    let (mut events, mut late, mut emitted) = (0u64, 0u64, 0u64);
    let mut max_ts = i64::MIN;
    let mut line = Vec::new();

    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let Some((ts, camera, speed)) = parse(line.strip_suffix(b"\n").unwrap_or(&line)) else {
            continue;
        };
        events += 1;
        let watermark = max_ts.saturating_sub(BOUND_MS + 1);
        let window = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        if window + WINDOW_MS - 1 <= watermark {
            late += 1;
        } else {
            let flow = windows.entry(window).or_default().entry(camera).or_insert((0, 0, 0));
            flow.0 += 1;
            flow.1 += u64::from(speed);
            flow.2 = flow.2.max(speed);
        }
        if ts > max_ts {
            max_ts = ts;
            emitted += emit(&mut out, &mut windows, max_ts.saturating_sub(BOUND_MS + 1))?;
        }
    }
    emitted += emit(&mut out, &mut windows, i64::MAX)?;
    out.flush()?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "q1_baseline: {events} events ({late} late), {emitted} windows in {seconds:.2} s: {:.2} M events/s",
        events as f64 / seconds / 1e6
    );
    Ok(())
}
