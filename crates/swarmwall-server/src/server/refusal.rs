//! Why a session was refused: one enum whose [`Refusal::as_str`] labels are the `reason` of
//! `swarmwall_sessions_refused_total` (a metrics contract: the labels never change).

use swarmwall_core::socks5::{Error as Socks5Error, Reply};

/// Why a session (or a connection before it became one) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `accept` failed (descriptors or memory exhausted).
    AcceptFailed,
    /// The descriptors left are kept for the admin listener.
    FdReserve,
    /// `max_sessions` sessions are open.
    Limit,
    /// The source has `max_handshakes_per_source` handshakes open.
    SourceLimit,
    /// The handshake did not finish within `handshake_timeout`.
    HandshakeTimeout,
    /// A read or write failed during the handshake.
    Io,
    /// The client closed the connection during the handshake.
    Eof,
    /// A PROXY protocol header from a trusted balancer was malformed or too long.
    BadProxyHeader,
    /// The SOCKS5 handshake failed (the core codec's error).
    Handshake(Socks5Error),
    /// The account has `max_sessions_per_account` sessions open.
    AccountLimit,
    /// The account or client is suspended (graduated response).
    Suspended,
    /// A request named a BitTorrent destination whose action is block.
    BittorrentDestination,
    /// The destination policy refused the request.
    Policy,
    /// The outbound connection failed with this SOCKS5 reply.
    Connect(Reply),
    /// BIND or UDP ASSOCIATE could not bind its socket.
    BindFailed,
    /// No peer connected to a BIND socket in time.
    BindTimeout,
}

impl Refusal {
    /// The refusal for a failed outbound connection answered with `reply`.
    pub(crate) fn from_reply(reply: Reply) -> Self {
        match reply {
            Reply::NotAllowed => Self::Policy,
            other => Self::Connect(other),
        }
    }

    /// The `reason` label (`swarmwall_sessions_refused_total{reason}`). Handshake errors and
    /// connection failures reuse the core's labels where they name the same thing.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::AcceptFailed => "accept_failed",
            Self::FdReserve => "fd_reserve",
            Self::Limit => "limit",
            Self::SourceLimit => "source_limit",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Io => "io",
            Self::Eof => "eof",
            Self::BadProxyHeader => "bad_proxy_header",
            Self::Handshake(
                error @ (Socks5Error::AuthFailed
                | Socks5Error::NoAcceptableMethod
                | Socks5Error::CommandNotSupported(_)
                | Socks5Error::AddressTypeNotSupported(_)),
            ) => error.as_str(),
            Self::Handshake(_) => "bad_handshake",
            Self::AccountLimit => "account_limit",
            Self::Suspended => "suspended",
            Self::BittorrentDestination => "bittorrent_destination",
            Self::Policy => "policy",
            Self::Connect(
                reply @ (Reply::HostUnreachable
                | Reply::NetworkUnreachable
                | Reply::ConnectionRefused),
            ) => reply.as_str(),
            Self::Connect(Reply::TtlExpired) => "connect_timeout",
            Self::Connect(_) => "connect_failed",
            Self::BindFailed => "bind_failed",
            Self::BindTimeout => "bind_timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels are a metrics contract: these are the values dashboards and tests match.
    #[test]
    fn labels_are_unchanged() {
        let cases = [
            (Refusal::AcceptFailed, "accept_failed"),
            (Refusal::FdReserve, "fd_reserve"),
            (Refusal::Limit, "limit"),
            (Refusal::SourceLimit, "source_limit"),
            (Refusal::HandshakeTimeout, "handshake_timeout"),
            (Refusal::Io, "io"),
            (Refusal::Eof, "eof"),
            (Refusal::BadProxyHeader, "bad_proxy_header"),
            (Refusal::Handshake(Socks5Error::AuthFailed), "auth"),
            (
                Refusal::Handshake(Socks5Error::NoAcceptableMethod),
                "no_acceptable_method",
            ),
            (
                Refusal::Handshake(Socks5Error::CommandNotSupported(9)),
                "command_not_supported",
            ),
            (
                Refusal::Handshake(Socks5Error::AddressTypeNotSupported(7)),
                "address_type_not_supported",
            ),
            (
                Refusal::Handshake(Socks5Error::WrongVersion(4)),
                "bad_handshake",
            ),
            (Refusal::Handshake(Socks5Error::Oversized), "bad_handshake"),
            (Refusal::AccountLimit, "account_limit"),
            (Refusal::Suspended, "suspended"),
            (Refusal::BittorrentDestination, "bittorrent_destination"),
            (Refusal::from_reply(Reply::NotAllowed), "policy"),
            (
                Refusal::from_reply(Reply::HostUnreachable),
                "host_unreachable",
            ),
            (
                Refusal::from_reply(Reply::NetworkUnreachable),
                "network_unreachable",
            ),
            (
                Refusal::from_reply(Reply::ConnectionRefused),
                "connection_refused",
            ),
            (Refusal::from_reply(Reply::TtlExpired), "connect_timeout"),
            (Refusal::from_reply(Reply::GeneralFailure), "connect_failed"),
            (Refusal::BindFailed, "bind_failed"),
            (Refusal::BindTimeout, "bind_timeout"),
        ];
        for (refusal, label) in cases {
            assert_eq!(refusal.as_str(), label, "{refusal:?}");
        }
    }
}
