//! Account-security commands run as the real binary: `swarmwall user ...` edits the accounts
//! file (argon2id only, mode 0600, atomic), `swarmwall user totp` prints the otpauth URI, and
//! `swarmwall audit verify` finds edited, removed and reordered records by line.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use swarmwall_server::audit::{AuditLog, AuditOptions};
use swarmwall_server::auth::{AccountsFile, PseudonymKey, totp};

use crate::harness::{swarmwall, text};

/// A temporary directory with a cheap-argon2 config so the tests stay fast.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[security]\nargon2_memory_kib = 64\nargon2_iterations = 1\n",
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn user(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = swarmwall()
            .arg("user")
            .args(args)
            .arg("--accounts")
            .arg(self.path("accounts.toml"))
            .arg("--config")
            .arg(self.path("config.toml"))
            .arg("--data-dir")
            .arg(self.path("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            // The command may refuse before reading stdin (a duplicate name): a broken pipe
            // is then expected, and the exit status tells the story.
            let _ = pipe.write_all(text.as_bytes());
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    fn accounts(&self) -> AccountsFile {
        AccountsFile::load(&self.path("accounts.toml")).unwrap()
    }
}

#[test]
fn user_add_stores_only_an_argon2id_hash_in_a_private_file() {
    let dir = Dir::new();
    let out = dir.user(
        &["add", "alice", "--password-stdin"],
        Some("correct horse\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = dir.path("accounts.toml");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let file_text = std::fs::read_to_string(&path).unwrap();
    assert!(!file_text.contains("correct horse"), "{file_text}");
    assert!(
        file_text.contains("$argon2id$v=19$m=64,t=1,p=1$"),
        "{file_text}"
    );
    // The change is audited with the key of the given data directory (the one `serve
    // --data-dir` uses), not one in the default data directory.
    let key = dir.path("data").join("swarmwall-secret.key");
    let key_mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "{}", key.display());
    assert!(dir.path("data").join("audit.jsonl").exists());
    // Nothing secret on the terminal either.
    assert!(!text(&out.stdout).contains("correct horse"));
    assert!(!text(&out.stderr).contains("correct horse"));

    // A second account; a duplicate and an empty password are refused.
    assert!(
        dir.user(&["add", "bob", "--password-stdin"], Some("pw2\n"))
            .status
            .success()
    );
    let duplicate = dir.user(&["add", "alice", "--password-stdin"], Some("x\n"));
    assert!(!duplicate.status.success());
    assert!(text(&duplicate.stderr).contains("already exists"));
    let empty = dir.user(&["add", "carol", "--password-stdin"], Some("\n"));
    assert!(!empty.status.success());
    assert_eq!(dir.accounts().accounts.len(), 2);
}

#[test]
fn passwd_disable_enable_remove_and_list() {
    let dir = Dir::new();
    assert!(
        dir.user(&["add", "alice", "--password-stdin"], Some("one\n"))
            .status
            .success()
    );
    assert!(
        dir.user(&["add", "bob", "--password-stdin"], Some("two\n"))
            .status
            .success()
    );
    let before = dir.accounts().find("alice").unwrap().password.clone();
    assert!(
        dir.user(&["passwd", "alice", "--password-stdin"], Some("three\n"))
            .status
            .success()
    );
    assert_ne!(dir.accounts().find("alice").unwrap().password, before);
    assert!(dir.user(&["disable", "bob"], None).status.success());
    assert!(dir.accounts().find("bob").unwrap().disabled);
    let listing = text(&dir.user(&["list"], None).stdout);
    assert!(
        listing.contains("alice") && listing.contains("disabled"),
        "{listing}"
    );
    assert!(!listing.contains("argon2"), "{listing}");
    assert!(dir.user(&["enable", "bob"], None).status.success());
    assert!(!dir.accounts().find("bob").unwrap().disabled);
    assert!(dir.user(&["remove", "bob"], None).status.success());
    assert!(dir.accounts().find("bob").is_none());
    let missing = dir.user(&["remove", "bob"], None);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no account named `bob`"));
    // A group-readable file is warned about and rewritten private.
    let path = dir.path("accounts.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = dir.user(&["disable", "alice"], None);
    assert!(
        text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn user_totp_prints_the_otpauth_uri_and_stores_the_secret() {
    let dir = Dir::new();
    assert!(
        dir.user(&["add", "alice", "--password-stdin"], Some("pw\n"))
            .status
            .success()
    );
    let out = dir.user(&["totp", "alice"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let uri = stdout.lines().next().unwrap();
    assert!(uri.starts_with("otpauth://totp/swarmwall:alice?"), "{uri}");
    let secret = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .unwrap();
    let stored = dir
        .accounts()
        .find("alice")
        .unwrap()
        .totp_secret
        .clone()
        .unwrap();
    assert_eq!(stored, secret);
    // The QR code goes to stderr, drawn with block characters.
    assert!(text(&out.stderr).contains('█'));
    // A code from the URI's secret verifies against the stored one.
    let code = totp::code_at(secret, 1_800_000_000).unwrap();
    assert!(totp::check(&stored, &code, 1_800_000_000).is_some());
    // Enrolling again needs --force; --remove takes TOTP off.
    assert!(!dir.user(&["totp", "alice"], None).status.success());
    assert!(
        dir.user(&["totp", "alice", "--force", "--no-qr"], None)
            .status
            .success()
    );
    assert!(
        dir.user(&["totp", "alice", "--remove"], None)
            .status
            .success()
    );
    assert!(dir.accounts().find("alice").unwrap().totp_secret.is_none());
}

fn write_log(path: &Path, records: u64) {
    // The key file beside the log, where `serve` keeps it and `audit verify` finds it.
    let key = PseudonymKey::load_or_create(&path.with_file_name("swarmwall-secret.key")).unwrap();
    let log = AuditLog::open(path, &key, &AuditOptions::default()).unwrap();
    for n in 0..records {
        log.record(
            "auth_failure",
            Some("alice"),
            Some("192.0.2.1".parse().unwrap()),
            serde_json::json!({ "reason": "bad_credentials", "n": n }),
        );
    }
}

fn verify(path: &Path) -> Output {
    swarmwall()
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap()
}

/// One way to tamper with a log, and the line `audit verify` must name.
type Tamper = (&'static str, fn(&mut Vec<String>), &'static str);

fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    change(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn audit_verify_names_the_first_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 6);
    let out = verify(&path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("intact, 6 records"));
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("192.0.2.1")
    );

    let cases: [Tamper; 3] = [
        (
            "edit",
            |lines| lines[3] = lines[3].replace("bad_credentials", "ok"),
            "line 4:",
        ),
        ("delete", |lines| drop(lines.remove(2)), "line 3:"),
        ("reorder", |lines| lines.swap(1, 4), "line 2:"),
    ];
    for (name, change, expected) in cases {
        let copy = dir.path().join(format!("{name}.jsonl"));
        std::fs::copy(&path, &copy).unwrap();
        rewrite(&copy, change);
        let out = verify(&copy);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let missing = verify(&dir.path().join("nope.jsonl"));
    assert!(!missing.status.success());
}
