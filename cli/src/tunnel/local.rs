//! One accepted socket of `hoop connect`: the local hop.
//!
//! Anyone on the machine can connect to 127.0.0.1, so a socket earns a gateway stream (and with
//! it the owner's identity) only by proving it knows the tunnel's secret. For PostgreSQL that is
//! checked here, before a stream exists ([`super::pg_login`]); a refused socket costs the
//! gateway nothing and is logged on stderr at most once per [`LOG_INTERVAL`] with a count. SSH
//! is encrypted end to end between the client and the gateway, so its login (the tunnel's key)
//! is checked by the gateway, which audits refusals in the same throttled way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use hoop_shared::throttle::{Throttle, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pg_login::{self, CancelKeys, GatewayLogin, LocalLogin, Refusal, Scan, Step};
use super::{TunnelClient, TunnelStream};
use crate::auth::token_store::TokenStore;
use crate::auth::{Credential, credential, now_unix};
use crate::exit::CliResult;
use crate::gateway::Gateway;
use crate::ui::note;

/// A local client has this long to log in; a socket held open without one is closed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Refused local connections are reported on stderr at most this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Read and write buffers of an established hop.
const COPY_BUFFER: usize = 64 * 1024;

/// Hands out bearer tokens, refreshing one at a time (providers that rotate refresh tokens
/// revoke the whole grant when two refreshes race).
pub struct Tokens {
    gw: Gateway,
    store: TokenStore,
    env: Option<String>,
    current: tokio::sync::Mutex<Option<Credential>>,
}

impl Tokens {
    /// Tokens for `gw`: `env` (`HOOP_TOKEN`) if set, else the cached login in `store`.
    pub fn new(gw: Gateway, store: TokenStore, env: Option<String>) -> Self {
        Self {
            gw,
            store,
            env,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// A bearer token valid for at least another minute.
    pub async fn bearer(&self) -> CliResult<String> {
        let mut cur = self.current.lock().await;
        let fresh = match cur.as_ref() {
            Some(Credential::Env(_)) => true,
            Some(Credential::Cached(t)) => t.expires_at.is_none_or(|e| e - 60 > now_unix()),
            None => false,
        };
        if !fresh {
            *cur = Some(credential(&self.gw, &self.store, self.env.as_deref()).await?);
        }
        Ok(cur
            .as_ref()
            .map(|c| c.bearer().to_string())
            .unwrap_or_default())
    }
}

/// The protocol of the local hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The tunnel answers the PostgreSQL login itself first.
    Postgres,
    /// Bytes go to the gateway as they come (SSH logs in end to end).
    Raw,
}

/// What every socket of one `hoop connect` shares.
pub struct Hop {
    /// The gateway.
    pub tunnel: Arc<TunnelClient>,
    /// The owner's tokens.
    pub tokens: Arc<Tokens>,
    /// The connection's name.
    pub connection: String,
    /// How the local client logs in.
    pub protocol: Protocol,
    /// The tunnel password (announced to the gateway, checked locally for PostgreSQL).
    pub secret: String,
    /// The tunnel's SSH public key, announced to the gateway.
    pub ssh_key: Option<String>,
    /// Cancel keys of this tunnel's live PostgreSQL sessions.
    pub cancel_keys: CancelKeys,
    /// Throttled stderr reports of refused sockets.
    pub refusals: Arc<Refusals>,
}

impl Hop {
    /// Serves one accepted socket until either side closes it.
    pub async fn serve(&self, socket: TcpStream) {
        let _ = socket.set_nodelay(true);
        match self.protocol {
            Protocol::Postgres => self.serve_postgres(socket).await,
            Protocol::Raw => self.serve_raw(socket).await,
        }
    }

    async fn open(&self) -> CliResult<TunnelStream> {
        let bearer = self.tokens.bearer().await?;
        self.tunnel
            .open(
                &self.connection,
                &bearer,
                &self.secret,
                self.ssh_key.as_deref(),
            )
            .await
    }

    async fn serve_raw(&self, mut socket: TcpStream) {
        match self.open().await {
            Ok(mut stream) => copy(&mut socket, &mut stream).await,
            Err(e) => note(format!("hoop: {}", e.message)),
        }
    }

    async fn serve_postgres(&self, mut socket: TcpStream) {
        let mut buf = BytesMut::with_capacity(1024);
        let mut login = LocalLogin::new(&self.secret);
        let step = tokio::time::timeout(
            LOGIN_TIMEOUT,
            local_login(&mut socket, &mut buf, &mut login),
        );
        let step = match step.await {
            Ok(Some(step)) => step,
            // The client left before logging in: psql does this to ask its user for a password.
            Ok(None) => return,
            Err(_) => {
                self.refusals
                    .refused(&Refusal::Malformed("no login within 30 s"));
                return;
            }
        };
        match step {
            Step::Accepted { replay } => self.relay_postgres(socket, replay, buf).await,
            Step::Refused { reply, reason } => {
                let _ = socket.write_all(&reply).await;
                let _ = socket.shutdown().await;
                self.refusals.refused(&reason);
            }
            Step::Cancel { packet, key } => self.forward_cancel(&packet, &key).await,
            // `local_login` handles these itself and never returns them.
            Step::More | Step::Reply(_) => {}
        }
    }

    /// Forwards a CancelRequest naming one of this tunnel's sessions; any other is dropped
    /// without opening a stream.
    async fn forward_cancel(&self, packet: &[u8], key: &[u8]) {
        if !self.cancel_keys.contains(key) {
            self.refusals.refused(&Refusal::Malformed(
                "cancel request for no session of this tunnel",
            ));
            return;
        }
        match self.open().await {
            Ok(mut stream) => {
                let _ = stream.write_all(packet).await;
                let _ = stream.flush().await;
                // The gateway closes the stream once it relayed the cancel.
                let mut sink = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut sink)).await;
            }
            Err(e) => note(format!(
                "hoop: cannot forward a query cancel: {}",
                e.message
            )),
        }
    }

    /// Opens the stream for a client that logged in, replays its login to the gateway, passes
    /// the gateway's answer on (see [`GatewayLogin`]), then copies bytes both ways.
    async fn relay_postgres(&self, mut socket: TcpStream, replay: BytesMut, pending: BytesMut) {
        let mut stream = match self.open().await {
            Ok(s) => s,
            Err(e) => {
                note(format!("hoop: {}", e.message));
                let reply = pg_login::fatal("28000", &format!("hoop: {}", e.message));
                let _ = socket.write_all(&reply).await;
                return;
            }
        };
        if stream.write_all(&replay).await.is_err() || stream.write_all(&pending).await.is_err() {
            return;
        }
        let cancel_key = match gateway_login(&mut socket, &mut stream).await {
            Ok(GatewayAnswer::Ready { cancel_key }) => cancel_key,
            Ok(GatewayAnswer::Ended) => return,
            Err(e) => {
                tracing::debug!(error = %e, "tunnel login ended");
                return;
            }
        };
        let _key = cancel_key.map(|k| self.cancel_keys.register(k));
        copy(&mut socket, &mut stream).await;
    }
}

/// Runs the local login until it needs the caller: `None` when the client closed first.
async fn local_login(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    login: &mut LocalLogin<'_>,
) -> Option<Step> {
    loop {
        match login.step(buf) {
            Step::More => match socket.read_buf(buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
            Step::Reply(bytes) => socket.write_all(bytes).await.ok()?,
            step => return Some(step),
        }
    }
}

/// How the gateway's side of a login ended.
enum GatewayAnswer {
    /// The session is ready; the gateway gave the client this cancel key.
    Ready { cancel_key: Option<Vec<u8>> },
    /// Either side closed during the login (a refusal was passed on to the client).
    Ended,
}

/// Passes the gateway's login answer to the client (and anything the client sends meanwhile to
/// the gateway) until ReadyForQuery.
async fn gateway_login(
    socket: &mut TcpStream,
    stream: &mut TunnelStream,
) -> std::io::Result<GatewayAnswer> {
    let mut scan = GatewayLogin::default();
    let mut from_gateway = BytesMut::with_capacity(8192);
    let mut from_client = BytesMut::with_capacity(1024);
    let mut to_client = BytesMut::new();
    loop {
        tokio::select! {
            n = stream.read_buf(&mut from_gateway) => {
                if n? == 0 {
                    return Ok(GatewayAnswer::Ended);
                }
                let state = scan.scan(&mut from_gateway, &mut to_client);
                socket.write_all(&to_client).await?;
                to_client.clear();
                match state {
                    Ok(Scan::Login) => {}
                    Ok(Scan::Ready) => {
                        socket.write_all(&from_gateway).await?;
                        return Ok(GatewayAnswer::Ready { cancel_key: scan.cancel_key.take() });
                    }
                    Err(why) => {
                        socket.write_all(&pg_login::fatal("08P01", &format!("hoop: {why}"))).await?;
                        return Ok(GatewayAnswer::Ended);
                    }
                }
            }
            n = socket.read_buf(&mut from_client) => {
                if n? == 0 {
                    return Ok(GatewayAnswer::Ended);
                }
                stream.write_all(&from_client).await?;
                from_client.clear();
            }
        }
    }
}

async fn copy(socket: &mut TcpStream, stream: &mut TunnelStream) {
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(socket, stream, COPY_BUFFER, COPY_BUFFER).await
    {
        tracing::debug!(error = %e, "tunnel closed");
    }
}

/// Reports refused local sockets on stderr: the first at once, the rest as one count per
/// [`LOG_INTERVAL`], so a flood cannot flood the owner's terminal either.
pub struct Refusals {
    throttle: Mutex<Throttle>,
    port: u16,
}

impl Refusals {
    /// Reports for the listener on `127.0.0.1:port`.
    pub fn new(port: u16) -> Arc<Self> {
        Arc::new(Self {
            throttle: Mutex::new(Throttle::new(LOG_INTERVAL)),
            port,
        })
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one refused socket.
    pub fn refused(self: &Arc<Self>, reason: &Refusal) {
        let tick = self.throttle().hit(std::time::Instant::now());
        match tick {
            Tick::Report { .. } => note(format!(
                "hoop: refused a local connection on 127.0.0.1:{}: {reason}; no gateway stream was opened",
                self.port
            )),
            Tick::Held { flush_at: Some(at) } => {
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let held = this.throttle().flush(std::time::Instant::now());
                    if let Some(n) = held {
                        note(format!(
                            "hoop: refused {n} more local connections on 127.0.0.1:{} (wrong tunnel password or not a login); no gateway stream was opened",
                            this.port
                        ));
                    }
                });
            }
            Tick::Held { flush_at: None } => {}
        }
    }
}
