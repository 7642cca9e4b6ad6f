//! The two directions of a PostgreSQL session after login.
//!
//! client → target (`client.rs`): every Query and Parse goes through the guardrails and review
//! classes; extended-protocol batches are held until they end and then sent, refused or held
//! for review whole. Everything else is forwarded as the bytes that arrived, batched into one
//! write per read.
//!
//! target → client (`server_to_client`): DataRows are masked using the current RowDescription
//! (`rows.rs`), and errors, notices, notifications, parameter statuses and COPY data are masked
//! too (`notices.rs`, `rows.rs`); CommandComplete / ErrorResponse / ReadyForQuery close
//! statements for the recorder. The gateway's own answers (a blocked statement's error) are merged into this stream in order: the
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

use super::catalog::Catalog;
use super::codec;
use super::handoff::{HandoffRx, handoff};
use super::notices;
use super::rows::{self, ColAction, CopyDecision, CopyPlan, Lineages, RowMasker};
use super::upstream::{self, ReadSide, Upstream};
use super::{CLIENT_LIMITS, SERVER_LIMITS, register_cancel_key};
use crate::audit::event;
use crate::policy::masking::{MaskCounts as LiveCounts, Masker};
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
        let mut ended = None;
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
                b'S' if upstream::foreign_client_encoding(msg).is_some() => {
                    let encoding = upstream::foreign_client_encoding(msg).unwrap_or_default();
                    let why = format!(
                        "hoop: the target switched this session's client_encoding to {encoding}; \
                         hoop relays PostgreSQL sessions in UTF-8 only, so the session ends \
                         (reset the role's or database's client_encoding setting, or the \
                         function that changes it)"
                    );
                    // Nothing after this message reaches the client: what came before is
                    // relayed and recorded as usual, then the session ends.
                    codec::put_error(&mut out, b'E', "FATAL", "0A000", &why, None);
                    ended = Some(format!("target switched client_encoding to {encoding}"));
                    break;
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
        if let Some(reason) = ended {
            break reason;
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
