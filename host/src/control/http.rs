//! The job's HTTP endpoint (`weir run --http PORT`): Prometheus metrics and
//! a REST API modelled on Flink's, bound to `127.0.0.1`.
//!
//! ```text
//! GET /metrics      the counters, Prometheus text format (see `metrics_text`)
//! GET /jobs         {"jobs": [{id, name, state, start_time_ms, uptime_ms}]}
//! GET /jobs/{id}    the job with its graph: vertices (uid, kind,
//!                   parallelism) and edges (from, to, partitioning)
//! anything else     404 (405 for another method) with {"error": "..."}
//! ```
//!
//! It runs on a single-threaded tokio runtime on a thread of its own, so it
//! never runs Wasm and never takes a subtask's thread: a request only reads
//! the relaxed atomics the runtime bumps once per batch
//! ([`crate::metrics::live`]). The server stops when dropped, in-flight
//! requests with it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::oneshot;

use super::graph::{ErrorBody, GraphView, JobDetails, JobOverview};
use super::metrics_text::{JobGauges, JobLabels, render};
use crate::metrics::live::LiveMetrics;

/// Errors starting the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The port could not be bound.
    #[error("cannot serve HTTP on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime or its thread could not be set up.
    #[error("cannot start the HTTP endpoint ({what}): {source}")]
    Setup {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// What the endpoint shows of one job.
#[derive(Debug)]
pub(crate) struct JobView {
    /// The job id (as in the registry).
    pub id: String,
    /// The job's name.
    pub name: String,
    /// When it started (wall clock, ms since the epoch).
    pub started_ms: i64,
    /// Its graph.
    pub graph: GraphView,
    /// Its counters.
    pub live: Arc<LiveMetrics>,
    /// The id of its last completed checkpoint, if the control API tracks it.
    pub last_completed: Option<Arc<AtomicU64>>,
}

impl JobView {
    fn overview(&self) -> JobOverview {
        JobOverview {
            id: self.id.clone(),
            name: self.name.clone(),
            state: "RUNNING",
            start_time_ms: self.started_ms,
            uptime_ms: (crate::time::now_ms() - self.started_ms).max(0),
        }
    }
}

/// A running HTTP endpoint; it stops when dropped.
#[derive(Debug)]
pub(crate) struct HttpServer {
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `127.0.0.1:port` (0: any free port) and serves `job` on a
    /// thread of its own.
    pub(crate) fn start(port: u16, job: JobView) -> Result<Self, HttpError> {
        let bind = |source| HttpError::Bind { port, source };
        let setup = |what| move |source| HttpError::Setup { what, source };
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(setup("tokio runtime"))?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = router(Arc::new(job));
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::warn!("HTTP endpoint {address}: {error}");
                            return;
                        }
                    };
                    tokio::spawn(async move {
                        if let Err(error) = axum::serve(listener, router).await {
                            tracing::warn!("HTTP endpoint {address}: {error}");
                        }
                    });
                    // Until dropped; then the runtime goes, and every
                    // connection with it.
                    let _ = stopped.await;
                });
            })
            .map_err(setup("thread"))?;
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The routes.
fn router(job: Arc<JobView>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job_details))
        .merge(super::dashboard::routes())
        .fallback(unknown_route)
        .with_state(job)
}

/// A JSON error answer.
fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

/// `GET /metrics`.
async fn metrics(State(job): State<Arc<JobView>>) -> Response {
    let labels = JobLabels {
        name: job.name.clone(),
        id: job.id.clone(),
    };
    let gauges = JobGauges {
        last_checkpoint: job.last_completed.as_ref().map_or(0, |id| id.load(Ordering::Relaxed)),
        uptime_seconds: (crate::time::now_ms() - job.started_ms).max(0) as f64 / 1000.0,
    };
    let text = render(&labels, gauges, &job.live.snapshot());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `GET /jobs`.
async fn jobs(State(job): State<Arc<JobView>>) -> Response {
    Json(serde_json::json!({ "jobs": [job.overview()] })).into_response()
}

/// `GET /jobs/{id}`.
async fn job_details(State(job): State<Arc<JobView>>, Path(id): Path<String>) -> Response {
    if id != job.id {
        return error(StatusCode::NOT_FOUND, format!("no job has the id `{id}`"));
    }
    Json(JobDetails {
        overview: job.overview(),
        graph: job.graph.clone(),
    })
    .into_response()
}

/// Any other path.
async fn unknown_route(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route for `{}`", uri.path()))
}
