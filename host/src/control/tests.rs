//! The HTTP endpoint in process: requests turned away are counted
//! ([`super::http_auth::Access::unauthorized_requests`]), those let in are not.

use std::net::SocketAddr;
use std::sync::Arc;

use super::commands::JobControl;
use super::graph::GraphView;
use super::http::{HttpServer, JobView};
use super::http_auth::Access;
use crate::metrics::live::LiveMetrics;

/// `METHOD url` with `token`: the status and body.
fn call(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let request = match method {
        "GET" => agent.get(url).force_send_body(),
        _ => agent.post(url),
    };
    let request = match token {
        Some(token) => request.header("Authorization", &format!("Bearer {token}")),
        None => request,
    };
    let mut response = request.send("{}").expect("an answer");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("a body"))
}

#[test]
fn unauthorized_requests_are_counted_and_others_are_not() {
    let token = "t0ken-t0ken-t0ken-t0ken";
    let access = Arc::new(Access::new(token.into(), [0, 0, 0, 0].into(), true));
    let (control, _api) = JobControl::new("00000000000000aa", "demo", false);
    let view = JobView {
        id: control.id.clone(),
        name: "demo".into(),
        started_ms: crate::time::now_ms(),
        graph: GraphView {
            vertices: Vec::new(),
            edges: Vec::new(),
        },
        live: Arc::new(LiveMetrics::default()),
        last_completed: None,
        access: Arc::clone(&access),
    };
    let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), None, view, control).expect("serves");
    let base = format!("http://{}", server.address());
    assert_eq!(server.scheme(), "http");
    let savepoints = format!("{base}/jobs/00000000000000aa/savepoints");
    let missing = call("POST", &savepoints, None);
    assert_eq!(missing.0, 401, "{}", missing.1);
    let wrong = call("POST", &savepoints, Some("wrong-wrong-wrong-wrong"));
    assert_eq!(wrong, (401, r#"{"error":"wrong bearer token"}"#.to_string()));
    assert_eq!(access.unauthorized_requests(), 2);
    // Bound to every interface in the rules: GET needs the token too, but
    // /metrics is public here.
    assert_eq!(call("GET", &format!("{base}/jobs"), None).0, 401);
    assert_eq!(access.unauthorized_requests(), 3);
    assert_eq!(call("GET", &format!("{base}/metrics"), None).0, 200);
    assert_eq!(call("GET", &format!("{base}/jobs"), Some(token)).0, 200);
    assert_eq!(
        call("POST", &savepoints, Some(token)),
        (
            409,
            r#"{"error":"job `demo` has no [checkpoint] table; savepoints need checkpointing"}"#.to_string()
        )
    );
    assert_eq!(access.unauthorized_requests(), 3);
    drop(server);
    assert!(std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err());
}
