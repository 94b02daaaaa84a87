//! The REST API's read routes beyond the job list: a job with its graph and
//! live vertex metrics, one vertex per subtask, the checkpoint history and
//! the failures — their JSON bodies and handlers, modelled on Flink's
//! (`/jobs/:jobid`, `/jobs/:jobid/vertices/:vertexid`,
//! `/jobs/:jobid/checkpoints`, `/jobs/:jobid/exceptions`).
//!
//! A vertex's rate is the sum over its subtasks; its backpressure level is
//! the highest of its subtasks', as Flink's web UI shows it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::graph::{EdgeView, ErrorBody, JobOverview};
use super::http::JobView;
use crate::metrics::live::{Backpressure, SubtaskRates, VertexSnapshot};
use crate::metrics::subtask::SubtaskSnapshot;

/// A vertex's live metrics, as `GET /jobs/{id}` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct VertexSummary {
    /// Records received (all subtasks).
    pub records_in: u64,
    /// Records emitted (all subtasks).
    pub records_out: u64,
    /// Records received per second, over the last second.
    pub records_in_per_second: f64,
    /// Records emitted per second, over the last second.
    pub records_out_per_second: f64,
    /// The highest backpressure level of its subtasks.
    pub backpressure: Backpressure,
    /// The lowest input watermark of its subtasks, ms (none before the first).
    pub input_watermark_ms: Option<i64>,
    /// The lowest output watermark of its subtasks, ms.
    pub output_watermark_ms: Option<i64>,
}

/// A vertex of the graph with its metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LiveVertex {
    /// The vertex's uid.
    pub uid: String,
    /// `source`, `operator` or `sink`.
    pub kind: &'static str,
    /// Its number of parallel subtasks.
    pub parallelism: u32,
    /// Its metrics now.
    pub metrics: VertexSummary,
}

/// The body of `GET /jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LiveJob {
    /// Id, name, state and uptime.
    #[serde(flatten)]
    pub overview: JobOverview,
    /// The vertices, every one after its inputs.
    pub vertices: Vec<LiveVertex>,
    /// The edges.
    pub edges: Vec<EdgeView>,
}

/// One subtask of a vertex, as `GET /jobs/{id}/vertices/{uid}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SubtaskView {
    /// Its index.
    pub subtask: u32,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes emitted.
    pub bytes_out: u64,
    /// Records received per second.
    pub records_in_per_second: f64,
    /// Records emitted per second.
    pub records_out_per_second: f64,
    /// Milliseconds per second spent processing.
    pub busy_ms_per_second: f64,
    /// Milliseconds per second spent waiting for input.
    pub idle_ms_per_second: f64,
    /// Milliseconds per second spent waiting on a full output channel.
    pub backpressured_ms_per_second: f64,
    /// ok, low or high.
    pub backpressure: Backpressure,
    /// Its event time, ms.
    pub input_watermark_ms: Option<i64>,
    /// The last watermark it emitted, ms.
    pub output_watermark_ms: Option<i64>,
    /// Wall clock minus its output watermark, ms.
    pub watermark_lag_ms: Option<i64>,
    /// Records too late for every window.
    pub late_records_dropped: u64,
    /// Wasm calls made (one per batch).
    pub wasm_calls: u64,
}

/// The body of `GET /jobs/{id}/vertices/{uid}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct VertexDetails {
    /// The vertex's uid.
    pub uid: String,
    /// `source`, `operator` or `sink`.
    pub kind: &'static str,
    /// Its number of parallel subtasks.
    pub parallelism: u32,
    /// The highest level of its subtasks.
    pub backpressure: Backpressure,
    /// Each subtask.
    pub subtasks: Vec<SubtaskView>,
}

/// A JSON error answer.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

/// The 404 of an unknown job id.
fn unknown_job(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no job has the id `{id}`"))
}

/// A watermark worth showing (not the end-of-input or start sentinels).
fn shown(watermark: Option<i64>) -> Option<i64> {
    watermark.filter(|w| *w > i64::MIN / 2 && *w < i64::MAX / 2)
}

fn subtask_view(snapshot: &SubtaskSnapshot, rates: &SubtaskRates, now_ms: i64) -> SubtaskView {
    let output_watermark_ms = shown(snapshot.output_watermark);
    SubtaskView {
        subtask: snapshot.index,
        records_in: snapshot.records_in,
        records_out: snapshot.records_out,
        bytes_in: snapshot.bytes_in,
        bytes_out: snapshot.bytes_out,
        records_in_per_second: rates.records_in,
        records_out_per_second: rates.records_out,
        busy_ms_per_second: rates.busy_ms,
        idle_ms_per_second: rates.idle_ms,
        backpressured_ms_per_second: rates.backpressured_ms,
        backpressure: rates.backpressure(),
        input_watermark_ms: shown(snapshot.input_watermark),
        output_watermark_ms,
        watermark_lag_ms: output_watermark_ms.map(|w| now_ms.saturating_sub(w)),
        late_records_dropped: snapshot.late,
        wasm_calls: snapshot.wasm_calls.count(),
    }
}

/// Every subtask of `vertex`, with its rates.
fn subtasks(job: &JobView, vertex: &VertexSnapshot) -> Vec<SubtaskView> {
    let now = crate::time::now_ms();
    vertex
        .subtasks
        .iter()
        .map(|s| subtask_view(s, &job.live.rates(&vertex.uid, s.index), now))
        .collect()
}

fn summary(views: &[SubtaskView]) -> VertexSummary {
    let lowest = |read: fn(&SubtaskView) -> Option<i64>| {
        // A subtask without a watermark holds the vertex's back.
        if views.iter().any(|v| read(v).is_none()) {
            None
        } else {
            views.iter().filter_map(read).min()
        }
    };
    VertexSummary {
        records_in: views.iter().map(|v| v.records_in).sum(),
        records_out: views.iter().map(|v| v.records_out).sum(),
        records_in_per_second: views.iter().map(|v| v.records_in_per_second).sum(),
        records_out_per_second: views.iter().map(|v| v.records_out_per_second).sum(),
        backpressure: views.iter().map(|v| v.backpressure).max().unwrap_or(Backpressure::Ok),
        input_watermark_ms: lowest(|v| v.input_watermark_ms),
        output_watermark_ms: lowest(|v| v.output_watermark_ms),
    }
}

/// `GET /jobs/{id}`.
pub(crate) async fn job_details(State(job): State<Arc<JobView>>, Path(id): Path<String>) -> Response {
    if id != job.id {
        return unknown_job(&id);
    }
    let snapshot = job.live.snapshot();
    let vertices = job
        .graph
        .vertices
        .iter()
        .map(|vertex| {
            let views = snapshot
                .vertices
                .iter()
                .find(|v| v.uid == vertex.uid)
                .map(|v| subtasks(&job, v))
                .unwrap_or_default();
            LiveVertex {
                uid: vertex.uid.clone(),
                kind: vertex.kind,
                parallelism: vertex.parallelism,
                metrics: summary(&views),
            }
        })
        .collect();
    Json(LiveJob {
        overview: job.overview(),
        vertices,
        edges: job.graph.edges.clone(),
    })
    .into_response()
}

/// `GET /jobs/{id}/vertices/{uid}`.
pub(crate) async fn vertex_details(
    State(job): State<Arc<JobView>>,
    Path((id, uid)): Path<(String, String)>,
) -> Response {
    if id != job.id {
        return unknown_job(&id);
    }
    let Some(vertex) = job.graph.vertices.iter().find(|v| v.uid == uid) else {
        return error(StatusCode::NOT_FOUND, format!("job `{id}` has no vertex `{uid}`"));
    };
    let snapshot = job.live.snapshot();
    let views = snapshot
        .vertices
        .iter()
        .find(|v| v.uid == uid)
        .map(|v| subtasks(&job, v))
        .unwrap_or_default();
    Json(VertexDetails {
        uid: vertex.uid.clone(),
        kind: vertex.kind,
        parallelism: vertex.parallelism,
        backpressure: summary(&views).backpressure,
        subtasks: views,
    })
    .into_response()
}

/// `GET /jobs/{id}/checkpoints`.
pub(crate) async fn checkpoints(State(job): State<Arc<JobView>>, Path(id): Path<String>) -> Response {
    if id != job.id {
        return unknown_job(&id);
    }
    Json(job.live.checkpoints().view()).into_response()
}

/// `GET /jobs/{id}/exceptions`.
pub(crate) async fn exceptions(State(job): State<Arc<JobView>>, Path(id): Path<String>) -> Response {
    if id != job.id {
        return unknown_job(&id);
    }
    Json(job.live.exceptions().view()).into_response()
}
