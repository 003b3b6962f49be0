//! Failure accounting of logins: the lockout marks, the attempt reserved before a password is
//! verified (so that at most `max_failures` guesses per window are ever verified), its
//! release, the start of a lockout and the accounting of a failed login.

use std::net::IpAddr;

use serde_json::json;

use super::{AuthOutcome, Authenticator, RejectReason, Subjects, duration_ms};
use crate::metrics::ReasonLabels;
use crate::store::{Namespace, Reservation};

/// The two counted reservations of an attempt that is being verified in full.
pub(super) struct Reserved {
    /// The failure counted for the account name.
    pub(super) account: Reservation,
    /// The failure counted for the client network.
    pub(super) client: Reservation,
}

/// Which lockout.
#[derive(Clone, Copy)]
pub(super) enum LockScope {
    /// The account name.
    Account,
    /// The client network.
    Client,
}

impl Authenticator {
    /// True while the account name or the client network is locked out.
    pub(super) async fn locked_out(
        &self,
        subjects: &Subjects,
        now_ms: u64,
    ) -> Result<bool, &'static str> {
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
    pub(super) async fn reserve(
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
    pub(super) async fn release(
        &self,
        subjects: &Subjects,
        reserved: &Reserved,
    ) -> Result<(), &'static str> {
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
    pub(super) async fn start_lockout(
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
    pub(super) async fn fail(
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
