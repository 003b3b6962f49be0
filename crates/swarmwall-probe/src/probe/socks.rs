//! The probe's SOCKS5 client (RFC 1928 CONNECT and UDP ASSOCIATE, RFC 1929 username/password):
//! tokio I/O around the core's sans-IO [`ClientHandshake`]. Every read is bounded by the
//! caller's timeout and never goes past the proxy's reply, so the stream is handed over with
//! no payload byte consumed.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use swarmwall_core::socks5::{
    Address, ClientError, ClientHandshake, Command, PasswordRequest, Request, UdpHeader,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Username and password for RFC 1929. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    /// Username (1..=255 bytes).
    pub username: String,
    /// Password (1..=255 bytes).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    fn to_request(&self) -> PasswordRequest {
        PasswordRequest {
            username: self.username.as_bytes().to_vec(),
            password: self.password.as_bytes().to_vec(),
        }
    }
}

/// Why a SOCKS5 exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocksError {
    /// The TCP connection to the proxy could not be opened.
    #[error("cannot connect to the proxy: {0}")]
    Connect(std::io::Error),
    /// The proxy did not answer in time at the named stage.
    #[error("the proxy did not answer the {0} within the timeout")]
    Timeout(&'static str),
    /// The proxy closed the connection at the named stage.
    #[error("the proxy closed the connection during the {0}")]
    Closed(&'static str),
    /// Another I/O error.
    #[error("I/O error talking to the proxy: {0}")]
    Io(std::io::Error),
    /// The proxy's answer ended the handshake (not SOCKS5, no acceptable method,
    /// authentication failed, request refused, malformed reply, bad credentials).
    #[error(transparent)]
    Handshake(#[from] ClientError),
}

/// A SOCKS5 proxy to talk to.
#[derive(Debug, Clone)]
pub struct SocksClient {
    proxy: SocketAddr,
    credentials: Option<Credentials>,
    timeout: Duration,
}

impl SocksClient {
    /// A client for `proxy`; `timeout` bounds each stage (connect, greeting, auth, request).
    pub fn new(proxy: SocketAddr, credentials: Option<Credentials>, timeout: Duration) -> Self {
        Self {
            proxy,
            credentials,
            timeout,
        }
    }

    /// The proxy address.
    pub fn proxy(&self) -> SocketAddr {
        self.proxy
    }

    /// The per-step timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Open a TCP connection to the proxy and negotiate (greeting + RFC 1929 if needed).
    pub async fn handshake(&self) -> Result<TcpStream, SocksError> {
        self.exchange(None).await.map(|(stream, _)| stream)
    }

    /// CONNECT to `target`; returns the stream, ready for payload.
    pub async fn connect(&self, target: SocketAddr) -> Result<TcpStream, SocksError> {
        let request = Request {
            command: Command::Connect,
            destination: Address::Ip(target),
        };
        self.exchange(Some(request)).await.map(|(stream, _)| stream)
    }

    /// UDP ASSOCIATE: returns the control connection (keep it open while the association is
    /// used) and the relay address to send datagrams to. `client` is the address datagrams will
    /// come from.
    pub async fn udp_associate(
        &self,
        client: SocketAddr,
    ) -> Result<(TcpStream, SocketAddr), SocksError> {
        let request = Request {
            command: Command::UdpAssociate,
            destination: Address::Ip(client),
        };
        let (stream, bound) = self.exchange(Some(request)).await?;
        let mut relay = match bound {
            Some(Address::Ip(address)) => address,
            // A domain name as bound address: keep the port, use the proxy's address.
            Some(Address::Domain(_, port)) => SocketAddr::new(self.proxy.ip(), port),
            None => self.proxy,
        };
        if relay.ip().is_unspecified() {
            // RFC 1928 leaves BND.ADDR = 0.0.0.0 to mean "the address you reached me on".
            relay.set_ip(self.proxy.ip());
        }
        Ok((stream, relay))
    }

    /// Connect, negotiate and (with `request`) send it; the stream and the bound address.
    async fn exchange(
        &self,
        request: Option<Request>,
    ) -> Result<(TcpStream, Option<Address>), SocksError> {
        let mut stream = match timeout(self.timeout, TcpStream::connect(self.proxy)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(SocksError::Connect(error)),
            Err(_) => return Err(SocksError::Timeout("TCP connect")),
        };
        let _ = stream.set_nodelay(true);
        let mut handshake =
            ClientHandshake::new(self.credentials.as_ref().map(Credentials::to_request))?;
        if let Some(request) = request {
            handshake.request(request);
        }
        let mut buf = [0u8; 262];
        loop {
            if let Some(bytes) = handshake.poll_transmit() {
                stream.write_all(&bytes).await.map_err(SocksError::Io)?;
            }
            let Some(stage) = handshake.waiting_for() else {
                break;
            };
            let want = handshake.read_hint().min(buf.len());
            let chunk = buf.get_mut(..want).unwrap_or_default();
            self.read_exact(&mut stream, chunk, stage).await?;
            handshake.handle_input(chunk)?;
        }
        Ok((stream, handshake.bound().cloned()))
    }

    async fn read_exact(
        &self,
        stream: &mut TcpStream,
        buf: &mut [u8],
        stage: &'static str,
    ) -> Result<(), SocksError> {
        match timeout(self.timeout, stream.read_exact(buf)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(SocksError::Closed(stage))
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                Err(SocksError::Closed(stage))
            }
            Ok(Err(error)) => Err(SocksError::Io(error)),
            Err(_) => Err(SocksError::Timeout(stage)),
        }
    }
}

/// Wrap a datagram for the relay (RFC 1928 §7: RSV RSV FRAG=0 ATYP DST.ADDR DST.PORT DATA).
pub fn encode_udp(target: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + payload.len());
    UdpHeader {
        frag: 0,
        address: Address::Ip(target),
    }
    .encode(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Unwrap a datagram from the relay: (source, payload). `None` for fragments, domain sources
/// or malformed headers.
pub fn decode_udp(datagram: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (header, offset) = UdpHeader::decode(datagram).ok()?;
    match header {
        UdpHeader {
            frag: 0,
            address: Address::Ip(source),
        } => Some((source, datagram.get(offset..)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_header_round_trip() {
        let target: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        let wrapped = encode_udp(target, b"payload");
        assert_eq!(decode_udp(&wrapped), Some((target, &b"payload"[..])));
        let target6: SocketAddr = "[::1]:53".parse().unwrap();
        let wrapped = encode_udp(target6, b"x");
        assert_eq!(decode_udp(&wrapped), Some((target6, &b"x"[..])));
    }

    #[test]
    fn udp_header_rejects_short_and_fragments() {
        for len in 0..10 {
            assert!(decode_udp(&[0u8, 0, 0, 1, 127, 0, 0, 1, 0, 1][..len]).is_none());
        }
        assert!(decode_udp(&[0, 0, 1, 1, 127, 0, 0, 1, 0, 1]).is_none());
    }

    #[test]
    fn credentials_debug_redacts_password() {
        let credentials = Credentials {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
