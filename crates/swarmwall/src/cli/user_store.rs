//! `swarmwall user ... --store URL`: the accounts kept in the state store
//! (`accounts_backend = "store"`). Changes are conditional writes to the store; on Redis every
//! node of the fleet follows them within a second. The embedded store is locked by a running
//! `swarmwall serve`: use its admin API instead (`POST /api/v1/accounts`, ...).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use swarmwall_server::auth::account_store::AccountStore;
use swarmwall_server::auth::{
    AccountDirectory, AccountPatch, AccountSet, AccountsFile, Authenticator, DirectoryBackend,
    NewAccount,
};
use swarmwall_server::config::{Config, StoreConfig};
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::{self, Store};
use zeroize::Zeroizing;

use super::user::{UserArgs, UserCommand, list, policy_change, read_password};

/// Run a `user` command against `--store`.
pub(crate) fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let runtime = super::store::runtime()?;
    runtime.block_on(async move {
        let url = args.store.clone().context("--store is required here")?;
        let store_config = StoreConfig {
            url,
            ..config.store.clone()
        };
        let data_dir = args
            .data_dir
            .clone()
            .unwrap_or_else(store::default_data_dir);
        let store = Store::open(&store_config, &data_dir, Arc::new(Metrics::new()))
            .await
            .with_context(|| format!("cannot open the state store {}", store_config.url))?;
        let accounts = AccountStore::for_store(&store)?;
        let snapshot = accounts
            .snapshot()
            .await
            .with_context(|| format!("cannot read the accounts in {}", store.describe()))?;
        let authenticator = Authenticator::new(AccountsFile::default());
        authenticator.replace_accounts(AccountSet::from_accounts(snapshot.accounts));
        let directory = AccountDirectory::new(
            authenticator.clone(),
            DirectoryBackend::Store(accounts),
            &config.security,
        );
        command(args.command, &directory, &authenticator, &store).await
    })
}

async fn command(
    command: UserCommand,
    directory: &AccountDirectory,
    authenticator: &Authenticator,
    store: &Store,
) -> anyhow::Result<ExitCode> {
    let place = store.describe();
    match command {
        UserCommand::Import { file, replace } => {
            let report = import(directory, &file, replace).await?;
            eprintln!(
                "imported into {place}: {} created, {} replaced, {} skipped",
                report.created, report.replaced, report.skipped
            );
        }
        UserCommand::List => list(&authenticator.accounts().to_file()),
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            directory
                .create(NewAccount {
                    name: name.clone(),
                    password: Some(password),
                    ..NewAccount::default()
                })
                .await?;
            eprintln!("added account `{name}` to {place}");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            if directory.get(&name).is_none() {
                anyhow::bail!("no account named `{name}`");
            }
            let password = read_password(password_stdin)?;
            let patch = AccountPatch {
                password: Some(password),
                ..AccountPatch::default()
            };
            directory.update(&name, patch).await?;
            eprintln!("changed the password of `{name}`");
        }
        UserCommand::Policy {
            name,
            bittorrent,
            forms,
            clear,
        } => match policy_change(bittorrent, &forms, clear)? {
            None => {
                let account = directory
                    .get(&name)
                    .with_context(|| format!("no account named `{name}`"))?;
                println!("{}", serde_json::json!(account.policy));
            }
            Some(policy) => {
                let patch = AccountPatch {
                    policy: Some(policy),
                    ..AccountPatch::default()
                };
                directory.update(&name, patch).await?;
                eprintln!("set the policy override of `{name}`");
            }
        },
        UserCommand::Remove { name } => {
            directory.delete(&name).await?;
            eprintln!("removed account `{name}`");
        }
        UserCommand::Disable { name } => {
            set_disabled(directory, &name, true).await?;
            eprintln!("disabled account `{name}`");
        }
        UserCommand::Enable { name } => {
            set_disabled(directory, &name, false).await?;
            eprintln!("enabled account `{name}`");
        }
        UserCommand::Totp {
            name,
            force,
            remove,
            no_qr: _,
        } => {
            if remove {
                directory.remove_totp(&name).await?;
                eprintln!("removed TOTP from `{name}`");
            } else {
                let uri: Zeroizing<String> = directory.enrol_totp(&name, force).await?;
                println!("{}", uri.as_str());
                eprintln!(
                    "TOTP enrolled for `{name}`: log in with the password followed by the \
                     6-digit code"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_disabled(
    directory: &AccountDirectory,
    name: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let patch = AccountPatch {
        disabled: Some(disabled),
        ..AccountPatch::default()
    };
    directory.update(name, patch).await?;
    Ok(())
}

async fn import(
    directory: &AccountDirectory,
    file: &Path,
    replace: bool,
) -> anyhow::Result<swarmwall_server::auth::ImportReport> {
    let source = AccountsFile::load(file)?;
    Ok(directory.import(source.accounts, replace).await?)
}
