//! The registry of running jobs: one JSON entry per job in `$WEIR_HOME/jobs`,
//! with the address, scheme and bearer token of the job's HTTP endpoint.
//! Entries hold the token, so they are written with mode 0600 (the folder,
//! when created here, 0700).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ControlError;

/// How long the liveness check waits for a job's endpoint to accept.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// A running job, as registered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobEntry {
    /// The job id (16 hex digits).
    pub id: String,
    /// The job's name.
    pub name: String,
    /// The process running it.
    pub pid: u32,
    /// When it started (wall clock, ms since the epoch).
    pub started_ms: i64,
    /// The address its HTTP endpoint is bound to.
    pub http: SocketAddr,
    /// `http` or `https`.
    pub scheme: String,
    /// The bearer token the endpoint wants.
    pub token: String,
    /// With HTTPS: the endpoint's certificate (PEM, absolute path), which
    /// the CLI trusts (and nothing else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
}

impl std::fmt::Debug for JobEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEntry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("http", &self.http)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// The registry folder: `$WEIR_HOME/jobs`, `WEIR_HOME` defaulting to `~/.weir`.
pub(crate) fn folder() -> PathBuf {
    let home = std::env::var_os("WEIR_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".weir")))
        .unwrap_or_else(|| PathBuf::from(".weir"));
    home.join("jobs")
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ControlError + 'a {
    move |source| ControlError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A new job id: 16 hex digits from the name, the process and the clock.
pub(crate) fn new_id(name: &str) -> String {
    use sha2::Digest;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = sha2::Sha256::digest(format!("{name}/{}/{nanos}", std::process::id()));
    crate::storage::files::hex(&digest[..8])
}

impl JobEntry {
    /// Writes the entry into the registry `folder` (atomically, mode 0600).
    pub(crate) fn register(&self, folder: &Path) -> Result<(), ControlError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(io("cannot create", folder))?;
        let path = folder.join(format!("{}.json", self.id));
        let temporary = folder.join(format!(".{}.json.tmp", self.id));
        let json = serde_json::to_vec_pretty(self).map_err(|e| ControlError::Protocol(e.to_string()))?;
        // A leftover of a crash may have other permissions: start afresh.
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io("cannot write", &temporary))?;
        file.write_all(&json).map_err(io("cannot write", &temporary))?;
        drop(file);
        std::fs::rename(&temporary, &path).map_err(io("cannot rename", &temporary))
    }

    /// Removes the entry.
    pub(crate) fn unregister(&self, folder: &Path) {
        let _ = std::fs::remove_file(folder.join(format!("{}.json", self.id)));
    }

    /// Where to reach the endpoint: its address, or loopback when it is
    /// bound to every interface.
    pub(crate) fn reachable(&self) -> SocketAddr {
        let ip = match self.http.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.http.port())
    }

    /// Whether the job is still there: its process exists and its endpoint
    /// accepts connections.
    pub(crate) fn is_alive(&self) -> bool {
        let proc = Path::new("/proc");
        if proc.is_dir() && !proc.join(self.pid.to_string()).exists() {
            return false;
        }
        TcpStream::connect_timeout(&self.reachable(), ALIVE_TIMEOUT).is_ok()
    }
}

/// A job's entry in the registry for as long as this lives.
#[derive(Debug)]
pub(crate) struct Registration {
    entry: JobEntry,
    folder: PathBuf,
}

impl Registration {
    /// Writes `entry` into the registry `folder`.
    pub(crate) fn new(entry: JobEntry, folder: PathBuf) -> Result<Self, ControlError> {
        entry.register(&folder)?;
        Ok(Self { entry, folder })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.entry.unregister(&self.folder);
    }
}

/// The registered jobs that are alive, oldest first. With `clean`, the
/// entries of jobs that are gone are deleted.
pub(crate) fn running(folder: &Path, clean: bool) -> Result<Vec<JobEntry>, ControlError> {
    let mut jobs = Vec::new();
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(jobs),
        Err(error) => return Err(io("cannot list", folder)(error)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let job = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<JobEntry>(&bytes).ok());
        match job {
            Some(job) if job.is_alive() => jobs.push(job),
            Some(job) if clean => job.unregister(folder),
            None if clean => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
    jobs.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
    Ok(jobs)
}

/// The running job whose id is `id` or starts with it.
pub(crate) fn find(folder: &Path, id: &str) -> Result<JobEntry, ControlError> {
    let jobs = running(folder, false)?;
    if let Some(job) = jobs.iter().find(|j| j.id == id) {
        return Ok(job.clone());
    }
    let mut matching = jobs.into_iter().filter(|j| !id.is_empty() && j.id.starts_with(id));
    match (matching.next(), matching.next()) {
        (Some(job), None) => Ok(job),
        (Some(_), Some(_)) => Err(ControlError::AmbiguousJob(id.into())),
        _ => Err(ControlError::UnknownJob(id.into())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn entry(http: SocketAddr) -> JobEntry {
        JobEntry {
            id: new_id("demo"),
            name: "demo".into(),
            pid: std::process::id(),
            started_ms: 0,
            http,
            scheme: "http".into(),
            token: "secret-secret-secret".into(),
            cert: None,
        }
    }

    #[test]
    fn entries_are_private_and_those_of_jobs_that_do_not_answer_are_stale() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let folder = dir.path().join("jobs");
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let job = entry(port);
        assert_eq!(job.id.len(), 16);
        let registration = Registration::new(job.clone(), folder.clone()).expect("registered");
        let path = folder.join(format!("{}.json", job.id));
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&folder), 0o700);
        assert!(!format!("{job:?}").contains("secret"));
        // Nobody listens on the port: the entry is stale.
        assert_eq!(running(&folder, false).expect("listed"), Vec::new());
        assert!(path.is_file());
        assert_eq!(
            find(&folder, &job.id)
                .map_err(|e| e.to_string())
                .expect_err("not found"),
            format!("no running job has the id `{}` (see `weir list`)", job.id)
        );
        running(&folder, true).expect("listed");
        assert!(!path.exists());
        // A listening endpoint is alive, found by a prefix; dropping the
        // registration removes the entry.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let live = entry(listener.local_addr().expect("an address"));
        let live_registration = Registration::new(live.clone(), folder.clone()).expect("registered");
        assert_eq!(find(&folder, &live.id[..4]).expect("found"), live);
        drop(registration);
        drop(live_registration);
        assert_eq!(std::fs::read_dir(&folder).expect("a folder").count(), 0);
    }

    #[test]
    fn endpoints_bound_to_every_interface_are_reached_on_loopback() {
        let any = entry("0.0.0.0:8080".parse().expect("an address"));
        assert_eq!(any.reachable(), "127.0.0.1:8080".parse().expect("an address"));
        let any6 = entry("[::]:8080".parse().expect("an address"));
        assert_eq!(any6.reachable(), "[::1]:8080".parse().expect("an address"));
        let own = entry("10.1.2.3:8080".parse().expect("an address"));
        assert_eq!(own.reachable(), own.http);
    }
}
