//! `swarmwall monitor` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `swarmwall monitor`.
#[derive(Debug, clap::Args)]
pub(crate) struct MonitorArgs {}

/// Run `swarmwall monitor`.
pub(crate) fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall monitor` is not implemented yet")
}
