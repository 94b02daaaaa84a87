//! The job's HTTP endpoint, which every `weir run` serves: Prometheus
//! metrics, a REST API modelled on Flink's, and the control routes
//! ([`super::http_control`]) that `weir savepoint`, `weir stop` and
//! `weir upgrade` call. It binds `127.0.0.1` on any free port unless told
//! otherwise (`--http PORT`, `--http-bind ADDR` or the `[http]` table),
//! serves HTTPS with `--http-cert`/`--http-key` ([`super::http_tls`]) and
//! lets in only callers with the job's bearer token where it must
//! ([`super::http_auth`]).
//!
//! ```text
//! GET /metrics      the counters, Prometheus text format (see `metrics_text`)
//! GET /jobs         {"jobs": [{id, name, state, start_time_ms, uptime_ms}]}
//! GET /jobs/{id}    the job with its graph: vertices (uid, kind,
//!                   parallelism) and edges (from, to, partitioning)
//! POST ...          the control routes (see `http_control`)
//! anything else     404 (405 for another method) with {"error": "..."}
//! ```
//!
//! It runs on a single-threaded tokio runtime on a thread of its own, so it
//! never runs Wasm and never takes a subtask's thread: a request only reads
//! the relaxed atomics the runtime bumps once per batch
//! ([`crate::metrics::live`]); control commands wait on blocking threads.
//! When dropped, the server stops accepting and gives requests in flight
//! (the answer to `weir stop`, say) up to [`GRACE`] to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener;
use axum::{Json, Router};
use tokio::sync::oneshot;

use super::commands::JobControl;
use super::graph::{GraphView, JobOverview};
use super::http_auth::{self, Access};
use super::http_tls::{self, TlsError, TlsListener};
use super::metrics_text::{CONTENT_TYPE, Scrape, render};
use super::rest::{self, error};
use crate::metrics::live::LiveMetrics;
use crate::plan::http::TlsFiles;

/// How long requests in flight may go on once the server is dropped.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// Errors starting the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The address could not be bound.
    #[error("cannot serve HTTP on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate or key cannot serve TLS.
    #[error(transparent)]
    Tls(#[from] TlsError),
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
    /// Who may call the endpoint, and how many were turned away
    /// (`access.unauthorized_requests()`).
    pub access: Arc<Access>,
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
    https: bool,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `address` (port 0: any free port) and serves `job` and its
    /// `control` routes on a thread of its own, over HTTPS with `tls`.
    pub(crate) fn start(
        address: SocketAddr,
        tls: Option<&TlsFiles>,
        job: JobView,
        control: JobControl,
    ) -> Result<Self, HttpError> {
        let bind = |source| HttpError::Bind { address, source };
        let setup = |what| move |source| HttpError::Setup { what, source };
        let tls = tls.map(http_tls::server_config).transpose()?;
        let listener = std::net::TcpListener::bind(address).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(setup("tokio runtime"))?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let live = Arc::clone(&job.live);
        let access = Arc::clone(&job.access);
        let app = router(Arc::new(job))
            .merge(super::http_control::routes(control, &access))
            .layer(from_fn_with_state(Arc::clone(&access), http_auth::everywhere))
            .layer(from_fn_with_state(access, http_auth::limit));
        let https = tls.is_some();
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
                    match tls {
                        None => serve(listener, app, stopped).await,
                        Some(config) => match TlsListener::new(listener, config) {
                            Ok(listener) => serve(listener, app, stopped).await,
                            Err(error) => tracing::warn!("HTTPS endpoint {address}: {error}"),
                        },
                    }
                });
                // Commands still waiting on blocking threads (the job ended
                // under them) are not waited for.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(setup("thread"))?;
        Ok(Self {
            address,
            https,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// `https` or `http`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// Serves `app` on `listener` until `stopped`, then lets requests in
/// flight finish for up to [`GRACE`].
async fn serve<L>(listener: L, app: Router, stopped: oneshot::Receiver<()>)
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let (closing, closed) = oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
        let _ = closing.send(());
    };
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
            tracing::warn!("HTTP endpoint: {error}");
        }
    });
    // Until dropped (or the server failed); then the grace period.
    let _ = closed.await;
    let _ = tokio::time::timeout(GRACE, server).await;
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
        unauthorized_requests: job.access.unauthorized_requests(),
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
