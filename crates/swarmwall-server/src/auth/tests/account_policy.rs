//! The `policy` field of an account in the accounts file: written only when set (files without
//! overrides stay as they were), read back the same, bad keys and actions located without
//! quoting the file, and a reload that changes it named in `accounts_changed`.

use std::path::Path;

use crate::auth::accounts::{AccountsFile, DUMMY_HASH};
use crate::auth::{AccountSet, account_set};
use crate::config::AccountPolicy;
use crate::policy::TrafficAction;

fn file(policy: &str) -> String {
    format!("[[account]]\nname = \"alice\"\npassword = \"{DUMMY_HASH}\"\n{policy}")
}

#[test]
fn the_override_round_trips_through_the_file_and_is_omitted_when_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.toml");
    let mut accounts = AccountsFile::parse(&file(""), Path::new("a.toml")).unwrap();
    accounts.save(&path).unwrap();
    assert!(!std::fs::read_to_string(&path).unwrap().contains("policy"));
    let policy = AccountPolicy::from_json(&serde_json::json!({
        "bittorrent": "allow", "forms": {"mse": "block", "dht": "log"}
    }))
    .unwrap();
    accounts.set_policy("alice", Some(policy.clone())).unwrap();
    accounts.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[account.policy]"), "{text}");
    let loaded = AccountsFile::load(&path).unwrap();
    assert_eq!(loaded.find("alice").unwrap().policy.as_ref(), Some(&policy));
    // An override that overrides nothing is stored as none.
    let mut cleared = loaded.clone();
    cleared
        .set_policy("alice", Some(AccountPolicy::default()))
        .unwrap();
    assert!(cleared.find("alice").unwrap().policy.is_none());
    assert!(cleared.set_policy("nobody", None).is_err());
    // The same shape as `[policy.accounts.NAME]`, written by hand.
    let hand = file("[account.policy]\nbittorrent = \"log\"\nforms = { utp = \"block\" }\n");
    let parsed = AccountsFile::parse(&hand, Path::new("a.toml")).unwrap();
    let policy = parsed.find("alice").unwrap().policy.clone().unwrap();
    assert_eq!(policy.bittorrent, Some(TrafficAction::Log));
    assert_eq!(policy.forms.utp, Some(TrafficAction::Block));
    // A reload that changes it is named.
    let changes =
        account_set::changes(&AccountSet::from(cleared), &AccountSet::from(parsed)).unwrap();
    assert_eq!(changes["policy_changed"], serde_json::json!(["alice"]));
}

#[test]
fn bad_policy_keys_and_actions_are_located_without_quoting_values() {
    for (policy, line, expect) in [
        ("[account.policy]\nbittorrent = \"hunter2\"\n", 5, "`allow`"),
        (
            "[account.policy]\nforms = { hunter2 = \"log\" }\n",
            5,
            "`mse`",
        ),
        ("[account.policy]\nhunter2 = \"log\"\n", 5, "`bittorrent`"),
    ] {
        let error = AccountsFile::parse(&file(policy), Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(&format!("a.toml: {line}:")), "{error}");
        assert!(error.contains(expect), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
