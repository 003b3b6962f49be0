//! A small SOCKS5 client (RFC 1928 CONNECT and UDP ASSOCIATE, RFC 1929 username/password),
//! just enough for the probe. It reads straight from tokio streams; every read is bounded by
//! the caller's timeout and every reply field is length-checked.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

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
    /// The first reply byte was not 5: the server does not speak SOCKS5.
    #[error("not a SOCKS5 server (reply version byte {0:#04x})")]
    NotSocks5(u8),
    /// The server accepted none of the offered methods.
    #[error("the proxy accepted no offered authentication method (offered {0})")]
    NoAcceptableMethod(&'static str),
    /// The server chose a method that was not offered.
    #[error("the proxy chose method {0:#04x}, which was not offered")]
    UnexpectedMethod(u8),
    /// The server requires username/password and none was given.
    #[error("the proxy requires username/password authentication (use --user and --pass)")]
    CredentialsRequired,
    /// RFC 1929 authentication was rejected.
    #[error("authentication failed (RFC 1929 status {0:#04x})")]
    AuthFailed(u8),
    /// The request was refused with a SOCKS5 reply code.
    #[error("the proxy refused the request: reply {code:#04x} ({})", reply_text(*code))]
    Refused {
        /// RFC 1928 §6 reply code.
        code: u8,
    },
    /// The reply did not parse.
    #[error("malformed SOCKS5 reply: {0}")]
    Malformed(&'static str),
    /// Username or password longer than 255 bytes or empty.
    #[error("username and password must be 1 to 255 bytes")]
    BadCredentials,
}

impl SocksError {
    /// True when the proxy cannot be used at all (as opposed to refusing one request).
    pub fn proxy_unusable(&self) -> bool {
        !matches!(self, Self::Refused { .. } | Self::Timeout("request reply"))
    }
}

/// RFC 1928 §6 reply text.
pub fn reply_text(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned",
    }
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
        let mut stream = match timeout(self.timeout, TcpStream::connect(self.proxy)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(SocksError::Connect(error)),
            Err(_) => return Err(SocksError::Timeout("TCP connect")),
        };
        let _ = stream.set_nodelay(true);
        let (greeting, offered): (&[u8], &'static str) = if self.credentials.is_some() {
            (&[0x05, 0x02, 0x00, 0x02], "no-auth and username/password")
        } else {
            (&[0x05, 0x01, 0x00], "no-auth")
        };
        stream.write_all(greeting).await.map_err(SocksError::Io)?;
        let mut choice = [0u8; 2];
        self.read_exact(&mut stream, &mut choice, "greeting")
            .await?;
        if choice[0] != 0x05 {
            return Err(SocksError::NotSocks5(choice[0]));
        }
        match (choice[1], &self.credentials) {
            (0x00, _) => Ok(stream),
            (0x02, Some(credentials)) => {
                let user = credentials.username.as_bytes();
                let pass = credentials.password.as_bytes();
                let user_len = u8::try_from(user.len()).map_err(|_| SocksError::BadCredentials)?;
                let pass_len = u8::try_from(pass.len()).map_err(|_| SocksError::BadCredentials)?;
                if user_len == 0 || pass_len == 0 {
                    return Err(SocksError::BadCredentials);
                }
                let mut request = Vec::with_capacity(3 + user.len() + pass.len());
                request.extend_from_slice(&[0x01, user_len]);
                request.extend_from_slice(user);
                request.push(pass_len);
                request.extend_from_slice(pass);
                stream.write_all(&request).await.map_err(SocksError::Io)?;
                let mut status = [0u8; 2];
                self.read_exact(&mut stream, &mut status, "authentication")
                    .await?;
                if status[1] != 0x00 {
                    return Err(SocksError::AuthFailed(status[1]));
                }
                Ok(stream)
            }
            (0x02, None) => Err(SocksError::CredentialsRequired),
            (0xFF, _) => Err(SocksError::NoAcceptableMethod(offered)),
            (other, _) => Err(SocksError::UnexpectedMethod(other)),
        }
    }

    /// CONNECT to `target`; returns the stream, ready for payload.
    pub async fn connect(&self, target: SocketAddr) -> Result<TcpStream, SocksError> {
        let mut stream = self.handshake().await?;
        self.request(&mut stream, 0x01, target).await?;
        Ok(stream)
    }

    /// UDP ASSOCIATE: returns the control connection (keep it open while the association is
    /// used) and the relay address to send datagrams to. `client` is the address datagrams will
    /// come from.
    pub async fn udp_associate(
        &self,
        client: SocketAddr,
    ) -> Result<(TcpStream, SocketAddr), SocksError> {
        let mut stream = self.handshake().await?;
        let mut relay = self.request(&mut stream, 0x03, client).await?;
        if relay.ip().is_unspecified() {
            // RFC 1928 leaves BND.ADDR = 0.0.0.0 to mean "the address you reached me on".
            relay.set_ip(self.proxy.ip());
        }
        Ok((stream, relay))
    }

    async fn request(
        &self,
        stream: &mut TcpStream,
        command: u8,
        address: SocketAddr,
    ) -> Result<SocketAddr, SocksError> {
        let mut request = vec![0x05, command, 0x00];
        encode_address(&mut request, address);
        stream.write_all(&request).await.map_err(SocksError::Io)?;
        let mut head = [0u8; 4];
        self.read_exact(stream, &mut head, "request reply").await?;
        if head[0] != 0x05 {
            return Err(SocksError::NotSocks5(head[0]));
        }
        if head[1] != 0x00 {
            return Err(SocksError::Refused { code: head[1] });
        }
        let bound = match head[3] {
            0x01 => {
                let mut rest = [0u8; 6];
                self.read_exact(stream, &mut rest, "request reply").await?;
                let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
                SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([rest[4], rest[5]]))
            }
            0x04 => {
                let mut rest = [0u8; 18];
                self.read_exact(stream, &mut rest, "request reply").await?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&rest[..16]);
                let ip = Ipv6Addr::from(octets);
                SocketAddr::new(IpAddr::V6(ip), u16::from_be_bytes([rest[16], rest[17]]))
            }
            0x03 => {
                // A domain name as bound address: read and skip it, keep the port.
                let mut len = [0u8; 1];
                self.read_exact(stream, &mut len, "request reply").await?;
                let mut rest = vec![0u8; usize::from(len[0]) + 2];
                self.read_exact(stream, &mut rest, "request reply").await?;
                let port = u16::from_be_bytes([
                    rest.get(rest.len() - 2).copied().unwrap_or(0),
                    rest.last().copied().unwrap_or(0),
                ]);
                SocketAddr::new(self.proxy.ip(), port)
            }
            _ => return Err(SocksError::Malformed("unknown address type in reply")),
        };
        Ok(bound)
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

/// Append ATYP + address + port (RFC 1928 §4).
fn encode_address(out: &mut Vec<u8>, address: SocketAddr) {
    match address.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(0x04);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&address.port().to_be_bytes());
}

/// Wrap a datagram for the relay (RFC 1928 §7: RSV RSV FRAG=0 ATYP DST.ADDR DST.PORT DATA).
pub fn encode_udp(target: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + payload.len());
    out.extend_from_slice(&[0x00, 0x00, 0x00]);
    encode_address(&mut out, target);
    out.extend_from_slice(payload);
    out
}

/// Unwrap a datagram from the relay: (source, payload). `None` for fragments, domain sources
/// or malformed headers.
pub fn decode_udp(datagram: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (header, rest) = datagram.split_at_checked(4)?;
    if header[2] != 0x00 {
        return None;
    }
    match header[3] {
        0x01 => {
            let (addr, payload) = rest.split_at_checked(6)?;
            let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            let port = u16::from_be_bytes([addr[4], addr[5]]);
            Some((SocketAddr::new(IpAddr::V4(ip), port), payload))
        }
        0x04 => {
            let (addr, payload) = rest.split_at_checked(18)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addr[..16]);
            let port = u16::from_be_bytes([addr[16], addr[17]]);
            Some((
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port),
                payload,
            ))
        }
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
