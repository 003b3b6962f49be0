//! The BitTorrent classifier: per-TCP-flow state fed the first bytes of each direction, per-UDP
//! datagram verdicts, and a per-client correlator for the encrypted (MSE/PE) heuristic tier.
//!
//! The proxy (`swarmwall-server`) and the offline inspector (`swarmwall-capture`) drive this same
//! code. Nothing here reads a clock, touches a socket or logs: time is passed in by the caller.
//!
//! Layout: [`TcpFlow`] (in `tcp`) dispatches to one module per wire form (`peer_wire`, `mse`,
//! `http`, `tls`, ...); [`UdpFlow`] (in `udp`) does the same for datagram forms (`dht`, `utp`,
//! `udp_tracker`, `lsd`); [`crate::bt::bencode`] is the shared bounded validator; [`Correlator`] holds the
//! per-client evidence (E1..E5 in docs/detection.md, "Rules").

// The bounded bencode reader lives in `crate::bt`; the wire-form modules reach it from here.
pub(crate) use crate::bt::bencode;
mod correlator;
pub mod destination;
mod tcp;
mod udp;

pub use correlator::{ClientKey, Correlator, CorrelatorConfig};
pub use destination::{DestinationKind, KnownDestinations};
pub use tcp::TcpFlow;
pub use udp::UdpFlow;

/// Which way bytes travel, seen from the proxy's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (the SOCKS5 client towards the target; the initiator in a capture).
    ClientToServer,
    /// Server to client (the target's replies).
    ServerToClient,
}

/// The BitTorrent wire forms the classifier recognises (docs/classifier.md, "TCP forms and MSE strictness", and "UDP forms").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BtForm {
    /// T1: the 68-byte peer-wire handshake (BEP 3 / BEP 52), either direction.
    PeerWire,
    /// T2: framed peer-wire messages without a seen handshake, incl. the BEP 10 extension
    /// handshake.
    PeerWireMessages,
    /// T3: Message Stream Encryption / Protocol Encryption handshake (heuristic tier).
    Mse,
    /// T4: HTTP tracker announce or scrape request, or a bencoded tracker response.
    HttpTracker,
    /// T5: web seed request (BEP 17 / BEP 19).
    WebSeed,
    /// T6: libtorrent SSL torrent (TLS with a hex info-hash as SNI).
    SslTorrent,
    /// T7: WebTorrent tracker (WebSocket JSON announce, or SNI in the tracker list).
    WebTorrent,
    /// A `.torrent` metainfo file or magnet link handed over plain HTTP.
    TorrentFile,
    /// U1: uTP (BEP 29), any payload.
    Utp,
    /// U2: DHT KRPC (BEP 5 and extensions).
    Dht,
    /// U3: UDP tracker (BEP 15).
    UdpTracker,
    /// U4: Local Service Discovery (BEP 14).
    Lsd,
    /// A destination known as BitTorrent infrastructure (DHT router, tracker host name).
    KnownDestination,
}

impl BtForm {
    /// True for what a swarm member itself speaks (T1, T2, uTP, DHT): a remote endpoint that
    /// sent such bytes is a BitTorrent peer or node ([`Correlator::record_bt_endpoint`], E3).
    pub fn is_peer_protocol(self) -> bool {
        matches!(
            self,
            Self::PeerWire | Self::PeerWireMessages | Self::Utp | Self::Dht
        )
    }

    /// Every form, in a stable order (for metrics and reports).
    pub const ALL: [Self; 13] = [
        Self::PeerWire,
        Self::PeerWireMessages,
        Self::Mse,
        Self::HttpTracker,
        Self::WebSeed,
        Self::SslTorrent,
        Self::WebTorrent,
        Self::TorrentFile,
        Self::Utp,
        Self::Dht,
        Self::UdpTracker,
        Self::Lsd,
        Self::KnownDestination,
    ];

    /// Stable snake_case label used in JSON output, metrics labels and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PeerWire => "peer_wire",
            Self::PeerWireMessages => "peer_wire_messages",
            Self::Mse => "mse",
            Self::HttpTracker => "http_tracker",
            Self::WebSeed => "web_seed",
            Self::SslTorrent => "ssl_torrent",
            Self::WebTorrent => "webtorrent",
            Self::TorrentFile => "torrent_file",
            Self::Utp => "utp",
            Self::Dht => "dht",
            Self::UdpTracker => "udp_tracker",
            Self::Lsd => "lsd",
            Self::KnownDestination => "known_destination",
        }
    }
}

/// Recognised non-BitTorrent protocols, used to rule out false positives and to label flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Benign {
    /// TLS (any version) — the SNI did not point at BitTorrent.
    Tls,
    /// HTTP/1.x without tracker or web-seed evidence.
    Http,
    /// HTTP/2 with prior knowledge.
    Http2,
    /// SSH.
    Ssh,
    /// RDP.
    Rdp,
    /// A server-first protocol (SMTP, FTP, POP3, IMAP, MySQL, VNC, ...).
    ServerFirst,
    /// DNS.
    Dns,
    /// QUIC.
    Quic,
    /// STUN / TURN.
    Stun,
    /// DTLS.
    Dtls,
    /// WireGuard.
    WireGuard,
    /// OpenVPN.
    OpenVpn,
    /// NTP.
    Ntp,
    /// RTP / RTCP.
    Rtp,
    /// SSDP and other HTTP-over-UDP discovery.
    Ssdp,
    /// SOCKS5 (seen by the inspector on a proxy's client side; the payload after it is
    /// classified separately).
    Socks5,
}

impl Benign {
    /// Stable label used in JSON output and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Http => "http",
            Self::Http2 => "http2",
            Self::Ssh => "ssh",
            Self::Rdp => "rdp",
            Self::ServerFirst => "server_first",
            Self::Dns => "dns",
            Self::Quic => "quic",
            Self::Stun => "stun",
            Self::Dtls => "dtls",
            Self::WireGuard => "wireguard",
            Self::OpenVpn => "openvpn",
            Self::Ntp => "ntp",
            Self::Rtp => "rtp",
            Self::Ssdp => "ssdp",
            Self::Socks5 => "socks5",
        }
    }
}

/// The classifier's answer for a flow or datagram. Once a flow returns anything other than
/// [`Verdict::NeedMore`] it keeps returning that same verdict (a verdict never changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Not enough bytes yet; keep feeding (the caller keeps relaying meanwhile).
    NeedMore,
    /// BitTorrent, in the given form.
    BitTorrent(BtForm),
    /// A recognised benign protocol.
    Benign(Benign),
    /// No decision within the budget: treat as not BitTorrent and stop inspecting.
    GaveUp,
}

impl Verdict {
    /// True once the verdict is final (anything but [`Verdict::NeedMore`]).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::NeedMore)
    }

    /// The BitTorrent form, if this is a BitTorrent verdict.
    pub fn bittorrent_form(self) -> Option<BtForm> {
        match self {
            Self::BitTorrent(form) => Some(form),
            _ => None,
        }
    }

    /// Label for reports: the form for BitTorrent (`bittorrent.<form>`), the benign protocol,
    /// `unknown` when the classifier gave up, `pending` before a verdict.
    pub fn label(self) -> String {
        match self {
            Self::NeedMore => "pending".to_owned(),
            Self::BitTorrent(form) => format!("bittorrent.{}", form.as_str()),
            Self::Benign(benign) => benign.as_str().to_owned(),
            Self::GaveUp => "unknown".to_owned(),
        }
    }
}

/// How far the encrypted-BitTorrent (MSE) heuristic may go on its own (docs/detection.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MseStrictness {
    /// Never block on the MSE shape; only plaintext-selected MSE (I6) is caught.
    Off,
    /// Block an MSE-shaped flow when its flights have the exact sizes the reference clients
    /// write (Transmission/rTorrent, libtorrent/aria2 layouts), or when the client has
    /// corroborating BitTorrent evidence (including the fan-out count).
    #[default]
    Corroborated,
    /// Block every MSE-shaped flow, corroborated or not (more false positives on other fully
    /// encrypted protocols).
    Aggressive,
}

/// Where the classifier runs; the offline inspector enables the mid-stream rules (T2, uTP
/// without SYN) because captures often start inside connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Inside the proxy: every flow is seen from its first byte.
    #[default]
    Proxy,
    /// Offline capture: flows may start mid-stream.
    Offline,
}

/// Per-flow inputs known when a flow starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowContext {
    /// Destination (server-side) port of the flow.
    pub server_port: u16,
    /// Proxy or offline capture.
    pub mode: Mode,
    /// MSE heuristic strictness.
    pub mse_strictness: MseStrictness,
    /// True when the correlator says this client (or this destination) has recent
    /// BitTorrent evidence; lets an MSE-shaped flow be blocked under
    /// [`MseStrictness::Corroborated`].
    pub corroborated: bool,
}

impl FlowContext {
    /// Context for a proxied flow to `server_port` with default strictness and no
    /// corroboration.
    pub fn proxy(server_port: u16) -> Self {
        Self {
            server_port,
            mode: Mode::Proxy,
            mse_strictness: MseStrictness::default(),
            corroborated: false,
        }
    }

    /// Context for an offline (capture) flow to `server_port`.
    pub fn offline(server_port: u16) -> Self {
        Self {
            mode: Mode::Offline,
            ..Self::proxy(server_port)
        }
    }
}
