//! The control routes of the HTTP endpoint: savepoints, stop with a
//! savepoint, and upgrades of an operator's module. Every one needs the
//! job's bearer token ([`super::http_auth::always`]).
//!
//! ```text
//! POST /jobs/{id}/savepoints               {"target_directory": "DIR"?} -> {"path": "..."}
//! POST /jobs/{id}/stop                     {"target_directory": "DIR"?} -> {"path": "..."}
//! POST /jobs/{id}/vertices/{uid}/upgrade   {"module": "PATH"}           -> {"message": "..."}
//! ```
//!
//! An empty body counts as `{}`. A malformed body is answered 400 with
//! serde's message; an unknown job or operator 404; a command the job
//! cannot carry out 409 (no checkpointing, ending, an upgrade under way),
//! 422 (an upgrade refused) or 500 (a savepoint failed). Relative paths are
//! relative to the job's working folder (the CLI sends absolute ones). The
//! command runs on a blocking thread: a savepoint waits for its checkpoint,
//! an upgrade for the job to run again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::commands::{CommandError, JobControl};
use super::http_auth::{Access, always};
use super::rest::error;

/// Largest request body of a control route.
const MAX_BODY: usize = 64 * 1024;
/// Longest a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The control routes of `control`'s job, behind the token of `access`.
pub(crate) fn routes(control: JobControl, access: &Arc<Access>) -> Router {
    let guarded =
        |route: MethodRouter<Arc<JobControl>>| route.route_layer(from_fn_with_state(Arc::clone(access), always));
    Router::new()
        .route("/jobs/{id}/savepoints", guarded(post(savepoint)))
        .route("/jobs/{id}/stop", guarded(post(stop)))
        .route("/jobs/{id}/vertices/{uid}/upgrade", guarded(post(upgrade)))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(control))
}

/// The body of `POST /jobs/{id}/savepoints` and `POST /jobs/{id}/stop`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavepointBody {
    /// The folder to create the savepoint in (default: the job's).
    target_directory: Option<PathBuf>,
}

/// The body of `POST /jobs/{id}/vertices/{uid}/upgrade`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpgradeBody {
    /// The new module's file.
    module: PathBuf,
}

/// `POST /jobs/{id}/savepoints`.
async fn savepoint(
    State(control): State<Arc<JobControl>>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<SavepointBody>,
) -> Response {
    take_savepoint(control, id, body, false).await
}

/// `POST /jobs/{id}/stop`.
async fn stop(
    State(control): State<Arc<JobControl>>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<SavepointBody>,
) -> Response {
    take_savepoint(control, id, body, true).await
}

async fn take_savepoint(
    control: Arc<JobControl>,
    id: Result<Path<String>, PathRejection>,
    body: SavepointBody,
    stop: bool,
) -> Response {
    if let Some(refused) = not_this_job(&control, id.map(|Path(id)| id)) {
        return refused;
    }
    let taken = blocking(move || control.savepoint(body.target_directory, stop)).await;
    match taken {
        Ok(Ok(path)) => Json(serde_json::json!({ "path": path.display().to_string() })).into_response(),
        Ok(Err(failed)) => refusal(&failed),
        Err(response) => response,
    }
}

/// `POST /jobs/{id}/vertices/{uid}/upgrade`.
async fn upgrade(
    State(control): State<Arc<JobControl>>,
    ids: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<UpgradeBody>,
) -> Response {
    let (id, uid) = match ids {
        Ok(Path((id, uid))) => (Ok(id), uid),
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    if let Some(refused) = not_this_job(&control, id) {
        return refused;
    }
    match blocking(move || control.upgrade(&uid, &body.module)).await {
        Ok(Ok(message)) => Json(serde_json::json!({ "message": message })).into_response(),
        Ok(Err(failed)) => refusal(&failed),
        Err(response) => response,
    }
}

/// `None` if `id` is the job's id; else the 404 (or 400) answer.
fn not_this_job(control: &JobControl, id: Result<String, PathRejection>) -> Option<Response> {
    match id {
        Ok(id) if id == control.id => None,
        Ok(id) => Some(error(StatusCode::NOT_FOUND, format!("no job has the id `{id}`"))),
        Err(rejection) => Some(error(rejection.status(), rejection.body_text())),
    }
}

/// Runs `command` on a blocking thread.
async fn blocking<T: Send + 'static>(command: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(command).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the command did not complete: {e}"),
        )
    })
}

/// The answer to a command the job did not carry out.
fn refusal(failed: &CommandError) -> Response {
    let status = match failed {
        failed if failed.is_unknown_operator() => StatusCode::NOT_FOUND,
        CommandError::NoCheckpointing { .. } | CommandError::Ending | CommandError::UpgradeUnderWay(_) => {
            StatusCode::CONFLICT
        }
        CommandError::Refused(_) | CommandError::Upgrade(_) => StatusCode::UNPROCESSABLE_ENTITY,
        CommandError::Failed(_) | CommandError::Abandoned => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, failed.to_string())
}

/// A JSON request body whose rejections are JSON errors: 400 with serde's
/// message for a malformed body, 413 for one over [`MAX_BODY`], 408 for one
/// that does not arrive within [`BODY_TIMEOUT`]. An empty body is `{}`.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = match tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(request, state)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(rejection)) => return Err(error(rejection.status(), rejection.body_text())),
            Err(_) => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
                ));
            }
        };
        let text: &[u8] = if bytes.trim_ascii().is_empty() { b"{}" } else { &bytes };
        Json::<T>::from_bytes(text)
            .map(|Json(body)| Self(body))
            .map_err(|rejection| error(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}
