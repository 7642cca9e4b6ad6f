//! Tunnels: each forwarded TCP connection from `hoop connect` arrives as its own HTTP/2 CONNECT
//! stream on the gateway's HTTPS port (HTTP/1.1 CONNECT works too). Every stream is authorised
//! on its own — bearer token, connection name, group — before a byte reaches a protocol adapter.
//!
//! Request headers:
//! - `authorization: Bearer <token>`
//! - `x-hoop-connection: <name>`
//! - `x-hoop-secret: <tunnel password>` — what the local client must present as its password
//!   (`hoop connect` checks it first for PostgreSQL and replays it; the adapter checks it again).
//! - `x-hoop-ssh-key: ssh-ed25519 AAAA...` (optional) — the tunnel's own key, which the SSH
//!   adapter accepts for public-key login besides the password.
//!
//! Refused local logins are counted and audited at most once a minute per user and connection
//! (`refusals`), so a flood of wrong logins is not a flood of audit records.

pub mod refusals;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use hoop_shared::exec::ExecReviewMode;
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::api::AppState;
use crate::audit::event;
use crate::auth::Identity;
use crate::config::{ConnectionConfig, ConnectionKind};

/// Header naming the connection.
pub const CONNECTION_HEADER: &str = "x-hoop-connection";
/// Header carrying the tunnel password.
pub const SECRET_HEADER: &str = "x-hoop-secret";
/// Header carrying the tunnel's SSH public key (OpenSSH format).
pub const SSH_KEY_HEADER: &str = "x-hoop-ssh-key";

/// Everything an adapter knows about the stream it serves.
pub struct TunnelContext {
    /// Who opened the stream.
    pub identity: Identity,
    /// The target.
    pub connection: Arc<ConnectionConfig>,
    /// The tunnel password: what the local client must present as its password.
    pub secret: String,
    /// The tunnel's SSH public key (`ssh-ed25519 AAAA...`), which an SSH client may log in
    /// with instead of the password.
    pub client_key: Option<String>,
    /// Address of the `hoop` process.
    pub peer: SocketAddr,
    /// Shared gateway state.
    pub state: AppState,
    /// Fires when the access grant this stream runs under is revoked or expires.
    pub grant_ended: Option<tokio_util::sync::CancellationToken>,
    /// What a statement that needs review does: tunnels hold it (`Hold`); `hoop exec` may ask
    /// not to wait, or run one that is already approved.
    pub review_mode: ExecReviewMode,
    /// `hoop exec` only: where the adapter reports what it answered itself (see [`Answer`]).
    pub answers: Option<Answers>,
}

impl TunnelContext {
    /// Reports one of the adapter's own answers to `hoop exec`. False on a tunnel (nobody
    /// listens beside the protocol): the adapter then says it in the protocol only.
    pub fn tell(&self, answer: Answer) -> bool {
        match &self.answers {
            Some(a) => {
                // The receiver may be gone already (the exec ended): nothing left to tell.
                let _ = a.0.send(answer);
                true
            }
            None => false,
        }
    }
}

/// What an adapter answered itself, rather than the target, for one statement or command.
/// `hoop exec` reads these beside the protocol, so a target whose output looks like the
/// gateway's (a `hoop: blocked by guardrail` line, a notice naming a review) cannot pass for
/// it: only what arrives here is the gateway's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Filed review `id` and waits for it (`message`: what the user is told).
    Review { id: i64, message: String },
    /// The held statement or command was approved: it runs now.
    Approved,
    /// A guardrail refused it.
    Blocked(String),
    /// Its review was rejected, expired or withdrawn, or `--review` did not apply.
    NotApproved(String),
    /// Its review is still pending when the caller stopped waiting.
    Pending(String),
}

impl Answer {
    /// What the user is told, as the protocol message carries it (none for `Approved`).
    pub fn message(&self) -> Option<&str> {
        match self {
            Answer::Review { message: m, .. }
            | Answer::Blocked(m)
            | Answer::NotApproved(m)
            | Answer::Pending(m) => Some(m),
            Answer::Approved => None,
        }
    }

    /// How `hoop exec` reports it when it refused the statement or command.
    pub fn refusal(&self) -> Option<hoop_shared::exec::ExecErrorKind> {
        use hoop_shared::exec::ExecErrorKind as Kind;
        match self {
            Answer::Blocked(_) => Some(Kind::Blocked),
            Answer::NotApproved(_) => Some(Kind::ReviewRejected),
            Answer::Pending(_) => Some(Kind::ReviewPending),
            Answer::Review { .. } | Answer::Approved => None,
        }
    }
}

/// The sending half of an exec's answers. Unbounded: an adapter sends at most a few answers
/// per statement of one request, whose size the API already bounds, and it must never wait on
/// the exec side that is reading its protocol output.
#[derive(Debug, Clone)]
pub struct Answers(pub(crate) tokio::sync::mpsc::UnboundedSender<Answer>);

impl Answers {
    /// A new pair: the context's half and the exec side's receiver.
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Answer>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(tx), rx)
    }
}

/// Why a caller may not use a connection: the status, a stable code and a sentence.
#[derive(Debug)]
pub struct Denied {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`not_found`, `forbidden`, `review_required`, `internal`).
    pub code: &'static str,
    /// What to do.
    pub message: String,
}

/// Authorises `identity` to use the connection `name`, exactly as every tunnel stream is: the
/// connection exists, one of the caller's groups is allowed, and, when the connection needs
/// access reviews, the caller holds an approved, unexpired grant (whose token is returned).
/// `hoop exec` goes through the same function.
pub async fn authorize(
    state: &AppState,
    identity: &Identity,
    name: &str,
    peer: SocketAddr,
) -> Result<
    (
        Arc<ConnectionConfig>,
        Option<tokio_util::sync::CancellationToken>,
    ),
    Denied,
> {
    let denied = |status, code, message: String| Denied {
        status,
        code,
        message,
    };
    let Some(conn) = state.config.connections.iter().find(|c| c.name == name) else {
        return Err(denied(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no connection named {name:?}"),
        ));
    };
    if !identity.in_any(&conn.allow) {
        let ev = event(
            "access.denied",
            Some(&identity.subject),
            Some(peer.to_string()),
            "denied",
            json!({"connection": name, "groups": identity.groups}),
        );
        let _ = state.audit.record_nowait(ev).await;
        return Err(denied(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} may not use {name:?}: it is allowed to groups {}",
                identity.name,
                conn.allow.join(", ")
            ),
        ));
    }
    // Just-in-time access: the stream needs an approved, unexpired grant (once per grant, not
    // once per TCP connection).
    let mut grant_ended = None;
    if conn.review.as_ref().is_some_and(|r| r.access) {
        match state
            .reviews
            .active_grant(&conn.name, &identity.subject)
            .await
        {
            Ok(Some(g)) => grant_ended = Some(g.ended),
            Ok(None) => {
                return Err(denied(
                    StatusCode::FORBIDDEN,
                    "review_required",
                    format!(
                        "access to {name:?} needs an approved review: run `hoop connect {name} --reason \"...\" --duration 30m`"
                    ),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "grant lookup failed");
                return Err(denied(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the gateway cannot check access grants".into(),
                ));
            }
        }
    }
    Ok((Arc::new(conn.clone()), grant_ended))
}

fn reply(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&json!({"error": code, "message": message})).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r
}

/// Handles a CONNECT request: authorise, answer 200, then hand the upgraded stream to the
/// connection's protocol adapter.
pub async fn handle_connect<B: Send + 'static>(
    req: Request<B>,
    state: AppState,
    peer: SocketAddr,
) -> Response<Body> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = header("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::to_string);
    let name = header(CONNECTION_HEADER).unwrap_or_default().to_string();
    let secret = header(SECRET_HEADER).unwrap_or_default().to_string();
    let client_key = header(SSH_KEY_HEADER)
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let Some(bearer) = bearer else {
        return reply(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no bearer token; run `hoop login`",
        );
    };
    let identity = match state.auth.authenticate(&bearer).await {
        Ok(id) => id,
        Err(f) => {
            state
                .metrics
                .auth_rejected
                .get_or_create(&vec![("reason", f.code.to_string())])
                .inc();
            let ev = event(
                "auth.rejected",
                None,
                Some(peer.to_string()),
                "denied",
                json!({"reason": f.code, "tunnel": name}),
            );
            let _ = state.audit.record_nowait(ev).await;
            return reply(StatusCode::UNAUTHORIZED, "unauthenticated", &f.message);
        }
    };
    let (conn, grant_ended) = match authorize(&state, &identity, &name, peer).await {
        Ok(v) => v,
        Err(d) => return reply(d.status, d.code, &d.message),
    };
    if secret.len() < 16 {
        return reply(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the tunnel needs a tunnel password of 16+ characters",
        );
    }
    state
        .metrics
        .tunnel_streams
        .get_or_create(&vec![("kind", conn.kind.as_str().to_string())])
        .inc();
    let ctx = TunnelContext {
        identity,
        connection: conn,
        secret,
        client_key,
        peer,
        state,
        grant_ended,
        review_mode: ExecReviewMode::Hold,
        answers: None,
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                match ctx.connection.kind {
                    ConnectionKind::Postgres => crate::proxy::postgres::serve(io, ctx).await,
                    ConnectionKind::Ssh => crate::proxy::ssh::serve(io, ctx).await,
                }
            }
            Err(e) => tracing::debug!(error = %e, "tunnel upgrade failed"),
        }
    });
    Response::new(Body::empty())
}
