//! One restore path: which state a run starts from, and which modules run it.
//!
//! `weir run --restore latest|DIR`, `weir run --from-savepoint DIR`, the
//! resume after `weir upgrade` and the in-process restarts of the restart
//! strategy all come here, with the job's plan and the restore point found
//! on disk, and get back the plan to run and the checkpoint to load:
//!
//! 1. Every checkpoint records, per operator uid, the module that ran
//!    (name, version, digest), the module the job file named (they differ
//!    after `weir upgrade`), the state schemas, and a copy of the module in
//!    its shared files ([`OperatorModule`]).
//! 2. Restoring a **checkpoint** with a job file that still names the module
//!    the job was started with, after `weir upgrade` installed another one,
//!    runs the module the checkpoint was taken with (its copy), and says so
//!    on stderr: a crash does not undo an upgrade.
//! 3. Any operator whose module still differs from the one that wrote its
//!    state goes through the hot-swap checks ([`super::hot_swap`]): its
//!    state's schemas are compared, migrations run, or the restore is
//!    refused with the same message a savepoint restore gives. A checkpoint
//!    is first copied into a savepoint (canonical files, whatever the
//!    backend) under the job's `migrated/` folder, so both kinds of restore
//!    point take exactly the same path from there.
//!
//! A **savepoint** is restored with the modules the job file names (it is
//! how an operator chooses a version: hot swap, or rolling back).

use std::path::{Path, PathBuf};

use super::hot_swap::{HotSwapError, keyed_function, prepare_restore};
use super::savepoint::{SavepointError, SavepointManifest};
use crate::plan::{JobPlan, VertexKind};
use crate::storage::files::{CheckpointStorage, FileStore, StorageError};
use crate::storage::manifest::{Manifest, ModuleMeta, OperatorModule};
use crate::wasm::WasmRuntime;

/// Which checkpoint a run starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RestoreFrom {
    /// The latest complete checkpoint of the job, if there is one.
    Latest,
    /// A checkpoint folder (`…/chk-000042`).
    Checkpoint(PathBuf),
    /// A savepoint folder, restored by operator uid.
    Savepoint {
        /// The folder.
        dir: PathBuf,
        /// Skip the state of uids the job does not have instead of refusing.
        allow_non_restored_state: bool,
    },
}

/// A checkpoint or savepoint found on disk, not yet checked against the job.
#[derive(Debug, Clone)]
pub(crate) struct RestorePoint {
    /// Its manifest.
    pub manifest: Manifest,
    /// The store its files are in.
    pub files: FileStore,
    /// The checkpoint or savepoint folder.
    pub path: PathBuf,
    /// `checkpoint PATH` or `savepoint PATH`, for messages.
    pub from: String,
    /// A savepoint (restored with the job file's modules), with whether
    /// state of uids the job lacks may be dropped.
    pub savepoint: Option<(SavepointManifest, bool)>,
}

/// The plan to run and the state to load.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The job, with the modules that run it.
    pub plan: JobPlan,
    /// The checkpoint to restore and the store of its files.
    pub restore: Option<(Manifest, FileStore)>,
}

/// Why a restore point cannot be restored into a job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// The state does not fit the job's modules.
    #[error(transparent)]
    HotSwap(Box<HotSwapError>),
    /// The savepoint does not fit the job.
    #[error(transparent)]
    Savepoint(#[from] SavepointError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The module a checkpoint was taken with cannot run the operator.
    #[error("cannot restore operator `{uid}` from {from}: its module {module} (recorded by the checkpoint) {reason}")]
    RecordedModule {
        /// The operator.
        uid: String,
        /// `checkpoint PATH`.
        from: String,
        /// The module, `name version`.
        module: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<HotSwapError> for ResolveError {
    fn from(error: HotSwapError) -> Self {
        Self::HotSwap(Box::new(error))
    }
}

/// Finds the restore point `from` names, in the job's checkpoint `storage`
/// for checkpoints. `None`: `latest` found no checkpoint at all.
pub(crate) fn find(
    from: &RestoreFrom,
    storage: Option<&CheckpointStorage>,
) -> Result<Option<RestorePoint>, ResolveError> {
    match from {
        RestoreFrom::Savepoint {
            dir,
            allow_non_restored_state,
        } => {
            let (savepoint, files) = super::savepoint::load(dir)?;
            Ok(Some(RestorePoint {
                manifest: savepoint.checkpoint.clone(),
                files,
                path: dir.clone(),
                from: format!("savepoint {}", dir.display()),
                savepoint: Some((savepoint, *allow_non_restored_state)),
            }))
        }
        RestoreFrom::Checkpoint(dir) => {
            let (storage, manifest) = CheckpointStorage::load_dir(dir)?;
            Ok(Some(checkpoint_point(&storage, manifest)))
        }
        RestoreFrom::Latest => {
            let Some(storage) = storage else { return Ok(None) };
            // Refuses when checkpoints exist but none is intact: starting
            // from the beginning would emit again what they covered.
            let (manifest, refused) = storage.latest_intact()?;
            for reason in refused {
                tracing::warn!("{reason}; falling back to an earlier checkpoint");
            }
            Ok(manifest.map(|manifest| checkpoint_point(storage, manifest)))
        }
    }
}

/// The restore point of checkpoint `manifest` of `storage`.
pub(crate) fn checkpoint_point(storage: &CheckpointStorage, manifest: Manifest) -> RestorePoint {
    let path = storage.root().join(format!("chk-{:06}", manifest.id.0));
    RestorePoint {
        manifest,
        files: storage.files().clone(),
        from: format!("checkpoint {}", path.display()),
        path,
        savepoint: None,
    }
}

/// Resolves `point` against `plan`: the plan to run (after an upgrade, with
/// the modules the checkpoint was taken with) and the state to load
/// (migrated into `scratch` where shapes changed).
pub(crate) fn resolve(
    plan: &JobPlan,
    wasm: &WasmRuntime,
    point: RestorePoint,
    scratch: &Path,
) -> Result<Resolved, ResolveError> {
    let RestorePoint {
        manifest,
        files,
        path,
        from,
        savepoint,
    } = point;
    let mut plan = plan.clone();
    match &savepoint {
        Some((savepoint, allow_non_restored_state)) => {
            let uids = plan.vertices.iter().map(|v| v.uid.as_str());
            savepoint.check_max_parallelism(&path, plan.settings.max_parallelism)?;
            savepoint.check_uids(&path, uids, *allow_non_restored_state)?;
        }
        None => run_recorded_modules(&mut plan, wasm, &manifest, &files, &from)?,
    }
    let changed = plan.vertices.iter().any(|vertex| {
        keyed_function(&vertex.kind).is_some_and(|function| {
            manifest
                .module_of(&vertex.uid)
                .is_some_and(|recorded| recorded.module.digest != function.module.digest)
                && manifest.tasks_of(&vertex.uid).any(|t| t.keyed.is_some())
        })
    });
    if !changed {
        return Ok(Resolved {
            plan,
            restore: Some((manifest, files)),
        });
    }
    // The hot-swap checks read a savepoint: a checkpoint becomes one first.
    std::fs::create_dir_all(scratch).map_err(|source| StorageError::Io {
        what: "cannot create",
        path: scratch.to_path_buf(),
        source,
    })?;
    let (dir, savepoint_manifest, savepoint_files, allow_non_restored_state) = match savepoint {
        Some((savepoint, allow)) => (None, savepoint, files, allow),
        None => {
            let dir = super::savepoint::write(&manifest, &files, scratch)?;
            let (converted, converted_files) = super::savepoint::load(&dir)?;
            (Some(dir), converted, converted_files, false)
        }
    };
    let (checkpoint, restore_files) = prepare_restore(
        &plan,
        wasm.engine(),
        &from,
        &savepoint_manifest,
        savepoint_files,
        allow_non_restored_state,
        scratch,
    )?;
    if let Some(dir) = dir
        && checkpoint != savepoint_manifest.checkpoint
    {
        // Migrated into a folder of its own: the converted copy is not needed.
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(Resolved {
        plan,
        restore: Some((checkpoint, restore_files)),
    })
}

/// Step 2: operators whose job file still names the module the job was
/// started with, while the checkpoint ran another (installed by
/// `weir upgrade`), run the checkpoint's copy of it.
fn run_recorded_modules(
    plan: &mut JobPlan,
    wasm: &WasmRuntime,
    manifest: &Manifest,
    files: &FileStore,
    from: &str,
) -> Result<(), ResolveError> {
    for vertex in &mut plan.vertices {
        let VertexKind::Operator(operator) = &mut vertex.kind else {
            continue;
        };
        let Some(recorded) = manifest.module_of(&vertex.uid) else {
            continue;
        };
        let function = operator.function();
        if recorded.module.digest == function.module.digest || recorded.declared != function.declared {
            continue;
        }
        let Some(file) = &recorded.file else { continue };
        let failed = |reason: String| ResolveError::RecordedModule {
            uid: vertex.uid.clone(),
            from: from.to_string(),
            module: recorded.module.to_string(),
            reason,
        };
        let module = wasm
            .load(&files.path(file))
            .map_err(|e| failed(format!("cannot be loaded: {e}")))?;
        let named = format!("{} {}", function.module.info.name, function.module.info.version);
        operator.swap_module(&module).map_err(|e| failed(e.to_string()))?;
        eprintln!(
            "weir: operator `{}` runs {} (sha256 {}), the module {} was taken with after `weir upgrade`; the job file names {}",
            vertex.uid,
            recorded.module,
            short(&recorded.module.digest),
            from,
            named,
        );
    }
    Ok(())
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// What a checkpoint records of every operator of `plan`: its module, the
/// module its job file named, its state `schemas` (by uid) and a copy of
/// the module adopted into `files` (`None`: no copy is kept).
pub(crate) fn operator_modules(
    plan: &JobPlan,
    schemas: &super::hot_swap::Schemas,
    files: Option<&FileStore>,
) -> Vec<OperatorModule> {
    plan.vertices
        .iter()
        .filter_map(|vertex| {
            let VertexKind::Operator(operator) = &vertex.kind else {
                return None;
            };
            let function = operator.function();
            let module = &function.module;
            let file = files.and_then(|files| {
                let name = format!("module-{}.wasm", module.digest);
                files
                    .adopt(&module.path, &name)
                    .inspect_err(|e| {
                        tracing::warn!("checkpoints keep no copy of module {}: {e}", module.path.display())
                    })
                    .ok()
            });
            Some(OperatorModule {
                uid: vertex.uid.clone(),
                module: ModuleMeta {
                    name: module.info.name.clone(),
                    version: module.info.version.clone(),
                    digest: module.digest.clone(),
                },
                declared: function.declared.clone(),
                schemas: schemas.get(&vertex.uid).cloned().unwrap_or_default(),
                file,
            })
        })
        .collect()
}
