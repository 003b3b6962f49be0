//! `swarmwall user add|passwd|remove|list|disable|enable|totp|policy|import`: edit the accounts file,
//! or with `--store URL` the accounts kept in the state store (`accounts_backend = "store"`;
//! see `user_store.rs`).
//!
//! Every edit loads the file, changes it and replaces it atomically with mode 0600 (see
//! `AccountsFile::save`); a running `swarmwall serve` picks the change up within a second.
//! Passwords are read without echo from the terminal, or as one line from stdin with
//! `--password-stdin`; they are only ever stored as argon2id PHC strings.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use swarmwall_server::auth::{AccountsFile, HashParams, shared_mode, totp};
use swarmwall_server::config::{AccountPolicy, SecurityConfig};
use zeroize::Zeroizing;

use super::admin_audit::AdminAudit;

/// Arguments of `swarmwall user`.
#[derive(Debug, clap::Args)]
pub(crate) struct UserArgs {
    /// Accounts file (TOML). Defaults to `[security] accounts` of `--config`.
    #[arg(long, global = true, env = "SWARMWALL_ACCOUNTS")]
    accounts: Option<PathBuf>,
    /// Configuration file (for the accounts path, argon2 cost, TOTP issuer and audit log).
    #[arg(long, global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Security event log that receives the `admin_action` record (default: as `serve`:
    /// `[security] audit_log`, else `audit.jsonl` in the data directory); `""` for none.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) audit_log: Option<PathBuf>,
    /// Edit the accounts kept in this state store (`redis://HOST:PORT/DB`, `embedded:DIR`)
    /// instead of an accounts file; every node of a fleet follows within a second.
    #[arg(long, global = true)]
    pub(crate) store: Option<swarmwall_server::config::StoreBackend>,
    /// Data directory (for the default audit log and key file, and a bare `--store embedded`).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Add an account (creates the file if needed).
    Add {
        /// Account name.
        name: String,
        /// Read the password as one line from stdin instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's password.
    Passwd {
        /// Account name.
        name: String,
        /// Read the password as one line from stdin instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account.
    Remove {
        /// Account name.
        name: String,
    },
    /// List accounts (never prints hashes or secrets).
    List,
    /// Disable an account (logins refused until `enable`).
    Disable {
        /// Account name.
        name: String,
    },
    /// Enable a disabled account.
    Enable {
        /// Account name.
        name: String,
    },
    /// Enrol TOTP: prints the otpauth:// URI on stdout and a QR code on stderr.
    Totp {
        /// Account name.
        name: String,
        /// Replace an existing TOTP secret.
        #[arg(long)]
        force: bool,
        /// Remove TOTP from the account instead.
        #[arg(long, conflicts_with = "force")]
        remove: bool,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// Set, clear or show an account's BitTorrent policy override (the shape of
    /// `[policy.accounts.NAME]`; it takes precedence over the configuration file). Without
    /// flags, prints the override in force as JSON (`null`: none).
    Policy {
        /// Account name.
        name: String,
        /// Action for every BitTorrent form: block, log or allow.
        #[arg(long, value_name = "ACTION")]
        bittorrent: Option<String>,
        /// Per-form action, FORM=ACTION (e.g. `mse=block`); repeatable.
        #[arg(long = "form", value_name = "FORM=ACTION")]
        forms: Vec<String>,
        /// Remove the override (the configuration file's policy applies again).
        #[arg(long, conflicts_with_all = ["bittorrent", "forms"])]
        clear: bool,
    },
    /// Copy the accounts of a TOML accounts file (hashes as they are) into the store given by
    /// `--store` (or, without it, merge them into `--accounts`).
    Import {
        /// Accounts file to copy from.
        file: PathBuf,
        /// Replace accounts that already exist (default: leave them alone).
        #[arg(long)]
        replace: bool,
    },
}

/// Run `swarmwall user`.
pub(crate) fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let security = match &args.config {
        Some(path) => SecurityConfig::load_section(path)?,
        None => SecurityConfig::default(),
    };
    if let Some(store) = &args.store {
        // Accounts in the state store: the same admin_action record, naming the store.
        let audit = open_audit(&args, &security)?;
        let (action, name) = action_of(&args.command);
        let details = serde_json::json!({ "store": store.to_string() });
        let outcome = super::user_store::run(args);
        audit.record(&action, name.as_deref(), details, &outcome)?;
        return outcome;
    }
    let path = args
        .accounts
        .clone()
        .or_else(|| security.accounts.clone())
        .context("no accounts file: pass --accounts FILE (or set [security] accounts)")?;
    let params = HashParams::from_config(&security);
    if let Some(warning) = security.weak_argon2_warning() {
        eprintln!("swarmwall: warning: {warning}");
    }
    if let Some(mode) = shared_mode(&path) {
        eprintln!(
            "swarmwall: warning: {} has mode {mode:04o}; it will be rewritten as 0600",
            path.display()
        );
    }
    let audit = open_audit(&args, &security)?;
    let (action, name) = action_of(&args.command);
    let outcome = apply(args.command, &path, &params, &security);
    audit.record(
        &action,
        name.as_deref(),
        serde_json::json!({ "accounts_file": path.display().to_string() }),
        &outcome,
    )?;
    outcome
}

/// The security event log that receives the command's `admin_action` record. Listing changes
/// nothing: an operator who may read the accounts but not write the log still gets the list.
fn open_audit(args: &UserArgs, security: &SecurityConfig) -> anyhow::Result<AdminAudit> {
    let opened = AdminAudit::open(
        security,
        args.audit_log.as_deref(),
        args.data_dir.as_deref(),
    );
    match (opened, &args.command) {
        (Ok(audit), _) => Ok(audit),
        (Err(error), UserCommand::List) => {
            eprintln!("swarmwall: warning: not audited: {error:#}");
            Ok(AdminAudit::off())
        }
        (Err(error), _) => Err(error),
    }
}

/// The `admin_action` label of a command and the account it names.
fn action_of(command: &UserCommand) -> (String, Option<String>) {
    let (action, name) = match command {
        UserCommand::Add { name, .. } => ("user_add", Some(name)),
        UserCommand::Passwd { name, .. } => ("user_passwd", Some(name)),
        UserCommand::Remove { name } => ("user_remove", Some(name)),
        UserCommand::List => ("user_list", None),
        UserCommand::Disable { name } => ("user_disable", Some(name)),
        UserCommand::Enable { name } => ("user_enable", Some(name)),
        UserCommand::Totp { name, remove, .. } => (
            if *remove {
                "user_totp_remove"
            } else {
                "user_totp_enrol"
            },
            Some(name),
        ),
        UserCommand::Import { .. } => ("user_import", None),
        UserCommand::Policy { name, .. } => ("user_policy", Some(name)),
    };
    (action.to_owned(), name.cloned())
}

/// Carry out one `user` command on the accounts file at `path`.
fn apply(
    command: UserCommand,
    path: &Path,
    params: &HashParams,
    security: &SecurityConfig,
) -> anyhow::Result<ExitCode> {
    let path = path.to_owned();
    match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            if AccountsFile::load_or_empty(&path)?.find(&name).is_some() {
                anyhow::bail!("an account named `{name}` already exists");
            }
            let password = read_password(password_stdin)?;
            AccountsFile::edit_locked(&path, true, |file| {
                file.add(&name, password.as_bytes(), params)
            })?;
            eprintln!("added account `{name}` to {}", path.display());
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            if AccountsFile::load(&path)?.find(&name).is_none() {
                anyhow::bail!("no account named `{name}`");
            }
            let password = read_password(password_stdin)?;
            AccountsFile::edit_locked(&path, false, |file| {
                file.set_password(&name, password.as_bytes(), params)
            })?;
            eprintln!("changed the password of `{name}`");
        }
        UserCommand::Remove { name } => {
            edit(&path, |file| file.remove(&name))?;
            eprintln!("removed account `{name}`");
        }
        UserCommand::List => list(&AccountsFile::load(&path)?),
        UserCommand::Disable { name } => {
            edit(&path, |file| file.set_disabled(&name, true))?;
            eprintln!("disabled account `{name}`");
        }
        UserCommand::Enable { name } => {
            edit(&path, |file| file.set_disabled(&name, false))?;
            eprintln!("enabled account `{name}`");
        }
        UserCommand::Totp {
            name,
            force,
            remove,
            no_qr,
        } => return enrol_totp(&path, &name, &security.totp_issuer, force, remove, no_qr),
        UserCommand::Policy {
            name,
            bittorrent,
            forms,
            clear,
        } => match policy_change(bittorrent, &forms, clear)? {
            None => {
                let file = AccountsFile::load(&path)?;
                let account = file
                    .find(&name)
                    .with_context(|| format!("no account named `{name}`"))?;
                println!("{}", serde_json::json!(account.policy));
            }
            Some(policy) => {
                edit(&path, |file| file.set_policy(&name, policy))?;
                eprintln!("set the policy override of `{name}`");
            }
        },
        UserCommand::Import { file, replace } => {
            let source = AccountsFile::load(&file)?;
            let (mut created, mut replaced, mut skipped) = (0, 0, 0);
            AccountsFile::edit_locked(&path, true, |target| {
                for account in source.accounts.iter().cloned() {
                    match target.accounts.iter().position(|a| a.name == account.name) {
                        Some(_) if !replace => skipped += 1,
                        Some(index) => {
                            target.accounts[index] = account;
                            replaced += 1;
                        }
                        None => {
                            target.accounts.push(account);
                            created += 1;
                        }
                    }
                }
                Ok(())
            })?;
            eprintln!(
                "imported into {}: {created} created, {replaced} replaced, {skipped} skipped",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The change `user policy` asks for: `None` shows the override, `Some(None)` clears it,
/// `Some(Some(policy))` sets it (checked like the API's `policy` field).
pub(crate) fn policy_change(
    bittorrent: Option<String>,
    forms: &[String],
    clear: bool,
) -> anyhow::Result<Option<Option<AccountPolicy>>> {
    if clear {
        return Ok(Some(None));
    }
    if bittorrent.is_none() && forms.is_empty() {
        return Ok(None);
    }
    let mut form_map = serde_json::Map::new();
    for form in forms {
        let (label, action) = form
            .split_once('=')
            .with_context(|| format!("--form `{form}`: expected FORM=ACTION, such as mse=block"))?;
        form_map.insert(label.trim().to_owned(), serde_json::json!(action.trim()));
    }
    let value = serde_json::json!({ "bittorrent": bittorrent, "forms": form_map });
    Ok(Some(Some(AccountPolicy::from_json(&value)?)))
}

fn edit(
    path: &Path,
    change: impl FnOnce(&mut AccountsFile) -> Result<(), swarmwall_server::auth::AccountsError>,
) -> anyhow::Result<()> {
    AccountsFile::edit_locked(path, false, change)?;
    Ok(())
}

pub(crate) fn list(file: &AccountsFile) {
    println!("{:<24} {:<9} {:<5} countries", "NAME", "STATUS", "TOTP");
    for account in &file.accounts {
        let status = if account.disabled {
            "disabled"
        } else {
            "enabled"
        };
        let totp = if account.totp_secret.is_some() {
            "yes"
        } else {
            "no"
        };
        let mut countries = Vec::new();
        if !account.allow_countries.is_empty() {
            countries.push(format!("allow {}", account.allow_countries.join(",")));
        }
        if !account.deny_countries.is_empty() {
            countries.push(format!("deny {}", account.deny_countries.join(",")));
        }
        println!(
            "{:<24} {:<9} {:<5} {}",
            account.name,
            status,
            totp,
            countries.join("; ")
        );
    }
}

fn enrol_totp(
    path: &Path,
    name: &str,
    issuer: &str,
    force: bool,
    remove: bool,
    no_qr: bool,
) -> anyhow::Result<ExitCode> {
    if remove {
        AccountsFile::edit_locked(path, false, |file| file.set_totp_secret(name, None))?;
        eprintln!("removed TOTP from `{name}`");
        return Ok(ExitCode::SUCCESS);
    }
    let enrolment = totp::enrol(name, issuer)?;
    AccountsFile::edit_locked(path, false, |file| {
        let account = file.find(name).ok_or_else(|| {
            swarmwall_server::auth::AccountsError::Edit(format!("no account named `{name}`"))
        })?;
        if account.totp_secret.is_some() && !force {
            return Err(swarmwall_server::auth::AccountsError::Edit(format!(
                "`{name}` already has TOTP; pass --force to replace it"
            )));
        }
        file.set_totp_secret(name, Some(enrolment.secret_base32.clone()))
    })?;
    println!("{}", enrolment.uri);
    if !no_qr {
        match qrcodegen::QrCode::encode_text(&enrolment.uri, qrcodegen::QrCodeEcc::Medium) {
            Ok(code) => eprint!("{}", render_qr(&code)),
            Err(_) => eprintln!("(URI too long for a QR code)"),
        }
    }
    eprintln!("TOTP enrolled for `{name}`: log in with the password followed by the 6-digit code");
    Ok(ExitCode::SUCCESS)
}

/// Draw a QR code with half blocks (two module rows per text row), light on dark terminals
/// and dark on light ones alike thanks to the quiet zone.
fn render_qr(code: &qrcodegen::QrCode) -> String {
    const QUIET: i32 = 2;
    let size = code.size();
    // Dark modules are drawn as spaces on a "white" block background.
    let dark =
        |x: i32, y: i32| (0..size).contains(&x) && (0..size).contains(&y) && code.get_module(x, y);
    let mut out = String::new();
    let mut y = -QUIET;
    while y < size + QUIET {
        for x in -QUIET..size + QUIET {
            out.push(match (dark(x, y), dark(x, y + 1)) {
                (false, false) => '█',
                (false, true) => '▀',
                (true, false) => '▄',
                (true, true) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    out
}

/// The new password: one line from stdin, or typed twice without echo.
pub(crate) fn read_password(from_stdin: bool) -> anyhow::Result<Zeroizing<String>> {
    let password = if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let trimmed = line.trim_end_matches(['\n', '\r']);
        Zeroizing::new(trimmed.to_owned())
    } else {
        let first = Zeroizing::new(
            rpassword::prompt_password("Password: ").context("cannot read the password")?,
        );
        let second = Zeroizing::new(
            rpassword::prompt_password("Password again: ").context("cannot read the password")?,
        );
        if first != second {
            anyhow::bail!("the passwords differ");
        }
        first
    };
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    Ok(password)
}
