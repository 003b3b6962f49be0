//! `swarmwall user` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `swarmwall user`.
#[derive(Debug, clap::Args)]
pub(crate) struct UserArgs {}

/// Run `swarmwall user`.
pub(crate) fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall user` is not implemented yet")
}
