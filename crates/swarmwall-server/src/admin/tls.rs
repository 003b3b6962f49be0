//! TLS for the admin listener (rustls with the ring provider): required whenever the admin
//! surface listens on a non-loopback address, so the bearer token never crosses a network in
//! clear text.
//!
//! [`AdminTls`] loads a PEM certificate chain and private key; its listener accepts TCP
//! connections in a background task and runs each handshake (bounded in number and time)
//! off the accept loop, handing finished streams to axum.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel backlog.
const MAX_HANDSHAKES: usize = 64;

/// TLS settings of the admin listener. Cheap to clone.
#[derive(Clone)]
pub struct AdminTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminTls(..)")
    }
}

/// Why the TLS certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminTlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("admin TLS certificate and key do not fit: {0}")]
    Config(String),
}

impl AdminTls {
    /// Load a PEM certificate chain (`tls_cert`) and PEM private key (`tls_key`).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, AdminTlsError> {
        let pem_error = |path: &Path, message: String| AdminTlsError::Pem {
            path: path.to_owned(),
            message,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|error| pem_error(cert, error.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| pem_error(cert, error.to_string()))?;
        if chain.is_empty() {
            return Err(pem_error(cert, "no CERTIFICATE block".to_owned()));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|error| pem_error(key, error.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| AdminTlsError::Config(error.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|error| AdminTlsError::Config(error.to_string()))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Wrap a bound TCP listener; handshakes run in a task that ends with the listener.
    pub(crate) fn listener(&self, listener: TcpListener) -> TlsListener {
        let local = listener.local_addr();
        let (sender, receiver) = mpsc::channel(MAX_HANDSHAKES);
        let task = tokio::spawn(accept_loop(listener, self.acceptor.clone(), sender));
        TlsListener {
            receiver,
            local,
            task,
        }
    }
}

/// An axum listener yielding finished TLS streams.
pub(crate) struct TlsListener {
    receiver: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: io::Result<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.receiver.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match &self.local {
            Ok(address) => Ok(*address),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut backoff = Duration::from_millis(5);
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(error) => {
                tracing::warn!(%error, "admin listener accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if sender.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, "admin TLS handshake failed"),
                Err(_) => tracing::debug!("admin TLS handshake timed out"),
            }
        });
    }
}
