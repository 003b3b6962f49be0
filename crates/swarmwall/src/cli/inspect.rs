//! `swarmwall inspect` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `swarmwall inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {}

/// Run `swarmwall inspect`.
pub(crate) fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall inspect` is not implemented yet")
}
