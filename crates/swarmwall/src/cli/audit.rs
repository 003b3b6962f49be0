//! `swarmwall audit verify FILE`: check the hash chain of a security event log.
//!
//! Exit status 0 when every record is intact; 1 naming the first bad line (edited, removed or
//! reordered records); 2 when the file cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use swarmwall_server::audit::{AuditError, verify};

/// Arguments of `swarmwall audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Verify the hash chain; names the first bad line.
    Verify {
        /// The security event log (JSON lines).
        file: PathBuf,
    },
}

/// Run `swarmwall audit`.
pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify { file } => match verify(&file) {
            Ok(report) => {
                println!(
                    "{}: intact, {} records, last hash {}",
                    file.display(),
                    report.records,
                    report.last_hash
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(AuditError::Broken { path, line, reason }) => {
                eprintln!("{}: line {line}: {reason}", path.display());
                Ok(ExitCode::from(1))
            }
            Err(error) => Err(error.into()),
        },
    }
}
