//! `weir inspect MODULE.wasm`: what a module is, its functions with the
//! states each opens (name, kind, schema, whether the module's state codec
//! decodes it), the state migrations it offers, its exports and imports.
//!
//! The states are learned by starting each function once, with no records
//! (see [`crate::wasm::probe`]); a function that needs parameters to start
//! gets them with `--param`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::wasm_runtime;
use crate::job::load::DEFAULT_MAX_PARALLELISM;
use crate::job::params::parse_assignment;
use crate::state::StateDescriptor;
use crate::wasm::codec::decodes;
use crate::wasm::instance::DESCRIBE_LIMITS;
use crate::wasm::migration::Migrator;
use crate::wasm::probe::{ProbeSpec, probe};
use crate::wasm::{FunctionInfo, UdfModule, WIT_PACKAGE, WIT_VERSION, WasmRuntime};

/// Arguments of `weir inspect`.
#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// The module (a Wasm component).
    module: PathBuf,
    /// A parameter the functions are started with to learn their states:
    /// `--param name=value` (repeatable).
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_assignment)]
    params: Vec<(String, String)>,
}

/// The worlds of the WIT package whose exports the module has.
fn worlds(exports: &[String]) -> Vec<&'static str> {
    let has = |interface: &str| exports.contains(&crate::wasm::module::interface_name(interface));
    let mut worlds = Vec::new();
    if has("library") {
        let all = [
            ("transform-module", "transform"),
            ("key-selector-module", "key-selector"),
            ("keyed-process-module", "keyed-process"),
            ("window-aggregate-module", "window-aggregate"),
            ("join-module", "join"),
            ("keyed-co-process-module", "keyed-co-process"),
            ("watermark-generator-module", "watermark-generator"),
            ("process-window-module", "process-window"),
            ("window-evictor-module", "window-evictor"),
            ("window-trigger-module", "window-trigger"),
            ("state-migration-module", "state-migration"),
            ("state-codec-module", "state-codec"),
        ];
        for (world, interface) in all {
            if has(interface) {
                worlds.push(world);
            }
        }
        if worlds.len() == all.len() {
            worlds.push("any-module");
        }
    }
    if worlds.is_empty() {
        worlds.push("none of weir:udf");
    }
    worlds
}

pub(super) fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let wasm = wasm_runtime()?;
    let module = wasm.load(&args.module)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "module:    {}", module.info.name)?;
    writeln!(out, "version:   {}", module.info.version)?;
    writeln!(out, "file:      {}", module.path.display())?;
    writeln!(out, "sha256:    {}", module.digest)?;
    writeln!(out, "contract:  {WIT_PACKAGE}@{WIT_VERSION}")?;
    writeln!(out, "worlds:    {}", worlds(&module.exports).join(", "))?;
    writeln!(out, "functions:")?;
    for function in &module.info.functions {
        writeln!(out, "  {:<24} {}", function.name, function.kind)?;
        for line in state_lines(&wasm, &module, function, &args.params)? {
            writeln!(out, "    {line}")?;
        }
    }
    writeln!(out, "migrations:")?;
    let mut migrator = Migrator::new(wasm.engine(), &module, "inspect", DESCRIBE_LIMITS)
        .map_err(|e| anyhow::anyhow!("module {} cannot list its migrations: {e}", module.display_name()))?;
    let migrations = migrator
        .migrations()
        .map_err(|e| anyhow::anyhow!("module {} cannot list its migrations: {e}", module.display_name()))?;
    if migrations.is_empty() {
        writeln!(out, "  none")?;
    }
    for m in migrations {
        writeln!(
            out,
            "  function `{}`, state `{}`, from schema `{}`",
            m.function, m.state, m.from_schema
        )?;
    }
    writeln!(out, "exports:")?;
    for export in &module.exports {
        writeln!(out, "  {export}")?;
    }
    writeln!(out, "imports:")?;
    for import in &module.imports {
        writeln!(out, "  {import}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One line per state `function` opens when it starts (see
/// [`crate::wasm::probe`]): `state `NAME`: KIND, schema `SCHEMA`, codec: yes`;
/// or why they are unknown.
fn state_lines(
    wasm: &WasmRuntime,
    module: &Arc<UdfModule>,
    function: &FunctionInfo,
    params: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    let spec = ProbeSpec {
        function: &function.name,
        operator: "inspect",
        params,
        max_parallelism: DEFAULT_MAX_PARALLELISM,
        limits: DESCRIBE_LIMITS,
    };
    let states = match probe(wasm.engine(), module, spec) {
        Ok(probe) => probe.states,
        Err(reason) => {
            let described = if function.states.is_empty() {
                String::new()
            } else {
                format!("; the module names: {}", function.states.join(", "))
            };
            return Ok(vec![format!(
                "states: unknown: {reason} (start it with --param NAME=VALUE){described}"
            )]);
        }
    };
    let names: Vec<&str> = states.iter().map(|s| s.descriptor.name.as_str()).collect();
    let decoded = decodes(wasm, module, &names).map_err(|e| {
        anyhow::anyhow!(
            "module {} failed to answer for its state codec: {e}",
            module.display_name()
        )
    })?;
    Ok(states
        .iter()
        .zip(decoded)
        .map(|(state, decoded)| {
            let schema = if state.schema.is_empty() {
                "no schema".to_string()
            } else {
                format!("schema `{}`", state.schema)
            };
            let codec = if decoded { "yes" } else { "no" };
            format!(
                "state `{}`: {}, {schema}, codec: {codec}",
                state.descriptor.name,
                kind(&state.descriptor)
            )
        })
        .collect())
}

/// A state's kind in words: `value`, `map with a TTL of 1000 ms`,
/// `broadcast map`, `operator list (split)`.
fn kind(descriptor: &StateDescriptor) -> String {
    let name = &descriptor.name;
    if name.starts_with(crate::state::broadcast::PREFIX) {
        return "broadcast map".into();
    }
    if name.starts_with(crate::state::operator::SPLIT) {
        return "operator list (split)".into();
    }
    if name.starts_with(crate::state::operator::UNION) {
        return "operator list (union)".into();
    }
    match descriptor.ttl {
        Some(ttl) => format!(
            "{} with a TTL of {} ms{}",
            descriptor.kind,
            ttl.ttl_ms,
            if ttl.update_on_read { ", refreshed on read" } else { "" }
        ),
        None => descriptor.kind.to_string(),
    }
}
