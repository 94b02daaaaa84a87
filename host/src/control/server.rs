//! The job's side of the control API: a Unix socket served by a thread for
//! as long as the job runs, turning requests into savepoint requests for the
//! checkpoint coordinator.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded, unbounded};

use super::ControlError;
use super::registry::{self, JobEntry};
use super::upgrade::{UpgradeRequest, Upgrades};
use crate::checkpoint::savepoint::{ApiHandle, SavepointRequest};

/// A job's control endpoint and registry entry; both go away when dropped.
pub(crate) struct ControlServer {
    entry: JobEntry,
    folder: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    upgrades: Upgrades,
    last_completed: Arc<AtomicU64>,
}

/// What a request handler needs.
#[derive(Clone)]
struct Handler {
    name: String,
    checkpointing: bool,
    requests: Sender<SavepointRequest>,
    last_completed: Arc<AtomicU64>,
    upgrades: Upgrades,
}

impl ControlServer {
    /// Registers job `name` in the registry folder and serves its socket.
    /// Savepoints can be taken only if the job `checkpointing`. Returns the
    /// server and the job's side of the link, for [`crate::runtime::executor::RunOptions`].
    pub(crate) fn start(name: &str, checkpointing: bool) -> Result<(Self, ApiHandle), ControlError> {
        let folder = registry::folder();
        std::fs::create_dir_all(&folder).map_err(|source| ControlError::Io {
            what: "cannot create",
            path: folder.clone(),
            source,
        })?;
        let id = registry::new_id(name);
        let endpoint = folder.join(format!("{id}.sock"));
        let listener = bind(&endpoint)?;
        let entry = JobEntry {
            id,
            name: name.to_string(),
            pid: std::process::id(),
            endpoint,
            started_ms: crate::time::now_ms(),
            http: None,
        };
        entry.register(&folder)?;
        let (requests, receiver) = unbounded();
        let last_completed = Arc::new(AtomicU64::new(0));
        let upgrades = Upgrades::default();
        let handler = Handler {
            name: name.to_string(),
            checkpointing,
            requests,
            last_completed: Arc::clone(&last_completed),
            upgrades: upgrades.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || serve(&listener, &handler, &stopped))
            .map_err(|source| ControlError::Io {
                what: "cannot start the control thread for",
                path: entry.endpoint.clone(),
                source,
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(error) => {
                entry.unregister(&folder);
                return Err(error);
            }
        };
        tracing::info!(
            "job `{name}` has id {} (control socket {})",
            entry.id,
            entry.endpoint.display()
        );
        let server = Self {
            entry,
            folder,
            stop,
            thread: Some(thread),
            upgrades,
            last_completed: Arc::clone(&last_completed),
        };
        Ok((
            server,
            ApiHandle {
                requests: receiver,
                last_completed,
                resumed: Arc::default(),
            },
        ))
    }

    /// The job's registry entry.
    pub(crate) fn entry(&self) -> &JobEntry {
        &self.entry
    }

    /// Writes the address of the job's HTTP endpoint into its registry entry.
    pub(crate) fn set_http(&mut self, address: std::net::SocketAddr) -> Result<(), ControlError> {
        self.entry.http = Some(address);
        self.entry.register(&self.folder)
    }

    /// The id of the job's last completed checkpoint (0: none yet), as the
    /// checkpoint coordinator updates it.
    pub(crate) fn last_completed(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.last_completed)
    }

    /// Upgrades asked for through the API.
    pub(crate) fn upgrades(&self) -> &Upgrades {
        &self.upgrades
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.entry.unregister(&self.folder);
    }
}

fn bind(endpoint: &Path) -> Result<UnixListener, ControlError> {
    let io = |what| {
        move |source| ControlError::Io {
            what,
            path: endpoint.to_path_buf(),
            source,
        }
    };
    let listener = UnixListener::bind(endpoint).map_err(io("cannot listen on"))?;
    listener.set_nonblocking(true).map_err(io("cannot configure"))?;
    Ok(listener)
}

/// Accepts connections until `stop`; each is answered on a thread of its
/// own, since a savepoint takes a while and `status` must not wait for it.
fn serve(listener: &UnixListener, handler: &Handler, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let handler = handler.clone();
                let _ = std::thread::Builder::new()
                    .name("control-request".into())
                    .spawn(move || handler.answer(stream));
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                tracing::warn!("control socket: {error}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Handler {
    /// `upgrade UID MODULE`: stop with a savepoint, then wait for `weir run`
    /// to restore the job with the new module. The error is the text of the
    /// socket's `error` reply (a wire payload), so it stays a string.
    fn upgrade(&self, argument: &str) -> Result<String, String> {
        let Some((uid, module)) = argument.split_once(' ') else {
            return Err("usage: upgrade UID MODULE".into());
        };
        if !self.checkpointing {
            return Err(format!(
                "job `{}` has no [checkpoint] table; upgrades need checkpointing",
                self.name
            ));
        }
        self.upgrades
            .precheck(uid, Path::new(module))
            .map_err(|reason| format!("upgrade refused: {reason}; the job goes on unchanged"))?;
        if !self.upgrades.begin() {
            return Err(format!("an upgrade of job `{}` is already under way", self.name));
        }
        let requested = std::time::Instant::now();
        let (reply, answer) = bounded(1);
        let request = SavepointRequest {
            target: None,
            stop: true,
            reply,
        };
        let savepoint = match self.requests.send(request).map(|()| answer.recv()) {
            Ok(Ok(Ok(path))) => path,
            failed => {
                self.upgrades.abandon();
                return Err(match failed {
                    Err(_) => "the job is ending".into(),
                    Ok(Ok(Err(reason))) => format!("the savepoint failed: {reason}"),
                    _ => "the savepoint was abandoned: the job failed or ended before it completed".into(),
                });
            }
        };
        let (reply, outcome) = bounded(1);
        self.upgrades.submit(UpgradeRequest {
            uid: uid.to_string(),
            module: PathBuf::from(module),
            savepoint,
            requested,
            reply,
        });
        outcome
            .recv()
            .unwrap_or_else(|_| Err("the job ended before the upgrade completed".into()))
    }

    fn answer(&self, stream: UnixStream) {
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let answer = match self.handle(line.trim_end_matches(['\n', '\r'])) {
            Ok(text) => format!("ok {text}\n"),
            Err(message) => format!("error {}\n", message.replace('\n', " ")),
        };
        let _ = (&stream).write_all(answer.as_bytes());
    }

    /// Answers one request line: the text of the socket's `ok` or `error`
    /// reply. Both are wire payloads for the CLI, so they stay strings; the
    /// typed errors behind them are rendered here.
    fn handle(&self, request: &str) -> Result<String, String> {
        let (command, argument) = request.split_once(' ').unwrap_or((request, ""));
        match command {
            "status" => Ok(self.last_completed.load(Ordering::Relaxed).to_string()),
            "savepoint" | "stop" => {
                if !self.checkpointing {
                    return Err(format!(
                        "job `{}` has no [checkpoint] table; savepoints need checkpointing",
                        self.name
                    ));
                }
                let (reply, answer) = bounded(1);
                let request = SavepointRequest {
                    target: (!argument.is_empty()).then(|| PathBuf::from(argument)),
                    stop: command == "stop",
                    reply,
                };
                self.requests
                    .send(request)
                    .map_err(|_| "the job is ending".to_string())?;
                match answer.recv() {
                    Ok(Ok(path)) => Ok(path.display().to_string()),
                    Ok(Err(reason)) => Err(format!("the savepoint failed: {reason}")),
                    Err(_) => Err("the savepoint was abandoned: the job failed or ended before it completed".into()),
                }
            }
            "upgrade" => self.upgrade(argument),
            _ => Err(format!("unknown request `{command}`")),
        }
    }
}
