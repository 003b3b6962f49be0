use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::chain::{HASH_PREFIX, HASH_SUFFIX_LEN};
use super::*;

fn client() -> IpAddr {
    "198.51.100.23".parse().unwrap()
}

fn secret() -> PseudonymKey {
    PseudonymKey::from_bytes([1; 32])
}

fn key() -> AuditKey {
    AuditKey::from_secret(&secret())
}

fn open(path: &Path, options: &AuditOptions) -> AuditLog {
    AuditLog::open(path, &secret(), options).unwrap()
}

fn write_log(path: &Path, records: u64) {
    let log = open(path, &AuditOptions::default());
    for n in 0..records {
        log.record_at(
            "auth_failure",
            Some("alice"),
            Some(client()),
            json!({"reason": "bad_credentials", "n": n}),
            1_000 + n,
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

fn rewrite(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn broken_line(path: &Path) -> usize {
    match verify(path, &key()) {
        Err(AuditError::Broken { line, .. }) => line,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

fn expect(path: &Path, expected: &Expected) -> Result<VerifyReport, AuditError> {
    verify_files(
        &[path.to_owned()],
        ChainHash::Keyed(&key()),
        std::slice::from_ref(expected),
    )
}

/// Re-seal a body with plain SHA-256 (what anyone could do with the unkeyed format).
fn reseal_sha256(body: &serde_json::Value) -> (String, String) {
    let text = body.to_string();
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let line = format!("{}{HASH_PREFIX}{hash}\"}}", &text[..text.len() - 1]);
    (line, hash)
}

#[test]
fn intact_log_verifies_and_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 3);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    write_log(&path, 2);
    let report = verify(&path, &key()).unwrap();
    assert_eq!(report.records, 5);
    assert_eq!(head(&path).unwrap(), (5, report.last_hash.clone()));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("198.51.100.23"), "{text}");
    assert!(text.contains(&secret().hash_address(client())));
    assert!(verify(&dir.path().join("missing"), &key()).is_err());
    // Another key cannot verify it.
    let other = AuditKey::from_secret(&PseudonymKey::from_bytes([2; 32]));
    assert!(verify(&path, &other).is_err());
    assert_eq!(format!("{:?}", key()), "AuditKey(<redacted>)");
}

#[test]
fn empty_log_verifies_but_not_against_an_expected_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 4);
    let (seq, hash) = head(&path).unwrap();
    std::fs::write(&path, "").unwrap();
    assert_eq!(verify(&path, &key()).unwrap().records, 0);
    let error = expect(&path, &Expected { seq, hash }).unwrap_err();
    assert!(error.to_string().contains("cut off"), "{error}");
}

#[test]
fn an_edited_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut all = lines(&path);
    all[2] = all[2].replace("alice", "alicf");
    rewrite(&path, &all);
    assert_eq!(broken_line(&path), 3);
}

#[test]
fn a_record_resealed_without_the_key_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut all = lines(&path);
    let edited = all[1].replace("alice", "mallory");
    let body: serde_json::Value =
        serde_json::from_str(&format!("{}}}", &edited[..edited.len() - HASH_SUFFIX_LEN])).unwrap();
    all[1] = reseal_sha256(&body).0;
    rewrite(&path, &all);
    assert_eq!(broken_line(&path), 2);
}

#[test]
fn cut_tail_is_found_with_an_expected_record_and_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 8);
    let (seq, hash) = head(&path).unwrap();
    let checkpoint = Checkpoint::sign(&key(), "node-a", seq, &hash, 1);
    let parsed = Checkpoint::parse(&format!(
        "Dec 06 host swarmwall[1]: {}",
        checkpoint.to_line()
    ))
    .unwrap();
    assert_eq!(parsed, checkpoint);
    assert_eq!(
        Checkpoint::parse(&checkpoint.to_json()).unwrap(),
        checkpoint
    );
    assert!(parsed.verify(&key()));
    let mut forged = parsed.clone();
    forged.seq = 3;
    assert!(!forged.verify(&key()));
    let expected = Expected { seq, hash };
    assert!(expect(&path, &expected).is_ok());
    let mut all = lines(&path);
    all.truncate(6);
    rewrite(&path, &all);
    assert!(
        verify(&path, &key()).is_ok(),
        "a cut chain is still a chain"
    );
    let error = expect(&path, &expected).unwrap_err();
    assert!(matches!(error, AuditError::Expectation { .. }), "{error}");
    // A record that exists but differs.
    let mut other = expected.clone();
    other.seq = 2;
    assert!(
        expect(&path, &other)
            .unwrap_err()
            .to_string()
            .contains("differs")
    );
    assert!("5:abc".parse::<Expected>().is_err());
    assert_eq!(expected.to_string().parse::<Expected>().unwrap(), expected);
}

#[test]
fn a_removed_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut all = lines(&path);
    all.remove(1);
    rewrite(&path, &all);
    assert_eq!(broken_line(&path), 2);
    let mut all = lines(&path);
    all.remove(0);
    rewrite(&path, &all);
    assert_eq!(broken_line(&path), 1);
}

#[test]
fn reordered_records_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut all = lines(&path);
    all.swap(2, 3);
    rewrite(&path, &all);
    assert_eq!(broken_line(&path), 3);
}

#[test]
fn garbage_is_found_without_panicking_and_writers_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 2);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"not\": \"a record\"}\n{\"half");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(broken_line(&path), 3);
    // A writer continues from the last good record and starts on a fresh line.
    write_log(&path, 1);
    let all = lines(&path);
    assert_eq!(all.len(), 5);
    assert!(all[4].contains("\"seq\":3"), "{}", all[4]);
    std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
    assert_eq!(broken_line(&path), 1);
}

#[test]
fn an_unkeyed_log_is_moved_aside_and_still_readable_as_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut prev = GENESIS_HASH.to_owned();
    let mut text = String::new();
    for seq in 1..=3 {
        let body = chain::body(seq, seq, "lockout", None, None, &json!({}), &prev);
        let (line, hash) = reseal_sha256(&body);
        text.push_str(&line);
        text.push('\n');
        prev = hash;
    }
    std::fs::write(&path, &text).unwrap();
    let legacy = verify_files(std::slice::from_ref(&path), ChainHash::LegacySha256, &[]).unwrap();
    assert_eq!(legacy.records, 3);
    assert_eq!(broken_line(&path), 1);
    write_log(&path, 2);
    assert_eq!(verify(&path, &key()).unwrap().records, 2);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("audit.jsonl.unverified-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&aside[0])).unwrap(),
        text
    );
}

#[test]
fn rotation_carries_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let options = AuditOptions {
        max_bytes: 2_000,
        keep_files: 3,
        ..AuditOptions::default()
    };
    let log = open(&path, &options);
    for n in 0..60u64 {
        log.record_at("lockout", Some("bob"), Some(client()), json!({ "n": n }), n);
    }
    let (head_seq, head_hash) = log.head().unwrap();
    let files: Vec<PathBuf> = (1..=3)
        .rev()
        .map(|n| rotated_name(&path, n))
        .chain([path.clone()])
        .collect();
    for file in &files {
        assert!(file.exists(), "{}", file.display());
        assert!(std::fs::metadata(file).unwrap().len() <= 2_000);
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!rotated_name(&path, 4).exists());
    let report = verify_files(
        &files,
        ChainHash::Keyed(&key()),
        &[Expected {
            seq: head_seq,
            hash: head_hash,
        }],
    )
    .unwrap();
    assert!(report.first_seq > 1, "the oldest files were dropped");
    assert_eq!(report.last_seq, head_seq);
    // The newest file alone verifies (it opens with a keyed rotation record) ...
    assert!(verify(&path, &key()).is_ok());
    // ... a record of a rotated file is "before the start", not cut off ...
    let early = verify_files(
        std::slice::from_ref(&path),
        ChainHash::Keyed(&key()),
        &[Expected {
            seq: 1,
            hash: GENESIS_HASH.to_owned(),
        }],
    );
    assert!(matches!(
        early,
        Err(AuditError::Expectation {
            before_start: true,
            ..
        })
    ));
    assert_eq!(with_rotated(&path).len(), 4);
    assert!(lines(&path)[0].contains(ROTATION_KIND));
    // ... but not with its first record cut, nor with the files out of order.
    let mut all = lines(&path);
    all.remove(0);
    let cut = dir.path().join("cut.jsonl");
    rewrite(&cut, &all);
    assert_eq!(broken_line(&cut), 1);
    let swapped = [files[0].clone(), files[2].clone(), files[1].clone()];
    assert!(verify_files(&swapped, ChainHash::Keyed(&key()), &[]).is_err());
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let options = AuditOptions {
        max_bytes: 8_000,
        keep_files: 50,
        ..AuditOptions::default()
    };
    // Separate handles on the same file behave like separate processes (own descriptors).
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let log = open(&path, &options);
            std::thread::spawn(move || {
                for n in 0..50 {
                    log.record("lockout", None, Some(client()), json!({ "t": t, "n": n }));
                }
                log.write_failures()
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 0);
    }
    let mut files: Vec<PathBuf> = (1..=50)
        .rev()
        .map(|n| rotated_name(&path, n))
        .filter(|file| file.exists())
        .collect();
    files.push(path.clone());
    assert!(files.len() > 2);
    let report = verify_files(&files, ChainHash::Keyed(&key()), &[]).unwrap();
    let rotations = (files.len() - 1) as u64;
    assert_eq!(report.first_seq, 1);
    assert_eq!(report.records, 300 + rotations);
}

#[test]
fn checkpoints_are_signalled_every_n_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let options = AuditOptions {
        checkpoint_every: 3,
        ..AuditOptions::default()
    };
    let log = open(&path, &options);
    let receiver = log.subscribe_checkpoints().unwrap();
    for n in 0..7u64 {
        log.record_at("lockout", None, None, json!({ "n": n }), n);
    }
    assert_eq!(receiver.borrow().0, 6);
    let checkpoint = log.checkpoint("n1").unwrap();
    assert_eq!(checkpoint.seq, 7);
    assert!(checkpoint.verify(&key()));
}

#[test]
fn syslog_datagrams_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("log");
    let receiver = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    let checkpoint = Checkpoint::sign(&key(), "n1", 4, GENESIS_HASH, 9);
    send_syslog(&socket, &checkpoint.to_line()).unwrap();
    let mut buffer = [0u8; 1024];
    let n = receiver.recv(&mut buffer).unwrap();
    let text = std::str::from_utf8(&buffer[..n]).unwrap();
    assert!(text.starts_with("<85>swarmwall["), "{text}");
    assert_eq!(Checkpoint::parse(text).unwrap(), checkpoint);
}

#[test]
fn recent_ring_is_bounded_and_ordered() {
    let log = AuditLog::memory(None, 3);
    for n in 0..5u64 {
        log.record_at("lockout", None, Some(client()), json!({ "n": n }), n);
    }
    let recent = log.recent(10);
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[2]["details"]["n"], 4);
    assert_eq!(recent[0]["seq"], 3);
    assert_eq!(recent[0]["client"], "198.51.100.23");
    assert_eq!(log.recent(1).len(), 1);
    assert!(AuditLog::disabled().recent(10).is_empty());
}

#[test]
#[ignore]
fn measure_append_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = open(
        &path,
        &AuditOptions {
            max_bytes: 1 << 20,
            ..AuditOptions::default()
        },
    );
    let started = std::time::Instant::now();
    for n in 0..20_000u64 {
        log.record(
            "auth_failure",
            Some("alice"),
            Some(client()),
            json!({ "n": n }),
        );
    }
    let elapsed = started.elapsed();
    eprintln!(
        "MEASURE 20000 appends in {elapsed:?}: {:.0}/s",
        20_000.0 / elapsed.as_secs_f64()
    );
}
