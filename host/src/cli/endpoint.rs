//! `weir run`'s HTTP endpoint and registry entry: the `--http*` flags over
//! the job file's `[http]` table, the token, the server and the entry that
//! tells the other commands where to find it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::control::commands::JobControl;
use crate::control::graph::GraphView;
use crate::control::http::{HttpServer, JobView};
use crate::control::http_auth::{Access, new_token};
use crate::control::registry::{self, JobEntry, Registration};
use crate::metrics::live::LiveMetrics;
use crate::plan::JobPlan;
use crate::plan::http::{HttpSettings, TlsFiles, Token};

/// The flags of `weir run` for its HTTP endpoint; each overrides the job
/// file's `[http]` table.
#[derive(Debug, Args)]
pub(super) struct HttpArgs {
    /// Port of the HTTP endpoint (metrics, REST API, control) (default 0:
    /// any free port; the address is printed and written into the job's
    /// registry entry).
    #[arg(long = "http", value_name = "PORT")]
    port: Option<u16>,
    /// Address the HTTP endpoint binds (default 127.0.0.1). On any address
    /// but loopback every request needs the bearer token.
    #[arg(long = "http-bind", value_name = "ADDR")]
    bind: Option<IpAddr>,
    /// The endpoint's bearer token (default: 32 random bytes in hex),
    /// written into the job's registry entry (mode 0600).
    #[arg(
        long = "http-token",
        value_name = "TOKEN",
        env = "WEIR_HTTP_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --http-key).
    #[arg(long = "http-cert", value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// The PEM private key of --http-cert.
    #[arg(long = "http-key", value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Serve /metrics without the token even on a non-loopback address.
    #[arg(long)]
    metrics_public: bool,
}

impl HttpArgs {
    /// The job file's settings with the flags over them.
    fn over(&self, file: &HttpSettings) -> anyhow::Result<HttpSettings> {
        let token = match &self.token {
            Some(token) => Some(Token::parse(token).map_err(|e| anyhow::anyhow!("--http-token: {e}"))?),
            None => file.token.clone(),
        };
        let tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => file.tls.clone(),
        };
        Ok(HttpSettings {
            bind: self.bind.or(file.bind),
            port: self.port.or(file.port),
            token,
            tls,
            metrics_public: self.metrics_public || file.metrics_public,
        })
    }
}

/// The running endpoint and the job's registry entry; both go when dropped,
/// the entry first (fields drop in order), so that no command finds a
/// closing endpoint.
pub(super) struct Endpoint {
    /// The registry entry (absent if it could not be written); held for its `Drop`.
    _registration: Option<Registration>,
    /// The server; held for its `Drop`.
    _server: HttpServer,
}

impl Endpoint {
    /// Starts the endpoint of `plan` (id and commands in `control`) and
    /// registers the job. Prints the id and the address unless `quiet`.
    pub(super) fn start(
        args: &HttpArgs,
        plan: &JobPlan,
        control: &JobControl,
        last_completed: Arc<std::sync::atomic::AtomicU64>,
        live: Arc<LiveMetrics>,
        quiet: bool,
    ) -> anyhow::Result<Self> {
        let settings = args.over(&plan.settings.http)?;
        let token = match settings.token {
            Some(Token(token)) => token,
            None => new_token().map_err(|e| anyhow::anyhow!("cannot generate the HTTP endpoint's token: {e}"))?,
        };
        let bind = settings.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let access = Arc::new(Access::new(token.clone(), bind, settings.metrics_public));
        let started_ms = crate::time::now_ms();
        let view = JobView {
            id: control.id.clone(),
            name: plan.name.clone(),
            started_ms,
            graph: GraphView::of(plan),
            live,
            last_completed: Some(last_completed),
            access,
        };
        let address = SocketAddr::new(bind, settings.port.unwrap_or(0));
        let server = HttpServer::start(address, settings.tls.as_ref(), view, control.clone())?;
        let url = format!("{}://{}", server.scheme(), server.address());
        tracing::info!("job `{}` has id {} and serves HTTP on {url}", plan.name, control.id);
        let cert = settings
            .tls
            .as_ref()
            .map(|tls| std::path::absolute(&tls.cert).unwrap_or_else(|_| tls.cert.clone()));
        let entry = JobEntry {
            id: control.id.clone(),
            name: plan.name.clone(),
            pid: std::process::id(),
            started_ms,
            http: server.address(),
            scheme: server.scheme().to_string(),
            token,
            cert,
        };
        let folder = registry::folder();
        let registration = match Registration::new(entry, folder) {
            Ok(registration) => Some(registration),
            Err(error) => {
                eprintln!(
                    "warning: job `{}` cannot register for `weir list` and the other commands: {error}",
                    plan.name
                );
                None
            }
        };
        if !quiet {
            eprintln!("weir: job `{}` has id {}", plan.name, control.id);
            eprintln!("weir: job `{}` serves HTTP on {url}", plan.name);
        }
        Ok(Self {
            _registration: registration,
            _server: server,
        })
    }
}
