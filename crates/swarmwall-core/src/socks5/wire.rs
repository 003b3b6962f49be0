//! SOCKS5 wire types and their codecs (RFC 1928 §3–§7, RFC 1929 §2).
//!
//! Decoders return `Ok(None)` for "need more bytes", distinct from an [`Error`] for input that
//! can never be valid. They read through [`Reader`], whose accessors return `None` instead of
//! panicking, so no decoder can index out of bounds whatever a peer sends.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{AUTH_VERSION, VERSION};

/// Address type byte: IPv4 (RFC 1928 §5).
const ATYP_IPV4: u8 = 0x01;
/// Address type byte: domain name.
const ATYP_DOMAIN: u8 = 0x03;
/// Address type byte: IPv6.
const ATYP_IPV6: u8 = 0x04;

/// Longest SOCKS UDP request header: RSV(2) FRAG(1) ATYP(1) len(1) name(255) PORT(2).
pub const MAX_UDP_HEADER_LEN: usize = 262;

/// Why SOCKS5 input was refused. Each variant maps to a reply code with [`Error::as_reply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The version byte is not 0x05 (greeting, request) or 0x01 (RFC 1929).
    #[error("unsupported protocol version {0:#04x}")]
    WrongVersion(u8),
    /// The greeting offered no method at all.
    #[error("greeting offers no authentication method")]
    NoMethods,
    /// None of the offered methods is acceptable (answered with method 0xFF).
    #[error("no acceptable authentication method")]
    NoAcceptableMethod,
    /// RFC 1929 credentials were refused.
    #[error("authentication failed")]
    AuthFailed,
    /// The request's command is not CONNECT, BIND or UDP ASSOCIATE.
    #[error("command {0:#04x} not supported")]
    CommandNotSupported(u8),
    /// The address type is not IPv4, domain name or IPv6.
    #[error("address type {0:#04x} not supported")]
    AddressTypeNotSupported(u8),
    /// A domain name that is empty or not valid UTF-8.
    #[error("invalid domain name")]
    InvalidDomain,
    /// A UDP datagram too short to hold its SOCKS header.
    #[error("truncated SOCKS UDP header")]
    TruncatedDatagram,
    /// A UDP datagram whose RSV field is not zero (RFC 1928 §7 says it must be).
    #[error("non-zero RSV field in a SOCKS UDP header")]
    ReservedNotZero,
    /// More handshake bytes than any valid handshake needs.
    #[error("handshake too long")]
    Oversized,
    /// A message arrived in a state that does not expect input (a protocol violation).
    #[error("unexpected input")]
    Unexpected,
}

impl Error {
    /// The SOCKS5 reply code that answers this error in the request phase.
    pub fn as_reply(&self) -> Reply {
        match self {
            Self::CommandNotSupported(_) => Reply::CommandNotSupported,
            Self::AddressTypeNotSupported(_) => Reply::AddressTypeNotSupported,
            Self::InvalidDomain => Reply::HostUnreachable,
            Self::AuthFailed => Reply::NotAllowed,
            Self::WrongVersion(_)
            | Self::NoMethods
            | Self::NoAcceptableMethod
            | Self::TruncatedDatagram
            | Self::ReservedNotZero
            | Self::Oversized
            | Self::Unexpected => Reply::GeneralFailure,
        }
    }

    /// Stable snake_case label for metrics (`sessions_refused{reason}`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::WrongVersion(_) => "wrong_version",
            Self::NoMethods => "no_methods",
            Self::NoAcceptableMethod => "no_acceptable_method",
            Self::AuthFailed => "auth",
            Self::CommandNotSupported(_) => "command_not_supported",
            Self::AddressTypeNotSupported(_) => "address_type_not_supported",
            Self::InvalidDomain => "invalid_domain",
            Self::TruncatedDatagram => "truncated",
            Self::ReservedNotZero => "reserved_not_zero",
            Self::Oversized => "oversized",
            Self::Unexpected => "unexpected",
        }
    }
}

/// An authentication method byte (RFC 1928 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u8);

impl Method {
    /// No authentication required.
    pub const NO_AUTH: Self = Self(0x00);
    /// GSSAPI (not supported by swarmwall).
    pub const GSSAPI: Self = Self(0x01);
    /// Username/password (RFC 1929).
    pub const USERNAME_PASSWORD: Self = Self(0x02);
    /// No acceptable methods.
    pub const NO_ACCEPTABLE: Self = Self(0xFF);
}

/// A SOCKS5 command (RFC 1928 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// CONNECT (0x01).
    Connect,
    /// BIND (0x02).
    Bind,
    /// UDP ASSOCIATE (0x03).
    UdpAssociate,
}

impl Command {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Connect => 0x01,
            Self::Bind => 0x02,
            Self::UdpAssociate => 0x03,
        }
    }

    /// Stable label for metrics (`connect`, `bind`, `udp_associate`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Bind => "bind",
            Self::UdpAssociate => "udp_associate",
        }
    }

    fn from_byte(byte: u8) -> Result<Self, Error> {
        match byte {
            0x01 => Ok(Self::Connect),
            0x02 => Ok(Self::Bind),
            0x03 => Ok(Self::UdpAssociate),
            other => Err(Error::CommandNotSupported(other)),
        }
    }
}

/// A SOCKS5 reply code (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reply {
    /// 0x00 succeeded.
    Succeeded = 0x00,
    /// 0x01 general SOCKS server failure.
    GeneralFailure = 0x01,
    /// 0x02 connection not allowed by ruleset.
    NotAllowed = 0x02,
    /// 0x03 network unreachable.
    NetworkUnreachable = 0x03,
    /// 0x04 host unreachable.
    HostUnreachable = 0x04,
    /// 0x05 connection refused.
    ConnectionRefused = 0x05,
    /// 0x06 TTL expired.
    TtlExpired = 0x06,
    /// 0x07 command not supported.
    CommandNotSupported = 0x07,
    /// 0x08 address type not supported.
    AddressTypeNotSupported = 0x08,
}

impl Reply {
    /// The reply for a failed outbound connection or bind, from its OS error.
    pub fn from_io_kind(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind;
        match kind {
            ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            ErrorKind::NetworkUnreachable => Self::NetworkUnreachable,
            ErrorKind::HostUnreachable | ErrorKind::AddrNotAvailable => Self::HostUnreachable,
            ErrorKind::TimedOut => Self::TtlExpired,
            ErrorKind::PermissionDenied => Self::NotAllowed,
            _ => Self::GeneralFailure,
        }
    }

    /// Parse a reply byte (for clients).
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x00 => Self::Succeeded,
            0x01 => Self::GeneralFailure,
            0x02 => Self::NotAllowed,
            0x03 => Self::NetworkUnreachable,
            0x04 => Self::HostUnreachable,
            0x05 => Self::ConnectionRefused,
            0x06 => Self::TtlExpired,
            0x07 => Self::CommandNotSupported,
            0x08 => Self::AddressTypeNotSupported,
            _ => return None,
        })
    }

    /// Stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::GeneralFailure => "general_failure",
            Self::NotAllowed => "not_allowed",
            Self::NetworkUnreachable => "network_unreachable",
            Self::HostUnreachable => "host_unreachable",
            Self::ConnectionRefused => "connection_refused",
            Self::TtlExpired => "ttl_expired",
            Self::CommandNotSupported => "command_not_supported",
            Self::AddressTypeNotSupported => "address_type_not_supported",
        }
    }
}

/// A destination or bound address: an IP socket address or a domain name with a port.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// Domain name (1..=255 bytes of UTF-8) and port; resolved by the proxy.
    Domain(String, u16),
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(address) => write!(f, "{address}"),
            Self::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

impl Address {
    /// The unspecified IPv4 address, port 0 (used in failure replies).
    pub const UNSPECIFIED: Self = Self::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(address) => address.port(),
            Self::Domain(_, port) => *port,
        }
    }

    /// Encoded length in bytes (ATYP + address + port).
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Ip(SocketAddr::V4(_)) => 1 + 4 + 2,
            Self::Ip(SocketAddr::V6(_)) => 1 + 16 + 2,
            Self::Domain(name, _) => 1 + 1 + name.len().min(255) + 2,
        }
    }

    /// Append ATYP, address and port. Domain names longer than 255 bytes are truncated (they
    /// cannot be represented; decoding never produces one).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ip(SocketAddr::V4(address)) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&address.ip().octets());
            }
            Self::Ip(SocketAddr::V6(address)) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&address.ip().octets());
            }
            Self::Domain(name, _) => {
                let bytes = name.as_bytes();
                let bytes = bytes.get(..255).unwrap_or(bytes);
                out.push(ATYP_DOMAIN);
                // `bytes` holds at most 255 bytes, so the cast is exact.
                out.push(bytes.len() as u8);
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(&self.port().to_be_bytes());
    }

    /// Decode ATYP, address and port from the start of `input`.
    pub fn decode(input: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        let mut reader = Reader::new(input);
        match Self::read(&mut reader)? {
            Some(address) => Ok(Some((address, reader.position()))),
            None => Ok(None),
        }
    }

    fn read(reader: &mut Reader<'_>) -> Result<Option<Self>, Error> {
        Ok(AddressRef::read(reader)?.map(AddressRef::to_owned))
    }
}

/// An [`Address`] borrowed from the bytes it was decoded from: decoding it allocates nothing
/// (the UDP relay decodes one per datagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRef<'a> {
    /// IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// Domain name (1..=255 bytes of UTF-8) and port.
    Domain(&'a str, u16),
}

impl<'a> AddressRef<'a> {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(address) => address.port(),
            Self::Domain(_, port) => *port,
        }
    }

    /// The owned address.
    pub fn to_owned(self) -> Address {
        match self {
            Self::Ip(address) => Address::Ip(address),
            Self::Domain(name, port) => Address::Domain(name.to_owned(), port),
        }
    }

    fn read(reader: &mut Reader<'a>) -> Result<Option<Self>, Error> {
        let Some(atyp) = reader.u8() else {
            return Ok(None);
        };
        let ip = match atyp {
            ATYP_IPV4 => match reader.array::<4>() {
                Some(octets) => IpAddr::V4(Ipv4Addr::from(octets)),
                None => return Ok(None),
            },
            ATYP_IPV6 => match reader.array::<16>() {
                Some(octets) => IpAddr::V6(Ipv6Addr::from(octets)),
                None => return Ok(None),
            },
            ATYP_DOMAIN => {
                let Some(len) = reader.u8() else {
                    return Ok(None);
                };
                let Some(name) = reader.take(usize::from(len)) else {
                    return Ok(None);
                };
                let Some(port) = reader.u16() else {
                    return Ok(None);
                };
                if name.is_empty() {
                    return Err(Error::InvalidDomain);
                }
                let name = std::str::from_utf8(name).map_err(|_| Error::InvalidDomain)?;
                return Ok(Some(Self::Domain(name, port)));
            }
            other => return Err(Error::AddressTypeNotSupported(other)),
        };
        match reader.u16() {
            Some(port) => Ok(Some(Self::Ip(SocketAddr::new(ip, port)))),
            None => Ok(None),
        }
    }
}

/// The client's greeting: version and offered methods (RFC 1928 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Offered methods, in the client's order (1..=255).
    pub methods: Vec<Method>,
}

impl Greeting {
    /// Append the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let methods = self.methods.get(..255).unwrap_or(&self.methods);
        out.push(VERSION);
        // At most 255 methods, so the cast is exact.
        out.push(methods.len() as u8);
        out.extend(methods.iter().map(|method| method.0));
    }

    /// Decode from the start of `input`.
    pub fn decode(input: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        let mut reader = Reader::new(input);
        let Some(version) = reader.u8() else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(Error::WrongVersion(version));
        }
        let Some(count) = reader.u8() else {
            return Ok(None);
        };
        if count == 0 {
            return Err(Error::NoMethods);
        }
        let Some(methods) = reader.take(usize::from(count)) else {
            return Ok(None);
        };
        let methods = methods.iter().copied().map(Method).collect();
        Ok(Some((Self { methods }, reader.position())))
    }
}

/// The server's method selection (RFC 1928 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSelection {
    /// The chosen method, or [`Method::NO_ACCEPTABLE`].
    pub method: Method,
}

impl MethodSelection {
    /// Append the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.method.0]);
    }

    /// Decode from the start of `input` (for clients).
    pub fn decode(input: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        match input {
            [] | [_] => Ok(None),
            [VERSION, method, ..] => Ok(Some((
                Self {
                    method: Method(*method),
                },
                2,
            ))),
            [version, ..] => Err(Error::WrongVersion(*version)),
        }
    }
}

/// RFC 1929 username/password request. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordRequest {
    /// Username bytes (1..=255; RFC 1929 does not say which encoding).
    pub username: Vec<u8>,
    /// Password bytes (0..=255).
    pub password: Vec<u8>,
}

impl fmt::Debug for PasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordRequest")
            .field("username_len", &self.username.len())
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Drop for PasswordRequest {
    fn drop(&mut self) {
        // Wipe the secret before the allocation is freed (`zeroize` writes cannot be
        // optimised away, and cover the spare capacity too).
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

impl PasswordRequest {
    /// Append the encoding (fields longer than 255 bytes are truncated).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(AUTH_VERSION);
        for field in [&self.username, &self.password] {
            let field = field.get(..255).unwrap_or(field);
            // At most 255 bytes, so the cast is exact.
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
    }

    /// Decode from the start of `input`.
    pub fn decode(input: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        let mut reader = Reader::new(input);
        let Some(version) = reader.u8() else {
            return Ok(None);
        };
        if version != AUTH_VERSION {
            return Err(Error::WrongVersion(version));
        }
        let Some(username) = reader.u8().and_then(|len| reader.take(usize::from(len))) else {
            return Ok(None);
        };
        let Some(password) = reader.u8().and_then(|len| reader.take(usize::from(len))) else {
            return Ok(None);
        };
        let request = Self {
            username: username.to_vec(),
            password: password.to_vec(),
        };
        Ok(Some((request, reader.position())))
    }
}

/// RFC 1929 status reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordReply {
    /// True for status 0x00.
    pub success: bool,
}

impl PasswordReply {
    /// Append the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[AUTH_VERSION, if self.success { 0x00 } else { 0x01 }]);
    }

    /// Decode from the start of `input` (for clients).
    pub fn decode(input: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        match input {
            [] | [_] => Ok(None),
            [AUTH_VERSION, status, ..] => Ok(Some((
                Self {
                    success: *status == 0,
                },
                2,
            ))),
            [version, ..] => Err(Error::WrongVersion(*version)),
        }
    }
}

/// A SOCKS5 request (RFC 1928 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// DST.ADDR and DST.PORT.
    pub destination: Address,
}

impl Request {
    /// Append the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.command.to_byte(), 0x00]);
        self.destination.encode(out);
    }

    /// Decode from the start of `input`. An unknown command is reported only once the whole
    /// request has arrived when its address type is known, so the error reply is sent after
    /// the client finished writing.
    pub fn decode(input: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        let mut reader = Reader::new(input);
        let Some([version, command, _reserved]) = reader.array::<3>() else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(Error::WrongVersion(version));
        }
        let Some(destination) = Address::read(&mut reader)? else {
            return Ok(None);
        };
        let command = Command::from_byte(command)?;
        Ok(Some((
            Self {
                command,
                destination,
            },
            reader.position(),
        )))
    }
}

/// The server's reply to a request (RFC 1928 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyMessage {
    /// The reply code.
    pub reply: Reply,
    /// BND.ADDR and BND.PORT.
    pub bound: Address,
}

impl ReplyMessage {
    /// Append the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.reply as u8, 0x00]);
        self.bound.encode(out);
    }

    /// Decode from the start of `input` (for clients). Unknown reply codes are reported as
    /// [`Reply::GeneralFailure`].
    pub fn decode(input: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        let mut reader = Reader::new(input);
        let Some([version, code, _reserved]) = reader.array::<3>() else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(Error::WrongVersion(version));
        }
        let Some(bound) = Address::read(&mut reader)? else {
            return Ok(None);
        };
        let reply = Reply::from_byte(code).unwrap_or(Reply::GeneralFailure);
        Ok(Some((Self { reply, bound }, reader.position())))
    }
}

/// The header in front of every relayed UDP datagram (RFC 1928 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// Fragment number; swarmwall drops every datagram with FRAG != 0.
    pub frag: u8,
    /// DST.ADDR/DST.PORT (client to proxy) or the source (proxy to client).
    pub address: Address,
}

impl UdpHeader {
    /// Append the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x00, 0x00, self.frag]);
        self.address.encode(out);
    }

    /// Decode a whole datagram: the header and the offset at which the payload starts. A
    /// datagram is complete by nature, so a short one is [`Error::TruncatedDatagram`]; one
    /// with a non-zero RSV field is [`Error::ReservedNotZero`].
    pub fn decode(datagram: &[u8]) -> Result<(Self, usize), Error> {
        let (header, offset) = UdpHeaderRef::decode(datagram)?;
        let header = Self {
            frag: header.frag,
            address: header.address.to_owned(),
        };
        Ok((header, offset))
    }
}

/// A [`UdpHeader`] borrowed from its datagram (no allocation, also for a domain name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeaderRef<'a> {
    /// Fragment number.
    pub frag: u8,
    /// DST.ADDR/DST.PORT.
    pub address: AddressRef<'a>,
}

impl<'a> UdpHeaderRef<'a> {
    /// Decode a whole datagram as [`UdpHeader::decode`] does, borrowing the name.
    pub fn decode(datagram: &'a [u8]) -> Result<(Self, usize), Error> {
        let mut reader = Reader::new(datagram);
        let Some([rsv1, rsv2, frag]) = reader.array::<3>() else {
            return Err(Error::TruncatedDatagram);
        };
        let Some(address) = AddressRef::read(&mut reader)? else {
            return Err(Error::TruncatedDatagram);
        };
        if [rsv1, rsv2] != [0, 0] {
            return Err(Error::ReservedNotZero);
        }
        Ok((Self { frag, address }, reader.position()))
    }
}

/// A cursor over a byte slice whose accessors return `None` past the end (never panic).
struct Reader<'a> {
    input: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input, position: 0 }
    }

    fn position(&self) -> usize {
        self.position
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(len)?;
        let bytes = self.input.get(self.position..end)?;
        self.position = end;
        Some(bytes)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|bytes| bytes.try_into().ok())
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array::<2>().map(u16::from_be_bytes)
    }
}
