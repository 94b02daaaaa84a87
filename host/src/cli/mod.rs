//! The `weir` command line: one file a subcommand. This is the only place
//! that uses `anyhow`; the library reports typed errors.

mod endpoint;
mod inspect;
mod list;
mod run;
mod savepoint;
mod state;
mod stop;
mod upgrade;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::job::LoadOptions;
use crate::job::params::parse_assignment;
use crate::wasm::{EngineOptions, WasmRuntime};

/// Weir: a stateful stream processor whose user functions are WebAssembly
/// components.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing filter).
    #[arg(long, global = true, default_value = "warn", env = "WEIR_LOG")]
    log: String,
    /// Log lines as text or as JSON objects (one a line, with the job, uid
    /// and subtask of the line's span as fields).
    #[arg(long, global = true, value_enum, default_value = "text", env = "WEIR_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job to completion.
    Run(run::RunArgs),
    /// Check a job file and its modules without running it.
    Validate(validate::ValidateArgs),
    /// Show what a module exports and imports.
    Inspect(inspect::InspectArgs),
    /// List the running jobs.
    List(list::ListArgs),
    /// Take a savepoint of a running job (`weir savepoint JOB_ID [DIR]`), or
    /// delete one (`weir savepoint dispose DIR`).
    Savepoint(savepoint::SavepointArgs),
    /// Stop a running job with a final savepoint.
    Stop(stop::StopArgs),
    /// Swap the module of an operator of a running job (stop with a
    /// savepoint, swap, restore) and print the pause.
    Upgrade(upgrade::UpgradeArgs),
    /// Read the state in a savepoint (`weir state dump SAVEPOINT --uid UID --state NAME`).
    State(state::StateArgs),
}

/// Options shared by the commands that load a job.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Set a job parameter: `--param name=value` (repeatable).
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_assignment)]
    params: Vec<(String, String)>,
    /// Also look for modules in this folder (repeatable; `WEIR_MODULE_PATH` too).
    #[arg(long = "module-path", value_name = "DIR")]
    module_path: Vec<PathBuf>,
    /// Parallelism of vertices the job file gives none (default: the cores).
    #[arg(long)]
    parallelism: Option<u32>,
}

impl JobArgs {
    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            params: self.params.clone(),
            module_path: self.module_path.clone(),
            default_parallelism: self.parallelism.filter(|p| *p > 0),
        }
    }
}

fn wasm_runtime() -> anyhow::Result<std::sync::Arc<WasmRuntime>> {
    Ok(WasmRuntime::new(EngineOptions::with_default_cache())?)
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::validate(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::List(args) => list::list(args),
        Command::Savepoint(args) => savepoint::savepoint(args),
        Command::Stop(args) => stop::stop(args),
        Command::Upgrade(args) => upgrade::upgrade(args),
        Command::State(args) => state::state(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // `{error}`, not `{error:#}`: the library's errors already name
            // their cause in their message, so printing the chain repeats it.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
