//! `[policy]` through the real binary: `swarmwall check-config` accepts a full policy section and
//! locates mistakes in it (file, line, column, offending value).

use crate::harness::swarmwall;

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarmwall.toml");
    std::fs::write(&path, text).unwrap();
    let output = swarmwall().arg("check-config").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn a_full_policy_section_is_accepted() {
    let (ok, out) = check_config(
        r#"
[policy]
bittorrent = "block"
mse_strictness = "corroborated"
udp_teardown_after_blocks = 50
default_destination = "allow"
[policy.forms]
dht = "log"
lsd = "allow"
[policy.accounts.research]
bittorrent = "log"
forms = { utp = "block" }
[[policy.destinations]]
action = "allow"
cidr = ["10.20.0.0/16", "fd12:3456::/48"]
ports = [443, "8000-8080"]
[[policy.destinations]]
action = "deny"
domains = ["tracker.example", "*.swarm.example"]
[policy.known_destinations]
builtin = true
extra = ["tracker.example.net", "*.swarm.example.org"]
[policy.strikes]
burst_window = "5s"
warn_incidents = 2
suspend_incidents = 3
window = "10m"
suspend_for = "10m"
long_suspend_incidents = 10
long_window = "24h"
long_suspend_for = "1d"

[store]
url = "redis://:change-me@127.0.0.1:6379/0"
redis_prefix = "fleet1"
timeout = "150ms"
purge_interval = "30s"
"#,
    );
    assert!(ok, "{out}");
}

#[test]
fn policy_mistakes_are_located() {
    for (text, line, needle) in [
        (
            "[policy]\n\n[[policy.destinations]]\naction = \"deny\"\ncidr = \"10.0.0.0/40\"\n",
            5,
            "10.0.0.0/40",
        ),
        (
            "[policy.forms]\nbittorent_dht = \"log\"\n",
            2,
            "bittorent_dht",
        ),
        (
            "[[policy.destinations]]\naction = \"permit\"\nports = [80]\n",
            2,
            "permit",
        ),
        (
            "[[policy.destinations]]\naction = \"deny\"\nports = [\"9000-8000\"]\n",
            3,
            "9000-8000",
        ),
        ("[store]\nurl = \"mysql://db\"\n", 2, "mysql://db"),
        (
            "[policy.known_destinations]\nextra = [\"ok.example\", \"bad_name.example\"]\n",
            2,
            "bad_name.example",
        ),
    ] {
        let (ok, out) = check_config(text);
        assert!(!ok, "{text}: accepted");
        assert!(
            out.contains(&format!("swarmwall.toml:{line}:")),
            "{text}: {out}"
        );
        assert!(out.contains(needle), "{text}: {out}");
    }
}
