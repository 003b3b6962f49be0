//! `swarmwall inspect` on real captures: the loopback libtorrent/curl captures in
//! `tests/captures/` (labelled by rules in `tests/captures/labels.json`), the nDPI corpus when
//! `SWARMWALL_CORPUS` names it (absent: skipped), and damaged files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::BIN;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn captures() -> PathBuf {
    repo().join("tests/captures")
}

/// The nDPI corpus directory (`.../corpus/ndpi`), if present on this machine.
fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SWARMWALL_CORPUS")?).join("ndpi");
    dir.join("labels.jsonl").is_file().then_some(dir)
}

fn inspect(args: &[&str], files: &[&Path]) -> Output {
    Command::new(BIN)
        .arg("inspect")
        .args(args)
        .args(files)
        .output()
        .expect("run swarmwall inspect")
}

fn json_flows(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}")))
        .collect()
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad endpoint {endpoint}"))
}

#[test]
fn json_lines_have_exactly_the_documented_fields() {
    let file = captures().join("lt_tcp_http_tracker.pcap");
    let output = inspect(&["--json"], &[&file]);
    assert!(output.status.success(), "{output:?}");
    let flows = json_flows(&output);
    assert!(!flows.is_empty());
    let given = file.display().to_string();
    for flow in &flows {
        let object = flow.as_object().expect("object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "a",
                "app",
                "b",
                "bittorrent",
                "bytes",
                "file",
                "form",
                "l4",
                "packets"
            ]
        );
        assert_eq!(flow["file"], given.as_str());
        assert!(flow["l4"] == "tcp" || flow["l4"] == "udp");
        for side in ["a", "b"] {
            let endpoint = flow[side].as_str().expect("endpoint string");
            assert!(
                endpoint.parse::<std::net::SocketAddr>().is_ok(),
                "{endpoint}"
            );
        }
        assert!(flow["packets"].as_u64().expect("packets") > 0);
        assert!(flow["bytes"].as_u64().expect("bytes") > 0);
        let bittorrent = flow["bittorrent"].as_bool().expect("bool");
        let app = flow["app"].as_str().expect("app");
        assert_eq!(bittorrent, app.starts_with("bittorrent."), "{flow}");
        assert_eq!(bittorrent, flow["form"].is_string(), "{flow}");
    }
    // The initiator of a flow with a SYN is the SYN sender: the HTTP tracker is always `b`.
    assert!(
        flows
            .iter()
            .any(|f| port_of(f["b"].as_str().unwrap_or("")) == 28969)
    );
    assert!(
        !flows
            .iter()
            .any(|f| port_of(f["a"].as_str().unwrap_or("")) == 28969)
    );
}

/// Every flow of every own capture matches a rule of `labels.json`; BitTorrent rules demand the
/// listed form, benign rules demand no BitTorrent flag.
#[test]
fn own_captures_flag_every_bittorrent_flow_by_form_and_no_benign_flow() {
    let labels: Value = serde_json::from_str(
        &std::fs::read_to_string(captures().join("labels.json")).expect("labels.json"),
    )
    .expect("labels.json parses");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, spec) in labels.as_object().expect("object") {
        let path = captures().join(file);
        let args: Vec<&str> = spec["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut all_args = vec!["--json"];
        all_args.extend(args);
        let output = inspect(&all_args, &[&path]);
        assert!(output.status.success(), "{file}: {output:?}");
        let flows = json_flows(&output);
        assert!(!flows.is_empty(), "{file}: no flows");
        let rules = spec["rules"].as_array().expect("rules");
        for flow in &flows {
            checked += 1;
            let ports = [
                port_of(flow["a"].as_str().unwrap_or("")),
                port_of(flow["b"].as_str().unwrap_or("")),
            ];
            let rule = rules.iter().find(|rule| {
                rule["l4"] == flow["l4"]
                    && rule["port"]
                        .as_u64()
                        .is_some_and(|p| ports.contains(&(p as u16)))
                    && rule["client"].as_str().is_none_or(|ip| {
                        flow["a"]
                            .as_str()
                            .is_some_and(|a| a.starts_with(&format!("{ip}:")))
                    })
            });
            let Some(rule) = rule else {
                failures.push(format!("{file}: no rule for {flow}"));
                continue;
            };
            let app = flow["app"].as_str().unwrap_or("");
            if rule["benign"] == true {
                if flow["bittorrent"] == true {
                    failures.push(format!("{file}: benign flow flagged: {flow}"));
                }
                if let Some(prefix) = rule["app_prefix"].as_str()
                    && !app.starts_with(prefix)
                {
                    failures.push(format!("{file}: expected {prefix}*: {flow}"));
                }
            } else {
                let forms: Vec<&str> = rule["forms"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let form = flow["form"].as_str().unwrap_or("");
                if flow["bittorrent"] != true || !forms.contains(&form) {
                    failures.push(format!("{file}: expected one of {forms:?}: {flow}"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} flows checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn summary_counts_bittorrent_flows_by_form() {
    let output = inspect(&[], &[&captures().join("lt_utp.pcap")]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("1 file(s)"), "{text}");
    assert!(text.contains("BitTorrent flows: 1"), "{text}");
    assert!(text.contains("utp"), "{text}");
}

#[test]
fn truncated_capture_reports_flows_read_so_far_with_a_warning() {
    let original = std::fs::read(captures().join("lt_tcp_http_tracker.pcap")).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &original[..original.len() * 2 / 3 + 7]).expect("write");
    let output = inspect(&["--json"], &[&cut]);
    assert!(
        output.status.success(),
        "a truncated file still exits 0: {output:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cut.pcap"), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(stderr.contains("packet record"), "{stderr}");
    assert!(!json_flows(&output).is_empty());
}

#[test]
fn unreadable_files_are_named_and_exit_1_but_others_are_still_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a capture at all\n").expect("write");
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, "").expect("write");
    let missing = dir.path().join("missing.pcap");
    let good = captures().join("lt_utp.pcap");
    let output = inspect(&["--json"], &[&text, &empty, &missing, &good]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["notes.txt", "empty.pcap", "missing.pcap"] {
        assert!(stderr.contains(name), "{name} not named: {stderr}");
    }
    assert!(
        !json_flows(&output).is_empty(),
        "the good file is still reported"
    );
}

#[test]
fn garbage_after_a_valid_header_never_panics() {
    let original = std::fs::read(captures().join("lt_mse_forced.pcap")).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, seed) in [7u32, 1_000_003, 77_777].iter().enumerate() {
        let mut bytes = original.clone();
        // Flip bytes after the 24-byte file header with a cheap deterministic generator.
        let mut state = *seed;
        for _ in 0..64 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let at = 24 + (state as usize % (bytes.len() - 24));
            bytes[at] ^= (state >> 16) as u8 | 1;
        }
        let path = dir.path().join(format!("mangled{i}.pcap"));
        std::fs::write(&path, &bytes).expect("write");
        let output = inspect(&["--json"], &[&path]);
        assert!(output.status.code() == Some(0), "{path:?}: {output:?}");
        assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    }
}

/// The nDPI corpus's plain handshake capture: all 24 flows are peer-wire, with SYN-less
/// direction from the first sender.
#[test]
fn corpus_bittorrent_pcap_flags_all_24_flows() {
    let Some(corpus) = corpus() else {
        eprintln!("skipped: nDPI corpus not found (set SWARMWALL_CORPUS)");
        return;
    };
    let output = inspect(&["--json"], &[&corpus.join("bittorrent.pcap")]);
    assert!(output.status.success(), "{output:?}");
    let flows = json_flows(&output);
    assert_eq!(flows.len(), 24);
    for flow in &flows {
        assert_eq!(flow["bittorrent"], true, "{flow}");
        assert_eq!(flow["app"], "bittorrent.peer_wire", "{flow}");
    }
}

/// Every link type in the corpus is read; the whole corpus takes one invocation.
#[test]
fn corpus_is_read_without_errors_beyond_the_known_damaged_files() {
    let Some(corpus) = corpus() else {
        eprintln!("skipped: nDPI corpus not found (set SWARMWALL_CORPUS)");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap")
        })
        .collect();
    files.sort();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let output = inspect(&["--json"], &refs);
    assert!(
        output.status.success(),
        "{:?}",
        String::from_utf8_lossy(&output.stderr)
    );
    let flows = json_flows(&output);
    assert!(flows.len() > 8_500, "{} flows", flows.len());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // fuzz-2021-10-13.pcap: a single record claiming about 4 GB.
    assert!(stderr.lines().count() <= 3, "{stderr}");
}

#[test]
fn dash_reads_the_capture_from_standard_input() {
    let capture = std::fs::File::open(captures().join("lt_utp.pcap")).expect("open");
    let output = Command::new(BIN)
        .args(["inspect", "--json", "-"])
        .stdin(capture)
        .output()
        .expect("run swarmwall inspect -");
    assert!(output.status.success(), "{output:?}");
    let flows = json_flows(&output);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["file"], "-");
    assert_eq!(flows[0]["app"], "bittorrent.utp");
}
