//! The live dashboard at `GET /` of the job's HTTP endpoint: one HTML page,
//! a style sheet and a script (`dashboard/`), embedded in the binary.
//!
//! The page itself holds no data: its script reads the REST routes
//! (`/jobs`, `/jobs/{id}`, `/jobs/{id}/vertices/{uid}`,
//! `/jobs/{id}/checkpoints`, `/jobs/{id}/exceptions`) every second and
//! draws the job graph (records/s, backpressure and watermark of each
//! vertex), per-subtask rates as bars, the checkpoint history and the
//! exceptions; a route that answers 404 or a missing field shows "—". With
//! `#token=TOKEN` in the page's URL it sends `Authorization: Bearer TOKEN`
//! on every request. The answers forbid anything but the page's own files
//! and requests (`Content-Security-Policy`).

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file of the dashboard.
#[derive(Debug)]
struct Asset {
    /// Where it is served.
    path: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its text.
    body: &'static str,
}

/// The dashboard's files.
static ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("dashboard/index.html"),
    },
    Asset {
        path: "/dashboard/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("dashboard/dashboard.css"),
    },
    Asset {
        path: "/dashboard/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/dashboard.js"),
    },
];

/// The page may load only its own files and talk only to its own origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Whether `path` is one of the dashboard's files: they hold no data, so a
/// browser may load them without a token (the page's own requests for data
/// send it).
pub(crate) fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|asset| asset.path == path)
}

/// The dashboard's routes (`GET /` and its two files), for any router state.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

/// The answer carrying `asset`.
fn serve(asset: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn every_file_is_served_whole_with_its_type_and_the_policy() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        for asset in &ASSETS {
            let response = serve(asset);
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            let value = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            assert_eq!(value(header::CONTENT_TYPE).as_deref(), Some(asset.content_type));
            assert_eq!(value(header::CONTENT_SECURITY_POLICY).as_deref(), Some(POLICY));
            assert_eq!(value(header::X_CONTENT_TYPE_OPTIONS).as_deref(), Some("nosniff"));
            assert_eq!(value(header::CACHE_CONTROL).as_deref(), Some("no-cache"));
            let body = runtime
                .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
                .expect("a body");
            assert_eq!(body, asset.body.as_bytes(), "{}", asset.path);
        }
    }

    #[test]
    fn the_page_loads_exactly_the_files_served_beside_it() {
        let page = ASSETS[0].body;
        let linked: Vec<&str> = page
            .split(['"', '\''])
            .filter(|part| part.starts_with("/dashboard/"))
            .collect();
        let served: Vec<&str> = ASSETS[1..].iter().map(|a| a.path).collect();
        assert_eq!(linked, served);
    }
}
