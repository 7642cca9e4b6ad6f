//! The tunnel client: one TLS connection to the gateway, HTTP/2, and one CONNECT stream per
//! forwarded local socket. The connection is (re)established lazily, so a gateway restart costs
//! the next local connection one handshake, not the whole `hoop connect`.
//!
//! The local hop lives beside it: `local` serves each accepted socket of `hoop connect` (for
//! PostgreSQL, checking the tunnel password with `pg_login` before any stream is opened), and
//! `files` keeps the tunnel's secrets in a private directory instead of on the command line.

pub mod files;
pub mod local;
pub mod pg_login;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Mutex;

use crate::exit::{CliError, CliResult, Exit};
use crate::gateway::Gateway;
use crate::trust::rustls_config;

/// HTTP/2 receive window per stream (downloads of large results).
const STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 receive window for the whole connection.
const CONNECTION_WINDOW: u32 = 32 << 20;

/// Opens CONNECT streams to one gateway.
pub struct TunnelClient {
    gw: Gateway,
    host: String,
    port: u16,
    sender: Mutex<Option<SendRequest<Empty<Bytes>>>>,
    mode: Mode,
}

/// How streams travel to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One TLS connection per local socket, HTTP/1.1 CONNECT: after the upgrade the stream is
    /// plain TLS records, the cheapest per message (see docs/architecture.md for the measurements).
    Http1,
    /// One TLS connection for all sockets, one HTTP/2 CONNECT stream each.
    Http2,
}

impl Mode {
    /// `HOOP_TUNNEL=h1|h2`; HTTP/1.1 by default.
    pub fn from_env() -> Mode {
        match std::env::var("HOOP_TUNNEL").as_deref() {
            Ok("h2") => Mode::Http2,
            _ => Mode::Http1,
        }
    }
}

/// A stream to the target through the gateway.
pub type TunnelStream = TokioIo<hyper::upgrade::Upgraded>;

impl TunnelClient {
    /// A client for `gw` (nothing is connected yet).
    pub fn new(gw: Gateway) -> CliResult<Self> {
        let url = url::Url::parse(&gw.url).map_err(|e| crate::exit::usage(e.to_string()))?;
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(Self {
            gw,
            host,
            port,
            sender: Mutex::new(None),
            mode: Mode::from_env(),
        })
    }

    /// TCP + TLS to the gateway, offering only `alpn`.
    async fn tls(
        &self,
        alpn: &[u8],
    ) -> CliResult<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let gw = &self.gw.url;
        let mut config = rustls_config(&self.gw.client.trust, self.gw.client.seen())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| CliError::new(Exit::Timeout, format!("connecting to {gw} timed out")))?
        .map_err(|e| {
            CliError::new(
                Exit::Unreachable,
                format!("cannot reach the gateway {gw}: {e}"),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|_| crate::exit::usage(format!("{:?} is not a valid host name", self.host)))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| {
                self.gw
                    .client
                    .explain_text(gw, &crate::trust::error_chain(&e), false)
            })
    }

    async fn connect(&self) -> CliResult<SendRequest<Empty<Bytes>>> {
        let gw = &self.gw.url;
        let tls = self.tls(b"h2").await?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(256 * 1024)
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| {
                CliError::new(
                    Exit::Unreachable,
                    format!("HTTP/2 with the gateway {gw} failed: {e}"),
                )
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "tunnel connection ended");
            }
        });
        Ok(sender)
    }

    /// Checks that the gateway can be reached (the first connection).
    pub async fn warm_up(&self) -> CliResult<()> {
        if self.mode == Mode::Http1 {
            self.tls(b"http/1.1").await?;
            return Ok(());
        }
        let s = self.connect().await?;
        *self.sender.lock().await = Some(s);
        Ok(())
    }

    async fn sender(&self) -> CliResult<SendRequest<Empty<Bytes>>> {
        let mut guard = self.sender.lock().await;
        if let Some(s) = guard.as_ref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let s = self.connect().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Opens one stream for `connection`, authorised by `bearer`, announcing what the local
    /// client will log in with: the tunnel password `secret` and, for SSH, the tunnel's public
    /// key (`ssh-ed25519 AAAA...`).
    pub async fn open(
        &self,
        connection: &str,
        bearer: &str,
        secret: &str,
        ssh_key: Option<&str>,
    ) -> CliResult<TunnelStream> {
        let mut req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("{}:{}", self.host, self.port))
            .header(http::header::AUTHORIZATION, format!("Bearer {bearer}"))
            .header("x-hoop-connection", connection)
            .header("x-hoop-secret", secret);
        if let Some(key) = ssh_key {
            req = req.header("x-hoop-ssh-key", key);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| crate::exit::internal(format!("cannot build the tunnel request: {e}")))?;
        let not_opened = |e: hyper::Error| {
            CliError::new(
                Exit::Unreachable,
                format!("the gateway did not open the tunnel: {e}"),
            )
        };
        let resp = match self.mode {
            Mode::Http2 => {
                let mut sender = self.sender().await?;
                sender.ready().await.map_err(|e| {
                    CliError::new(
                        Exit::Unreachable,
                        format!("the gateway connection failed: {e}"),
                    )
                })?;
                sender.send_request(req).await.map_err(not_opened)?
            }
            Mode::Http1 => {
                let tls = self.tls(b"http/1.1").await?;
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(not_opened)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.with_upgrades().await {
                        tracing::debug!(error = %e, "tunnel connection ended");
                    }
                });
                sender.send_request(req).await.map_err(not_opened)?
            }
        };
        let status = resp.status();
        if !status.is_success() {
            use http_body_util::BodyExt;
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = serde_json::from_slice::<hoop_shared::api::ApiError>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(match status.as_u16() {
                401 => CliError::new(Exit::NotAuthenticated, message),
                403 => CliError::new(Exit::AccessDenied, message),
                404 => CliError::new(Exit::NotFound, message),
                _ => CliError::new(Exit::Internal, message),
            });
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| CliError::new(Exit::Internal, format!("tunnel upgrade failed: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }
}
