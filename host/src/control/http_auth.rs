//! Who may call the HTTP endpoint, and how many at once.
//!
//! - A bearer token (`Authorization: Bearer TOKEN`) is required on every
//!   request that changes anything (every POST route) and, when the
//!   endpoint is bound to an address other than loopback, on every request
//!   (`/metrics` excepted if it is public, and the dashboard's static files,
//!   which hold no data: the page sends the token with its own requests). A missing or wrong token gets
//!   401 with a JSON error and is counted
//!   ([`Access::unauthorized_requests`]).
//! - At most [`MAX_IN_FLIGHT`] requests are served at once; beyond, 503
//!   with a JSON error, at once, so a flood gets errors instead of queueing
//!   and the job is not disturbed.
//!
//! The token is compared in constant time.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use super::rest::error;

/// Most requests served at once.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// The endpoint's access rules, its token and the count of requests it
/// turned away. Its `Debug` form leaves the token out.
pub(crate) struct Access {
    token: String,
    everywhere: bool,
    metrics_public: bool,
    unauthorized: AtomicU64,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("everywhere", &self.everywhere)
            .field("metrics_public", &self.metrics_public)
            .field("unauthorized", &self.unauthorized)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// The rules for an endpoint bound to `bind` with `token`: the token is
    /// needed on every request unless `bind` is a loopback address
    /// (`/metrics` excepted if `metrics_public`).
    pub(crate) fn new(token: String, bind: IpAddr, metrics_public: bool) -> Self {
        Self {
            token,
            everywhere: !bind.is_loopback(),
            metrics_public,
            unauthorized: AtomicU64::new(0),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Requests answered 401 so far (missing or wrong token); for
    /// `weir_http_unauthorized_requests_total`.
    pub(crate) fn unauthorized_requests(&self) -> u64 {
        self.unauthorized.load(Ordering::Relaxed)
    }

    /// `None` if `request` carries the token, else the 401 answer (counted).
    fn check(&self, request: &Request) -> Option<Response> {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let message = match presented {
            Some(token) if same(token.as_bytes(), self.token.as_bytes()) => return None,
            Some(_) => "wrong bearer token",
            None => {
                "this request needs the job's bearer token (`Authorization: Bearer TOKEN`; `weir run` writes it into the job's registry entry)"
            }
        };
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut response = error(StatusCode::UNAUTHORIZED, message.to_string());
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Some(response)
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new token: 32 random bytes from the operating system, in hex.
pub(crate) fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(crate::storage::files::hex(&bytes))
}

/// Middleware on every request: the token when the endpoint is not on
/// loopback (`/metrics` excepted if public, and the dashboard's files, which
/// hold no data: a browser cannot send a header when it loads a page).
pub(crate) async fn everywhere(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let public = (access.metrics_public && path == "/metrics")
        || (request.method() == axum::http::Method::GET && super::dashboard::is_asset(path));
    if access.everywhere
        && !public
        && let Some(refused) = access.check(&request)
    {
        return refused;
    }
    next.run(request).await
}

/// Middleware on the routes that change anything: the token, always.
pub(crate) async fn always(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    if let Some(refused) = access.check(&request) {
        return refused;
    }
    next.run(request).await
}

/// Middleware on every request: at most [`MAX_IN_FLIGHT`] at once, 503 beyond.
pub(crate) async fn limit(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&access.in_flight).try_acquire_owned() else {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many requests in flight (at most {MAX_IN_FLIGHT}); try again"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly_and_are_64_hex_digits() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        let token = new_token().expect("random bytes");
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(token, new_token().expect("random bytes"));
    }

    #[test]
    fn only_non_loopback_endpoints_need_the_token_everywhere() {
        let local = Access::new("t".repeat(16), IpAddr::from([127, 0, 0, 1]), false);
        assert!(!local.everywhere);
        let any = Access::new("t".repeat(16), IpAddr::from([0, 0, 0, 0]), false);
        assert!(any.everywhere);
        let v6 = Access::new("t".repeat(16), "::1".parse().expect("an address"), false);
        assert!(!v6.everywhere);
    }
}
