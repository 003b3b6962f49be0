//! Descriptor budget: the proxy never takes the last descriptors of the process, so the admin
//! listener (`/metrics`, the API) still answers when customers exhaust the limit, which is
//! exactly when the operator needs it.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit and the top [`reserve_for`]
//! descriptors are set aside. Linux hands out the lowest free descriptor number, so a socket
//! the proxy gets with a number inside the reserve means every lower number is taken: the
//! proxy closes it at once and treats the attempt as "too many open files" (accepted
//! clients: `sessions_refused{reason="fd_reserve"}`; outbound sockets, UDP and BIND sockets
//! and splice pipes: the usual failure path). Everything else (the admin listener and its
//! connections, the store, the audit log) may still use the reserve.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpSocket, TcpStream};

/// The first descriptor number the proxy must not keep (`u64::MAX`: no reserve set up).
static CEILING: AtomicU64 = AtomicU64::new(u64::MAX);

/// Descriptors one relayed session needs at least (client and target socket; splice pipes
/// come on top and fall back to copying when none can be made).
pub const FDS_PER_SESSION: u64 = 2;

/// Descriptors the process needs besides its sessions (runtime, store, logs, listeners).
const BASE_FDS: u64 = 64;

/// The open-file limits after [`init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimits {
    /// Soft limit before start.
    pub soft_before: u64,
    /// Soft limit now.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
    /// Descriptors kept back from the proxy.
    pub reserve: u64,
}

impl FdLimits {
    /// Sessions the soft limit can carry ([`FDS_PER_SESSION`] each, after the reserve and
    /// the process's own descriptors).
    pub fn session_capacity(&self) -> u64 {
        self.soft.saturating_sub(self.reserve + BASE_FDS) / FDS_PER_SESSION
    }
}

/// How many descriptors to keep back under a soft limit of `soft`: 1/16 of it, at least 16
/// and at most 256.
pub fn reserve_for(soft: u64) -> u64 {
    (soft / 16).clamp(16, 256)
}

/// Raise the soft open-file limit to the hard limit and set up the reserve. Logs the change,
/// and warns when `max_sessions` cannot be honoured with the limit there is.
pub fn init(max_sessions: u32) -> io::Result<FdLimits> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft_before, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let mut soft = soft_before;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                soft = hard;
                tracing::info!(from = soft_before, to = hard, "raised the open-file limit");
            }
            Err(error) => {
                tracing::warn!(%error, soft, hard, "cannot raise the open-file limit");
            }
        }
    }
    let reserve = reserve_for(soft);
    CEILING.store(soft.saturating_sub(reserve), Ordering::Relaxed);
    let limits = FdLimits {
        soft_before,
        soft,
        hard,
        reserve,
    };
    if u64::from(max_sessions) > limits.session_capacity() {
        tracing::warn!(
            max_sessions,
            open_file_limit = soft,
            sessions_possible = limits.session_capacity(),
            "server.max_sessions cannot be honoured: each session needs at least {FDS_PER_SESSION} \
             descriptors; raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower max_sessions"
        );
    }
    Ok(limits)
}

/// True when `fd` lies in the reserve (the proxy must give it back).
pub fn in_reserve(fd: RawFd) -> bool {
    u64::try_from(fd).is_ok_and(|fd| fd >= CEILING.load(Ordering::Relaxed))
}

/// `Ok` when `socket` may be kept; otherwise the error to treat it with (EMFILE). The caller
/// drops the socket, which gives the descriptor back.
pub fn check(socket: &impl AsRawFd) -> io::Result<()> {
    if in_reserve(socket.as_raw_fd()) {
        return Err(io::Error::from_raw_os_error(libc::EMFILE));
    }
    Ok(())
}

/// Connect to `address` with a socket outside the reserve.
pub(super) async fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    check(&socket)?;
    socket.connect(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_scales_with_the_limit() {
        assert_eq!(reserve_for(256), 16);
        assert_eq!(reserve_for(1024), 64);
        assert_eq!(reserve_for(65_536), 256);
        let limits = FdLimits {
            soft_before: 1024,
            soft: 1024,
            hard: 1024,
            reserve: 64,
        };
        assert_eq!(limits.session_capacity(), (1024 - 64 - 64) / 2);
    }
}
