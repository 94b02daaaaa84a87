//! The CLI's side of the control API: blocking HTTP(S) requests to a job's
//! endpoint, with the job's bearer token, trusting (for HTTPS) only the
//! certificate its registry entry names. No proxy is ever used: the token
//! goes to the job and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::ControlError;
use super::registry::JobEntry;

/// How long connecting to a job may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one job's endpoint.
pub(crate) struct Client {
    agent: Agent,
    base: String,
    token: String,
    id: String,
}

impl Client {
    /// A client for `job`, from its registry entry.
    pub(crate) fn new(job: &JobEntry) -> Result<Self, ControlError> {
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT));
        if let Some(cert) = &job.cert {
            let pem = std::fs::read(cert).map_err(|source| ControlError::Io {
                what: "cannot read the job's certificate",
                path: cert.clone(),
                source,
            })?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                })
                .collect::<Result<Vec<Certificate<'static>>, _>>()
                .map_err(|e| ControlError::Certificate {
                    path: cert.clone(),
                    reason: e.to_string(),
                })?;
            let tls = TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(certs)))
                .build();
            config = config.tls_config(tls);
        }
        let address = job.reachable();
        Ok(Self {
            agent: config.build().into(),
            base: format!("{}://{address}", job.scheme),
            token: job.token.clone(),
            id: job.id.clone(),
        })
    }

    /// `POST path` with the JSON `body`; the JSON answer of a 2xx status,
    /// else the job's error message.
    pub(crate) fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, ControlError> {
        let url = format!("{}{path}", self.base);
        let sent = self
            .agent
            .post(url.as_str())
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        let (status, text) = self.answer(sent)?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ControlError::Protocol(format!("{e}: {text}")))?;
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            Err(ControlError::Refused(
                json["error"]
                    .as_str()
                    .map_or_else(|| format!("status {status}: {text}"), str::to_string),
            ))
        }
    }

    /// `GET path`: the body of a 2xx answer.
    pub(crate) fn get(&self, path: &str) -> Result<String, ControlError> {
        let url = format!("{}{path}", self.base);
        let sent = self
            .agent
            .get(url.as_str())
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        match self.answer(sent)? {
            (200..300, text) => Ok(text),
            (status, text) => Err(ControlError::Refused(format!("status {status}: {text}"))),
        }
    }

    /// The status and body of an answer.
    fn answer(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), ControlError> {
        let unreachable = |source: ureq::Error| ControlError::Unreachable {
            id: self.id.clone(),
            url: self.base.clone(),
            source: Box::new(source),
        };
        let mut response = sent.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        Ok((status, text))
    }
}

/// `text` as one percent-encoded path segment.
pub(crate) use crate::record::url::segment;
