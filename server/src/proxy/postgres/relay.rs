//! The two directions of a PostgreSQL session after login.
//!
//! client → target (`client_to_server`): every Query and Parse goes through the guardrails.
//! Extended-protocol messages are held until Sync or Flush, so a batch with a blocked Parse is
//! answered by the gateway and never reaches the target. Everything else is forwarded as the
//! bytes that arrived, batched into one write per read.
//!
//! target → client (`server_to_client`): DataRows are masked using the current RowDescription
//! (`rows.rs`), and errors, notices, notifications, parameter statuses and COPY data are masked
//! too (`notices.rs`, `rows.rs`); CommandComplete / ErrorResponse / ReadyForQuery close
//! statements for the recorder. The
//! gateway's own answers (a blocked statement's error) are merged into this stream in order: the
//! other direction queues "what the target will answer next" and "what the gateway answers",
//! and this direction emits the gateway's answers exactly when the target has answered
//! everything sent before them.
//!
//! Known limits (documented in docs/policy.md): a blocked statement does not abort the
//! surrounding transaction on the target; column rules follow source columns through the
//! catalog the gateway loads once per session (`catalog.rs`), so relations created later are
//! masked whole until the client reconnects.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};

use super::binary;
use super::catalog::Catalog;
use super::codec;
use super::handoff::{HandoffRx, HandoffTx, handoff};
use super::notices;
use super::rows::{self, ColAction, CopyDecision, CopyPlan, Lineages, RowMasker};
use super::upstream::{ReadSide, Upstream};
use super::{CLIENT_LIMITS, SERVER_LIMITS, register_cancel_key};
use crate::audit::event;
use crate::policy::masking::{MaskCounts as LiveCounts, Masker};
use crate::policy::{MaskCounts, Policy, Verdict};
use crate::recording::{SessionStart, SessionSummary, StatementRecord};
use crate::reviews::{Hold, NotRun, Withdrawn};
use crate::tunnel::{Answer, TunnelContext};
use crate::util::random_chars;

/// Read buffers start here and grow for larger messages.
const READ_CHUNK: usize = 64 * 1024;
/// What a client may pipeline while one of its statements waits for review (read and kept).
const HELD_INPUT_LIMIT: usize = 1 << 20;
/// An extended-protocol batch larger than this is forwarded without waiting for Sync.
const MAX_HELD_BATCH: usize = 8 << 20;

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// A statement in flight: what to record when the target answers.
#[derive(Debug)]
struct Pending {
    seq: u64,
    text: Arc<str>,
    params: Vec<Option<String>>,
    simple: bool,
    started: Instant,
    at_ms: i64,
    tags: Vec<String>,
    rows: u64,
    error: Option<(String, String)>,
}

/// What the target will answer next, and the gateway's own answers, in stream order.
#[derive(Debug)]
enum Item {
    /// A statement (Query or Execute) whose outcome is pending.
    Stmt(Box<Pending>),
    /// A Describe whose RowDescription/NoData is forwarded (client's) or swallowed (ours).
    Describe { injected: bool },
    /// A Describe of a statement: its ParameterDescription gives the parameter types of the
    /// Parse with this number (None: a statement the gateway did not see parsed).
    ParamTypes(Option<u64>),
    /// A Sync or Query: the target answers ReadyForQuery.
    Sync,
    /// The gateway's answer; `ready` appends ReadyForQuery with the current status.
    Local { bytes: BytesMut, ready: bool },
    /// End the session now: write these bytes at once, cancel what the target is running.
    Kill(BytesMut),
}

/// Shared counters of one session.
#[derive(Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    statements: AtomicU64,
    blocked: AtomicU64,
    seq: AtomicU64,
}

struct Session {
    id: Arc<str>,
    ctx: TunnelContext,
    policy: Arc<Policy>,
    counters: Counters,
    /// Woken by a CancelRequest carrying this session's key: ends a statement review's wait.
    hold_cancel: Arc<tokio::sync::Notify>,
    /// Parameter types the target described, by Parse number: written by the target side
    /// before it forwards the ParameterDescription, so a client that waited for it (as
    /// tokio-postgres and JDBC do before a Bind) finds them here.
    described: std::sync::Mutex<HashMap<u64, Arc<[u32]>>>,
}

impl Session {
    fn next_seq(&self) -> u64 {
        self.counters.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn described(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<[u32]>>> {
        // A panic elsewhere cannot leave this map half-written: keep using it.
        self.described
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn record(
        &self,
        mut p: Pending,
        outcome: &str,
        verdict: (&str, Option<String>, Option<String>),
        masked: MaskCounts,
    ) -> Result<(), String> {
        self.counters.statements.fetch_add(1, Ordering::Relaxed);
        let rows = p.tags.last().map(|t| p.rows.max(tag_rows(t)));
        // One tag (the usual case) is moved, not joined into a copy.
        let tag = match p.tags.len() {
            0 | 1 => p.tags.pop(),
            _ => Some(p.tags.join("; ")),
        };
        let rec = StatementRecord {
            session_id: Arc::clone(&self.id),
            seq: p.seq,
            at_ms: p.at_ms,
            text: p.text,
            params: p.params,
            verdict: verdict.0.to_string(),
            rule: verdict.1,
            reason: verdict.2,
            outcome: outcome.to_string(),
            tag,
            sqlstate: p.error.as_ref().map(|e| e.0.clone()),
            rows,
            duration_us: p.started.elapsed().as_micros() as u64,
            masked,
        };
        // Fail closed: a statement that cannot be recorded ends the session.
        self.ctx.state.recorder.statement(rec).await.map_err(|e| {
            tracing::error!(session = %self.id, error = %e, "cannot record a statement; ending the session");
            format!("recording failed: {e}")
        })
    }
}

/// Rows from a command tag (`SELECT 3`, `INSERT 0 5`, `UPDATE 2`, `COPY 10`).
fn tag_rows(tag: &str) -> u64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs the session until either side closes.
pub(super) async fn run<C>(
    client: C,
    client_buf: BytesMut,
    up: Upstream,
    ctx: TunnelContext,
    catalog: Catalog,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let policy = ctx.state.policy_for(&ctx.connection.name);
    let session = Arc::new(Session {
        id: format!(
            "s_{}",
            random_chars(b"abcdefghijkmnpqrstuvwxyz23456789", 12)
        )
        .into(),
        ctx,
        policy,
        counters: Counters::default(),
        hold_cancel: Arc::default(),
        described: std::sync::Mutex::default(),
    });
    let ctx = &session.ctx;
    let start = SessionStart {
        id: session.id.to_string(),
        subject: ctx.identity.subject.clone(),
        name: ctx.identity.name.clone(),
        connection: ctx.connection.name.clone(),
        kind: "postgres".into(),
        client_addr: Some(ctx.peer.to_string()),
        started_at_ms: now_ms(),
    };
    let (mut client_r, mut client_w) = tokio::io::split(client);
    // Fail closed: a session that cannot be recorded does not start.
    if let Err(e) = ctx.state.recorder.session_started(start).await {
        tracing::error!(error = %e, "cannot record the session start; refusing it");
        let mut out = BytesMut::new();
        codec::put_error(
            &mut out,
            b'E',
            "FATAL",
            "58000",
            "hoop: the gateway cannot record sessions right now",
            None,
        );
        let _ = client_w.write_all(&out).await;
        return;
    }
    let ev = event(
        "session.started",
        Some(&ctx.identity.subject),
        Some(ctx.peer.to_string()),
        "success",
        json!({"session": session.id, "connection": ctx.connection.name, "kind": "postgres"}),
    );
    let _ = ctx.state.audit.record_nowait(ev).await;

    let Upstream {
        stream,
        buf: server_buf,
    } = up;
    let (server_r, mut server_w) = stream.into_halves();
    let (tx, rx) = handoff::<Item>();

    let s2c = {
        let session = session.clone();
        tokio::spawn(async move {
            server_to_client(session, server_r, server_buf, client_w, rx, catalog).await
        })
    };
    let fatal_tx = tx.clone();
    let c2s = client_to_server(&session, &mut client_r, client_buf, &mut server_w, tx);
    let c2s = match session.ctx.grant_ended.clone() {
        Some(ended) => tokio::select! {
            r = c2s => r,
            () = ended.cancelled() => {
                let mut fatal = BytesMut::new();
                codec::put_error(&mut fatal, b'E', "FATAL", "57P01", "hoop: the access grant for this connection ended (revoked or expired)", None);
                let _ = fatal_tx.push(Item::Kill(fatal), true);
                Err("access grant ended".to_string())
            }
        },
        None => c2s.await,
    };
    drop(fatal_tx);
    // The client is gone (or sent Terminate): close the target side, then wait for the other
    // direction to drain.
    let _ = server_w.shutdown().await;
    let (live, s2c_reason) = s2c
        .await
        .unwrap_or_else(|_| (LiveCounts::default(), "internal error".into()));
    let masked = MaskCounts::from(&live);
    let reason = match c2s {
        Ok(()) => s2c_reason,
        Err(e) => e,
    };
    let c = &session.counters;
    let summary = SessionSummary {
        ended_at_ms: now_ms(),
        bytes_up: c.up.load(Ordering::Relaxed),
        bytes_down: c.down.load(Ordering::Relaxed),
        statements: c.statements.load(Ordering::Relaxed),
        blocked: c.blocked.load(Ordering::Relaxed),
        masked: masked.clone(),
        end_reason: reason.clone(),
    };
    let _ = ctx.state.recorder.session_ended(&session.id, summary).await;
    let ev = event(
        "session.ended",
        Some(&ctx.identity.subject),
        Some(ctx.peer.to_string()),
        "success",
        json!({"session": session.id, "connection": ctx.connection.name, "reason": reason,
               "statements": c.statements.load(Ordering::Relaxed), "blocked": c.blocked.load(Ordering::Relaxed),
               "masked": masked.counts}),
    );
    let _ = ctx.state.audit.record_nowait(ev).await;
    if masked.total() > 0 {
        // Once per session, not per value: SIEM rules key on it ("who saw masked data where").
        let ev = event(
            "masking.applied",
            Some(&ctx.identity.subject),
            Some(ctx.peer.to_string()),
            "success",
            json!({"session": session.id, "connection": ctx.connection.name, "masked": masked.counts}),
        );
        let _ = ctx.state.audit.record_nowait(ev).await;
    }
}

/// State of the client's extended-protocol batch.
#[derive(Default)]
struct Batch {
    bytes: BytesMut,
    items: Vec<Item>,
    blocked: Option<(String, String)>,
    /// A Parse in this batch needs review: (statement, rule, reason).
    review: Option<(Arc<str>, String, String)>,
    /// After a blocked batch that ended at Flush: drop everything until Sync.
    discarding: bool,
    /// Part of the current extended sequence already reached the target.
    forwarded: bool,
}

/// Per-connection view of prepared statements and portals, for recording and masking.
#[derive(Default)]
struct Extended {
    statements: HashMap<Vec<u8>, Parsed>,
    /// Parses seen so far (numbers them).
    parses: u64,
    /// Portal name → the statement text it runs and its parameters (as recorded, and only with
    /// the portal's first Execute: a later one continues the same run).
    portals: HashMap<Vec<u8>, PortalInfo>,
}

/// What a bound portal runs.
type PortalInfo = (Arc<str>, Vec<Option<String>>);

/// A statement the client parsed.
struct Parsed {
    text: Arc<str>,
    /// Parameter types the Parse named (0 or none: the target chose).
    types: Vec<u32>,
    /// This Parse's number in the session.
    id: u64,
    /// The client described it: the target's ParameterDescription lands in
    /// `Session::described` under `id`.
    described: bool,
}

impl Extended {
    /// A statement name parsed anew or closed: its described types go too.
    fn replace(&mut self, session: &Session, name: &[u8], next: Option<Parsed>) {
        let old = match next {
            Some(p) => self.statements.insert(name.to_vec(), p),
            None => self.statements.remove(name),
        };
        if let Some(old) = old
            && old.described
        {
            session.described().remove(&old.id);
        }
    }
}

/// The ErrorResponse for a blocked statement (told to `hoop exec` beside the protocol too).
fn blocked_error(ctx: &TunnelContext, rule: &str, reason: &str) -> BytesMut {
    let message = format!("{BLOCKED_PREFIX}{rule}: {reason}");
    ctx.tell(Answer::Blocked(message.clone()));
    let mut b = BytesMut::new();
    codec::put_error(
        &mut b,
        b'E',
        "ERROR",
        "42501",
        &message,
        Some("hoop refused this statement; the session continues"),
    );
    b
}

async fn client_to_server<R, W>(
    session: &Session,
    client: &mut R,
    mut buf: BytesMut,
    server: &mut W,
    tx: HandoffTx<Item>,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let policy = session.policy.clone();
    let masking = policy.masking_active();
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut batch = Batch::default();
    let mut ext = Extended::default();
    let mut described: Option<Vec<u8>> = None;
    // Prepared statement texts by name (SQL PREPARE and protocol Parse), so EXECUTE is judged
    // as what it runs.
    let mut prepared: HashMap<String, String> = HashMap::new();
    // Only the gateway's own answers need the other direction now; the rest waits for the
    // target's bytes (see `handoff`).
    let send = |item: Item| {
        let wake = matches!(item, Item::Local { .. } | Item::Kill(_));
        tx.push(item, wake)
            .map_err(|_| "target side closed".to_string())
    };
    loop {
        // Process every complete message in the buffer.
        loop {
            let n = match codec::frame_len(&buf, CLIENT_LIMITS) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => return Err(protocol_error(&tx, e)),
            };
            let msg = buf.split_to(n);
            let tag = msg.first().copied().unwrap_or_default();
            if batch.discarding && tag != b'S' {
                continue;
            }
            match tag {
                b'Q' => {
                    let text: Arc<str> = String::from_utf8_lossy(
                        codec::query_text(&msg).map_err(|e| protocol_error(&tx, e))?,
                    )
                    .into();
                    let pending = Pending {
                        seq: session.next_seq(),
                        text: text.clone(),
                        params: Vec::new(),
                        simple: true,
                        started: Instant::now(),
                        at_ms: now_ms(),
                        tags: Vec::new(),
                        rows: 0,
                        error: None,
                    };
                    let (verdict, defs) = policy.check_sql(&text, &|n| prepared.get(n).cloned());
                    match verdict {
                        Verdict::Allow => {
                            prepared.extend(defs);
                            send(Item::Stmt(Box::new(pending)))?;
                            send(Item::Sync)?;
                            out.extend_from_slice(&msg);
                        }
                        Verdict::Block { rule, reason } => {
                            block(session, pending, &rule, &reason).await?;
                            send(Item::Local {
                                bytes: blocked_error(&session.ctx, &rule, &reason),
                                ready: true,
                            })?;
                        }
                        Verdict::Review { rule, reason } => {
                            // Earlier messages go out before the wait.
                            flush(session, server, &mut out).await?;
                            match hold(session, &text, &rule, &reason, &send, client, &mut buf)
                                .await
                            {
                                Ok(filed) => {
                                    prepared.extend(defs);
                                    send(Item::Stmt(Box::new(pending)))?;
                                    send(Item::Sync)?;
                                    out.extend_from_slice(&msg);
                                    flush(session, server, &mut out).await?;
                                    if let Some(id) = filed {
                                        session.ctx.state.reviews.mark_executed(id).await.ok();
                                    }
                                }
                                Err(not_run) => {
                                    refuse(session, pending, &rule, &not_run).await?;
                                    send(Item::Local {
                                        bytes: not_run_error(&session.ctx, &not_run),
                                        ready: true,
                                    })?;
                                }
                            }
                        }
                    }
                }
                b'P' => {
                    let (name, text) =
                        codec::parse_msg(&msg).map_err(|e| protocol_error(&tx, e))?;
                    let text: Arc<str> = String::from_utf8_lossy(text).into();
                    let (verdict, _) = policy.check_sql(&text, &|n| prepared.get(n).cloned());
                    if !name.is_empty() && verdict == Verdict::Allow {
                        prepared
                            .insert(String::from_utf8_lossy(name).into_owned(), text.to_string());
                    }
                    if batch.blocked.is_none()
                        && batch.review.is_none()
                        && let Verdict::Review { rule, reason } = &verdict
                    {
                        batch.review = Some((text.clone(), rule.clone(), reason.clone()));
                    }
                    if batch.blocked.is_none()
                        && let Verdict::Block { rule, reason } = verdict
                    {
                        {
                            let p = Pending {
                                seq: session.next_seq(),
                                text: text.clone(),
                                params: Vec::new(),
                                simple: false,
                                started: Instant::now(),
                                at_ms: now_ms(),
                                tags: Vec::new(),
                                rows: 0,
                                error: None,
                            };
                            block(session, p, &rule, &reason).await?;
                            batch.blocked = Some((rule, reason));
                        }
                    }
                    ext.parses += 1;
                    let parsed = Parsed {
                        text,
                        types: codec::parse_param_types(&msg).unwrap_or_default(),
                        id: ext.parses,
                        described: false,
                    };
                    ext.replace(session, name, Some(parsed));
                    batch.bytes.extend_from_slice(&msg);
                }
                b'B' => {
                    let bind = codec::bind_msg(&msg).map_err(|e| protocol_error(&tx, e))?;
                    let parsed = ext.statements.get(bind.statement);
                    let text = parsed.map_or_else(|| Arc::from(""), |p| Arc::clone(&p.text));
                    let params = record_params(session, &bind, parsed);
                    ext.portals.insert(bind.portal.to_vec(), (text, params));
                    described = None;
                    batch.bytes.extend_from_slice(&msg);
                }
                b'D' => {
                    if msg.get(5) == Some(&b'S') {
                        let parsed =
                            codec::name_after_kind(&msg).and_then(|n| ext.statements.get_mut(n));
                        let id = parsed.map(|p| {
                            p.described = true;
                            p.id
                        });
                        batch.items.push(Item::ParamTypes(id));
                    }
                    if masking {
                        batch.items.push(Item::Describe { injected: false });
                        if msg.get(5) == Some(&b'P') {
                            described = codec::name_after_kind(&msg).map(<[u8]>::to_vec);
                        }
                    }
                    batch.bytes.extend_from_slice(&msg);
                }
                b'E' => {
                    let portal = codec::execute_portal(&msg).unwrap_or_default().to_vec();
                    let (text, params) = ext
                        .portals
                        .get_mut(&portal)
                        .map(|(text, params)| (Arc::clone(text), std::mem::take(params)))
                        .unwrap_or_else(|| (Arc::from(""), Vec::new()));
                    if masking && described.as_deref() != Some(portal.as_slice()) {
                        // Masking needs this portal's columns and formats: ask the target, and
                        // swallow the answer (the client did not ask).
                        let mut body = vec![b'P'];
                        body.extend_from_slice(&portal);
                        body.push(0);
                        codec::put_message(&mut batch.bytes, b'D', &body);
                        batch.items.push(Item::Describe { injected: true });
                        described = Some(portal.clone());
                    }
                    batch.items.push(Item::Stmt(Box::new(Pending {
                        seq: session.next_seq(),
                        text,
                        params,
                        simple: false,
                        started: Instant::now(),
                        at_ms: now_ms(),
                        tags: Vec::new(),
                        rows: 0,
                        error: None,
                    })));
                    batch.bytes.extend_from_slice(&msg);
                }
                b'C' => {
                    match msg.get(5) {
                        Some(b'S') => {
                            if let Some(n) = codec::name_after_kind(&msg) {
                                ext.replace(session, n, None);
                            }
                        }
                        Some(b'P') => {
                            if let Some(n) = codec::name_after_kind(&msg) {
                                ext.portals.remove(n);
                            }
                        }
                        _ => {}
                    }
                    batch.bytes.extend_from_slice(&msg);
                }
                b'S' | b'H' => {
                    let sync = tag == b'S';
                    if batch.discarding {
                        // The blocked part never reached the target.
                        batch.discarding = false;
                        if batch.forwarded {
                            send(Item::Sync)?;
                            out.extend_from_slice(&msg);
                        } else {
                            send(Item::Local {
                                bytes: BytesMut::new(),
                                ready: true,
                            })?;
                        }
                        batch.forwarded = false;
                        continue;
                    }
                    if let Some((rule, reason)) = batch.blocked.take() {
                        batch.bytes.clear();
                        batch.items.clear();
                        if sync && !batch.forwarded {
                            send(Item::Local {
                                bytes: blocked_error(&session.ctx, &rule, &reason),
                                ready: true,
                            })?;
                        } else {
                            send(Item::Local {
                                bytes: blocked_error(&session.ctx, &rule, &reason),
                                ready: false,
                            })?;
                            if sync {
                                send(Item::Sync)?;
                                out.extend_from_slice(&msg);
                                batch.forwarded = false;
                            } else {
                                batch.discarding = true;
                            }
                        }
                        continue;
                    }
                    if let Some((text, rule, reason)) = batch.review.take() {
                        flush(session, server, &mut out).await?;
                        match hold(session, &text, &rule, &reason, &send, client, &mut buf).await {
                            Ok(Some(id)) => {
                                session.ctx.state.reviews.mark_executed(id).await.ok();
                            }
                            Ok(None) => {}
                            Err(not_run) => {
                                let p = Pending {
                                    seq: session.next_seq(),
                                    text: text.clone(),
                                    params: Vec::new(),
                                    simple: false,
                                    started: Instant::now(),
                                    at_ms: now_ms(),
                                    tags: Vec::new(),
                                    rows: 0,
                                    error: None,
                                };
                                refuse(session, p, &rule, &not_run).await?;
                                batch.bytes.clear();
                                batch.items.clear();
                                let ready = sync && !batch.forwarded;
                                send(Item::Local {
                                    bytes: not_run_error(&session.ctx, &not_run),
                                    ready,
                                })?;
                                if !ready {
                                    if sync {
                                        send(Item::Sync)?;
                                        out.extend_from_slice(&msg);
                                        batch.forwarded = false;
                                    } else {
                                        batch.discarding = true;
                                    }
                                }
                                continue;
                            }
                        }
                    }
                    for item in batch.items.drain(..) {
                        send(item)?;
                    }
                    out.extend_from_slice(&batch.bytes);
                    batch.bytes.clear();
                    out.extend_from_slice(&msg);
                    if sync {
                        send(Item::Sync)?;
                        batch.forwarded = false;
                    } else {
                        batch.forwarded = true;
                    }
                }
                b'F' => {
                    // FunctionCall runs a function by OID: nothing for the guardrails to read.
                    let p = Pending {
                        seq: session.next_seq(),
                        text: Arc::from("<FunctionCall>"),
                        params: Vec::new(),
                        simple: true,
                        started: Instant::now(),
                        at_ms: now_ms(),
                        tags: Vec::new(),
                        rows: 0,
                        error: None,
                    };
                    let (rule, reason) = (
                        "protocol",
                        "the fast-path FunctionCall message is not allowed through hoop",
                    );
                    block(session, p, rule, reason).await?;
                    send(Item::Local {
                        bytes: blocked_error(&session.ctx, rule, reason),
                        ready: true,
                    })?;
                }
                b'X' => {
                    out.extend_from_slice(&msg);
                    server.write_all(&out).await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                _ => out.extend_from_slice(&msg),
            }
            if batch.bytes.len() > MAX_HELD_BATCH {
                // A pipeline this long without Sync: forward what is held (it was checked).
                if batch.blocked.is_none() {
                    for item in batch.items.drain(..) {
                        send(item)?;
                    }
                    out.extend_from_slice(&batch.bytes);
                    batch.bytes.clear();
                    batch.forwarded = true;
                }
            }
        }
        if !out.is_empty() {
            session
                .counters
                .up
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            server
                .write_all(&out)
                .await
                .map_err(|e| format!("write to target: {e}"))?;
            out.clear();
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        match client.read_buf(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("client read: {e}")),
        }
    }
}

/// Writes what is pending to the target now.
async fn flush<W: AsyncWrite + Unpin>(
    session: &Session,
    server: &mut W,
    out: &mut BytesMut,
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    session
        .counters
        .up
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    server
        .write_all(out)
        .await
        .map_err(|e| format!("write to target: {e}"))?;
    out.clear();
    Ok(())
}

/// Message prefixes of the gateway's own answers (`hoop exec` learns which messages are the
/// gateway's beside the protocol, from [`Answer`]s).
const NOT_APPROVED_PREFIX: &str = "statement not approved: ";
/// See [`NOT_APPROVED_PREFIX`].
const REVIEW_PENDING_PREFIX: &str = "statement review pending: ";
/// See [`NOT_APPROVED_PREFIX`].
const BLOCKED_PREFIX: &str = "blocked by guardrail ";
/// The notice naming a review starts like this; the id follows.
const REVIEW_NOTICE_PREFIX: &str = "statement needs approval";

/// The ErrorResponse a client gets for a statement its review did not let run; the session
/// continues (told to `hoop exec` beside the protocol too).
fn not_run_error(ctx: &TunnelContext, not_run: &NotRun) -> BytesMut {
    let mut b = BytesMut::new();
    let message = match not_run {
        NotRun::Refused(why) => format!("{NOT_APPROVED_PREFIX}{why}"),
        NotRun::Pending(why) => format!("{REVIEW_PENDING_PREFIX}{why}"),
    };
    ctx.tell(match not_run {
        NotRun::Refused(_) => Answer::NotApproved(message.clone()),
        NotRun::Pending(_) => Answer::Pending(message.clone()),
    });
    codec::put_error(
        &mut b,
        b'E',
        "ERROR",
        "42501",
        &message,
        Some("the session continues"),
    );
    b
}

/// Files a statement review, tells the client at once (NoticeResponse), and waits for the
/// decision. Ok(Some(review id)) when approved (the caller marks it executed once sent);
/// Ok(None) when `hoop exec --review` ran an approved review (already marked executed).
async fn hold<R: AsyncRead + Unpin>(
    session: &Session,
    text: &str,
    rule: &str,
    reason: &str,
    send: &impl Fn(Item) -> Result<(), String>,
    client: &mut R,
    buf: &mut BytesMut,
) -> Result<Option<i64>, NotRun> {
    let ctx = &session.ctx;
    if buf.len() >= HELD_INPUT_LIMIT {
        // Already too much behind it: refuse before filing, so no approver is asked.
        return Err(NotRun::Refused(format!(
            "the client had sent more than {} KiB behind the statement, which needs review; \
             send it on its own and further statements once it has run",
            HELD_INPUT_LIMIT / 1024
        )));
    }
    let masked = masked_text(&session.policy, text);
    let hold = Hold {
        connection: &ctx.connection,
        identity: &ctx.identity,
        mode: ctx.review_mode,
        masked: &masked,
        exact: text,
        session_id: &session.id,
        rule,
    };
    let filed = async |id: i64, waits: String| {
        let message = format!(
            "{REVIEW_NOTICE_PREFIX} ({reason}): review {id} — approve with `hoop approve {id}`; {waits}"
        );
        ctx.tell(Answer::Review {
            id,
            message: message.clone(),
        });
        let mut notice = BytesMut::new();
        codec::put_error(&mut notice, b'N', "NOTICE", "01000", &message, None);
        send(Item::Local {
            bytes: notice,
            ready: false,
        })
    };
    // The client gave up: Ctrl-C in psql (a CancelRequest for this session), or it closed the
    // connection (a killed psql, a `hoop exec` whose caller left). Either withdraws the review,
    // so a late approval cannot run a statement nobody waits for. What the client pipelines
    // meanwhile is read into `buf` (processed in order afterwards), up to a limit past which
    // the review is withdrawn and the statement refused.
    let gone = async {
        loop {
            if buf.len() >= HELD_INPUT_LIMIT {
                // Not reading on would hide a client that leaves, and a late approval would
                // then run the statement for nobody: refuse it instead (as SSH does).
                return Withdrawn::TooMuchInput {
                    limit: HELD_INPUT_LIMIT,
                };
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(READ_CHUNK);
            }
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return Withdrawn::Canceled,
                Ok(_) => {}
            }
        }
    };
    let cancel = async {
        tokio::select! {
            () = session.hold_cancel.notified() => Withdrawn::Canceled,
            why = gone => why,
        }
    };
    let r = ctx.state.reviews.hold(hold, filed, cancel).await;
    if r.is_ok() {
        ctx.tell(Answer::Approved);
    }
    r
}

/// Records a statement whose review did not approve it (or is still pending).
async fn refuse(session: &Session, p: Pending, rule: &str, not_run: &NotRun) -> Result<(), String> {
    session.counters.blocked.fetch_add(1, Ordering::Relaxed);
    let outcome = match not_run {
        NotRun::Refused(_) => "rejected",
        NotRun::Pending(_) => "pending",
    };
    session
        .record(
            p,
            outcome,
            (
                "review",
                Some(rule.to_string()),
                Some(not_run.why().to_string()),
            ),
            MaskCounts::default(),
        )
        .await
}

/// Tells the client why its session ends (a FATAL in its own protocol) and returns the reason.
fn protocol_error(tx: &HandoffTx<Item>, e: codec::FrameError) -> String {
    let mut fatal = BytesMut::new();
    codec::put_error(
        &mut fatal,
        b'E',
        "FATAL",
        "08P01",
        &format!("hoop: invalid message from the client: {e}"),
        None,
    );
    let _ = tx.push(
        Item::Local {
            bytes: fatal,
            ready: false,
        },
        true,
    );
    format!("client protocol error: {e}")
}

/// Records and audits a blocked statement.
async fn block(session: &Session, p: Pending, rule: &str, reason: &str) -> Result<(), String> {
    session.counters.blocked.fetch_add(1, Ordering::Relaxed);
    let ev = event(
        "statement.blocked",
        Some(&session.ctx.identity.subject),
        Some(session.ctx.peer.to_string()),
        "denied",
        json!({"session": session.id, "connection": session.ctx.connection.name, "rule": rule, "reason": reason,
               "statement": masked_text(&session.policy, &p.text)}),
    );
    let _ = session.ctx.state.audit.record_nowait(ev).await;
    session
        .record(
            p,
            "blocked",
            ("block", Some(rule.to_string()), Some(reason.to_string())),
            MaskCounts::default(),
        )
        .await
}

/// A Bind's parameters as recorded: their text with the detectors applied. A binary-format one
/// is turned into text by its type (named by the Parse, or described by the target); one of an
/// unknown type, or text that is not UTF-8, is shown only as its length.
fn record_params(
    session: &Session,
    bind: &codec::Bind<'_>,
    parsed: Option<&Parsed>,
) -> Vec<Option<String>> {
    let binary = |i: usize| bind.param_format(i) == 1;
    let described = match parsed {
        Some(p) if p.described && (0..bind.params.len()).any(binary) => {
            session.described().get(&p.id).cloned()
        }
        _ => None,
    };
    let type_of = |i: usize| {
        parsed
            .and_then(|p| p.types.get(i).copied())
            .filter(|t| *t != 0)
            .or_else(|| described.as_ref().and_then(|d| d.get(i).copied()))
            .unwrap_or(0)
    };
    let policy = &session.policy;
    let text = |i: usize, v: &[u8]| {
        let decoded: Option<std::borrow::Cow<'_, str>> = if binary(i) {
            binary::text(type_of(i), v).map(Into::into)
        } else {
            std::str::from_utf8(v).ok().map(Into::into)
        };
        match decoded {
            Some(t) => masked_text(policy, &t),
            None if binary(i) => format!("<{} bytes, binary>", v.len()),
            None => format!("<{} bytes>", v.len()),
        }
    };
    bind.params
        .iter()
        .enumerate()
        .map(|(i, p)| p.map(|v| text(i, v)))
        .collect()
}

/// Text with the detectors applied, for recordings and audit records.
fn masked_text(policy: &Policy, text: &str) -> String {
    let mut out = Vec::new();
    let mut counts = LiveCounts::default();
    if policy.mask_text(text.as_bytes(), &mut out, &mut counts) {
        String::from_utf8_lossy(&out).into_owned()
    } else {
        text.to_string()
    }
}

struct S2c {
    queue: VecDeque<Item>,
    status: u8,
    plan: Vec<ColAction>,
    plan_active: bool,
    /// The RowDescription `plan` was made from: the same one again (a prepared statement run
    /// many times) reuses the plan instead of matching every column against the rules anew.
    plan_of: Vec<u8>,
    /// The statement (text, index in a multi-statement string) `plan` was made for: with
    /// column rules, an expression's rule depends on the statement, not only on the
    /// RowDescription.
    plan_stmt: Option<(Arc<str>, usize)>,
    /// The COPY TO STDOUT in progress.
    copy: Option<CopyState>,
    masked: LiveCounts,
    /// The target's types and relations, for masking by type and by source column.
    catalog: Catalog,
    lineages: Lineages,
    scratch: Vec<u8>,
    /// A masked COPY row (reused).
    copy_row: Vec<u8>,
    /// The session is being ended by the gateway (grant revoked or expired).
    killed: bool,
    /// The target's real backend key, to cancel what it runs when the session is killed.
    backend_key: Option<(i32, i32)>,
}

/// A COPY TO STDOUT in progress.
enum CopyState {
    /// No masking on this connection: relayed as it comes.
    Plain,
    /// Each row masked under the plan.
    Mask(CopyPlan),
    /// Refused under masking: data swallowed, the completion answered with this error.
    Refused(String),
}

impl S2c {
    /// A RowDescription: decides the column plan (reused when the same description comes for
    /// the same statement again).
    fn describe_rows(&mut self, m: &Masker, msg: &[u8]) {
        let stmt = self.current_stmt().map(|p| (p.text.clone(), p.tags.len()));
        let same_stmt = !m.has_column_rules()
            || match (&self.plan_stmt, &stmt) {
                (Some((a, i)), Some((b, j))) => i == j && (Arc::ptr_eq(a, b) || a == b),
                (None, None) => true,
                _ => false,
            };
        if self.plan_of[..] == msg[..] && same_stmt {
            return;
        }
        self.plan_of.clear();
        // One that does not parse leaves the previous plan.
        if let Ok(cols) = codec::row_description(msg) {
            self.plan = rows::plan_for(
                m,
                &mut self.catalog,
                &mut self.lineages,
                &cols,
                stmt.as_ref().map(|(t, k)| (t, *k)),
            );
            self.plan_active = self.plan.iter().any(|a| *a != ColAction::Pass);
            self.plan_of.extend_from_slice(msg);
            self.plan_stmt = stmt;
        }
    }

    /// A CopyOutResponse: decides how the rows will be masked. Returns false when it must not
    /// be forwarded (the COPY is refused: the client gets an error instead).
    fn begin_copy_out(&mut self, masker: Option<&Masker>, msg: &[u8]) -> bool {
        let Some(m) = masker else {
            self.copy = Some(CopyState::Plain);
            return true;
        };
        let body = codec::body(msg);
        let binary = body.first() == Some(&1);
        let ncols = body
            .get(1..3)
            .and_then(|n| <[u8; 2]>::try_from(n).ok())
            .map_or(0, |n| usize::from(u16::from_be_bytes(n)));
        let stmt = self.current_stmt().map(|p| (p.text.clone(), p.tags.len()));
        let decision = rows::copy_plan(
            m,
            &mut self.catalog,
            stmt.as_ref().map(|(t, k)| (t, *k)),
            ncols,
            binary,
        );
        match decision {
            CopyDecision::Mask(plan) => {
                self.copy = Some(CopyState::Mask(plan));
                true
            }
            CopyDecision::Refuse(why) => {
                self.copy = Some(CopyState::Refused(why));
                false
            }
        }
    }

    /// One CopyData of a COPY TO STDOUT under masking.
    fn copy_data(&mut self, m: &Masker, msg: &[u8], out: &mut BytesMut) {
        match &mut self.copy {
            Some(CopyState::Refused(_)) => self.masked.record_withheld(),
            Some(CopyState::Mask(plan)) => {
                let changed = RowMasker {
                    masker: m,
                    catalog: &mut self.catalog,
                    counts: &mut self.masked,
                    scratch: &mut self.scratch,
                }
                .copy_row(plan, codec::body(msg), &mut self.copy_row);
                if !changed {
                    out.extend_from_slice(msg);
                } else if !self.copy_row.is_empty() {
                    codec::put_message(out, b'd', &self.copy_row);
                }
            }
            Some(CopyState::Plain) | None => out.extend_from_slice(msg),
        }
    }

    /// Emits the gateway's own answers that are due (nothing of the target's is pending before
    /// them).
    fn flush_local(&mut self, out: &mut BytesMut) {
        while matches!(self.queue.front(), Some(Item::Local { .. })) {
            if let Some(Item::Local { bytes, ready }) = self.queue.pop_front() {
                out.extend_from_slice(&bytes);
                if ready {
                    codec::put_ready(out, self.status);
                }
            }
        }
    }

    fn accept(&mut self, item: Item, out: &mut BytesMut) {
        if let Item::Kill(bytes) = item {
            out.extend_from_slice(&bytes);
            self.killed = true;
            return;
        }
        self.queue.push_back(item);
        self.flush_local(out);
    }

    /// The first pending statement before the next Sync.
    fn current_stmt(&mut self) -> Option<&mut Pending> {
        for item in self.queue.iter_mut() {
            match item {
                Item::Stmt(p) => return Some(p),
                Item::Sync => return None,
                _ => {}
            }
        }
        None
    }

    /// Pops the first Describe before the next Sync; returns whether it was injected.
    fn pop_describe(&mut self) -> Option<bool> {
        self.pop_before_sync(|i| match i {
            Item::Describe { injected } => Some(*injected),
            _ => None,
        })
    }

    /// Removes the first item before the next Sync that `pick` picks; returns what it picked.
    fn pop_before_sync<T>(&mut self, pick: impl Fn(&Item) -> Option<T>) -> Option<T> {
        for (idx, item) in self.queue.iter().enumerate() {
            if matches!(item, Item::Sync) {
                return None;
            }
            if let Some(picked) = pick(item) {
                self.queue.remove(idx);
                return Some(picked);
            }
        }
        None
    }

    /// Removes and returns the first statement if it is an extended one (it is complete).
    fn take_extended(&mut self) -> Option<Pending> {
        let idx = self
            .queue
            .iter()
            .position(|i| matches!(i, Item::Stmt(_) | Item::Sync))?;
        match self.queue.get(idx) {
            Some(Item::Stmt(p)) if !p.simple => match self.queue.remove(idx) {
                Some(Item::Stmt(p)) => Some(*p),
                _ => None,
            },
            _ => None,
        }
    }
}

async fn server_to_client<W>(
    session: Arc<Session>,
    mut server: ReadSide,
    mut buf: BytesMut,
    mut client: WriteHalf<W>,
    rx: HandoffRx<Item>,
    catalog: Catalog,
) -> (LiveCounts, String)
where
    W: AsyncRead + AsyncWrite + Unpin,
{
    let policy = session.policy.clone();
    let masker = policy.masker().filter(|m| !m.is_empty());
    let mut st = S2c {
        queue: VecDeque::new(),
        status: b'I',
        plan: Vec::new(),
        plan_active: false,
        plan_of: Vec::new(),
        plan_stmt: None,
        copy: None,
        masked: LiveCounts::default(),
        catalog,
        lineages: Lineages::new(),
        scratch: Vec::new(),
        copy_row: Vec::new(),
        killed: false,
        backend_key: None,
    };
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut mask_snapshot = LiveCounts::default();
    let mut startup_done = false;
    // The cancel key stays registered while this session runs.
    let mut cancel_guard = None;
    let mut finished: Vec<(Pending, &'static str)> = Vec::new();
    let reason = loop {
        // Register everything the client side queued before reading the target's bytes: those
        // items were queued before the bytes they describe were sent.
        while let Some(item) = rx.try_recv() {
            st.accept(item, &mut out);
        }
        // Messages are read in place; the buffer advances once per read, not once per message.
        let mut pos = 0;
        loop {
            let rest = buf.get(pos..).unwrap_or_default();
            let n = match codec::frame_len(rest, SERVER_LIMITS) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    let mut err = BytesMut::new();
                    codec::put_error(
                        &mut err,
                        b'E',
                        "FATAL",
                        "08P01",
                        &format!("hoop: the target sent an invalid message: {e}"),
                        None,
                    );
                    let _ = client.write_all(&out).await;
                    let _ = client.write_all(&err).await;
                    return (st.masked, format!("target protocol error: {e}"));
                }
            };
            let msg = rest.get(..n).unwrap_or_default();
            pos += n;
            let tag = msg.first().copied().unwrap_or_default();
            match tag {
                b'D' => match masker {
                    Some(m) if st.plan_active => RowMasker {
                        masker: m,
                        catalog: &mut st.catalog,
                        counts: &mut st.masked,
                        scratch: &mut st.scratch,
                    }
                    .data_row(&st.plan, msg, &mut out),
                    _ => out.extend_from_slice(msg),
                },
                b'T' => {
                    if let Some(m) = masker {
                        st.describe_rows(m, msg);
                        if st.pop_describe() == Some(true) {
                            continue;
                        }
                    }
                    out.extend_from_slice(msg);
                }
                b'n' => {
                    if masker.is_some() {
                        st.plan.clear();
                        st.plan_active = false;
                        st.plan_of.clear();
                        if st.pop_describe() == Some(true) {
                            continue;
                        }
                    }
                    out.extend_from_slice(msg);
                }
                b'C' if matches!(st.copy, Some(CopyState::Refused(_))) => {
                    // A refused COPY ends with the gateway's error instead of its tag.
                    if let Some(CopyState::Refused(why)) = st.copy.take() {
                        let mut err = BytesMut::new();
                        codec::put_error(&mut err, b'E', "ERROR", "0A000", &why, None);
                        if let Some(p) = st.current_stmt() {
                            p.error.get_or_insert(("0A000".into(), why));
                        }
                        if let Some(p) = st.take_extended() {
                            finished.push((p, "error"));
                        }
                        out.extend_from_slice(&err);
                    }
                }
                b'C' | b'I' | b's' => {
                    st.copy = None;
                    if tag == b'C' {
                        let t = codec::command_tag(msg);
                        if let Some(p) = st.current_stmt() {
                            p.rows += tag_rows(&t);
                            p.tags.push(t);
                        }
                    }
                    if let Some(p) = st.take_extended() {
                        finished.push((p, "ok"));
                    }
                    out.extend_from_slice(msg);
                }
                b'E' => {
                    st.copy = None;
                    // Masked first: the recording keeps the message the client saw.
                    let from = out.len();
                    let masked = masker.is_some_and(|m| {
                        notices::mask_error(m, msg, &mut out, &mut st.masked, &mut st.scratch)
                    });
                    let (code, text) = match masked {
                        true => codec::error_fields(out.get(from..).unwrap_or_default()),
                        false => {
                            out.extend_from_slice(msg);
                            codec::error_fields(msg)
                        }
                    };
                    if let Some(p) = st.current_stmt() {
                        p.error.get_or_insert((code, text));
                    }
                    if let Some(p) = st.take_extended() {
                        finished.push((p, "error"));
                    }
                }
                b'N' | b'A' | b'S' if masker.is_some() => {
                    let masked = masker.is_some_and(|m| match tag {
                        b'N' => {
                            notices::mask_error(m, msg, &mut out, &mut st.masked, &mut st.scratch)
                        }
                        b'A' => notices::mask_notification(m, msg, &mut out, &mut st.masked),
                        _ => notices::mask_parameter(m, msg, &mut out, &mut st.masked),
                    });
                    if !masked {
                        out.extend_from_slice(msg);
                    }
                }
                b'Z' => {
                    st.status = msg.get(5).copied().unwrap_or(b'I');
                    out.extend_from_slice(msg);
                    if !startup_done {
                        startup_done = true;
                    } else {
                        // Everything before the Sync is answered.
                        while let Some(item) = st.queue.pop_front() {
                            match item {
                                Item::Sync => break,
                                Item::Stmt(p) => {
                                    let outcome = if p.error.is_some() {
                                        "error"
                                    } else if p.simple {
                                        "ok"
                                    } else {
                                        "skipped"
                                    };
                                    finished.push((*p, outcome));
                                }
                                Item::Describe { .. } | Item::ParamTypes(_) => {}
                                Item::Kill(_) => {}
                                Item::Local { bytes, ready } => {
                                    // Cannot be ahead of a Sync; emit to keep order anyway.
                                    out.extend_from_slice(&bytes);
                                    if ready {
                                        codec::put_ready(&mut out, st.status);
                                    }
                                }
                            }
                        }
                        st.flush_local(&mut out);
                    }
                }
                b't' => {
                    // Learned before the client sees it (and so before its Bind).
                    let parse = st.pop_before_sync(|i| match i {
                        Item::ParamTypes(id) => Some(*id),
                        _ => None,
                    });
                    if let (Some(Some(id)), Ok(types)) = (parse, codec::param_description(msg)) {
                        session.described().insert(id, types.into());
                    }
                    out.extend_from_slice(msg);
                }
                b'K' => {
                    // Hand the client a key of ours; keep the target's.
                    if let Ok((pid, key)) = codec::backend_key(msg) {
                        st.backend_key = Some((pid, key));
                        let (fpid, fkey, guard) = register_cancel_key(
                            &session.ctx.connection.address,
                            pid,
                            key,
                            &session.ctx.identity.subject,
                            session.hold_cancel.clone(),
                        );
                        cancel_guard = Some(guard);
                        codec::put_backend_key(&mut out, fpid, fkey);
                    }
                }
                b'H' => {
                    if st.begin_copy_out(masker, msg) {
                        out.extend_from_slice(msg);
                    }
                }
                b'd' if masker.is_some() && st.copy.is_some() => {
                    if let Some(m) = masker {
                        st.copy_data(m, msg, &mut out);
                    }
                }
                b'c' if matches!(st.copy, Some(CopyState::Refused(_))) => {}
                b'W' => {
                    // CopyBothResponse: a replication stream, which the gateway never relays
                    // (replication connections are refused at startup).
                    let mut err = BytesMut::new();
                    codec::put_error(
                        &mut err,
                        b'E',
                        "FATAL",
                        "0A000",
                        "hoop: the target started a replication stream, which the gateway does not relay",
                        None,
                    );
                    let _ = client.write_all(&out).await;
                    let _ = client.write_all(&err).await;
                    return (st.masked, "replication stream refused".into());
                }
                _ => out.extend_from_slice(msg),
            }
        }
        buf.advance(pos);
        if !out.is_empty() {
            session
                .counters
                .down
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            if let Err(e) = client.write_all(&out).await {
                break format!("client write: {e}");
            }
            out.clear();
        }
        if st.killed {
            // Stop what the target is running for this session, then end it.
            if let Some((pid, key)) = st.backend_key {
                let mut cancel = BytesMut::new();
                codec::put_cancel(&mut cancel, pid, key);
                if let Ok(mut s) =
                    tokio::net::TcpStream::connect(&session.ctx.connection.address).await
                {
                    let _ = s.write_all(&cancel).await;
                }
            }
            break "access grant ended".to_string();
        }
        let mut record_failed = None;
        for (p, outcome) in finished.drain(..) {
            // What was masked since the previous statement finished belongs to this one.
            let now = st.masked;
            let delta = diff(&now, &mask_snapshot);
            mask_snapshot = now;
            if let Err(e) = session
                .record(p, outcome, ("allow", None, None), MaskCounts::from(&delta))
                .await
            {
                record_failed = Some(e);
            }
        }
        if let Some(e) = record_failed {
            let mut err = BytesMut::new();
            codec::put_error(
                &mut err,
                b'E',
                "FATAL",
                "58000",
                "hoop: the gateway cannot record this session; it ends here",
                None,
            );
            let _ = client.write_all(&err).await;
            break e;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            () = rx.ready() => {
                let mut got = false;
                while let Some(item) = rx.try_recv() {
                    st.accept(item, &mut out);
                    got = true;
                }
                if !got && rx.closed() {
                    // The client side ended; keep relaying what the target still sends.
                    match server.read_buf(&mut buf).await {
                        Ok(0) => break "client closed".to_string(),
                        Ok(_) => {}
                        Err(e) => break format!("target read: {e}"),
                    }
                }
            },
            r = server.read_buf(&mut buf) => match r {
                Ok(0) => break "target closed".to_string(),
                Ok(_) => {}
                Err(e) => break format!("target read: {e}"),
            },
        }
    };
    let _ = client.shutdown().await;
    drop(cancel_guard);
    (st.masked, reason)
}

/// `a - b`, counter by counter.
fn diff(a: &LiveCounts, b: &LiveCounts) -> LiveCounts {
    LiveCounts {
        credit_card: a.credit_card.saturating_sub(b.credit_card),
        email: a.email.saturating_sub(b.email),
        ssn: a.ssn.saturating_sub(b.ssn),
        phone: a.phone.saturating_sub(b.phone),
        iban: a.iban.saturating_sub(b.iban),
        secrets: a.secrets.saturating_sub(b.secrets),
        columns: a.columns.saturating_sub(b.columns),
        withheld: a.withheld.saturating_sub(b.withheld),
    }
}
