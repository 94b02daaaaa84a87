//! `GET /metrics`: the job's counters in the OpenMetrics text format (which
//! Prometheus reads), encoded by `prometheus-client` from a [`Snapshot`] of
//! the runtime's atomics taken at the scrape.
//!
//! Names follow Flink's metrics (`numRecordsIn` becomes
//! `weir_operator_num_records_in_total`, `busyTimeMsPerSecond` becomes
//! `weir_operator_busy_time_ms_per_second`) so that dashboards translate.
//! Operator series are per subtask, labelled `job`, `job_id`, `uid`, `kind`
//! and `subtask`; job series carry `job` and `job_id`. Every subtask has a
//! sample from the job's start, zeros included. The list of names is in the
//! README ("Metrics").

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::VertexRole;
use crate::metrics::checkpoints::CheckpointSummary;
use crate::metrics::histogram::Histogram;
use crate::metrics::live::{Snapshot, SubtaskRates};
use crate::metrics::subtask::SubtaskSnapshot;

/// The content type of the answer.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one scrape encodes.
#[derive(Debug, Clone)]
pub(crate) struct Scrape {
    /// The job's name.
    pub name: String,
    /// The job id.
    pub id: String,
    /// The counters.
    pub snapshot: Snapshot,
    /// Per vertex (as in `snapshot`) and subtask, the rates of the last second.
    pub rates: Vec<Vec<SubtaskRates>>,
    /// Checkpoint counts, last values and histograms.
    pub checkpoints: CheckpointSummary,
    /// The id of the last completed checkpoint (0: none yet).
    pub last_checkpoint: u64,
    /// Seconds since the job started.
    pub uptime_seconds: f64,
    /// Wall clock now, ms (for the watermark lag).
    pub now_ms: i64,
    /// Requests refused for a missing or wrong token.
    pub unauthorized_requests: u64,
}

/// The text of `GET /metrics` for `scrape`.
pub(crate) fn render(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Escapes a label value as the text format wants (backslash, double
/// quote, newline): `prometheus-client` writes label values as given.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn kind_name(role: VertexRole) -> &'static str {
    match role {
        VertexRole::Source => "source",
        VertexRole::Operator => "operator",
        VertexRole::Sink => "sink",
    }
}

/// What a per-subtask family reads: a count, a gauge or a histogram.
#[derive(Debug)]
enum Reading {
    Counter(u64),
    Gauge(f64),
    Histogram(Histogram),
}

/// One per-subtask family: name, help, type, and what it reads.
type SubtaskFamily = (
    &'static str,
    &'static str,
    MetricType,
    fn(&SubtaskSnapshot, &SubtaskRates, i64) -> Option<Reading>,
);

/// The per-subtask families.
const SUBTASK_FAMILIES: &[SubtaskFamily] = &[
    (
        "weir_operator_num_records_in",
        "Records received (Flink's numRecordsIn).",
        MetricType::Counter,
        |s, _, _| Some(Reading::Counter(s.records_in)),
    ),
    (
        "weir_operator_num_records_out",
        "Records emitted (Flink's numRecordsOut).",
        MetricType::Counter,
        |s, _, _| Some(Reading::Counter(s.records_out)),
    ),
    (
        "weir_operator_num_bytes_in",
        "Payload bytes received (Flink's numBytesIn).",
        MetricType::Counter,
        |s, _, _| Some(Reading::Counter(s.bytes_in)),
    ),
    (
        "weir_operator_num_bytes_out",
        "Payload bytes emitted (Flink's numBytesOut).",
        MetricType::Counter,
        |s, _, _| Some(Reading::Counter(s.bytes_out)),
    ),
    (
        "weir_operator_num_records_in_per_second",
        "Records received per second over the last second (Flink's numRecordsInPerSecond).",
        MetricType::Gauge,
        |_, r, _| Some(Reading::Gauge(r.records_in)),
    ),
    (
        "weir_operator_num_records_out_per_second",
        "Records emitted per second over the last second (Flink's numRecordsOutPerSecond).",
        MetricType::Gauge,
        |_, r, _| Some(Reading::Gauge(r.records_out)),
    ),
    (
        "weir_operator_busy_time_ms_per_second",
        "Milliseconds per second spent processing (Flink's busyTimeMsPerSecond).",
        MetricType::Gauge,
        |_, r, _| Some(Reading::Gauge(r.busy_ms)),
    ),
    (
        "weir_operator_idle_time_ms_per_second",
        "Milliseconds per second spent waiting for input (Flink's idleTimeMsPerSecond).",
        MetricType::Gauge,
        |_, r, _| Some(Reading::Gauge(r.idle_ms)),
    ),
    (
        "weir_operator_backpressured_time_ms_per_second",
        "Milliseconds per second spent waiting on a full output channel (Flink's backPressuredTimeMsPerSecond).",
        MetricType::Gauge,
        |_, r, _| Some(Reading::Gauge(r.backpressured_ms)),
    ),
    (
        "weir_operator_current_input_watermark",
        "The operator's event time, ms (Flink's currentInputWatermark); absent before the first watermark.",
        MetricType::Gauge,
        |s, _, _| s.input_watermark.map(|w| Reading::Gauge(w as f64)),
    ),
    (
        "weir_operator_current_output_watermark",
        "The last watermark emitted, ms (Flink's currentOutputWatermark).",
        MetricType::Gauge,
        |s, _, _| s.output_watermark.map(|w| Reading::Gauge(w as f64)),
    ),
    (
        "weir_operator_watermark_lag_ms",
        "Wall clock minus the last watermark emitted, ms.",
        MetricType::Gauge,
        |s, _, now| {
            s.output_watermark
                .filter(|w| *w > i64::MIN / 2 && *w < i64::MAX / 2)
                .map(|w| Reading::Gauge(now.saturating_sub(w) as f64))
        },
    ),
    (
        "weir_operator_num_late_records_dropped",
        "Records too late for every window (Flink's numLateRecordsDropped).",
        MetricType::Counter,
        |s, _, _| Some(Reading::Counter(s.late)),
    ),
    (
        "weir_operator_wasm_call_seconds",
        "Duration of the subtask's Wasm calls, one per batch.",
        MetricType::Histogram,
        |s, _, _| Some(Reading::Histogram(s.wasm_calls.clone())),
    ),
    (
        "weir_operator_checkpoint_alignment_seconds",
        "Checkpoint alignment: the first barrier to the last (Flink's checkpointAlignmentTime).",
        MetricType::Histogram,
        |s, _, _| Some(Reading::Histogram(s.alignment.clone())),
    ),
    (
        "weir_operator_checkpoint_start_delay_seconds",
        "Checkpoint start delay: the trigger to the first barrier (Flink's checkpointStartDelayNanos).",
        MetricType::Histogram,
        |s, _, _| Some(Reading::Histogram(s.start_delay.clone())),
    ),
    (
        "weir_operator_last_checkpoint_alignment_seconds",
        "The last checkpoint's alignment.",
        MetricType::Gauge,
        |s, _, _| Some(Reading::Gauge(s.last_alignment_nanos as f64 / 1e9)),
    ),
    (
        "weir_operator_last_checkpoint_start_delay_seconds",
        "The last checkpoint's start delay.",
        MetricType::Gauge,
        |s, _, _| Some(Reading::Gauge(s.last_start_delay_nanos as f64 / 1e9)),
    ),
];

fn encode_reading(encoder: &mut prometheus_client::encoding::MetricEncoder<'_>, reading: &Reading) -> std::fmt::Result {
    match reading {
        Reading::Counter(value) => encoder.encode_counter::<NoLabelSet, u64, u64>(value, None),
        Reading::Gauge(value) => encoder.encode_gauge(value),
        Reading::Histogram(histogram) => {
            encoder.encode_histogram::<NoLabelSet>(histogram.sum(), histogram.count(), &histogram.cumulative(), None)
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let (name, id) = (escape(&self.name), escape(&self.id));
        let job = [("job", name.as_str()), ("job_id", id.as_str())];
        let no_rates = SubtaskRates::default();
        for (name, help, kind, read) in SUBTASK_FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
            for (v, vertex) in self.snapshot.vertices.iter().enumerate() {
                let uid = escape(&vertex.uid);
                for (s, subtask) in vertex.subtasks.iter().enumerate() {
                    let rates = self.rates.get(v).and_then(|r| r.get(s)).unwrap_or(&no_rates);
                    let Some(reading) = read(subtask, rates, self.now_ms) else {
                        continue;
                    };
                    let index = subtask.index.to_string();
                    let labels = [
                        job[0],
                        job[1],
                        ("uid", uid.as_str()),
                        ("kind", kind_name(vertex.role)),
                        ("subtask", index.as_str()),
                    ];
                    encode_reading(&mut family.encode_family(&labels)?, &reading)?;
                }
            }
        }
        let checkpoints = &self.checkpoints;
        {
            let mut sizes = encoder.encode_descriptor(
                "weir_operator_state_size_bytes",
                "Keyed state of the last completed checkpoint, by operator and backend (Flink's checkpointedSize).",
                None,
                MetricType::Gauge,
            )?;
            for ((uid, backend), bytes) in &checkpoints.state_sizes {
                let (uid, backend) = (escape(uid), escape(backend));
                let labels = [job[0], job[1], ("uid", uid.as_str()), ("backend", backend.as_str())];
                sizes.encode_family(&labels)?.encode_gauge(bytes)?;
            }
        }
        let job_families: [(&str, &str, MetricType, Reading); 11] = [
            (
                "weir_job_num_dead_letters",
                "Records sent to the job's dead-letter output.",
                MetricType::Counter,
                Reading::Counter(self.snapshot.dead_letters),
            ),
            (
                "weir_job_num_restarts",
                "Restarts after failures (Flink's numRestarts).",
                MetricType::Counter,
                Reading::Counter(self.snapshot.restarts),
            ),
            (
                "weir_job_last_completed_checkpoint_id",
                "The id of the last completed checkpoint, 0 for none.",
                MetricType::Gauge,
                Reading::Gauge(self.last_checkpoint as f64),
            ),
            (
                "weir_job_uptime_seconds",
                "Seconds since the job started (Flink's uptime).",
                MetricType::Gauge,
                Reading::Gauge(self.uptime_seconds),
            ),
            (
                "weir_job_num_completed_checkpoints",
                "Checkpoints completed (Flink's numberOfCompletedCheckpoints).",
                MetricType::Counter,
                Reading::Counter(checkpoints.counts.completed),
            ),
            (
                "weir_job_num_failed_checkpoints",
                "Checkpoints failed (Flink's numberOfFailedCheckpoints).",
                MetricType::Counter,
                Reading::Counter(checkpoints.counts.failed),
            ),
            (
                "weir_job_last_checkpoint_duration_seconds",
                "The last completed checkpoint's duration (Flink's lastCheckpointDuration).",
                MetricType::Gauge,
                Reading::Gauge(checkpoints.last_duration_ms as f64 / 1000.0),
            ),
            (
                "weir_job_last_checkpoint_size_bytes",
                "The last completed checkpoint's state size (Flink's lastCheckpointSize).",
                MetricType::Gauge,
                Reading::Gauge(checkpoints.last_size_bytes as f64),
            ),
            (
                "weir_job_checkpoint_duration_seconds",
                "Durations of completed checkpoints.",
                MetricType::Histogram,
                Reading::Histogram(checkpoints.durations.clone()),
            ),
            (
                "weir_job_checkpoint_size_bytes",
                "State sizes of completed checkpoints.",
                MetricType::Histogram,
                Reading::Histogram(checkpoints.sizes.clone()),
            ),
            (
                "weir_http_unauthorized_requests",
                "HTTP requests refused for a missing or wrong token.",
                MetricType::Counter,
                Reading::Counter(self.unauthorized_requests),
            ),
        ];
        for (name, help, kind, reading) in &job_families {
            let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
            encode_reading(&mut family.encode_family(&job)?, reading)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SubtaskMetrics;
    use crate::metrics::live::VertexSnapshot;

    fn scrape() -> Scrape {
        let lines = SubtaskMetrics::new(0);
        lines.add_out(7, 70);
        lines.set_output_watermark(1_000);
        let win = SubtaskMetrics::new(1);
        win.add_in(7, 70);
        win.add_late(1);
        win.observe_wasm_call(std::time::Duration::from_millis(2));
        Scrape {
            name: "a \"quoted\" \\ job".into(),
            id: "00ff".into(),
            snapshot: Snapshot {
                vertices: vec![
                    VertexSnapshot {
                        uid: "lines".into(),
                        role: VertexRole::Source,
                        subtasks: vec![lines.snapshot()],
                    },
                    VertexSnapshot {
                        uid: "win".into(),
                        role: VertexRole::Operator,
                        subtasks: vec![win.snapshot()],
                    },
                ],
                dead_letters: 3,
                restarts: 1,
            },
            rates: vec![vec![SubtaskRates {
                records_out: 2.5,
                backpressured_ms: 600.0,
                ..SubtaskRates::default()
            }]],
            checkpoints: crate::metrics::checkpoints::CheckpointHistory::default().summary(),
            last_checkpoint: 12,
            uptime_seconds: 1.5,
            now_ms: 1_250,
            unauthorized_requests: 4,
        }
    }

    #[test]
    fn every_subtask_has_its_series_and_the_job_its_own() {
        let text = render(scrape());
        let job = r#"job="a \"quoted\" \\ job",job_id="00ff""#;
        let lines = format!(r#"{job},uid="lines",kind="source",subtask="0""#);
        let win = format!(r#"{job},uid="win",kind="operator",subtask="1""#);
        for expected in [
            "# TYPE weir_operator_num_records_in counter".to_string(),
            format!("weir_operator_num_records_in_total{{{lines}}} 0"),
            format!("weir_operator_num_records_in_total{{{win}}} 7"),
            format!("weir_operator_num_bytes_out_total{{{lines}}} 70"),
            format!("weir_operator_num_records_out_per_second{{{lines}}} 2.5"),
            format!("weir_operator_backpressured_time_ms_per_second{{{lines}}} 600.0"),
            format!("weir_operator_current_output_watermark{{{lines}}} 1000.0"),
            format!("weir_operator_watermark_lag_ms{{{lines}}} 250.0"),
            format!("weir_operator_num_late_records_dropped_total{{{win}}} 1"),
            format!("weir_operator_wasm_call_seconds_count{{{win}}} 1"),
            format!("weir_operator_wasm_call_seconds_bucket{{le=\"0.005\",{win}}} 1"),
            format!("weir_job_num_dead_letters_total{{{job}}} 3"),
            format!("weir_job_num_restarts_total{{{job}}} 1"),
            format!("weir_job_last_completed_checkpoint_id{{{job}}} 12.0"),
            format!("weir_http_unauthorized_requests_total{{{job}}} 4"),
            "# EOF".to_string(),
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "no line `{expected}` in\n{text}"
            );
        }
        // No watermark yet: no sample rather than a made-up one.
        assert!(!text.contains(&format!("weir_operator_current_input_watermark{{{lines}}}")));
    }
}
