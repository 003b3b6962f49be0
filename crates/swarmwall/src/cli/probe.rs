//! `swarmwall probe` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `swarmwall probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {}

/// Run `swarmwall probe`.
pub(crate) fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall probe` is not implemented yet")
}
