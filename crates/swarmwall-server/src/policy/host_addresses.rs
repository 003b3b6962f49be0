//! The proxy host's own addresses, for the lateral-movement guard: connecting to the node's own
//! public address would reach every service bound to `0.0.0.0` (metrics, Redis, SSH).
//!
//! The list comes from `getifaddrs(3)` and is re-read when older than [`REFRESH_INTERVAL`] at
//! the moment a destination is checked, so an address added to or removed from an interface
//! is seen within that time without a restart. One thread re-reads at a time; the others use
//! the previous list meanwhile.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

/// How old the list may get before a check re-reads it.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// One reading of the interface addresses.
#[derive(Debug)]
struct Snapshot {
    addresses: Vec<IpAddr>,
    read_at: Instant,
}

/// The process-wide list (interfaces belong to the host, not to a configuration).
static HOST: LazyLock<HostAddresses> = LazyLock::new(HostAddresses::read_now);

/// The host's interface addresses, refreshed on use.
#[derive(Debug)]
struct HostAddresses {
    current: ArcSwap<Snapshot>,
    refreshing: Mutex<()>,
}

impl HostAddresses {
    fn read_now() -> Self {
        Self {
            current: ArcSwap::from_pointee(read_snapshot()),
            refreshing: Mutex::new(()),
        }
    }

    fn addresses(&self) -> Arc<Snapshot> {
        let snapshot = self.current.load_full();
        if snapshot.read_at.elapsed() < REFRESH_INTERVAL {
            return snapshot;
        }
        // Only one re-read at a time; whoever finds it busy uses the list it has.
        if let Ok(_guard) = self.refreshing.try_lock() {
            let fresh = Arc::new(read_snapshot());
            self.current.store(Arc::clone(&fresh));
            return fresh;
        }
        snapshot
    }
}

fn read_snapshot() -> Snapshot {
    Snapshot {
        addresses: interface_addresses(),
        read_at: Instant::now(),
    }
}

/// Every address configured on the host's interfaces (IPv4-mapped forms unwrapped). Empty when
/// the list cannot be read (logged).
pub fn interface_addresses() -> Vec<IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(interfaces) => {
            let mut found: Vec<IpAddr> = interfaces
                .filter_map(|interface| {
                    let address = interface.address?;
                    if let Some(v4) = address.as_sockaddr_in() {
                        Some(IpAddr::V4(v4.ip()))
                    } else {
                        address
                            .as_sockaddr_in6()
                            .map(|v6| IpAddr::V6(v6.ip()).to_canonical())
                    }
                })
                .collect();
            found.sort_unstable();
            found.dedup();
            found
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list the host's interface addresses");
            Vec::new()
        }
    }
}

/// True when `ip` (already canonical) is one of the host's own addresses.
pub fn is_host_address(ip: IpAddr) -> bool {
    HOST.addresses().addresses.binary_search(&ip).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_one_of_ours_and_a_documentation_address_is_not() {
        let ours = interface_addresses();
        assert!(ours.contains(&IpAddr::from([127, 0, 0, 1])), "{ours:?}");
        assert!(is_host_address(IpAddr::from([127, 0, 0, 1])));
        assert!(!is_host_address(IpAddr::from([192, 0, 2, 200])));
    }
}
