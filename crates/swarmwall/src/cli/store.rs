//! `swarmwall store` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `swarmwall store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {}

/// Run `swarmwall store`.
pub(crate) fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall store` is not implemented yet")
}
