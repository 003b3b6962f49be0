//! The login decision ([`Authenticator::decide`]) and failure accounting.
//!
//! Order of one login:
//! 1. lockout marks of the account name and the client network;
//! 2. the verification memory: a password that verified recently for an enabled account is
//!    recognised by its keyed MAC (microseconds, no argon2, no store write);
//! 3. otherwise the attempt is *reserved* (counted as a failure in the store, atomically)
//!    before its argon2 verification starts, so that at most `max_failures` guesses per
//!    window are ever verified whatever the parallelism; the verification runs on the bounded
//!    hashing pool and a success re-checks the lockout marks (a burst may have started one
//!    while it was verified) and releases its reservation;
//! 4. TOTP (codes are single-use), country lists, impossible travel, as before.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use zeroize::Zeroizing;

use super::accounts::{self, Account};
use super::{AuthOutcome, Authenticator, Credentials, RejectReason, Subjects, duration_ms, totp};
use crate::geo::{CountryLists, GeoDecision, LoginPoint, TravelAction, travel_speed_kmh};
use crate::metrics::{KindLabels, ReasonLabels};
use crate::store::{Namespace, Reservation};

/// The stored-hash stand-in of a RADIUS login in the verification memory (never a PHC
/// string, so no local password can ever match it).
const RADIUS_VERIFIED: &str = "radius-verified";

/// The two counted reservations of an attempt that is being verified in full.
pub(super) struct Reserved {
    account: Reservation,
    client: Reservation,
}

impl Authenticator {
    /// The whole decision; `Err` names the store operation that failed.
    pub(super) async fn decide(
        &self,
        name: &str,
        password: Zeroizing<Vec<u8>>,
        client: IpAddr,
        now_ms: u64,
    ) -> Result<AuthOutcome, &'static str> {
        let inner = &self.inner;
        let policy = inner.policy.load_full();
        let settings = &policy.settings;
        let store = &inner.store;
        let loaded = inner.accounts.load_full();
        let mut account = loaded.file.find(name).cloned();
        // With RADIUS the server decides the password and there is no local account: a
        // stand-in (no local settings) is what a remembered or accepted login logs in as.
        let radius = inner.radius.get().cloned();
        let radius_account = radius
            .as_ref()
            .map(|_| Account::new(name, RADIUS_VERIFIED.to_owned()));
        // Names that are not accounts reach the store only as keyed hashes (people type
        // passwords into the name field); they are counted and locked all the same.
        let subjects = Subjects {
            name: match account {
                Some(_) => name.to_owned(),
                None => format!("? {}", inner.key.hash_bytes(name.as_bytes())),
            },
            network: inner.key.hash_network(client),
        };

        // 1. Lockouts (account name and client network alike, known names or not), read
        // with the account's failure count in one store transaction where the backend can.
        let marks = store
            .login_marks(
                &subjects.name,
                &subjects.network,
                now_ms,
                settings.failure_window,
            )
            .await
            .map_err(|_| "login_marks")?;
        if marks.locked_out {
            return Ok(AuthOutcome::Rejected(RejectReason::LockedOut));
        }
        // The count read with the marks serves a login that is remembered at once; a login
        // that waits for its turn reads it again at the end.
        let mut failures_before = marks.account_failures;

        // 2. Credentials. (The trusted-window subject pseudonymises the client address: only
        // TOTP accounts need it.)
        let has_totp = account.as_ref().is_some_and(|a| a.totp_secret.is_some());
        let window_subject = if has_totp {
            format!("{name}:{}", inner.key.hash_address(client))
        } else {
            String::new()
        };
        let in_window = has_totp
            && store
                .active_until(Namespace::TrustedWindow, &window_subject, now_ms)
                .await
                .map_err(|_| "active_until")?
                .is_some();
        let mut remembered = recall(
            inner,
            settings.verified_ttl,
            account.as_ref().or(radius_account.as_ref()),
            &password,
            in_window,
        );
        let account_turn = format!("a {}", subjects.name);
        let network_turn = format!("n {}", subjects.network);
        // A remembered password still queues behind attempts being verified for the same
        // account or network: it belongs to their burst and must see the lockout they start.
        if remembered.is_some()
            && (inner.turns.busy(&account_turn) || inner.turns.busy(&network_turn))
        {
            remembered = None;
        }
        let mut turns = None;
        // Attempts that queue are registered by password fingerprint (see below).
        let mut pending = None;
        if remembered.is_none() {
            failures_before = None;
            let fingerprint = inner.verified.fingerprint(name, &password);
            pending = Some(inner.pending.register(&account_turn, fingerprint));
            // Wait for this account's and this network's turn; the attempt before may have
            // locked them out, or verified this very password, so look again once it is ours.
            let wait = settings.hash_queue_timeout;
            let by_account = inner.turns.take(account_turn, wait).await;
            let by_network = match by_account {
                Some(_) => inner.turns.take(network_turn, wait).await,
                None => None,
            };
            let (Some(by_account), Some(by_network)) = (by_account, by_network) else {
                return Ok(AuthOutcome::Rejected(RejectReason::Overloaded));
            };
            if self.locked_out(&subjects, now_ms).await? {
                return Ok(AuthOutcome::Rejected(RejectReason::LockedOut));
            }
            remembered = recall(
                inner,
                settings.verified_ttl,
                account.as_ref().or(radius_account.as_ref()),
                &password,
                in_window,
            );
            if remembered.is_none() {
                turns = Some((by_account, by_network));
            }
        }
        let (credentials, reserved) = match remembered {
            Some(credentials) => {
                count_verification(inner, "remembered");
                (credentials, None)
            }
            None => {
                let reserve = self.reserve(&subjects, client, account.is_some(), now_ms);
                let Some(reserved) = reserve.await? else {
                    return Ok(AuthOutcome::Rejected(RejectReason::LockedOut));
                };
                if let Some(radius) = &radius {
                    let verdict = radius.verify(name.as_bytes(), &password).await;
                    drop(turns.take());
                    let credentials = match verdict {
                        super::radius::RadiusVerdict::Accept => {
                            count_verification(inner, "radius");
                            inner.verified.remember(name, RADIUS_VERIFIED, &password);
                            Credentials::Password
                        }
                        super::radius::RadiusVerdict::Reject => {
                            count_verification(inner, "radius");
                            Credentials::Bad
                        }
                        super::radius::RadiusVerdict::Unavailable => {
                            self.release(&subjects, &reserved).await?;
                            return Ok(AuthOutcome::Rejected(RejectReason::AccountsUnavailable));
                        }
                    };
                    (credentials, Some(reserved))
                } else {
                    let job = {
                        let inner = Arc::clone(&self.inner);
                        let account = account.clone();
                        let loaded = Arc::clone(&loaded);
                        move || {
                            let mut verify = |candidate: &[u8]| {
                                count_verification(&inner, "argon2");
                                let Some(account) = &account else {
                                    let _ =
                                        accounts::verify_password(&loaded.dummy_hash, candidate);
                                    return false;
                                };
                                let good = accounts::verify_password(&account.password, candidate);
                                if good && !account.disabled {
                                    inner.verified.remember(
                                        &account.name,
                                        &account.password,
                                        candidate,
                                    );
                                }
                                good
                            };
                            check_credentials(account.as_ref(), &password, in_window, &mut verify)
                        }
                    };
                    let verified = inner.pool.run(settings.hash_queue_timeout, job).await;
                    // Failures are counted already: the next attempt may go.
                    drop(turns.take());
                    match verified {
                        Ok(credentials) => (credentials, Some(reserved)),
                        Err(_overloaded) => {
                            self.release(&subjects, &reserved).await?;
                            return Ok(AuthOutcome::Rejected(RejectReason::Overloaded));
                        }
                    }
                }
            }
        };
        if radius_account.is_some() && credentials == Credentials::Password {
            account = radius_account;
        }
        let good_password = matches!(
            credentials,
            Credentials::Password | Credentials::PasswordAndCode(_)
        );
        let known = account.is_some();
        let disabled = account.as_ref().is_some_and(|a| a.disabled);
        // Guesses sent in the same burst may have reached the limit while this one was being
        // verified: then it is refused like them.
        if good_password
            && !disabled
            && reserved.is_some()
            && self.locked_out(&subjects, now_ms).await?
        {
            return Ok(AuthOutcome::Rejected(RejectReason::LockedOut));
        }
        // A right password that queued with attempts carrying other passwords is part of a
        // burst of guesses when those, with the failures already counted, reach the limit: it
        // is refused and the lockout starts now (a client's own burst carries one password).
        if good_password
            && !disabled
            && let Some(pending) = &pending
        {
            let others = pending.others();
            if others > 0 {
                let counted = store
                    .count_events(
                        Namespace::AuthFailuresAccount,
                        &subjects.name,
                        now_ms,
                        settings.failure_window,
                    )
                    .await
                    .map_err(|_| "count_events")?;
                let failures = counted.saturating_sub(u32::from(reserved.is_some()));
                let burst = failures.saturating_add(others);
                if burst >= settings.max_failures {
                    self.start_lockout(LockScope::Account, &subjects, burst, known, client, now_ms)
                        .await?;
                    return Ok(AuthOutcome::Rejected(RejectReason::LockedOut));
                }
            }
        }
        let account = match (account, credentials) {
            (Some(_), _) if disabled && good_password => {
                return self
                    .fail(
                        name,
                        &subjects,
                        reserved,
                        true,
                        client,
                        RejectReason::Disabled,
                        now_ms,
                    )
                    .await;
            }
            (Some(account), Credentials::Password) => match account.totp_secret {
                Some(_) if !in_window => {
                    let reason = RejectReason::TotpRequired;
                    return self
                        .fail(name, &subjects, reserved, true, client, reason, now_ms)
                        .await;
                }
                _ => (account, false),
            },
            (Some(account), Credentials::PasswordAndCode(code)) => {
                // Only TOTP accounts accept a code; a code for any other account is bad too.
                let step = account
                    .totp_secret
                    .as_deref()
                    .and_then(|secret| totp::check(secret, &code, now_ms / 1_000));
                let Some(step) = step else {
                    let reason = RejectReason::BadCredentials;
                    return self
                        .fail(name, &subjects, reserved, true, client, reason, now_ms)
                        .await;
                };
                // A code is single-use: it is claimed (for longer than it stays valid) every
                // time it is seen, inside a trusted window or not, so a code seen once can
                // never open a window anywhere else.
                let claimed = store
                    .claim_once(
                        Namespace::TotpReplay,
                        &format!("{name}:{code}:{step}"),
                        Duration::from_secs(4 * totp::STEP_SECS),
                        now_ms,
                    )
                    .await
                    .map_err(|_| "claim_once")?;
                match (claimed, in_window) {
                    // Inside this address's window the password alone would do.
                    (_, true) => (account, false),
                    (true, false) => (account, true),
                    (false, false) => {
                        let reason = RejectReason::TotpReplay;
                        return self
                            .fail(name, &subjects, reserved, true, client, reason, now_ms)
                            .await;
                    }
                }
            }
            (_, _) => {
                let reason = RejectReason::BadCredentials;
                return self
                    .fail(name, &subjects, reserved, known, client, reason, now_ms)
                    .await;
            }
        };
        let (account, opens_window) = account;

        // 3. Country lists.
        let location = policy.geo.as_ref().and_then(|geo| geo.lookup(client));
        let account_lists = CountryLists::new(&account.allow_countries, &account.deny_countries);
        let decision = match &policy.geo {
            Some(_) => settings.countries.decide(
                &account_lists,
                location.as_ref().and_then(|l| l.country.as_deref()),
            ),
            // Per-account lists without a database cannot be honoured: fail closed.
            None if account_lists != CountryLists::default() => GeoDecision::DenyUnknown,
            None => GeoDecision::Allow,
        };
        if decision != GeoDecision::Allow {
            let country = match &decision {
                GeoDecision::DenyCountry(country) => country.as_str(),
                _ => "unknown",
            };
            inner.metrics.geo_denials.inc();
            inner.audit.record_at(
                "geo_denied",
                Some(name),
                Some(client),
                json!({"country": country}),
                now_ms,
            );
            if let Some(reserved) = &reserved {
                self.release(&subjects, reserved).await?;
            }
            return Ok(AuthOutcome::Rejected(RejectReason::GeoDenied));
        }

        // 4. Impossible travel.
        let point = location.as_ref().and_then(|l| {
            l.coordinates.map(|(lat, lon)| LoginPoint {
                at_ms: now_ms,
                lat,
                lon,
                radius_km: l.accuracy_km,
            })
        });
        if let Some(point) = point
            && settings.travel != TravelAction::Off
        {
            let history = store
                .history(Namespace::LoginHistory, name, now_ms)
                .await
                .map_err(|_| "history")?;
            let previous = history
                .last()
                .and_then(|entry| serde_json::from_slice::<LoginPoint>(entry).ok());
            if let Some(previous) = previous {
                let speed = travel_speed_kmh(&previous, &point);
                if speed > settings.max_speed_kmh {
                    let deny = settings.travel == TravelAction::Deny;
                    let action = if deny { "deny" } else { "alert" };
                    inner
                        .metrics
                        .impossible_travel
                        .get_or_create(&ReasonLabels { reason: action })
                        .inc();
                    let distance = crate::geo::haversine_km(
                        (previous.lat, previous.lon),
                        (point.lat, point.lon),
                    );
                    inner.audit.record_at(
                        "impossible_travel",
                        Some(name),
                        Some(client),
                        json!({
                            "action": action,
                            "speed_kmh": speed.is_finite().then(|| speed.round()),
                            "distance_km": distance.round(),
                            "elapsed_s": now_ms.saturating_sub(previous.at_ms) / 1_000,
                            "country": location.as_ref().and_then(|l| l.country.clone()),
                        }),
                        now_ms,
                    );
                    if deny {
                        if let Some(reserved) = &reserved {
                            self.release(&subjects, reserved).await?;
                        }
                        return Ok(AuthOutcome::Rejected(RejectReason::ImpossibleTravel));
                    }
                }
            }
            let entry = serde_json::to_vec(&point).map_err(|_| "push_history")?;
            store
                .push_history(
                    Namespace::LoginHistory,
                    name,
                    &entry,
                    settings.history_len,
                    settings.history_ttl,
                    now_ms,
                )
                .await
                .map_err(|_| "push_history")?;
        }

        // 5. Success: the account's failures are forgotten, the client's reservation released.
        if opens_window {
            let until = now_ms.saturating_add(duration_ms(settings.trusted_window));
            store
                .set_until(Namespace::TrustedWindow, &window_subject, until)
                .await
                .map_err(|_| "set_until")?;
        }
        let failures = match (&reserved, failures_before) {
            (Some(_), _) => 1,
            // Remembered logins write nothing unless there is something to forget.
            (None, Some(counted)) => counted,
            (None, None) => store
                .count_events(
                    Namespace::AuthFailuresAccount,
                    &subjects.name,
                    now_ms,
                    settings.failure_window,
                )
                .await
                .map_err(|_| "count_events")?,
        };
        if failures > 0 {
            store
                .clear(Namespace::AuthFailuresAccount, &subjects.name)
                .await
                .map_err(|_| "clear")?;
        }
        if let Some(reserved) = &reserved {
            store
                .release_event(
                    Namespace::AuthFailuresClient,
                    &subjects.network,
                    &reserved.client,
                )
                .await
                .map_err(|_| "release_event")?;
        }
        Ok(AuthOutcome::Accepted {
            account: account.name.clone(),
        })
    }

    /// True while the account name or the client network is locked out.
    async fn locked_out(&self, subjects: &Subjects, now_ms: u64) -> Result<bool, &'static str> {
        let store = &self.inner.store;
        let account = store
            .active_until(Namespace::LockoutAccount, &subjects.name, now_ms)
            .await
            .map_err(|_| "active_until")?;
        if account.is_some() {
            return Ok(true);
        }
        let client = store
            .active_until(Namespace::LockoutClient, &subjects.network, now_ms)
            .await
            .map_err(|_| "active_until")?;
        Ok(client.is_some())
    }

    /// Count the attempt for the account name and the client network before it is verified.
    /// `None` (locked out) when either is already past `max_failures` in the window; the
    /// lockout then starts at once, so attempts still in flight are refused too.
    async fn reserve(
        &self,
        subjects: &Subjects,
        client: IpAddr,
        known: bool,
        now_ms: u64,
    ) -> Result<Option<Reserved>, &'static str> {
        let store = &self.inner.store;
        let settings = &self.inner.policy.load().settings;
        let (window, limit) = (settings.failure_window, settings.max_failures);
        let account = store
            .reserve_event(
                Namespace::AuthFailuresAccount,
                &subjects.name,
                now_ms,
                window,
            )
            .await
            .map_err(|_| "reserve_event")?;
        if !account.within(limit) {
            self.start_lockout(
                LockScope::Account,
                subjects,
                account.count,
                known,
                client,
                now_ms,
            )
            .await?;
            return Ok(None);
        }
        let network = store
            .reserve_event(
                Namespace::AuthFailuresClient,
                &subjects.network,
                now_ms,
                window,
            )
            .await
            .map_err(|_| "reserve_event")?;
        if !network.within(limit) {
            store
                .release_event(Namespace::AuthFailuresAccount, &subjects.name, &account)
                .await
                .map_err(|_| "release_event")?;
            self.start_lockout(
                LockScope::Client,
                subjects,
                network.count,
                known,
                client,
                now_ms,
            )
            .await?;
            return Ok(None);
        }
        Ok(Some(Reserved {
            account,
            client: network,
        }))
    }

    /// Give back both reservations of an attempt that did not fail (refused for another
    /// reason before or after its verification).
    async fn release(&self, subjects: &Subjects, reserved: &Reserved) -> Result<(), &'static str> {
        let store = &self.inner.store;
        store
            .release_event(
                Namespace::AuthFailuresAccount,
                &subjects.name,
                &reserved.account,
            )
            .await
            .map_err(|_| "release_event")?;
        store
            .release_event(
                Namespace::AuthFailuresClient,
                &subjects.network,
                &reserved.client,
            )
            .await
            .map_err(|_| "release_event")
    }

    /// Lock the account name or the client network out for `lockout_duration`, counted and
    /// recorded.
    async fn start_lockout(
        &self,
        scope: LockScope,
        subjects: &Subjects,
        failures: u32,
        known: bool,
        client: IpAddr,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        let inner = &self.inner;
        let settings = &inner.policy.load().settings;
        let until = now_ms.saturating_add(duration_ms(settings.lockout));
        let (namespace, subject, label) = match scope {
            LockScope::Account => (Namespace::LockoutAccount, subjects.name.as_str(), "account"),
            LockScope::Client => (
                Namespace::LockoutClient,
                subjects.network.as_str(),
                "client_address",
            ),
        };
        // Only the attempt that starts the lockout reports it; later ones just refresh it.
        let already = inner
            .store
            .active_until(namespace, subject, now_ms)
            .await
            .map_err(|_| "active_until")?
            .is_some();
        inner
            .store
            .set_until(namespace, subject, until)
            .await
            .map_err(|_| "set_until")?;
        if already {
            return Ok(());
        }
        inner
            .metrics
            .lockouts
            .get_or_create(&ReasonLabels { reason: label })
            .inc();
        // Unknown names are not written to the log: users sometimes type a password there.
        let logged_name = known.then_some(subjects.name.as_str());
        inner.audit.record_at(
            "lockout",
            logged_name,
            Some(client),
            json!({
                "scope": label,
                "failures": failures,
                "until_ms": until,
                "known_account": known,
            }),
            now_ms,
        );
        Ok(())
    }

    /// Count a failed login for the account name and the client address (already counted
    /// when the attempt was reserved), lock either out at the threshold, record the event, and
    /// answer after the growing delay.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        name: &str,
        subjects: &Subjects,
        reserved: Option<Reserved>,
        known: bool,
        client: IpAddr,
        reason: RejectReason,
        now_ms: u64,
    ) -> Result<AuthOutcome, &'static str> {
        let inner = &self.inner;
        let policy = inner.policy.load_full();
        let settings = &policy.settings;
        let store = &inner.store;
        let window = settings.failure_window;
        let (by_account, by_client) = match reserved {
            Some(reserved) => (reserved.account.count, reserved.client.count),
            None => {
                let by_account = store
                    .record_event(
                        Namespace::AuthFailuresAccount,
                        &subjects.name,
                        now_ms,
                        window,
                    )
                    .await
                    .map_err(|_| "record_event")?;
                let by_client = store
                    .record_event(
                        Namespace::AuthFailuresClient,
                        &subjects.network,
                        now_ms,
                        window,
                    )
                    .await
                    .map_err(|_| "record_event")?;
                (by_account, by_client)
            }
        };
        // Unknown names are not written to the log: users sometimes type a password there.
        let logged_name = known.then_some(name);
        inner.audit.record_at(
            "auth_failure",
            logged_name,
            Some(client),
            json!({"reason": reason.as_str(), "known_account": known}),
            now_ms,
        );
        for (hit, scope) in [
            (by_account, LockScope::Account),
            (by_client, LockScope::Client),
        ] {
            if hit >= settings.max_failures {
                self.start_lockout(scope, subjects, hit, known, client, now_ms)
                    .await?;
            }
        }
        let delay = settings.delay(by_account.max(by_client));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(AuthOutcome::Rejected(reason))
    }
}

/// Which lockout.
#[derive(Clone, Copy)]
enum LockScope {
    Account,
    Client,
}

/// The credentials when `password` was verified recently for `account` (its keyed MAC is
/// remembered); `None` otherwise. A disabled account never uses the memory: its login costs
/// what a wrong password costs, so the two cannot be told apart by time.
fn recall(
    inner: &super::Inner,
    lifetime: Duration,
    account: Option<&Account>,
    password: &[u8],
    in_window: bool,
) -> Option<Credentials> {
    let account = account.filter(|a| !a.disabled)?;
    let mut matches = |candidate: &[u8]| {
        inner
            .verified
            .matches(&account.name, &account.password, candidate, lifetime)
    };
    match check_credentials(Some(account), password, in_window, &mut matches) {
        Credentials::Bad => None,
        found => Some(found),
    }
}

/// Count one password check (`auth_verifications{kind}`).
fn count_verification(inner: &super::Inner, kind: &'static str) {
    inner
        .metrics
        .auth_verifications
        .get_or_create(&KindLabels { kind })
        .inc();
}

/// Decide what `input` is for `account` (`None`: unknown name) with `verify` checking one
/// candidate password: one check in the usual cases, two only for a TOTP account inside a
/// trusted window whose input is not the bare password. An unknown name still costs one
/// check (the caller's `verify` runs it against a dummy hash).
pub(super) fn check_credentials(
    account: Option<&Account>,
    input: &[u8],
    in_window: bool,
    verify: &mut dyn FnMut(&[u8]) -> bool,
) -> Credentials {
    let Some(account) = account else {
        let _ = verify(input);
        return Credentials::Bad;
    };
    if account.totp_secret.is_none() {
        return if verify(input) {
            Credentials::Password
        } else {
            Credentials::Bad
        };
    }
    let split = totp::split_code(input);
    if in_window && verify(input) {
        return Credentials::Password;
    }
    match split {
        Some((password, code)) if verify(password) => Credentials::PasswordAndCode(code.to_owned()),
        Some(_) => Credentials::Bad,
        None if !in_window && verify(input) => Credentials::Password,
        None => Credentials::Bad,
    }
}
