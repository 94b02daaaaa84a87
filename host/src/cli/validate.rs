//! `weir validate JOB`: check a job file and its modules.

use std::process::ExitCode;

use clap::Args;

use super::{JobArgs, wasm_runtime};
use crate::job::load_job;
use crate::plan::VertexKind;

/// Arguments of `weir validate`.
#[derive(Debug, Args)]
pub(super) struct ValidateArgs {
    #[command(flatten)]
    job: JobArgs,
}

pub(super) fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let wasm = wasm_runtime()?;
    match load_job(&args.job.job, &args.job.load_options(), &wasm) {
        Ok(plan) => {
            let count = |f: fn(&VertexKind) -> bool| plan.vertices.iter().filter(|v| f(&v.kind)).count();
            println!(
                "{}: job `{}` is valid: {} source(s), {} operator(s), {} sink(s)",
                args.job.job.display(),
                plan.name,
                count(|k| matches!(k, VertexKind::Source(_))),
                count(|k| matches!(k, VertexKind::Operator(_))),
                count(|k| matches!(k, VertexKind::Sink(_))),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
