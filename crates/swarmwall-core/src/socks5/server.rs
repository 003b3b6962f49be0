//! The server side of the SOCKS5 handshake as a sans-IO state machine.
//!
//! ```text
//! Greeting ──► (method 0x02) Auth ──► AwaitAuth ──► Request ──► Done
//!     │               │  (method 0x00) ──────────────►│
//!     └───────────────┴──── any error ────────────────┴──► Failed
//! ```
//!
//! Drive it like quinn-proto's `Connection`: call [`ServerHandshake::handle_input`] with
//! bytes from the client, then drain [`ServerHandshake::poll_transmit`] (bytes to write) and
//! [`ServerHandshake::poll_event`] (credentials to check, a request to carry out, or the
//! failure that ends the handshake). Answer credentials with
//! [`ServerHandshake::handle_auth_result`]. The request is the machine's last event: the
//! caller carries it out and writes the reply itself with [`ReplyMessage`] (after an
//! asynchronous connect, and twice for BIND), so the machine holds no state while the
//! destination is reached. Bytes the client sent after its request (optimistic data) are
//! returned by [`ServerHandshake::take_remaining`].

use std::collections::VecDeque;

use super::wire::{
    Address, Error, Greeting, Method, MethodSelection, PasswordReply, PasswordRequest,
    ReplyMessage, Request,
};

/// Most handshake bytes buffered before a message completes. No single valid message is
/// longer than 513 bytes (RFC 1929 request), so this leaves room for pipelining.
const MAX_BUFFERED: usize = 2048;

/// Something the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Check these RFC 1929 credentials and call
    /// [`ServerHandshake::handle_auth_result`].
    Authenticate(PasswordRequest),
    /// Carry out this request and answer it with a [`ReplyMessage`] (the handshake is done).
    Request(Request),
    /// The handshake failed; write what [`ServerHandshake::poll_transmit`] still returns
    /// (a refusal, if the protocol has one for this state), then close.
    Failed(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Auth,
    AwaitAuth,
    Request,
    Done,
    Failed,
}

/// Server handshake state machine. Holds at most [`MAX_BUFFERED`] bytes.
#[derive(Debug)]
pub struct ServerHandshake {
    state: State,
    require_auth: bool,
    buffer: Vec<u8>,
    transmit: Vec<u8>,
    events: VecDeque<Event>,
}

impl ServerHandshake {
    /// A handshake that requires RFC 1929 authentication when `require_auth`, and otherwise
    /// accepts "no authentication".
    pub fn new(require_auth: bool) -> Self {
        Self {
            state: State::Greeting,
            require_auth,
            // Never reallocated (input past MAX_BUFFERED fails the handshake), so no copy of
            // a password is left behind in a freed allocation; wiped on drop.
            buffer: if require_auth {
                Vec::with_capacity(MAX_BUFFERED)
            } else {
                Vec::new()
            },
            transmit: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// True while the machine waits for more client bytes (the caller should read).
    pub fn wants_input(&self) -> bool {
        matches!(self.state, State::Greeting | State::Auth | State::Request)
            && self.events.is_empty()
    }

    /// True once the request was read (the caller answers it with a [`ReplyMessage`]).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True once the handshake failed.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Feed bytes read from the client and process as many messages as are complete.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Failed) {
            return;
        }
        if self.buffer.len().saturating_add(bytes.len()) > MAX_BUFFERED {
            let reply = self.state == State::Request;
            self.fail(Error::Oversized, reply);
            return;
        }
        self.buffer.extend_from_slice(bytes);
        self.process();
    }

    /// Bytes to write to the client, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The outcome of an [`Event::Authenticate`].
    pub fn handle_auth_result(&mut self, accepted: bool) {
        if self.state != State::AwaitAuth {
            return;
        }
        PasswordReply { success: accepted }.encode(&mut self.transmit);
        if accepted {
            self.state = State::Request;
            self.process();
        } else {
            self.state = State::Failed;
            self.events.push_back(Event::Failed(Error::AuthFailed));
        }
    }

    /// Client bytes received after the request (to forward once relaying starts).
    pub fn take_remaining(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    fn process(&mut self) {
        loop {
            let progressed = match self.state {
                State::Greeting => self.process_greeting(),
                State::Auth => self.process_auth(),
                State::Request => self.process_request(),
                State::AwaitAuth | State::Done | State::Failed => false,
            };
            if !progressed {
                return;
            }
        }
    }

    fn process_greeting(&mut self) -> bool {
        let (greeting, consumed) = match Greeting::decode(&self.buffer) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return false,
            Err(error) => {
                self.fail(error, false);
                return false;
            }
        };
        self.buffer.drain(..consumed);
        let wanted = if self.require_auth {
            Method::USERNAME_PASSWORD
        } else {
            Method::NO_AUTH
        };
        if !greeting.methods.contains(&wanted) {
            MethodSelection {
                method: Method::NO_ACCEPTABLE,
            }
            .encode(&mut self.transmit);
            self.fail(Error::NoAcceptableMethod, false);
            return false;
        }
        MethodSelection { method: wanted }.encode(&mut self.transmit);
        self.state = if self.require_auth {
            State::Auth
        } else {
            State::Request
        };
        true
    }

    fn process_auth(&mut self) -> bool {
        let (request, consumed) = match PasswordRequest::decode(&self.buffer) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return false,
            Err(error) => {
                // RFC 1929: a failure status, then close.
                PasswordReply { success: false }.encode(&mut self.transmit);
                self.fail(error, false);
                return false;
            }
        };
        // Wipe the credentials from the buffer as they leave it.
        if let Some(consumed) = self.buffer.get_mut(..consumed) {
            zeroize::Zeroize::zeroize(consumed);
        }
        self.buffer.drain(..consumed);
        self.state = State::AwaitAuth;
        self.events.push_back(Event::Authenticate(request));
        false
    }

    fn process_request(&mut self) -> bool {
        let (request, consumed) = match Request::decode(&self.buffer) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return false,
            Err(error) => {
                self.fail(error, true);
                return false;
            }
        };
        self.buffer.drain(..consumed);
        self.state = State::Done;
        self.events.push_back(Event::Request(request));
        false
    }

    /// Enter the failed state; with `reply`, queue the SOCKS5 reply for `error` first.
    fn fail(&mut self, error: Error, reply: bool) {
        if reply {
            ReplyMessage {
                reply: error.as_reply(),
                bound: Address::UNSPECIFIED,
            }
            .encode(&mut self.transmit);
        }
        self.state = State::Failed;
        zeroize::Zeroize::zeroize(&mut self.buffer);
        self.events.push_back(Event::Failed(error));
    }
}

impl Drop for ServerHandshake {
    fn drop(&mut self) {
        // Bytes of an unfinished RFC 1929 message may still be buffered.
        zeroize::Zeroize::zeroize(&mut self.buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer that receives RFC 1929 credentials is never reallocated (a reallocation
    /// would leave a copy of the password in the freed block), and holds no credential byte
    /// once they are parsed.
    #[test]
    fn credentials_never_move_and_do_not_stay_buffered() {
        let mut machine = ServerHandshake::new(true);
        let start = machine.buffer.as_ptr();
        let capacity = machine.buffer.capacity();
        machine.handle_input(&[0x05, 0x01, 0x02]);
        let mut auth = vec![0x01, 5];
        auth.extend_from_slice(b"alice");
        auth.push(200);
        auth.extend(std::iter::repeat_n(b'p', 200));
        // Byte by byte: the slowest client still never makes the buffer grow.
        for byte in &auth {
            machine.handle_input(std::slice::from_ref(byte));
            assert_eq!(machine.buffer.as_ptr(), start);
            assert_eq!(machine.buffer.capacity(), capacity);
        }
        assert!(matches!(machine.poll_event(), Some(Event::Authenticate(_))));
        assert!(machine.buffer.is_empty());
        // Up to the limit, pipelined bytes still fit without a reallocation.
        machine.handle_auth_result(true);
        machine.handle_input(&[0u8; MAX_BUFFERED]);
        assert_eq!(machine.buffer.as_ptr(), start);
        assert!(machine.is_failed() || machine.buffer.len() <= MAX_BUFFERED);
    }
}
