//! The camera service the async lookup tests ask: `GET /camera/{key}` on
//! loopback, one thread a connection (keep-alive), with a behaviour per
//! request, counting requests per key and the most handled at once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server answers for a key, the `n`-th time it is asked (from 1).
pub struct Reply {
    pub delay_ms: u64,
    pub status: u16,
    pub body: String,
}

/// Decides the reply to each request.
type Behaviour = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// A camera service on loopback: `GET /camera/{key}`.
pub struct CameraServer {
    pub port: u16,
    /// Requests being handled now, and the most at once.
    current: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    /// Requests per key.
    pub asked: Arc<Mutex<HashMap<String, usize>>>,
}

impl CameraServer {
    pub fn start(behaviour: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("an address").port();
        let server = Self {
            port,
            current: Arc::default(),
            max: Arc::default(),
            asked: Arc::default(),
        };
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let (current, max, asked) = (server.current.clone(), server.max.clone(), server.asked.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (behaviour, current, max, asked) = (behaviour.clone(), current.clone(), max.clone(), asked.clone());
                std::thread::spawn(move || serve(stream, &*behaviour, &current, &max, &asked));
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/camera/{{key}}", self.port)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.asked.lock().expect("lock").values().sum()
    }
}

/// Serves the requests of one keep-alive connection.
fn serve(
    stream: TcpStream,
    behaviour: &Behaviour,
    current: &AtomicUsize,
    max: &AtomicUsize,
    asked: &Mutex<HashMap<String, usize>>,
) {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let now = current.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        let path = request_line.split(' ').nth(1).unwrap_or("");
        let key = path.strip_prefix("/camera/").unwrap_or(path).to_string();
        let n = {
            let mut asked = asked.lock().expect("lock");
            let count = asked.entry(key.clone()).or_default();
            *count += 1;
            *count
        };
        let reply = behaviour(&key, n);
        std::thread::sleep(Duration::from_millis(reply.delay_ms));
        // Counted out before answering: the client learns of the answer
        // only after this, so a request it sends next never overlaps.
        current.fetch_sub(1, Ordering::SeqCst);
        let reason = match reply.status {
            200 => "OK",
            404 => "Not Found",
            _ => "Internal Server Error",
        };
        let response = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\n\r\n{}",
            reply.status,
            reply.body.len(),
            reply.body
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The road of a camera, as the service knows it; camera 13 is unknown.
pub fn road(key: &str) -> Option<String> {
    let number: u32 = key.strip_prefix("CAM")?.parse().ok()?;
    (number != 13).then(|| format!("road-{}", number % 5))
}

/// The service's answer to `key` after `delay_ms`.
pub fn answer(key: &str, delay_ms: u64) -> Reply {
    match road(key) {
        Some(road) => Reply {
            delay_ms,
            status: 200,
            body: road,
        },
        None => Reply {
            delay_ms,
            status: 404,
            body: String::new(),
        },
    }
}

/// A camera service where CAM0010 answers only after `blocked_ms` while
/// `blocking` is set.
pub fn blocking_server(blocked_ms: u64) -> (CameraServer, Arc<AtomicBool>) {
    let blocking = Arc::new(AtomicBool::new(true));
    let server = CameraServer::start({
        let blocking = blocking.clone();
        move |key, _| match key {
            "CAM0010" if blocking.load(Ordering::SeqCst) => answer(key, blocked_ms),
            _ => answer(key, 5),
        }
    });
    (server, blocking)
}
