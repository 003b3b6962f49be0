use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use swarmwall_core::classify::{BtForm, MseStrictness};

use super::*;
use crate::config::Config;

fn policy(toml: &str, extra: &[&str]) -> DestinationPolicy {
    let config = Config::parse(toml, Path::new("t.toml")).unwrap();
    let extra: Vec<IpNet> = extra.iter().map(|s| s.parse().unwrap()).collect();
    DestinationPolicy::new(&config.policy, &extra).unwrap()
}

fn addr(text: &str, port: u16) -> SocketAddr {
    SocketAddr::new(text.parse::<IpAddr>().unwrap(), port)
}

const LATERAL: PolicyDecision = PolicyDecision::Deny(DenyReason::LateralMovement);
const RULE: PolicyDecision = PolicyDecision::Deny(DenyReason::Rule);

#[test]
fn guard_denies_internal_and_metadata_addresses() {
    let p = policy("", &[]);
    for ip in [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "169.254.169.254",
        "169.254.170.2",
        "168.63.129.16",
        "224.0.0.251",
        "239.255.255.250",
        "255.255.255.255",
        "::",
        "::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        // IPv4 forms hidden in IPv6 addresses
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "::ffff:0:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b:1::1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::",
        "2001:0:7f00:1::",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe", // Teredo client 10.0.0.1 obfuscated
    ] {
        assert_eq!(p.check_address(addr(ip, 80), None), LATERAL, "{ip}");
        assert_eq!(
            p.check_address(addr(ip, 443), Some("innocent.example")),
            LATERAL,
            "{ip} via a name"
        );
    }
}

#[test]
fn guard_allows_public_addresses() {
    let p = policy("", &[]);
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.215.14",
        "172.32.0.1",
        "100.128.0.1",
        "192.169.0.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2a00:1450:4001:80b::200e",
    ] {
        assert_eq!(
            p.check_address(addr(ip, 443), None),
            PolicyDecision::Allow,
            "{ip}"
        );
    }
}

#[test]
fn allow_rule_with_network_lifts_the_guard_only_for_that_network() {
    let p = policy(
        "[[policy.destinations]]\naction = \"allow\"\ncidr = \"10.20.0.0/16\"\nports = [5432]\n",
        &[],
    );
    assert_eq!(
        p.check_address(addr("10.20.1.1", 5432), None),
        PolicyDecision::Allow
    );
    // The same host in IPv4-mapped form is the same rule.
    assert_eq!(
        p.check_address(addr("::ffff:10.20.1.1", 5432), None),
        PolicyDecision::Allow
    );
    assert_eq!(p.check_address(addr("10.20.1.1", 22), None), LATERAL);
    assert_eq!(p.check_address(addr("10.21.1.1", 5432), None), LATERAL);
    assert_eq!(p.check_address(addr("169.254.169.254", 80), None), LATERAL);
}

#[test]
fn domain_allow_rule_does_not_let_a_name_rebind_into_the_guard() {
    let p = policy(
        "[[policy.destinations]]\naction = \"allow\"\ndomains = \"corp.example\"\n",
        &[],
    );
    assert_eq!(
        p.check_domain("db.corp.example", 5432),
        PolicyDecision::Allow
    );
    assert_eq!(
        p.check_address(addr("10.0.0.5", 5432), Some("db.corp.example")),
        LATERAL
    );
    assert_eq!(
        p.check_address(addr("8.8.8.8", 5432), Some("db.corp.example")),
        PolicyDecision::Allow
    );
}

#[test]
fn deny_rules_by_domain_suffix_port_and_network_first_match_wins() {
    let p = policy(
        r#"
[[policy.destinations]]
action = "allow"
cidr = "203.0.113.7"
[[policy.destinations]]
action = "deny"
domains = ["tracker.example", "*.bad.example"]
[[policy.destinations]]
action = "deny"
ports = ["6881-6889"]
[[policy.destinations]]
action = "deny"
cidr = "198.51.0.0/16"
"#,
        &[],
    );
    assert_eq!(p.check_domain("tracker.example", 80), RULE);
    assert_eq!(p.check_domain("Open.Tracker.Example.", 80), RULE);
    assert_eq!(p.check_domain("x.bad.example", 443), RULE);
    assert_eq!(p.check_domain("notbad.example", 443), PolicyDecision::Allow);
    assert_eq!(
        p.check_domain("eviltracker.example", 443),
        PolicyDecision::Allow
    );
    assert_eq!(p.check_domain("anything.example", 6881), RULE);
    assert_eq!(p.check_address(addr("1.2.3.4", 6885), None), RULE);
    assert_eq!(
        p.check_address(addr("1.2.3.4", 6890), None),
        PolicyDecision::Allow
    );
    assert_eq!(p.check_address(addr("198.51.3.4", 443), None), RULE);
    assert_eq!(
        p.check_address(addr("1.2.3.4", 443), Some("www.tracker.example")),
        RULE
    );
    // The first rule (allow a documentation address) wins over the port deny and the guard.
    assert_eq!(
        p.check_address(addr("203.0.113.7", 6881), None),
        PolicyDecision::Allow
    );
}

#[test]
fn command_line_allow_comes_after_rules_and_before_the_guard() {
    let p = policy(
        "[[policy.destinations]]\naction = \"deny\"\ncidr = \"10.9.0.0/16\"\n",
        &["10.0.0.0/8", "::1/128"],
    );
    assert_eq!(
        p.check_address(addr("10.1.1.1", 80), None),
        PolicyDecision::Allow
    );
    assert_eq!(
        p.check_address(addr("::ffff:10.1.1.1", 80), None),
        PolicyDecision::Allow
    );
    assert_eq!(
        p.check_address(addr("::1", 80), None),
        PolicyDecision::Allow
    );
    assert_eq!(p.check_address(addr("10.9.1.1", 80), None), RULE);
    assert_eq!(p.check_address(addr("127.0.0.1", 80), None), LATERAL);
}

#[test]
fn default_destination_deny_is_an_allowlist() {
    let p = policy(
        "[policy]\ndefault_destination = \"deny\"\n[[policy.destinations]]\naction = \"allow\"\ndomains = \"ok.example\"\n",
        &[],
    );
    assert_eq!(
        p.check_address(addr("8.8.8.8", 443), Some("www.ok.example")),
        PolicyDecision::Allow
    );
    assert_eq!(p.check_address(addr("8.8.8.8", 443), None), RULE);
    assert_eq!(p.check_address(addr("127.0.0.1", 443), None), LATERAL);
}

#[test]
fn traffic_actions_follow_precedence() {
    let p = policy(
        r#"
[policy]
mse_strictness = "off"
udp_teardown_after_blocks = 5
[policy.forms]
dht = "log"
lsd = "allow"
[policy.accounts.research]
bittorrent = "log"
forms = { utp = "block" }
[policy.accounts.strict]
forms = { dht = "block" }
"#,
        &[],
    );
    assert_eq!(p.action_for(BtForm::PeerWire, None), TrafficAction::Block);
    assert_eq!(p.action_for(BtForm::Dht, None), TrafficAction::Log);
    assert_eq!(
        p.action_for(BtForm::Lsd, Some("nobody")),
        TrafficAction::Allow
    );
    assert_eq!(
        p.action_for(BtForm::PeerWire, Some("research")),
        TrafficAction::Log
    );
    assert_eq!(
        p.action_for(BtForm::Lsd, Some("research")),
        TrafficAction::Log
    );
    assert_eq!(
        p.action_for(BtForm::Utp, Some("research")),
        TrafficAction::Block
    );
    assert_eq!(
        p.action_for(BtForm::Dht, Some("strict")),
        TrafficAction::Block
    );
    assert_eq!(
        p.action_for(BtForm::Lsd, Some("strict")),
        TrafficAction::Allow
    );
    assert_eq!(p.mse_strictness(), MseStrictness::Off);
    assert_eq!(p.udp_teardown_after_blocks(), Some(5));
    let defaults = policy("", &[]);
    for form in BtForm::ALL {
        assert_eq!(defaults.action_for(form, Some("x")), TrafficAction::Block);
    }
    assert_eq!(defaults.mse_strictness(), MseStrictness::Corroborated);
    assert_eq!(defaults.udp_teardown_after_blocks(), None);
}

#[test]
fn account_record_overrides_come_first() {
    let p = policy(
        r#"
[policy]
bittorrent = "block"
[policy.forms]
dht = "log"
[policy.accounts.research]
bittorrent = "log"
forms = { utp = "block" }
"#,
        &[],
    );
    let record = AccountPolicy::from_json(&serde_json::json!({
        "bittorrent": "allow",
        "forms": {"mse": "block", "dht": null}
    }))
    .unwrap();
    let act = |form, account, record| p.action_with_override(form, account, record);
    // 1. the record's per-form action, 2. the record's `bittorrent`.
    assert_eq!(
        act(BtForm::Mse, Some("research"), Some(&record)),
        TrafficAction::Block
    );
    assert_eq!(
        act(BtForm::Utp, Some("research"), Some(&record)),
        TrafficAction::Allow
    );
    assert_eq!(
        act(BtForm::Dht, Some("nobody"), Some(&record)),
        TrafficAction::Allow
    );
    // 3./4. `[policy.accounts.NAME]`, 5./6. global, when the record says nothing.
    let forms_only =
        AccountPolicy::from_json(&serde_json::json!({"forms": {"lsd": "allow"}})).unwrap();
    assert_eq!(
        act(BtForm::Utp, Some("research"), Some(&forms_only)),
        TrafficAction::Block
    );
    assert_eq!(
        act(BtForm::PeerWire, Some("research"), Some(&forms_only)),
        TrafficAction::Log
    );
    assert_eq!(
        act(BtForm::Dht, Some("nobody"), Some(&forms_only)),
        TrafficAction::Log
    );
    assert_eq!(
        act(BtForm::PeerWire, Some("nobody"), Some(&forms_only)),
        TrafficAction::Block
    );
    assert_eq!(
        act(BtForm::Lsd, Some("nobody"), Some(&forms_only)),
        TrafficAction::Allow
    );
    assert_eq!(
        act(BtForm::PeerWire, Some("nobody"), None),
        TrafficAction::Block
    );
}

#[test]
fn bad_json_overrides_name_the_field() {
    let field = |value: serde_json::Value| AccountPolicy::from_json(&value).unwrap_err().field;
    assert_eq!(
        field(serde_json::json!({"forms": {"xyz": "block"}})),
        "policy.forms.xyz"
    );
    assert_eq!(
        field(serde_json::json!({"forms": {"mse": "drop"}})),
        "policy.forms.mse"
    );
    assert_eq!(
        field(serde_json::json!({"forms": {"mse": 1}})),
        "policy.forms.mse"
    );
    assert_eq!(field(serde_json::json!({"forms": ["mse"]})), "policy.forms");
    assert_eq!(
        field(serde_json::json!({"bittorrent": "yes"})),
        "policy.bittorrent"
    );
    assert_eq!(field(serde_json::json!({"extra": 1})), "policy.extra");
    assert_eq!(field(serde_json::json!("allow")), "policy");
    let long = "k".repeat(10_000);
    let error = AccountPolicy::from_json(&serde_json::json!({ long.clone(): 1 })).unwrap_err();
    assert!(error.field.len() < 100, "{}", error.field);
    let empty = AccountPolicy::from_json(&serde_json::json!({"bittorrent": null})).unwrap();
    assert!(empty.is_empty());
    // The JSON shape round-trips through serde (the store keeps it so).
    let record = AccountPolicy::from_json(&serde_json::json!({
        "bittorrent": "log", "forms": {"known_destination": "allow"}
    }))
    .unwrap();
    let text = serde_json::to_string(&record).unwrap();
    assert_eq!(
        text,
        r#"{"bittorrent":"log","forms":{"known_destination":"allow"}}"#
    );
    assert_eq!(
        serde_json::from_str::<AccountPolicy>(&text).unwrap(),
        record
    );
}

#[test]
fn empty_rule_is_rejected() {
    let config = Config::parse(
        "[[policy.destinations]]\naction = \"deny\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let error = DestinationPolicy::new(&config.policy, &[]).unwrap_err();
    assert!(
        error.to_string().contains("policy.destinations[0]"),
        "{error}"
    );
}

proptest::proptest! {
    /// Every IPv4 address the guard refuses is refused in each IPv6 form that reaches it.
    #[test]
    fn mapped_forms_agree_with_ipv4(raw in proptest::prelude::any::<u32>()) {
        let v4 = Ipv4Addr::from(raw);
        let p = policy("", &[]);
        let plain = p.check_address(SocketAddr::new(IpAddr::V4(v4), 80), None);
        let mapped = p.check_address(SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), 80), None);
        let [a, b, c, d] = v4.octets();
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]));
        let via_nat64 = p.check_address(SocketAddr::new(IpAddr::V6(nat64), 80), None);
        proptest::prop_assert_eq!(plain, mapped);
        if plain != PolicyDecision::Allow {
            proptest::prop_assert_eq!(via_nat64, LATERAL);
        }
    }
}
