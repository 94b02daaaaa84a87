//! `weir state dump SAVEPOINT --uid UID --state NAME`: print the entries of
//! one keyed state of a savepoint as JSON lines, decoded by the operator's
//! module where it says how (its `state-codec` export), else as UTF-8 text
//! when valid, else as `{"hex": "…"}`.
//!
//! The module is the one given with `--module`, else the one the savepoint
//! names, looked for in the module path by its name (and, for a name with
//! hyphens, by the file name cargo gives its crate); when it is not found,
//! a note on standard error lists every file tried.

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
pub(super) struct StateArgs {
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
    /// names, found in the module path as `<name>.wasm` or, for a name with
    /// hyphens, with underscores as cargo writes it (`plate_stats.wasm` for
    /// `plate-stats`), if its content is the same).
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
    /// Also look for modules in this folder (repeatable; `WEIR_MODULE_PATH` too).
    #[arg(long = "module-path", value_name = "DIR")]
    module_path: Vec<PathBuf>,
}

pub(super) fn state(args: StateArgs) -> anyhow::Result<ExitCode> {
    let StateCommand::Dump(args) = args.command;
    let dumped = dump(&args.savepoint, &args.uid, &args.state)?;
    let file = match (&args.module, &dumped.module) {
        (Some(file), _) => Some(file.clone()),
        (None, None) => None,
        (None, Some(meta)) => match find_module(meta, &args.module_path) {
            Ok(file) => Some(file),
            Err(tried) => {
                eprintln!("{}", not_found_note(meta, &tried));
                None
            }
        },
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

/// A file looked at for the savepoint's module, and why it was not it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tried {
    file: PathBuf,
    why: &'static str,
}

/// The file names the module `name` may have: `<name>.wasm`, and, when the
/// name has hyphens, the name cargo gives the component of a crate so
/// named (`plate-stats` builds `plate_stats.wasm`).
fn file_names(name: &str) -> Vec<String> {
    let mut names = vec![format!("{name}.wasm")];
    if name.contains('-') {
        names.push(format!("{}.wasm", name.replace('-', "_")));
    }
    names
}

/// The file in the module path (`.`, then `--module-path`, then
/// `WEIR_MODULE_PATH`) with one of the module's [`file_names`] whose content
/// is the module the savepoint names; else every file tried, in order.
fn find_module(meta: &ModuleMeta, extra: &[PathBuf]) -> Result<PathBuf, Vec<Tried>> {
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from(".")];
    dirs.extend(extra.iter().cloned());
    if let Some(path) = std::env::var_os("WEIR_MODULE_PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let names = file_names(&meta.name);
    let mut tried = Vec::new();
    for file in dirs.iter().flat_map(|dir| names.iter().map(move |name| dir.join(name))) {
        match digest(&file) {
            Some(d) if d == meta.digest => return Ok(file),
            found => {
                let why = match found {
                    Some(_) => "another module",
                    None if file.exists() => "unreadable",
                    None => "missing",
                };
                tried.push(Tried { file, why });
            }
        }
    }
    Err(tried)
}

/// What `weir state dump` says when it cannot find the savepoint's module.
fn not_found_note(meta: &ModuleMeta, tried: &[Tried]) -> String {
    let tried: Vec<String> = tried
        .iter()
        .map(|t| format!("{} ({})", t.file.display(), t.why))
        .collect();
    format!(
        "note: module {} {} of the savepoint not found, so its state is shown undecoded (pass --module FILE); tried: {}",
        meta.name,
        meta.version,
        tried.join(", ")
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_name_with_hyphens_is_also_looked_for_with_underscores() {
        assert_eq!(file_names("wordcount"), ["wordcount.wasm"]);
        assert_eq!(file_names("plate-stats"), ["plate-stats.wasm", "plate_stats.wasm"]);
    }

    #[test]
    fn the_note_lists_every_file_tried() {
        let meta = ModuleMeta {
            name: "plate-stats".into(),
            version: "1.0.0".into(),
            digest: "00".into(),
        };
        let tried = [
            Tried {
                file: "./plate-stats.wasm".into(),
                why: "missing",
            },
            Tried {
                file: "./plate_stats.wasm".into(),
                why: "another module",
            },
        ];
        assert_eq!(
            not_found_note(&meta, &tried),
            "note: module plate-stats 1.0.0 of the savepoint not found, so its state is shown undecoded \
             (pass --module FILE); tried: ./plate-stats.wasm (missing), ./plate_stats.wasm (another module)"
        );
    }
}
