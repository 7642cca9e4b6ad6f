//! The two directions of a PostgreSQL session after login.
//!
//! client → target (`client.rs`): every Query and Parse goes through the guardrails and review
//! classes; extended-protocol batches are held until they end and then sent, refused or held
//! for review whole. Everything else is forwarded as the bytes that arrived, batched into one
//! write per read.
//!
//! target → client (`server_to_client`): DataRows are masked using the current RowDescription;
//! CommandComplete / ErrorResponse / ReadyForQuery close statements for the recorder. The
//! gateway's own answers (a blocked statement's error) are merged into this stream in order: the
//! other direction queues "what the target will answer next" and "what the gateway answers",
//! and this direction emits the gateway's answers exactly when the target has answered
//! everything sent before them.
//!
//! Known limits (documented in docs/guardrails.md): a blocked statement does not abort the
//! surrounding transaction on the target; column rules need the table name, which the gateway
//! learns from table OIDs it looks up once per session.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};

use super::codec::{self, Column};
use super::handoff::{HandoffRx, handoff};
use super::upstream::{ReadSide, Upstream};
use super::{CLIENT_LIMITS, SERVER_LIMITS, register_cancel_key};
use crate::audit::event;
use crate::policy::masking::MaskCounts as LiveCounts;
use crate::policy::{MaskCounts, Policy};
use crate::recording::{SessionStart, SessionSummary, StatementRecord};
use crate::tunnel::TunnelContext;
use crate::util::random_chars;

mod client;

/// Read buffers start here and grow for larger messages.
const READ_CHUNK: usize = 64 * 1024;

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
    tables: HashMap<u32, String>,
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
            server_to_client(session, server_r, server_buf, client_w, rx, tables).await
        })
    };
    let fatal_tx = tx.clone();
    let c2s = client::client_to_server(&session, &mut client_r, client_buf, &mut server_w, tx);
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

/// What to do with each column of the current result.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ColAction {
    Pass,
    /// Whole value replaced (column rule).
    Replace(Vec<u8>),
    /// Detectors over the text.
    Detect,
    /// Binary value that cannot be checked: sent as NULL.
    Withhold,
    /// Binary int8 or numeric: its decimal form is checked; withheld if a detector matches.
    Number(u32),
    /// Binary jsonb: a version byte, then the text.
    Jsonb,
}

/// Type OIDs whose binary form cannot carry text a detector would find.
fn binary_is_harmless(type_oid: u32) -> bool {
    // bool, int2, int4, oid, float4, float8, date, time, timestamp, timestamptz, interval, uuid
    matches!(
        type_oid,
        16 | 21 | 23 | 26 | 700 | 701 | 1082 | 1083 | 1114 | 1184 | 1186 | 2950
    )
}

/// Type OIDs whose binary form is the text itself.
fn binary_is_text(type_oid: u32) -> bool {
    // text, varchar, bpchar, name, json, unknown
    matches!(type_oid, 25 | 1043 | 1042 | 19 | 114 | 705)
}

fn plan_for(policy: &Policy, cols: &[Column], tables: &HashMap<u32, String>) -> Vec<ColAction> {
    cols.iter()
        .map(|c| {
            let table = tables.get(&c.table_oid).map(String::as_str);
            match (policy.column_masked(table, &c.name), c.format) {
                (Some(r), 0) => ColAction::Replace(r.to_vec()),
                (Some(_), _) => ColAction::Withhold,
                (None, 0) => ColAction::Detect,
                (None, _) if binary_is_harmless(c.type_oid) => ColAction::Pass,
                (None, _) if binary_is_text(c.type_oid) => ColAction::Detect,
                (None, _) if matches!(c.type_oid, 20 | 1700) => ColAction::Number(c.type_oid),
                (None, _) if c.type_oid == 3802 => ColAction::Jsonb,
                (None, _) => ColAction::Withhold,
            }
        })
        .collect()
}

struct S2c {
    queue: VecDeque<Item>,
    status: u8,
    plan: Vec<ColAction>,
    plan_active: bool,
    /// The RowDescription `plan` was made from: the same one again (a prepared statement run
    /// many times) reuses the plan instead of matching every column against the rules anew.
    plan_of: Vec<u8>,
    copy_out: Option<bool>,
    masked: LiveCounts,
    tables: HashMap<u32, String>,
    scratch: Vec<u8>,
    /// The session is being ended by the gateway (grant revoked or expired).
    killed: bool,
    /// The target's real backend key, to cancel what it runs when the session is killed.
    backend_key: Option<(i32, i32)>,
}

impl S2c {
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
    tables: HashMap<u32, String>,
) -> (LiveCounts, String)
where
    W: AsyncRead + AsyncWrite + Unpin,
{
    let policy = session.policy.clone();
    let masking = policy.masking_active();
    let mut st = S2c {
        queue: VecDeque::new(),
        status: b'I',
        plan: Vec::new(),
        plan_active: false,
        plan_of: Vec::new(),
        copy_out: None,
        masked: LiveCounts::default(),
        tables,
        scratch: Vec::new(),
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
                b'D' => {
                    if st.plan_active {
                        mask_row(
                            &policy,
                            &st.plan,
                            msg,
                            &mut out,
                            &mut st.masked,
                            &mut st.scratch,
                        );
                    } else {
                        out.extend_from_slice(msg);
                    }
                }
                b'T' => {
                    if masking {
                        if st.plan_of[..] != msg[..] {
                            st.plan_of.clear();
                            // One that does not parse leaves the previous plan.
                            if let Ok(cols) = codec::row_description(msg) {
                                st.plan = plan_for(&policy, &cols, &st.tables);
                                st.plan_active = st.plan.iter().any(|a| *a != ColAction::Pass);
                                st.plan_of.extend_from_slice(msg);
                            }
                        }
                        if st.pop_describe() == Some(true) {
                            continue;
                        }
                    }
                    out.extend_from_slice(msg);
                }
                b'n' => {
                    if masking {
                        st.plan.clear();
                        st.plan_active = false;
                        st.plan_of.clear();
                        if st.pop_describe() == Some(true) {
                            continue;
                        }
                    }
                    out.extend_from_slice(msg);
                }
                b'C' | b'I' | b's' => {
                    st.copy_out = None;
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
                    st.copy_out = None;
                    let (code, text) = codec::error_fields(msg);
                    if let Some(p) = st.current_stmt() {
                        p.error.get_or_insert((code, text));
                    }
                    if let Some(p) = st.take_extended() {
                        finished.push((p, "error"));
                    }
                    out.extend_from_slice(msg);
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
                    // CopyOutResponse: overall format 0 text, 1 binary.
                    st.copy_out = Some(msg.get(5) == Some(&1));
                    out.extend_from_slice(msg);
                }
                b'd' if masking && st.copy_out.is_some() => {
                    if st.copy_out == Some(true) {
                        // Binary COPY cannot be checked: withheld.
                        st.masked.record_withheld();
                    } else {
                        let data = codec::body(msg);
                        st.scratch.clear();
                        if policy.mask_text(data, &mut st.scratch, &mut st.masked) {
                            codec::put_message(&mut out, b'd', &st.scratch);
                        } else {
                            out.extend_from_slice(msg);
                        }
                    }
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

/// The decimal text of a binary int8 (OID 20) or numeric (OID 1700) value, written into
/// `buf`; None if it does not decode (then the caller withholds it).
fn decimal_of<'a>(oid: u32, v: &[u8], buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    use std::io::Write;
    if oid == 20 {
        let n = i64::from_be_bytes(v.try_into().ok()?);
        write!(buf, "{n}").ok()?;
        return Some(buf.as_slice());
    }
    // numeric: ndigits, weight, sign, dscale, then base-10000 digits. Only the digits matter to
    // a detector, so they are written without point or sign.
    let word = |i: usize| {
        v.get(i..i + 2)
            .and_then(|b| b.try_into().ok())
            .map(i16::from_be_bytes)
    };
    let ndigits = word(0)?.max(0) as usize;
    if v.len() != 8 + 2 * ndigits {
        return None;
    }
    for i in 0..ndigits {
        let d = word(8 + 2 * i)?;
        if i == 0 {
            write!(buf, "{d}").ok()?;
        } else {
            write!(buf, "{d:04}").ok()?;
        }
    }
    Some(buf.as_slice())
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

/// Rewrites one DataRow under the plan. A row nothing changes (the common case) is copied in
/// one piece; only from its first changed value on is a row re-encoded value by value.
fn mask_row(
    policy: &Policy,
    plan: &[ColAction],
    msg: &[u8],
    out: &mut BytesMut,
    counts: &mut LiveCounts,
    scratch: &mut Vec<u8>,
) {
    let Ok(values) = codec::data_row_values(msg) else {
        out.extend_from_slice(msg);
        return;
    };
    let n = plan.len() as i16;
    // Where the re-encoded row starts in `out`, once a value changed.
    let mut row = None;
    for (i, v) in values.enumerate() {
        let Ok(v) = v else {
            // A malformed value: what came before is sent re-encoded, the rest dropped.
            row.get_or_insert_with(|| begin_copy(out, n, msg, i));
            break;
        };
        let action = plan.get(i).unwrap_or(&ColAction::Detect);
        // None: the value stays; Some(new): it becomes `new` (None for NULL).
        let change: Option<Option<&[u8]>> = match (action, v) {
            (_, None) | (ColAction::Pass, Some(_)) => None,
            (ColAction::Replace(r), Some(_)) => {
                counts.record_column();
                Some(Some(r))
            }
            (ColAction::Withhold, Some(_)) => {
                counts.record_withheld();
                Some(None)
            }
            (ColAction::Number(oid), Some(v)) => {
                scratch.clear();
                let text = decimal_of(*oid, v, scratch);
                if text.is_none_or(|t| policy.detects(t)) {
                    counts.record_withheld();
                    Some(None)
                } else {
                    None
                }
            }
            (ColAction::Jsonb, Some(v)) => {
                scratch.clear();
                match v.split_first() {
                    Some((1, text)) if policy.mask_text(text, scratch, counts) => {
                        // The version byte goes back in front of the masked text.
                        scratch.insert(0, 1);
                        Some(Some(&scratch[..]))
                    }
                    Some((1, _)) => None,
                    _ => {
                        counts.record_withheld();
                        Some(None)
                    }
                }
            }
            (ColAction::Detect, Some(v)) => {
                scratch.clear();
                if policy.mask_text(v, scratch, counts) {
                    Some(Some(&scratch[..]))
                } else {
                    None
                }
            }
        };
        match change {
            None if row.is_none() => {}
            None => codec::put_value(out, v),
            Some(new) => {
                row.get_or_insert_with(|| begin_copy(out, n, msg, i));
                codec::put_value(out, new);
            }
        }
    }
    match row {
        Some(start) => codec::end_row(out, start),
        None => out.extend_from_slice(msg),
    }
}

/// Begins a re-encoded DataRow of `n` values in `out` with the first `k` values of `msg`
/// unchanged; returns where it starts (for [`codec::end_row`]).
fn begin_copy(out: &mut BytesMut, n: i16, msg: &[u8], k: usize) -> usize {
    let start = codec::begin_row(out, n);
    if let Ok(values) = codec::data_row_values(msg) {
        for v in values.take(k).flatten() {
            codec::put_value(out, v);
        }
    }
    start
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn row(values: &[Option<&[u8]>]) -> BytesMut {
        let mut out = BytesMut::new();
        let start = codec::begin_row(&mut out, values.len() as i16);
        for v in values {
            codec::put_value(&mut out, *v);
        }
        codec::end_row(&mut out, start);
        out
    }

    fn masked(plan: &[ColAction], values: &[Option<&[u8]>]) -> (BytesMut, BytesMut, LiveCounts) {
        let policy = Policy::compile(&[], &["pii".into()], &[], &[], &[]).unwrap();
        let msg = row(values);
        let (mut out, mut counts, mut scratch) =
            (BytesMut::new(), LiveCounts::default(), Vec::new());
        mask_row(&policy, plan, &msg, &mut out, &mut counts, &mut scratch);
        (msg, out, counts)
    }

    #[test]
    fn a_row_nothing_changes_is_sent_as_it_came() {
        let plan = [ColAction::Detect, ColAction::Pass, ColAction::Detect];
        let (msg, out, counts) = masked(&plan, &[Some(b"42"), None, Some(b"plain text")]);
        assert_eq!(out, msg);
        assert_eq!(counts, LiveCounts::default());
    }

    #[test]
    fn a_row_is_re_encoded_from_its_first_changed_value() {
        let plan = [
            ColAction::Detect,
            ColAction::Pass,
            ColAction::Detect,
            ColAction::Withhold,
            ColAction::Replace(b"****".to_vec()),
            ColAction::Detect,
        ];
        let (_, out, counts) = masked(
            &plan,
            &[
                Some(b"7"),
                None,
                Some(b"card 4111 1111 1111 1111 ok"),
                Some(b"\x00\x01"),
                Some(b"secret"),
                Some(b"tail"),
            ],
        );
        let want = row(&[
            Some(b"7"),
            None,
            Some(b"card **** **** **** 1111 ok"),
            None,
            Some(b"****"),
            Some(b"tail"),
        ]);
        assert_eq!(out, want);
        assert_eq!(
            (counts.credit_card, counts.withheld, counts.columns),
            (1, 1, 1)
        );
    }

    #[test]
    fn binary_jsonb_is_masked_behind_its_version_byte() {
        let plan = [ColAction::Jsonb, ColAction::Jsonb, ColAction::Jsonb];
        let (_, out, counts) = masked(
            &plan,
            &[
                Some(b"\x01{\"card\": \"4111 1111 1111 1111\"}"),
                Some(b"\x01{\"a\": 1}"),
                Some(b"\x02{}"),
            ],
        );
        let want = row(&[
            Some(b"\x01{\"card\": \"**** **** **** 1111\"}"),
            Some(b"\x01{\"a\": 1}"),
            None,
        ]);
        assert_eq!(out, want);
        assert_eq!((counts.credit_card, counts.withheld), (1, 1));
    }
}
