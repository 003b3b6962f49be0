//! Name lookups for CONNECT and UDP ASSOCIATE, bounded per client and in total.
//!
//! A lookup is `getaddrinfo` on a thread of the runtime's blocking pool, and it keeps that
//! thread until the system resolver gives up (its own timeouts and attempts; `connect_timeout`
//! only stops the session waiting, not the thread). The same pool runs the argon2 logins.
//! Unbounded, one customer asking for names a silent resolver never answers filled both
//! pools' 512 threads each and every other customer's login waited behind them (measured:
//! 9.8 s instead of 0.03 s). So a lookup holds two slots for as long as its thread works: one
//! of [`LOOKUPS_PER_CLIENT_MAX`] for its client (account, or client network when there are no
//! accounts; past it the lookup fails at once) and one of [`LOOKUPS_IN_FLIGHT_MAX`] for the
//! process (past it the lookup waits, within the caller's timeout).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use swarmwall_core::classify::ClientKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::CountedSlots;

/// Lookups running at once in the whole process (well below a runtime's 512 blocking
/// threads, which logins need too).
pub(crate) const LOOKUPS_IN_FLIGHT_MAX: usize = 64;
/// Lookups running at once for one client.
pub(crate) const LOOKUPS_PER_CLIENT_MAX: u32 = 8;
/// Most addresses kept from one lookup.
const MAX_ADDRESSES: usize = 4;

/// Why a lookup gave no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// The client already has [`LOOKUPS_PER_CLIENT_MAX`] lookups running.
    ClientBusy,
    /// The name has no address, or the resolver failed.
    NotFound,
}

/// The lookup slots of the process.
#[derive(Debug)]
pub(crate) struct Lookups {
    in_flight: Arc<Semaphore>,
    per_client: CountedSlots<ClientKey>,
}

impl Default for Lookups {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT_MAX)),
            per_client: CountedSlots::default(),
        }
    }
}

impl Lookups {
    /// Up to four addresses of `name` for `port`, as the system resolver gives them. Both
    /// slots stay taken until the resolver returns, even when the caller stopped waiting.
    pub(crate) async fn addresses(
        &self,
        client: ClientKey,
        name: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, LookupError> {
        let client_slot = self
            .per_client
            .acquire(client, LOOKUPS_PER_CLIENT_MAX)
            .ok_or(LookupError::ClientBusy)?;
        let permit: OwnedSemaphorePermit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_closed| LookupError::NotFound)?;
        let host = name.to_owned();
        let lookup = tokio::task::spawn_blocking(move || {
            let _slots = (client_slot, permit);
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|addresses| addresses.take(MAX_ADDRESSES).collect::<Vec<_>>())
        });
        match lookup.await {
            Ok(Ok(addresses)) if !addresses.is_empty() => Ok(addresses),
            _ => Err(LookupError::NotFound),
        }
    }

    /// Lookups running now (all clients).
    #[cfg(test)]
    fn running(&self) -> usize {
        LOOKUPS_IN_FLIGHT_MAX - self.in_flight.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_past_its_share_fails_at_once_and_slots_come_back() {
        let lookups = Lookups::default();
        let busy = ClientKey(1);
        let slots: Vec<_> = (0..LOOKUPS_PER_CLIENT_MAX)
            .map(|_| {
                lookups
                    .per_client
                    .acquire(busy, LOOKUPS_PER_CLIENT_MAX)
                    .expect("within the share")
            })
            .collect();
        assert_eq!(
            lookups.addresses(busy, "localhost", 80).await,
            Err(LookupError::ClientBusy)
        );
        // Another client is not affected.
        let other = lookups.addresses(ClientKey(2), "localhost", 80).await;
        assert!(other.is_ok_and(|addresses| addresses.iter().all(|a| a.port() == 80)));
        drop(slots);
        assert!(lookups.addresses(busy, "localhost", 80).await.is_ok());
        assert_eq!(lookups.running(), 0);
        assert_eq!(lookups.per_client.keys(), 0);
    }

    #[tokio::test]
    async fn a_name_without_address_is_not_found() {
        let lookups = Lookups::default();
        assert_eq!(
            lookups.addresses(ClientKey(3), "", 80).await,
            Err(LookupError::NotFound)
        );
        assert_eq!(lookups.running(), 0);
    }
}
