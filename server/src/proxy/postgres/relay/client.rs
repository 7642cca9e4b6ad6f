//! client → target: every Query and Parse goes through the guardrails and review classes, and
//! every message of the extended protocol is held until its batch ends (see `batch.rs`), so a
//! batch is sent whole, refused whole, or held whole for one review.
//!
//! The unit of review is an execution: a Bind of a statement that needs review, with its
//! values (or a Query, or `EXECUTE p(...)` in one). Preparing runs nothing and is not reviewed,
//! but a statement that needs review is prepared on the target under a hidden name of the
//! gateway's (see `statements.rs`), so it can only be bound through the gateway. One review
//! covers every execution of a batch and shows each with its parameter values; once approved
//! the batch is sent once, so each execution runs once. What a Flush ends is reviewed like what
//! a Sync ends: it is sent only once approved, and a refusal is answered at the Flush, the rest
//! being dropped until Sync, as PostgreSQL does after an error.
//!
//! Each message kind has its own step below; the loop in [`ClientSide::run`] only frames
//! messages and writes what is due, one write per read.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use serde_json::json;
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::super::batch::{Admit, Batch, Execution, Phase, Refusal};
use super::super::binary;
use super::super::codec;
use super::super::handoff::HandoffTx;
use super::super::statements::{Bound, NeedsReview, Portal, Prepared, Statements, is_reserved};
use super::{CLIENT_LIMITS, Item, Pending, READ_CHUNK, Session, now_ms};
use crate::audit::event;
use crate::policy::masking::MaskCounts as LiveCounts;
use crate::policy::{MaskCounts, Policy, Verdict};
use crate::reviews::{Hold, NotRun, ReviewId, ReviewedStatement, Withdrawn};
use crate::tunnel::{Answer, TunnelContext};
use crate::util::random_chars;

/// What a client may pipeline while one of its statements waits for review (read and kept).
const HELD_INPUT_LIMIT: usize = 1 << 20;

/// Message prefixes of the gateway's own answers (`hoop exec` learns which messages are the
/// gateway's beside the protocol, from [`Answer`]s).
const NOT_APPROVED_PREFIX: &str = "statement not approved: ";
/// See [`NOT_APPROVED_PREFIX`].
const REVIEW_PENDING_PREFIX: &str = "statement review pending: ";
/// See [`NOT_APPROVED_PREFIX`].
const BLOCKED_PREFIX: &str = "blocked by guardrail ";
/// The notice naming a review starts like this; the id follows.
const REVIEW_NOTICE_PREFIX: &str = "statement needs approval";

/// Runs the client → target direction until the client leaves or sends Terminate.
pub(super) async fn client_to_server<R, W>(
    session: &Session,
    client: &mut R,
    buf: BytesMut,
    server: &mut W,
    tx: HandoffTx<Item>,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    ClientSide::new(session, client, buf, server, tx)
        .run()
        .await
}

/// What a message needs after its synchronous step. Most messages need nothing more, so the
/// per-message path creates no future; only blocks, batch ends with something to decide, and
/// Queries wait (for the recorder, a review, the target).
enum Step {
    Next,
    Stop,
    /// Record and audit a statement blocked inside a batch, then refuse the batch.
    Block(Blocked),
    /// End the batch at this Sync or Flush (refused, or with executions to review).
    End(BytesMut),
    /// End the open batch first (as a Flush would), then take this message again.
    EndBefore(BytesMut),
    Query(BytesMut),
    FunctionCall,
}

/// A statement blocked inside a batch.
struct Blocked {
    text: Arc<str>,
    rule: String,
    reason: String,
}

impl Blocked {
    fn protocol(text: Arc<str>, reason: String) -> Step {
        Step::Block(Blocked {
            text,
            rule: "protocol".into(),
            reason,
        })
    }
}

/// The state of the client → target direction.
struct ClientSide<'a, R, W> {
    session: &'a Session,
    policy: Arc<Policy>,
    client: &'a mut R,
    /// Bytes read from the client, not yet processed.
    buf: BytesMut,
    server: &'a mut W,
    tx: HandoffTx<Item>,
    /// What goes to the target at the end of this read.
    out: BytesMut,
    batch: Batch<Item>,
    names: Statements,
    /// The portal the client (or the gateway) last described, so masking knows its columns.
    described: Option<Vec<u8>>,
    masking: bool,
    /// Statements on this connection may need review.
    reviews: bool,
    /// The last Parse text the verdict cache allowed as an exact text (so nothing in it
    /// depends on the session): the same bytes again (a driver re-sending its unnamed
    /// statement) are allowed without the shared cache's lock and hash. Compared byte for
    /// byte, so it can never stand for another text.
    last_allowed: Option<Arc<str>>,
}

impl<'a, R, W> ClientSide<'a, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    fn new(
        session: &'a Session,
        client: &'a mut R,
        buf: BytesMut,
        server: &'a mut W,
        tx: HandoffTx<Item>,
    ) -> Self {
        let policy = session.policy.clone();
        let reviews = session
            .ctx
            .connection
            .review
            .as_ref()
            .is_some_and(|r| !r.statements.is_empty());
        ClientSide {
            session,
            masking: policy.masking_active(),
            policy,
            client,
            buf,
            server,
            tx,
            out: BytesMut::with_capacity(READ_CHUNK),
            batch: Batch::new(reviews),
            names: Statements::new(random_chars(b"abcdefghijkmnpqrstuvwxyz23456789", 10)),
            described: None,
            reviews,
            last_allowed: None,
        }
    }

    async fn run(mut self) -> Result<(), String> {
        loop {
            while let Some(msg) = self.next_message()? {
                let mut next = Some(msg);
                while let Some(msg) = next.take() {
                    match self.step(msg)? {
                        Step::Next => {}
                        Step::Stop => {
                            self.write_out().await?;
                            return Ok(());
                        }
                        Step::Block(b) => self.block_in_batch(b).await?,
                        Step::End(end) => self.end_batch(Some(end)).await?,
                        Step::EndBefore(msg) => {
                            self.end_batch(None).await?;
                            next = Some(msg);
                        }
                        Step::Query(msg) => self.query(msg).await?,
                        Step::FunctionCall => self.function_call().await?,
                    }
                }
            }
            self.write_out().await?;
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_CHUNK);
            }
            match self.client.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(format!("client read: {e}")),
            }
        }
    }

    /// The next complete message in the buffer.
    fn next_message(&mut self) -> Result<Option<BytesMut>, String> {
        match codec::frame_len(&self.buf, CLIENT_LIMITS) {
            Ok(Some(n)) => Ok(Some(self.buf.split_to(n))),
            Ok(None) => Ok(None),
            Err(e) => Err(protocol_error(&self.tx, e)),
        }
    }

    /// Hands `item` to the target direction; only the gateway's own answers wake it (the rest
    /// waits for the target's bytes, see `handoff`).
    fn send(&self, item: Item) -> Result<(), String> {
        let wake = matches!(item, Item::Local { .. } | Item::Kill(_));
        self.tx
            .push(item, wake)
            .map_err(|_| "target side closed".to_string())
    }

    /// Answers the client with the gateway's own error; `ready` adds ReadyForQuery.
    fn answer(&self, bytes: BytesMut, ready: bool) -> Result<(), String> {
        self.send(Item::Local { bytes, ready })
    }

    /// Writes what is due to the target.
    async fn write_out(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.session
            .counters
            .up
            .fetch_add(self.out.len() as u64, Ordering::Relaxed);
        self.server
            .write_all(&self.out)
            .await
            .map_err(|e| format!("write to target: {e}"))?;
        self.out.clear();
        Ok(())
    }

    /// The synchronous step of one message: what it needs next.
    fn step(&mut self, msg: BytesMut) -> Result<Step, String> {
        let tag = msg.first().copied().unwrap_or_default();
        if tag == b'X' {
            // The client leaves: what is held never ran, and nothing after it will.
            self.out.extend_from_slice(&msg);
            return Ok(Step::Stop);
        }
        let extended = matches!(
            tag,
            b'P' | b'B' | b'D' | b'E' | b'C' | b'd' | b'c' | b'f' | b'S' | b'H'
        );
        if !extended && (!self.batch.is_empty() || matches!(self.batch.phase, Phase::Refused(_))) {
            // Anything else ends the open batch as a Flush would (a refused one is answered
            // then, as PostgreSQL answers an error at once); after a refusal it is dropped like
            // the rest of the batch, since PostgreSQL ignores it until Sync too.
            return Ok(Step::EndBefore(msg));
        }
        if self.batch.dropping(tag) {
            return Ok(Step::Next);
        }
        match tag {
            b'P' => self.parse(&msg),
            b'B' => self.bind(&msg),
            b'D' => Ok(self.describe(&msg)),
            b'E' => {
                self.execute(&msg);
                Ok(Step::Next)
            }
            b'C' => Ok(self.close(&msg)),
            // COPY data inside a batch stays in order with it; after a COPY that was sent (a
            // Query, or a batch that ended) it goes straight on.
            b'd' | b'c' | b'f' if !self.batch.is_empty() => {
                if self.admit(msg.len()) {
                    self.hold(&msg);
                }
                Ok(Step::Next)
            }
            b'S' | b'H' if self.batch.phase == Phase::Open && self.batch.reviews.is_empty() => {
                self.send_held(Some(&msg))?;
                Ok(Step::Next)
            }
            b'S' | b'H' => Ok(Step::End(msg)),
            b'Q' => Ok(Step::Query(msg)),
            b'F' => Ok(Step::FunctionCall),
            _ => {
                self.out.extend_from_slice(&msg);
                Ok(Step::Next)
            }
        }
    }

    // ---- the simple protocol ----

    async fn query(&mut self, msg: BytesMut) -> Result<(), String> {
        let text: Arc<str> = String::from_utf8_lossy(
            codec::query_text(&msg).map_err(|e| protocol_error(&self.tx, e))?,
        )
        .into();
        let pending = self.pending(Arc::clone(&text), Vec::new(), true);
        let (verdict, defs, runs) = self.judge(&text);
        match verdict {
            Verdict::Allow => {
                if let Err(why) = self.name_sql(&defs) {
                    return self.block_query(pending, "protocol", &why).await;
                }
                self.names.commit();
                self.send(Item::Stmt(Box::new(pending)))?;
                self.send(Item::Sync)?;
                self.out.extend_from_slice(&msg);
            }
            Verdict::Block { rule, reason } => {
                self.block_query(pending, &rule, &reason).await?;
            }
            Verdict::Review { rule, reason } => {
                // Earlier messages go out before the wait.
                self.write_out().await?;
                let shown = [ReviewedStatement {
                    text: masked_text(&self.policy, &text),
                    params: Vec::new(),
                    note: runs_note(&self.policy, &runs),
                }];
                let decided = self.hold_review(&shown, &text, &rule, &reason).await;
                match decided {
                    Ok(filed) => {
                        if let Err(why) = self.name_sql(&defs) {
                            return self.block_query(pending, "protocol", &why).await;
                        }
                        self.names.commit();
                        self.send(Item::Stmt(Box::new(pending)))?;
                        self.send(Item::Sync)?;
                        self.out.extend_from_slice(&msg);
                        self.write_out().await?;
                        if let Some(id) = filed {
                            self.session.ctx.state.reviews.mark_executed(id).await.ok();
                        }
                    }
                    Err(not_run) => {
                        refuse(self.session, pending, &rule, &not_run).await?;
                        self.answer(not_run_error(&self.session.ctx, &not_run), true)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn block_query(
        &mut self,
        pending: Pending,
        rule: &str,
        reason: &str,
    ) -> Result<(), String> {
        self.names.rollback();
        block(self.session, pending, rule, reason).await?;
        self.answer(blocked_error(&self.session.ctx, rule, reason), true)
    }

    /// The fast-path FunctionCall runs a function by OID: nothing for the guardrails to read.
    async fn function_call(&mut self) -> Result<(), String> {
        let p = self.pending(Arc::from("<FunctionCall>"), Vec::new(), true);
        let (rule, reason) = (
            "protocol",
            "the fast-path FunctionCall message is not allowed through hoop",
        );
        block(self.session, p, rule, reason).await?;
        self.answer(blocked_error(&self.session.ctx, rule, reason), true)
    }

    // ---- the extended protocol: one step per message kind ----

    fn parse(&mut self, msg: &[u8]) -> Result<Step, String> {
        if !self.admit(msg.len()) {
            return Ok(Step::Next);
        }
        let (name, raw) = codec::parse_msg(msg).map_err(|e| protocol_error(&self.tx, e))?;
        let (text, (verdict, defs, runs)) = match &self.last_allowed {
            Some(last) if last.as_bytes() == raw => {
                crate::policy::stats::sql().text_hits.inc();
                (Arc::clone(last), (Verdict::Allow, Vec::new(), Vec::new()))
            }
            _ => {
                let text: Arc<str> = String::from_utf8_lossy(raw).into();
                let judged = self.judge(&text);
                let plain = judged.0 == Verdict::Allow
                    && judged.1.is_empty()
                    && judged.2.is_empty()
                    && self.policy.allowed_as_cached(&text);
                self.last_allowed = plain.then(|| Arc::clone(&text));
                (text, judged)
            }
        };
        let review = match verdict {
            Verdict::Allow => None,
            Verdict::Block { rule, reason } => {
                return Ok(Step::Block(Blocked { text, rule, reason }));
            }
            Verdict::Review { rule, reason } => Some(NeedsReview {
                rule,
                reason,
                runs,
                hidden: None,
            }),
        };
        // A `PREPARE` sent through Parse names its statement when it runs; the view learns the
        // name now (a name that may exist is the safe mistake).
        if let Err(why) = self.name_sql(&defs) {
            return Ok(Blocked::protocol(text, why));
        }
        let types = codec::parse_param_types(msg).unwrap_or_default();
        match self.names.parse(name, Arc::clone(&text), types, review) {
            Err(why) => Ok(Blocked::protocol(text, why.to_string())),
            Ok(None) => {
                self.hold(msg);
                Ok(Step::Next)
            }
            Ok(Some(hidden)) => {
                self.hold_renamed(msg, 5, name.len(), &hidden);
                Ok(Step::Next)
            }
        }
    }

    fn bind(&mut self, msg: &[u8]) -> Result<Step, String> {
        if !self.admit(msg.len()) {
            return Ok(Step::Next);
        }
        let bind = codec::bind_msg(msg).map_err(|e| protocol_error(&self.tx, e))?;
        if is_reserved(bind.statement) {
            return Ok(Blocked::protocol(Arc::from(""), reserved(bind.statement)));
        }
        let bound = self.names.bound(bind.statement);
        let (prepared, review) = match &bound {
            Bound::Plain(None) if self.reviews => {
                let why = format!(
                    "Bind of statement {:?}, which the gateway has not seen prepared; on this \
                     connection statements may need review, so only statements prepared \
                     through the gateway can be bound",
                    String::from_utf8_lossy(bind.statement)
                );
                return Ok(Blocked::protocol(Arc::from(""), why));
            }
            Bound::Plain(p) => (p.clone(), None),
            Bound::Hidden(p) => (Some(Arc::clone(p)), p.review.clone()),
            Bound::Exposed {
                current,
                candidates,
            } => {
                let first = candidates.first().cloned();
                let review = first.as_ref().and_then(|p| p.review.clone()).map(|mut r| {
                    // What the name holds on the target may be any of these.
                    r.runs = candidates
                        .iter()
                        .chain(current.iter())
                        .map(|p| {
                            (
                                String::from_utf8_lossy(bind.statement).into_owned(),
                                p.text.to_string(),
                            )
                        })
                        .collect();
                    r
                });
                (current.clone().or(first), review)
            }
        };
        let text = prepared
            .as_ref()
            .map_or_else(|| Arc::from(""), |p| Arc::clone(&p.text));
        let params = record_params(self.session, &bind, prepared.as_deref());
        if let Some(r) = &review {
            let shown = match &bound {
                Bound::Exposed { .. } => format!(
                    "EXECUTE {} (a statement prepared with SQL PREPARE; see the note)",
                    String::from_utf8_lossy(bind.statement)
                ),
                _ => masked_text(&self.policy, &text),
            };
            self.batch.reviews.push(Execution {
                text: Arc::clone(&text),
                shown,
                params: params.clone(),
                values_digest: values_digest(&bind),
                note: runs_note(&self.policy, &r.runs),
                rule: r.rule.clone(),
                reason: r.reason.clone(),
            });
        }
        self.names.bind_portal(bind.portal, Portal { text, params });
        self.described = None;
        let at = 5 + bind.portal.len() + 1;
        let old = bind.statement.len();
        match review.as_ref().and_then(|r| r.hidden.as_deref()) {
            Some(hidden) => self.hold_renamed(msg, at, old, hidden),
            None => self.hold(msg),
        }
        Ok(Step::Next)
    }

    fn describe(&mut self, msg: &[u8]) -> Step {
        if !self.admit(msg.len()) {
            return Step::Next;
        }
        let kind = msg.get(5).copied();
        let name = codec::name_after_kind(msg).unwrap_or_default();
        let mut hidden = None;
        if kind == Some(b'S') {
            if is_reserved(name) {
                return Blocked::protocol(Arc::from(""), reserved(name));
            }
            let id = self.names.get(name).map(|p| {
                p.described.store(true, Ordering::Relaxed);
                p.id
            });
            hidden = self.names.target_name(name).map(<[u8]>::to_vec);
            self.batch.items.push(Item::ParamTypes(id));
        }
        if self.masking {
            self.batch.items.push(Item::Describe { injected: false });
            if kind == Some(b'P') {
                self.described = Some(name.to_vec());
            }
        }
        match hidden {
            Some(h) => self.hold_renamed(msg, 6, name.len(), &h),
            None => self.hold(msg),
        }
        Step::Next
    }

    fn execute(&mut self, msg: &[u8]) {
        if !self.admit(msg.len()) {
            return;
        }
        let portal = codec::execute_portal(msg).unwrap_or_default().to_vec();
        let (text, params) = self.names.execute_portal(&portal);
        if self.masking && self.described.as_deref() != Some(portal.as_slice()) {
            // Masking needs this portal's columns and formats: ask the target, and swallow the
            // answer (the client did not ask).
            let mut body = Vec::with_capacity(portal.len() + 2);
            body.push(b'P');
            body.extend_from_slice(&portal);
            body.push(0);
            codec::put_message(&mut self.batch.bytes, b'D', &body);
            self.batch.items.push(Item::Describe { injected: true });
            self.described = Some(portal);
        }
        let pending = self.pending(text, params, false);
        self.batch.items.push(Item::Stmt(Box::new(pending)));
        self.hold(msg);
    }

    fn close(&mut self, msg: &[u8]) -> Step {
        if !self.admit(msg.len()) {
            return Step::Next;
        }
        let name = codec::name_after_kind(msg).unwrap_or_default();
        match msg.get(5) {
            Some(b'S') => {
                if is_reserved(name) {
                    return Blocked::protocol(Arc::from(""), reserved(name));
                }
                let hidden = self.names.target_name(name).map(<[u8]>::to_vec);
                self.names.close(name);
                match hidden {
                    Some(h) => self.hold_renamed(msg, 6, name.len(), &h),
                    None => self.hold(msg),
                }
            }
            Some(b'P') => {
                self.names.close_portal(name);
                self.hold(msg);
            }
            _ => self.hold(msg),
        }
        Step::Next
    }

    // ---- holding and ending a batch ----

    /// Whether the next message of `len` bytes may be held: past a bound the batch is refused
    /// (statements may need review) or what is held is sent first.
    fn admit(&mut self, len: usize) -> bool {
        match self.batch.admit(len) {
            Admit::Hold => true,
            Admit::SendHeldFirst => {
                // Only a closed target direction fails this, and the next Sync finds it.
                let _ = self.send_held(None);
                true
            }
            Admit::Refuse(bound) => {
                self.refuse_batch(Refusal::TooLarge(bound));
                false
            }
        }
    }

    fn hold(&mut self, msg: &[u8]) {
        self.batch.bytes.extend_from_slice(msg);
        self.batch.held();
    }

    /// Holds `msg` with the statement name at `at` (of `old` bytes) replaced by `name`.
    fn hold_renamed(&mut self, msg: &[u8], at: usize, old: usize, name: &[u8]) {
        if codec::put_renamed(&mut self.batch.bytes, msg, at, old, name) {
            self.batch.held();
        }
    }

    /// Records and audits a statement blocked inside a batch, and refuses the batch.
    async fn block_in_batch(&mut self, b: Blocked) -> Result<(), String> {
        let p = self.pending(b.text, Vec::new(), false);
        block(self.session, p, &b.rule, &b.reason).await?;
        self.refuse_batch(Refusal::Blocked {
            rule: b.rule,
            reason: b.reason,
        });
        Ok(())
    }

    /// Drops what is held (none of it reached the target) and the rest until Sync.
    fn refuse_batch(&mut self, why: Refusal) {
        self.names.rollback();
        self.described = None;
        self.batch.refuse(why);
    }

    /// Sends what is held; `end` is the Sync or Flush that ends the batch (None: a soft bound
    /// or a message outside the extended protocol ended it).
    fn send_held(&mut self, end: Option<&[u8]>) -> Result<(), String> {
        // Drained, not taken: the held batch keeps its buffers for the next one.
        for item in self.batch.items.drain(..) {
            let wake = matches!(item, Item::Local { .. } | Item::Kill(_));
            self.tx
                .push(item, wake)
                .map_err(|_| "target side closed".to_string())?;
        }
        self.out.extend_from_slice(&self.batch.bytes);
        self.batch.clear();
        self.names.commit();
        match end {
            Some(msg) if msg.first() == Some(&b'S') => {
                self.out.extend_from_slice(msg);
                self.send(Item::Sync)?;
                self.batch.forwarded = false;
            }
            Some(msg) => {
                self.out.extend_from_slice(msg);
                self.batch.forwarded = true;
            }
            None => self.batch.forwarded = true,
        }
        Ok(())
    }

    /// The batch ends at `end` (Sync or Flush; None: another message ended it).
    async fn end_batch(&mut self, end: Option<BytesMut>) -> Result<(), String> {
        match std::mem::replace(&mut self.batch.phase, Phase::Open) {
            Phase::Discarding => return self.end_discarding(end.as_deref()),
            Phase::Refused(why) => {
                let error = match why {
                    Refusal::Blocked { rule, reason } => {
                        blocked_error(&self.session.ctx, &rule, &reason)
                    }
                    Refusal::TooLarge(bound) => too_large_error(&self.session.ctx, bound),
                };
                return self.answer_refusal(error, end.as_deref());
            }
            Phase::Open => {}
        }
        if self.batch.reviews.is_empty() {
            return self.send_held(end.as_deref());
        }
        let executions = std::mem::take(&mut self.batch.reviews);
        let shown: Vec<ReviewedStatement> = executions
            .iter()
            .map(|e| ReviewedStatement {
                text: e.shown.clone(),
                params: e.params.clone(),
                note: e.note.clone(),
            })
            .collect();
        let (rule, reason) = executions
            .first()
            .map(|e| (e.rule.clone(), e.reason.clone()))
            .unwrap_or_default();
        let reason = match executions.len() {
            1 => reason,
            n => format!("{reason}; {n} statements in this batch"),
        };
        // Earlier messages (outside this batch) go out before the wait.
        self.write_out().await?;
        match self
            .hold_review(&shown, &exact_batch(&executions), &rule, &reason)
            .await
        {
            Ok(filed) => {
                self.send_held(end.as_deref())?;
                self.write_out().await?;
                if let Some(id) = filed {
                    self.session.ctx.state.reviews.mark_executed(id).await.ok();
                }
                Ok(())
            }
            Err(not_run) => {
                for e in executions {
                    let p = self.pending(e.text, e.params, false);
                    refuse(self.session, p, &rule, &not_run).await?;
                }
                self.names.rollback();
                self.described = None;
                self.batch.clear();
                let error = not_run_error(&self.session.ctx, &not_run);
                self.answer_refusal(error, end.as_deref())
            }
        }
    }

    /// Answers a refused batch at its end: at a Sync with ReadyForQuery (the target's, when
    /// part of the sequence reached it); at a Flush (or another message) the rest until Sync is
    /// dropped.
    fn answer_refusal(&mut self, error: BytesMut, end: Option<&[u8]>) -> Result<(), String> {
        match end {
            Some(msg) if msg.first() == Some(&b'S') => {
                if self.batch.forwarded {
                    self.answer(error, false)?;
                    self.send(Item::Sync)?;
                    self.out.extend_from_slice(msg);
                    self.batch.forwarded = false;
                } else {
                    self.answer(error, true)?;
                }
            }
            _ => {
                self.answer(error, false)?;
                self.batch.phase = Phase::Discarding;
            }
        }
        Ok(())
    }

    /// The Sync after a refused batch that was answered at its Flush.
    fn end_discarding(&mut self, end: Option<&[u8]>) -> Result<(), String> {
        let Some(msg) = end else {
            self.batch.phase = Phase::Discarding;
            return Ok(());
        };
        if self.batch.forwarded {
            self.send(Item::Sync)?;
            self.out.extend_from_slice(msg);
        } else {
            self.answer(BytesMut::new(), true)?;
        }
        self.batch.forwarded = false;
        Ok(())
    }

    // ---- policy ----

    /// Judges `text`; also returns the statements `PREPARE` in it defines and the prepared
    /// statements its `EXECUTE`s run (name, text), for the reviewer.
    #[allow(clippy::type_complexity)]
    fn judge(&self, text: &str) -> (Verdict, Vec<(String, String)>, Vec<(String, String)>) {
        let runs = RefCell::new(Vec::new());
        let lookup = |name: &str| {
            let text = self.names.sql_text(name);
            if let Some(t) = &text {
                runs.borrow_mut().push((name.to_string(), t.clone()));
            }
            text
        };
        let (verdict, defs) = self.policy.check_sql(text, &lookup);
        (verdict, defs, runs.into_inner())
    }

    /// Gives the names SQL `PREPARE` defines (in a Query, or a Parse); the view remembers which
    /// hold statements that need review.
    fn name_sql(&mut self, defs: &[(String, String)]) -> Result<(), String> {
        for (name, text) in defs {
            let review = if self.reviews {
                match self.judge(text).0 {
                    Verdict::Review { rule, reason } => Some(NeedsReview {
                        rule,
                        reason,
                        runs: Vec::new(),
                        hidden: None,
                    }),
                    _ => None,
                }
            } else {
                None
            };
            self.names
                .prepare_sql(name, text, review)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn pending(&self, text: Arc<str>, params: Vec<Option<String>>, simple: bool) -> Pending {
        Pending {
            seq: self.session.next_seq(),
            text,
            params,
            simple,
            started: Instant::now(),
            at_ms: now_ms(),
            tags: Vec::new(),
            rows: 0,
            error: None,
        }
    }

    /// Files a review of `shown`, tells the client at once (NoticeResponse), and waits for the
    /// decision. Ok(Some(review id)) when approved (the caller marks it executed once sent);
    /// Ok(None) when `hoop exec --review` ran an approved review (already marked executed).
    async fn hold_review(
        &mut self,
        shown: &[ReviewedStatement],
        exact: &str,
        rule: &str,
        reason: &str,
    ) -> Result<Option<ReviewId>, NotRun> {
        let session = self.session;
        let ctx = &session.ctx;
        let buf = &mut self.buf;
        if buf.len() >= HELD_INPUT_LIMIT {
            // Already too much behind it: refuse before filing, so no approver is asked.
            return Err(NotRun::Refused(format!(
                "the client had sent more than {} KiB behind the statement, which needs review; \
                 send it on its own and further statements once it has run",
                HELD_INPUT_LIMIT / 1024
            )));
        }
        let summary = crate::reviews::statements_summary(shown);
        let hold = Hold {
            connection: &ctx.connection,
            identity: &ctx.identity,
            mode: ctx.review_mode,
            masked: &summary,
            exact,
            session_id: &session.id,
            rule,
        };
        let tx = &self.tx;
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
            tx.push(
                Item::Local {
                    bytes: notice,
                    ready: false,
                },
                true,
            )
            .map_err(|_| "target side closed".to_string())
        };
        // The client gave up: Ctrl-C in psql (a CancelRequest for this session), or it closed
        // the connection (a killed psql, a `hoop exec` whose caller left). Either withdraws the
        // review, so a late approval cannot run a statement nobody waits for. What the client
        // pipelines meanwhile is read into `buf` (processed in order afterwards), up to a limit
        // past which the review is withdrawn and the statement refused.
        let client = &mut *self.client;
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
                biased;
                () = session.hold_cancel.notified() => Withdrawn::Canceled,
                why = gone => why,
            }
        };
        let r = ctx
            .state
            .reviews
            .hold_statements(hold, shown, filed, cancel)
            .await;
        if r.is_ok() {
            ctx.tell(Answer::Approved);
        }
        r
    }
}

/// The refusal of a client statement name in the gateway's namespace.
fn reserved(name: &[u8]) -> String {
    super::super::statements::Refused::Reserved(String::from_utf8_lossy(name).into_owned())
        .to_string()
}

/// What a batch's review approves, exactly: each execution's text and the digest of its values.
/// It starts with a NUL, which no Query text can hold, so it never equals a statement text.
fn exact_batch(executions: &[Execution]) -> String {
    let mut exact = String::from("\0batch\n");
    for e in executions {
        exact.push_str(&e.text);
        exact.push('\0');
        exact.push_str(&hex::encode(e.values_digest));
        exact.push('\n');
    }
    exact
}

/// SHA-256 over a Bind's parameter formats and values (lengths included, NULL as -1).
fn values_digest(bind: &codec::Bind<'_>) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for (i, p) in bind.params.iter().enumerate() {
        h.update(bind.param_format(i).to_be_bytes());
        match p {
            Some(v) => {
                h.update((v.len() as i64).to_be_bytes());
                h.update(v);
            }
            None => h.update((-1i64).to_be_bytes()),
        }
    }
    h.finalize().into()
}

/// The note telling the reviewer what prepared statements a text runs.
fn runs_note(policy: &Policy, runs: &[(String, String)]) -> Option<String> {
    if runs.is_empty() {
        return None;
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|(name, text)| format!("{name} is: {}", masked_text(policy, text)))
        .collect();
    Some(parts.join("; "))
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

/// The ErrorResponse for a batch past a hard bound.
fn too_large_error(ctx: &TunnelContext, bound: super::super::batch::Bound) -> BytesMut {
    let message = format!(
        "hoop: this batch passed {} before its Sync; on connection {:?} statements may need \
         review, so the gateway holds each batch whole until Sync and refuses larger ones; none \
         of it was sent",
        bound.describe(),
        ctx.connection.name
    );
    ctx.tell(Answer::Blocked(message.clone()));
    let mut b = BytesMut::new();
    codec::put_error(
        &mut b,
        b'E',
        "ERROR",
        "54000",
        &message,
        Some("send Sync more often (smaller pipelines or batches); the session continues"),
    );
    b
}

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

/// A Bind's parameters as recorded (and shown to a reviewer): their text with the detectors
/// applied. A binary-format one is turned into text by its type (named by the Parse, or
/// described by the target); one of an unknown type, or text that is not UTF-8, is shown only
/// as its length.
fn record_params(
    session: &Session,
    bind: &codec::Bind<'_>,
    parsed: Option<&Prepared>,
) -> Vec<Option<String>> {
    let binary = |i: usize| bind.param_format(i) == 1;
    let described = match parsed {
        Some(p) if p.is_described() && (0..bind.params.len()).any(binary) => {
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

/// Text with the detectors applied, for recordings, audit records and reviewers.
fn masked_text(policy: &Policy, text: &str) -> String {
    let mut out = Vec::new();
    let mut counts = LiveCounts::default();
    if policy.mask_text(text.as_bytes(), &mut out, &mut counts) {
        String::from_utf8_lossy(&out).into_owned()
    } else {
        text.to_string()
    }
}
