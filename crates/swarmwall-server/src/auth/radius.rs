//! RADIUS accounts (`accounts_backend = "radius"`): RFC 2865 Access-Request with PAP.
//!
//! The packet code is sans-IO ([`encode_access_request`], [`check_response`]); [`RadiusClient`]
//! sends it over UDP: one fresh socket per login (so the 8-bit identifier never collides),
//! `retries` retransmissions of the same packet per server after `timeout`, then the next server
//! (failover in configured order). Every request carries a Message-Authenticator (RFC 3579,
//! HMAC-MD5; the Blast-RADIUS mitigation) and every answer must carry a valid Response
//! Authenticator, and a valid Message-Authenticator when it has one; anything else is dropped
//! as if it never came. No answer from any server is an outage: the login is refused (never
//! accepted), counted as `accounts_unavailable` and logged (at most one line per 10 s).
//!
//! The shared secret is read from `secret_file` (first line) and kept zeroised-on-drop; it
//! never reaches a log or `Debug` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use zeroize::Zeroizing;

use crate::config::RadiusConfig;

/// Access-Request.
const ACCESS_REQUEST: u8 = 1;
/// Access-Accept.
const ACCESS_ACCEPT: u8 = 2;
/// Access-Reject.
const ACCESS_REJECT: u8 = 3;
/// Access-Challenge (treated as a reject: no interactive challenge over RFC 1929).
const ACCESS_CHALLENGE: u8 = 11;
const ATTR_USER_NAME: u8 = 1;
const ATTR_USER_PASSWORD: u8 = 2;
const ATTR_NAS_IDENTIFIER: u8 = 32;
const ATTR_MESSAGE_AUTHENTICATOR: u8 = 80;
/// Longest PAP password (RFC 2865 section 5.2).
const MAX_PASSWORD: usize = 128;
/// Largest RADIUS packet.
const MAX_PACKET: usize = 4096;

/// What the RADIUS servers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RadiusVerdict {
    /// Access-Accept.
    Accept,
    /// Access-Reject (or Challenge, or credentials RADIUS cannot carry).
    Reject,
    /// No valid answer from any server.
    Unavailable,
}

/// Why the RADIUS client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RadiusError {
    /// The secret file could not be read.
    #[error("{path}: cannot read the RADIUS secret: {source}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad settings.
    #[error("{0}")]
    Invalid(String),
}

/// A RADIUS client over the configured servers.
pub struct RadiusClient {
    servers: Vec<SocketAddr>,
    secret: Zeroizing<Vec<u8>>,
    timeout: Duration,
    retries: u32,
    nas_identifier: String,
    /// Unix ms of the last outage log line (rate limit).
    last_outage_log_ms: AtomicU64,
}

impl std::fmt::Debug for RadiusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusClient")
            .field("servers", &self.servers)
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl RadiusClient {
    /// A client for `[security.radius]`; reads the secret file.
    pub fn from_config(config: &RadiusConfig) -> Result<Self, RadiusError> {
        config
            .validate(crate::config::AccountsBackend::Radius)
            .map_err(|(key, message)| RadiusError::Invalid(format!("key `{key}`: {message}")))?;
        let path = config
            .secret_file
            .as_deref()
            .unwrap_or_else(|| Path::new(""));
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            RadiusError::Secret {
                path: path.to_owned(),
                source,
            }
        })?);
        crate::pseudonym::warn_if_shared(path);
        let secret = text.lines().next().unwrap_or("").trim();
        if secret.is_empty() {
            return Err(RadiusError::Invalid(format!(
                "{}: the RADIUS secret is empty",
                path.display()
            )));
        }
        Ok(Self::new(
            config.servers.clone(),
            secret.as_bytes(),
            config.timeout,
            config.retries,
            &config.nas_identifier,
        ))
    }

    /// A client with explicit settings.
    pub fn new(
        servers: Vec<SocketAddr>,
        secret: &[u8],
        timeout: Duration,
        retries: u32,
        nas_identifier: &str,
    ) -> Self {
        Self {
            servers,
            secret: Zeroizing::new(secret.to_vec()),
            timeout,
            retries,
            nas_identifier: nas_identifier.to_owned(),
            last_outage_log_ms: AtomicU64::new(0),
        }
    }

    /// Ask the servers whether `user`/`password` may log in.
    pub async fn verify(&self, user: &[u8], password: &[u8]) -> RadiusVerdict {
        if user.is_empty()
            || user.len() > 253
            || password.is_empty()
            || password.len() > MAX_PASSWORD
        {
            return RadiusVerdict::Reject;
        }
        let mut authenticator = [0u8; 16];
        rand::fill(&mut authenticator[..]);
        let identifier = rand::random::<u8>();
        let packet = Zeroizing::new(encode_access_request(
            identifier,
            &authenticator,
            user,
            password,
            self.nas_identifier.as_bytes(),
            &self.secret,
        ));
        for server in &self.servers {
            match self
                .exchange(*server, &packet, identifier, &authenticator)
                .await
            {
                Some(verdict) => return verdict,
                None => tracing::debug!(%server, "RADIUS server did not answer; trying the next"),
            }
        }
        self.log_outage();
        RadiusVerdict::Unavailable
    }

    /// Send `packet` to `server` up to `1 + retries` times; `None` when no valid answer came.
    async fn exchange(
        &self,
        server: SocketAddr,
        packet: &[u8],
        identifier: u8,
        authenticator: &[u8; 16],
    ) -> Option<RadiusVerdict> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
        socket.connect(server).await.ok()?;
        let mut buffer = vec![0u8; MAX_PACKET];
        for _ in 0..=self.retries {
            if socket.send(packet).await.is_err() {
                return None;
            }
            let deadline = tokio::time::Instant::now() + self.timeout;
            loop {
                let received = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await;
                let Ok(Ok(length)) = received else {
                    break; // timed out (or ICMP refused): retransmit
                };
                let answer = buffer.get(..length).unwrap_or_default();
                if let Some(code) = check_response(answer, identifier, authenticator, &self.secret)
                {
                    return Some(match code {
                        ACCESS_ACCEPT => RadiusVerdict::Accept,
                        _ => RadiusVerdict::Reject,
                    });
                }
                // Forged or stray datagram: ignore it and keep waiting.
            }
        }
        None
    }

    fn log_outage(&self) {
        let now = crate::store::unix_now_ms();
        let last = self.last_outage_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self
                .last_outage_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                servers = ?self.servers,
                "RADIUS: no server answered; new logins are refused until one does"
            );
        }
    }
}

/// An Access-Request: User-Name, User-Password (RFC 2865 section 5.2 hiding),
/// NAS-Identifier and Message-Authenticator (RFC 3579 section 3.2).
pub fn encode_access_request(
    identifier: u8,
    authenticator: &[u8; 16],
    user: &[u8],
    password: &[u8],
    nas_identifier: &[u8],
    secret: &[u8],
) -> Vec<u8> {
    let mut packet = vec![ACCESS_REQUEST, identifier, 0, 0];
    packet.extend_from_slice(authenticator);
    push_attribute(&mut packet, ATTR_USER_NAME, user);
    let hidden = hide_password(password, authenticator, secret);
    push_attribute(&mut packet, ATTR_USER_PASSWORD, &hidden);
    push_attribute(&mut packet, ATTR_NAS_IDENTIFIER, nas_identifier);
    let mac_at = packet.len() + 2;
    push_attribute(&mut packet, ATTR_MESSAGE_AUTHENTICATOR, &[0u8; 16]);
    set_length(&mut packet);
    let mac = hmac_md5(secret, &packet);
    packet[mac_at..mac_at + 16].copy_from_slice(&mac);
    packet
}

/// The code of a valid answer to the request (`identifier`, `request_authenticator`), or
/// `None`: wrong identifier, bad length, bad Response Authenticator, bad Message-Authenticator,
/// or a code that is not Accept/Reject/Challenge.
pub fn check_response(
    answer: &[u8],
    identifier: u8,
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Option<u8> {
    if answer.len() < 20 || answer[1] != identifier {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([answer[2], answer[3]]));
    if length < 20 || length > answer.len() {
        return None;
    }
    let answer = &answer[..length];
    let code = answer[0];
    if ![ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE].contains(&code) {
        return None;
    }
    // Response Authenticator = MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
    let mut md5 = Md5::new();
    md5.update(&answer[..4]);
    md5.update(request_authenticator);
    md5.update(&answer[20..]);
    md5.update(secret);
    let expected: [u8; 16] = md5.finalize().into();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &answer[4..20])) {
        return None;
    }
    // A Message-Authenticator, when present, must verify (over the packet with the request
    // authenticator in place and the attribute zeroed).
    let mut offset = 20;
    while offset + 2 <= answer.len() {
        let kind = answer[offset];
        let len = usize::from(answer[offset + 1]);
        if len < 2 || offset + len > answer.len() {
            return None;
        }
        if kind == ATTR_MESSAGE_AUTHENTICATOR {
            if len != 18 {
                return None;
            }
            let mut copy = answer.to_vec();
            copy[4..20].copy_from_slice(request_authenticator);
            copy[offset + 2..offset + 18].fill(0);
            let mac = hmac_md5(secret, &copy);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                &mac[..],
                &answer[offset + 2..offset + 18],
            )) {
                return None;
            }
        }
        offset += len;
    }
    (offset == answer.len()).then_some(code)
}

/// RFC 2865 section 5.2: pad to 16 bytes, XOR each block with MD5(secret + previous).
fn hide_password(password: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
    let blocks = password.len().div_ceil(16).max(1);
    let mut out = Zeroizing::new(vec![0u8; blocks * 16]);
    out[..password.len()].copy_from_slice(password);
    let mut previous: Vec<u8> = authenticator.to_vec();
    for block in 0..blocks {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(&previous);
        let key: [u8; 16] = md5.finalize().into();
        let chunk = &mut out[block * 16..block * 16 + 16];
        for (byte, k) in chunk.iter_mut().zip(key) {
            *byte ^= k;
        }
        previous = chunk.to_vec();
    }
    out.to_vec()
}

fn push_attribute(packet: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let value = value.get(..253).unwrap_or(value);
    packet.push(kind);
    packet.push(u8::try_from(value.len() + 2).unwrap_or(u8::MAX));
    packet.extend_from_slice(value);
}

fn set_length(packet: &mut [u8]) {
    let length = u16::try_from(packet.len()).unwrap_or(u16::MAX);
    packet[2..4].copy_from_slice(&length.to_be_bytes());
}

fn hmac_md5(secret: &[u8], data: &[u8]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a server would build it.
    fn answer(code: u8, id: u8, request: &[u8; 16], secret: &[u8], with_mac: bool) -> Vec<u8> {
        let mut packet = vec![code, id, 0, 0];
        packet.extend_from_slice(request);
        if with_mac {
            push_attribute(&mut packet, ATTR_MESSAGE_AUTHENTICATOR, &[0; 16]);
        }
        set_length(&mut packet);
        if with_mac {
            let mac = hmac_md5(secret, &packet);
            packet[22..38].copy_from_slice(&mac);
        }
        let mut md5 = Md5::new();
        md5.update(&packet[..4]);
        md5.update(request);
        md5.update(&packet[20..]);
        md5.update(secret);
        let auth: [u8; 16] = md5.finalize().into();
        packet[4..20].copy_from_slice(&auth);
        packet
    }

    #[test]
    fn password_hiding_round_trips_and_hides() {
        let auth = [7u8; 16];
        let hidden = hide_password(b"a password longer than sixteen", &auth, b"s3cret");
        assert_eq!(hidden.len(), 32);
        assert!(!hidden.windows(8).any(|w| w == b"password"));
        // Unhide as a server does.
        let mut previous = auth.to_vec();
        let mut clear = Vec::new();
        for chunk in hidden.chunks(16) {
            let mut md5 = Md5::new();
            md5.update(b"s3cret");
            md5.update(&previous);
            let key: [u8; 16] = md5.finalize().into();
            clear.extend(chunk.iter().zip(key).map(|(c, k)| c ^ k));
            previous = chunk.to_vec();
        }
        assert!(clear.starts_with(b"a password longer than sixteen"));
    }

    #[test]
    fn request_carries_a_valid_message_authenticator() {
        let auth = [1u8; 16];
        let packet = encode_access_request(9, &auth, b"alice", b"pw", b"nas", b"secret");
        assert_eq!(packet[0], ACCESS_REQUEST);
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[2], packet[3]])),
            packet.len()
        );
        let at = packet.len() - 16;
        let mut zeroed = packet.clone();
        zeroed[at..].fill(0);
        assert_eq!(hmac_md5(b"secret", &zeroed)[..], packet[at..]);
    }

    #[test]
    fn only_authentic_answers_count() {
        let request = [3u8; 16];
        let good = answer(ACCESS_ACCEPT, 5, &request, b"secret", true);
        assert_eq!(
            check_response(&good, 5, &request, b"secret"),
            Some(ACCESS_ACCEPT)
        );
        let plain = answer(ACCESS_REJECT, 5, &request, b"secret", false);
        assert_eq!(
            check_response(&plain, 5, &request, b"secret"),
            Some(ACCESS_REJECT)
        );
        // Wrong identifier, wrong secret, tampered code, truncated, bad MAC.
        assert_eq!(check_response(&good, 6, &request, b"secret"), None);
        assert_eq!(check_response(&good, 5, &request, b"other"), None);
        let mut tampered = good.clone();
        tampered[0] = ACCESS_REJECT;
        assert_eq!(check_response(&tampered, 5, &request, b"secret"), None);
        assert_eq!(check_response(&good[..19], 5, &request, b"secret"), None);
        let forged = answer(ACCESS_ACCEPT, 5, &request, b"other", true);
        assert_eq!(check_response(&forged, 5, &request, b"secret"), None);
    }
}
