//! `swarmwall audit verify|head`: check the keyed hash chain of a security event log (or a
//! rotated set), optionally against an expected record or a signed checkpoint; print the head.
//!
//! Exit status of `verify`: 0 when every record is intact (and every expected record is
//! there); 1 naming the first bad line, or the expected record that is missing or differs;
//! 2 when a file, the key or the store cannot be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use swarmwall_server::audit::{
    AuditError, AuditKey, ChainHash, Checkpoint, Expected, head, verify_files, with_rotated,
};
use swarmwall_server::auth::{DEFAULT_KEY_FILE, PseudonymKey};
use swarmwall_server::config::SecurityConfig;

/// Arguments of `swarmwall audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Verify the keyed hash chain; names the first bad line.
    Verify(VerifyArgs),
    /// Print `SEQ:HASH` of the newest record (keep it off the host; check later with
    /// `verify --expect`).
    Head {
        /// The security event log.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The log, or a rotated set oldest first (`audit.jsonl.2 audit.jsonl.1 audit.jsonl`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also verify the rotated files of the (single) FILE: `FILE.N` ... `FILE.1`, then FILE.
    #[arg(long)]
    with_rotated: bool,
    /// This record must be present with this hash (`SEQ:HASH` from `audit head`); repeatable.
    #[arg(long, value_name = "SEQ:HASH")]
    expect: Vec<Expected>,
    /// A checkpoint line from the system log (`... node=N seq=S hash=H ts_ms=T mac=M`) or
    /// its JSON form: its MAC must verify and the log must hold its record.
    #[arg(long, value_name = "TEXT")]
    checkpoint: Option<String>,
    /// Check against the latest checkpoint of `--node` in this Redis fleet store.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Node name of the checkpoint in the store (default: `[security] audit_node_name`, else
    /// this host's name).
    #[arg(long)]
    node: Option<String>,
    /// Redis key prefix (default: `[store] redis_prefix`, else `swarmwall`).
    #[arg(long)]
    redis_prefix: Option<String>,
    /// The node's secret key file (the chain is keyed with a subkey of it).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Configuration file (for `[security] secret_key_file`, the node name and the store).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Data directory holding the key file (default: as `serve`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Check a log written before the chain was keyed (plain SHA-256; proves little, since
    /// anyone can recompute it).
    #[arg(long, conflicts_with_all = ["key_file", "checkpoint", "store"])]
    legacy_sha256: bool,
}

/// Run `swarmwall audit`.
pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Head { file } => match head(&file) {
            Ok((seq, hash)) => {
                println!("{seq}:{hash}");
                Ok(ExitCode::SUCCESS)
            }
            Err(AuditError::Broken { path, line, reason }) => {
                eprintln!("{}: line {line}: {reason}", path.display());
                Ok(ExitCode::from(1))
            }
            Err(error) => Err(error.into()),
        },
        AuditCommand::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Some(swarmwall_server::config::Config::load(path)?),
        None => None,
    };
    let security = config
        .as_ref()
        .map_or_else(SecurityConfig::default, |config| config.security.clone());
    let mut files = args.files.clone();
    if args.with_rotated {
        let [file] = files.as_slice() else {
            anyhow::bail!("--with-rotated takes a single FILE");
        };
        let file = file.clone();
        files = with_rotated(&file);
    }
    let key = if args.legacy_sha256 {
        None
    } else {
        Some(find_key(&args, &security, &files)?)
    };
    let mut expected = args.expect.clone();
    let mut checkpoints = Vec::new();
    if let Some(text) = &args.checkpoint {
        checkpoints.push(("--checkpoint".to_owned(), text.clone()));
    }
    if let Some(url) = &args.store {
        let node = args.node.clone().unwrap_or_else(|| {
            swarmwall_server::audit::CheckpointSettings::from_config(&security).node
        });
        let prefix = args.redis_prefix.clone().unwrap_or_else(|| {
            config
                .as_ref()
                .map_or("swarmwall".to_owned(), |c| c.store.redis_prefix.clone())
        });
        match stored_checkpoint(url, &prefix, &node)? {
            Some(text) => checkpoints.push((format!("the store's checkpoint of `{node}`"), text)),
            None => {
                eprintln!(
                    "no audit checkpoint of node `{node}` in the store (prefix `{prefix}`): \
                     the key was deleted, or the node never wrote one"
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
    for (source, text) in checkpoints {
        let checkpoint = match Checkpoint::parse(&text) {
            Ok(checkpoint) => checkpoint,
            Err(reason) => {
                eprintln!("{source}: {reason}");
                return Ok(ExitCode::from(1));
            }
        };
        if !key.as_ref().is_some_and(|key| checkpoint.verify(key)) {
            eprintln!(
                "{source}: the checkpoint's MAC does not verify with this key (forged, or \
                 another node's)"
            );
            return Ok(ExitCode::from(1));
        }
        expected.push(Expected {
            seq: checkpoint.seq,
            hash: checkpoint.hash,
        });
    }
    let chain = key
        .as_ref()
        .map_or(ChainHash::LegacySha256, ChainHash::Keyed);
    let shown = files
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    match verify_files(&files, chain, &expected) {
        Ok(report) => {
            let range = if report.first_seq > 1 {
                format!(
                    " (records {}..{}, continuing rotated files not given)",
                    report.first_seq, report.last_seq
                )
            } else {
                String::new()
            };
            let checked = if expected.is_empty() {
                String::new()
            } else {
                format!(", {} expected record(s) present", expected.len())
            };
            println!(
                "{shown}: intact, {} records{range}{checked}, last hash {}",
                report.records, report.last_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(AuditError::Broken { path, line, reason }) => {
            eprintln!("{}: line {line}: {reason}", path.display());
            Ok(ExitCode::from(1))
        }
        Err(AuditError::Expectation { path, reason, .. }) => {
            eprintln!("{}: {reason}", path.display());
            Ok(ExitCode::from(1))
        }
        Err(error) => Err(error.into()),
    }
}

/// `--key-file`, else `[security] secret_key_file` of `--config`, else the key beside the
/// (newest) log, else the one in the data directory.
fn find_key(
    args: &VerifyArgs,
    security: &SecurityConfig,
    files: &[PathBuf],
) -> anyhow::Result<AuditKey> {
    let candidates: Vec<PathBuf> = match &args.key_file {
        Some(path) => vec![path.clone()],
        None => {
            let beside_log = files
                .last()
                .and_then(|file| file.parent())
                .map(|dir| {
                    if dir.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        dir
                    }
                })
                .map(|dir| dir.join(DEFAULT_KEY_FILE));
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(swarmwall_server::store::default_data_dir);
            security
                .secret_key_file
                .clone()
                .into_iter()
                .chain(beside_log)
                .chain([data_dir.join(DEFAULT_KEY_FILE)])
                .collect()
        }
    };
    let Some(found) = candidates.iter().find(|path| path.is_file()) else {
        let tried = candidates
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        anyhow::bail!(
            "no secret key file to verify the log with (tried {tried}); the chain is keyed \
             with the node's secret key: pass --key-file FILE or --config CONFIG \
             ([security] secret_key_file)"
        );
    };
    // The file exists, so this only reads it.
    let secret = PseudonymKey::load_or_create(found)
        .with_context(|| format!("cannot read the secret key file {}", found.display()))?;
    Ok(AuditKey::from_secret(&secret))
}

/// The JSON checkpoint of `node` in the Redis store at `url`.
fn stored_checkpoint(url: &str, prefix: &str, node: &str) -> anyhow::Result<Option<String>> {
    use swarmwall_server::config::{StoreBackend, StoreConfig};
    let backend = StoreBackend::parse(url).map_err(anyhow::Error::msg)?;
    if !matches!(backend, StoreBackend::Redis(_)) {
        anyhow::bail!("--store must be a redis:// or rediss:// URL (only Redis holds checkpoints)");
    }
    let config = StoreConfig {
        url: backend,
        redis_prefix: prefix.to_owned(),
        timeout: std::time::Duration::from_secs(2),
        ..StoreConfig::default()
    };
    super::store::runtime()?.block_on(async {
        let store = swarmwall_server::store::Store::open(
            &config,
            Path::new("/nonexistent"),
            std::sync::Arc::new(swarmwall_server::metrics::Metrics::new()),
        )
        .await
        .with_context(|| format!("cannot open the store {}", config.url))?;
        store
            .audit_checkpoint(node)
            .await
            .with_context(|| format!("cannot read the checkpoint from {}", config.url))
    })
}
