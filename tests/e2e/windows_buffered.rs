//! Windows that see whole windows: process-window functions, an aggregate or
//! reduce with a process-window function, and evictors, against an oracle
//! that follows Flink's definitions record by record (batches of one
//! record, a monotonous watermark after each: the largest timestamp seen
//! minus one):
//! - a record goes to each of its windows that is not late (a window is late
//!   once the watermark reaches its end - 1 + the allowed lateness); a record
//!   with no such window goes to the late side output;
//! - a window fires when the watermark reaches its end - 1 (its timer), and
//!   again at once for each record it gets after that;
//! - at firing: evict-before, the function over what remains, evict-after;
//!   the window keeps what the evictors left.
//!
//! Inputs are `key timestamp value` lines (testkit's `stamp` reads the
//! timestamp); the UDFs are in `udfs/testkit/src/windows.rs`.

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::{Workdir, sorted_lines};
use crate::oracle::Lcg;

/// One input record.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) key: String,
    pub(crate) ts: i64,
    pub(crate) value: i64,
}

impl Event {
    /// The record as the job reads it: `key timestamp value`.
    pub(crate) fn line(&self) -> String {
        format!("{} {} {}", self.key, self.ts, self.value)
    }
}

/// Three keys, timestamps rising about 4 ms a record with up to 30 ms of
/// disorder, and one record in 25 from 60 to 160 ms in the past (late, or
/// within the lateness).
fn events(seed: u64, count: i64) -> Vec<Event> {
    events_late_one_in(seed, count, 25)
}

/// [`events`] with one record in `late_one_in` from the past.
pub(crate) fn events_late_one_in(seed: u64, count: i64, late_one_in: u64) -> Vec<Event> {
    let mut rng = Lcg::new(seed);
    (0..count)
        .map(|i| {
            let mut ts = 1_000 + i * 4 - rng.below(30) as i64;
            if rng.below(late_one_in) == 0 {
                ts -= 60 + rng.below(100) as i64;
            }
            Event {
                key: format!("k{}", rng.below(3)),
                ts,
                value: rng.below(1000) as i64,
            }
        })
        .collect()
}

fn input(events: &[Event]) -> String {
    events.iter().map(|e| format!("{}\n", e.line())).collect()
}

/// Window assigners of the oracle.
#[derive(Clone, Copy)]
enum Assign {
    Tumbling(i64),
    Sliding(i64, i64),
}

impl Assign {
    /// The windows `[start, end)` holding `ts`.
    fn windows(self, ts: i64) -> Vec<(i64, i64)> {
        let (size, slide) = match self {
            Assign::Tumbling(size) => (size, size),
            Assign::Sliding(size, slide) => (size, slide),
        };
        let mut start = ts - ts.rem_euclid(slide);
        let mut all = Vec::new();
        while start > ts - size {
            all.push((start, start + size));
            start -= slide;
        }
        all
    }
}

/// Evictors of the oracle.
#[derive(Clone, Copy)]
enum Evict {
    None,
    /// Keep the last n (after the function if `true`).
    Count(usize, bool),
    /// Keep timestamps above the newest minus the size.
    Time(i64),
    /// testkit's `drop_outliers`: values of 900 and more, before.
    Outliers,
}

impl Evict {
    fn apply(self, elements: &mut Vec<Event>, before: bool) {
        match self {
            Evict::None => {}
            Evict::Count(n, after) if after != before => {
                let excess = elements.len().saturating_sub(n);
                elements.drain(..excess);
            }
            Evict::Count(..) => {}
            Evict::Time(size) if before => {
                if let Some(newest) = elements.iter().map(|e| e.ts).max() {
                    elements.retain(|e| e.ts > newest - size);
                }
            }
            Evict::Time(_) => {}
            Evict::Outliers if before => elements.retain(|e| e.value < 900),
            Evict::Outliers => {}
        }
    }
}

/// What a window outputs when it fires, given its key, bounds and elements
/// (after evict-before).
type WindowFn = fn(&str, i64, i64, &[Event]) -> Vec<String>;

/// testkit's `sorted_values`.
fn sorted_values(key: &str, start: i64, end: i64, elements: &[Event]) -> Vec<String> {
    let mut values: Vec<i64> = elements.iter().map(|e| e.value).collect();
    values.sort_unstable();
    let median = values
        .get(values.len().saturating_sub(1) / 2)
        .map_or("none".to_string(), i64::to_string);
    let listed: Vec<String> = values.iter().map(i64::to_string).collect();
    vec![format!(
        "{key},{start},{end},{},{median},{}",
        values.len(),
        listed.join(" ")
    )]
}

/// testkit's `count_sum` handed to `describe_window`.
fn described_count_sum(key: &str, start: i64, end: i64, elements: &[Event]) -> Vec<String> {
    let sum: i64 = elements.iter().map(|e| e.value).sum();
    vec![format!(
        "{key},{start},{end},{},n={} sum={sum}",
        end - 1,
        elements.len()
    )]
}

/// testkit's `max_value` alone: the first record with the largest value.
fn max_value(_key: &str, _start: i64, _end: i64, elements: &[Event]) -> Vec<String> {
    let mut best: Option<&Event> = None;
    for e in elements {
        if best.is_none_or(|b| e.value > b.value) {
            best = Some(e);
        }
    }
    best.map(Event::line).into_iter().collect()
}

/// testkit's `max_value` handed to `describe_window`.
fn described_max_value(key: &str, start: i64, end: i64, elements: &[Event]) -> Vec<String> {
    max_value(key, start, end, elements)
        .into_iter()
        .map(|line| format!("{key},{start},{end},{},{line}", end - 1))
        .collect()
}

/// The oracle for non-merging windows: the main output (sorted) and the
/// positions of the late records.
fn oracle(
    events: &[Event],
    assign: Assign,
    lateness: i64,
    evict: Evict,
    function: WindowFn,
) -> (Vec<String>, Vec<usize>) {
    bounded_oracle(events, 0, assign, lateness, evict, function)
}

/// [`oracle`] with a watermark `bound` ms further behind.
fn bounded_oracle(
    events: &[Event],
    bound: i64,
    assign: Assign,
    lateness: i64,
    evict: Evict,
    function: WindowFn,
) -> (Vec<String>, Vec<usize>) {
    let mut windows: BTreeMap<(String, i64, i64), Vec<Event>> = BTreeMap::new();
    let mut timers: BTreeSet<(i64, String, i64, i64)> = BTreeSet::new();
    let mut output = Vec::new();
    let mut late = Vec::new();
    let mut watermark = i64::MIN;
    let fire =
        |windows: &mut BTreeMap<(String, i64, i64), Vec<Event>>, id: &(String, i64, i64), output: &mut Vec<String>| {
            let Some(elements) = windows.get_mut(id) else {
                return;
            };
            evict.apply(elements, true);
            output.extend(function(&id.0, id.1, id.2, elements));
            evict.apply(elements, false);
        };
    let advance = |windows: &mut BTreeMap<(String, i64, i64), Vec<Event>>,
                   timers: &mut BTreeSet<(i64, String, i64, i64)>,
                   watermark: i64,
                   output: &mut Vec<String>| {
        while let Some((time, key, start, end)) = timers.first().cloned() {
            if time > watermark {
                break;
            }
            timers.pop_first();
            fire(windows, &(key, start, end), output);
        }
        windows.retain(|(_, _, end), _| end - 1 + lateness > watermark);
    };
    for (index, event) in events.iter().enumerate() {
        let mut placed = false;
        for (start, end) in assign.windows(event.ts) {
            if end - 1 + lateness <= watermark {
                continue;
            }
            placed = true;
            let id = (event.key.clone(), start, end);
            windows.entry(id.clone()).or_default().push(event.clone());
            if end - 1 <= watermark {
                fire(&mut windows, &id, &mut output);
            } else {
                timers.insert((end - 1, id.0, start, end));
            }
        }
        if !placed {
            late.push(index);
        }
        watermark = watermark.max(event.ts - 1 - bound);
        advance(&mut windows, &mut timers, watermark, &mut output);
    }
    advance(&mut windows, &mut timers, i64::MAX, &mut output);
    output.sort();
    (output, late)
}

/// The oracle for session windows: per key, the sessions not cleaned up
/// yet; a record merges with those its own window touches; a session fires
/// when the watermark reaches its end - 1, and at once when a record merges
/// into it after that (within the lateness).
fn session_oracle(events: &[Event], gap: i64, lateness: i64, function: WindowFn) -> (Vec<String>, Vec<usize>) {
    // (start, end, elements, its end-of-window timer is pending)
    type Session = (i64, i64, Vec<Event>, bool);
    let mut sessions: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    let mut output = Vec::new();
    let mut late = Vec::new();
    let mut watermark = i64::MIN;
    let advance = |sessions: &mut BTreeMap<String, Vec<Session>>, watermark: i64, output: &mut Vec<String>| {
        for (key, list) in sessions.iter_mut() {
            list.retain_mut(|(s, e, elements, pending)| {
                if *pending && *e - 1 <= watermark {
                    *pending = false;
                    output.extend(function(key, *s, *e, elements));
                }
                *e - 1 + lateness > watermark
            });
        }
    };
    for (index, event) in events.iter().enumerate() {
        let (mut start, mut end) = (event.ts, event.ts + gap);
        let mine = sessions.entry(event.key.clone()).or_default();
        let (mut touching, rest): (Vec<_>, Vec<_>) = std::mem::take(mine)
            .into_iter()
            .partition(|(s, e, _, _)| *s <= end && *e >= start);
        *mine = rest;
        if touching.is_empty() && end - 1 + lateness <= watermark {
            late.push(index);
            continue;
        }
        touching.sort_by_key(|t| t.0);
        let mut elements = Vec::new();
        for (s, e, stored, _) in touching {
            start = start.min(s);
            end = end.max(e);
            elements.extend(stored);
        }
        elements.push(event.clone());
        let refire = end - 1 <= watermark;
        if refire {
            output.extend(function(&event.key, start, end, &elements));
        }
        mine.push((start, end, elements, !refire));
        if event.ts - 1 > watermark {
            watermark = event.ts - 1;
            advance(&mut sessions, watermark, &mut output);
        }
    }
    advance(&mut sessions, i64::MAX, &mut output);
    output.sort();
    (output, late)
}

/// The job: `stamp` with a watermark after every record, then the window
/// operator `win` configured by `window` (TOML lines).
fn job(window: &str) -> String {
    format!(
        r#"
[job]
batch_size = 1
dead_letter = "dead.jsonl"

[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "stamp"
input = "lines"
module = "testkit.wasm"
function = "stamp"
parallelism = 1
watermarks = {{ strategy = "monotonous", interval_ms = 0 }}

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
key_by = {{ module = "testkit.wasm", function = "first_word" }}
late_output = "late"
{window}

[[sink]]
uid = "out"
input = "win"
type = "file"
path = "out.txt"

[[sink]]
uid = "late"
input = "win"
side_output = "late"
type = "file"
path = "late.txt"
"#
    )
}

/// The late records at `positions` of `events`, sorted.
fn late_lines(events: &[Event], positions: &[usize]) -> Vec<String> {
    let mut lines: Vec<String> = positions.iter().map(|&i| events[i].line()).collect();
    lines.sort();
    lines
}

/// Runs `job` on `events` at parallelism 1 and 2 and compares with the
/// oracle's output and late records.
fn assert_matches(job: &str, events: &[Event], expected: &(Vec<String>, Vec<usize>)) {
    assert!(expected.0.len() > 20, "too few outputs: {}", expected.0.len());
    assert!(!expected.1.is_empty(), "the input must have late records");
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", input(events));
        work.run_ok(job, &["--parallelism", parallelism]);
        assert_eq!(
            sorted_lines(&work.read("out.txt")),
            expected.0,
            "parallelism {parallelism}"
        );
        assert_eq!(
            sorted_lines(&work.read("late.txt")),
            late_lines(events, &expected.1),
            "parallelism {parallelism}"
        );
    }
}

#[test]
fn a_process_window_function_sees_every_element_of_tumbling_windows_and_refires_within_the_lateness() {
    let events = events(3, 400);
    let expected = oracle(&events, Assign::Tumbling(40), 50, Evict::None, sorted_values);
    // Some windows fire more than once (late records within the lateness).
    let fired: BTreeSet<String> = expected.0.iter().map(|l| l.split(',').take(3).collect()).collect();
    assert!(fired.len() < expected.0.len(), "no window fired twice");
    let window =
        "function = \"sorted_values\"\nwindow = { type = \"tumbling\", size_ms = 40 }\nallowed_lateness_ms = 50";
    assert_matches(&job(window), &events, &expected);
}

#[test]
fn a_process_window_function_sees_the_merged_elements_of_session_windows() {
    let mut events = events(17, 300);
    // Sparser records, so that sessions of a key open and close.
    for (i, event) in events.iter_mut().enumerate() {
        event.ts += (i as i64 / 20) * 60;
    }
    let expected = session_oracle(&events, 15, 0, sorted_values);
    let merged = expected.0.iter().filter(|l| l.split(',').nth(3) != Some("1")).count();
    assert!(merged > 10, "too few merged sessions: {merged}");
    let window = "function = \"sorted_values\"\nwindow = { type = \"session\", gap_ms = 15 }";
    assert_matches(&job(window), &events, &expected);

    // With lateness, late records merge into fired sessions (also bridging
    // two of them), which fire again at once with all their elements.
    let lately = session_oracle(&events, 15, 40, sorted_values);
    let fired: BTreeSet<String> = lately.0.iter().map(|l| l.split(',').take(3).collect()).collect();
    assert!(fired.len() < lately.0.len(), "no session fired twice");
    assert_matches(&job(&format!("{window}\nallowed_lateness_ms = 40")), &events, &lately);
}

#[test]
fn session_accumulators_merge_before_the_process_window_function_sees_the_result() {
    let mut events = events(37, 300);
    for (i, event) in events.iter_mut().enumerate() {
        event.ts += (i as i64 / 20) * 60;
    }
    let expected = session_oracle(&events, 15, 0, described_count_sum);
    let merged = expected.0.iter().filter(|l| !l.ends_with(",n=1")).count();
    assert!(merged > 10, "too few merged sessions: {merged}");
    let window = "function = \"count_sum\"\nprocess = { function = \"describe_window\" }\nwindow = { type = \"session\", gap_ms = 15 }";
    assert_matches(&job(window), &events, &expected);

    let lately = session_oracle(&events, 15, 40, described_count_sum);
    assert_matches(&job(&format!("{window}\nallowed_lateness_ms = 40")), &events, &lately);
}

#[test]
fn a_window_its_process_function_rejects_goes_to_the_dead_letters() {
    // `sorted_values` needs integer values: the window [0, 10) of `a` holds
    // `a 3 x`, so its three elements are dead letters and it outputs
    // nothing; the other windows are unaffected.
    let input = "a 1 5\na 3 x\nb 4 6\na 7 2\na 12 9\n";
    let window = "function = \"sorted_values\"\nwindow = { type = \"tumbling\", size_ms = 10 }";
    let work = Workdir::new();
    work.write("input.txt", input);
    let finished = work.run_ok(&job(window), &[]);
    assert_eq!(
        sorted_lines(&work.read("out.txt")),
        vec!["a,10,20,1,9,9".to_string(), "b,0,10,1,6,6".into()]
    );
    assert!(finished.stderr.contains("dead letters: 3"), "{}", finished.stderr);
    let mut dead: Vec<(String, String, String)> = work
        .read("dead.jsonl")
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let field = |name: &str| value[name].as_str().unwrap_or_default().to_string();
            (field("operator"), field("record"), field("reason"))
        })
        .collect();
    dead.sort();
    let reason = "expected `key timestamp value`, found \"a 3 x\"";
    assert_eq!(
        dead,
        ["a 1 5", "a 3 x", "a 7 2"].map(|r| ("win".to_string(), r.to_string(), reason.to_string()))
    );
}

#[test]
fn an_aggregate_with_a_process_window_function_sees_the_window_metadata() {
    let events = events(5, 400);
    let expected = oracle(&events, Assign::Sliding(60, 20), 30, Evict::None, described_count_sum);
    let window = "function = \"count_sum\"\nprocess = { function = \"describe_window\" }\nwindow = { type = \"sliding\", size_ms = 60, slide_ms = 20 }\nallowed_lateness_ms = 30";
    assert_matches(&job(window), &events, &expected);
}

#[test]
fn a_reduce_function_keeps_one_value_per_window_alone_and_with_a_process_window_function() {
    let events = events(8, 400);
    let expected = oracle(&events, Assign::Tumbling(50), 40, Evict::None, max_value);
    let window = "function = \"max_value\"\nwindow = { type = \"tumbling\", size_ms = 50 }\nallowed_lateness_ms = 40";
    assert_matches(&job(window), &events, &expected);

    let expected = oracle(&events, Assign::Tumbling(50), 40, Evict::None, described_max_value);
    let window = format!("{window}\nprocess = {{ function = \"describe_window\" }}");
    assert_matches(&job(&window), &events, &expected);
}

#[test]
fn a_count_evictor_keeps_the_last_elements_before_or_after_the_function() {
    let events = events(11, 400);
    for after in [false, true] {
        let expected = oracle(&events, Assign::Tumbling(40), 50, Evict::Count(3, after), sorted_values);
        let unevicted = oracle(&events, Assign::Tumbling(40), 50, Evict::None, sorted_values);
        assert_ne!(expected.0, unevicted.0, "the evictor changes nothing");
        let window = format!(
            "function = \"sorted_values\"\nwindow = {{ type = \"tumbling\", size_ms = 40 }}\nallowed_lateness_ms = 50\nevictor = {{ type = \"count\", count = 3, after = {after} }}"
        );
        assert_matches(&job(&window), &events, &expected);
    }
}

#[test]
fn a_time_evictor_makes_an_aggregate_buffer_and_fold_what_remains() {
    let events = events(13, 400);
    let expected = oracle(
        &events,
        Assign::Sliding(60, 20),
        30,
        Evict::Time(25),
        described_count_sum,
    );
    let unevicted = oracle(&events, Assign::Sliding(60, 20), 30, Evict::None, described_count_sum);
    assert_ne!(expected.0, unevicted.0, "the evictor changes nothing");
    let window = "function = \"count_sum\"\nprocess = { function = \"describe_window\" }\nwindow = { type = \"sliding\", size_ms = 60, slide_ms = 20 }\nallowed_lateness_ms = 30\nevictor = { type = \"time\", size_ms = 25 }";
    assert_matches(&job(window), &events, &expected);
}

#[test]
fn a_wasm_evictor_drops_outliers_before_the_function() {
    let events = events(19, 400);
    let expected = oracle(&events, Assign::Sliding(60, 30), 20, Evict::Outliers, sorted_values);
    let unevicted = oracle(&events, Assign::Sliding(60, 30), 20, Evict::None, sorted_values);
    assert_ne!(expected.0, unevicted.0, "the evictor changes nothing");
    assert!(events.iter().filter(|e| e.value >= 900).count() > 20);
    let window = "function = \"sorted_values\"\nwindow = { type = \"sliding\", size_ms = 60, slide_ms = 30 }\nallowed_lateness_ms = 20\nevictor = { type = \"wasm\", function = \"drop_outliers\" }";
    assert_matches(&job(window), &events, &expected);
}

#[test]
fn windows_without_key_by_go_to_the_process_window_function_with_an_empty_key() {
    let events = events(23, 300);
    // One window per 40 ms for all keys together.
    let unkeyed: Vec<Event> = events
        .iter()
        .map(|e| Event {
            key: String::new(),
            ..e.clone()
        })
        .collect();
    let expected = oracle(&unkeyed, Assign::Tumbling(40), 20, Evict::None, sorted_values);
    let window = "function = \"sorted_values\"\nwindow = { type = \"tumbling\", size_ms = 40 }\nallowed_lateness_ms = 20\nparallelism = 1";
    let job = job(window).replace(
        "key_by = { module = \"testkit.wasm\", function = \"first_word\" }\n",
        "",
    );
    let work = Workdir::new();
    work.write("input.txt", input(&events));
    work.run_ok(&job, &[]);
    assert_eq!(sorted_lines(&work.read("out.txt")), expected.0);
    assert!(!expected.1.is_empty(), "the input must have late records");
    assert_eq!(sorted_lines(&work.read("late.txt")), late_lines(&events, &expected.1));
}

/// An operator of testkit reading `lines`, keyed, with `extra` TOML lines.
fn bad_operator(uid: &str, extra: &str) -> String {
    format!(
        "\n[[operator]]\nuid = \"{uid}\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nkey_by = {{ module = \"testkit.wasm\", function = \"first_word\" }}\n{extra}\n"
    )
}

#[test]
fn bad_process_evictor_and_trigger_settings_are_refused_with_their_field_and_line() {
    let mut job = String::from("[[source]]\nuid = \"lines\"\ntype = \"file\"\npath = \"input.txt\"\n");
    let tumbling = "window = { type = \"tumbling\", size_ms = 10 }";
    for (uid, extra) in [
        (
            "no-count",
            format!("function = \"sorted_values\"\n{tumbling}\nevictor = {{ type = \"count\" }}"),
        ),
        (
            "zero-size",
            format!("function = \"count_sum\"\n{tumbling}\nevictor = {{ type = \"time\", size_ms = 0 }}"),
        ),
        (
            "not-an-evictor",
            format!(
                "function = \"sorted_values\"\n{tumbling}\nevictor = {{ type = \"wasm\", function = \"count_sum\" }}"
            ),
        ),
        (
            "wasm-after",
            format!(
                "function = \"sorted_values\"\n{tumbling}\nevictor = {{ type = \"wasm\", function = \"drop_outliers\", after = true }}"
            ),
        ),
        (
            "no-function",
            format!("function = \"sorted_values\"\n{tumbling}\nevictor = {{ type = \"wasm\" }}"),
        ),
        (
            "process-on-process",
            format!("function = \"sorted_values\"\n{tumbling}\nprocess = {{ function = \"describe_window\" }}"),
        ),
        (
            "process-not-pwf",
            format!("function = \"count_sum\"\n{tumbling}\nprocess = {{ function = \"max_value\" }}"),
        ),
        (
            "no-window",
            "function = \"count_sum\"\nprocess = { function = \"describe_window\" }".to_string(),
        ),
        ("pwf-no-window", "function = \"sorted_values\"".to_string()),
        (
            "count-trigger",
            "function = \"sorted_values\"\nwindow = { type = \"session\", gap_ms = 5 }\ntrigger = { type = \"count\", count = 2 }".to_string(),
        ),
        ("evictor-as-operator", "function = \"drop_outliers\"".to_string()),
        (
            "trigger-no-function",
            format!("function = \"sorted_values\"\n{tumbling}\ntrigger = {{ type = \"wasm\" }}"),
        ),
        (
            "not-a-trigger",
            format!(
                "function = \"sorted_values\"\n{tumbling}\ntrigger = {{ type = \"wasm\", function = \"drop_outliers\" }}"
            ),
        ),
        (
            "trigger-and-evictor",
            format!(
                "function = \"sorted_values\"\n{tumbling}\ntrigger = {{ type = \"wasm\", function = \"fire_on_marker\" }}\nevictor = {{ type = \"wasm\", function = \"drop_outliers\" }}"
            ),
        ),
        ("trigger-as-operator", "function = \"fire_on_marker\"".to_string()),
    ] {
        job.push_str(&bad_operator(uid, &extra));
    }
    job.push_str("\n[[sink]]\nuid = \"out\"\ninput = \"lines\"\ntype = \"stdout\"\n");
    let work = Workdir::new();
    let finished = work.weir("validate", &job, &[]);
    assert!(!finished.success, "the job was accepted:\n{}", finished.stdout);
    let stderr = finished
        .stderr
        .replace(&work.path("job.toml").display().to_string(), "job.toml");
    // Operators start on line 6, one after the other (9 lines for those
    // with `window` and one faulty setting); each error names the line of
    // the faulty setting.
    let expected = [
        "job.toml:13: operator `no-count` → evictor → count: a count evictor needs `count` of at least 1",
        "job.toml:22: operator `zero-size` → evictor → size_ms: a time evictor needs `size_ms` of at least 1",
        "job.toml:31: operator `not-an-evictor` → evictor → function: `count_sum` is a window-aggregate function; `evictor` needs a window-evictor function",
        "job.toml:40: operator `wasm-after` → evictor → after: a wasm evictor is called both before and after the window function: remove `after`",
        "job.toml:49: operator `no-function` → evictor → function: a wasm evictor needs `function`: a window-evictor function of the operator's module",
        "job.toml:58: operator `process-on-process` → process: `process` runs on the result of a window aggregate or reduce, but `sorted_values` is a process-window function",
        "job.toml:67: operator `process-not-pwf` → process → function: `max_value` is a window-aggregate function; `process` needs a process-window function",
        "job.toml:74: operator `no-window` → window: `count_sum` is a window aggregate: the operator needs `window` (tumbling, sliding or session)",
        "job.toml:75: operator `no-window` → process: `process` belongs to a window operator: the operator needs `window`",
        "job.toml:82: operator `pwf-no-window` → window: `sorted_values` is a process-window function: the operator needs `window`",
        "job.toml:91: operator `count-trigger` → trigger: session windows merge, and count triggers cannot merge their counts yet: use a time trigger",
        "job.toml:98: operator `evictor-as-operator` → function: `drop_outliers` is a window evictor; use it in `evictor = { type = \"wasm\", function = ... }`, not as an operator",
        "job.toml:107: operator `trigger-no-function` → trigger → function: a wasm trigger needs `function`: a window-trigger function of the operator's module",
        "job.toml:116: operator `not-a-trigger` → trigger → function: `drop_outliers` is a window-evictor function; a wasm trigger needs a window-trigger function",
        "job.toml:126: operator `trigger-and-evictor` → evictor: a wasm evictor works with the event-time trigger only, for now",
        "job.toml:133: operator `trigger-as-operator` → function: `fire_on_marker` is a window trigger; use it in `trigger = { type = \"wasm\", function = ... }`, not as an operator",
    ];
    let expected: String = expected.iter().map(|e| format!("error: {e}\n")).collect();
    assert_eq!(stderr, expected);
}

#[test]
fn buffered_windows_restore_exactly_after_a_trap() {
    // No record is late (the disorder stays below the bound), so the output
    // does not depend on where the watermark stood when the job restarted.
    let mut rng = Lcg::new(41);
    let events: Vec<Event> = (0..20_000i64)
        .map(|i| Event {
            key: format!("k{}", rng.below(2)),
            ts: 10_000 + i * 2 - rng.below(40) as i64,
            value: rng.below(1000) as i64,
        })
        .collect();
    let expected = bounded_oracle(
        &events,
        50,
        Assign::Tumbling(200),
        0,
        Evict::Count(30, false),
        sorted_values,
    );
    assert!(expected.1.is_empty());
    let evicting = expected.0.iter().filter(|l| l.split(',').nth(3) == Some("30")).count();
    assert!(evicting > 100, "too few windows with evictions: {evicting}");
    let triggered = marker_oracle(
        &events,
        50,
        |ts| Assign::Tumbling(200).windows(ts),
        Some(0),
        Evict::None,
        sorted_values,
    );
    assert!(triggered.1.is_empty());
    let evictor = "evictor = { type = \"count\", count = 30 }";
    let trigger = "trigger = { type = \"wasm\", function = \"fire_on_marker\" }";
    for (backend, setting, expected) in [
        ("heap", evictor, &expected),
        ("rocksdb", evictor, &expected),
        ("heap", trigger, &triggered),
        ("rocksdb", trigger, &triggered),
    ] {
        let job = format!(
            r#"
[job]
name = "buffered-{backend}"
state_backend = "{backend}"
batch_size = 64

[checkpoint]
dir = "checkpoints"
interval_ms = 20

[restart]
strategy = "fixed-delay"
attempts = 1000
delay_ms = 0

[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "traps"
input = "lines"
module = "testkit.wasm"
function = "trap_on_first_attempt"
parallelism = 1
params = {{ modulus = "3001" }}

[[operator]]
uid = "stamp"
input = "traps"
module = "testkit.wasm"
function = "stamp"
parallelism = 1
watermarks = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 50, interval_ms = 0 }}

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
function = "sorted_values"
parallelism = 2
key_by = {{ module = "testkit.wasm", function = "first_word" }}
window = {{ type = "tumbling", size_ms = 200 }}
{setting}

[[sink]]
uid = "out"
input = "win"
type = "files"
path = "out"
"#
        );
        let work = Workdir::new();
        work.write("input.txt", input(&events));
        let finished = work.run_ok(&job, &[]);
        assert!(
            finished.stderr.contains("restarts: "),
            "no restart:\n{}",
            finished.stderr
        );
        let mut text = String::new();
        for entry in std::fs::read_dir(work.path("out"))
            .expect("the output folder")
            .flatten()
        {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                text.push_str(&std::fs::read_to_string(entry.path()).expect("a part file"));
            }
        }
        assert_eq!(sorted_lines(&text), expected.0, "{backend}, {setting}");
    }
}

/// A window under testkit's `fire_on_marker` trigger, in the oracle.
#[derive(Default)]
struct MarkerWindow {
    elements: Vec<Event>,
    /// Elements since the last marker.
    count: u32,
    /// The trigger's registered end-of-window timer.
    timer: Option<i64>,
}

/// The oracle of `fire_on_marker`: a marker (value below 50) fires and
/// purges its window and deletes the trigger's timer; another element
/// registers a timer at the window's end if none is registered; that timer
/// fires the window (without purging) if at least three elements came since
/// the last marker. Windows are dropped, unfired, once the watermark passes their
/// end - 1 + lateness (`None`: global windows, never).
fn marker_oracle(
    events: &[Event],
    bound: i64,
    windows_of: impl Fn(i64) -> Vec<(i64, i64)>,
    lateness: Option<i64>,
    evict: Evict,
    function: WindowFn,
) -> (Vec<String>, Vec<usize>) {
    let mut windows: BTreeMap<(String, i64, i64), MarkerWindow> = BTreeMap::new();
    let fire = |key: &str, start: i64, end: i64, elements: &mut Vec<Event>, output: &mut Vec<String>| {
        evict.apply(elements, true);
        output.extend(function(key, start, end, elements));
        evict.apply(elements, false);
    };
    let mut output = Vec::new();
    let mut late = Vec::new();
    let mut watermark = i64::MIN;
    let cleanup = |end: i64| lateness.map(|l| end - 1 + l);
    let advance =
        |windows: &mut BTreeMap<(String, i64, i64), MarkerWindow>, watermark: i64, output: &mut Vec<String>| {
            windows.retain(|(key, start, end), window| {
                let limit = cleanup(*end).map_or(watermark, |c| c.min(watermark));
                if window.timer.is_some_and(|t| t <= limit) {
                    window.timer = None;
                    if window.count >= 3 {
                        fire(key, *start, *end, &mut window.elements, output);
                    }
                }
                cleanup(*end).is_none_or(|c| c > watermark)
            });
        };
    for (index, event) in events.iter().enumerate() {
        let mut placed = false;
        for (start, end) in windows_of(event.ts) {
            if cleanup(end).is_some_and(|c| c <= watermark) {
                continue;
            }
            placed = true;
            let window = windows.entry((event.key.clone(), start, end)).or_default();
            window.elements.push(event.clone());
            if event.value < 50 {
                window.timer = None;
                window.count = 0;
                fire(&event.key, start, end, &mut window.elements, &mut output);
                window.elements.clear();
            } else {
                window.count += 1;
                window.timer.get_or_insert(end - 1);
            }
        }
        if !placed {
            late.push(index);
        }
        if event.ts - 1 - bound > watermark {
            watermark = event.ts - 1 - bound;
            advance(&mut windows, watermark, &mut output);
        }
    }
    advance(&mut windows, i64::MAX, &mut output);
    output.sort();
    (output, late)
}

#[test]
fn a_wasm_trigger_fires_and_purges_on_markers_and_fires_on_its_own_timer() {
    let events = events(29, 400);
    assert!(events.iter().filter(|e| e.value < 50).count() > 10, "too few markers");
    let tumbling = |ts| Assign::Tumbling(40).windows(ts);
    let expected = marker_oracle(&events, 0, tumbling, Some(30), Evict::None, sorted_values);
    let window = "function = \"sorted_values\"\nwindow = { type = \"tumbling\", size_ms = 40 }\nallowed_lateness_ms = 30\ntrigger = { type = \"wasm\", function = \"fire_on_marker\" }";
    assert_matches(&job(window), &events, &expected);

    // With a time evictor, each firing first drops what is 15 ms older
    // than the newest element, and the window keeps the rest.
    let evicted = marker_oracle(&events, 0, tumbling, Some(30), Evict::Time(15), sorted_values);
    assert_ne!(evicted.0, expected.0, "the evictor changes nothing");
    let window = format!("{window}\nevictor = {{ type = \"time\", size_ms = 15 }}");
    assert_matches(&job(&window), &events, &evicted);
}

#[test]
fn a_wasm_trigger_fires_global_windows_of_an_aggregate_which_then_buffers() {
    let events = events(31, 600);
    let expected = marker_oracle(
        &events,
        0,
        |_| vec![(i64::MIN, i64::MAX)],
        None,
        Evict::None,
        described_count_sum,
    );
    assert!(expected.0.len() > 20, "too few outputs: {}", expected.0.len());
    let window = "function = \"count_sum\"\nprocess = { function = \"describe_window\" }\nwindow = { type = \"global\" }\ntrigger = { type = \"wasm\", function = \"fire_on_marker\" }";
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", input(&events));
        work.run_ok(&job(window), &["--parallelism", parallelism]);
        assert_eq!(
            sorted_lines(&work.read("out.txt")),
            expected.0,
            "parallelism {parallelism}"
        );
        assert_eq!(work.read("late.txt"), "", "global windows are never late");
    }
}

#[test]
fn inspect_lists_the_window_function_kinds_and_worlds() {
    let output = crate::harness::weir()
        .arg("inspect")
        .arg(crate::harness::module("testkit"))
        .output()
        .expect("weir runs");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("worlds:    transform-module, key-selector-module, keyed-process-module, window-aggregate-module, join-module, keyed-co-process-module, watermark-generator-module, process-window-module, window-evictor-module, window-trigger-module, state-migration-module, state-codec-module, any-module\n"),
        "{stdout}"
    );
    for (function, kind) in [
        ("sorted_values", "process-window"),
        ("max_value", "window-aggregate"),
        ("drop_outliers", "window-evictor"),
        ("fire_on_marker", "window-trigger"),
    ] {
        assert!(stdout.contains(&format!("  {function:<24} {kind}\n")), "{stdout}");
    }
}

/// A session under `fire_on_marker`, in the oracle.
struct MarkerSession {
    start: i64,
    end: i64,
    window: MarkerWindow,
}

/// [`marker_oracle`] for session windows: a record's
/// window merges with the sessions it touches (purged ones too); the merged
/// session counts all their elements since their markers and, if any, its
/// trigger registers a timer at its end (`on_merge`).
fn session_marker_oracle(events: &[Event], gap: i64, lateness: i64, function: WindowFn) -> (Vec<String>, Vec<usize>) {
    let mut sessions: BTreeMap<String, Vec<MarkerSession>> = BTreeMap::new();
    let mut output = Vec::new();
    let mut late = Vec::new();
    let mut watermark = i64::MIN;
    // Timers up to the watermark fire (not after their session's cleanup);
    // sessions whose cleanup time came go.
    let advance = |sessions: &mut BTreeMap<String, Vec<MarkerSession>>, watermark: i64, output: &mut Vec<String>| {
        for (key, list) in sessions.iter_mut() {
            list.retain_mut(|s| {
                let cleanup = s.end - 1 + lateness;
                if s.window.timer.is_some_and(|t| t <= watermark.min(cleanup)) {
                    s.window.timer = None;
                    if s.window.count >= 3 {
                        output.extend(function(key, s.start, s.end, &s.window.elements));
                    }
                }
                cleanup > watermark
            });
        }
    };
    for (index, event) in events.iter().enumerate() {
        let (start, end) = (event.ts, event.ts + gap);
        let mine = sessions.entry(event.key.clone()).or_default();
        let (mut touching, rest): (Vec<_>, Vec<_>) = std::mem::take(mine)
            .into_iter()
            .partition(|s| s.start <= end && s.end >= start);
        *mine = rest;
        if touching.is_empty() && end - 1 + lateness <= watermark {
            late.push(index);
            continue;
        }
        touching.sort_by_key(|s| s.start);
        let cover = touching
            .iter()
            .fold((start, end), |(s, e), t| (s.min(t.start), e.max(t.end)));
        let mut session = match touching.len() {
            1 if (touching[0].start, touching[0].end) == cover => touching.remove(0),
            0 => MarkerSession {
                start,
                end,
                window: MarkerWindow::default(),
            },
            _ => {
                let count: u32 = touching.iter().map(|s| s.window.count).sum();
                MarkerSession {
                    start: cover.0,
                    end: cover.1,
                    window: MarkerWindow {
                        elements: touching.into_iter().flat_map(|s| s.window.elements).collect(),
                        count,
                        timer: (count > 0).then_some(cover.1 - 1),
                    },
                }
            }
        };
        let window = &mut session.window;
        window.elements.push(event.clone());
        if event.value < 50 {
            window.timer = None;
            window.count = 0;
            output.extend(function(&event.key, session.start, session.end, &window.elements));
            window.elements.clear();
        } else {
            window.count += 1;
            window.timer.get_or_insert(session.end - 1);
        }
        mine.push(session);
        if event.ts - 1 > watermark {
            watermark = event.ts - 1;
            advance(&mut sessions, watermark, &mut output);
        }
    }
    advance(&mut sessions, i64::MAX, &mut output);
    output.sort();
    (output, late)
}

#[test]
fn a_wasm_trigger_merges_its_state_when_session_windows_merge() {
    let mut events = events(43, 400);
    for (i, event) in events.iter_mut().enumerate() {
        event.ts += (i as i64 / 20) * 60;
    }
    let expected = session_marker_oracle(&events, 15, 40, sorted_values);
    let window = "function = \"sorted_values\"\nwindow = { type = \"session\", gap_ms = 15 }\nallowed_lateness_ms = 40\ntrigger = { type = \"wasm\", function = \"fire_on_marker\" }";
    assert_matches(&job(window), &events, &expected);
}

#[test]
fn a_count_trigger_with_a_count_evictor_slides_over_the_last_elements_of_a_key() {
    // Flink's `countWindow(5, 2)`: global windows, a count trigger of 2 and
    // a count evictor of 5: every second element of a key fires its last
    // five; elements left after the last firing never fire.
    let events = events(47, 300);
    let mut expected = Vec::new();
    let mut seen: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for event in &events {
        let elements = seen.entry(&event.key).or_default();
        elements.push(event.clone());
        if elements.len().is_multiple_of(2) {
            let last = &elements[elements.len().saturating_sub(5)..];
            expected.extend(sorted_values(&event.key, i64::MIN, i64::MAX, last));
        }
    }
    expected.sort();
    let window = "function = \"sorted_values\"\nwindow = { type = \"global\" }\ntrigger = { type = \"count\", count = 2 }\nevictor = { type = \"count\", count = 5 }";
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("input.txt", input(&events));
        work.run_ok(&job(window), &["--parallelism", parallelism]);
        assert_eq!(
            sorted_lines(&work.read("out.txt")),
            expected,
            "parallelism {parallelism}"
        );
    }
}

/// A Wasm trigger that fires by the wall clock (`fire_by_wall_clock`: a
/// processing-time timer 20 ms after the first element since the last
/// firing, then fire-and-purge), over a followed file: each firing holds
/// exactly what came since the one before.
#[test]
fn a_wasm_trigger_fires_and_purges_by_processing_time_timers() {
    const JOB: &str = r#"
[[source]]
uid = "lines"
type = "file"
path = "input.txt"
follow = true

[[operator]]
uid = "stamp"
input = "lines"
module = "testkit.wasm"
function = "stamp"
parallelism = 1

[[operator]]
uid = "win"
input = "stamp"
module = "testkit.wasm"
function = "sorted_values"
key_by = { module = "testkit.wasm", function = "first_word" }
window = { type = "tumbling", size_ms = 1000000 }
trigger = { type = "wasm", function = "fire_by_wall_clock" }

[[sink]]
uid = "out"
input = "win"
type = "file"
path = "out.txt"
"#;
    let work = Workdir::new();
    work.write("input.txt", "a 1 10\na 2 20\nb 3 30\n");
    let mut running = crate::harness::Running::start(&work, JOB);
    let first = running.wait_for_lines("out.txt", 2);
    assert_eq!(first, ["a,0,1000000,2,10,10 20", "b,0,1000000,1,30,30"]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(work.path("input.txt"))
        .expect("opens the input");
    std::io::Write::write_all(&mut file, b"a 4 40\n").expect("appends");
    let all = running.wait_for_lines("out.txt", 3);
    assert_eq!(
        all,
        ["a,0,1000000,1,40,40", "a,0,1000000,2,10,10 20", "b,0,1000000,1,30,30"],
        "the purged window fires again with the new element only"
    );
}
