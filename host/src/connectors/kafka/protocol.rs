//! A small blocking client of Kafka's wire protocol, for the few requests
//! librdkafka does not offer: reading a partition's raw record batches
//! (with their producer ids, epochs and transaction markers) and ending
//! another producer's transaction with `EndTxn` (see [`super::resume`]).
//!
//! Messages are encoded and decoded by the `kafka-protocol` crate; this
//! module frames them (a 4-byte size, the request header, the body) over a
//! plain TCP connection. It runs only when a sink restores a checkpoint, on
//! the sink's subtask thread, like the other blocking calls at a restore.
//! It speaks `PLAINTEXT` only: a cluster that requires TLS or SASL is
//! refused with [`ProtocolError::Security`], naming the setting.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// How long connecting, and waiting for one response, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response accepted (a fetch asks for much less).
const MAX_RESPONSE: usize = 64 << 20;

/// Why a protocol exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// The connection failed or broke.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A message could not be encoded or decoded.
    #[error("{what}: {source}")]
    Codec {
        /// What was being encoded or decoded.
        what: String,
        /// The cause, from `kafka-protocol`.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The broker answered with an error code.
    #[error("{what}: the broker answered {source}")]
    Broker {
        /// The request.
        what: String,
        /// The broker's error.
        source: ResponseError,
    },
    /// The cluster's answer lacks what was asked for.
    #[error("{what}")]
    Missing {
        /// What is missing.
        what: String,
    },
    /// The cluster needs a security protocol this client does not speak.
    #[error("`security.protocol` is `{protocol}`: Weir's protocol client speaks only PLAINTEXT")]
    Security {
        /// The configured protocol.
        protocol: String,
    },
}

/// A broker's error code as a [`ProtocolError`] (`None` for no error).
pub(crate) fn check(code: i16, what: impl FnOnce() -> String) -> Result<(), ProtocolError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(source) => Err(ProtocolError::Broker { what: what(), source }),
    }
}

/// One connection to one broker.
pub(crate) struct Connection {
    stream: TcpStream,
    address: String,
    correlation: i32,
    client_id: StrBytes,
    buffer: BytesMut,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `address` (`host:port`).
    pub(crate) fn open(address: &str, client_id: &str) -> Result<Self, ProtocolError> {
        let io = |source| ProtocolError::Io {
            what: format!("cannot connect to Kafka broker {address}"),
            source,
        };
        let mut last = None;
        for socket in address.to_socket_addrs().map_err(io)? {
            match TcpStream::connect_timeout(&socket, IO_TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
                    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
                    stream.set_nodelay(true).map_err(io)?;
                    return Ok(Self {
                        stream,
                        address: address.to_string(),
                        correlation: 0,
                        client_id: StrBytes::from_string(client_id.to_string()),
                        buffer: BytesMut::new(),
                    });
                }
                Err(error) => last = Some(error),
            }
        }
        Err(io(last.unwrap_or_else(|| {
            std::io::Error::other("the address resolves to nothing")
        })))
    }

    /// Connects to the first reachable broker of `servers` (`host:port,...`).
    pub(crate) fn bootstrap(servers: &str, client_id: &str) -> Result<Self, ProtocolError> {
        let mut last = None;
        for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Self::open(server, client_id) {
                Ok(connection) => return Ok(connection),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| ProtocolError::Missing {
            what: "no bootstrap server given".into(),
        }))
    }

    /// The broker's address.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` at `version` and waits for its response.
    pub(crate) fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ProtocolError> {
        let name = std::any::type_name::<R>().rsplit("::").next().unwrap_or("request");
        let codec = |what: &str, source: anyhow::Error| ProtocolError::Codec {
            what: format!("{what} {name} for {}", self.address),
            source: source.into(),
        };
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        let buffer = &mut self.buffer;
        buffer.clear();
        buffer.extend_from_slice(&[0; 4]);
        header
            .encode(buffer, R::header_version(version))
            .map_err(|e| codec("cannot encode the header of", e))?;
        request.encode(buffer, version).map_err(|e| codec("cannot encode", e))?;
        let size = i32::try_from(buffer.len() - 4).map_err(|_| ProtocolError::Missing {
            what: format!("{name} is too large to send"),
        })?;
        buffer[..4].copy_from_slice(&size.to_be_bytes());
        let address = self.address.clone();
        let io = |what: &str| {
            let what = format!("{what} {name} (broker {address})");
            move |source| ProtocolError::Io { what, source }
        };
        self.stream.write_all(buffer).map_err(io("cannot send"))?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(io("no answer to"))?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > MAX_RESPONSE {
            return Err(ProtocolError::Missing {
                what: format!("the answer to {name} from {address} is too large ({size} bytes)"),
            });
        }
        buffer.clear();
        buffer.resize(size, 0);
        self.stream.read_exact(buffer).map_err(io("a broken answer to"))?;
        let mut body = buffer.split().freeze();
        let response_header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| codec("cannot decode the header of the answer to", e))?;
        if response_header.correlation_id != self.correlation {
            return Err(ProtocolError::Missing {
                what: format!(
                    "the answer to {name} from {address} has correlation id {} instead of {}",
                    response_header.correlation_id, self.correlation
                ),
            });
        }
        let response = R::Response::decode(&mut body, version).map_err(|e| codec("cannot decode the answer to", e))?;
        if body.has_remaining() {
            tracing::debug!("{} bytes left over after the answer to {name}", body.remaining());
        }
        Ok(response)
    }
}
