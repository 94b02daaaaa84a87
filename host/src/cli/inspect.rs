//! `weir inspect MODULE.wasm`: what a module is, exports and imports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::wasm_runtime;
use crate::wasm::{WIT_PACKAGE, WIT_VERSION};

/// Arguments of `weir inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The module (a Wasm component).
    module: PathBuf,
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
    println!("module:    {}", module.info.name);
    println!("version:   {}", module.info.version);
    println!("file:      {}", module.path.display());
    println!("sha256:    {}", module.digest);
    println!("contract:  {WIT_PACKAGE}@{WIT_VERSION}");
    println!("worlds:    {}", worlds(&module.exports).join(", "));
    println!("functions:");
    for function in &module.info.functions {
        let states = if function.states.is_empty() {
            String::new()
        } else {
            format!("  states: {}", function.states.join(", "))
        };
        println!("  {:<24} {}{states}", function.name, function.kind);
    }
    println!("exports:");
    for export in &module.exports {
        println!("  {export}");
    }
    println!("imports:");
    for import in &module.imports {
        println!("  {import}");
    }
    Ok(ExitCode::SUCCESS)
}
