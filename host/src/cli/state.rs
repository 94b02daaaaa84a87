//! `weir state dump SAVEPOINT --uid UID --state NAME`: print the entries of
//! one keyed state of a savepoint as JSON lines, decoded by the operator's
//! module where it says how (its `state-codec` export), else as UTF-8 text
//! when valid, else as `{"hex": "…"}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::wasm_runtime;
use crate::checkpoint::dump::{StateDump, dump};
use crate::checkpoint::savepoint::ModuleMeta;
use crate::wasm::codec::{Part, decode};
use crate::wasm::{UdfModule, WasmRuntime};

/// Arguments of `weir state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Print one keyed state of a savepoint as JSON lines
    /// (`{"key_group":…,"key":…,"user_key":…,"value":…}`).
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// The savepoint folder.
    savepoint: PathBuf,
    /// The operator's uid.
    #[arg(long)]
    uid: String,
    /// The state's name.
    #[arg(long)]
    state: String,
    /// The module that decodes the state (default: the module the savepoint
    /// names, found by file name `<name>.wasm` in the module path, if its
    /// content is the same).
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
    /// Also look for modules in this folder (repeatable; `WEIR_MODULE_PATH` too).
    #[arg(long = "module-path", value_name = "DIR")]
    module_path: Vec<PathBuf>,
}

pub(super) fn state(args: StateArgs) -> anyhow::Result<ExitCode> {
    let StateCommand::Dump(args) = args.command;
    let dumped = dump(&args.savepoint, &args.uid, &args.state)?;
    let file = match &args.module {
        Some(file) => Some(file.clone()),
        None => dumped
            .module
            .as_ref()
            .and_then(|meta| find_module(meta, &args.module_path)),
    };
    let columns = match file {
        Some(file) => {
            let runtime = wasm_runtime()?;
            let module = runtime.load(&file)?;
            Columns::decode(&dumped, Some((&runtime, &module)))?
        }
        None => Columns::decode(&dumped, None)?,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, entry) in dumped.entries.iter().enumerate() {
        let user_key = if entry.user_key.is_empty() && columns.user_keys.is_none() {
            "null".to_string()
        } else {
            json(columns.user_keys.as_ref().and_then(|c| c[i].clone()), &entry.user_key)
        };
        writeln!(
            out,
            r#"{{"key_group":{},"key":{},"user_key":{user_key},"value":{}}}"#,
            entry.key_group,
            json(columns.keys[i].clone(), &entry.key),
            json(columns.values[i].clone(), &entry.value),
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What the module decoded, per entry (`None`: it could not).
struct Columns {
    keys: Vec<Option<String>>,
    user_keys: Option<Vec<Option<String>>>,
    values: Vec<Option<String>>,
}

impl Columns {
    fn decode(dumped: &StateDump, module: Option<(&WasmRuntime, &UdfModule)>) -> anyhow::Result<Self> {
        let entries = &dumped.entries;
        let none = || vec![None; entries.len()];
        let is_map = dumped.state.kind == "map";
        let Some((runtime, module)) = module else {
            return Ok(Self {
                keys: none(),
                user_keys: is_map.then(none),
                values: none(),
            });
        };
        let name = &dumped.state.name;
        let column = |part: Part, pick: fn(&crate::checkpoint::dump::StateEntry) -> &Vec<u8>| {
            let items: Vec<Vec<u8>> = entries.iter().map(|e| pick(e).clone()).collect();
            decode(runtime, module, name, part, &items)
                .map_err(|e| anyhow::anyhow!("module {} failed to decode state `{name}`: {e}", module.display_name()))
        };
        Ok(Self {
            keys: column(Part::Key, |e| &e.key)?,
            user_keys: if is_map {
                Some(column(Part::UserKey, |e| &e.user_key)?)
            } else {
                None
            },
            values: column(Part::Value, |e| &e.value)?,
        })
    }
}

/// The JSON of one item: the module's, if it is valid JSON; else the bytes
/// as a string if they are UTF-8; else `{"hex":"…"}`.
fn json(decoded: Option<String>, bytes: &[u8]) -> String {
    if let Some(text) = decoded
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
    {
        return value.to_string();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::Value::String(text.to_string()).to_string(),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!(r#"{{"hex":"{hex}"}}"#)
        }
    }
}

/// `<name>.wasm` in the module path whose content is the module the
/// savepoint names.
fn find_module(meta: &ModuleMeta, extra: &[PathBuf]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from(".")];
    dirs.extend(extra.iter().cloned());
    if let Some(path) = std::env::var_os("WEIR_MODULE_PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|dir| dir.join(format!("{}.wasm", meta.name)))
        .find(|file| digest(file).is_some_and(|d| d == meta.digest))
}

/// SHA-256 of a file, hex.
fn digest(file: &Path) -> Option<String> {
    use sha2::Digest;
    let bytes = std::fs::read(file).ok()?;
    Some(
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}
