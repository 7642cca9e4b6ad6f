//! The local hop of a PostgreSQL tunnel, without IO: `hoop connect` answers the local client's
//! startup itself and checks the tunnel password before a gateway stream exists, so another
//! local user who tries the port reaches nothing in the owner's name.
//!
//! [`LocalLogin`] is the server side towards the local client: SSLRequest and GSSENCRequest get
//! `N` (the hop is loopback; the tunnel is TLS), a StartupMessage gets
//! AuthenticationCleartextPassword, and the PasswordMessage is compared in constant time with
//! the tunnel password. Only then does the caller open a stream and send the gateway the
//! startup and the password unchanged ([`Step::Accepted`]), so the gateway checks the password
//! too. [`GatewayLogin`] reads the gateway's answer: it drops the gateway's own password request
//! (the client has already answered one), passes everything else through and notes the cancel
//! key the client is given, until ReadyForQuery. A CancelRequest carries no password (psql's
//! Ctrl-C opens a new connection with only the key): [`CancelKeys`] lets the caller forward one
//! only when it names a session of this tunnel.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, BytesMut};
use subtle::ConstantTimeEq;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// Major protocol version 3 (any minor: the gateway answers a minor it does not speak).
const PROTOCOL_MAJOR_3: i32 = 3;
/// PostgreSQL's own limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP: usize = 10_000;
/// A password message longer than this is not the tunnel password (which is 24 characters).
const MAX_PASSWORD_MESSAGE: usize = 1024;
/// SSLRequest and GSSENCRequest each come at most once before the StartupMessage.
const MAX_NEGOTIATIONS: u8 = 2;
/// Messages the gateway sends before ReadyForQuery are small; a longer one is not a login.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

/// What the caller does next with the local client.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more from the client, then call [`LocalLogin::step`] again.
    More,
    /// Write these bytes to the client, then call [`LocalLogin::step`] again.
    Reply(&'static [u8]),
    /// The password is right: open a gateway stream and send it `replay` first (the startup
    /// packet and the password message, unchanged).
    Accepted {
        /// What the gateway must read before anything else from the client.
        replay: BytesMut,
    },
    /// A CancelRequest: forward `packet` if [`CancelKeys::contains`] its `key`, else drop it.
    /// Either way the connection ends (PostgreSQL answers a cancel with nothing).
    Cancel {
        /// The packet as received.
        packet: BytesMut,
        /// Process id and secret key as the client names them.
        key: Vec<u8>,
    },
    /// Write `reply` (an ErrorResponse) to the client and close; no stream is opened.
    Refused {
        /// The ErrorResponse.
        reply: BytesMut,
        /// Why, for the owner's log.
        reason: Refusal,
    },
}

/// Why a local connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The password was not the tunnel password.
    WrongPassword,
    /// The client sent something that is not a PostgreSQL login.
    Malformed(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::WrongPassword => f.write_str("wrong tunnel password"),
            Refusal::Malformed(what) => write!(f, "not a PostgreSQL login ({what})"),
        }
    }
}

/// The message a refused client sees: what was wrong and what to do.
pub const WRONG_PASSWORD_MESSAGE: &str = "password authentication failed: this is a hoop tunnel; \
     use the tunnel password of this `hoop connect` (the psql line it printed reads it from its \
     passfile; `hoop connect -o json` prints it as \"password\")";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Startup,
    Password,
    Done,
}

/// The login of one local connection, checked against the tunnel password.
pub struct LocalLogin<'s> {
    secret: &'s [u8],
    state: State,
    startup: BytesMut,
    negotiations: u8,
}

fn be_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

impl<'s> LocalLogin<'s> {
    /// A login that accepts exactly `secret`.
    pub fn new(secret: &'s str) -> Self {
        Self {
            secret: secret.as_bytes(),
            state: State::Startup,
            startup: BytesMut::new(),
            negotiations: 0,
        }
    }

    /// Consumes what it can of `input` (bytes read from the client) and says what to do.
    pub fn step(&mut self, input: &mut BytesMut) -> Step {
        match self.state {
            State::Startup => self.startup_packet(input),
            State::Password => self.password_message(input),
            State::Done => Step::Refused {
                reply: fatal("08P01", "hoop: the login is over"),
                reason: Refusal::Malformed("input after the login"),
            },
        }
    }

    fn refuse(&mut self, sqlstate: &str, message: &str, reason: Refusal) -> Step {
        self.state = State::Done;
        Step::Refused {
            reply: fatal(sqlstate, message),
            reason,
        }
    }

    fn startup_packet(&mut self, input: &mut BytesMut) -> Step {
        let Some(len) = be_i32(input) else {
            return Step::More;
        };
        let len = match usize::try_from(len) {
            Ok(l) if (8..=MAX_STARTUP).contains(&l) => l,
            _ => {
                return self.refuse(
                    "08P01",
                    "hoop: invalid startup packet length",
                    Refusal::Malformed("startup packet length"),
                );
            }
        };
        if input.len() < len {
            return Step::More;
        }
        let packet = input.split_to(len);
        let code = be_i32(packet.get(4..).unwrap_or_default()).unwrap_or_default();
        match code {
            SSL_REQUEST | GSSENC_REQUEST if len == 8 => {
                self.negotiations += 1;
                if self.negotiations > MAX_NEGOTIATIONS {
                    return self.refuse(
                        "08P01",
                        "hoop: too many encryption requests",
                        Refusal::Malformed("repeated encryption requests"),
                    );
                }
                Step::Reply(b"N")
            }
            CANCEL_REQUEST if len >= 16 => {
                self.state = State::Done;
                let key = packet.get(8..).unwrap_or_default().to_vec();
                Step::Cancel { packet, key }
            }
            c if c >> 16 == PROTOCOL_MAJOR_3 => {
                self.startup = packet;
                self.state = State::Password;
                Step::Reply(AUTH_CLEARTEXT)
            }
            _ => self.refuse(
                "08P01",
                "hoop: unsupported frontend protocol (hoop speaks PostgreSQL protocol 3)",
                Refusal::Malformed("unknown startup code"),
            ),
        }
    }

    fn password_message(&mut self, input: &mut BytesMut) -> Step {
        let (Some(&tag), Some(len)) = (input.first(), input.get(1..).and_then(be_i32)) else {
            return Step::More;
        };
        let total = match usize::try_from(len) {
            Ok(l) if tag == b'p' && (5..=MAX_PASSWORD_MESSAGE).contains(&l) => l + 1,
            _ if tag != b'p' => {
                return self.refuse(
                    "08P01",
                    "hoop: expected a password message",
                    Refusal::Malformed("not a password message"),
                );
            }
            _ => return self.refuse("28P01", WRONG_PASSWORD_MESSAGE, Refusal::WrongPassword),
        };
        if input.len() < total {
            return Step::More;
        }
        let message = input.split_to(total);
        // The password is a C string filling the message body.
        let body = message.get(5..).unwrap_or_default();
        let password = body.strip_suffix(b"\0").unwrap_or(body);
        if !bool::from(password.ct_eq(self.secret)) {
            return self.refuse("28P01", WRONG_PASSWORD_MESSAGE, Refusal::WrongPassword);
        }
        self.state = State::Done;
        let mut replay = std::mem::take(&mut self.startup);
        replay.extend_from_slice(&message);
        Step::Accepted { replay }
    }
}

/// AuthenticationCleartextPassword.
const AUTH_CLEARTEXT: &[u8] = &[b'R', 0, 0, 0, 8, 0, 0, 0, 3];

/// A FATAL ErrorResponse with `sqlstate` and `message` (NULs dropped).
pub fn fatal(sqlstate: &str, message: &str) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(b'E');
    out.put_i32(0);
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', sqlstate),
        (b'M', message),
    ] {
        out.put_u8(field);
        out.extend(value.bytes().filter(|b| *b != 0));
        out.put_u8(0);
    }
    out.put_u8(0);
    let len = i32::try_from(out.len() - 1).unwrap_or(i32::MAX);
    if let Some(slot) = out.get_mut(1..5) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    out
}

/// Where the gateway's login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Still logging in: keep scanning what the gateway sends.
    Login,
    /// ReadyForQuery went to the client: from here on, bytes are copied as they are.
    Ready,
}

/// The gateway's side of the login, as the client must see it.
#[derive(Debug, Default)]
pub struct GatewayLogin {
    password_request_dropped: bool,
    /// The cancel key the gateway gave the client (BackendKeyData's body).
    pub cancel_key: Option<Vec<u8>>,
}

impl GatewayLogin {
    /// Moves the complete messages at the front of `from_gateway` to `to_client`, except the
    /// gateway's first password request, and stops after ReadyForQuery. An error means the
    /// gateway sent something that is not a login; the caller ends the connection.
    pub fn scan(
        &mut self,
        from_gateway: &mut BytesMut,
        to_client: &mut BytesMut,
    ) -> Result<Scan, &'static str> {
        loop {
            let (Some(&tag), Some(len)) =
                (from_gateway.first(), from_gateway.get(1..).and_then(be_i32))
            else {
                return Ok(Scan::Login);
            };
            let total = match usize::try_from(len) {
                Ok(l) if (4..=MAX_LOGIN_MESSAGE).contains(&l) => l + 1,
                _ => return Err("the gateway sent an invalid message during login"),
            };
            if from_gateway.len() < total {
                return Ok(Scan::Login);
            }
            let message = from_gateway.split_to(total);
            let body = message.get(5..).unwrap_or_default();
            match tag {
                b'R' => match be_i32(body) {
                    Some(3) if !self.password_request_dropped => {
                        self.password_request_dropped = true;
                        continue;
                    }
                    Some(0) => {}
                    _ => {
                        return Err(
                            "the gateway asked for a login method this hoop does not speak; upgrade hoop",
                        );
                    }
                },
                b'K' => self.cancel_key = Some(body.to_vec()),
                _ => {}
            }
            to_client.extend_from_slice(&message);
            if tag == b'Z' {
                return Ok(Scan::Ready);
            }
        }
    }
}

/// The cancel keys of this tunnel's live sessions: a CancelRequest is forwarded only for one
/// of them, so a stranger's cancels (or a flood of them) open no stream.
#[derive(Debug, Clone, Default)]
pub struct CancelKeys(Arc<Mutex<HashSet<Vec<u8>>>>);

impl CancelKeys {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `key` until the returned guard is dropped (the session ends).
    pub fn register(&self, key: Vec<u8>) -> CancelKeyGuard {
        self.set().insert(key.clone());
        CancelKeyGuard {
            keys: self.clone(),
            key,
        }
    }

    /// True when `key` belongs to a live session of this tunnel.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.set().contains(key)
    }
}

/// Forgets a session's cancel key when dropped.
#[derive(Debug)]
pub struct CancelKeyGuard {
    keys: CancelKeys,
    key: Vec<u8>,
}

impl Drop for CancelKeyGuard {
    fn drop(&mut self) {
        self.keys.set().remove(&self.key);
    }
}

/// Reads the SQLSTATE and message of an ErrorResponse (for tests and logs).
pub fn error_fields(message: &[u8]) -> Option<(String, String)> {
    let mut body = message.get(5..)?;
    let (mut code, mut text) = (None, None);
    while body.has_remaining() {
        let field = body.get_u8();
        if field == 0 {
            break;
        }
        let end = body.iter().position(|b| *b == 0)?;
        let value = String::from_utf8_lossy(body.get(..end)?).into_owned();
        body.advance(end + 1);
        match field {
            b'C' => code = Some(value),
            b'M' => text = Some(value),
            _ => {}
        }
    }
    Some((code?, text?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const SECRET: &str = "Abcdefghijkmnopqrstuvwxy";

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = vec![0, 0, 0, 0];
        b.extend_from_slice(&196_608i32.to_be_bytes());
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        let len = b.len() as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        b
    }

    fn password(p: &str) -> Vec<u8> {
        let mut b = vec![b'p'];
        b.extend_from_slice(&(p.len() as i32 + 5).to_be_bytes());
        b.extend_from_slice(p.as_bytes());
        b.push(0);
        b
    }

    fn request(code: i32) -> Vec<u8> {
        [&8i32.to_be_bytes()[..], &code.to_be_bytes()].concat()
    }

    /// Feeds `bytes` one at a time (the worst split) and collects every step but `More`.
    fn run(login: &mut LocalLogin<'_>, bytes: &[u8]) -> Vec<Step> {
        let mut buf = BytesMut::new();
        let mut steps = Vec::new();
        for b in bytes {
            buf.put_u8(*b);
            loop {
                match login.step(&mut buf) {
                    Step::More => break,
                    s @ (Step::Accepted { .. } | Step::Refused { .. } | Step::Cancel { .. }) => {
                        steps.push(s);
                        return steps;
                    }
                    s => steps.push(s),
                }
            }
        }
        steps
    }

    #[test]
    fn the_right_password_is_replayed_to_the_gateway_byte_for_byte() {
        let start = startup(&[("user", "hoop"), ("database", "shop")]);
        let input = [
            request(SSL_REQUEST),
            request(GSSENC_REQUEST),
            start.clone(),
            password(SECRET),
        ]
        .concat();
        let mut login = LocalLogin::new(SECRET);
        let steps = run(&mut login, &input);
        assert_eq!(
            steps,
            vec![
                Step::Reply(b"N"),
                Step::Reply(b"N"),
                Step::Reply(AUTH_CLEARTEXT),
                Step::Accepted {
                    replay: BytesMut::from(&[start, password(SECRET)].concat()[..])
                },
            ]
        );
    }

    #[test]
    fn wrong_passwords_are_refused_with_28p01_and_no_stream() {
        for wrong in [
            "",
            "Abcdefghijkmnopqrstuvwx",
            "Abcdefghijkmnopqrstuvwxyz",
            "x",
        ] {
            let mut login = LocalLogin::new(SECRET);
            let steps = run(
                &mut login,
                &[startup(&[("user", "hoop")]), password(wrong)].concat(),
            );
            let Some(Step::Refused { reply, reason }) = steps.last() else {
                panic!("{wrong:?}: {steps:?}");
            };
            assert_eq!(*reason, Refusal::WrongPassword);
            let (code, message) = error_fields(reply).unwrap();
            assert_eq!(code, "28P01");
            assert!(message.contains("tunnel password"), "{message}");
            assert!(!message.contains(SECRET));
        }
    }

    #[test]
    fn a_password_with_text_after_its_nul_is_wrong() {
        let mut msg = password(SECRET);
        msg.pop();
        msg.extend_from_slice(b"\0extra\0");
        let len = (msg.len() - 1) as i32;
        msg[1..5].copy_from_slice(&len.to_be_bytes());
        let mut login = LocalLogin::new(SECRET);
        let steps = run(&mut login, &[startup(&[]), msg].concat());
        assert!(matches!(
            steps.last(),
            Some(Step::Refused {
                reason: Refusal::WrongPassword,
                ..
            })
        ));
    }

    #[test]
    fn malformed_logins_are_refused_without_waiting_for_more() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("length below 8", 4i32.to_be_bytes().to_vec()),
            (
                "length above the limit",
                1_000_000i32.to_be_bytes().to_vec(),
            ),
            ("protocol 2", {
                let mut s = startup(&[]);
                s[4..8].copy_from_slice(&0x0002_0000i32.to_be_bytes());
                s
            }),
            (
                "three encryption requests",
                [
                    request(SSL_REQUEST),
                    request(SSL_REQUEST),
                    request(SSL_REQUEST),
                ]
                .concat(),
            ),
            (
                "a query instead of a password",
                [startup(&[]), b"Q\0\0\0\x0dselect 1\0".to_vec()].concat(),
            ),
            (
                "a password message of 1 GiB",
                [startup(&[]), b"p\x40\0\0\0".to_vec()].concat(),
            ),
        ];
        for (what, bytes) in cases {
            let mut login = LocalLogin::new(SECRET);
            let steps = run(&mut login, &bytes);
            assert!(
                matches!(steps.last(), Some(Step::Refused { .. })),
                "{what}: {steps:?}"
            );
        }
    }

    #[test]
    fn a_cancel_request_carries_its_key_and_needs_no_password() {
        let mut packet = 16i32.to_be_bytes().to_vec();
        packet.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 7, 1, 2, 3, 4]);
        let mut login = LocalLogin::new(SECRET);
        let steps = run(&mut login, &packet);
        assert_eq!(
            steps,
            vec![Step::Cancel {
                packet: BytesMut::from(&packet[..]),
                key: vec![0, 0, 0, 7, 1, 2, 3, 4]
            }]
        );
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn the_gateway_password_request_is_dropped_and_the_rest_passes_in_order() {
        let key = [0, 0, 0, 9, 5, 6, 7, 8];
        let from = [
            msg(b'R', &3i32.to_be_bytes()),
            msg(b'R', &0i32.to_be_bytes()),
            msg(b'S', b"server_version\x0015\0"),
            msg(b'K', &key),
            msg(b'Z', b"I"),
            msg(b'T', b"after"),
        ]
        .concat();
        // Byte by byte: partial messages stay in the buffer.
        let mut scan = GatewayLogin::default();
        let mut buf = BytesMut::new();
        let mut to_client = BytesMut::new();
        let mut state = Scan::Login;
        let mut rest = from.as_slice();
        while state == Scan::Login {
            let (b, r) = rest.split_first().unwrap();
            rest = r;
            buf.put_u8(*b);
            state = scan.scan(&mut buf, &mut to_client).unwrap();
        }
        assert_eq!(
            &to_client[..],
            &[
                msg(b'R', &0i32.to_be_bytes()),
                msg(b'S', b"server_version\x0015\0"),
                msg(b'K', &key),
                msg(b'Z', b"I"),
            ]
            .concat()[..]
        );
        assert_eq!(scan.cancel_key.as_deref(), Some(&key[..]));
        // What follows ReadyForQuery is left for the plain copy.
        assert!(buf.is_empty() && rest == msg(b'T', b"after").as_slice());
    }

    #[test]
    fn a_gateway_refusal_reaches_the_client() {
        let refusal = fatal("08006", "hoop: the target is down");
        let from = [msg(b'R', &3i32.to_be_bytes()), refusal.to_vec()].concat();
        let mut scan = GatewayLogin::default();
        let mut to_client = BytesMut::new();
        let state = scan
            .scan(&mut BytesMut::from(&from[..]), &mut to_client)
            .unwrap();
        assert_eq!(state, Scan::Login);
        assert_eq!(&to_client[..], &refusal[..]);
    }

    #[test]
    fn the_gateway_asking_for_another_method_is_an_error() {
        let mut scan = GatewayLogin::default();
        let r = scan.scan(
            &mut BytesMut::from(&msg(b'R', &10i32.to_be_bytes())[..]),
            &mut BytesMut::new(),
        );
        assert!(r.is_err());
    }

    #[test]
    fn cancel_keys_live_as_long_as_their_session() {
        let keys = CancelKeys::default();
        let guard = keys.register(vec![1, 2, 3]);
        assert!(keys.contains(&[1, 2, 3]));
        assert!(!keys.contains(&[1, 2, 4]));
        drop(guard);
        assert!(!keys.contains(&[1, 2, 3]));
    }
}
