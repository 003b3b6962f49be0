//! The client side of the SOCKS5 handshake as a sans-IO state machine.
//!
//! ```text
//! AwaitMethod ──► (method 0x02) AwaitAuth ──► Ready ──► AwaitReply ──► Done
//!      │ (method 0x00) ──────────────────────►│               │
//!      └────────────── any error ─────────────┴───────────────┴──► Failed
//! ```
//!
//! [`ClientHandshake::new`] queues the greeting (and, with credentials, offers RFC 1929).
//! The caller writes what [`ClientHandshake::poll_transmit`] returns, reads at most
//! [`ClientHandshake::read_hint`] bytes (never more than the current server message, so no
//! payload byte after the reply is consumed) and feeds them to
//! [`ClientHandshake::handle_input`]. A request given with [`ClientHandshake::request`] is
//! sent as soon as the negotiation allows. Nothing here awaits or reads a clock.

use super::VERSION;
use super::wire::{
    Address, Error, Greeting, Method, MethodSelection, PasswordRequest, Reply, ReplyMessage,
    Request,
};

/// Why the client side of a SOCKS5 exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server's version byte is not 5: it does not speak SOCKS5.
    #[error("not a SOCKS5 server (reply version byte {0:#04x})")]
    NotSocks5(u8),
    /// The server accepted none of the offered methods (the offer is named).
    #[error("the proxy accepted no offered authentication method (offered {0})")]
    NoAcceptableMethod(&'static str),
    /// The server chose a method that was not offered.
    #[error("the proxy chose method {0:#04x}, which was not offered")]
    UnexpectedMethod(u8),
    /// The server requires username/password and none was given.
    #[error("the proxy requires username/password authentication (use --user and --pass)")]
    CredentialsRequired,
    /// RFC 1929 authentication was rejected with this status byte.
    #[error("authentication failed (RFC 1929 status {0:#04x})")]
    AuthFailed(u8),
    /// The request was refused with this RFC 1928 §6 reply code.
    #[error("the proxy refused the request: reply {0:#04x} ({text})", text = reply_text(*.0))]
    Refused(u8),
    /// The reply did not parse.
    #[error("malformed SOCKS5 reply: {0}")]
    Malformed(Error),
    /// Username or password empty or longer than 255 bytes.
    #[error("username and password must be 1 to 255 bytes")]
    BadCredentials,
    /// Input arrived when no server message was expected.
    #[error("the proxy sent bytes before it was asked anything")]
    Unexpected,
}

/// RFC 1928 §6 reply text for a reply code.
fn reply_text(code: u8) -> &'static str {
    match Reply::from_byte(code) {
        Some(Reply::Succeeded) => "succeeded",
        Some(Reply::GeneralFailure) => "general SOCKS server failure",
        Some(Reply::NotAllowed) => "connection not allowed by ruleset",
        Some(Reply::NetworkUnreachable) => "network unreachable",
        Some(Reply::HostUnreachable) => "host unreachable",
        Some(Reply::ConnectionRefused) => "connection refused",
        Some(Reply::TtlExpired) => "TTL expired",
        Some(Reply::CommandNotSupported) => "command not supported",
        Some(Reply::AddressTypeNotSupported) => "address type not supported",
        None => "unassigned",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitMethod,
    AwaitAuth,
    Ready,
    AwaitReply,
    Done,
    Failed,
}

/// Client handshake state machine. Buffers at most one server message (≤ 262 bytes).
#[derive(Debug)]
pub struct ClientHandshake {
    state: State,
    credentials: Option<PasswordRequest>,
    pending_request: Option<Request>,
    buffer: Vec<u8>,
    transmit: Vec<u8>,
    bound: Option<Address>,
    error: Option<ClientError>,
}

impl ClientHandshake {
    /// Start a handshake: queues the greeting offering "no authentication", plus RFC 1929
    /// username/password when `credentials` are given (each field must be 1..=255 bytes).
    pub fn new(credentials: Option<PasswordRequest>) -> Result<Self, ClientError> {
        if let Some(credentials) = &credentials {
            let valid = |field: &[u8]| (1..=255).contains(&field.len());
            if !valid(&credentials.username) || !valid(&credentials.password) {
                return Err(ClientError::BadCredentials);
            }
        }
        let mut methods = vec![Method::NO_AUTH];
        if credentials.is_some() {
            methods.push(Method::USERNAME_PASSWORD);
        }
        let mut transmit = Vec::new();
        Greeting { methods }.encode(&mut transmit);
        Ok(Self {
            state: State::AwaitMethod,
            credentials,
            pending_request: None,
            buffer: Vec::new(),
            transmit,
            bound: None,
            error: None,
        })
    }

    /// Send `request` as soon as the negotiation is done (at once if it already is). A second
    /// request, or one after the reply, is ignored.
    pub fn request(&mut self, request: Request) {
        match self.state {
            State::Ready => {
                request.encode(&mut self.transmit);
                self.state = State::AwaitReply;
            }
            State::AwaitMethod | State::AwaitAuth if self.pending_request.is_none() => {
                self.pending_request = Some(request);
            }
            _ => {}
        }
    }

    /// Bytes to write to the server, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    /// True while the machine waits for server bytes (the caller should read).
    pub fn wants_input(&self) -> bool {
        matches!(
            self.state,
            State::AwaitMethod | State::AwaitAuth | State::AwaitReply
        )
    }

    /// True once negotiated and no request is pending: the caller may call
    /// [`ClientHandshake::request`] (or use the connection for something else).
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// The server message being waited for, for error messages: `greeting` (the method
    /// selection), `authentication` (the RFC 1929 status) or `request reply`; `None` when no
    /// input is expected.
    pub fn waiting_for(&self) -> Option<&'static str> {
        match self.state {
            State::AwaitMethod => Some("greeting"),
            State::AwaitAuth => Some("authentication"),
            State::AwaitReply => Some("request reply"),
            State::Ready | State::Done | State::Failed => None,
        }
    }

    /// The bound address (BND.ADDR/BND.PORT) once the request succeeded.
    pub fn bound(&self) -> Option<&Address> {
        self.bound.as_ref()
    }

    /// The error that ended the handshake, if it failed.
    pub fn error(&self) -> Option<&ClientError> {
        self.error.as_ref()
    }

    /// How many bytes to read next: enough to make progress, never past the end of the
    /// server message being waited for. 0 when no input is expected.
    pub fn read_hint(&self) -> usize {
        let have = self.buffer.len();
        let whole = match self.state {
            State::AwaitMethod | State::AwaitAuth => 2,
            State::AwaitReply => match (self.buffer.get(3), self.buffer.get(4)) {
                (Some(0x01), _) => 4 + 4 + 2,
                (Some(0x04), _) => 4 + 16 + 2,
                (Some(0x03), Some(&len)) => 4 + 1 + usize::from(len) + 2,
                // Until the address type and first address byte are in: the shortest reply
                // prefix that tells the length.
                _ => 5,
            },
            State::Ready | State::Done | State::Failed => return 0,
        };
        whole.saturating_sub(have).max(1)
    }

    /// Feed bytes read from the server. `Err` once the handshake failed (and on every later
    /// call); bytes beyond the reply are kept for [`ClientHandshake::take_remaining`].
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if !self.wants_input() {
            if bytes.is_empty() {
                return Ok(());
            }
            if self.state == State::Done {
                self.buffer.extend_from_slice(bytes);
                return Ok(());
            }
            return Err(self.fail(ClientError::Unexpected));
        }
        self.buffer.extend_from_slice(bytes);
        // Bounded: every iteration consumes a whole message or returns.
        loop {
            let progressed = match self.state {
                State::AwaitMethod => self.process_method()?,
                State::AwaitAuth => self.process_auth()?,
                State::AwaitReply => self.process_reply()?,
                State::Ready | State::Done | State::Failed => false,
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Server bytes received after the reply (payload, when the caller read past
    /// [`ClientHandshake::read_hint`]).
    pub fn take_remaining(&mut self) -> Vec<u8> {
        if self.state == State::Done {
            std::mem::take(&mut self.buffer)
        } else {
            Vec::new()
        }
    }

    fn process_method(&mut self) -> Result<bool, ClientError> {
        let (selection, consumed) = match MethodSelection::decode(&self.buffer) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(false),
            Err(Error::WrongVersion(version)) => {
                return Err(self.fail(ClientError::NotSocks5(version)));
            }
            Err(error) => return Err(self.fail(ClientError::Malformed(error))),
        };
        self.buffer.drain(..consumed);
        match (selection.method, self.credentials.take()) {
            (Method::NO_AUTH, _) => self.negotiated(),
            (Method::USERNAME_PASSWORD, Some(credentials)) => {
                credentials.encode(&mut self.transmit);
                self.state = State::AwaitAuth;
            }
            (Method::USERNAME_PASSWORD, None) => {
                return Err(self.fail(ClientError::CredentialsRequired));
            }
            (Method::NO_ACCEPTABLE, credentials) => {
                let offered = if credentials.is_some() {
                    "no-auth and username/password"
                } else {
                    "no-auth"
                };
                return Err(self.fail(ClientError::NoAcceptableMethod(offered)));
            }
            (Method(other), _) => return Err(self.fail(ClientError::UnexpectedMethod(other))),
        }
        Ok(true)
    }

    fn process_auth(&mut self) -> Result<bool, ClientError> {
        // RFC 1929 status: VER STATUS. The version byte is not checked: servers that answer
        // with 0x05 there are common and the status is what matters.
        let Some(&status) = self.buffer.get(1) else {
            return Ok(false);
        };
        self.buffer.drain(..2);
        if status != 0x00 {
            return Err(self.fail(ClientError::AuthFailed(status)));
        }
        self.negotiated();
        Ok(true)
    }

    fn process_reply(&mut self) -> Result<bool, ClientError> {
        // Version and reply code decide before the bound address is complete.
        match self.buffer.as_slice() {
            [version, ..] if *version != VERSION => {
                let version = *version;
                return Err(self.fail(ClientError::NotSocks5(version)));
            }
            [_, code, ..] if *code != Reply::Succeeded as u8 => {
                let code = *code;
                return Err(self.fail(ClientError::Refused(code)));
            }
            _ => {}
        }
        let (message, consumed) = match ReplyMessage::decode(&self.buffer) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(false),
            Err(error) => return Err(self.fail(ClientError::Malformed(error))),
        };
        self.buffer.drain(..consumed);
        self.bound = Some(message.bound);
        self.state = State::Done;
        Ok(false)
    }

    fn negotiated(&mut self) {
        self.state = State::Ready;
        if let Some(request) = self.pending_request.take() {
            self.request(request);
        }
    }

    fn fail(&mut self, error: ClientError) -> ClientError {
        self.state = State::Failed;
        self.buffer.clear();
        self.error = Some(error.clone());
        error
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::socks5::{Command, Event, ServerHandshake};

    fn credentials(username: &str, password: &str) -> PasswordRequest {
        PasswordRequest {
            username: username.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
        }
    }

    fn connect(target: &str) -> Request {
        Request {
            command: Command::Connect,
            destination: Address::Ip(target.parse().unwrap()),
        }
    }

    /// Run the client against the core's own server machine, feeding the client exactly
    /// `read_hint` bytes at a time; the server accepts "alice"/"secret" and answers requests
    /// with `reply`.
    fn against_server(
        client: &mut ClientHandshake,
        require_auth: bool,
        reply: Reply,
    ) -> Result<(), ClientError> {
        let mut server = ServerHandshake::new(require_auth);
        let mut to_client = Vec::new();
        for _round in 0..20 {
            if let Some(bytes) = client.poll_transmit() {
                server.handle_input(&bytes);
            }
            while let Some(event) = server.poll_event() {
                match event {
                    Event::Authenticate(request) => server.handle_auth_result(
                        request.username == b"alice" && request.password == b"secret",
                    ),
                    Event::Request(_) => {
                        // The server's own bytes (method selection, auth reply) go first.
                        if let Some(bytes) = server.poll_transmit() {
                            to_client.extend_from_slice(&bytes);
                        }
                        ReplyMessage {
                            reply,
                            bound: Address::Ip("192.0.2.7:4242".parse().unwrap()),
                        }
                        .encode(&mut to_client);
                    }
                    Event::Failed(_) => {}
                }
            }
            if let Some(bytes) = server.poll_transmit() {
                to_client.extend_from_slice(&bytes);
            }
            while client.wants_input() && !to_client.is_empty() {
                let take = client.read_hint().min(to_client.len());
                let chunk: Vec<u8> = to_client.drain(..take).collect();
                client.handle_input(&chunk)?;
            }
            if !client.wants_input() && client.poll_transmit().is_none() {
                return Ok(());
            }
        }
        panic!("no progress");
    }

    #[test]
    fn connect_without_auth() {
        let mut client = ClientHandshake::new(None).unwrap();
        client.request(connect("192.0.2.1:80"));
        against_server(&mut client, false, Reply::Succeeded).unwrap();
        assert_eq!(
            client.bound(),
            Some(&Address::Ip(
                "192.0.2.7:4242".parse::<SocketAddr>().unwrap()
            ))
        );
    }

    #[test]
    fn connect_with_password() {
        let mut client = ClientHandshake::new(Some(credentials("alice", "secret"))).unwrap();
        client.request(connect("[2001:db8::1]:443"));
        against_server(&mut client, true, Reply::Succeeded).unwrap();
        assert!(client.bound().is_some());
    }

    #[test]
    fn negotiation_only_then_ready() {
        let mut client = ClientHandshake::new(Some(credentials("alice", "secret"))).unwrap();
        against_server(&mut client, true, Reply::Succeeded).unwrap();
        assert!(client.is_ready());
        assert_eq!(client.bound(), None);
    }

    #[test]
    fn refusals_are_typed() {
        let mut client = ClientHandshake::new(Some(credentials("alice", "wrong"))).unwrap();
        assert_eq!(
            against_server(&mut client, true, Reply::Succeeded),
            Err(ClientError::AuthFailed(0x01))
        );
        let mut client = ClientHandshake::new(None).unwrap();
        assert_eq!(
            against_server(&mut client, true, Reply::Succeeded),
            Err(ClientError::NoAcceptableMethod("no-auth"))
        );
        let mut client = ClientHandshake::new(None).unwrap();
        client.request(connect("192.0.2.1:80"));
        let refused = against_server(&mut client, false, Reply::NotAllowed);
        assert_eq!(refused, Err(ClientError::Refused(0x02)));
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("0x02 (connection not allowed by ruleset)")
        );
        assert!(client.error().is_some());
        assert_eq!(
            client.handle_input(b"x"),
            Err(ClientError::Refused(0x02)),
            "a failed handshake stays failed"
        );
    }

    #[test]
    fn server_answers_that_were_not_offered() {
        let mut client = ClientHandshake::new(None).unwrap();
        assert_eq!(
            client.handle_input(&[0x05, 0x02]),
            Err(ClientError::CredentialsRequired)
        );
        let mut client = ClientHandshake::new(None).unwrap();
        assert_eq!(
            client.handle_input(&[0x05, 0x01]),
            Err(ClientError::UnexpectedMethod(0x01))
        );
        let mut client = ClientHandshake::new(None).unwrap();
        assert_eq!(
            client.handle_input(b"HTTP/1.1 400"),
            Err(ClientError::NotSocks5(b'H'))
        );
        let mut client = ClientHandshake::new(None).unwrap();
        client.request(connect("192.0.2.1:80"));
        client.handle_input(&[0x05, 0x00]).unwrap();
        assert_eq!(
            client.handle_input(&[0x05, 0x00, 0x00, 0x09]),
            Err(ClientError::Malformed(Error::AddressTypeNotSupported(0x09)))
        );
    }

    #[test]
    fn bad_credentials_are_refused_before_anything_is_sent() {
        assert_eq!(
            ClientHandshake::new(Some(credentials("", "x"))).err(),
            Some(ClientError::BadCredentials)
        );
        assert_eq!(
            ClientHandshake::new(Some(credentials("u", &"p".repeat(256)))).err(),
            Some(ClientError::BadCredentials)
        );
    }

    #[test]
    fn read_hint_never_reads_past_the_reply() {
        let mut client = ClientHandshake::new(None).unwrap();
        client.request(connect("192.0.2.1:80"));
        assert_eq!(client.poll_transmit(), Some(vec![0x05, 0x01, 0x00]));
        assert_eq!(client.read_hint(), 2);
        client.handle_input(&[0x05, 0x00]).unwrap();
        let request = client.poll_transmit().unwrap();
        assert_eq!(request, vec![0x05, 0x01, 0x00, 0x01, 192, 0, 2, 1, 0, 80]);
        // A domain-name bound address: 4 + 1 + 9 + 2 bytes.
        let mut reply = vec![0x05, 0x00, 0x00, 0x03, 9];
        reply.extend_from_slice(b"proxy.lan");
        reply.extend_from_slice(&[0x10, 0x00]);
        let mut fed = 0;
        while client.wants_input() {
            let hint = client.read_hint();
            assert!(
                fed + hint <= reply.len(),
                "hint {hint} after {fed} overshoots"
            );
            client.handle_input(&reply[fed..fed + hint]).unwrap();
            fed += hint;
        }
        assert_eq!(fed, reply.len());
        assert_eq!(
            client.bound(),
            Some(&Address::Domain("proxy.lan".into(), 4096))
        );
        // Bytes beyond the reply are kept, not lost.
        client.handle_input(b"payload").unwrap();
        assert_eq!(client.take_remaining(), b"payload");
    }

    proptest! {
        #[test]
        fn never_panics_on_any_server_bytes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
            with_credentials in any::<bool>(),
        ) {
            let credentials = with_credentials.then(|| credentials("u", "p"));
            let mut client = ClientHandshake::new(credentials).unwrap();
            client.request(connect("192.0.2.1:80"));
            for chunk in chunks {
                let _ = client.poll_transmit();
                let _ = client.read_hint();
                if client.handle_input(&chunk).is_err() {
                    prop_assert!(client.error().is_some());
                    prop_assert!(!client.wants_input());
                }
            }
        }
    }
}
