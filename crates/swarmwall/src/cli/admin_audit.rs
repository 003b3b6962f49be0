//! `admin_action` records for CLI commands that change state (`swarmwall user ...`,
//! `swarmwall strikes clear|suspend|unsuspend`), written into the configured security event
//! log: the same file, key and chain as `swarmwall serve` (appends take the log's `flock`, so
//! this is safe while the server runs).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use swarmwall_server::audit::{AuditLog, AuditOptions, resolve_path};
use swarmwall_server::auth::{PseudonymKey, key_file_path};
use swarmwall_server::config::SecurityConfig;

/// The configured log, opened for `admin_action` records (or off when `audit_log = ""`).
pub(crate) struct AdminAudit {
    log: Option<AuditLog>,
    path: Option<PathBuf>,
}

impl AdminAudit {
    /// Records nothing.
    pub(crate) fn off() -> Self {
        Self {
            log: None,
            path: None,
        }
    }

    /// Open the log `serve` would use: `--audit-log`, else `[security] audit_log`, else
    /// `audit.jsonl` in the data directory (`--data-dir`, else the default one). Fails, so
    /// that the action is not taken unaudited, when the log or its key cannot be opened.
    pub(crate) fn open(
        security: &SecurityConfig,
        audit_log: Option<&Path>,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let data_dir =
            data_dir.map_or_else(swarmwall_server::store::default_data_dir, Path::to_owned);
        let Some(path) = resolve_path(&security.audit_log, audit_log, &data_dir) else {
            eprintln!(
                "swarmwall: warning: the security event log is off; this action is not audited"
            );
            return Ok(Self {
                log: None,
                path: None,
            });
        };
        let parent = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let key_path = key_file_path(security, &data_dir);
        let new_key = !key_path.exists();
        let new_log = !path.exists();
        let key = PseudonymKey::load_or_create(&key_path).with_context(|| {
            format!(
                "cannot open the secret key file of the security event log {}",
                key_path.display()
            )
        })?;
        let log = AuditLog::open(&path, &key, &AuditOptions::from_config(security)).with_context(
            || {
                format!(
                    "cannot open the security event log {}; nothing was changed",
                    path.display()
                )
            },
        )?;
        // Files this command created belong to the directory's owner (the service account),
        // not to root running the command, so that the server can still open them.
        for (created, file) in [(new_key, &key_path), (new_log, &path)] {
            if created {
                give_to_directory_owner(file, &parent);
            }
        }
        Ok(Self {
            log: Some(log),
            path: Some(path),
        })
    }

    /// Record `action` on `account` (details: no secrets) with its outcome; an action that
    /// succeeded but could not be recorded is reported as an error.
    pub(crate) fn record<T>(
        &self,
        action: &str,
        account: Option<&str>,
        mut details: serde_json::Value,
        outcome: &anyhow::Result<T>,
    ) -> anyhow::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        if let Some(object) = details.as_object_mut() {
            object.insert("action".to_owned(), action.into());
            object.insert("source".to_owned(), "cli".into());
            object.insert("uid".to_owned(), current_uid().into());
            if let Some(user) = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty()) {
                object.insert("sudo_user".to_owned(), user.into());
            }
            let result = if outcome.is_ok() { "ok" } else { "error" };
            object.insert("result".to_owned(), result.into());
        }
        log.try_record("admin_action", account, None, details)
            .with_context(|| {
                format!(
                    "the action was carried out but could not be written to the security event log {}",
                    self.path.as_deref().unwrap_or(Path::new("")).display()
                )
            })?;
        log.sync();
        Ok(())
    }
}

/// The effective user id (owner of `/proc/self`).
fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

fn give_to_directory_owner(file: &Path, directory: &Path) {
    if current_uid() != 0 {
        return;
    }
    if let Ok(owner) = std::fs::metadata(directory)
        && owner.uid() != 0
    {
        let _ = std::os::unix::fs::chown(file, Some(owner.uid()), Some(owner.gid()));
    }
}
