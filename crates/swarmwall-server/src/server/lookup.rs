//! Name lookups for CONNECT and UDP ASSOCIATE, bounded per client and in total.
//!
//! A lookup is `getaddrinfo` on a thread of the runtime's blocking pool, and it keeps that
//! thread until the system resolver gives up (its own timeouts and attempts; `connect_timeout`
//! only stops the session waiting, not the thread). The same pool runs the argon2 logins.
//! Unbounded, one customer asking for names a silent resolver never answers filled both
//! pools' 512 threads each and every other customer's login waited behind them (measured:
//! 9.8 s instead of 0.03 s). So a lookup holds two permits for as long as its thread works:
//! one of [`LOOKUPS_PER_CLIENT_MAX`] of its client (account, or client network when there are
//! no accounts) and one of [`LOOKUPS_IN_FLIGHT_MAX`] of the process. Past either, a lookup
//! waits its turn within the caller's timeout: a browser's burst of names is only queued for
//! a moment, while a client whose names never resolve waits behind its own lookups.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};

use swarmwall_core::classify::ClientKey;
use tokio::sync::Semaphore;

/// Lookups running at once in the whole process (half a runtime's 512 blocking threads: the
/// other half stays for logins).
pub(crate) const LOOKUPS_IN_FLIGHT_MAX: usize = 256;
/// Lookups running at once for one client.
pub(crate) const LOOKUPS_PER_CLIENT_MAX: usize = 16;
/// Most addresses kept from one lookup.
const MAX_ADDRESSES: usize = 4;
/// Clients remembered before the idle ones are swept out (the threshold doubles while most
/// of them are busy).
const SWEEP_AT: usize = 4096;

/// The name has no address, the resolver failed, or the caller's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotFound;

/// The lookup permits of the process.
#[derive(Debug)]
pub(crate) struct Lookups {
    in_flight: Arc<Semaphore>,
    clients: Mutex<Clients>,
}

/// Each client's permits, kept while the client has a lookup running or waiting.
#[derive(Debug)]
struct Clients {
    semaphores: HashMap<ClientKey, Arc<Semaphore>>,
    sweep_at: usize,
}

impl Default for Lookups {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT_MAX)),
            clients: Mutex::new(Clients {
                semaphores: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
        }
    }
}

impl Lookups {
    /// Up to four addresses of `name` for `port`, as the system resolver gives them. Both
    /// permits stay taken until the resolver returns, even when the caller stopped waiting.
    pub(crate) async fn addresses(
        &self,
        client: ClientKey,
        name: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, NotFound> {
        let client_permit = self
            .client(client)
            .acquire_owned()
            .await
            .map_err(|_closed| NotFound)?;
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_closed| NotFound)?;
        let host = name.to_owned();
        let lookup = tokio::task::spawn_blocking(move || {
            let _permits = (client_permit, permit);
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|addresses| addresses.take(MAX_ADDRESSES).collect::<Vec<_>>())
        });
        match lookup.await {
            Ok(Ok(addresses)) if !addresses.is_empty() => Ok(addresses),
            _ => Err(NotFound),
        }
    }

    /// The semaphore of `client` (made on first use); idle clients are swept out first when
    /// the map has grown to its threshold.
    fn client(&self, client: ClientKey) -> Arc<Semaphore> {
        let mut clients = self.lock();
        if clients.semaphores.len() >= clients.sweep_at {
            // Only the map holds an idle client's semaphore: no permit out, nobody waiting.
            clients
                .semaphores
                .retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
            clients.sweep_at = (clients.semaphores.len() * 2).max(SWEEP_AT);
        }
        let semaphore = clients
            .semaphores
            .entry(client)
            .or_insert_with(|| Arc::new(Semaphore::new(LOOKUPS_PER_CLIENT_MAX)));
        Arc::clone(semaphore)
    }

    fn lock(&self) -> MutexGuard<'_, Clients> {
        self.clients
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Lookups running now (all clients).
    #[cfg(test)]
    fn running(&self) -> usize {
        LOOKUPS_IN_FLIGHT_MAX - self.in_flight.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_client_past_its_share_waits_and_others_do_not() {
        let lookups = Lookups::default();
        let busy = ClientKey(1);
        let taken = lookups
            .client(busy)
            .acquire_many_owned(LOOKUPS_PER_CLIENT_MAX as u32)
            .await
            .unwrap();
        let waiting = tokio::time::timeout(
            Duration::from_millis(200),
            lookups.addresses(busy, "localhost", 80),
        )
        .await;
        assert!(waiting.is_err(), "past its share a client waits");
        // Another client is not affected.
        let other = lookups.addresses(ClientKey(2), "localhost", 80).await;
        assert!(other.is_ok_and(|addresses| addresses.iter().all(|a| a.port() == 80)));
        drop(taken);
        assert!(lookups.addresses(busy, "localhost", 80).await.is_ok());
        assert_eq!(lookups.running(), 0);
    }

    #[tokio::test]
    async fn idle_clients_are_swept_and_busy_ones_kept() {
        let lookups = Lookups::default();
        let busy = lookups.client(ClientKey(0)).acquire_owned().await.unwrap();
        for key in 1..SWEEP_AT as u64 {
            lookups.client(ClientKey(key));
        }
        assert_eq!(lookups.lock().semaphores.len(), SWEEP_AT);
        lookups.client(ClientKey(u64::MAX));
        let clients = lookups.lock();
        assert_eq!(
            clients.semaphores.len(),
            2,
            "the busy client and the new one"
        );
        assert!(clients.semaphores.contains_key(&ClientKey(0)));
        drop(clients);
        drop(busy);
    }

    #[tokio::test]
    async fn a_name_without_address_is_not_found() {
        let lookups = Lookups::default();
        assert_eq!(lookups.addresses(ClientKey(3), "", 80).await, Err(NotFound));
        assert_eq!(lookups.running(), 0);
    }
}
