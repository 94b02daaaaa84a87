//! A SASL/PLAIN gate in front of the test broker.
//!
//! nisshi 0.6.0's own SASL (`--authentication`) never completes a
//! handshake with librdkafka, and librdkafka's mock cluster has no SASL.
//! This proxy speaks the SASL part of Kafka's protocol itself: it answers
//! `SaslHandshake` (offering PLAIN) and `SaslAuthenticate` (checking the
//! exact user and password), forwards everything else to the broker once
//! the connection is authenticated, and adds the two SASL APIs to the
//! broker's `ApiVersions` answer. A connection that sends anything else
//! before authenticating, or the wrong password, is refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiVersionsResponse, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes, decode_request_header_from_buffer};

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
/// Kafka's SASL_AUTHENTICATION_FAILED.
const AUTHENTICATION_FAILED: i16 = 58;

/// The running proxy; stops accepting when dropped.
pub struct SaslProxy {
    /// The port it listens on (loopback).
    pub port: u16,
    /// Connections that authenticated with the right password.
    pub authenticated: Arc<AtomicUsize>,
    /// Authentications refused.
    pub refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SaslProxy {
    /// Listens on a free loopback port, gating `upstream` with `user` and
    /// `password`.
    pub fn start(upstream: &str, user: &str, password: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let authenticated = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let token: Bytes = format!("\0{user}\0{password}").into_bytes().into();
        let (upstream, flag) = (upstream.to_string(), stop.clone());
        let (ok, bad) = (authenticated.clone(), refused.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (upstream, token, ok, bad) = (upstream.clone(), token.clone(), ok.clone(), bad.clone());
                std::thread::spawn(move || serve(client, &upstream, &token, &ok, &bad));
            }
        });
        Self {
            port,
            authenticated,
            refused,
            stop,
        }
    }
}

impl Drop for SaslProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accepting thread.
        TcpStream::connect(("127.0.0.1", self.port)).ok();
    }
}

/// Reads one size-prefixed frame, or `None` at the end of the stream.
fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut frame = vec![0u8; usize::try_from(i32::from_be_bytes(size)).ok()?];
    stream.read_exact(&mut frame).ok()?;
    Some(frame.into())
}

/// Writes `frame` with its size prefix.
fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> Option<()> {
    let size = i32::try_from(frame.len()).ok()?;
    stream.write_all(&size.to_be_bytes()).ok()?;
    stream.write_all(frame).ok()
}

/// A response frame: the header for `correlation`, then `body`.
fn response<R: Encodable + HeaderVersion>(correlation: i32, body: &R, version: i16) -> BytesMut {
    let mut frame = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut frame, R::header_version(version))
        .expect("a header encodes");
    body.encode(&mut frame, version).expect("a response encodes");
    frame
}

/// Serves one client connection until either side closes it.
fn serve(mut client: TcpStream, upstream: &str, token: &Bytes, ok: &AtomicUsize, bad: &AtomicUsize) {
    let Ok(mut broker) = TcpStream::connect(upstream) else {
        return;
    };
    let mut authenticated = false;
    while let Some(frame) = read_frame(&mut client) {
        let mut request = frame.clone();
        let Ok(header) = decode_request_header_from_buffer(&mut request) else {
            return;
        };
        let (key, version, correlation) = (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id,
        );
        let answer = match key {
            SASL_HANDSHAKE => response(
                correlation,
                &SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]),
                version,
            ),
            SASL_AUTHENTICATE => {
                let Ok(authenticate) = SaslAuthenticateRequest::decode(&mut request, version) else {
                    return;
                };
                let mut answer = SaslAuthenticateResponse::default();
                if authenticate.auth_bytes == *token {
                    authenticated = true;
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                    answer = answer
                        .with_error_code(AUTHENTICATION_FAILED)
                        .with_error_message(Some(StrBytes::from_static_str("wrong user or password")));
                }
                response(correlation, &answer, version)
            }
            API_VERSIONS => {
                if write_frame(&mut broker, &frame).is_none() {
                    return;
                }
                let Some(mut answer) = read_frame(&mut broker) else {
                    return;
                };
                let Ok(_) = ResponseHeader::decode(&mut answer, ApiVersionsResponse::header_version(version)) else {
                    return;
                };
                let Ok(mut versions) = ApiVersionsResponse::decode(&mut answer, version) else {
                    return;
                };
                for (api_key, max_version) in [(SASL_HANDSHAKE, 1), (SASL_AUTHENTICATE, 2)] {
                    if versions.api_keys.iter().all(|v| v.api_key != api_key) {
                        versions.api_keys.push(
                            ApiVersion::default()
                                .with_api_key(api_key)
                                .with_min_version(0)
                                .with_max_version(max_version),
                        );
                    }
                }
                response(correlation, &versions, version)
            }
            _ if authenticated => {
                if write_frame(&mut broker, &frame).is_none() {
                    return;
                }
                let Some(answer) = read_frame(&mut broker) else { return };
                BytesMut::from(&answer[..])
            }
            // Anything else before authenticating: refused.
            _ => return,
        };
        if write_frame(&mut client, &answer).is_none() {
            return;
        }
    }
}
