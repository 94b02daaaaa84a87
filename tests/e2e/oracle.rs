//! Independent oracles and deterministic inputs, in plain Rust.

use std::collections::HashMap;

/// A small deterministic generator (64-bit LCG, high bits).
pub struct Lcg(u64);

impl Lcg {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }

    /// Uniform in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Lines of text with mixed case, punctuation, digits and non-ASCII words.
pub fn text(lines: usize, seed: u64) -> String {
    const WORDS: &[&str] = &[
        "the", "The", "river", "RIVER", "weir", "Weir's", "flows", "over", "stone", "straße", "École", "naïve", "42",
        "x2", "data", "stream", "state", "keyed", "ÉCOLE", "Über",
    ];
    const GLUE: &[&str] = &[" ", "  ", ", ", "; ", " -- ", "... ", "\t", "!"];
    let mut rng = Lcg::new(seed);
    let mut out = String::new();
    for _ in 0..lines {
        let words = rng.below(12);
        for w in 0..words {
            if w > 0 {
                out.push_str(GLUE[rng.below(GLUE.len() as u64) as usize]);
            }
            out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        }
        out.push('\n');
    }
    out
}

/// Word count: the words of each line are maximal runs of alphanumeric
/// characters, lowercased. Returns each word's final count.
pub fn word_counts(text: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for line in text.lines() {
        for word in line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    counts
}

/// The word-count output as a multiset: `word,1` .. `word,n` for each word.
pub fn word_count_lines(counts: &HashMap<String, u64>) -> Vec<String> {
    let mut lines: Vec<String> = counts
        .iter()
        .flat_map(|(word, n)| (1..=*n).map(move |i| format!("{word},{i}")))
        .collect();
    lines.sort();
    lines
}

/// Traffic passings in the workload's CSV format, with few plates so that
/// plates repeat often, and cameras spread over several cities.
pub fn passings(count: usize, seed: u64) -> String {
    let mut rng = Lcg::new(seed);
    let mut out = String::new();
    let start = 1_767_225_600_000i64;
    for i in 0..count {
        let ts = start + (i as i64) * 700 - rng.below(4_000) as i64;
        let camera = rng.below(2_000);
        let plate = rng.below(300);
        let speed = 20 + rng.below(120);
        out.push_str(&format!("{ts},CAM{camera:04},P{plate:07},{speed}\n"));
    }
    out
}

/// Q2, cloned plates: for each passing in input order, compare with the
/// plate's previous passing; alert when the cameras are in different cities
/// (camera / 100) and the timestamps differ by less than 60 s.
pub fn cloned_plates(csv: &str) -> Vec<String> {
    let mut previous: HashMap<String, (i64, String, u32)> = HashMap::new();
    let mut alerts = Vec::new();
    for line in csv.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(ts), Some(camera), Some(plate)) = (
            fields.first().and_then(|f| f.parse::<i64>().ok()),
            fields.get(1).filter(|c| c.starts_with("CAM")),
            fields.get(2),
        ) else {
            continue;
        };
        if fields.len() != 4 || fields[3].parse::<u32>().is_err() {
            continue;
        }
        let Ok(number) = camera[3..].parse::<u32>() else {
            continue;
        };
        let city = number / 100;
        if let Some((prev_ts, prev_camera, prev_city)) = previous.get(*plate)
            && *prev_city != city
            && (ts - prev_ts).abs() < 60_000
        {
            alerts.push(format!("{plate},{prev_ts},{prev_camera},{ts},{camera}"));
        }
        previous.insert(plate.to_string(), (ts, camera.to_string(), city));
    }
    alerts.sort();
    alerts
}
