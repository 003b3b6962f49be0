//! The `swarmwall` command: thin subcommands over `swarmwall-server`, `swarmwall-capture` and
//! `swarmwall-core`. Each subcommand lives in `cli/<name>.rs` with its clap arguments and a
//! `run` function returning the process exit code.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// jemalloc as the global allocator (feature `jemalloc`, the default): an idle relayed session
/// costs 1.6 KiB with it against 2.1 KiB with glibc's malloc, whose `memalign` leaves a free
/// fragment beside each 128-byte-aligned tokio task and readiness record (measured with
/// `scripts/bench-alloc.sh`; docs/benchmarks.md, "Idle memory per session").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// mimalloc instead (`--no-default-features --features mimalloc`), for comparison.
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// swarmwall: a SOCKS5 proxy that keeps BitTorrent off your servers.
#[derive(Debug, Parser)]
#[command(name = "swarmwall", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SOCKS5 proxy.
    Serve(cli::serve::ServeArgs),
    /// Check a configuration file and report errors with file, line and key.
    CheckConfig(cli::serve::CheckConfigArgs),
    /// Classify the flows of pcap/pcapng captures offline.
    Inspect(cli::inspect::InspectArgs),
    /// Manage accounts (add, passwd, remove, list, disable, totp).
    User(cli::user::UserArgs),
    /// Verify the hash chain of a security event log.
    Audit(cli::audit::AuditArgs),
    /// List or clear strikes (graduated response).
    Strikes(cli::strikes::StrikesArgs),
    /// State store maintenance (migrate between embedded and Redis).
    Store(cli::store::StoreArgs),
    /// Actively test a SOCKS5 node with synthetic BitTorrent traffic and benign controls.
    Probe(cli::probe::ProbeArgs),
    /// Watch known swarms for the operator's own egress addresses.
    Monitor(cli::monitor::MonitorArgs),
    /// Write the manual pages (swarmwall.1 and one per subcommand) into a directory.
    #[command(hide = true)]
    Man(cli::man::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::CheckConfig(args) => cli::serve::check_config(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::User(args) => cli::user::run(args),
        Command::Audit(args) => cli::audit::run(args),
        Command::Strikes(args) => cli::strikes::run(args),
        Command::Store(args) => cli::store::run(args),
        Command::Probe(args) => cli::probe::run(args),
        Command::Monitor(args) => cli::monitor::run(args),
        Command::Man(args) => cli::man::run(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("swarmwall: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every subcommand (the man pages are generated from
    /// the same definitions).
    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
