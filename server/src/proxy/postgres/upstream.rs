//! `PgUpstream`: the gateway as a PostgreSQL client of the target. Connects (TLS when
//! configured), sends the startup packet with the connection's user and database, and logs in
//! with the vaulted password (SCRAM-SHA-256, md5 or cleartext). The password never leaves this
//! module except inside those exchanges.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, Limits};
use crate::config::{ConnectionConfig, UpstreamTls};

/// A byte stream to the target: TCP or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Read and write halves for two tasks to use at once. TCP's own split takes no lock; a TLS
    /// session is one state for both directions, so it goes through tokio's locking split.
    /// (tokio's split on a TCP stream cost a contended lock and often a futex wake-up per
    /// message under pgbench: both directions are busy at once.)
    fn into_halves(self: Box<Self>) -> (ReadSide, WriteSide);
}

/// The target's read half.
pub type ReadSide = Box<dyn AsyncRead + Unpin + Send>;
/// The target's write half.
pub type WriteSide = Box<dyn AsyncWrite + Unpin + Send>;

impl Stream for TcpStream {
    fn into_halves(self: Box<Self>) -> (ReadSide, WriteSide) {
        let (r, w) = self.into_split();
        (Box::new(r), Box::new(w))
    }
}

impl Stream for tokio_rustls::client::TlsStream<TcpStream> {
    fn into_halves(self: Box<Self>) -> (ReadSide, WriteSide) {
        let (r, w) = tokio::io::split(*self);
        (Box::new(r), Box::new(w))
    }
}

/// Why the target could not be reached or refused us.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to the target {addr}: {reason}")]
    Connect {
        /// host:port
        addr: String,
        /// why
        reason: String,
    },
    /// TLS was required and failed.
    #[error("TLS to the target failed: {0}")]
    Tls(String),
    /// The target refused the login (its message, never our password).
    #[error("the target refused the gateway's login: {0}")]
    Auth(String),
    /// The target sent something we do not understand.
    #[error("protocol error from the target: {0}")]
    Protocol(String),
    /// IO failed.
    #[error("connection to the target failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What the login produced: the stream, bytes already read past AuthenticationOk (parameter
/// statuses, the backend key, ReadyForQuery), and the real backend key.
pub struct Upstream {
    /// The connection.
    pub stream: Box<dyn Stream>,
    /// Unconsumed bytes read from the target.
    pub buf: BytesMut,
}

/// Parameters a client may set at startup that the gateway passes on. `options` is not among
/// them: `-c role=...` would let a client change the role the gateway logs in as.
const PASSED_PARAMS: &[&str] = &[
    "application_name",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "search_path",
];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts any certificate but still checks handshake signatures: `tls = "require"` (libpq's
/// sslmode=require semantics: encryption without identity).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _e: &rustls_pki_types::CertificateDer<'_>,
        _i: &[rustls_pki_types::CertificateDer<'_>],
        _s: &rustls_pki_types::ServerName<'_>,
        _o: &[u8],
        _n: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tls_upgrade(
    mut tcp: TcpStream,
    conn: &ConnectionConfig,
    host: &str,
) -> Result<Box<dyn Stream>, UpstreamError> {
    let mut req = BytesMut::new();
    bytes::BufMut::put_i32(&mut req, 8);
    bytes::BufMut::put_i32(&mut req, codec::SSL_REQUEST);
    tcp.write_all(&req).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        return Err(UpstreamError::Tls("the target does not accept TLS".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = match conn.tls {
        UpstreamTls::Require => rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
        _ => {
            let mut roots = rustls::RootCertStore::empty();
            let Some(ca) = &conn.tls_ca_file else {
                return Err(UpstreamError::Tls(
                    "tls = \"verify-full\" needs tls_ca_file".into(),
                ));
            };
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .map_err(|e| UpstreamError::Tls(format!("cannot read {}: {e}", ca.display())))?
            {
                let cert = cert
                    .map_err(|e| UpstreamError::Tls(format!("bad PEM in {}: {e}", ca.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            }
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
    };
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| UpstreamError::Tls(format!("{host:?} is not a valid server name")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Tls(e.to_string()))?;
    Ok(Box::new(tls))
}

/// Reads one complete tagged message into `buf` and returns its length.
async fn read_message(
    stream: &mut dyn Stream,
    buf: &mut BytesMut,
    limits: Limits,
) -> Result<usize, UpstreamError> {
    loop {
        match codec::frame_len(buf, limits) {
            Ok(Some(n)) => return Ok(n),
            Ok(None) => {}
            Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
        }
        buf.reserve(8192);
        if stream.read_buf(buf).await? == 0 {
            return Err(UpstreamError::Protocol(
                "the target closed the connection during login".into(),
            ));
        }
    }
}

/// Connects and logs in. `client_params` are the client's startup parameters; only
/// [`PASSED_PARAMS`] are passed on.
pub async fn connect(
    conn: &ConnectionConfig,
    password: Option<&str>,
    client_params: &[(String, String)],
    limits: Limits,
) -> Result<Upstream, UpstreamError> {
    let addr = conn.address.clone();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| UpstreamError::Connect {
            addr: addr.clone(),
            reason: "timed out".into(),
        })?
        .map_err(|e| UpstreamError::Connect {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&addr)
        .trim_matches(['[', ']'])
        .to_string();
    let mut stream: Box<dyn Stream> = match conn.tls {
        UpstreamTls::Disable => Box::new(tcp),
        _ => tls_upgrade(tcp, conn, &host).await?,
    };

    let user = conn.user.as_deref().unwrap_or_default();
    let database = conn.database.as_deref().unwrap_or_default();
    // client_encoding is always UTF8: a startup parameter overrides a role's or database's
    // default (`ALTER ROLE ... SET client_encoding`), which would otherwise start the session in
    // an encoding the gateway does not read as the server does. A client's own request is
    // UTF-8 or SQL_ASCII here (others are refused at startup), both read as UTF-8.
    let mut params: Vec<(&str, &str)> = vec![
        ("user", user),
        ("database", database),
        ("client_encoding", "UTF8"),
    ];
    for (k, v) in client_params {
        if PASSED_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)) {
            params.push((k.as_str(), v.as_str()));
        }
    }
    let mut out = BytesMut::new();
    codec::put_startup(&mut out, &params);
    stream.write_all(&out).await?;

    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut scram: Option<ScramSha256> = None;
    loop {
        let n = read_message(stream.as_mut(), &mut buf, limits).await?;
        let msg = buf.split_to(n);
        match msg.first() {
            Some(b'R') => {
                let (code, rest) = codec::auth_request(&msg)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                let pw = || {
                    password.ok_or_else(|| {
                        UpstreamError::Auth(
                            "the target wants a password but the connection has none configured"
                                .into(),
                        )
                    })
                };
                out.clear();
                match code {
                    0 => break,
                    3 => codec::put_message(&mut out, b'p', &[pw()?.as_bytes(), &[0]].concat()),
                    5 => {
                        let salt: [u8; 4] = rest
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| UpstreamError::Protocol("short md5 salt".into()))?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            user.as_bytes(),
                            pw()?.as_bytes(),
                            salt,
                        );
                        codec::put_message(&mut out, b'p', &[hash.as_bytes(), &[0]].concat());
                    }
                    10 => {
                        let mechs: Vec<&[u8]> =
                            rest.split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
                        if !mechs.contains(&&b"SCRAM-SHA-256"[..]) {
                            return Err(UpstreamError::Auth(
                                "the target offers no SCRAM-SHA-256".into(),
                            ));
                        }
                        let s = ScramSha256::new(pw()?.as_bytes(), ChannelBinding::unsupported());
                        let first = s.message().to_vec();
                        let mut body = b"SCRAM-SHA-256\0".to_vec();
                        body.extend_from_slice(&(first.len() as i32).to_be_bytes());
                        body.extend_from_slice(&first);
                        codec::put_message(&mut out, b'p', &body);
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            UpstreamError::Protocol("SASL continue without start".into())
                        })?;
                        s.update(rest)
                            .map_err(|e| UpstreamError::Auth(format!("SCRAM: {e}")))?;
                        codec::put_message(&mut out, b'p', s.message());
                    }
                    12 => {
                        let mut s = scram.take().ok_or_else(|| {
                            UpstreamError::Protocol("SASL final without start".into())
                        })?;
                        s.finish(rest).map_err(|e| {
                            UpstreamError::Auth(format!("SCRAM server signature: {e}"))
                        })?;
                        continue;
                    }
                    other => {
                        return Err(UpstreamError::Auth(format!(
                            "unsupported authentication method {other}"
                        )));
                    }
                }
                stream.write_all(&out).await?;
            }
            Some(b'E') => {
                let (code, text) = codec::error_fields(&msg);
                return Err(UpstreamError::Auth(format!("{text} (SQLSTATE {code})")));
            }
            Some(b'N') => {}
            _ => {
                return Err(UpstreamError::Protocol(
                    "unexpected message during login".into(),
                ));
            }
        }
    }
    // What follows AuthenticationOk (ParameterStatus, BackendKeyData, ReadyForQuery) stays in
    // `buf` for the session to relay.
    let _ = buf.remaining();
    Ok(Upstream { stream, buf })
}

/// The encoding a target's ParameterStatus (`S`) message reports for `client_encoding`, when it
/// is not one the gateway reads as the server does. The gateway logs in with UTF8, but a
/// function's `set_config`, or anything else the analysis cannot see, can change it
/// mid-session; from then on the server would split texts into statements differently from
/// the gateway. The value is truncated for messages.
pub fn foreign_client_encoding(msg: &[u8]) -> Option<String> {
    let (name, rest) = codec::cstr(codec::body(msg))?;
    if !name.eq_ignore_ascii_case(b"client_encoding") {
        return None;
    }
    let (value, _) = codec::cstr(rest)?;
    let value = String::from_utf8_lossy(value);
    (!crate::policy::sql::is_utf8_encoding(&value)).then(|| value.chars().take(32).collect())
}

/// Runs a simple-protocol query string on the fresh connection, before the client sees it, and
/// returns its rows, one list per result set, as text (the session-start catalog lookup of
/// masking, see `catalog.rs`). The bytes the target sent before (ParameterStatus …
/// ReadyForQuery) stay in `up.buf` untouched.
pub async fn query_rows(
    up: &mut Upstream,
    limits: Limits,
    sql: &str,
) -> Result<Vec<Vec<Vec<Option<String>>>>, UpstreamError> {
    // Wait for the first ReadyForQuery.
    let mut offset = 0;
    loop {
        match codec::frame_len(up.buf.get(offset..).unwrap_or_default(), limits) {
            Ok(Some(n)) => {
                let tag = up.buf.get(offset).copied();
                offset += n;
                if tag == Some(b'Z') {
                    break;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
        }
        up.buf.reserve(8192);
        if up.stream.read_buf(&mut up.buf).await? == 0 {
            return Err(UpstreamError::Protocol(
                "the target closed the connection".into(),
            ));
        }
    }
    let mut out = BytesMut::new();
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    codec::put_message(&mut out, b'Q', &body);
    up.stream.write_all(&out).await?;
    let mut rest = up.buf.split_off(offset);
    let mut sets: Vec<Vec<Vec<Option<String>>>> = Vec::new();
    let mut failed = None;
    loop {
        let n = read_message(up.stream.as_mut(), &mut rest, limits).await?;
        let msg = rest.split_to(n);
        match msg.first() {
            Some(b'T') => sets.push(Vec::new()),
            Some(b'D') => {
                let row = codec::data_row_values(&msg)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?
                    .map(|v| v.map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned())))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                if let Some(set) = sets.last_mut() {
                    set.push(row);
                }
            }
            Some(b'Z') => break,
            Some(b'E') => {
                let (code, text) = codec::error_fields(&msg);
                failed = Some(format!("catalog lookup failed: {text} ({code})"));
            }
            _ => {}
        }
    }
    up.buf.unsplit(rest);
    match failed {
        Some(e) => Err(UpstreamError::Protocol(e)),
        None => Ok(sets),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn status(name: &str, value: &str) -> BytesMut {
        let mut m = BytesMut::new();
        let body = [name.as_bytes(), &[0], value.as_bytes(), &[0]].concat();
        codec::put_message(&mut m, b'S', &body);
        m
    }

    #[test]
    fn a_reported_foreign_client_encoding_is_found() {
        assert_eq!(
            foreign_client_encoding(&status("client_encoding", "SJIS")).as_deref(),
            Some("SJIS")
        );
        assert!(foreign_client_encoding(&status("CLIENT_ENCODING", "BIG5")).is_some());
        for (name, value) in [
            ("client_encoding", "UTF8"),
            ("client_encoding", "SQL_ASCII"),
            ("application_name", "SJIS"),
            ("server_encoding", "LATIN1"),
        ] {
            assert_eq!(
                foreign_client_encoding(&status(name, value)),
                None,
                "{name}"
            );
        }
        assert_eq!(foreign_client_encoding(b"S\0\0\0\x04"), None);
    }
}
