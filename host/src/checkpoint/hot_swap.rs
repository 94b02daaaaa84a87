//! Hot swap on savepoint restore: a job may restore a savepoint with another
//! version of an operator's module (same uid). Before anything runs, this
//! module checks that the new version can read the state the old one wrote,
//! and migrates it if needed.
//!
//! Every state a function opens declares a *schema* (`state-schema` in the
//! WIT contract); every checkpoint and savepoint records them in its
//! manifest (per operator uid, per state: [`crate::storage::manifest::OperatorModule`]). On restore,
//! for each keyed
//! operator whose module changed (another content digest):
//! - a state of the savepoint that the new function no longer opens is
//!   refused, naming it, unless `--allow-non-restored-state` (then it is
//!   dropped);
//! - a state whose schema changed needs a migration from the old schema,
//!   exported by the new module (`state-migration`); without one the
//!   restore is refused, naming the operator, both module versions and the
//!   states;
//! - the migrations run over every stored value, one guest call per chunk,
//!   into a migrated copy of the savepoint (the savepoint itself is never
//!   changed, so restoring it with v1 still rolls back). Map states migrate
//!   their values (keys keep their encoding), list states every element;
//!   time-to-live headers are kept. An error of a migration fails the
//!   restore with its message.
//!
//! A restore point that records no schemas for an operator (its function
//! could not be probed when it ran) still restores: its shapes are taken as
//! unchanged, with a warning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, BufWriter};
use std::path::Path;

use super::savepoint::SavepointManifest;
use crate::plan::{JobPlan, OperatorPlan, VertexKind};
use crate::state::StateKind;
use crate::state::snapshot::{SnapshotItem, SnapshotReader, SnapshotWriter};
use crate::storage::files::{FileRef, FileStore, StorageError};
use crate::storage::manifest::{Manifest, ModuleMeta};
use crate::wasm::GuestCallError;
use crate::wasm::migration::{Migrator, declared_schemas};

/// Values migrated per guest call.
const CHUNK: usize = 1024;

/// State schemas: operator uid → state name → schema.
pub(crate) type Schemas = BTreeMap<String, BTreeMap<String, String>>;

/// Why a savepoint cannot be restored into the job's modules.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HotSwapError {
    /// Shapes changed and the new module has no migration for them.
    #[error(
        "cannot restore operator `{uid}` from {from}: module {new} reads state of {old} in another shape and exports no migration for it: {states}"
    )]
    MissingMigration {
        /// The operator.
        uid: String,
        /// `savepoint PATH` or `checkpoint PATH`.
        from: String,
        /// The old module, `name version`.
        old: String,
        /// The new module, `name version`.
        new: String,
        /// The states, each with its old and new schema.
        states: String,
    },
    /// States the new module does not open.
    #[error(
        "cannot restore operator `{uid}` from {from}: module {new} does not open {states} of {old} (pass --allow-non-restored-state to drop it)"
    )]
    NonRestoredState {
        /// The operator.
        uid: String,
        /// `savepoint PATH` or `checkpoint PATH`.
        from: String,
        /// The old module.
        old: String,
        /// The new module.
        new: String,
        /// `state `a`` or `states `a`, `b``.
        states: String,
    },
    /// A migration failed.
    #[error(
        "cannot restore operator `{uid}` from {from}: the migration of state `{state}` from {modules} failed: {reason}"
    )]
    MigrationFailed {
        /// The operator.
        uid: String,
        /// `savepoint PATH` or `checkpoint PATH`.
        from: String,
        /// The state.
        state: String,
        /// The modules, `old to new`.
        modules: String,
        /// Why the migration failed.
        #[source]
        reason: Box<GuestCallError>,
    },
    /// The module could not be started to learn its states.
    #[error("cannot restore operator `{uid}`: its module could not be probed for its states: {reason}")]
    Probe {
        /// The operator.
        uid: String,
        /// Why.
        #[source]
        reason: GuestCallError,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Whether a vertex runs a keyed function whose states the module opens.
pub(crate) fn keyed_function(kind: &VertexKind) -> Option<&crate::plan::FunctionRef> {
    match kind {
        VertexKind::Operator(OperatorPlan::KeyedProcess(f) | OperatorPlan::CoProcess { function: f, .. }) => Some(f),
        _ => None,
    }
}

/// The state schemas of every keyed function of `plan`, learned by starting
/// each function once in a throwaway instance. A function that cannot start
/// so is left out (with a warning): savepoints then record no schemas for it.
pub(crate) fn plan_schemas(plan: &JobPlan, engine: &wasmtime::Engine) -> Schemas {
    let mut schemas = Schemas::new();
    for vertex in &plan.vertices {
        let Some(function) = keyed_function(&vertex.kind) else {
            continue;
        };
        let declared = declared_schemas(
            engine,
            &function.module,
            &function.function,
            &vertex.uid,
            &function.params,
            plan.settings.max_parallelism,
            plan.settings.limits,
        );
        match declared {
            Ok(declared) => {
                schemas.insert(vertex.uid.clone(), declared);
            }
            Err(reason) => tracing::warn!("the state schemas of `{}` are unknown: {reason}", vertex.uid),
        }
    }
    schemas
}

/// What to do to one operator's state.
struct Rewrite {
    function: String,
    old_version: String,
    old_name: String,
    new_name: String,
    /// State → old schema, for the states to migrate.
    migrate: HashMap<String, String>,
    /// State → new schema, for the states to migrate.
    new_schemas: HashMap<String, String>,
    /// States to drop.
    drop: BTreeSet<String>,
    migrator: Migrator,
    /// Values migrated so far, by state.
    migrated: HashMap<String, usize>,
    /// Time spent migrating.
    elapsed: std::time::Duration,
}

fn describe(module: &ModuleMeta) -> String {
    format!("{} {}", module.name, module.version)
}

/// Checks that `plan`'s modules can read the state of `savepoint` (which
/// comes `from` a savepoint or checkpoint folder: `savepoint PATH`, for
/// messages) and migrates it where shapes changed. Returns the checkpoint
/// to restore and the store of its files: the savepoint's own, or a
/// migrated copy in `scratch`.
pub(crate) fn prepare_restore(
    plan: &JobPlan,
    engine: &wasmtime::Engine,
    from: &str,
    savepoint: &SavepointManifest,
    files: FileStore,
    allow_non_restored_state: bool,
    scratch: &Path,
) -> Result<(Manifest, FileStore), HotSwapError> {
    let recorded = &savepoint.checkpoint.modules;
    let mut rewrites: HashMap<String, Rewrite> = HashMap::new();
    for vertex in &plan.vertices {
        let Some(function) = keyed_function(&vertex.kind) else {
            continue;
        };
        let Some(meta) = savepoint.operators.iter().find(|o| o.uid == vertex.uid) else {
            continue;
        };
        let Some(old) = &meta.module else { continue };
        if meta.states.is_empty() || old.digest == function.module.digest {
            continue;
        }
        let new = ModuleMeta {
            name: function.module.info.name.clone(),
            version: function.module.info.version.clone(),
            digest: function.module.digest.clone(),
        };
        let probe = |reason| HotSwapError::Probe {
            uid: vertex.uid.clone(),
            reason,
        };
        let declared = declared_schemas(
            engine,
            &function.module,
            &function.function,
            &vertex.uid,
            &function.params,
            plan.settings.max_parallelism,
            plan.settings.limits,
        )
        .map_err(probe)?;
        let old_names: BTreeSet<&str> = meta.states.iter().map(|s| s.name.as_str()).collect();
        let missing: Vec<String> = old_names
            .iter()
            .filter(|name| !declared.contains_key(**name))
            .map(|name| format!("`{name}`"))
            .collect();
        if !missing.is_empty() && !allow_non_restored_state {
            return Err(HotSwapError::NonRestoredState {
                uid: vertex.uid.clone(),
                from: from.to_string(),
                old: describe(old),
                new: describe(&new),
                states: format!(
                    "{} {}",
                    if missing.len() == 1 { "state" } else { "states" },
                    missing.join(", ")
                ),
            });
        }
        let old_schemas = recorded
            .iter()
            .find(|m| m.uid == vertex.uid)
            .map(|m| &m.schemas)
            .filter(|schemas| !schemas.is_empty());
        if old_schemas.is_none() {
            tracing::warn!(
                "{from} records no state schemas of `{}`: its state is taken to keep its shape",
                vertex.uid
            );
        }
        let mut migrator = Migrator::new(engine, &function.module, &vertex.uid, plan.settings.limits).map_err(probe)?;
        let offered = migrator.migrations().map_err(probe)?;
        let mut migrate = HashMap::new();
        let mut unmigrated = Vec::new();
        for name in &old_names {
            let (Some(old_schema), Some(new_schema)) = (old_schemas.and_then(|s| s.get(*name)), declared.get(*name))
            else {
                continue;
            };
            if old_schema == new_schema {
                continue;
            }
            let found = offered
                .iter()
                .any(|m| m.function == function.function && m.state == *name && m.from_schema == *old_schema);
            if found {
                migrate.insert((*name).to_string(), old_schema.clone());
            } else {
                unmigrated.push(format!("`{name}` ({old_schema} -> {new_schema})"));
            }
        }
        if !unmigrated.is_empty() {
            return Err(HotSwapError::MissingMigration {
                uid: vertex.uid.clone(),
                from: from.to_string(),
                old: describe(old),
                new: describe(&new),
                states: unmigrated.join(", "),
            });
        }
        let drop: BTreeSet<String> = old_names
            .iter()
            .filter(|name| !declared.contains_key(**name))
            .map(|name| (*name).to_string())
            .collect();
        if !drop.is_empty() {
            tracing::warn!(
                "not restoring state {} of operator `{}` (the new module does not open it)",
                drop.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                vertex.uid
            );
        }
        if migrate.is_empty() && drop.is_empty() {
            continue;
        }
        rewrites.insert(
            vertex.uid.clone(),
            Rewrite {
                function: function.function.clone(),
                old_version: old.version.clone(),
                old_name: describe(old),
                new_name: describe(&new),
                new_schemas: migrate
                    .keys()
                    .filter_map(|name| Some((name.clone(), declared.get(name)?.clone())))
                    .collect(),
                migrate,
                drop,
                migrator,
                migrated: HashMap::new(),
                elapsed: std::time::Duration::ZERO,
            },
        );
    }
    if rewrites.is_empty() {
        return Ok((savepoint.checkpoint.clone(), files));
    }
    let name: String = from
        .rsplit(['/', ' '])
        .next()
        .unwrap_or("savepoint")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let out_dir = scratch.join(format!("{name}-{}", crate::time::now_ms()));
    std::fs::create_dir_all(&out_dir).map_err(|source| StorageError::Io {
        what: "cannot create",
        path: out_dir.clone(),
        source,
    })?;
    let out = FileStore::at(&out_dir);
    let mut checkpoint = savepoint.checkpoint.clone();
    for task in &mut checkpoint.tasks {
        let Some(handle) = &mut task.keyed else { continue };
        let Some(file) = &handle.canonical else { continue };
        let written = match rewrites.get_mut(&task.task.uid) {
            Some(rewrite) => {
                let started = std::time::Instant::now();
                let (function, version) = (rewrite.function.clone(), rewrite.old_version.clone());
                let migrator = &mut rewrite.migrator;
                let migrated = &mut rewrite.migrated;
                let mut migrate = |state: &str, old_schema: &str, values: &[Vec<u8>]| {
                    *migrated.entry(state.to_string()).or_default() += values.len();
                    migrator.migrate(&function, &version, state, old_schema, values)
                };
                let states = StatesPlan {
                    migrate: &rewrite.migrate,
                    drop: &rewrite.drop,
                };
                let written = rewrite_file(&files, file, &out, &states, &mut migrate);
                rewrite.elapsed += started.elapsed();
                written
            }
            .map_err(|e| match e {
                RewriteError::Storage(e) => HotSwapError::Storage(e),
                RewriteError::Migration { state, reason } => HotSwapError::MigrationFailed {
                    uid: task.task.uid.clone(),
                    from: from.to_string(),
                    state,
                    modules: format!("{} to {}", rewrite.old_name, rewrite.new_name),
                    reason: Box::new(reason),
                },
            })?,
            None => out.adopt(&files.path(file), &file.name)?,
        };
        handle.canonical = Some(written);
    }
    for (uid, rewrite) in &rewrites {
        for (state, old_schema) in &rewrite.migrate {
            tracing::info!(
                "operator `{uid}`: migrated state `{state}` from {} ({old_schema}) to {} ({}): {} values in {} ms",
                rewrite.old_name,
                rewrite.new_name,
                rewrite.new_schemas.get(state).map_or("?", String::as_str),
                rewrite.migrated.get(state).copied().unwrap_or(0),
                rewrite.elapsed.as_millis()
            );
        }
    }
    tracing::info!("migrated the state of {from} into {}", out_dir.display());
    Ok((checkpoint, out))
}

enum RewriteError {
    Storage(StorageError),
    Migration { state: String, reason: GuestCallError },
}

impl From<StorageError> for RewriteError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// A declared state of the file being rewritten.
struct Declared {
    name: String,
    kind: StateKind,
    ttl: bool,
    /// Its old schema, if it migrates.
    migrate: Option<String>,
    dropped: bool,
}

/// An entry waiting for its migration: key group, key, user key, TTL
/// expiry and number of values.
type PendingEntry = (u32, Vec<u8>, Vec<u8>, Option<i64>, usize);

/// Entries waiting for their migration.
#[derive(Default)]
struct Pending {
    /// Per state index: entries (key group, key, user key, TTL expiry, values).
    entries: BTreeMap<u32, Vec<PendingEntry>>,
    /// Per state index: the values to migrate, back to back.
    values: BTreeMap<u32, Vec<Vec<u8>>>,
    count: usize,
}

/// What happens to the states of a snapshot file.
struct StatesPlan<'a> {
    /// State → old schema, for the states to migrate.
    migrate: &'a HashMap<String, String>,
    /// States to drop.
    drop: &'a BTreeSet<String>,
}

/// Migrates a chunk of values of a state: (state, old schema, values).
type MigrateFn<'a> = dyn FnMut(&str, &str, &[Vec<u8>]) -> Result<Vec<Vec<u8>>, GuestCallError> + 'a;

/// Copies the canonical snapshot `file` into `out`, migrating and dropping
/// states as `states` says.
fn rewrite_file(
    files: &FileStore,
    file: &FileRef,
    out: &FileStore,
    states: &StatesPlan<'_>,
    migrate: &mut MigrateFn<'_>,
) -> Result<FileRef, RewriteError> {
    let path = files.path(file);
    let format = |e: std::io::Error| StorageError::Format(format!("cannot read {}: {e}", path.display()));
    let input = std::fs::File::open(&path).map_err(format)?;
    let mut reader = SnapshotReader::new(BufReader::new(input)).map_err(format)?;
    let write_error = |e: std::io::Error| StorageError::Format(format!("cannot write migrated state: {e}"));
    let mut writer = SnapshotWriter::new(BufWriter::new(out.create(&file.name)?)).map_err(write_error)?;
    let mut declared: HashMap<u32, Declared> = HashMap::new();
    let mut pending = Pending::default();
    while let Some(item) = reader.next_item().map_err(format)? {
        match &item {
            SnapshotItem::State { index, name, kind, ttl } => {
                let dropped = states.drop.contains(name);
                declared.insert(
                    *index,
                    Declared {
                        name: name.clone(),
                        kind: *kind,
                        ttl: ttl.is_some(),
                        migrate: states.migrate.get(name).cloned(),
                        dropped,
                    },
                );
                if !dropped {
                    writer.write(&item).map_err(write_error)?;
                }
            }
            SnapshotItem::Entry {
                state,
                key_group,
                key,
                user_key,
                value,
            } => {
                let Some(d) = declared.get(state) else {
                    writer.write(&item).map_err(write_error)?;
                    continue;
                };
                if d.dropped {
                    continue;
                }
                if d.migrate.is_none() {
                    writer.write(&item).map_err(write_error)?;
                    continue;
                }
                let corrupt = |what: &str| {
                    RewriteError::Storage(StorageError::Format(format!(
                        "corrupt {what} in state `{}` of {}",
                        d.name,
                        path.display()
                    )))
                };
                let (expiry, stored) = if d.ttl {
                    let (expiry, stored) = crate::state::ttl::unwrap(value).ok_or_else(|| corrupt("TTL entry"))?;
                    (Some(expiry), stored)
                } else {
                    (None, value.as_slice())
                };
                let values = pending.values.entry(*state).or_default();
                let n = if d.kind == StateKind::List {
                    let elements =
                        crate::wasm::host_state::list_codec::decode(stored).map_err(|_| corrupt("list entry"))?;
                    let n = elements.len();
                    values.extend(elements);
                    n
                } else {
                    values.push(stored.to_vec());
                    1
                };
                pending.count += n;
                pending
                    .entries
                    .entry(*state)
                    .or_default()
                    .push((*key_group, key.clone(), user_key.clone(), expiry, n));
                if pending.count >= CHUNK {
                    flush(&mut pending, &declared, migrate, &mut writer)?;
                }
            }
            SnapshotItem::Timer { .. } => {
                flush(&mut pending, &declared, migrate, &mut writer)?;
                writer.write(&item).map_err(write_error)?;
            }
        }
    }
    flush(&mut pending, &declared, migrate, &mut writer)?;
    let written = writer
        .finish()
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?
        .finish()?;
    Ok(written)
}

/// Migrates the pending values (one guest call per state) and writes their
/// entries.
fn flush<W: std::io::Write>(
    pending: &mut Pending,
    declared: &HashMap<u32, Declared>,
    migrate: &mut MigrateFn<'_>,
    writer: &mut SnapshotWriter<W>,
) -> Result<(), RewriteError> {
    let write_error = |e: std::io::Error| StorageError::Format(format!("cannot write migrated state: {e}"));
    for (state, entries) in std::mem::take(&mut pending.entries) {
        let values = pending.values.remove(&state).unwrap_or_default();
        let Some(d) = declared.get(&state) else { continue };
        let Some(old_schema) = &d.migrate else { continue };
        let mut migrated = Vec::with_capacity(values.len());
        for chunk in values.chunks(CHUNK) {
            let done = migrate(&d.name, old_schema, chunk).map_err(|reason| RewriteError::Migration {
                state: d.name.clone(),
                reason,
            })?;
            migrated.extend(done);
        }
        let mut migrated = migrated.into_iter();
        for (key_group, key, user_key, expiry, n) in entries {
            let mut stored = Vec::new();
            if d.kind == StateKind::List {
                for element in migrated.by_ref().take(n) {
                    crate::wasm::host_state::list_codec::push(&mut stored, &element);
                }
            } else {
                stored = migrated.next().unwrap_or_default();
            }
            let value = match expiry {
                Some(expires_at) => {
                    let mut wrapped = Vec::new();
                    crate::state::ttl::wrap(&stored, expires_at, &mut wrapped);
                    wrapped
                }
                None => stored,
            };
            let item = SnapshotItem::Entry {
                state,
                key_group,
                key,
                user_key,
                value,
            };
            writer.write(&item).map_err(write_error)?;
        }
    }
    pending.count = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::state::ttl;
    use crate::wasm::host_state::list_codec;

    fn state(index: u32, name: &str, kind: StateKind, ttl: Option<(u64, bool)>) -> SnapshotItem {
        SnapshotItem::State {
            index,
            name: name.into(),
            kind,
            ttl,
        }
    }

    fn entry(state: u32, key: &[u8], user_key: &[u8], value: Vec<u8>) -> SnapshotItem {
        SnapshotItem::Entry {
            state,
            key_group: 3,
            key: key.to_vec(),
            user_key: user_key.to_vec(),
            value,
        }
    }

    fn items(files: &FileStore, file: &FileRef) -> Vec<SnapshotItem> {
        let input = std::fs::File::open(files.path(file)).expect("a file");
        let mut reader = SnapshotReader::new(BufReader::new(input)).expect("a snapshot");
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().expect("an item") {
            items.push(item);
        }
        items
    }

    fn list(values: &[&[u8]]) -> Vec<u8> {
        let mut stored = Vec::new();
        for value in values {
            list_codec::push(&mut stored, value);
        }
        stored
    }

    fn with_ttl(value: &[u8], expires_at: i64) -> Vec<u8> {
        let mut out = Vec::new();
        ttl::wrap(value, expires_at, &mut out);
        out
    }

    /// A snapshot with a value state of 1500 keys (two chunks), a list, a
    /// map with a TTL, a state to drop, one to keep as is, and a timer.
    fn snapshot(files: &FileStore) -> FileRef {
        let mut writer = SnapshotWriter::new(BufWriter::new(files.create("a.keyed").expect("create"))).expect("writer");
        let mut items = vec![
            state(0, "count", StateKind::Value, None),
            state(1, "values", StateKind::List, None),
            state(2, "seen", StateKind::Map, Some((1000, false))),
            state(3, "gone", StateKind::Value, None),
            state(4, "same", StateKind::Value, None),
        ];
        for i in 0..1500u32 {
            items.push(entry(0, &i.to_le_bytes(), b"", vec![b'c', (i % 256) as u8]));
        }
        items.push(entry(1, b"k", b"", list(&[b"a", b"", b"bc"])));
        items.push(entry(2, b"k", b"u1", with_ttl(b"x", 77)));
        items.push(entry(3, b"k", b"", b"old".to_vec()));
        items.push(entry(4, b"k", b"", b"kept".to_vec()));
        items.push(SnapshotItem::Timer {
            event_time: true,
            key_group: 3,
            key: b"k".to_vec(),
            timestamp: 42,
        });
        for item in &items {
            writer.write(item).expect("write");
        }
        writer
            .finish()
            .into_inner()
            .map_err(|e| e.into_error())
            .expect("flush")
            .finish()
            .expect("finish")
    }

    #[test]
    fn values_list_elements_and_map_values_are_migrated_in_chunks_and_dropped_states_go() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let files = FileStore::at(dir.path());
        let file = snapshot(&files);
        let out_dir = dir.path().join("out");
        std::fs::create_dir_all(&out_dir).expect("out");
        let out = FileStore::at(&out_dir);
        let migrate: HashMap<String, String> = ["count", "values", "seen"]
            .into_iter()
            .map(|s| (s.to_string(), format!("{s}-v1")))
            .collect();
        let drop: BTreeSet<String> = ["gone".to_string()].into();
        let mut calls = Vec::new();
        let mut migrate_fn = |state: &str, old_schema: &str, values: &[Vec<u8>]| {
            calls.push((state.to_string(), old_schema.to_string(), values.len()));
            Ok(values.iter().map(|v| [v.as_slice(), b"!"].concat()).collect::<Vec<_>>())
        };
        let plan = StatesPlan {
            migrate: &migrate,
            drop: &drop,
        };
        let written = rewrite_file(&files, &file, &out, &plan, &mut migrate_fn)
            .map_err(|_| "failed")
            .expect("rewritten");
        // One call per chunk: never more than CHUNK values, never per entry.
        assert!(calls.iter().all(|(_, _, n)| *n <= CHUNK), "{calls:?}");
        let count_values: usize = calls.iter().filter(|c| c.0 == "count").map(|c| c.2).sum();
        assert_eq!(count_values, 1500);
        assert!(calls.iter().filter(|c| c.0 == "count").count() <= 3, "{calls:?}");
        assert!(calls.iter().all(|(s, schema, _)| *schema == format!("{s}-v1")));

        let items = items(&out, &written);
        let names: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                SnapshotItem::State { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["count", "values", "seen", "same"]);
        let value_of = |state: u32| -> Vec<Vec<u8>> {
            items
                .iter()
                .filter_map(|i| match i {
                    SnapshotItem::Entry { state: s, value, .. } if *s == state => Some(value.clone()),
                    _ => None,
                })
                .collect()
        };
        let counts = value_of(0);
        assert_eq!(counts.len(), 1500);
        assert!(counts.iter().all(|v| v.len() == 3 && v[0] == b'c' && v[2] == b'!'));
        assert_eq!(value_of(1), [list(&[b"a!", b"!", b"bc!"])]);
        assert_eq!(value_of(2), [with_ttl(b"x!", 77)]);
        assert!(value_of(3).is_empty(), "a dropped state has no entries");
        assert_eq!(value_of(4), [b"kept".to_vec()]);
        assert!(matches!(items.last(), Some(SnapshotItem::Timer { timestamp: 42, .. })));
        // Map keys keep their encoding.
        assert!(
            items
                .iter()
                .any(|i| matches!(i, SnapshotItem::Entry { state: 2, user_key, .. } if user_key == b"u1"))
        );
    }

    #[test]
    fn a_failing_migration_names_its_state() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let files = FileStore::at(dir.path());
        let file = snapshot(&files);
        let out_dir = dir.path().join("out");
        std::fs::create_dir_all(&out_dir).expect("out");
        let migrate: HashMap<String, String> = [("values".to_string(), "v1".to_string())].into();
        let drop = BTreeSet::new();
        let mut failing = |_: &str, _: &str, _: &[Vec<u8>]| Err(GuestCallError::Refused("no way".to_string()));
        let plan = StatesPlan {
            migrate: &migrate,
            drop: &drop,
        };
        match rewrite_file(&files, &file, &FileStore::at(&out_dir), &plan, &mut failing) {
            Err(RewriteError::Migration { state, reason }) => {
                assert_eq!((state.as_str(), reason.to_string().as_str()), ("values", "no way"))
            }
            _ => panic!("the migration error should be reported"),
        }
    }
}
