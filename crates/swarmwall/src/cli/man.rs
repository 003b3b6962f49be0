//! `swarmwall man --out DIR` (hidden): write the manual pages generated from the clap
//! definitions with `clap_mangen`: `swarmwall.1` and one page per subcommand, nested ones
//! included (`swarmwall-user-add.1`). Packaging runs it at build time
//! (`packaging/install-man-pages.sh`); it is not meant for operators, hence hidden.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `swarmwall man`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Directory to write the pages into (created when missing; existing pages are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Write every page of `command` (the whole CLI) into `--out` and list them on stdout.
pub(crate) fn run(args: ManArgs, command: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    clap_mangen::generate_to(command, &args.out)
        .with_context(|| format!("cannot write manual pages into {}", args.out.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(&args.out)
        .with_context(|| format!("cannot list {}", args.out.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("swarmwall") && name.ends_with(".1"))
        .collect();
    pages.sort();
    for page in &pages {
        println!("{}", args.out.join(page).display());
    }
    Ok(ExitCode::SUCCESS)
}
