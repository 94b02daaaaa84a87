//! A loaded module: compiled once, checked against the WIT contract, and
//! described by the module itself.
//!
//! Loading refuses, before any job starts, a file that is not a component,
//! a component built against another version of the `weir:udf` package, a
//! component that is not a Weir module at all, and a module whose functions
//! lack the interface their kind needs.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::InstancePre;

use super::bindings::exports::weir::udf::library;
use super::bindings::weir::udf::types as wit;
use super::engine::WasmRuntime;
use super::host_state::HostState;
use super::{WIT_PACKAGE, WIT_VERSION};

/// The kinds of function a module can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    /// One output record per input record.
    Map,
    /// Keeps or drops each record.
    Filter,
    /// Zero or more output records per input record.
    FlatMap,
    /// Computes keys for a key-by exchange.
    KeySelector,
    /// Keyed process function with state and timers.
    KeyedProcess,
    /// Incremental aggregate of a window.
    WindowAggregate,
    /// Joins pairs of records of two keyed streams.
    Join,
    /// Keyed co-process function: two keyed inputs, shared state and timers.
    KeyedCoProcess,
    /// Punctuated watermarks: declares watermarks after records.
    WatermarkGenerator,
    /// Full window function over a window's buffered elements.
    ProcessWindow,
    /// Evicts elements of firing windows.
    WindowEvictor,
    /// Decides when windows fire and purge.
    WindowTrigger,
    /// Chooses the Kafka partition of each message a sink writes.
    Partitioner,
    /// Enriches records with lookups the host runs asynchronously.
    AsyncMap,
}

impl FunctionKind {
    /// The WIT interface a module must export to run functions of this kind.
    pub fn interface(self) -> &'static str {
        match self {
            Self::Map | Self::Filter | Self::FlatMap => "transform",
            Self::KeySelector => "key-selector",
            Self::KeyedProcess => "keyed-process",
            Self::WindowAggregate => "window-aggregate",
            Self::Join => "join",
            Self::KeyedCoProcess => "keyed-co-process",
            Self::WatermarkGenerator => "watermark-generator",
            Self::ProcessWindow => "process-window",
            Self::WindowEvictor => "window-evictor",
            Self::WindowTrigger => "window-trigger",
            Self::Partitioner => "partitioner",
            Self::AsyncMap => "async-map",
        }
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Map => "map",
            Self::Filter => "filter",
            Self::FlatMap => "flat-map",
            Self::KeySelector => "key-selector",
            Self::KeyedProcess => "keyed-process",
            Self::WindowAggregate => "window-aggregate",
            Self::Join => "join",
            Self::KeyedCoProcess => "keyed-co-process",
            Self::WatermarkGenerator => "watermark-generator",
            Self::ProcessWindow => "process-window",
            Self::WindowEvictor => "window-evictor",
            Self::WindowTrigger => "window-trigger",
            Self::Partitioner => "partitioner",
            Self::AsyncMap => "async-map",
        })
    }
}

impl From<wit::FunctionKind> for FunctionKind {
    fn from(kind: wit::FunctionKind) -> Self {
        match kind {
            wit::FunctionKind::Map => Self::Map,
            wit::FunctionKind::Filter => Self::Filter,
            wit::FunctionKind::FlatMap => Self::FlatMap,
            wit::FunctionKind::KeySelector => Self::KeySelector,
            wit::FunctionKind::KeyedProcess => Self::KeyedProcess,
            wit::FunctionKind::WindowAggregate => Self::WindowAggregate,
            wit::FunctionKind::Join => Self::Join,
            wit::FunctionKind::KeyedCoProcess => Self::KeyedCoProcess,
            wit::FunctionKind::WatermarkGenerator => Self::WatermarkGenerator,
            wit::FunctionKind::ProcessWindow => Self::ProcessWindow,
            wit::FunctionKind::WindowEvictor => Self::WindowEvictor,
            wit::FunctionKind::WindowTrigger => Self::WindowTrigger,
            wit::FunctionKind::Partitioner => Self::Partitioner,
            wit::FunctionKind::AsyncMap => Self::AsyncMap,
        }
    }
}

/// One function of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: FunctionKind,
    /// Names of the keyed states it declares.
    pub states: Vec<String>,
}

/// What a module says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The module's name.
    pub name: String,
    /// The module's version.
    pub version: String,
    /// Its functions.
    pub functions: Vec<FunctionInfo>,
}

impl ModuleInfo {
    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionInfo> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// Why a module was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The engine could not be created.
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    /// The file could not be read.
    #[error("cannot read module {path}: {source}")]
    Read {
        /// The module file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a component (a core module, or not Wasm at all).
    #[error("{path} is not a WebAssembly component: {found}")]
    NotAComponent {
        /// The module file.
        path: PathBuf,
        /// What the file is instead.
        found: String,
    },
    /// The component failed to compile.
    #[error("cannot compile module {path}: {source:#}")]
    Compile {
        /// The module file.
        path: PathBuf,
        /// The compiler's error (shown with its whole chain).
        source: wasmtime::Error,
    },
    /// Built against another version of the WIT package.
    #[error(
        "module {path} was built against {found}, but this weir implements {WIT_PACKAGE}@{WIT_VERSION}: rebuild it with a matching weir-sdk"
    )]
    WrongWitVersion {
        /// The module file.
        path: PathBuf,
        /// The package version the module exports.
        found: String,
    },
    /// A component that is not a Weir module.
    #[error("module {path} is not a Weir module: expected an export `{expected}`, found exports: {found}")]
    WrongWorld {
        /// The module file.
        path: PathBuf,
        /// The export that was expected.
        expected: String,
        /// The exports the component has.
        found: String,
    },
    /// A function's kind needs an interface the module does not export.
    #[error("module {path}: function `{function}` is a {kind} function, but the module does not export `{expected}`")]
    MissingInterface {
        /// The module file.
        path: PathBuf,
        /// The function.
        function: String,
        /// Its kind.
        kind: FunctionKind,
        /// The interface that was expected.
        expected: String,
    },
    /// The component imports something the host does not provide.
    #[error("module {path} cannot be linked: {reason}")]
    Link {
        /// The module file.
        path: PathBuf,
        /// The linker's message.
        reason: String,
    },
    /// `describe` failed.
    #[error("module {path} failed to describe itself: {reason}")]
    Describe {
        /// The module file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// A compiled, checked module, ready to instantiate.
pub struct UdfModule {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub digest: String,
    /// What the module says about itself.
    pub info: ModuleInfo,
    /// Names of the component's exports.
    pub exports: Vec<String>,
    /// Names of the component's imports.
    pub imports: Vec<String>,
    pub(crate) pre: InstancePre<HostState>,
}

impl fmt::Debug for UdfModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdfModule")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The export name of interface `name` of the WIT package.
pub fn interface_name(name: &str) -> String {
    format!("{WIT_PACKAGE}/{name}@{WIT_VERSION}")
}

impl UdfModule {
    /// Reads, compiles and checks the module at `path`.
    pub fn load(runtime: &WasmRuntime, path: &Path) -> Result<Self, ModuleError> {
        let bytes = std::fs::read(path).map_err(|source| ModuleError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        check_header(path, &bytes)?;
        let digest = hex(&Sha256::digest(&bytes));
        let component = runtime
            .compile(&bytes, &digest)
            .map_err(|source| ModuleError::Compile {
                path: path.to_path_buf(),
                source,
            })?;
        let engine = runtime.engine();
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
        let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
        check_exports(path, &exports)?;
        let pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| ModuleError::Link {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
        let info = describe(runtime, path, &pre)?;
        for function in &info.functions {
            let expected = interface_name(function.kind.interface());
            if !exports.contains(&expected) {
                return Err(ModuleError::MissingInterface {
                    path: path.to_path_buf(),
                    function: function.name.clone(),
                    kind: function.kind,
                    expected,
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            digest,
            info,
            exports,
            imports,
            pre,
        })
    }

    /// `name@version (file)`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}@{} ({})", self.info.name, self.info.version, self.path.display())
    }
}

fn check_header(path: &Path, bytes: &[u8]) -> Result<(), ModuleError> {
    let not_a_component = |found: &str| ModuleError::NotAComponent {
        path: path.to_path_buf(),
        found: found.into(),
    };
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(not_a_component(
            "it is a core WebAssembly module; build the UDF for the wasm32-wasip2 target so that cargo emits a component",
        )),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        _ => Err(not_a_component(
            "the file does not start with the WebAssembly magic number",
        )),
    }
}

fn check_exports(path: &Path, exports: &[String]) -> Result<(), ModuleError> {
    let expected = interface_name("library");
    if exports.contains(&expected) {
        return Ok(());
    }
    let prefix = format!("{WIT_PACKAGE}/library@");
    if let Some(other) = exports.iter().find_map(|e| e.strip_prefix(&prefix)) {
        return Err(ModuleError::WrongWitVersion {
            path: path.to_path_buf(),
            found: format!("{WIT_PACKAGE}@{other}"),
        });
    }
    let found = if exports.is_empty() {
        "none".to_string()
    } else {
        exports.join(", ")
    };
    Err(ModuleError::WrongWorld {
        path: path.to_path_buf(),
        expected,
        found,
    })
}

fn describe(runtime: &WasmRuntime, path: &Path, pre: &InstancePre<HostState>) -> Result<ModuleInfo, ModuleError> {
    let failed = |reason: String| ModuleError::Describe {
        path: path.to_path_buf(),
        reason,
    };
    let limits = super::instance::DESCRIBE_LIMITS;
    let mut store = super::instance::new_store(
        runtime.engine(),
        HostState::new("describe", limits),
        limits.call_timeout_ms,
    );
    let instance = pre.instantiate(&mut store).map_err(|e| failed(format!("{e:#}")))?;
    let library = library::GuestIndices::new(pre)
        .and_then(|indices| indices.load(&mut store, &instance))
        .map_err(|e| failed(format!("{e:#}")))?;
    super::instance::arm_deadline(&mut store, limits.call_timeout_ms);
    let info = library
        .call_describe(&mut store)
        .map_err(|e| failed(format!("{e:#}")))?;
    Ok(ModuleInfo {
        name: info.name,
        version: info.version,
        functions: info
            .functions
            .into_iter()
            .map(|f| FunctionInfo {
                name: f.name,
                kind: f.kind.into(),
                states: f.states,
            })
            .collect(),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_components_from_core_modules() {
        let path = Path::new("m.wasm");
        assert!(check_header(path, b"\0asm\x0d\0\x01\0rest").is_ok());
        let core = check_header(path, b"\0asm\x01\0\0\0").unwrap_err().to_string();
        assert!(core.contains("core WebAssembly module"), "{core}");
        let text = check_header(path, b"hello world").unwrap_err().to_string();
        assert_eq!(
            text,
            "m.wasm is not a WebAssembly component: the file does not start with the WebAssembly magic number"
        );
    }

    #[test]
    fn exports_are_checked_for_package_and_version() {
        let path = Path::new("m.wasm");
        assert!(check_exports(path, &["weir:udf/library@0.1.0".into()]).is_ok());
        let wrong_version = check_exports(path, &["weir:udf/library@0.2.0".into()]).unwrap_err();
        assert_eq!(
            wrong_version.to_string(),
            "module m.wasm was built against weir:udf@0.2.0, but this weir implements weir:udf@0.1.0: rebuild it with a matching weir-sdk"
        );
        let wrong_world = check_exports(path, &["wasi:cli/run@0.2.6".into()]).unwrap_err();
        assert_eq!(
            wrong_world.to_string(),
            "module m.wasm is not a Weir module: expected an export `weir:udf/library@0.1.0`, found exports: wasi:cli/run@0.2.6"
        );
    }
}
