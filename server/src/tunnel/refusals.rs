//! Refused local logins, audited without letting a flood write a record per attempt.
//!
//! A tunnel's local port is reachable by every user of the client machine. `hoop connect`
//! refuses a wrong PostgreSQL password itself, but SSH logs in end to end, so another local
//! user trying the SSH port reaches an adapter here (under the owner's identity) for every
//! attempt. Each refusal is counted in a metric; the audit log gets one `access.denied` record
//! at once and then at most one per [`AUDIT_INTERVAL`] per user and connection, carrying how
//! many were refused and why (see `hoop_shared::throttle`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use hoop_shared::throttle::{Throttle, Tick};
use serde_json::json;

use super::TunnelContext;
use crate::audit::{AuditLog, event};

/// At most one audit record of refused local logins per user and connection in this time.
pub const AUDIT_INTERVAL: Duration = Duration::from_secs(60);

/// A refused local login, as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// Not the tunnel password.
    WrongPassword,
    /// Not the tunnel's key.
    WrongKey,
    /// A user name other than `hoop`.
    WrongUser,
}

impl Refusal {
    /// The reason's stable code in audit records and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::WrongPassword => "wrong_tunnel_password",
            Refusal::WrongKey => "wrong_tunnel_key",
            Refusal::WrongUser => "wrong_user",
        }
    }
}

struct Entry {
    throttle: Throttle,
    /// Refusals by reason since the last record.
    reasons: BTreeMap<Refusal, u64>,
    /// Where the last one came from (the `hoop` process).
    peer: SocketAddr,
}

/// (subject, connection) → what was refused since the last record. Holds only pairs with a
/// refusal in the last interval, and only authenticated subjects reach it.
type Refusals = HashMap<(String, String), Entry>;

static REFUSALS: LazyLock<Mutex<Refusals>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn refusals() -> std::sync::MutexGuard<'static, Refusals> {
    REFUSALS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a refused local login on `ctx`'s stream and audits it when due.
pub async fn local_login_refused(ctx: &TunnelContext, why: Refusal) {
    ctx.state
        .metrics
        .local_logins_refused
        .get_or_create(&vec![
            ("kind", ctx.connection.kind.as_str().to_string()),
            ("reason", why.code().to_string()),
        ])
        .inc();
    let key = (ctx.identity.subject.clone(), ctx.connection.name.clone());
    let now = Instant::now();
    let (tick, reasons) = {
        let mut map = refusals();
        map.retain(|_, e| !e.throttle.idle(now));
        let e = map.entry(key.clone()).or_insert_with(|| Entry {
            throttle: Throttle::new(AUDIT_INTERVAL),
            reasons: BTreeMap::new(),
            peer: ctx.peer,
        });
        *e.reasons.entry(why).or_default() += 1;
        e.peer = ctx.peer;
        let tick = e.throttle.hit(now);
        let reasons = match tick {
            Tick::Report { .. } => std::mem::take(&mut e.reasons),
            Tick::Held { .. } => BTreeMap::new(),
        };
        (tick, reasons)
    };
    match tick {
        Tick::Report { count } => write(&ctx.state.audit, &key, ctx.peer, count, &reasons).await,
        Tick::Held { flush_at: Some(at) } => {
            let audit = ctx.state.audit.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let held = {
                    let mut map = refusals();
                    map.get_mut(&key).and_then(|e| {
                        let count = e.throttle.flush(Instant::now())?;
                        Some((count, std::mem::take(&mut e.reasons), e.peer))
                    })
                };
                if let Some((count, reasons, peer)) = held {
                    write(&audit, &key, peer, count, &reasons).await;
                }
            });
        }
        Tick::Held { flush_at: None } => {}
    }
}

async fn write(
    audit: &AuditLog,
    (subject, connection): &(String, String),
    peer: SocketAddr,
    count: u64,
    reasons: &BTreeMap<Refusal, u64>,
) {
    // The most frequent reason names the record; all of them are in `reasons`.
    let reason = reasons
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or("unknown", |(r, _)| r.code());
    let by_reason: BTreeMap<&str, u64> = reasons.iter().map(|(r, n)| (r.code(), *n)).collect();
    tracing::warn!(%subject, %connection, %reason, refused = count, "local logins through a tunnel refused");
    let ev = event(
        "access.denied",
        Some(subject),
        Some(peer.to_string()),
        "denied",
        json!({"connection": connection, "reason": reason, "refused": count,
               "reasons": by_reason, "interval_secs": AUDIT_INTERVAL.as_secs()}),
    );
    let _ = audit.record_nowait(ev).await;
}
