//! The PostgreSQL adapter: the gateway is the server to the client (through the tunnel) and the
//! client to the target. It checks the local client's tunnel password, logs in upstream with
//! the vaulted credential, remaps the cancel key, and relays both directions through the policy
//! pipeline (see `relay.rs`).

mod batch;
mod binary;
mod catalog;
pub mod codec;
pub mod exec;
mod handoff;
mod notices;
mod relay;
mod rows;
mod statements;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tunnel::TunnelContext;
use crate::tunnel::refusals::Refusal;
use codec::{Limits, Startup};

/// Messages from the client larger than this end the session (COPY data arrives in chunks, so
/// only a single enormous query text could come near it).
pub const CLIENT_LIMITS: Limits = Limits {
    max_message: 64 << 20,
};
/// Messages from the target larger than this end the session.
pub const SERVER_LIMITS: Limits = Limits {
    max_message: 512 << 20,
};

/// Where to send a cancel for a key we handed out.
#[derive(Debug, Clone)]
struct CancelTarget {
    address: String,
    pid: i32,
    key: i32,
    subject: String,
    /// Wakes the session's held statement (if any) so it is withdrawn.
    hold_cancel: Arc<tokio::sync::Notify>,
}

/// Keys we gave clients → the target's real keys. Process-wide: a cancel arrives on a new
/// stream, possibly from another `hoop connect` process of the same user.
static CANCEL_KEYS: LazyLock<Mutex<HashMap<(i32, i32), CancelTarget>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn cancel_keys() -> std::sync::MutexGuard<'static, HashMap<(i32, i32), CancelTarget>> {
    CANCEL_KEYS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a session's cancel key when the session ends.
struct CancelKeyGuard((i32, i32));

impl Drop for CancelKeyGuard {
    fn drop(&mut self) {
        cancel_keys().remove(&self.0);
    }
}

/// Reads the untagged startup packets: answers SSL/GSSENC requests with 'N', handles a cancel,
/// and returns the startup parameters.
async fn read_startup<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    buf: &mut BytesMut,
) -> Result<Option<Vec<(String, String)>>, String> {
    loop {
        let n = loop {
            match codec::startup_frame_len(buf, CLIENT_LIMITS) {
                Ok(Some(n)) => break n,
                Ok(None) => {}
                Err(e) => return Err(format!("bad startup packet: {e}")),
            }
            buf.reserve(1024);
            if client.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                return Ok(None);
            }
        };
        let packet = buf.split_to(n);
        match codec::parse_startup(&packet).map_err(|e| e.to_string())? {
            // The local hop is loopback and the tunnel is TLS: no TLS inside the tunnel.
            Startup::Ssl | Startup::GssEnc => {
                client.write_all(b"N").await.map_err(|e| e.to_string())?
            }
            Startup::Cancel { pid, key } => {
                let target = cancel_keys().get(&(pid, key)).cloned();
                if let Some(t) = target {
                    // Only a statement waiting right now is withdrawn; no permit is kept.
                    t.hold_cancel.notify_waiters();
                    let mut out = BytesMut::new();
                    codec::put_cancel(&mut out, t.pid, t.key);
                    if let Ok(mut s) = tokio::net::TcpStream::connect(&t.address).await {
                        let _ = s.write_all(&out).await;
                        tracing::info!(subject = %t.subject, "query cancel relayed to the target");
                    }
                }
                return Ok(None);
            }
            Startup::Startup(params) => return Ok(Some(params)),
        }
    }
}

async fn fatal<C: AsyncWrite + Unpin>(client: &mut C, sqlstate: &str, message: &str) {
    let mut out = BytesMut::new();
    codec::put_error(&mut out, b'E', "FATAL", sqlstate, message, None);
    let _ = client.write_all(&out).await;
    let _ = client.shutdown().await;
}

/// Serves one tunnel stream as a PostgreSQL session.
pub async fn serve<C>(mut client: C, ctx: TunnelContext)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = BytesMut::with_capacity(8192);
    let params = match read_startup(&mut client, &mut buf).await {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => {
            fatal(&mut client, "08P01", &e).await;
            return;
        }
    };
    if wants_replication(&params) {
        fatal(
            &mut client,
            "0A000",
            "hoop does not relay replication connections; connect without the replication parameter",
        )
        .await;
        return;
    }
    if let Some(encoding) = foreign_encoding(&params) {
        let message = format!(
            "hoop relays PostgreSQL sessions in UTF-8 only, and this client asked for \
             client_encoding {encoding}; connect with client_encoding=UTF8 (PGCLIENTENCODING=UTF8)"
        );
        fatal(&mut client, "0A000", &message).await;
        return;
    }

    // Client authentication: the tunnel password. `hoop connect` has checked it already and
    // replays the client's startup and password; checking again means a stream opened by
    // anything else (an older hoop, a hand-made CONNECT) gets no further without it.
    let mut out = BytesMut::new();
    codec::put_auth(&mut out, 3, &[]);
    if client.write_all(&out).await.is_err() {
        return;
    }
    let password = loop {
        match codec::frame_len(&buf, CLIENT_LIMITS) {
            Ok(Some(n)) => {
                let msg = buf.split_to(n);
                if msg.first() != Some(&b'p') {
                    fatal(&mut client, "08P01", "expected a password message").await;
                    return;
                }
                break codec::cstr(codec::body(&msg))
                    .map(|(p, _)| p.to_vec())
                    .unwrap_or_default();
            }
            Ok(None) => {}
            Err(e) => {
                fatal(&mut client, "08P01", &e.to_string()).await;
                return;
            }
        }
        buf.reserve(1024);
        match client.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        password.as_slice(),
        ctx.secret.as_bytes(),
    )) {
        crate::tunnel::refusals::local_login_refused(&ctx, Refusal::WrongPassword).await;
        fatal(
            &mut client,
            "28P01",
            "password authentication failed: use the tunnel password of this `hoop connect` (the psql line it printed reads it from its passfile)",
        )
        .await;
        return;
    }

    let secret = match ctx
        .connection
        .password
        .as_ref()
        .map(|p| p.resolve())
        .transpose()
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(connection = %ctx.connection.name, error = %e, "target password unavailable");
            fatal(
                &mut client,
                "08006",
                "the gateway cannot read this connection's credential; ask an administrator",
            )
            .await;
            return;
        }
    };
    let up = match upstream::connect(
        &ctx.connection,
        secret.as_ref().map(|s| s.expose()),
        &params,
        SERVER_LIMITS,
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(connection = %ctx.connection.name, error = %e, "upstream login failed");
            fatal(&mut client, "08006", &format!("hoop: {e}")).await;
            return;
        }
    };
    // The target accepted the gateway's login: the client is in. What the target sent after
    // its AuthenticationOk (ParameterStatus, BackendKeyData, ReadyForQuery) follows in order.
    out.clear();
    codec::put_auth(&mut out, 0, &[]);
    if client.write_all(&out).await.is_err() {
        return;
    }
    let mut up = up;
    let policy = ctx.state.policy_for(&ctx.connection.name);
    let catalog = match policy.masker().filter(|m| !m.is_empty()) {
        Some(m) => load_catalog(&mut up, m).await,
        None => catalog::Catalog::default(),
    };
    relay::run(client, buf, up, ctx, catalog).await;
}

/// Loads what masking needs from the target's catalog (types, relations, columns, and view
/// definitions when column rules exist), before the client sees the session. A failed load
/// leaves a catalog that knows nothing: rules then match by output column name, and shapes
/// come from the built-in types.
async fn load_catalog(
    up: &mut upstream::Upstream,
    m: &crate::policy::masking::Masker,
) -> catalog::Catalog {
    let relations = if m.has_column_rules() {
        catalog::RELATIONS_QUERY
    } else {
        catalog::USER_RELATIONS_QUERY
    };
    let mut sql = format!(
        "{}; {}; {}; {}",
        catalog::TYPES_QUERY,
        relations,
        catalog::ATTRIBUTES_QUERY,
        catalog::INHERITS_QUERY
    );
    if m.has_column_rules() {
        sql.push_str("; ");
        sql.push_str(catalog::VIEWS_QUERY);
    }
    match upstream::query_rows(up, SERVER_LIMITS, &sql).await {
        Ok(sets) => {
            let mut sets = sets.into_iter();
            let mut next = || sets.next().unwrap_or_default();
            let (types, relations, attrs, inherits, views) =
                (next(), next(), next(), next(), next());
            catalog::Catalog::build(m, types, relations, attrs, inherits, views)
        }
        Err(e) => {
            tracing::warn!(error = %e, "catalog lookup for masking failed");
            catalog::Catalog::unloaded(m)
        }
    }
}

/// True when the startup parameters ask for a replication connection, which the gateway does
/// not relay: a replication stream (CopyBoth) carries table data past every control.
fn wants_replication(params: &[(String, String)]) -> bool {
    params.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("replication")
            && !matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "off" | "no" | "0" | ""
            )
    })
}

/// The client encoding a startup asks for when it is not UTF-8. In client-only encodings
/// (SJIS, BIG5, GBK...) a two-byte character can end in `\`, so the server would split a text
/// into statements differently from the gateway, which reads it as UTF-8. SQL_ASCII is
/// accepted: a UTF-8 server validates such input as UTF-8. The value is truncated for the
/// message.
fn foreign_encoding(params: &[(String, String)]) -> Option<String> {
    params
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("client_encoding"))
        .map(|(_, v)| v)
        .find(|v| !crate::policy::sql::is_utf8_encoding(v))
        .map(|v| v.chars().take(32).collect())
}

/// Registers the target's real key under a fresh random one for the client.
fn register_cancel_key(
    address: &str,
    pid: i32,
    key: i32,
    subject: &str,
    hold_cancel: Arc<tokio::sync::Notify>,
) -> (i32, i32, CancelKeyGuard) {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut map = cancel_keys();
    loop {
        let fake = (rng.random_range(1..i32::MAX), rng.random::<i32>());
        if let std::collections::hash_map::Entry::Vacant(e) = map.entry(fake) {
            e.insert(CancelTarget {
                address: address.to_string(),
                pid,
                key,
                subject: subject.to_string(),
                hold_cancel: hold_cancel.clone(),
            });
            return (fake.0, fake.1, CancelKeyGuard(fake));
        }
    }
}
