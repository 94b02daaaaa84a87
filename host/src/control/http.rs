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

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::oneshot;

use super::graph::{GraphView, JobOverview};
use super::metrics_text::{CONTENT_TYPE, Scrape, render};
use super::rest::{self, error};
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
    /// Id, name, state and uptime.
    pub(crate) fn overview(&self) -> JobOverview {
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
        let live = Arc::clone(&job.live);
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
                    // Rates come from a sample a second.
                    tokio::spawn(async move {
                        let mut every_second = tokio::time::interval(std::time::Duration::from_secs(1));
                        loop {
                            every_second.tick().await;
                            live.sample();
                        }
                    });
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
        .route("/jobs/{id}", get(rest::job_details))
        .route("/jobs/{id}/vertices/{uid}", get(rest::vertex_details))
        .route("/jobs/{id}/checkpoints", get(rest::checkpoints))
        .route("/jobs/{id}/exceptions", get(rest::exceptions))
        .route("/openapi.json", get(openapi))
        .merge(super::dashboard::routes())
        .fallback(unknown_route)
        .with_state(job)
}

/// `GET /metrics`.
async fn metrics(State(job): State<Arc<JobView>>) -> Response {
    let snapshot = job.live.snapshot();
    let rates = snapshot
        .vertices
        .iter()
        .map(|v| v.subtasks.iter().map(|s| job.live.rates(&v.uid, s.index)).collect())
        .collect();
    let now_ms = crate::time::now_ms();
    let text = render(Scrape {
        name: job.name.clone(),
        id: job.id.clone(),
        snapshot,
        rates,
        checkpoints: job.live.checkpoints().summary(),
        last_checkpoint: job.last_completed.as_ref().map_or(0, |id| id.load(Ordering::Relaxed)),
        uptime_seconds: (now_ms - job.started_ms).max(0) as f64 / 1000.0,
        now_ms,
        unauthorized_requests: 0,
    });
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// `GET /openapi.json`: the API's OpenAPI 3 description.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// `GET /jobs`.
async fn jobs(State(job): State<Arc<JobView>>) -> Response {
    Json(serde_json::json!({ "jobs": [job.overview()] })).into_response()
}

/// Any other path.
async fn unknown_route(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route for `{}`", uri.path()))
}
