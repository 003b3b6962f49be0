//! `swarmwall serve` and `swarmwall check-config` (not implemented yet).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `swarmwall serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {}

/// Arguments of `swarmwall check-config`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckConfigArgs {
    /// Configuration file to check.
    file: PathBuf,
}

/// Run the proxy.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("`swarmwall serve` is not implemented yet")
}

/// Check a configuration file.
pub(crate) fn check_config(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    match swarmwall_server::config::Config::load(&args.file) {
        Ok(_) => {
            println!("{}: ok", args.file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::from(1))
        }
    }
}
