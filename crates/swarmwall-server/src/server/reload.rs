//! What a reload may not do: take an empty configuration file (it would silently reset every
//! setting, the guard rules included, to its default), or pretend to apply keys that are only
//! read at start. Those keys keep their running values and are named in the log.

use super::Runtime;

/// True when `text` holds no key at all (empty, blank or comments only). Text that does not
/// parse is not "empty": the parser reports it with its line.
pub(crate) fn is_empty_config(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|table| table.is_empty())
}

/// Keep the running values of the settings only read at start in `next`, and return the names
/// of those the new file changed (to be logged as not applied).
pub(crate) fn keep_start_only_settings(current: &Runtime, next: &mut Runtime) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut keep = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    keep("server.listen", current.server.listen != next.server.listen);
    next.server.listen = current.server.listen;
    keep(
        "server.max_sessions",
        current.server.max_sessions != next.server.max_sessions,
    );
    next.server.max_sessions = current.server.max_sessions;
    keep(
        "server.runtime",
        current.server.runtime != next.server.runtime,
    );
    next.server.runtime = current.server.runtime;
    keep(
        "server.accounts",
        current.server.accounts != next.server.accounts,
    );
    next.server.accounts.clone_from(&current.server.accounts);

    let (old, new) = (&current.config.security, &mut next.config.security);
    keep("security.accounts", old.accounts != new.accounts);
    new.accounts.clone_from(&old.accounts);
    keep("security.audit_log", old.audit_log != new.audit_log);
    new.audit_log.clone_from(&old.audit_log);
    keep(
        "security.audit_recent",
        old.audit_recent != new.audit_recent,
    );
    new.audit_recent = old.audit_recent;
    keep(
        "security.pseudonymise_addresses",
        old.pseudonymise_addresses != new.pseudonymise_addresses,
    );
    new.pseudonymise_addresses = old.pseudonymise_addresses;
    keep(
        "security.secret_key_file",
        old.secret_key_file != new.secret_key_file,
    );
    new.secret_key_file.clone_from(&old.secret_key_file);

    // Whole sections built once at start. Their types have no `PartialEq`; the `Debug` forms
    // compare every field (a redacted secret aside).
    keep(
        "policy.strikes",
        format!("{:?}", current.config.policy.strikes)
            != format!("{:?}", next.config.policy.strikes),
    );
    next.config.policy.strikes = current.config.policy.strikes.clone();
    keep(
        "store",
        format!("{:?}", current.config.store) != format!("{:?}", next.config.store),
    );
    next.config.store = current.config.store.clone();
    keep(
        "admin",
        format!("{:?}", current.config.admin) != format!("{:?}", next.config.admin),
    );
    next.config.admin = current.config.admin.clone();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServeOptions;

    fn runtime(text: &str) -> Runtime {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarmwall.toml");
        std::fs::write(&path, text).unwrap();
        Runtime::load(&ServeOptions {
            config_path: Some(path),
            ..ServeOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn empty_files_are_recognised() {
        assert!(is_empty_config(""));
        assert!(is_empty_config("\n  # only a comment\n\n"));
        assert!(!is_empty_config("[server]\n"));
        assert!(!is_empty_config("[server]\nmax_sessions = 5\n"));
        assert!(!is_empty_config("this is = = not toml"));
    }

    #[test]
    fn start_only_keys_are_named_and_kept() {
        let current = runtime("[server]\nlisten = \"127.0.0.1:1080\"\nmax_sessions = 100\n");
        let mut next = runtime(
            "[server]\nlisten = \"127.0.0.1:2080\"\nmax_sessions = 200\nhandshake_timeout = \"3s\"\n\
             [policy.strikes]\nsuspend_incidents = 9\n",
        );
        let changed = keep_start_only_settings(&current, &mut next);
        assert_eq!(
            changed,
            ["server.listen", "server.max_sessions", "policy.strikes"]
        );
        assert_eq!(next.server.listen, current.server.listen);
        assert_eq!(next.server.max_sessions, 100);
        // Everything else is applied.
        assert_eq!(
            next.server.handshake_timeout,
            std::time::Duration::from_secs(3)
        );
        let mut same = runtime("[server]\nlisten = \"127.0.0.1:1080\"\nmax_sessions = 100\n");
        assert!(keep_start_only_settings(&current, &mut same).is_empty());
    }
}
