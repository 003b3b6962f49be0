//! `swarmwall probe`: an active self-test of a running SOCKS5 node (swarmwall or any other).
//!
//! The probe starts its own targets (one TCP listener or UDP responder per form, on
//! [`ProbeConfig::target_bind`]) and sends synthetic traffic of every BitTorrent wire form
//! through the proxy, plus benign controls (see [`forms`]). Both ends follow the same script,
//! so the probe knows exactly whether the bytes reached the target and whether the reply came
//! back:
//!
//! - **passed**: the target received every byte the client sent and every reply byte came
//!   back to the client, unchanged;
//! - **blocked**: the proxy refused the request, closed the connection, or a byte or a reply
//!   never arrived within [`ProbeConfig::timeout`].
//!
//! Enforcement holds when every BitTorrent form is blocked and every control passes
//! ([`ProbeReport::enforced`]). A proxy that cannot be used at all (connection refused, not
//! SOCKS5, authentication rejected) is a [`ProbeError`], not a report.
//!
//! Layout: [`socks`] is a small SOCKS5 client, [`forms`] builds the scripts, `targets` plays
//! the far end.

pub mod forms;
pub mod socks;
mod targets;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

pub use forms::FormKind;
pub use socks::{Credentials, SocksClient, SocksError};

use forms::{Flight, Form, Script};
use targets::{Target, TargetProgress};

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The SOCKS5 proxy (`HOST:PORT`), resolved when the probe starts.
    pub proxy: String,
    /// RFC 1929 credentials, if the proxy needs them.
    pub credentials: Option<Credentials>,
    /// Where the probe's own targets listen. The IP must be one the proxy can reach (and is
    /// allowed to: swarmwall denies loopback destinations unless `--allow-destination` or a
    /// policy rule allows them). Port 0 gives each form its own ephemeral port; a fixed port
    /// `P` uses `P`, `P+1`, ... one per form.
    pub target_bind: SocketAddr,
    /// Bound on every step: connect, each flight, each reply.
    pub timeout: Duration,
}

/// The outcome of one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The proxy stopped it.
    Blocked,
    /// The bytes reached the target and the reply came back.
    Passed,
}

impl Outcome {
    /// `blocked` or `passed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Passed => "passed",
        }
    }
}

/// The result of one form.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FormResult {
    /// Form name (`peer_wire_handshake`, `http_get`, ...).
    pub form: &'static str,
    /// BitTorrent or control.
    pub kind: FormKind,
    /// Blocked or passed.
    pub outcome: Outcome,
    /// What happened, for people.
    pub detail: String,
    /// Time the form took, milliseconds.
    pub elapsed_ms: u64,
}

impl FormResult {
    /// True when this result is what an enforcing proxy should produce.
    pub fn as_expected(&self) -> bool {
        match self.kind {
            FormKind::BitTorrent => self.outcome == Outcome::Blocked,
            FormKind::Control => self.outcome == Outcome::Passed,
        }
    }
}

/// Every form's result, in the order they ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeReport {
    /// The proxy address probed.
    pub proxy: SocketAddr,
    /// One entry per form.
    pub results: Vec<FormResult>,
}

impl ProbeReport {
    /// True when every BitTorrent form was blocked and every control passed.
    pub fn enforced(&self) -> bool {
        self.results.iter().all(FormResult::as_expected)
    }

    /// BitTorrent forms that passed.
    pub fn leaked(&self) -> impl Iterator<Item = &FormResult> {
        self.results
            .iter()
            .filter(|r| r.kind == FormKind::BitTorrent && r.outcome == Outcome::Passed)
    }

    /// Controls that were blocked.
    pub fn broken_controls(&self) -> impl Iterator<Item = &FormResult> {
        self.results
            .iter()
            .filter(|r| r.kind == FormKind::Control && r.outcome == Outcome::Blocked)
    }

    /// One sentence on the overall result.
    pub fn summary(&self) -> String {
        let total_bt = self
            .results
            .iter()
            .filter(|r| r.kind == FormKind::BitTorrent)
            .count();
        let total_controls = self.results.len() - total_bt;
        let leaked = self.leaked().count();
        let broken = self.broken_controls().count();
        let blocked_any = self.results.iter().any(|r| r.outcome == Outcome::Blocked);
        if self.enforced() {
            format!(
                "enforcement holds: {total_bt}/{total_bt} BitTorrent forms blocked, \
                 {total_controls}/{total_controls} controls passed"
            )
        } else if !blocked_any {
            format!(
                "nothing was blocked: every one of the {total_bt} BitTorrent forms passed \
                 through the proxy"
            )
        } else {
            let mut parts = Vec::new();
            if leaked > 0 {
                parts.push(format!(
                    "{leaked}/{total_bt} BitTorrent forms passed ({})",
                    self.leaked().map(|r| r.form).collect::<Vec<_>>().join(", ")
                ));
            }
            if broken > 0 {
                parts.push(format!(
                    "{broken}/{total_controls} controls were blocked ({})",
                    self.broken_controls()
                        .map(|r| r.form)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            format!("enforcement does not hold: {}", parts.join("; "))
        }
    }
}

/// Why the probe could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The proxy address did not resolve.
    #[error("cannot resolve the proxy address {0:?}")]
    Resolve(String),
    /// The proxy cannot be used (connection refused, not SOCKS5, authentication failed...).
    #[error("the proxy at {proxy} cannot be used: {source}")]
    Proxy {
        /// Proxy address.
        proxy: SocketAddr,
        /// What went wrong.
        source: SocksError,
    },
    /// The target address is unusable.
    #[error("--target-bind {0} must be a specific address the proxy can reach, not a wildcard")]
    TargetAddress(SocketAddr),
    /// A target could not bind.
    #[error("cannot bind the probe's target on {address}: {source}")]
    TargetBind {
        /// Address tried.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Run every form through the proxy and report.
pub async fn run(config: &ProbeConfig) -> Result<ProbeReport, ProbeError> {
    let proxy = tokio::net::lookup_host(&config.proxy)
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| ProbeError::Resolve(config.proxy.clone()))?;
    if config.target_bind.ip().is_unspecified() {
        return Err(ProbeError::TargetAddress(config.target_bind));
    }
    let client = SocksClient::new(proxy, config.credentials.clone(), config.timeout);
    // Preflight: is this a usable SOCKS5 proxy at all?
    drop(
        client
            .handshake()
            .await
            .map_err(|source| ProbeError::Proxy { proxy, source })?,
    );

    let target_host = config.target_bind.ip().to_string();
    let forms = forms::all_forms(&mut rand::rng(), &target_host);
    let mut targets = Vec::with_capacity(forms.len());
    for (index, form) in forms.iter().enumerate() {
        let mut address = config.target_bind;
        if address.port() != 0 {
            address.set_port(address.port().saturating_add(index as u16));
        }
        let target = Target::start(address, form.script.clone(), config.timeout)
            .await
            .map_err(|source| ProbeError::TargetBind { address, source })?;
        targets.push(target);
    }

    let mut results: Vec<Option<FormResult>> = vec![None; forms.len()];
    // Controls, then plain BitTorrent forms (UDP ones concurrently: a dropped datagram costs a
    // full timeout), then MSE.
    let mut udp_batch = tokio::task::JoinSet::new();
    for (index, (form, target)) in forms.iter().zip(&targets).enumerate() {
        let concurrent = form.kind == FormKind::BitTorrent && matches!(form.script, Script::Udp(_));
        if concurrent {
            let client = client.clone();
            let form = form.clone();
            let address = target.address();
            let progress = target.progress();
            udp_batch
                .spawn(async move { (index, run_form(&client, &form, address, &progress).await) });
            continue;
        }
        if form.name == "mse_handshake" {
            while let Some(joined) = udp_batch.join_next().await {
                if let Ok((done, result)) = joined {
                    results[done] = Some(result);
                }
            }
        }
        results[index] = Some(run_form(&client, form, target.address(), &target.progress()).await);
    }
    while let Some(joined) = udp_batch.join_next().await {
        if let Ok((done, result)) = joined {
            results[done] = Some(result);
        }
    }
    for target in targets {
        target.stop();
    }
    let results = results
        .into_iter()
        .zip(&forms)
        .map(|(result, form)| {
            result.unwrap_or_else(|| FormResult {
                form: form.name,
                kind: form.kind,
                outcome: Outcome::Blocked,
                detail: "the probe task for this form failed".to_owned(),
                elapsed_ms: 0,
            })
        })
        .collect();
    Ok(ProbeReport { proxy, results })
}

async fn run_form(
    client: &SocksClient,
    form: &Form,
    target: SocketAddr,
    progress: &TargetProgress,
) -> FormResult {
    let started = Instant::now();
    let attempt = match &form.script {
        Script::Tcp(flights) => run_tcp(client, flights, target, progress).await,
        Script::Udp(exchanges) => run_udp(client, exchanges, target, progress).await,
    };
    let (outcome, detail) = match attempt {
        Ok(detail) => (Outcome::Passed, detail),
        Err(stopped) => (Outcome::Blocked, stopped.to_string()),
    };
    FormResult {
        form: form.name,
        kind: form.kind,
        outcome,
        detail,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Play the client side of a TCP script. `Ok(detail)` when every flight went through.
async fn run_tcp(
    client: &SocksClient,
    flights: &[Flight],
    target: SocketAddr,
    progress: &TargetProgress,
) -> Result<String, Stopped> {
    let wait = client.timeout();
    let mut stream = client.connect(target).await.map_err(Stopped::Connect)?;
    let expected_sent: usize = flights
        .iter()
        .map(|f| match f {
            Flight::Client(bytes) => bytes.len(),
            Flight::Target(_) => 0,
        })
        .sum();
    let expected_back: usize = flights
        .iter()
        .map(|f| match f {
            Flight::Target(bytes) => bytes.len(),
            Flight::Client(_) => 0,
        })
        .sum();
    let mut received_back = 0usize;
    for flight in flights {
        match flight {
            Flight::Client(bytes) => {
                if let Err(error) = timeout(wait, stream.write_all(bytes))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                {
                    return Err(Stopped::Tcp {
                        why: format!("sending failed ({error})"),
                        target_received: progress.client_bytes().min(expected_sent),
                        expected_sent,
                        received_back,
                        expected_back,
                    });
                }
            }
            Flight::Target(bytes) => match read_expected(&mut stream, bytes, wait).await {
                Ok(()) => received_back += bytes.len(),
                Err((got, why)) => {
                    return Err(Stopped::Tcp {
                        why,
                        target_received: progress.client_bytes().min(expected_sent),
                        expected_sent,
                        received_back: received_back + got,
                        expected_back,
                    });
                }
            },
        }
    }
    Ok(format!(
        "target received all {expected_sent} bytes; all {expected_back} reply bytes came back"
    ))
}

/// Why a form's script stopped before its end (the detail of a `blocked` result).
#[derive(Debug, thiserror::Error)]
enum Stopped {
    /// The proxy refused or failed the CONNECT.
    #[error("CONNECT failed: {0}")]
    Connect(SocksError),
    /// A TCP flight was not delivered or its reply did not come back whole.
    #[error(
        "{why}; target received {target_received} of {expected_sent} bytes, {received_back} of \
         {expected_back} reply bytes came back"
    )]
    Tcp {
        why: String,
        target_received: usize,
        expected_sent: usize,
        received_back: usize,
        expected_back: usize,
    },
    /// No local UDP socket.
    #[error("cannot bind a local UDP socket: {0}")]
    UdpBind(std::io::Error),
    /// The local UDP socket has no address.
    #[error("cannot read the local UDP address: {0}")]
    UdpLocalAddress(std::io::Error),
    /// The proxy refused or failed the UDP ASSOCIATE.
    #[error("UDP ASSOCIATE failed: {0}")]
    Associate(SocksError),
    /// A datagram could not be sent to the relay.
    #[error("sending to the relay {relay} failed: {source}")]
    UdpSend {
        relay: SocketAddr,
        source: std::io::Error,
    },
    /// A datagram's reply did not come back in time.
    #[error(
        "no reply to datagram {number} of {total} within the timeout; target received \
         {target_received} of {total} datagrams"
    )]
    UdpNoReply {
        number: usize,
        total: usize,
        target_received: usize,
    },
}

/// Read exactly `expected.len()` bytes and compare. `Err((bytes read, why))` otherwise.
async fn read_expected(
    stream: &mut TcpStream,
    expected: &[u8],
    wait: Duration,
) -> Result<(), (usize, String)> {
    let mut buf = vec![0u8; expected.len()];
    let mut filled = 0usize;
    let deadline = tokio::time::Instant::now() + wait;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match tokio::time::timeout_at(deadline, stream.read(rest)).await {
            Err(_) => return Err((filled, "no reply within the timeout".to_owned())),
            Ok(Ok(0)) => return Err((filled, "the proxy closed the connection".to_owned())),
            Ok(Ok(n)) => filled += n,
            Ok(Err(error)) => {
                return Err((filled, format!("the connection failed ({error})")));
            }
        }
    }
    if buf == expected {
        Ok(())
    } else {
        Err((filled, "the reply came back altered".to_owned()))
    }
}

/// Play the client side of a UDP script through a fresh association.
async fn run_udp(
    client: &SocksClient,
    exchanges: &[(Vec<u8>, Vec<u8>)],
    target: SocketAddr,
    progress: &TargetProgress,
) -> Result<String, Stopped> {
    let wait = client.timeout();
    let local_ip = match client.proxy().ip() {
        ip @ IpAddr::V4(v4) if v4.is_loopback() => ip,
        ip @ IpAddr::V6(v6) if v6.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0))
        .await
        .map_err(Stopped::UdpBind)?;
    let local = socket.local_addr().map_err(Stopped::UdpLocalAddress)?;
    let (control, relay) = client
        .udp_associate(local)
        .await
        .map_err(Stopped::Associate)?;
    let total = exchanges.len();
    let mut buf = vec![0u8; 65_536];
    for (done, (request, reply)) in exchanges.iter().enumerate() {
        let datagram = socks::encode_udp(target, request);
        socket
            .send_to(&datagram, relay)
            .await
            .map_err(|source| Stopped::UdpSend { relay, source })?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut answered = false;
        // Bounded: every iteration either returns or consumes one datagram before the deadline.
        while !answered {
            let received = match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            {
                Err(_) => break,
                Ok(Err(_)) => break,
                Ok(Ok((len, _from))) => buf.get(..len).unwrap_or_default(),
            };
            if let Some((source, payload)) = socks::decode_udp(received)
                && source == target
                && payload == reply.as_slice()
            {
                answered = true;
            }
        }
        if !answered {
            drop(control);
            return Err(Stopped::UdpNoReply {
                number: done + 1,
                total,
                target_received: progress.datagrams().min(total),
            });
        }
    }
    drop(control);
    Ok(format!(
        "target received all {total} datagrams; all {total} replies came back"
    ))
}
