//! The I/O side of an async operator: a small tokio runtime on a thread of
//! its own (never the subtask's), running each lookup request with its
//! timeout and retries, and handing the answers back over a channel that
//! the subtask's loop selects on.
//!
//! The answer goes on the `answers` channel first, then a token on the
//! one-slot `wake` channel (if it is empty): a subtask that takes the token
//! and then drains `answers` misses nothing, because an answer sent after
//! the drain finds the slot empty and leaves a new token.

use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::config::{LookupConfig, LookupKind, RetryConfig};

/// The answer to one request of record `id`.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The record's id in the operator.
    pub id: u64,
    /// Which of the record's requests.
    pub request: usize,
    /// The value found (`None`: nothing found), or why the last try failed.
    pub outcome: Result<Option<Vec<u8>>, String>,
}

/// Runs lookup requests on its own runtime thread.
pub(crate) struct LookupClient {
    handle: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    http: Client<HttpConnector, Empty<Bytes>>,
    answers_tx: Sender<Answer>,
    answers: Receiver<Answer>,
    wake_tx: Sender<()>,
    wake: Receiver<()>,
    timeout: Duration,
    retry: RetryConfig,
}

impl LookupClient {
    /// Starts the runtime thread (named `thread`).
    pub(crate) fn start(thread: String, timeout: Duration, retry: RetryConfig) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(thread).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        let http = {
            let _context = handle.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        let (answers_tx, answers) = crossbeam_channel::unbounded();
        let (wake_tx, wake) = crossbeam_channel::bounded(1);
        Ok(Self {
            handle,
            shutdown: Some(shutdown),
            thread: Some(thread),
            http,
            answers_tx,
            answers,
            wake_tx,
            wake,
            timeout,
            retry,
        })
    }

    /// Starts request `request` of record `id`: `key` from `lookup`.
    pub(crate) fn issue(&self, id: u64, request: usize, lookup: &LookupConfig, key: &str) {
        let LookupKind::Http { url } = &lookup.kind;
        let url = url.replace("{key}", &crate::record::url::segment(key));
        let (http, timeout, retry) = (self.http.clone(), self.timeout, self.retry);
        let (answers, wake) = (self.answers_tx.clone(), self.wake_tx.clone());
        self.handle.spawn(async move {
            let outcome = with_retries(timeout, retry, || http_get(&http, &url)).await;
            // The operator may be gone (its task failed): nobody to tell.
            let _ = answers.send(Answer { id, request, outcome });
            let _ = wake.try_send(());
        });
    }

    /// Ready (a token) when answers may be waiting.
    pub(crate) fn wakeup(&self) -> &Receiver<()> {
        &self.wake
    }

    /// An answer that has arrived, if any.
    pub(crate) fn try_answer(&self) -> Option<Answer> {
        self.answers.try_recv().ok()
    }

    /// The next answer, waiting at most `wait`.
    pub(crate) fn wait_answer(&self, wait: Duration) -> Option<Answer> {
        self.answers.recv_timeout(wait).ok()
    }
}

impl Drop for LookupClient {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `attempt` up to `retry.attempts` times, each within `timeout`,
/// waiting between tries; the error of the last try, with the count.
async fn with_retries<F, Fut>(timeout: Duration, retry: RetryConfig, mut attempt: F) -> Result<Option<Vec<u8>>, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<Vec<u8>>, String>>,
{
    let attempts = retry.attempts.max(1);
    let mut last = String::new();
    for number in 1..=attempts {
        if number > 1 {
            tokio::time::sleep(retry.delay_before(number)).await;
        }
        match tokio::time::timeout(timeout, attempt()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(error)) => last = error,
            Err(_) => last = format!("timed out after {} ms", timeout.as_millis()),
        }
    }
    Err(format!("{last} ({attempts} attempts)"))
}

/// GET `url`: 200 answers the body, 404 nothing, anything else is an error.
async fn http_get(http: &Client<HttpConnector, Empty<Bytes>>, url: &str) -> Result<Option<Vec<u8>>, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("GET {url}: bad URL: {e}"))?;
    let response = http.get(uri).await.map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    let status = response.status();
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {}", chain(&e)))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("GET {url}: HTTP {status}: {}", text.trim()));
    }
    Ok(Some(body.to_vec()))
}

/// An error and its causes, `: `-separated.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_is_reported_with_the_number_of_attempts() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let retry = RetryConfig {
            attempts: 3,
            delay: Duration::from_millis(1),
            backoff: 1.0,
        };
        let mut tries = 0;
        let outcome = runtime.block_on(with_retries(Duration::from_secs(5), retry, || {
            tries += 1;
            let number = tries;
            async move { Err(format!("try {number} failed")) }
        }));
        assert_eq!(outcome, Err("try 3 failed (3 attempts)".to_string()));
        let mut tries = 0;
        let outcome = runtime.block_on(with_retries(Duration::from_secs(5), retry, || {
            tries += 1;
            let number = tries;
            async move {
                if number < 2 {
                    Err("down".to_string())
                } else {
                    Ok(Some(b"up".to_vec()))
                }
            }
        }));
        assert_eq!(outcome, Ok(Some(b"up".to_vec())));
    }
}
