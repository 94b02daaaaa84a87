//! The registry of running jobs: one JSON entry per job in `$WEIR_HOME/jobs`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ControlError;

/// A running job, as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobEntry {
    /// The job id (16 hex digits).
    pub id: String,
    /// The job's name.
    pub name: String,
    /// The process running it.
    pub pid: u32,
    /// Its control socket.
    pub endpoint: PathBuf,
    /// When it started (wall clock, ms since the epoch).
    pub started_ms: i64,
    /// The address of its HTTP endpoint (`weir run --http PORT`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<std::net::SocketAddr>,
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
    /// Writes the entry into the registry `folder` (atomically).
    pub(crate) fn register(&self, folder: &Path) -> Result<(), ControlError> {
        std::fs::create_dir_all(folder).map_err(io("cannot create", folder))?;
        let path = folder.join(format!("{}.json", self.id));
        let temporary = folder.join(format!(".{}.json.tmp", self.id));
        let json = serde_json::to_vec_pretty(self).map_err(|e| ControlError::Protocol(e.to_string()))?;
        std::fs::write(&temporary, json).map_err(io("cannot write", &temporary))?;
        std::fs::rename(&temporary, &path).map_err(io("cannot rename", &temporary))
    }

    /// Removes the entry and its socket.
    pub(crate) fn unregister(&self, folder: &Path) {
        let _ = std::fs::remove_file(folder.join(format!("{}.json", self.id)));
        let _ = std::fs::remove_file(&self.endpoint);
    }

    /// Whether the job still answers on its socket.
    pub(crate) fn is_alive(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.endpoint).is_ok()
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
    use super::*;

    #[test]
    fn entries_of_jobs_that_do_not_answer_are_stale_and_cleaned() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let job = JobEntry {
            id: new_id("demo"),
            name: "demo".into(),
            pid: std::process::id(),
            endpoint: dir.path().join("nobody.sock"),
            started_ms: 0,
            http: None,
        };
        assert_eq!(job.id.len(), 16);
        job.register(dir.path()).expect("registered");
        assert!(dir.path().join(format!("{}.json", job.id)).is_file());
        // Nobody listens on the socket: the entry is stale.
        assert_eq!(running(dir.path(), false).expect("listed"), Vec::new());
        assert!(dir.path().join(format!("{}.json", job.id)).is_file());
        assert_eq!(
            find(dir.path(), &job.id)
                .map_err(|e| e.to_string())
                .expect_err("not found"),
            format!("no running job has the id `{}` (see `weir list`)", job.id)
        );
        running(dir.path(), true).expect("listed");
        assert!(!dir.path().join(format!("{}.json", job.id)).exists());
    }
}
