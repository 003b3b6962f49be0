//! `swarmwall probe` against real SOCKS5 servers on loopback: microsocks (CONNECT only, no UDP
//! ASSOCIATE), Dante (CONNECT and UDP ASSOCIATE), a closed port, a wrong password, a server that
//! is not SOCKS5, and swarmwall itself (`swarmwall serve` on loopback, blocking on and off).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::socks5::Proxy;
use crate::harness::{ChildGuard, free_port, swarmwall};

const BITTORRENT_FORMS: [&str; 7] = [
    "peer_wire_handshake",
    "http_tracker_announce",
    "utp_syn_data",
    "dht_ping",
    "dht_get_peers",
    "udp_tracker",
    "mse_handshake",
];
const CONTROLS: [&str; 4] = [
    "http_get",
    "tls_client_hello",
    "encrypted_stream",
    "dns_query",
];
const UDP_FORMS: [&str; 5] = [
    "dns_query",
    "utp_syn_data",
    "dht_ping",
    "dht_get_peers",
    "udp_tracker",
];

fn microsocks(extra: &[&str]) -> (ChildGuard, u16) {
    let port = free_port();
    let guard = ChildGuard::spawn_listening(
        Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(extra),
        port,
        "microsocks",
    );
    (guard, port)
}

fn dante(dir: &std::path::Path) -> (ChildGuard, u16) {
    let port = free_port();
    let config = dir.join("danted.conf");
    std::fs::write(
        &config,
        format!(
            "logoutput: stderr\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
             socksmethod: none\nclientmethod: none\nuser.privileged: root\n\
             user.unprivileged: nobody\nclient pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
             socks pass {{ from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect udpassociate \
             udpreply }}\n"
        ),
    )
    .expect("write danted.conf");
    let guard = ChildGuard::spawn_listening(
        Command::new("danted")
            .arg("-f")
            .arg(&config)
            .arg("-p")
            .arg(dir.join("danted.pid"))
            .args(["-N", "1"]),
        port,
        "dante-server",
    );
    (guard, port)
}

fn probe(args: &[&str]) -> Output {
    swarmwall()
        .arg("probe")
        .args(args)
        .output()
        .expect("run swarmwall probe")
}

fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| {
        panic!(
            "probe printed no JSON ({error}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// form name -> (kind, outcome, detail)
fn results(json: &Value) -> Vec<(String, String, String, String)> {
    json["results"]
        .as_array()
        .expect("results list")
        .iter()
        .map(|r| {
            (
                r["form"].as_str().unwrap_or_default().to_owned(),
                r["kind"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
                r["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn assert_every_form_reported(json: &Value) {
    let names: Vec<String> = results(json).into_iter().map(|r| r.0).collect();
    for form in BITTORRENT_FORMS.iter().chain(&CONTROLS) {
        assert!(
            names.iter().any(|n| n == form),
            "{form} missing in {names:?}"
        );
    }
    for (form, kind, _, _) in results(json) {
        let expected = if CONTROLS.contains(&form.as_str()) {
            "control"
        } else {
            "bittorrent"
        };
        assert_eq!(kind, expected, "{form}");
    }
    for r in json["results"].as_array().expect("results") {
        assert!(r["elapsed_ms"].is_u64(), "elapsed_ms in {r}");
    }
}

#[test]
fn microsocks_blocks_nothing_over_tcp_and_refuses_udp_associate() {
    let (_proxy, port) = microsocks(&[]);
    let proxy = format!("127.0.0.1:{port}");
    let output = probe(&["--proxy", &proxy, "--json", "--timeout", "2s"]);
    assert_eq!(output.status.code(), Some(1), "a leak is exit status 1");
    let json = json_of(&output);
    assert_every_form_reported(&json);
    assert_eq!(json["enforced"], Value::Bool(false));
    for (form, _, outcome, detail) in results(&json) {
        if UDP_FORMS.contains(&form.as_str()) {
            // microsocks 1.0.3 has no UDP ASSOCIATE: the probe must say why, not pretend.
            assert_eq!(outcome, "blocked", "{form}");
            assert!(detail.contains("command not supported"), "{form}: {detail}");
        } else {
            assert_eq!(outcome, "passed", "{form}: {detail}");
            assert!(detail.contains("came back"), "{form}: {detail}");
        }
    }
    let summary = json["summary"].as_str().expect("summary");
    assert!(summary.contains("3/7 BitTorrent forms passed"), "{summary}");
}

#[test]
fn dante_blocks_nothing_and_the_probe_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_proxy, port) = dante(dir.path());
    let proxy = format!("127.0.0.1:{port}");
    let output = probe(&["--proxy", &proxy, "--json", "--timeout", "3s"]);
    assert_eq!(output.status.code(), Some(1));
    let json = json_of(&output);
    assert_every_form_reported(&json);
    for (form, _, outcome, detail) in results(&json) {
        assert_eq!(outcome, "passed", "{form}: {detail}");
    }
    let summary = json["summary"].as_str().expect("summary");
    assert!(summary.contains("nothing was blocked"), "{summary}");

    // The table for people says the same.
    let output = probe(&["--proxy", &proxy, "--timeout", "3s"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("result: nothing was blocked"), "{text}");
    for form in BITTORRENT_FORMS {
        let line = text
            .lines()
            .find(|line| line.starts_with(form))
            .unwrap_or_else(|| panic!("{form} row in {text}"));
        assert!(line.contains(" passed "), "{line}");
    }
}

#[test]
fn closed_port_is_exit_2_with_the_reason() {
    let port = free_port();
    let proxy = format!("127.0.0.1:{port}");
    let output = probe(&["--proxy", &proxy, "--json", "--timeout", "2s"]);
    assert_eq!(output.status.code(), Some(2));
    let json = json_of(&output);
    assert_eq!(json["reason"], "connection_refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[test]
fn wrong_password_is_exit_2_and_right_password_works() {
    let (_proxy, port) = microsocks(&["-u", "alice", "-P", "correct-horse"]);
    let proxy = format!("127.0.0.1:{port}");
    let output = probe(&[
        "--proxy",
        &proxy,
        "--user",
        "alice",
        "--pass",
        "wrong",
        "--json",
        "--timeout",
        "2s",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let json = json_of(&output);
    assert_eq!(json["reason"], "auth_failed", "{json}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the password must not be echoed: {stderr}"
    );

    // No credentials at all: the proxy wants them.
    let output = probe(&["--proxy", &proxy, "--json", "--timeout", "2s"]);
    assert_eq!(output.status.code(), Some(2));

    // The password from the environment, right this time: the probe runs.
    let output = swarmwall()
        .args(["probe", "--proxy", &proxy, "--user", "alice", "--json"])
        .args(["--timeout", "2s"])
        .env("SWARMWALL_PROBE_PASS", "correct-horse")
        .output()
        .expect("run probe");
    assert_eq!(output.status.code(), Some(1));
    let json = json_of(&output);
    let passed = results(&json)
        .into_iter()
        .filter(|r| r.0 == "peer_wire_handshake" && r.2 == "passed")
        .count();
    assert_eq!(passed, 1);
}

#[test]
fn a_server_that_is_not_socks5_is_exit_2() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        // Answer the first connection like an HTTP server would.
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 16];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let output = probe(&["--proxy", &address.to_string(), "--json", "--timeout", "2s"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(json_of(&output)["reason"], "not_socks5");
    let _ = server.join();
}

// ---- against swarmwall itself ----

#[test]
fn swarmwall_blocks_every_form_and_passes_every_control() {
    let node = Proxy::start(&["--allow-destination", "127.0.0.1/32"]);
    let output = probe(&[
        "--proxy",
        &node.address.to_string(),
        "--json",
        "--timeout",
        "3s",
    ]);
    let json = json_of(&output);
    assert_every_form_reported(&json);
    for (form, kind, outcome, detail) in results(&json) {
        let expected = if kind == "control" {
            "passed"
        } else {
            "blocked"
        };
        assert_eq!(outcome, expected, "{form}: {detail}");
    }
    assert_eq!(output.status.code(), Some(0), "{json}");
}

#[test]
fn swarmwall_with_blocking_off_lets_everything_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("swarmwall.toml");
    std::fs::write(&config, "[policy]\nbittorrent = \"allow\"\n").expect("write config");
    let config = config.to_string_lossy().into_owned();
    let node = Proxy::start(&["--config", &config, "--allow-destination", "127.0.0.1/32"]);
    let output = probe(&[
        "--proxy",
        &node.address.to_string(),
        "--json",
        "--timeout",
        "3s",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let json = json_of(&output);
    for (form, _, outcome, detail) in results(&json) {
        assert_eq!(outcome, "passed", "{form}: {detail}");
    }
}
