//! `GET /metrics`: the job's counters in the Prometheus text exposition
//! format (version 0.0.4), written straight from a [`Snapshot`] of the
//! runtime's atomics.
//!
//! Names follow Flink's metrics (`numRecordsIn` becomes
//! `weir_operator_num_records_in`) so that dashboards translate. Counters are
//! kept per vertex (all its subtasks together), not per subtask: each series
//! is labelled with `job`, `job_id`, `uid` and `kind`. Every family has its
//! `# HELP` and `# TYPE` lines, and every vertex a sample, zeros included, so
//! a series exists from the job's start.

use std::fmt::Write as _;

use crate::metrics::live::Snapshot;

/// What the job-wide series are labelled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobLabels {
    /// The job's name.
    pub name: String,
    /// The job id.
    pub id: String,
}

/// Job-wide values that do not come from the runtime's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct JobGauges {
    /// The id of the last completed checkpoint (0: none yet).
    pub last_checkpoint: u64,
    /// Seconds since the job started.
    pub uptime_seconds: f64,
}

/// One family of per-vertex counters: name, help, and the value it reads.
type VertexFamily = (
    &'static str,
    &'static str,
    fn(&crate::metrics::live::VertexSnapshot) -> u64,
);

/// The per-vertex counter families.
const VERTEX_FAMILIES: &[VertexFamily] = &[
    (
        "weir_operator_num_records_in",
        "Records the vertex received, over all its subtasks (Flink's numRecordsIn).",
        |v| v.records_in,
    ),
    (
        "weir_operator_num_records_out",
        "Records the vertex emitted, over all its subtasks (Flink's numRecordsOut).",
        |v| v.records_out,
    ),
    (
        "weir_operator_num_late_records_dropped",
        "Records too late for every window (Flink's numLateRecordsDropped).",
        |v| v.late,
    ),
];

/// Escapes a label value: backslash, double quote and newline.
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

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The text of `GET /metrics` for `snapshot`.
pub(crate) fn render(job: &JobLabels, gauges: JobGauges, snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let job_labels = format!("job=\"{}\",job_id=\"{}\"", escape(&job.name), escape(&job.id));
    for (name, help, value) in VERTEX_FAMILIES {
        header(&mut out, name, "counter", help);
        for vertex in &snapshot.vertices {
            let kind = match vertex.role {
                crate::metrics::VertexRole::Source => "source",
                crate::metrics::VertexRole::Operator => "operator",
                crate::metrics::VertexRole::Sink => "sink",
            };
            let _ = writeln!(
                out,
                "{name}{{{job_labels},uid=\"{}\",kind=\"{kind}\"}} {}",
                escape(&vertex.uid),
                value(vertex)
            );
        }
    }
    let job_series: [(&str, &str, &str, String); 4] = [
        (
            "weir_job_num_dead_letters",
            "counter",
            "Records sent to the job's dead-letter file.",
            snapshot.dead_letters.to_string(),
        ),
        (
            "weir_job_num_restarts",
            "counter",
            "Restarts after failures (Flink's numRestarts).",
            snapshot.restarts.to_string(),
        ),
        (
            "weir_job_last_completed_checkpoint_id",
            "gauge",
            "The id of the last completed checkpoint, 0 for none.",
            gauges.last_checkpoint.to_string(),
        ),
        (
            "weir_job_uptime_seconds",
            "gauge",
            "Seconds since the job started (Flink's uptime).",
            format!("{:.3}", gauges.uptime_seconds),
        ),
    ];
    for (name, kind, help, value) in job_series {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name}{{{job_labels}}} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::VertexRole;
    use crate::metrics::live::VertexSnapshot;

    #[test]
    fn every_family_has_help_type_and_one_sample_a_vertex() {
        let job = JobLabels {
            name: "a \"quoted\" \\ job".into(),
            id: "00ff".into(),
        };
        let snapshot = Snapshot {
            vertices: vec![
                VertexSnapshot {
                    uid: "lines".into(),
                    role: VertexRole::Source,
                    records_in: 0,
                    records_out: 7,
                    late: 0,
                },
                VertexSnapshot {
                    uid: "win".into(),
                    role: VertexRole::Operator,
                    records_in: 7,
                    records_out: 2,
                    late: 1,
                },
            ],
            dead_letters: 3,
            restarts: 1,
        };
        let gauges = JobGauges {
            last_checkpoint: 12,
            uptime_seconds: 1.5,
        };
        let labels = r#"job="a \"quoted\" \\ job",job_id="00ff""#;
        let expected = format!(
            "# HELP weir_operator_num_records_in Records the vertex received, over all its subtasks (Flink's numRecordsIn).
# TYPE weir_operator_num_records_in counter
weir_operator_num_records_in{{{labels},uid=\"lines\",kind=\"source\"}} 0
weir_operator_num_records_in{{{labels},uid=\"win\",kind=\"operator\"}} 7
# HELP weir_operator_num_records_out Records the vertex emitted, over all its subtasks (Flink's numRecordsOut).
# TYPE weir_operator_num_records_out counter
weir_operator_num_records_out{{{labels},uid=\"lines\",kind=\"source\"}} 7
weir_operator_num_records_out{{{labels},uid=\"win\",kind=\"operator\"}} 2
# HELP weir_operator_num_late_records_dropped Records too late for every window (Flink's numLateRecordsDropped).
# TYPE weir_operator_num_late_records_dropped counter
weir_operator_num_late_records_dropped{{{labels},uid=\"lines\",kind=\"source\"}} 0
weir_operator_num_late_records_dropped{{{labels},uid=\"win\",kind=\"operator\"}} 1
# HELP weir_job_num_dead_letters Records sent to the job's dead-letter file.
# TYPE weir_job_num_dead_letters counter
weir_job_num_dead_letters{{{labels}}} 3
# HELP weir_job_num_restarts Restarts after failures (Flink's numRestarts).
# TYPE weir_job_num_restarts counter
weir_job_num_restarts{{{labels}}} 1
# HELP weir_job_last_completed_checkpoint_id The id of the last completed checkpoint, 0 for none.
# TYPE weir_job_last_completed_checkpoint_id gauge
weir_job_last_completed_checkpoint_id{{{labels}}} 12
# HELP weir_job_uptime_seconds Seconds since the job started (Flink's uptime).
# TYPE weir_job_uptime_seconds gauge
weir_job_uptime_seconds{{{labels}}} 1.500
"
        );
        assert_eq!(render(&job, gauges, &snapshot), expected);
    }
}
