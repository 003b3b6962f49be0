//! Tests of the authenticator: credentials, lockout with an injected clock, TOTP windows and
//! replay, country lists and impossible travel with the MaxMind test databases, events.

use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::geo::UnknownLocation;

const CITY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/geoip/GeoIP2-City-Test.mmdb"
);
/// RFC 6238 test secret, base32.
const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
/// A fixed start time (Unix ms), in the middle of a 30-second step.
const T0: u64 = 1_790_000_015_000;
const MINUTE: u64 = 60_000;

const FAST: HashParams = HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn accounts() -> AccountsFile {
    let mut file = AccountsFile::default();
    file.add("alice", b"alice-pw", &FAST).unwrap();
    file.add("bob", b"bob-pw", &FAST).unwrap();
    file.set_totp_secret("bob", Some(SECRET.to_owned()))
        .unwrap();
    file.add("carol", b"carol-pw", &FAST).unwrap();
    file.set_disabled("carol", true).unwrap();
    file.add("dave", b"dave-pw", &FAST).unwrap();
    file.accounts[3].allow_countries = vec!["SE".to_owned()];
    file.add("eve", b"eve-pw", &FAST).unwrap();
    file
}

fn quick_config() -> SecurityConfig {
    SecurityConfig {
        failure_delay: Duration::ZERO,
        failure_delay_max: Duration::ZERO,
        ..SecurityConfig::default()
    }
}

struct Rig {
    auth: Authenticator,
    metrics: Arc<Metrics>,
    audit: AuditLog,
}

fn rig_with(config: SecurityConfig, geo: bool) -> Rig {
    let metrics = Arc::new(Metrics::new());
    let key = PseudonymKey::from_bytes([9; 32]);
    let audit = AuditLog::memory(Some(key.clone()), 100);
    let geo = geo.then(|| Arc::new(GeoDb::open(Path::new(CITY)).unwrap()));
    let auth = Authenticator::with_security(
        accounts(),
        &config,
        Store::memory(),
        audit.clone(),
        Arc::clone(&metrics),
        geo,
        key,
    );
    Rig {
        auth,
        metrics,
        audit,
    }
}

fn rig() -> Rig {
    rig_with(quick_config(), false)
}

fn accepted(name: &str) -> AuthOutcome {
    AuthOutcome::Accepted {
        account: name.to_owned(),
    }
}

fn rejected(reason: RejectReason) -> AuthOutcome {
    AuthOutcome::Rejected(reason)
}

impl Rig {
    async fn login(&self, user: &str, password: &str, client: &str, now_ms: u64) -> AuthOutcome {
        self.auth
            .authenticate_at(user.as_bytes(), password.as_bytes(), ip(client), now_ms)
            .await
    }

    fn metric(&self, needle: &str) -> u64 {
        let text = self.metrics.encode();
        text.lines()
            .find(|line| line.starts_with(needle))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }

    fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.audit
            .recent(1_000)
            .into_iter()
            .filter(|event| event["kind"] == kind)
            .collect()
    }
}

fn code(now_ms: u64) -> String {
    totp::code_at(SECRET, now_ms / 1_000).unwrap()
}

#[tokio::test]
async fn right_and_wrong_passwords() {
    let rig = rig();
    assert_eq!(
        rig.login("alice", "alice-pw", "192.0.2.1", T0).await,
        accepted("alice")
    );
    let wrong_password = rig.login("alice", "nope", "192.0.2.1", T0).await;
    let wrong_user = rig.login("mallory", "alice-pw", "192.0.2.1", T0).await;
    assert_eq!(wrong_password, rejected(RejectReason::BadCredentials));
    assert_eq!(wrong_user, wrong_password);
    assert_eq!(
        rig.login("carol", "carol-pw", "192.0.2.1", T0).await,
        rejected(RejectReason::Disabled)
    );
    assert_eq!(
        rig.metric("swarmwall_auth_results_total{result=\"success\",reason=\"ok\"}"),
        1
    );
    assert_eq!(
        rig.metric("swarmwall_auth_results_total{result=\"failure\",reason=\"bad_credentials\"}"),
        2
    );
    // The unknown name is not in the log; no raw address or password is.
    let failures = rig.events("auth_failure");
    assert_eq!(failures.len(), 3);
    assert_eq!(failures[1]["account"], serde_json::Value::Null);
    let text = serde_json::to_string(&rig.audit.recent(100)).unwrap();
    assert!(!text.contains("192.0.2.1") && !text.contains("alice-pw") && !text.contains("nope"));
}

#[tokio::test]
async fn five_failures_lock_the_account_until_expiry() {
    let rig = rig();
    for n in 0..5 {
        // From five different addresses: only the account counter reaches the limit.
        let client = format!("192.0.2.{}", 10 + n);
        let outcome = rig.login("alice", "bad", &client, T0 + n * MINUTE).await;
        assert_eq!(outcome, rejected(RejectReason::BadCredentials));
    }
    assert_eq!(
        rig.metric("swarmwall_lockouts_total{reason=\"account\"}"),
        1
    );
    assert_eq!(
        rig.metric("swarmwall_lockouts_total{reason=\"client_address\"}"),
        0
    );
    // Locked: even the right password from a fresh address is refused.
    let locked_at = T0 + 4 * MINUTE;
    assert_eq!(
        rig.login("alice", "alice-pw", "192.0.2.99", locked_at + MINUTE)
            .await,
        rejected(RejectReason::LockedOut)
    );
    assert_eq!(
        rig.login(
            "alice",
            "alice-pw",
            "192.0.2.99",
            locked_at + 15 * MINUTE - 1
        )
        .await,
        rejected(RejectReason::LockedOut)
    );
    // Other accounts are unaffected.
    assert_eq!(
        rig.login("eve", "eve-pw", "192.0.2.99", locked_at + MINUTE)
            .await,
        accepted("eve")
    );
    // 15 minutes later it is open again.
    assert_eq!(
        rig.login("alice", "alice-pw", "192.0.2.99", locked_at + 15 * MINUTE)
            .await,
        accepted("alice")
    );
    assert_eq!(rig.events("lockout").len(), 1);
}

#[tokio::test]
async fn failures_outside_the_window_do_not_add_up() {
    let rig = rig();
    for n in 0..8 {
        // One failure every three minutes: never five within ten minutes... until four are.
        let outcome = rig
            .login("alice", "bad", "192.0.2.5", T0 + n * 3 * MINUTE)
            .await;
        assert_eq!(
            outcome,
            rejected(RejectReason::BadCredentials),
            "attempt {n}"
        );
    }
    assert_eq!(
        rig.login("alice", "alice-pw", "192.0.2.5", T0 + 24 * MINUTE)
            .await,
        accepted("alice")
    );
}

#[tokio::test]
async fn one_client_guessing_many_names_is_locked_out() {
    let rig = rig();
    for n in 0..5 {
        let name = format!("user{n}");
        rig.login(&name, "guess", "203.0.113.7", T0).await;
    }
    assert_eq!(
        rig.metric("swarmwall_lockouts_total{reason=\"client_address\"}"),
        1
    );
    assert_eq!(
        rig.login("alice", "alice-pw", "203.0.113.7", T0 + MINUTE)
            .await,
        rejected(RejectReason::LockedOut)
    );
    assert_eq!(
        rig.login("alice", "alice-pw", "203.0.113.8", T0 + MINUTE)
            .await,
        accepted("alice")
    );
    // Unknown names are locked too, exactly like known ones (no enumeration by lockout).
    for _ in 0..5 {
        rig.login("ghost", "x", "198.51.100.1", T0).await;
    }
    assert_eq!(
        rig.login("ghost", "x", "198.51.100.2", T0 + 1).await,
        rejected(RejectReason::LockedOut)
    );
}

#[test]
fn delays_grow_then_cap() {
    let settings = Settings::new(&SecurityConfig::default());
    assert_eq!(settings.delay(1), Duration::ZERO);
    assert_eq!(settings.delay(2), Duration::from_millis(250));
    assert_eq!(settings.delay(3), Duration::from_millis(500));
    assert_eq!(settings.delay(4), Duration::from_millis(1_000));
    assert_eq!(settings.delay(5), Duration::from_secs(2));
    assert_eq!(settings.delay(500), Duration::from_secs(2));
}

#[tokio::test]
async fn totp_code_opens_a_window_for_that_address_only() {
    let rig = rig();
    let home = "192.0.2.20";
    let cafe = "192.0.2.21";
    // The password alone is refused before any code.
    assert_eq!(
        rig.login("bob", "bob-pw", home, T0).await,
        rejected(RejectReason::TotpRequired)
    );
    // A wrong code is refused.
    let wrong = format!(
        "bob-pw{:06}",
        (code(T0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    assert_eq!(
        rig.login("bob", &wrong, home, T0).await,
        rejected(RejectReason::BadCredentials)
    );
    // Password + code: accepted; opens a window for `home`.
    let with_code = format!("bob-pw{}", code(T0));
    assert_eq!(
        rig.login("bob", &with_code, home, T0).await,
        accepted("bob")
    );
    assert_eq!(
        rig.login("bob", "bob-pw", home, T0 + 60 * MINUTE).await,
        accepted("bob")
    );
    // The same string again from `home` (a client reusing its credentials) is fine.
    assert_eq!(
        rig.login("bob", &with_code, home, T0 + 1_000).await,
        accepted("bob")
    );
    // From another address: the password alone is refused, the same code is a replay.
    assert_eq!(
        rig.login("bob", "bob-pw", cafe, T0 + 2_000).await,
        rejected(RejectReason::TotpRequired)
    );
    assert_eq!(
        rig.login("bob", &with_code, cafe, T0 + 2_000).await,
        rejected(RejectReason::TotpReplay)
    );
    assert_eq!(
        rig.metric("swarmwall_auth_results_total{result=\"failure\",reason=\"totp_replay\"}"),
        1
    );
    // A fresh code from `cafe` in the next step opens a second window.
    let later = T0 + 30_000;
    let fresh = format!("bob-pw{}", code(later));
    assert_eq!(rig.login("bob", &fresh, cafe, later).await, accepted("bob"));
    assert_eq!(
        rig.login("bob", "bob-pw", cafe, later + 1).await,
        accepted("bob")
    );
    // The window of `home` closes after 12 hours.
    let twelve_hours = 12 * 60 * MINUTE;
    assert_eq!(
        rig.login("bob", "bob-pw", home, T0 + twelve_hours - 1)
            .await,
        accepted("bob")
    );
    assert_eq!(
        rig.login("bob", "bob-pw", home, T0 + twelve_hours).await,
        rejected(RejectReason::TotpRequired)
    );
}

#[tokio::test]
async fn totp_accepts_one_step_of_clock_skew() {
    let rig = rig();
    let previous_step = format!("bob-pw{}", code(T0 - 30_000));
    assert_eq!(
        rig.login("bob", &previous_step, "192.0.2.30", T0).await,
        accepted("bob")
    );
    let next_step = format!("bob-pw{}", code(T0 + 30_000));
    assert_eq!(
        rig.login("bob", &next_step, "192.0.2.31", T0).await,
        accepted("bob")
    );
    let too_old = format!("bob-pw{}", code(T0 - 90_000));
    assert_eq!(
        rig.login("bob", &too_old, "192.0.2.32", T0).await,
        rejected(RejectReason::BadCredentials)
    );
}

#[tokio::test]
async fn totp_failures_count_towards_lockout() {
    let rig = rig();
    for _ in 0..5 {
        rig.login("bob", "bob-pw000000", "192.0.2.40", T0).await;
    }
    let good = format!("bob-pw{}", code(T0));
    assert_eq!(
        rig.login("bob", &good, "192.0.2.41", T0 + 1).await,
        rejected(RejectReason::LockedOut)
    );
}

#[tokio::test]
async fn country_lists_and_unknown_locations() {
    let config = SecurityConfig {
        deny_countries: vec!["CN".to_owned()],
        ..quick_config()
    };
    let rig = rig_with(config, true);
    assert_eq!(
        rig.login("alice", "alice-pw", "81.2.69.142", T0).await,
        accepted("alice")
    );
    assert_eq!(
        rig.login("alice", "alice-pw", "175.16.199.0", T0 + 24 * 60 * MINUTE)
            .await,
        rejected(RejectReason::GeoDenied)
    );
    // dave may only log in from Sweden.
    assert_eq!(
        rig.login("dave", "dave-pw", "89.160.20.112", T0).await,
        accepted("dave")
    );
    assert_eq!(
        rig.login("dave", "dave-pw", "216.160.83.56", T0 + 24 * 60 * MINUTE)
            .await,
        rejected(RejectReason::GeoDenied)
    );
    // Unknown locations are allowed by default.
    assert_eq!(
        rig.login("alice", "alice-pw", "127.0.0.1", T0).await,
        accepted("alice")
    );
    assert_eq!(rig.metric("swarmwall_geo_denials_total"), 2);
    let denied = rig.events("geo_denied");
    assert_eq!(denied[0]["details"]["country"], "CN");
    // A geo denial is not a password failure: no lockout builds up.
    assert_eq!(rig.events("auth_failure").len(), 0);

    let strict = rig_with(
        SecurityConfig {
            unknown_location: UnknownLocation::Deny,
            ..quick_config()
        },
        true,
    );
    assert_eq!(
        strict.login("alice", "alice-pw", "127.0.0.1", T0).await,
        rejected(RejectReason::GeoDenied)
    );
    assert_eq!(
        strict.login("alice", "alice-pw", "2001:218::1", T0).await,
        accepted("alice")
    );

    // Per-account lists without a database fail closed.
    let no_db = rig_with(quick_config(), false);
    assert_eq!(
        no_db.login("dave", "dave-pw", "89.160.20.112", T0).await,
        rejected(RejectReason::GeoDenied)
    );
}

#[tokio::test]
async fn impossible_travel_alerts_or_denies() {
    let rig = rig_with(quick_config(), true);
    assert_eq!(
        rig.login("alice", "alice-pw", "81.2.69.142", T0).await,
        accepted("alice")
    );
    // Boxford, 90 km away, ten minutes later: plausible.
    assert_eq!(
        rig.login("alice", "alice-pw", "2.125.160.216", T0 + 10 * MINUTE)
            .await,
        accepted("alice")
    );
    assert_eq!(rig.events("impossible_travel").len(), 0);
    // Changchun ten minutes after that: alert only (default), the login goes through.
    assert_eq!(
        rig.login("alice", "alice-pw", "175.16.199.0", T0 + 20 * MINUTE)
            .await,
        accepted("alice")
    );
    assert_eq!(
        rig.metric("swarmwall_impossible_travel_total{reason=\"alert\"}"),
        1
    );
    let event = &rig.events("impossible_travel")[0];
    assert_eq!(event["details"]["action"], "alert");
    assert!(event["details"]["speed_kmh"].as_f64().unwrap() > 1_000.0);

    let deny = rig_with(
        SecurityConfig {
            impossible_travel: TravelAction::Deny,
            ..quick_config()
        },
        true,
    );
    assert_eq!(
        deny.login("alice", "alice-pw", "81.2.69.142", T0).await,
        accepted("alice")
    );
    assert_eq!(
        deny.login("alice", "alice-pw", "175.16.199.0", T0 + 10 * MINUTE)
            .await,
        rejected(RejectReason::ImpossibleTravel)
    );
    assert_eq!(
        deny.metric("swarmwall_impossible_travel_total{reason=\"deny\"}"),
        1
    );
    // Back in London the account works; a day later China is plausible.
    assert_eq!(
        deny.login("alice", "alice-pw", "81.2.69.142", T0 + 11 * MINUTE)
            .await,
        accepted("alice")
    );
    assert_eq!(
        deny.login("alice", "alice-pw", "175.16.199.0", T0 + 24 * 60 * MINUTE)
            .await,
        accepted("alice")
    );
}

#[tokio::test]
async fn watcher_picks_up_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.toml");
    let mut file = AccountsFile::default();
    file.add("alice", b"alice-pw", &FAST).unwrap();
    file.save(&path).unwrap();
    let auth = Authenticator::with_security(
        AccountsFile::load(&path).unwrap(),
        &quick_config(),
        Store::memory(),
        AuditLog::disabled(),
        Arc::new(Metrics::new()),
        None,
        PseudonymKey::random(),
    );
    let watcher = auth.spawn_accounts_watcher_every(path.clone(), Duration::from_millis(20));
    let client = ip("192.0.2.50");
    assert_eq!(
        auth.authenticate(b"erin", b"erin-pw", client).await,
        rejected(RejectReason::BadCredentials)
    );
    file.add("erin", b"erin-pw", &FAST).unwrap();
    file.save(&path).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if auth.account_names().iter().any(|(name, _)| name == "erin") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        auth.authenticate(b"erin", b"erin-pw", client).await,
        accepted("erin")
    );
    // A broken file keeps the old accounts.
    std::fs::write(&path, "[[account]]\nname = ").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while auth.accounts_reload_failures() == 0 {
        assert!(std::time::Instant::now() < deadline, "broken file not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(auth.has_accounts());
    assert_eq!(
        auth.authenticate(b"alice", b"alice-pw", client).await,
        accepted("alice")
    );
    watcher.abort();
}

#[tokio::test]
async fn debug_output_holds_no_secrets() {
    let rig = rig();
    let debug = format!("{:?}", rig.auth);
    assert!(!debug.contains("argon2id"), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[tokio::test]
async fn rotating_ipv6_addresses_inside_a_slash_64_does_not_help() {
    let rig = rig();
    for n in 1..=5 {
        let client = format!("2001:db8:7:7::{n:x}");
        rig.login(&format!("guess{n}"), "x", &client, T0).await;
    }
    assert_eq!(
        rig.login("alice", "alice-pw", "2001:db8:7:7::99", T0 + 1)
            .await,
        rejected(RejectReason::LockedOut)
    );
    assert_eq!(
        rig.login("alice", "alice-pw", "2001:db8:7:8::1", T0 + 1)
            .await,
        accepted("alice")
    );
}

#[tokio::test]
async fn unknown_names_reach_the_store_only_hashed() {
    let store = Store::memory();
    let auth = Authenticator::with_security(
        accounts(),
        &quick_config(),
        store.clone(),
        AuditLog::disabled(),
        Arc::new(Metrics::new()),
        None,
        PseudonymKey::random(),
    );
    let client = ip("192.0.2.77");
    auth.authenticate_at(b"hunter2-typed-as-name", b"x", client, T0)
        .await;
    auth.authenticate_at(b"alice", b"x", client, T0).await;
    let subjects = store
        .subjects(Namespace::AuthFailuresAccount, T0)
        .await
        .unwrap();
    assert_eq!(subjects.len(), 2);
    assert!(subjects.iter().any(|s| s == "alice"));
    assert!(
        subjects.iter().all(|s| !s.contains("hunter2")),
        "{subjects:?}"
    );
    let clients = store
        .subjects(Namespace::AuthFailuresClient, T0)
        .await
        .unwrap();
    assert!(
        clients.iter().all(|s| !s.contains("192.0.2.77")),
        "{clients:?}"
    );
}

#[tokio::test]
async fn account_changes_are_recorded_without_secrets() {
    let rig = rig();
    // Start from a known file (its hashes differ from the rig's: fresh salts).
    let base = accounts();
    rig.auth.reload_accounts(base.clone()).await;
    let before = rig.events("admin_action").len();
    let mut changed = base;
    changed.add("zoe", b"zoe-pw", &FAST).unwrap();
    changed.remove("eve").unwrap();
    changed
        .set_password("alice", b"new-alice-pw", &FAST)
        .unwrap();
    changed.set_disabled("carol", false).unwrap();
    changed
        .set_totp_secret("alice", Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".to_owned()))
        .unwrap();
    rig.auth.reload_accounts(changed.clone()).await;
    let events = rig.events("admin_action");
    assert_eq!(events.len(), before + 1);
    let event = events.last().unwrap();
    let details = &event["details"];
    assert_eq!(details["action"], "accounts_changed");
    assert_eq!(details["added"], serde_json::json!(["zoe"]));
    assert_eq!(details["removed"], serde_json::json!(["eve"]));
    assert_eq!(details["password_changed"], serde_json::json!(["alice"]));
    assert_eq!(details["enabled"], serde_json::json!(["carol"]));
    assert_eq!(details["totp_enrolled"], serde_json::json!(["alice"]));
    let text = event.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("JBSWY3DP"),
        "{text}"
    );
    // Reloading the same file records nothing.
    rig.auth.reload_accounts(changed).await;
    assert_eq!(rig.events("admin_action").len(), before + 1);
    assert_eq!(
        rig.login("zoe", "zoe-pw", "192.0.2.9", T0).await,
        accepted("zoe")
    );
}

mod account_policy;
mod scale;
