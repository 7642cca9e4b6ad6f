//! The one task that owns an SSH session's state: it answers the client's login, connects to
//! the target, opens channels, and turns the channel pumps' notes into recording and audit
//! records.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::channel::{self, ChannelEnv, Note};
use super::russh_glue::{
    self, Credential, FrontControl, FrontEvent, HostKey, HostKeyPin, Target, TargetAuth,
    TargetError,
};
use crate::audit::event;
use crate::policy::{MaskCounts, Verdict, masking};
use crate::recording::{SessionStart, SessionSummary, StatementRecord};
use crate::tunnel::TunnelContext;
use crate::tunnel::refusals::{self, Refusal};

/// What the session does with one login attempt of the local client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    /// The offered key is the tunnel's: the client may go on to prove it holds it.
    KeyAcceptable,
    /// Logged in: connect to the target.
    Accepted,
    /// Refused (counted, and audited at most once a minute).
    Refused(Refusal),
}

/// Decides a login: user `hoop` with the tunnel password (compared in constant time) or the
/// tunnel's key (by fingerprint; public keys are not secret).
fn check_login(
    user: &str,
    credential: &Credential,
    secret: &str,
    tunnel_key: Option<&str>,
) -> Login {
    if user != "hoop" {
        return Login::Refused(Refusal::WrongUser);
    }
    let ours = |fp: &str| tunnel_key.is_some_and(|k| k == fp);
    match credential {
        Credential::Password(p) => {
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                p.as_bytes(),
                secret.as_bytes(),
            )) {
                Login::Accepted
            } else {
                Login::Refused(Refusal::WrongPassword)
            }
        }
        Credential::KeyOffered { fingerprint } if ours(fingerprint) => Login::KeyAcceptable,
        Credential::Key { fingerprint } if ours(fingerprint) => Login::Accepted,
        Credential::KeyOffered { .. } | Credential::Key { .. } => Login::Refused(Refusal::WrongKey),
    }
}

/// The tunnel key's fingerprint, if the stream announced a usable one.
fn tunnel_key(ctx: &TunnelContext) -> Option<String> {
    let key = ctx.client_key.as_deref()?;
    match russh_glue::public_key_fingerprint(key) {
        Ok(fp) => Some(fp),
        Err(e) => {
            tracing::warn!(connection = %ctx.connection.name, error = %e, "the tunnel announced an unusable SSH key; only its password logs in");
            None
        }
    }
}

/// A client logged in: connect to the target and record the session's start, or disconnect
/// with the reason. The login is accepted either way, so OpenSSH prints the reason ("Received
/// disconnect ...: hoop: ...") instead of "Permission denied".
async fn logged_in(
    ctx: &TunnelContext,
    st: &mut State,
    target: &mut Option<Arc<Target>>,
    control: &FrontControl,
    reply: oneshot::Sender<bool>,
) {
    if target.is_some() {
        let _ = reply.send(true);
        return;
    }
    match connect(ctx).await {
        Ok(t) => {
            if let Err(msg) = start(ctx, st).await {
                let _ = reply.send(true);
                control.disconnect(msg).await;
                t.close().await;
                return;
            }
            *target = Some(Arc::new(t));
            let _ = reply.send(true);
        }
        Err(msg) => {
            let _ = reply.send(true);
            control.disconnect(msg).await;
        }
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn session_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let s: String = (0..12)
        .filter_map(|_| {
            ALPHABET
                .get(rng.random_range(0..ALPHABET.len()))
                .map(|b| *b as char)
        })
        .collect();
    format!("s_{s}")
}

/// An exec waiting for its exit status.
struct OpenExec {
    text: String,
    verdict: Verdict,
    at_ms: i64,
}

/// One channel's terminal recording, buffered until a chunk is full or the channel closes.
struct Cast {
    start: std::time::Instant,
    buf: String,
    seq: u64,
}

/// Cast text buffered per channel before it is written as one chunk.
const CAST_CHUNK: usize = 64 * 1024;

struct State {
    id: String,
    casts: HashMap<u32, Cast>,
    started: bool,
    seq: u64,
    statements: u64,
    blocked: u64,
    up: u64,
    down: u64,
    masked: masking::MaskCounts,
    execs: HashMap<u32, OpenExec>,
    failed: Option<String>,
}

async fn audit(ctx: &TunnelContext, kind: &str, outcome: &str, detail: serde_json::Value) {
    let ev = event(
        kind,
        Some(&ctx.identity.subject),
        Some(ctx.peer.to_string()),
        outcome,
        detail,
    );
    let _ = ctx.state.audit.record_nowait(ev).await;
}

fn target_auth(ctx: &TunnelContext) -> Result<TargetAuth, String> {
    let c = &ctx.connection;
    if let Some(k) = &c.private_key {
        return k.resolve().map(|s| TargetAuth::Key(s.expose().to_string()));
    }
    if let Some(p) = &c.password {
        return p
            .resolve()
            .map(|s| TargetAuth::Password(s.expose().to_string()));
    }
    Err("no credential configured".into())
}

async fn connect(ctx: &TunnelContext) -> Result<Target, String> {
    let c = &ctx.connection;
    let pin = c
        .host_key
        .as_deref()
        .ok_or_else(|| "the connection pins no host key".to_string())
        .and_then(HostKeyPin::parse)
        .map_err(|e| format!("hoop: the gateway refuses {}: {e}", c.name))?;
    let auth = target_auth(ctx).map_err(|e| {
        tracing::error!(connection = %c.name, error = %e, "target credential unavailable");
        "hoop: the gateway cannot read this connection's credential; ask an administrator"
            .to_string()
    })?;
    let user = c.user.clone().unwrap_or_default();
    match russh_glue::connect_target(&c.address, &user, &auth, &pin).await {
        Ok(t) => Ok(t),
        Err(e) => {
            let reason = match &e {
                TargetError::HostKey { .. } => "target_host_key_mismatch",
                TargetError::Connect { .. } => "target_unreachable",
                TargetError::Refused { .. } => "target_refused_credential",
                TargetError::BadKey => "bad_private_key",
            };
            tracing::warn!(connection = %c.name, error = %e, "ssh target connection failed");
            audit(
                ctx,
                "ssh.target_failed",
                "denied",
                json!({"connection": c.name, "reason": reason, "message": e.to_string()}),
            )
            .await;
            Err(format!("hoop: {e}"))
        }
    }
}

/// Runs one SSH session on the tunnel stream.
pub(super) async fn run<C>(io: C, ctx: TunnelContext, key: HostKey)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (front_tx, mut front_rx) = mpsc::channel(16);
    let front = match russh_glue::run_front(io, &key, front_tx).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "ssh handshake with the local client failed");
            return;
        }
    };
    let control = front.control();
    let done = tokio::spawn(front.wait());
    let ctx = Arc::new(ctx);
    let tunnel_key = tunnel_key(&ctx);
    let policy = ctx.state.policy_for(&ctx.connection.name);
    let (note_tx, mut note_rx) = mpsc::channel::<Note>(1024);
    let mut note_tx = Some(note_tx);
    let mut target: Option<Arc<Target>> = None;
    let mut st = State {
        id: session_id(),
        casts: HashMap::new(),
        started: false,
        seq: 0,
        statements: 0,
        blocked: 0,
        up: 0,
        down: 0,
        masked: masking::MaskCounts::default(),
        execs: HashMap::new(),
        failed: None,
    };
    let mut channels = 0u32;
    let grant_ended = ctx.grant_ended.clone();
    let grant = async move {
        match grant_ended {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(grant);
    let mut grant_fired = false;
    let mut disconnected = false;
    loop {
        tokio::select! {
            ev = front_rx.recv(), if note_tx.is_some() => match ev {
                Some(FrontEvent::Auth { user, credential, reply }) => {
                    match check_login(&user, &credential, &ctx.secret, tunnel_key.as_deref()) {
                        Login::KeyAcceptable => {
                            let _ = reply.send(true);
                        }
                        Login::Refused(why) => {
                            refusals::local_login_refused(&ctx, why).await;
                            let _ = reply.send(false);
                        }
                        Login::Accepted => {
                            logged_in(&ctx, &mut st, &mut target, &control, reply).await;
                        }
                    }
                }
                Some(FrontEvent::Session(pending)) => {
                    let (Some(t), Some(tx)) = (target.clone(), note_tx.clone()) else {
                        pending.reject().await;
                        continue;
                    };
                    channels += 1;
                    let env = ChannelEnv {
                        number: channels,
                        session_id: st.id.clone(),
                        ctx: ctx.clone(),
                        policy: policy.clone(),
                        notes: tx,
                    };
                    tokio::spawn(channel::session_channel(pending, t, env));
                }
                Some(FrontEvent::DirectTcpip { channel: pending, host, port, origin, origin_port }) => {
                    let allowed = ctx.connection.allow_port_forwarding;
                    audit(&ctx, "ssh.forward", if allowed { "success" } else { "denied" }, json!({
                        "connection": ctx.connection.name, "session": st.id, "host": host, "port": port,
                    })).await;
                    let (Some(t), Some(tx), true) = (target.clone(), note_tx.clone(), allowed) else {
                        pending.reject().await;
                        continue;
                    };
                    tokio::spawn(channel::direct_tcpip(pending, t, host, port, origin, origin_port, tx));
                }
                // The client's connection ended; wait for the pumps' last notes.
                None => { note_tx = None; }
            },
            note = note_rx.recv() => match note {
                Some(n) => {
                    record(&ctx, &mut st, n).await;
                    // Fail closed: a session that cannot be recorded ends.
                    if st.failed.is_some() && !disconnected {
                        disconnected = true;
                        control.disconnect("hoop: the gateway cannot record this session; it ends".into()).await;
                    }
                }
                None => break,
            },
            () = &mut grant, if !grant_fired => {
                grant_fired = true;
                control.disconnect("hoop: the access grant for this connection ended (revoked or expired)".into()).await;
                st.failed = Some("access grant ended".into());
            }
        }
    }
    let reason = match done.await {
        _ if st.failed.is_some() => st.failed.clone().unwrap_or_default(),
        Ok(Ok(())) => "client closed".to_string(),
        Ok(Err(e)) => format!("connection error: {e}"),
        Err(_) => "internal error".to_string(),
    };
    if let Some(t) = target {
        t.close().await;
    }
    if st.started {
        let masked = MaskCounts::from(&st.masked);
        let summary = SessionSummary {
            ended_at_ms: now_ms(),
            bytes_up: st.up,
            bytes_down: st.down,
            statements: st.statements,
            blocked: st.blocked,
            masked: masked.clone(),
            end_reason: reason.clone(),
        };
        let _ = ctx.state.recorder.session_ended(&st.id, summary).await;
        audit(
            &ctx,
            "session.ended",
            "success",
            json!({"session": st.id, "connection": ctx.connection.name, "reason": reason,
                   "statements": st.statements, "blocked": st.blocked, "masked": masked.counts}),
        )
        .await;
        if masked.total() > 0 {
            audit(
                &ctx,
                "masking.applied",
                "success",
                json!({"session": st.id, "connection": ctx.connection.name, "masked": masked.counts}),
            )
            .await;
        }
    }
}

/// Records the session's start (fail closed: an unrecorded session does not start).
async fn start(ctx: &TunnelContext, st: &mut State) -> Result<(), String> {
    let start = SessionStart {
        id: st.id.clone(),
        subject: ctx.identity.subject.clone(),
        name: ctx.identity.name.clone(),
        connection: ctx.connection.name.clone(),
        kind: "ssh".into(),
        client_addr: Some(ctx.peer.to_string()),
        started_at_ms: now_ms(),
    };
    if let Err(e) = ctx.state.recorder.session_started(start).await {
        tracing::error!(error = %e, "cannot record the session start; refusing it");
        return Err("hoop: the gateway cannot record sessions right now".into());
    }
    st.started = true;
    audit(
        ctx,
        "session.started",
        "success",
        json!({"session": st.id, "connection": ctx.connection.name, "kind": "ssh"}),
    )
    .await;
    Ok(())
}

/// Writes what is buffered of a channel's cast. Fail closed: a failed write ends the session.
async fn flush_cast(ctx: &TunnelContext, st: &mut State, channel: u32) {
    let Some(c) = st.casts.get_mut(&channel) else {
        return;
    };
    if c.buf.is_empty() {
        return;
    }
    let chunk = std::mem::take(&mut c.buf);
    let seq = c.seq;
    c.seq += 1;
    if let Err(e) = ctx
        .state
        .store
        .cast_append(&st.id, channel, seq, chunk.as_bytes())
        .await
    {
        tracing::error!(session = %st.id, error = %e, "cannot store the terminal recording");
        st.failed = Some(format!("recording failed: {e}"));
    }
}

fn statement(st: &mut State, at_ms: i64, text: String) -> StatementRecord {
    st.seq += 1;
    StatementRecord {
        session_id: st.id.as_str().into(),
        seq: st.seq,
        at_ms,
        text: text.into(),
        params: Vec::new(),
        verdict: "allow".into(),
        rule: None,
        reason: None,
        outcome: "ok".into(),
        tag: None,
        sqlstate: None,
        rows: None,
        duration_us: 0,
        masked: MaskCounts::default(),
    }
}

async fn record(ctx: &TunnelContext, st: &mut State, note: Note) {
    let rec = match note {
        Note::Exec {
            channel,
            text,
            verdict,
            at_ms,
        } => {
            st.statements += 1;
            if let Verdict::Block { rule, reason } = &verdict {
                st.blocked += 1;
                audit(
                    ctx,
                    "statement.blocked",
                    "denied",
                    json!({"session": st.id, "connection": ctx.connection.name, "rule": rule,
                           "reason": reason, "command": text}),
                )
                .await;
                let mut r = statement(st, at_ms, text);
                r.verdict = "block".into();
                r.rule = Some(rule.clone());
                r.reason = Some(reason.clone());
                r.outcome = "blocked".into();
                r.tag = Some(format!("exit {}", super::BLOCKED_STATUS));
                Some(r)
            } else {
                st.execs.insert(
                    channel,
                    OpenExec {
                        text,
                        verdict,
                        at_ms,
                    },
                );
                None
            }
        }
        Note::Exit {
            channel,
            status,
            signal,
        } => st.execs.remove(&channel).map(|e| {
            let mut r = statement(st, e.at_ms, e.text);
            if let Verdict::Review { rule, .. } = e.verdict {
                r.verdict = "review".into();
                r.rule = Some(rule);
            }
            r.outcome = if status == Some(0) { "ok" } else { "error" }.into();
            r.tag = Some(match (status, signal) {
                (Some(s), _) => format!("exit {s}"),
                (None, Some(sig)) => format!("signal {sig}"),
                (None, None) => "closed".into(),
            });
            r.duration_us = (now_ms() - r.at_ms).max(0) as u64 * 1000;
            r
        }),
        Note::NotRun {
            channel,
            outcome,
            reason,
        } => st.execs.remove(&channel).map(|e| {
            st.blocked += 1;
            let mut r = statement(st, e.at_ms, e.text);
            r.verdict = "review".into();
            if let Verdict::Review { rule, .. } = e.verdict {
                r.rule = Some(rule);
            }
            r.reason = Some(reason);
            let status = if outcome == "pending" {
                super::REVIEW_PENDING_STATUS
            } else {
                super::NOT_APPROVED_STATUS
            };
            r.outcome = outcome.into();
            r.tag = Some(format!("exit {status}"));
            r
        }),
        Note::Typed { text, at_ms } => {
            st.statements += 1;
            let mut r = statement(st, at_ms, text);
            r.outcome = "typed".into();
            r.tag = Some("shell input (heuristic)".into());
            Some(r)
        }
        Note::Sftp { text, at_ms } => {
            st.statements += 1;
            let mut r = statement(st, at_ms, text);
            r.tag = Some("sftp".into());
            Some(r)
        }
        Note::CastStart {
            channel,
            cols,
            rows,
        } => {
            let header = hoop_shared::asciicast::Header {
                version: 2,
                width: cols,
                height: rows,
                timestamp: Some(now_ms() / 1000),
                title: Some(format!(
                    "{} on {} (session {}, channel {channel})",
                    ctx.identity.name, ctx.connection.name, st.id
                )),
            };
            st.casts.insert(
                channel,
                Cast {
                    start: std::time::Instant::now(),
                    buf: header.line(),
                    seq: 0,
                },
            );
            None
        }
        Note::Cast {
            channel,
            input,
            data,
        } => {
            use hoop_shared::asciicast::{Code, event_line};
            if let Some(c) = st.casts.get_mut(&channel) {
                let code = if input { Code::Input } else { Code::Output };
                c.buf
                    .push_str(&event_line(c.start.elapsed().as_secs_f64(), code, &data));
                if c.buf.len() >= CAST_CHUNK {
                    flush_cast(ctx, st, channel).await;
                }
            }
            None
        }
        Note::CastResize {
            channel,
            cols,
            rows,
        } => {
            use hoop_shared::asciicast::{Code, event_line};
            if let Some(c) = st.casts.get_mut(&channel) {
                let size = format!("{cols}x{rows}");
                c.buf.push_str(&event_line(
                    c.start.elapsed().as_secs_f64(),
                    Code::Resize,
                    size.as_bytes(),
                ));
            }
            None
        }
        Note::Closed {
            up,
            down,
            masked,
            channel,
        } => {
            flush_cast(ctx, st, channel).await;
            st.casts.remove(&channel);
            st.up += up;
            st.down += down;
            st.masked.merge(&masked);
            // An exec whose channel closed without an exit status.
            st.execs.remove(&channel).map(|e| {
                let mut r = statement(st, e.at_ms, e.text);
                r.outcome = "error".into();
                r.tag = Some("closed".into());
                r
            })
        }
    };
    if let Some(r) = rec
        && let Err(e) = ctx.state.recorder.statement(r).await
    {
        tracing::error!(session = %st.id, error = %e, "cannot record; the session goes on unrecorded");
        st.failed = Some(format!("recording failed: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Abcdefghijkmnopqrstuvwxy";
    const KEY: &str = "SHA256:tunnelkey";

    fn key(fp: &str, verified: bool) -> Credential {
        let fingerprint = fp.to_string();
        if verified {
            Credential::Key { fingerprint }
        } else {
            Credential::KeyOffered { fingerprint }
        }
    }

    #[test]
    fn only_hoop_with_the_tunnel_password_or_key_logs_in() {
        let pw = |p: &str| Credential::Password(p.to_string());
        let cases = [
            ("hoop", pw(SECRET), Some(KEY), Login::Accepted),
            ("hoop", key(KEY, false), Some(KEY), Login::KeyAcceptable),
            ("hoop", key(KEY, true), Some(KEY), Login::Accepted),
            ("hoop", pw(SECRET), None, Login::Accepted),
            (
                "root",
                pw(SECRET),
                Some(KEY),
                Login::Refused(Refusal::WrongUser),
            ),
            (
                "root",
                key(KEY, true),
                Some(KEY),
                Login::Refused(Refusal::WrongUser),
            ),
            (
                "hoop",
                pw("Abcdefghijkmnopqrstuvwx"),
                Some(KEY),
                Login::Refused(Refusal::WrongPassword),
            ),
            (
                "hoop",
                pw(""),
                Some(KEY),
                Login::Refused(Refusal::WrongPassword),
            ),
            (
                "hoop",
                key("SHA256:other", false),
                Some(KEY),
                Login::Refused(Refusal::WrongKey),
            ),
            (
                "hoop",
                key("SHA256:other", true),
                Some(KEY),
                Login::Refused(Refusal::WrongKey),
            ),
            // A stream that announced no key accepts none.
            (
                "hoop",
                key(KEY, true),
                None,
                Login::Refused(Refusal::WrongKey),
            ),
        ];
        for (user, credential, tunnel_key, want) in cases {
            assert_eq!(check_login(user, &credential, SECRET, tunnel_key), want);
        }
    }
}
