//! `swarmwall audit` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `swarmwall audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {}

/// Run `swarmwall audit`.
pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall audit` is not implemented yet")
}
