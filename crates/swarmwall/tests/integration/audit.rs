//! The security event log against an attacker who can edit the file: `swarmwall audit verify`
//! (keyed chain, `--expect`, `--checkpoint`, `--store`), `audit head`, rotation, checkpoints
//! from a running server (syslog socket and a real redis-server), and `admin_action` records
//! of CLI commands written while a server writes the same log.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use swarmwall_server::audit::{AuditKey, AuditLog, AuditOptions, Checkpoint, rotated_name};
use swarmwall_server::auth::{HashParams, PseudonymKey, hash_password};

use crate::harness::socks5::{Proxy, accounts_file, connect, greet_password};
use crate::harness::{RedisServer, run as swarmwall, text, wait_until};

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The node secret beside the log (the tests' configs name it in `secret_key_file`; `audit
/// verify` also looks beside the log).
fn secret(dir: &Path) -> PseudonymKey {
    PseudonymKey::load_or_create(&dir.join("swarmwall-secret.key")).unwrap()
}

/// 200 records: 107 of them about `carol`, the rest about `alice` and `bob`.
fn write_log(path: &Path, options: &AuditOptions) {
    let log = AuditLog::open(path, &secret(path.parent().unwrap()), options).unwrap();
    for n in 0..200u64 {
        // Spread exactly 107 `carol` records over the 200.
        let account = if (n + 1) * 107 / 200 != n * 107 / 200 {
            "carol"
        } else if n % 2 == 0 {
            "alice"
        } else {
            "bob"
        };
        log.record(
            "auth_failure",
            Some(account),
            Some("192.0.2.7".parse().unwrap()),
            serde_json::json!({ "reason": "bad_credentials", "n": n }),
        );
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Recompute the whole chain with plain SHA-256, renumbering `seq` (what anyone could do to
/// the unkeyed format).
fn rechain_sha256(bodies: Vec<Value>) -> Vec<String> {
    let mut prev = "0".repeat(64);
    let mut out = Vec::new();
    for (index, mut body) in bodies.into_iter().enumerate() {
        let object = body.as_object_mut().unwrap();
        object.remove("hash");
        object.insert("seq".into(), (index as u64 + 1).into());
        object.insert("prev".into(), prev.clone().into());
        let body_text = body.to_string();
        let hash = hex::encode(Sha256::digest(body_text.as_bytes()));
        out.push(format!(
            "{},\"hash\":\"{hash}\"}}",
            &body_text[..body_text.len() - 1]
        ));
        prev = hash;
    }
    out
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn verify(files: &[&Path], extra: &[&str]) -> Output {
    let mut args = vec!["audit", "verify"];
    args.extend(files.iter().map(|file| arg(file)));
    args.extend(extra);
    swarmwall(&args)
}

#[test]
fn forged_truncated_emptied_and_rechained_logs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_log(&log, &AuditOptions::default());
    let head = swarmwall(&["audit", "head", arg(&log)]);
    assert!(head.status.success(), "{}", text(&head.stderr));
    let head = text(&head.stdout).trim().to_owned();
    assert!(head.starts_with("200:"), "{head}");
    let (seq, hash) = head.split_once(':').unwrap();
    let key = AuditKey::from_secret(&secret(dir.path()));
    let checkpoint = Checkpoint::sign(&key, "node-a", seq.parse().unwrap(), hash, 1).to_line();
    let intact = verify(&[&log], &["--expect", &head, "--checkpoint", &checkpoint]);
    assert_eq!(intact.status.code(), Some(0), "{}", text(&intact.stderr));
    assert!(text(&intact.stdout).contains("intact, 200 records"));

    let original = lines(&log);
    let cases: Vec<(&str, Vec<String>, bool)> = vec![
        // (name, tampered lines, caught even without --expect)
        (
            "forged",
            {
                let mut bodies = parse(&original);
                bodies[50]["details"]["reason"] = "ok".into();
                rechain_sha256(bodies)
            },
            true,
        ),
        ("truncated", original[..190].to_vec(), false),
        ("emptied", Vec::new(), false),
        (
            "tail_cut_forged_admin_action",
            {
                let mut bodies = parse(&original[..150]);
                let mut forged = bodies[0].clone();
                forged["kind"] = "admin_action".into();
                forged["account"] = "carol".into();
                forged["client"] = Value::Null;
                forged["details"] = serde_json::json!({"action": "unlock"});
                bodies.push(forged);
                rechain_sha256(bodies)
            },
            true,
        ),
        (
            "carol_deleted_rechained",
            {
                let bodies = parse(&original)
                    .into_iter()
                    .filter(|body| body["account"] != "carol")
                    .collect::<Vec<_>>();
                assert_eq!(bodies.len(), 200 - 107);
                rechain_sha256(bodies)
            },
            true,
        ),
    ];
    for (name, tampered, caught_alone) in cases {
        let copy = dir.path().join(format!("{name}.jsonl"));
        write_lines(&copy, &tampered);
        // The unkeyed verifier of the first format accepts every one of them.
        let legacy = verify(&[&copy], &["--legacy-sha256"]);
        if caught_alone {
            assert_eq!(
                legacy.status.code(),
                Some(0),
                "{name}: {}",
                text(&legacy.stderr)
            );
        }
        let alone = verify(&[&copy], &[]);
        assert_eq!(
            alone.status.code(),
            Some(if caught_alone { 1 } else { 0 }),
            "{name}: {}",
            text(&alone.stderr)
        );
        let expected = verify(&[&copy], &["--expect", &head]);
        assert_eq!(expected.status.code(), Some(1), "{name} with --expect");
        let with_checkpoint = verify(&[&copy], &["--checkpoint", &checkpoint]);
        assert_eq!(
            with_checkpoint.status.code(),
            Some(1),
            "{name} with --checkpoint"
        );
        if !caught_alone {
            assert!(
                text(&expected.stderr).contains("cut off"),
                "{name}: {}",
                text(&expected.stderr)
            );
        }
    }
    // A forged checkpoint (MAC made without the key) is refused.
    let forged = checkpoint.replace("seq=200", "seq=150");
    let out = verify(&[&log], &["--checkpoint", &forged]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("MAC"), "{}", text(&out.stderr));
}

#[test]
fn verify_needs_the_key_and_says_how_to_give_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_log(&log, &AuditOptions::default());
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("audit.jsonl");
    std::fs::copy(&log, &moved).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = verify(&[&moved], &["--data-dir", arg(empty.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--key-file"),
        "{}",
        text(&out.stderr)
    );
    let key = dir.path().join("swarmwall-secret.key");
    let out = verify(&[&moved], &["--key-file", arg(&key)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // And through the configuration's secret_key_file.
    let config = empty.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[security]\nsecret_key_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    let out = verify(&[&moved], &["--config", arg(&config)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Another node's key finds nothing valid.
    let other = empty.path().join("other.key");
    PseudonymKey::load_or_create(&other).unwrap();
    let out = verify(&[&moved], &["--key-file", arg(&other)]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn rotated_files_verify_as_one_chain_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let options = AuditOptions {
        max_bytes: 6_000,
        keep_files: 4,
        ..AuditOptions::default()
    };
    write_log(&log, &options);
    let files: Vec<PathBuf> = (1..=4)
        .rev()
        .map(|n| rotated_name(&log, n))
        .chain([log.clone()])
        .collect();
    assert!(files.iter().all(|file| file.exists()));
    assert!(!rotated_name(&log, 5).exists(), "keep_files is honoured");
    let head = text(&swarmwall(&["audit", "head", arg(&log)]).stdout)
        .trim()
        .to_owned();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = verify(&refs, &["--expect", &head]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("continuing rotated files"));
    let out = verify(&[&log], &["--with-rotated", "--expect", &head]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Out of order, or with a middle file missing: broken.
    let out = verify(&[refs[0], refs[2], refs[1], refs[3], refs[4]], &[]);
    assert_eq!(out.status.code(), Some(1));
    let out = verify(&[refs[0], refs[1], refs[3], refs[4]], &[]);
    assert_eq!(out.status.code(), Some(1));
    // A rotated file whose first (rotation) record was removed no longer verifies alone.
    let mut first = lines(&files[1]);
    first.remove(0);
    write_lines(&files[1], &first);
    let out = verify(&[refs[1]], &[]);
    assert_eq!(out.status.code(), Some(1));
}

/// Accounts file with `alice` hashed with cheap argon2 (failed logins stay fast).
fn cheap_accounts(dir: &Path) -> PathBuf {
    let params = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let hash = hash_password(b"right-password", &params).unwrap();
    accounts_file(dir, &[("alice", &hash)])
}

fn bad_login(proxy: &Proxy) {
    let mut stream = connect(proxy.address);
    assert_ne!(greet_password(&mut stream, "alice", "wrong-password"), 0);
}

#[test]
fn a_running_server_sends_checkpoints_to_syslog_and_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // A password, as a fleet store must have one.
    redis.cli(&["CONFIG", "SET", "requirepass", "audit-test-pw"]);
    let url = format!("redis://:audit-test-pw@127.0.0.1:{}/", redis.port);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("syslog.sock");
    let syslog = UnixDatagram::bind(&socket).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[security]\nfailure_delay = \"0s\"\nmax_failures = 100000\n\
             audit_checkpoint_records = 5\naudit_checkpoint_interval = \"1s\"\n\
             audit_syslog = \"{}\"\naudit_node_name = \"node-t\"\n\
             secret_key_file = \"{}\"\n\
             [store]\nurl = \"{url}\"\ntimeout = \"2s\"\n",
            socket.display(),
            dir.path().join("swarmwall-secret.key").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("audit.jsonl");
    let accounts = cheap_accounts(dir.path());
    let mut proxy = Proxy::start(&[
        "--config",
        arg(&config),
        "--accounts",
        arg(&accounts),
        "--audit-log",
        arg(&log),
    ]);
    for _ in 0..12 {
        bad_login(&proxy);
    }
    // Checkpoints arrive on the syslog socket, signed, up to the 12th record.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut newest: Option<Checkpoint> = None;
    while newest.as_ref().is_none_or(|c| c.seq < 12) && Instant::now() < deadline {
        let mut buffer = [0u8; 2048];
        if let Ok(n) = syslog.recv(&mut buffer) {
            let datagram = text(&buffer[..n]);
            assert!(datagram.starts_with("<85>swarmwall["), "{datagram}");
            newest = Some(Checkpoint::parse(&datagram).unwrap());
        }
    }
    let newest = newest.expect("no checkpoint on the syslog socket");
    assert_eq!(newest.seq, 12, "{newest:?}");
    assert_eq!(newest.node, "node-t");
    proxy.signal("TERM");
    proxy.wait_exit(Duration::from_secs(20));
    let key = AuditKey::from_secret(&secret(dir.path()));
    assert!(newest.verify(&key));
    // The store holds the same checkpoint; the log verifies against it ...
    let stored = redis.cli(&[
        "-a",
        "audit-test-pw",
        "--no-auth-warning",
        "GET",
        "swarmwall:audit_checkpoint:node-t",
    ]);
    assert_eq!(Checkpoint::parse(&stored).unwrap(), newest, "{stored}");
    let with_store = ["--store", url.as_str(), "--node", "node-t"];
    let out = verify(&[&log], &with_store);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = newest.to_line();
    let out = verify(&[&log], &["--checkpoint", &line]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // ... and not once its newest records are cut.
    let mut cut = lines(&log);
    cut.truncate(9);
    write_lines(&log, &cut);
    let out = verify(&[&log], &with_store);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("cut off"),
        "{}",
        text(&out.stderr)
    );
    let out = verify(&[&log], &["--checkpoint", &line]);
    assert_eq!(out.status.code(), Some(1));
    // A restarted server notices and records the mismatch in the new chain.
    let proxy = Proxy::start(&[
        "--config",
        arg(&config),
        "--accounts",
        arg(&accounts),
        "--audit-log",
        arg(&log),
    ]);
    let found = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("audit_checkpoint_mismatch")
    });
    drop(proxy);
    assert!(found, "no audit_checkpoint_mismatch record");
    // Deleting the store key is noticed too.
    redis.cli(&[
        "-a",
        "audit-test-pw",
        "--no-auth-warning",
        "DEL",
        "swarmwall:audit_checkpoint:node-t",
    ]);
    let out = verify(&[&log], &with_store);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn cli_admin_actions_join_the_chain_while_the_server_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[security]\nfailure_delay = \"0s\"\nmax_failures = 100000\nargon2_memory_kib = 64\n\
             argon2_iterations = 1\naudit_max_bytes = 16000\naudit_keep_files = 100\n\
             secret_key_file = \"{}\"\n",
            dir.path().join("swarmwall-secret.key").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("audit.jsonl");
    let accounts = cheap_accounts(dir.path());
    let proxy = Proxy::start(&[
        "--config",
        arg(&config),
        "--accounts",
        arg(&accounts),
        "--audit-log",
        arg(&log),
    ]);
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", arg(&config), "--audit-log", arg(&log)]);
        let out = swarmwall(&all);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    let expected_cli_records = std::thread::scope(|scope| {
        let load: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..40 {
                        bad_login(&proxy);
                    }
                })
            })
            .collect();
        let mut count = 0;
        for round in 0..4 {
            cli(&[
                "strikes", "suspend", "bob", "--for", "1h", "--store", "memory",
            ]);
            cli(&["strikes", "unsuspend", "bob", "--store", "memory"]);
            cli(&["strikes", "clear", "--all", "--store", "memory"]);
            cli(&["user", "disable", "alice", "--accounts", arg(&accounts)]);
            cli(&["user", "enable", "alice", "--accounts", arg(&accounts)]);
            let _ = round;
            count += 5;
        }
        for thread in load {
            thread.join().unwrap();
        }
        count
    });
    drop(proxy);
    let out = verify(&[&log], &["--with-rotated"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut files: Vec<PathBuf> = (1..=100)
        .map(|n| rotated_name(&log, n))
        .filter(|file| file.exists())
        .collect();
    assert!(!files.is_empty(), "the log rotated under load");
    files.reverse();
    files.push(log.clone());
    let records: Vec<Value> = files.iter().flat_map(|file| parse(&lines(file))).collect();
    let cli_actions: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "admin_action" && r["details"]["source"] == "cli")
        .collect();
    assert_eq!(cli_actions.len(), expected_cli_records);
    let actions: std::collections::BTreeSet<&str> = cli_actions
        .iter()
        .filter_map(|r| r["details"]["action"].as_str())
        .collect();
    for action in [
        "strikes_suspend",
        "strikes_unsuspend",
        "strikes_clear_all",
        "user_disable",
        "user_enable",
    ] {
        assert!(actions.contains(action), "{action} missing: {actions:?}");
    }
    assert!(cli_actions.iter().all(|r| r["details"]["result"] == "ok"));
    let failures = records
        .iter()
        .filter(|r| r["kind"] == "auth_failure")
        .count();
    assert_eq!(failures, 120);
    // One chain: every seq once, in order.
    for pair in records.windows(2) {
        assert_eq!(pair[1]["seq"], pair[0]["seq"].as_u64().unwrap() + 1);
        assert_eq!(pair[1]["prev"], pair[0]["hash"]);
    }
}
