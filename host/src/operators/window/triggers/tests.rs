//! Unit tests of processing-time windows and triggers: a real window
//! operator running the testkit `concat` aggregate, with a manual clock, so
//! that every firing is exact.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crossbeam_channel::Receiver;

use crate::exchange::dead_letter::DeadLetters;
use crate::exchange::message::Message;
use crate::exchange::output::{Output, OutputEdge, Route};
use crate::metrics::SubtaskMetrics;
use crate::operators::window::WindowOperator;
use crate::operators::window_config::{Trigger, WindowConfig};
use crate::operators::{KeyedContext, Operator, OperatorContext};
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::KeyGroupRange;
use crate::state::TimerService;
use crate::state::heap::HeapBackend;
use crate::time::TimeDomain;
use crate::time::clock::ManualClock;
use crate::time::windows::WindowAssigner;
use crate::wasm::Limits;
use crate::wasm::instance::InstanceSpec;
use crate::wasm::instance::WindowAggregateUdf;
use crate::wasm::{EngineOptions, WasmRuntime};

/// The testkit component, built once (into this test binary's target folder).
fn testkit() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary has a path");
        // <target>/<profile>/deps/weir-<hash>
        let target = exe.ancestors().nth(3).expect("<target>/<profile>/deps").to_path_buf();
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .current_dir(&workspace)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "testkit",
                "--target-dir",
            ])
            .arg(&target)
            .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building testkit failed");
        target.join("wasm32-wasip2/release/testkit.wasm")
    })
}

/// A window operator running `concat`, its output and its clock.
struct Harness {
    operator: WindowOperator,
    out: Output,
    results: Receiver<Message>,
    clock: ManualClock,
}

impl Harness {
    fn new(assigner: WindowAssigner, time: TimeDomain, trigger: Trigger, start: i64) -> Self {
        let runtime = WasmRuntime::new(EngineOptions::default()).expect("engine");
        let module = runtime.load(testkit()).expect("testkit loads");
        let limits = Limits {
            call_timeout_ms: 10_000,
            memory_bytes: 256 << 20,
        };
        let spec = InstanceSpec {
            operator: "win",
            module: &module,
            function: "concat",
            params: &[],
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            limits,
            on_call: None,
        };
        let instance = WindowAggregateUdf::start(runtime.engine(), &spec, None).expect("concat starts");
        let metrics = Arc::new(SubtaskMetrics::new(0));
        let config = WindowConfig {
            assigner,
            allowed_lateness_ms: 0,
            late_output: None,
            trigger,
            time,
            functions: Default::default(),
        };
        let clock = ManualClock::new(start);
        let context = OperatorContext::new(
            "win",
            "testkit.wasm".into(),
            Arc::clone(&metrics),
            KeyGroupRange::for_subtask(0, 1, 128),
            1024,
        );
        let context = KeyedContext::new(context, Box::new(HeapBackend::new()), TimerService::new());
        let operator = WindowOperator::new(context, instance, config)
            .expect("operator")
            .with_clock(clock.clone());
        let (sender, results) = crossbeam_channel::unbounded();
        let dead = std::env::temp_dir().join(format!("weir-window-triggers-{}.jsonl", std::process::id()));
        let out = Output::new(
            vec![OutputEdge::new(None, vec![sender], Route::Forward)],
            Arc::new(DeadLetters::new(&dead)),
            metrics,
        );
        Self {
            operator,
            out,
            results,
            clock,
        }
    }

    /// Processes records `key text` (event time `timestamp`) at clock `now`.
    fn records(&mut self, now: i64, records: &[(&str, i64)]) {
        self.clock.set(now);
        let mut batch = RecordBatch::default();
        for (text, timestamp) in records {
            let key = text.split(' ').next().unwrap_or_default();
            batch.push_keyed(text.as_bytes(), *timestamp, key.as_bytes());
        }
        self.operator.process_batch(batch, &mut self.out).expect("batch");
    }

    /// The clock reaches `now`, as the task loop reports it.
    fn clock(&mut self, now: i64) -> Vec<String> {
        self.clock.set(now);
        if self.operator.next_processing_time().is_some_and(|due| due <= now) {
            self.operator.on_processing_time(now, &mut self.out).expect("timers");
        }
        self.emitted()
    }

    fn watermark(&mut self, watermark: EventTime) -> Vec<String> {
        self.operator.on_watermark(watermark, &mut self.out).expect("watermark");
        self.emitted()
    }

    /// What the operator emitted since the last call, in order.
    fn emitted(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(message) = self.results.try_recv() {
            if let Message::Data(batch) = message {
                lines.extend(batch.iter().map(|r| String::from_utf8_lossy(r.payload).into_owned()));
            }
        }
        lines
    }
}

fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| s.to_string()).collect()
}

const PROCESSING: Trigger = Trigger::ProcessingTime { purge: false };

#[test]
fn processing_time_tumbling_windows_take_records_by_the_clock_and_fire_when_it_passes_their_end() {
    let tumbling = WindowAssigner::Tumbling { size: 1_000, offset: 0 };
    let mut h = Harness::new(tumbling, TimeDomain::ProcessingTime, PROCESSING, 0);
    // Event timestamps are ignored: the clock (10 500) places the records.
    h.records(10_500, &[("a 1", 5), ("b 1", 99_999), ("a 2", -7)]);
    h.records(10_900, &[("a 3", 0)]);
    assert_eq!(h.operator.next_processing_time(), Some(11_000));
    assert_eq!(h.clock(10_999), Vec::<String>::new());
    // A record at the window's last millisecond is still in it.
    h.records(10_999, &[("b 2", 0)]);
    assert_eq!(
        h.clock(11_000),
        lines(&["a,10000,11000,a 1|a 2|a 3", "b,10000,11000,b 1|b 2"])
    );
    // A watermark does nothing to processing-time windows.
    h.records(11_000, &[("a 4", 0)]);
    assert_eq!(h.watermark(50_000), Vec::<String>::new());
    h.records(12_300, &[("a 5", 0)]);
    assert_eq!(h.clock(12_000), lines(&["a,11000,12000,a 4"]));
    // The end of the input fires what is still open.
    assert_eq!(h.watermark(EventTime::MAX), lines(&["a,12000,13000,a 5"]));
    assert_eq!(h.clock(20_000), Vec::<String>::new());
}

#[test]
fn processing_time_windows_follow_the_offset() {
    let shifted = WindowAssigner::Tumbling {
        size: 1_000,
        offset: 300,
    };
    let mut h = Harness::new(shifted, TimeDomain::ProcessingTime, PROCESSING, 0);
    h.records(10_250, &[("a 1", 0)]);
    h.records(10_300, &[("a 2", 0)]);
    assert_eq!(h.clock(10_300), lines(&["a,9300,10300,a 1"]));
    assert_eq!(h.clock(11_300), lines(&["a,10300,11300,a 2"]));
}

#[test]
fn processing_time_sliding_windows_fire_each_window_by_the_clock() {
    let sliding = WindowAssigner::Sliding {
        size: 1_000,
        slide: 500,
        offset: 0,
    };
    let mut h = Harness::new(sliding, TimeDomain::ProcessingTime, PROCESSING, 0);
    h.records(10_200, &[("a 1", 0)]);
    h.records(10_700, &[("a 2", 0)]);
    assert_eq!(h.clock(10_500), lines(&["a,9500,10500,a 1"]));
    assert_eq!(h.clock(11_000), lines(&["a,10000,11000,a 1|a 2"]));
    assert_eq!(h.clock(11_500), lines(&["a,10500,11500,a 2"]));
    assert_eq!(h.watermark(EventTime::MAX), Vec::<String>::new());
}

#[test]
fn processing_time_sessions_merge_by_the_clock_and_fire_after_the_gap() {
    let sessions = WindowAssigner::Session { gap: 100 };
    let mut h = Harness::new(sessions, TimeDomain::ProcessingTime, PROCESSING, 0);
    h.records(1_000, &[("a 1", 0), ("b 1", 0)]);
    h.records(1_050, &[("a 2", 0)]);
    // b's session [1000, 1100) ends; a's grew to [1000, 1150).
    assert_eq!(h.clock(1_100), lines(&["b,1000,1100,b 1"]));
    h.records(1_140, &[("a 3", 0)]);
    assert_eq!(h.clock(1_240), lines(&["a,1000,1240,a 1|a 2|a 3"]));
    h.records(1_300, &[("a 4", 0)]);
    assert_eq!(h.watermark(EventTime::MAX), lines(&["a,1300,1400,a 4"]));
}

#[test]
fn the_processing_time_trigger_fires_event_time_windows_by_the_clock() {
    let tumbling = WindowAssigner::Tumbling { size: 10, offset: 0 };
    let mut h = Harness::new(tumbling, TimeDomain::EventTime, PROCESSING, 0);
    h.records(0, &[("a 1", 3), ("a 2", 12), ("b 1", 5)]);
    // No watermark at all: the clock passing 9 fires [0, 10).
    assert_eq!(h.clock(10), lines(&["a,0,10,a 1", "b,0,10,b 1"]));
    h.records(10, &[("a 3", 7)]);
    assert_eq!(h.clock(10), lines(&["a,0,10,a 1|a 3"]));
    assert_eq!(h.clock(20), lines(&["a,10,20,a 2"]));
    // The watermark cleans [0, 10) up: a later record for it is late.
    assert_eq!(h.watermark(9), Vec::<String>::new());
    h.records(30, &[("a 4", 8)]);
    assert_eq!(h.clock(40), Vec::<String>::new());
}

#[test]
fn the_purging_processing_time_trigger_empties_the_window_at_each_firing() {
    let tumbling = WindowAssigner::Tumbling { size: 10, offset: 0 };
    let mut h = Harness::new(
        tumbling,
        TimeDomain::EventTime,
        Trigger::ProcessingTime { purge: true },
        0,
    );
    h.records(0, &[("a 1", 3)]);
    assert_eq!(h.clock(10), lines(&["a,0,10,a 1"]));
    h.records(10, &[("a 2", 4)]);
    assert_eq!(h.clock(10), lines(&["a,0,10,a 2"]));
    assert_eq!(h.watermark(EventTime::MAX), Vec::<String>::new());
}

#[test]
fn the_continuous_processing_time_trigger_fires_every_interval_up_to_the_end() {
    let tumbling = WindowAssigner::Tumbling { size: 1_000, offset: 0 };
    let continuous = Trigger::ContinuousProcessingTime {
        interval_ms: 300,
        purge: false,
    };
    let mut h = Harness::new(tumbling, TimeDomain::ProcessingTime, continuous, 0);
    // First record at 10 100: firings at the multiples of 300 (10 200,
    // 10 500, 10 800) and at the window's last millisecond.
    h.records(10_100, &[("a 1", 0)]);
    assert_eq!(h.operator.next_processing_time(), Some(10_201));
    assert_eq!(h.clock(10_200), Vec::<String>::new());
    assert_eq!(h.clock(10_201), lines(&["a,10000,11000,a 1"]));
    h.records(10_400, &[("a 2", 0), ("b 1", 0)]);
    // b's first firing is aligned to the epoch too: 10 500.
    assert_eq!(h.clock(10_501), lines(&["a,10000,11000,a 1|a 2", "b,10000,11000,b 1"]));
    // The clock jumps over 10 800 to the end: both firings happen.
    assert_eq!(
        h.clock(11_000),
        lines(&[
            "a,10000,11000,a 1|a 2",
            "b,10000,11000,b 1",
            "a,10000,11000,a 1|a 2",
            "b,10000,11000,b 1",
        ])
    );
    assert_eq!(h.clock(20_000), Vec::<String>::new());
    h.records(20_050, &[("a 3", 0)]);
    assert_eq!(h.watermark(EventTime::MAX), lines(&["a,20000,21000,a 3"]));
}

#[test]
fn the_purging_continuous_processing_time_trigger_emits_only_what_is_new() {
    let tumbling = WindowAssigner::Tumbling { size: 1_000, offset: 0 };
    let continuous = Trigger::ContinuousProcessingTime {
        interval_ms: 300,
        purge: true,
    };
    let mut h = Harness::new(tumbling, TimeDomain::ProcessingTime, continuous, 0);
    h.records(10_100, &[("a 1", 0)]);
    assert_eq!(h.clock(10_201), lines(&["a,10000,11000,a 1"]));
    h.records(10_400, &[("a 2", 0)]);
    assert_eq!(h.clock(10_501), lines(&["a,10000,11000,a 2"]));
    // Nothing new: the firing at 10 800 emits nothing, but the trigger
    // goes on and fires what arrives before the end.
    assert_eq!(h.clock(10_801), Vec::<String>::new());
    h.records(10_950, &[("a 3", 0)]);
    assert_eq!(h.clock(11_000), lines(&["a,10000,11000,a 3"]));
}

fn continuous_sessions(purge: bool) -> Harness {
    let sessions = WindowAssigner::Session { gap: 100 };
    let continuous = Trigger::ContinuousEventTime { interval_ms: 50, purge };
    Harness::new(sessions, TimeDomain::EventTime, continuous, 0)
}

#[test]
fn continuous_event_time_sessions_merge_their_next_firing() {
    let mut h = continuous_sessions(false);
    // [10, 110): first firing at 50 (the multiple of 50 after 10).
    h.records(0, &[("a 1", 10)]);
    assert_eq!(h.watermark(49), Vec::<String>::new());
    assert_eq!(h.watermark(50), lines(&["a,10,110,a 1"]));
    // Merged into [10, 180), which keeps the next firing (100).
    h.records(0, &[("a 2", 80)]);
    assert_eq!(h.watermark(100), lines(&["a,10,180,a 1|a 2"]));
    // 150, then the end (179) in one watermark step.
    assert_eq!(h.watermark(179), lines(&["a,10,180,a 1|a 2", "a,10,180,a 1|a 2"]));
    assert_eq!(h.watermark(EventTime::MAX), Vec::<String>::new());
}

#[test]
fn purged_sessions_still_merge_and_fire_only_what_is_new() {
    let mut h = continuous_sessions(true);
    h.records(0, &[("a 1", 10)]);
    assert_eq!(h.watermark(50), lines(&["a,10,110,a 1"]));
    // The purged [10, 110) is still there: `a 2` merges with it.
    h.records(0, &[("a 2", 80)]);
    assert_eq!(h.watermark(100), lines(&["a,10,180,a 2"]));
    assert_eq!(h.watermark(179), Vec::<String>::new());
    h.records(0, &[("a 3", 300)]);
    assert_eq!(h.watermark(EventTime::MAX), lines(&["a,300,400,a 3"]));
}
