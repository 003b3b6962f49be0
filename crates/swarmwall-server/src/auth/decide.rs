//! The login decision ([`Authenticator::decide`]) as named steps; the failure accounting they
//! use (lockout marks, reservations) is in `lockout.rs`.
//!
//! Order of one login (the steps: lockout, credentials and burst, TOTP, geo, travel,
//! success):
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
use super::lockout::{LockScope, Reserved};
use super::turns::PendingAttempt;
use super::{
    AuthOutcome, Authenticator, Credentials, Loaded, Policy, RejectReason, Subjects, duration_ms,
    totp,
};
use crate::geo::{CountryLists, GeoDecision, Location, LoginPoint, TravelAction, travel_speed_kmh};
use crate::metrics::{KindLabels, ReasonLabels};
use crate::store::Namespace;

/// The stored-hash stand-in of a RADIUS login in the verification memory (never a PHC
/// string, so no local password can ever match it).
const RADIUS_VERIFIED: &str = "radius-verified";

/// Why a login step stopped the decision: a final outcome, or a store operation that failed.
enum Stop {
    /// The login is decided (refused) with this outcome.
    Decided(AuthOutcome),
    /// This store operation failed.
    Store(&'static str),
}

impl From<&'static str> for Stop {
    fn from(operation: &'static str) -> Self {
        Self::Store(operation)
    }
}

/// A refusal that ends the decision.
fn refuse(reason: RejectReason) -> Stop {
    Stop::Decided(AuthOutcome::Rejected(reason))
}

/// What every step of one login reads.
struct Login<'a> {
    name: &'a str,
    client: IpAddr,
    now_ms: u64,
    policy: Arc<Policy>,
    subjects: Subjects,
    /// Store subject of the client's TOTP trusted window (`NAME:CLIENT_HASH`); empty for an
    /// account without TOTP (the address is pseudonymised only where needed).
    window_subject: String,
    /// Whether the client is inside a trusted window of a TOTP account.
    in_window: bool,
}

/// The outcome of the credentials step.
struct Verified {
    /// The local account (or the RADIUS stand-in once RADIUS accepted the password).
    account: Option<Arc<Account>>,
    credentials: Credentials,
    /// The counted attempt, when the password was verified in full (not remembered).
    reserved: Option<Reserved>,
    /// This attempt's registration among the attempts queued for the account (`None` when
    /// it did not queue for a turn).
    pending: Option<PendingAttempt>,
}

impl Authenticator {
    /// The whole decision; `Err` names the store operation that failed. The steps run in this
    /// order: [`Self::lockout_step`], [`Self::credentials_step`] (with
    /// [`Self::burst_step`]), [`Self::totp_step`], [`Self::geo_step`],
    /// [`Self::travel_step`], [`Self::success_step`].
    pub(super) async fn decide(
        &self,
        name: &str,
        password: Zeroizing<Vec<u8>>,
        client: IpAddr,
        now_ms: u64,
    ) -> Result<AuthOutcome, &'static str> {
        match self.decide_steps(name, password, client, now_ms).await {
            Ok(account) => Ok(AuthOutcome::Accepted { account }),
            Err(Stop::Decided(outcome)) => Ok(outcome),
            Err(Stop::Store(operation)) => Err(operation),
        }
    }

    /// The steps of [`Self::decide`]; `Ok` is the account logged in.
    async fn decide_steps(
        &self,
        name: &str,
        password: Zeroizing<Vec<u8>>,
        client: IpAddr,
        now_ms: u64,
    ) -> Result<String, Stop> {
        let inner = &self.inner;
        let loaded = inner.accounts.load_full();
        let account = loaded.file.get(name);
        // Names that are not accounts reach the store only as keyed hashes (people type
        // passwords into the name field); they are counted and locked all the same.
        let subjects = Subjects {
            name: match account {
                Some(_) => name.to_owned(),
                None => format!("? {}", inner.key.hash_bytes(name.as_bytes())),
            },
            network: inner.key.hash_network(client),
        };
        let mut login = Login {
            name,
            client,
            now_ms,
            policy: inner.policy.load_full(),
            subjects,
            window_subject: String::new(),
            in_window: false,
        };

        // 1. Lockouts (account name and client network alike, known names or not).
        let mut failures_before = self.lockout_step(&login).await?;
        // 2. Credentials.
        if account.as_ref().is_some_and(|a| a.totp_secret.is_some()) {
            login.window_subject = format!("{name}:{}", inner.key.hash_address(client));
            login.in_window = self.in_trusted_window(&login).await?;
        }
        let verified = self
            .credentials_step(&login, &loaded, account, password)
            .await?;
        if verified.pending.is_some() {
            // It waited for its turn: the count read with the marks may be stale.
            failures_before = None;
        }
        self.burst_step(&login, &verified).await?;
        // 3. TOTP (and disabled accounts).
        let Verified {
            account,
            credentials,
            mut reserved,
            ..
        } = verified;
        let (account, opens_window) = self
            .totp_step(&login, account, credentials, &mut reserved)
            .await?;
        // 4. Country lists.
        let location = self.geo_step(&login, &account, reserved.as_ref()).await?;
        // 5. Impossible travel.
        self.travel_step(&login, location, reserved.as_ref())
            .await?;
        // 6. Success.
        self.success_step(&login, opens_window, reserved.as_ref(), failures_before)
            .await?;
        Ok(account.name.clone())
    }

    /// Refuse while the account name or the client network is locked out. The marks are read
    /// with the account's failure count in one store transaction where the backend can; that
    /// count (when read) serves a login that is remembered at once.
    async fn lockout_step(&self, login: &Login<'_>) -> Result<Option<u32>, Stop> {
        let marks = self
            .inner
            .store
            .login_marks(
                &login.subjects.name,
                &login.subjects.network,
                login.now_ms,
                login.policy.settings.failure_window,
            )
            .await
            .map_err(|_| "login_marks")?;
        if marks.locked_out {
            return Err(refuse(RejectReason::LockedOut));
        }
        Ok(marks.account_failures)
    }

    /// Whether the client is inside a trusted window of this TOTP account (the caller sets
    /// `window_subject` first).
    async fn in_trusted_window(&self, login: &Login<'_>) -> Result<bool, Stop> {
        Ok(self
            .inner
            .store
            .active_until(
                Namespace::TrustedWindow,
                &login.window_subject,
                login.now_ms,
            )
            .await
            .map_err(|_| "active_until")?
            .is_some())
    }

    /// Check the password: the verification memory, else (after this account's and
    /// network's turn, with the attempt reserved) RADIUS or argon2id on the bounded pool.
    async fn credentials_step(
        &self,
        login: &Login<'_>,
        loaded: &Arc<Loaded>,
        mut account: Option<Arc<Account>>,
        password: Zeroizing<Vec<u8>>,
    ) -> Result<Verified, Stop> {
        let inner = &self.inner;
        let settings = &login.policy.settings;
        let (name, in_window, subjects) = (login.name, login.in_window, &login.subjects);
        // With RADIUS the server decides the password and there is no local account: a
        // stand-in (no local settings) is what a remembered or accepted login logs in as.
        let radius = inner.radius.get().cloned();
        let radius_account = radius
            .as_ref()
            .map(|_| Arc::new(Account::new(name, RADIUS_VERIFIED.to_owned())));
        let mut remembered = recall(
            inner,
            settings.verified_ttl,
            account.as_deref().or(radius_account.as_deref()),
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
                return Err(refuse(RejectReason::Overloaded));
            };
            if self.locked_out(subjects, login.now_ms).await? {
                return Err(refuse(RejectReason::LockedOut));
            }
            remembered = recall(
                inner,
                settings.verified_ttl,
                account.as_deref().or(radius_account.as_deref()),
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
                let reserve = self.reserve(subjects, login.client, account.is_some(), login.now_ms);
                let Some(reserved) = reserve.await? else {
                    return Err(refuse(RejectReason::LockedOut));
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
                            self.release(subjects, &reserved).await?;
                            return Err(refuse(RejectReason::AccountsUnavailable));
                        }
                    };
                    (credentials, Some(reserved))
                } else {
                    let job = {
                        let inner = Arc::clone(&self.inner);
                        let account = account.clone();
                        let loaded = Arc::clone(loaded);
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
                            check_credentials(account.as_deref(), &password, in_window, &mut verify)
                        }
                    };
                    let verified = inner.pool.run(settings.hash_queue_timeout, job).await;
                    // Failures are counted already: the next attempt may go.
                    drop(turns.take());
                    match verified {
                        Ok(credentials) => (credentials, Some(reserved)),
                        Err(_overloaded) => {
                            self.release(subjects, &reserved).await?;
                            return Err(refuse(RejectReason::Overloaded));
                        }
                    }
                }
            }
        };
        if radius_account.is_some() && credentials == Credentials::Password {
            account = radius_account;
        }
        Ok(Verified {
            account,
            credentials,
            reserved,
            pending,
        })
    }

    /// A right password that is part of a burst of guesses is refused: guesses of the same
    /// burst may have reached the limit while it was verified, or it queued with attempts
    /// carrying other passwords that, with the failures counted, reach the limit (then the
    /// lockout starts now; a client's own burst carries one password).
    async fn burst_step(&self, login: &Login<'_>, verified: &Verified) -> Result<(), Stop> {
        let settings = &login.policy.settings;
        let good_password = matches!(
            verified.credentials,
            Credentials::Password | Credentials::PasswordAndCode(_)
        );
        let disabled = verified.account.as_ref().is_some_and(|a| a.disabled);
        if !good_password || disabled {
            return Ok(());
        }
        if verified.reserved.is_some() && self.locked_out(&login.subjects, login.now_ms).await? {
            return Err(refuse(RejectReason::LockedOut));
        }
        let Some(pending) = &verified.pending else {
            return Ok(());
        };
        let others = pending.others();
        if others == 0 {
            return Ok(());
        }
        let counted = self
            .inner
            .store
            .count_events(
                Namespace::AuthFailuresAccount,
                &login.subjects.name,
                login.now_ms,
                settings.failure_window,
            )
            .await
            .map_err(|_| "count_events")?;
        let failures = counted.saturating_sub(u32::from(verified.reserved.is_some()));
        let burst = failures.saturating_add(others);
        if burst >= settings.max_failures {
            let known = verified.account.is_some();
            self.start_lockout(
                LockScope::Account,
                &login.subjects,
                burst,
                known,
                login.client,
                login.now_ms,
            )
            .await?;
            return Err(refuse(RejectReason::LockedOut));
        }
        Ok(())
    }

    /// The account logged in and whether this login opens a trusted window; refuses a
    /// disabled account, a TOTP account without its code (outside a window), a bad or
    /// replayed code, and a bad password (the failure is counted).
    async fn totp_step(
        &self,
        login: &Login<'_>,
        account: Option<Arc<Account>>,
        credentials: Credentials,
        reserved: &mut Option<Reserved>,
    ) -> Result<(Arc<Account>, bool), Stop> {
        let (name, now_ms) = (login.name, login.now_ms);
        let good_password = matches!(
            credentials,
            Credentials::Password | Credentials::PasswordAndCode(_)
        );
        let known = account.is_some();
        let disabled = account.as_ref().is_some_and(|a| a.disabled);
        match (account, credentials) {
            (Some(_), _) if disabled && good_password => Err(self
                .counted_failure(login, reserved.take(), true, RejectReason::Disabled)
                .await?),
            (Some(account), Credentials::Password) => match account.totp_secret {
                Some(_) if !login.in_window => Err(self
                    .counted_failure(login, reserved.take(), true, RejectReason::TotpRequired)
                    .await?),
                _ => Ok((account, false)),
            },
            (Some(account), Credentials::PasswordAndCode(code)) => {
                // Only TOTP accounts accept a code; a code for any other account is bad too.
                let step = account
                    .totp_secret
                    .as_deref()
                    .and_then(|secret| totp::check(secret, &code, now_ms / 1_000));
                let Some(step) = step else {
                    return Err(self
                        .counted_failure(login, reserved.take(), true, RejectReason::BadCredentials)
                        .await?);
                };
                // A code is single-use: it is claimed (for longer than it stays valid) every
                // time it is seen, inside a trusted window or not, so a code seen once can
                // never open a window anywhere else.
                let claimed = self
                    .inner
                    .store
                    .claim_once(
                        Namespace::TotpReplay,
                        &format!("{name}:{code}:{step}"),
                        Duration::from_secs(4 * totp::STEP_SECS),
                        now_ms,
                    )
                    .await
                    .map_err(|_| "claim_once")?;
                match (claimed, login.in_window) {
                    // Inside this address's window the password alone would do.
                    (_, true) => Ok((account, false)),
                    (true, false) => Ok((account, true)),
                    (false, false) => Err(self
                        .counted_failure(login, reserved.take(), true, RejectReason::TotpReplay)
                        .await?),
                }
            }
            (_, _) => Err(self
                .counted_failure(login, reserved.take(), known, RejectReason::BadCredentials)
                .await?),
        }
    }

    /// A failed login, counted (see `lockout.rs`): the refusal that ends the decision.
    async fn counted_failure(
        &self,
        login: &Login<'_>,
        reserved: Option<Reserved>,
        known: bool,
        reason: RejectReason,
    ) -> Result<Stop, Stop> {
        let outcome = self
            .fail(
                login.name,
                &login.subjects,
                reserved,
                known,
                login.client,
                reason,
                login.now_ms,
            )
            .await?;
        Ok(Stop::Decided(outcome))
    }

    /// Refuse a login from a country the lists exclude (or an unknown one when they require a
    /// known one); the location found is returned for the travel step.
    async fn geo_step(
        &self,
        login: &Login<'_>,
        account: &Account,
        reserved: Option<&Reserved>,
    ) -> Result<Option<Location>, Stop> {
        let policy = &login.policy;
        let location = policy.geo.as_ref().and_then(|geo| geo.lookup(login.client));
        let account_lists = CountryLists::new(&account.allow_countries, &account.deny_countries);
        let decision = match &policy.geo {
            Some(_) => policy.settings.countries.decide(
                &account_lists,
                location.as_ref().and_then(|l| l.country.as_deref()),
            ),
            // Per-account lists without a database cannot be honoured: fail closed.
            None if account_lists != CountryLists::default() => GeoDecision::DenyUnknown,
            None => GeoDecision::Allow,
        };
        if decision == GeoDecision::Allow {
            return Ok(location);
        }
        let country = match &decision {
            GeoDecision::DenyCountry(country) => country.as_str(),
            _ => "unknown",
        };
        self.inner.metrics.geo_denials.inc();
        self.inner.audit.record_at(
            "geo_denied",
            Some(login.name),
            Some(login.client),
            json!({"country": country}),
            login.now_ms,
        );
        if let Some(reserved) = reserved {
            self.release(&login.subjects, reserved).await?;
        }
        Err(refuse(RejectReason::GeoDenied))
    }

    /// Compare this login's location with the account's previous one: alert on (or refuse)
    /// a speed above `max_speed_kmh`, then remember this location.
    async fn travel_step(
        &self,
        login: &Login<'_>,
        location: Option<Location>,
        reserved: Option<&Reserved>,
    ) -> Result<(), Stop> {
        let inner = &self.inner;
        let settings = &login.policy.settings;
        let (name, now_ms) = (login.name, login.now_ms);
        let point = location.as_ref().and_then(|l| {
            l.coordinates.map(|(lat, lon)| LoginPoint {
                at_ms: now_ms,
                lat,
                lon,
                radius_km: l.accuracy_km,
            })
        });
        let Some(point) = point else {
            return Ok(());
        };
        if settings.travel == TravelAction::Off {
            return Ok(());
        }
        let history = inner
            .store
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
                let distance =
                    crate::geo::haversine_km((previous.lat, previous.lon), (point.lat, point.lon));
                inner.audit.record_at(
                    "impossible_travel",
                    Some(name),
                    Some(login.client),
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
                    if let Some(reserved) = reserved {
                        self.release(&login.subjects, reserved).await?;
                    }
                    return Err(refuse(RejectReason::ImpossibleTravel));
                }
            }
        }
        let entry = serde_json::to_vec(&point).map_err(|_| "push_history")?;
        inner
            .store
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
        Ok(())
    }

    /// Success: the trusted window opened (a new TOTP code outside one), the account's
    /// failures forgotten, the client's reservation released.
    async fn success_step(
        &self,
        login: &Login<'_>,
        opens_window: bool,
        reserved: Option<&Reserved>,
        failures_before: Option<u32>,
    ) -> Result<(), Stop> {
        let store = &self.inner.store;
        let settings = &login.policy.settings;
        let now_ms = login.now_ms;
        if opens_window {
            let until = now_ms.saturating_add(duration_ms(settings.trusted_window));
            store
                .set_until(Namespace::TrustedWindow, &login.window_subject, until)
                .await
                .map_err(|_| "set_until")?;
        }
        let failures = match (reserved, failures_before) {
            (Some(_), _) => 1,
            // Remembered logins write nothing unless there is something to forget.
            (None, Some(counted)) => counted,
            (None, None) => store
                .count_events(
                    Namespace::AuthFailuresAccount,
                    &login.subjects.name,
                    now_ms,
                    settings.failure_window,
                )
                .await
                .map_err(|_| "count_events")?,
        };
        if failures > 0 {
            store
                .clear(Namespace::AuthFailuresAccount, &login.subjects.name)
                .await
                .map_err(|_| "clear")?;
        }
        if let Some(reserved) = reserved {
            store
                .release_event(
                    Namespace::AuthFailuresClient,
                    &login.subjects.network,
                    &reserved.client,
                )
                .await
                .map_err(|_| "release_event")?;
        }
        Ok(())
    }
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
