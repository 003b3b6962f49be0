//! The in-memory accounts a node serves logins from: a hash map by name (O(1) lookup), built
//! once per load and swapped as a whole ([`arc_swap::ArcSwap`] in the authenticator), so a
//! reload or an API edit never stalls logins: the old set keeps serving until the new one is
//! complete.
//!
//! Memory: one entry costs the [`Account`] struct, its strings (name, PHC string of about 97
//! bytes) and the map slot; measured with `scripts/bench-accounts.sh` (docs/accounts.md, "Accounts at
//! scale").

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::accounts::{Account, AccountsFile};

/// Accounts by name. Cheap to clone (entries are shared).
#[derive(Clone, Default)]
pub struct AccountSet {
    by_name: HashMap<Arc<str>, Arc<Account>>,
}

impl std::fmt::Debug for AccountSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSet")
            .field("accounts", &self.by_name.len())
            .finish()
    }
}

impl From<AccountsFile> for AccountSet {
    fn from(file: AccountsFile) -> Self {
        Self::from_accounts(file.accounts)
    }
}

impl AccountSet {
    /// A set of `accounts` (a later duplicate name replaces an earlier one; files are checked
    /// for duplicates when parsed).
    pub fn from_accounts(accounts: impl IntoIterator<Item = Account>) -> Self {
        let accounts = accounts.into_iter();
        let mut by_name = HashMap::with_capacity(accounts.size_hint().0);
        for account in accounts {
            by_name.insert(Arc::from(account.name.as_str()), Arc::new(account));
        }
        Self { by_name }
    }

    /// The account called `name` (O(1)).
    pub fn find(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name).map(Arc::as_ref)
    }

    /// The shared entry of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Account>> {
        self.by_name.get(name).cloned()
    }

    /// How many accounts.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True without accounts.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every account, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.by_name.values().map(Arc::as_ref)
    }

    /// Any one account (its hash sets the cost of the dummy verification).
    pub fn any(&self) -> Option<&Account> {
        self.iter().next()
    }

    /// Names in byte order (listings, stable paging).
    pub fn sorted_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.by_name.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Insert or replace `account`.
    pub fn upsert(&mut self, account: Account) {
        self.by_name
            .insert(Arc::from(account.name.as_str()), Arc::new(account));
    }

    /// Remove `name`; true when it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// The accounts as a file, sorted by name (what file mode writes back).
    pub fn to_file(&self) -> AccountsFile {
        AccountsFile {
            accounts: self
                .sorted_names()
                .iter()
                .filter_map(|name| self.find(name).cloned())
                .collect(),
        }
    }
}

/// What changed between two account sets, as event details; `None` when nothing did.
/// O(n) in the number of accounts (one map lookup per account).
pub(crate) fn changes(old: &AccountSet, new: &AccountSet) -> Option<serde_json::Value> {
    let names = |file: &AccountSet, keep: &dyn Fn(&Account) -> bool| -> Vec<String> {
        let mut names: Vec<String> = file
            .iter()
            .filter(|account| keep(account))
            .map(|account| account.name.clone())
            .collect();
        names.sort_unstable();
        names
    };
    let added = names(new, &|a| old.find(&a.name).is_none());
    let removed = names(old, &|a| new.find(&a.name).is_none());
    let changed = |test: &dyn Fn(&Account, &Account) -> bool| {
        names(new, &|a| {
            old.find(&a.name).is_some_and(|before| test(before, a))
        })
    };
    let password_changed = changed(&|before, after| before.password != after.password);
    let disabled = changed(&|before, after| !before.disabled && after.disabled);
    let enabled = changed(&|before, after| before.disabled && !after.disabled);
    let totp_enrolled = changed(&|before, after| {
        after.totp_secret.is_some() && before.totp_secret != after.totp_secret
    });
    let totp_removed =
        changed(&|before, after| before.totp_secret.is_some() && after.totp_secret.is_none());
    let countries_changed = changed(&|before, after| {
        before.allow_countries != after.allow_countries
            || before.deny_countries != after.deny_countries
    });
    let policy_changed = changed(&|before, after| before.policy != after.policy);
    let fields = [
        ("added", added),
        ("removed", removed),
        ("password_changed", password_changed),
        ("disabled", disabled),
        ("enabled", enabled),
        ("totp_enrolled", totp_enrolled),
        ("totp_removed", totp_removed),
        ("countries_changed", countries_changed),
        ("policy_changed", policy_changed),
    ];
    if fields.iter().all(|(_, names)| names.is_empty()) {
        return None;
    }
    let mut details = serde_json::Map::new();
    details.insert("action".to_owned(), json!("accounts_changed"));
    for (key, names) in fields {
        if !names.is_empty() {
            details.insert(key.to_owned(), json!(names));
        }
    }
    Some(serde_json::Value::Object(details))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::accounts::DUMMY_HASH;

    fn account(name: &str) -> Account {
        Account {
            name: name.to_owned(),
            password: DUMMY_HASH.to_owned(),
            disabled: false,
            totp_secret: None,
            allow_countries: Vec::new(),
            deny_countries: Vec::new(),
            policy: None,
        }
    }

    #[test]
    fn lookup_upsert_remove_round_trip() {
        let mut set = AccountSet::from_accounts([account("bob"), account("alice")]);
        assert_eq!(set.len(), 2);
        assert!(set.find("alice").is_some());
        assert!(set.find("carol").is_none());
        let mut changed = account("alice");
        changed.disabled = true;
        set.upsert(changed);
        assert!(set.find("alice").unwrap().disabled);
        assert!(set.remove("bob"));
        assert!(!set.remove("bob"));
        let file = set.to_file();
        assert_eq!(file.accounts.len(), 1);
        assert_eq!(file.accounts[0].name, "alice");
    }
}
