//! The probe's own far end: one TCP listener or UDP responder per form, playing the target
//! side of the form's script and counting what arrived.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::forms::{Flight, Script};

/// How much of the client's side arrived at a target.
#[derive(Debug, Clone, Default)]
pub(super) struct TargetProgress {
    client_bytes: Arc<AtomicUsize>,
    datagrams: Arc<AtomicUsize>,
}

impl TargetProgress {
    /// Matching client bytes received on the best connection so far (TCP forms).
    pub(super) fn client_bytes(&self) -> usize {
        self.client_bytes.load(Ordering::Relaxed)
    }

    /// Distinct expected datagrams received (UDP forms).
    pub(super) fn datagrams(&self) -> usize {
        self.datagrams.load(Ordering::Relaxed)
    }
}

/// A running target.
#[derive(Debug)]
pub(super) struct Target {
    address: SocketAddr,
    progress: TargetProgress,
    task: JoinHandle<()>,
}

impl Target {
    /// Bind on `address` and serve `script` until [`Target::stop`].
    pub(super) async fn start(
        address: SocketAddr,
        script: Script,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let progress = TargetProgress::default();
        let (address, task) = match script {
            Script::Tcp(flights) => {
                let listener = TcpListener::bind(address).await?;
                let address = listener.local_addr()?;
                let progress = progress.clone();
                let flights = Arc::new(flights);
                let task = tokio::spawn(async move {
                    // Bounded by the probe: the task is aborted when the form is done.
                    while let Ok((stream, _)) = listener.accept().await {
                        let flights = Arc::clone(&flights);
                        let progress = progress.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(
                                timeout * 4,
                                serve_tcp(stream, &flights, &progress, timeout),
                            )
                            .await;
                        });
                    }
                });
                (address, task)
            }
            Script::Udp(exchanges) => {
                let socket = UdpSocket::bind(address).await?;
                let address = socket.local_addr()?;
                let progress = progress.clone();
                let task = tokio::spawn(async move {
                    serve_udp(socket, &exchanges, &progress).await;
                });
                (address, task)
            }
        };
        Ok(Self {
            address,
            progress,
            task,
        })
    }

    /// Where the target listens.
    pub(super) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Shared progress counters.
    pub(super) fn progress(&self) -> TargetProgress {
        self.progress.clone()
    }

    /// Stop serving.
    pub(super) fn stop(self) {
        self.task.abort();
    }
}

async fn serve_tcp(
    mut stream: TcpStream,
    flights: &[Flight],
    progress: &TargetProgress,
    timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    let mut matched = 0usize;
    for flight in flights {
        match flight {
            Flight::Client(expected) => {
                let mut buf = vec![0u8; expected.len()];
                let mut filled = 0usize;
                while filled < buf.len() {
                    let Some(rest) = buf.get_mut(filled..) else {
                        return;
                    };
                    let n = match tokio::time::timeout(timeout, stream.read(rest)).await {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    };
                    let (Some(got), Some(want)) = (
                        buf.get(filled..filled + n),
                        expected.get(filled..filled + n),
                    ) else {
                        return;
                    };
                    if got != want {
                        return;
                    }
                    filled += n;
                    matched += n;
                    progress.client_bytes.fetch_max(matched, Ordering::Relaxed);
                }
            }
            Flight::Target(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
        }
    }
    // Let the client read the last flight before the connection goes.
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(timeout, stream.read(&mut sink)).await;
}

async fn serve_udp(socket: UdpSocket, exchanges: &[(Vec<u8>, Vec<u8>)], progress: &TargetProgress) {
    let mut seen = vec![false; exchanges.len()];
    let mut buf = vec![0u8; 65_536];
    // Runs until the probe aborts the task.
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        let Some(index) = exchanges
            .iter()
            .position(|(request, _)| request == datagram)
        else {
            continue;
        };
        if let Some(flag) = seen.get_mut(index)
            && !*flag
        {
            *flag = true;
            progress.datagrams.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((_, reply)) = exchanges.get(index) {
            let _ = socket.send_to(reply, from).await;
        }
    }
}
