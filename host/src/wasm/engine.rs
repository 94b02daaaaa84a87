//! The wasmtime engine shared by every module of a process.
//!
//! - Component model on; epoch interruption on, with a ticker thread that
//!   advances the epoch every [`EPOCH_TICK`], so a call that runs past its
//!   deadline traps instead of stalling its subtask.
//! - Compiled components are cached on disk, named by the digest of the
//!   module's bytes and of the engine's compatibility hash, so each module is
//!   compiled once per machine, not once per run.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use super::host_state::HostState;
use super::module::{ModuleError, UdfModule};

/// How often the epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of the Wasm runtime.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Folder for compiled modules; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl EngineOptions {
    /// The default cache folder: `$WEIR_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`.
    pub fn with_default_cache() -> Self {
        let dir = std::env::var_os("WEIR_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("weir")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache").join("weir")));
        Self {
            cache_dir: dir.map(|d| d.join("modules")),
        }
    }
}

/// The engine, the linker with every host import, and the loaded modules.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<PathBuf, Arc<UdfModule>>>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// Creates the engine, links the host imports and starts the epoch ticker.
    pub fn new(options: EngineOptions) -> Result<Arc<Self>, ModuleError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| ModuleError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        super::host_state::add_to_linker(&mut linker).map_err(|e| ModuleError::Engine(format!("{e:#}")))?;
        let runtime = Arc::new(Self {
            engine,
            linker,
            cache_dir: options.cache_dir,
            loaded: Mutex::new(HashMap::new()),
        });
        start_epoch_ticker(Arc::downgrade(&runtime));
        Ok(runtime)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with every host import.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Loads (or returns the already loaded) module at `path` and checks it.
    pub fn load(&self, path: &Path) -> Result<Arc<UdfModule>, ModuleError> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(module) = self.loaded.lock().ok().and_then(|loaded| loaded.get(&key).cloned()) {
            return Ok(module);
        }
        let module = Arc::new(UdfModule::load(self, path)?);
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(key, Arc::clone(&module));
        }
        Ok(module)
    }

    /// Compiles `bytes` (whose SHA-256 is `digest`), through the disk cache.
    pub(crate) fn compile(&self, bytes: &[u8], digest: &str) -> wasmtime::Result<wasmtime::component::Component> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.cwasm", self.cache_key(digest))));
        if let Some(path) = cached.as_ref().filter(|p| p.is_file()) {
            match deserialize(&self.engine, path) {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("ignoring unusable compiled module {}: {e:#}", path.display()),
            }
        }
        let component = wasmtime::component::Component::new(&self.engine, bytes)?;
        if let Some(path) = cached
            && let Err(e) = store_compiled(&component, &path)
        {
            tracing::warn!("cannot cache the compiled module at {}: {e}", path.display());
        }
        Ok(component)
    }

    fn cache_key(&self, digest: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{digest}-{:016x}", hasher.finish())
    }
}

/// Loads a compiled component from the cache.
#[expect(
    unsafe_code,
    reason = "wasmtime can only trust a precompiled artifact through an unsafe call"
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<wasmtime::component::Component> {
    // SAFETY: the file was written by `store_compiled` from a component this
    // engine configuration compiled; its name carries the engine's
    // compatibility hash, and wasmtime checks the header before using it.
    unsafe { wasmtime::component::Component::deserialize_file(engine, path) }
}

/// Writes a compiled component atomically (temporary file, then rename).
fn store_compiled(component: &wasmtime::component::Component, path: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Advances the engine's epoch until the runtime is dropped.
fn start_epoch_ticker(runtime: std::sync::Weak<WasmRuntime>) {
    let spawned = std::thread::Builder::new().name("weir-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match runtime.upgrade() {
                Some(runtime) => runtime.engine.increment_epoch(),
                None => return,
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker; call deadlines are off: {e}");
    }
}
