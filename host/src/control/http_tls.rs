//! HTTPS for the HTTP endpoint (`--http-cert`, `--http-key`): the rustls
//! configuration from PEM files, and a listener for axum's `serve` that
//! hands it connections once their TLS handshake is done.
//!
//! Handshakes run in tasks of their own, at most [`MAX_HANDSHAKES`] at once
//! and each for at most [`HANDSHAKE_TIMEOUT`], so a client that never
//! finishes its handshake holds up no one else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::plan::http::TlsFiles;

/// Most TLS handshakes in progress at once; connections beyond are closed.
pub(crate) const MAX_HANDSHAKES: usize = 128;
/// Longest a TLS handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A PEM file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path} holds no PEM {what}: {reason}")]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// rustls refused the certificate and key (say, they do not match).
    #[error("the certificate {cert} and key {key} cannot serve TLS: {source}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The rustls server configuration of `files` (HTTP/1.1, TLS 1.2 and 1.3).
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let pem = |what, path: &Path| {
        let path = path.to_path_buf();
        move |error: rustls::pki_types::pem::Error| TlsError::Pem {
            what,
            path,
            reason: error.to_string(),
        }
    };
    let cert_pem = read("certificate", &files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("certificate", &files.cert))?;
    if certs.is_empty() {
        return Err(pem("certificate", &files.cert)(
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    let key_pem = read("private key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem("private key", &files.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = |source| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections have completed their TLS handshake.
pub(crate) struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` and shakes hands with `config`; must be called
    /// inside the endpoint's tokio runtime.
    pub(crate) fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept(listener, TlsAcceptor::from(config), sender));
        Ok(Self { local, accepted })
    }
}

/// Accepts connections and shakes hands with each in a task of its own.
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    while !sender.is_closed() {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait a little, as axum does.
                tracing::debug!("HTTPS accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            tracing::debug!("HTTPS: too many handshakes in progress; closing the connection from {peer}");
            continue;
        };
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!("TLS handshake with {peer} failed: {error}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task is gone (the runtime is shutting down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
