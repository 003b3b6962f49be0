//! Where sessions run (`server.runtime`).
//!
//! `per_core` (the default): one single-threaded tokio runtime per core the process may use,
//! each accepting on its own `SO_REUSEPORT` listener bound to the same address (the kernel
//! spreads new connections over the listeners by a hash of the 4-tuple). A session is accepted,
//! served and closed on one thread: no work-stealing hop, no wake-up of another worker between
//! a socket becoming readable and its bytes being forwarded. The admin listener and background
//! tasks stay on the process's main runtime; shared state (metrics, store, accounts, strikes)
//! is `Send + Sync` and reached from every core.
//!
//! `multi_thread`: one listener, sessions spawned on the main work-stealing runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Shared, listener};
use crate::config::RuntimeLayout;

/// Backlog of every SOCKS5 listener (tokio's default for `TcpListener::bind`).
const BACKLOG: i32 = 1024;
/// Most per-core runtimes (a larger affinity mask still gets this many).
const MAX_CORE_RUNTIMES: usize = 256;

/// Number of session threads for `layout`: the cores this process may run on (its affinity
/// mask, so `taskset -c 0,1` gives 2) for `per_core`, else 1 listener.
pub(super) fn listener_count(layout: RuntimeLayout) -> usize {
    match layout {
        RuntimeLayout::MultiThread => 1,
        RuntimeLayout::PerCore => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_CORE_RUNTIMES),
    }
}

/// Bind `count` listeners on `address`; with more than one they share the port through
/// `SO_REUSEPORT` (port 0: the first picks the port, the others join it).
pub(super) fn bind_listeners(
    address: SocketAddr,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(count);
    let mut bound = address;
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if count > 1 {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        if listeners.is_empty() {
            bound = listener.local_addr()?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Accept on every listener until shutdown: the first on the calling (main) runtime for
/// `multi_thread`, each on its own thread and current-thread runtime for `per_core`. Returns
/// once every accept loop has stopped; `exit` then ends the per-core runtimes (sessions still
/// open on them are dropped), and [`CoreThreads::join`] waits for their threads.
pub(super) async fn accept_all(
    listeners: Vec<std::net::TcpListener>,
    shared: &Arc<Shared>,
    layout: RuntimeLayout,
) -> io::Result<CoreThreads> {
    let max_sessions = shared.runtime.load().server.max_sessions;
    // One limit for all listeners; read once: a reload cannot resize a semaphore that
    // permits are held on.
    let limit = Arc::new(Semaphore::new(max_sessions as usize));
    let exit = CancellationToken::new();
    if layout == RuntimeLayout::MultiThread {
        for std_listener in listeners {
            let accepting = TcpListener::from_std(std_listener)?;
            let task = tokio::spawn(listener::run(
                accepting,
                Arc::clone(shared),
                Arc::clone(&limit),
            ));
            let _ = task.await;
        }
        return Ok(CoreThreads {
            threads: Vec::new(),
            exit,
        });
    }
    let mut threads = Vec::with_capacity(listeners.len());
    let mut stopped = Vec::with_capacity(listeners.len());
    for (index, std_listener) in listeners.into_iter().enumerate() {
        let core_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("swarmwall-core-{index}"))
            .build()?;
        let (shared, limit, exit) = (Arc::clone(shared), Arc::clone(&limit), exit.clone());
        let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
        stopped.push(stopped_rx);
        let thread = std::thread::Builder::new()
            .name(format!("swarmwall-core-{index}"))
            .spawn(move || {
                core_runtime.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(accepting) => listener::run(accepting, shared, limit).await,
                        Err(error) => {
                            tracing::error!(%error, core = index, "cannot register a listener");
                        }
                    }
                    let _ = stopped_tx.send(());
                    // Sessions accepted here keep running until the server's grace ends.
                    exit.cancelled().await;
                });
            })?;
        threads.push(thread);
    }
    // A thread that died early drops its sender: that also counts as stopped.
    for stopped in stopped {
        let _ = stopped.await;
    }
    Ok(CoreThreads { threads, exit })
}

/// The per-core session threads, kept until shutdown's grace ended.
pub(super) struct CoreThreads {
    threads: Vec<std::thread::JoinHandle<()>>,
    exit: CancellationToken,
}

impl CoreThreads {
    /// End every per-core runtime (dropping its open sessions) and wait for its thread.
    pub(super) async fn join(self) {
        self.exit.cancel();
        let threads = self.threads;
        if threads.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuseport_listeners_share_one_port() {
        let listeners = bind_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(listeners.len(), 3);
        let port = listeners[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        for listener in &listeners {
            assert_eq!(listener.local_addr().unwrap().port(), port);
        }
    }

    #[test]
    fn one_listener_does_not_share_its_port() {
        let listeners = bind_listeners("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let address = listeners[0].local_addr().unwrap();
        // Without SO_REUSEPORT a second listener on the same port is refused.
        assert!(bind_listeners(address, 1).is_err());
    }

    #[test]
    fn per_core_follows_the_affinity_mask() {
        assert_eq!(listener_count(RuntimeLayout::MultiThread), 1);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(listener_count(RuntimeLayout::PerCore), cores.min(256));
    }
}
