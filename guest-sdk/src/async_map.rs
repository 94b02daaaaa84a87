//! Async lookups: a function that enriches records with lookups the host
//! runs for it, without blocking (Flink's `AsyncFunction`).

use crate::{Emitter, Record, Result, TaskInfo};

/// Enriches records with lookups that the host runs asynchronously.
///
/// A record goes through two steps, each called with whole batches:
/// [`AsyncMap::lookups`] says which lookups the record needs (a lookup the
/// job file declares in `[[lookup]]` and grants to the operator with
/// `lookups = [...]`, and a key); the host runs them on its own I/O threads
/// (with the operator's `async = { ... }` timeout, retries and capacity)
/// and, once every lookup of the record has answered, calls
/// [`AsyncMap::complete`] with the answers. The function never waits and
/// gets no sockets.
///
/// In `ordered` mode the outputs leave in input order; in `unordered` mode
/// as their lookups answer, but never across a watermark.
///
/// Export it with the kind `async_map` in
/// [`export_functions!`](crate::export_functions).
///
/// ```
/// use weir_sdk::{AsyncMap, Emitter, Lookups, Record, Result, TaskInfo};
///
/// /// `camera,plate` becomes `camera,plate,road` from the `cameras` lookup.
/// struct Road;
///
/// impl AsyncMap for Road {
///     fn open(_task: &TaskInfo) -> Result<Self> {
///         Ok(Self)
///     }
///
///     fn lookups(&mut self, record: &Record<'_>, lookups: &mut Lookups) -> Result<()> {
///         let line = record.payload_str()?;
///         let camera = line.split(',').next().unwrap_or_default();
///         lookups.request("cameras", camera);
///         Ok(())
///     }
///
///     fn complete(&mut self, record: &Record<'_>, results: &[Option<Vec<u8>>], out: &mut Emitter<'_>) -> Result<()> {
///         let road = results[0].as_deref().unwrap_or(b"unknown");
///         let mut line = record.payload().to_vec();
///         line.push(b',');
///         line.extend_from_slice(road);
///         out.emit(&line);
///         Ok(())
///     }
/// }
/// ```
pub trait AsyncMap: Sized + 'static {
    /// Creates the function instance of a task. An error refuses the job.
    fn open(task: &TaskInfo) -> Result<Self>;

    /// Asks, with [`Lookups::request`], for the lookups `record` needs
    /// (none: it completes at once). On `Err`, the record goes to the
    /// dead-letter output and its requests are dropped.
    fn lookups(&mut self, record: &Record<'_>, lookups: &mut Lookups) -> Result<()>;

    /// Emits the output records of `record`, whose lookups answered:
    /// `results[i]` answers its `i`-th request (`None`: the lookup found
    /// nothing). On `Err`, the records emitted for it are dropped and it
    /// goes to the dead-letter output.
    fn complete(&mut self, record: &Record<'_>, results: &[Option<Vec<u8>>], out: &mut Emitter<'_>) -> Result<()>;
}

/// The lookups a record asks for, in order.
#[derive(Debug, Default)]
pub struct Lookups {
    requests: Vec<(String, String)>,
}

impl Lookups {
    /// Asks lookup `lookup` (its name in the job file) for `key`. The
    /// answer is `results[i]` in [`AsyncMap::complete`] for the `i`-th
    /// request of the record.
    pub fn request(&mut self, lookup: &str, key: impl Into<String>) {
        self.requests.push((lookup.to_owned(), key.into()));
    }

    /// The requests so far: (lookup, key).
    pub(crate) fn take(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.requests)
    }
}
