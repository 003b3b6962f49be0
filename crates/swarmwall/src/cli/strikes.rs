//! `swarmwall strikes` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `swarmwall strikes`.
#[derive(Debug, clap::Args)]
pub(crate) struct StrikesArgs {}

/// Run `swarmwall strikes`.
pub(crate) fn run(args: StrikesArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall strikes` is not implemented yet")
}
