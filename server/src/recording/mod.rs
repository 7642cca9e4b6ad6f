//! Session recording, protocol-neutral: adapters report sessions and their statements here, and
//! one writer task stores them in batches (group commit), so the data path never waits on disk.
//!
//! Fail closed: a session whose start cannot be committed does not start
//! ([`Recorder::session_started`] waits for the commit), and after a failed batch
//! [`Recorder::healthy`] turns false so adapters end their sessions. A session that lost records
//! in a failed batch is refused further records even once the store recovers, since its log
//! would have a hole in it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::{RecordingBatch, Store, StoreError};
pub use crate::store::{SessionStart, SessionSummary, StatementRecord};

/// Records waiting beyond this make producers wait (back-pressure instead of unbounded memory).
const QUEUE: usize = 8192;
/// At most this many records per transaction.
const BATCH: usize = 1024;
/// How long the writer lets statements gather before it writes them, unless a session start is
/// waiting. Under load this turns thousands of tiny transactions (each a round trip to the
/// SQLite worker thread and a wake-up of the writer) into a few dozen a second; the data path
/// never waits for it, since statements only wait for queue space.
const LINGER: Duration = Duration::from_millis(20);
/// The `end_reason` given to sessions a previous gateway process left open.
pub const ABANDONED: &str = "gateway stopped";

/// A record the recorder could not take; the caller must end (or not start) the session.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The writer task is gone (the gateway is shutting down).
    #[error("the session recorder has stopped")]
    Stopped,
    /// A recent batch could not be written; no new records are taken until one is.
    #[error("session recording is failing; sessions cannot be recorded")]
    Unhealthy,
    /// Records of this session were lost in a failed batch, so its log is incomplete.
    #[error("records of session {0} could not be written")]
    Lost(String),
    /// The session id is already recorded.
    #[error("session {0} already exists")]
    Duplicate(String),
    /// The store refused the write.
    #[error("cannot record the session: {0}")]
    Write(String),
}

enum Op {
    Start(SessionStart, oneshot::Sender<Result<(), RecordError>>),
    Statement(StatementRecord),
    End(String, SessionSummary),
}

/// State shared by the handles and the writer.
struct Shared {
    healthy: AtomicBool,
    /// Set when `lost` is non-empty, so the data path skips the lock in the common case.
    any_lost: AtomicBool,
    /// Sessions with records in a failed batch.
    lost: Mutex<HashSet<String>>,
}

impl Shared {
    fn is_lost(&self, id: &str) -> bool {
        if !self.any_lost.load(Ordering::Acquire) {
            return false;
        }
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    fn mark_lost(&self, ids: impl IntoIterator<Item = String>) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        lost.extend(ids);
        self.any_lost.store(!lost.is_empty(), Ordering::Release);
    }

    fn forget(&self, id: &str) {
        if !self.any_lost.load(Ordering::Acquire) {
            return;
        }
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        lost.remove(id);
        self.any_lost.store(!lost.is_empty(), Ordering::Release);
    }
}

/// Handle to the session recorder; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Op>,
    shared: Arc<Shared>,
    /// Ends the writer's linger early: someone waits for a commit.
    urgent: Arc<Notify>,
    /// `[recording] on_failure = "continue"`: failures are logged, sessions go on.
    fail_open: bool,
}

impl Recorder {
    /// Starts the writer task over `store`. Its first act is to close the sessions a previous
    /// process left open (they ended when it died), before any new session is written.
    pub fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, false)
    }

    /// [`Recorder::start`]; with `fail_open`, a record that cannot be taken is logged and
    /// dropped instead of ending the session (sessions then run with holes in their logs,
    /// which their end reason states).
    pub fn start_with(store: Arc<dyn Store>, fail_open: bool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            any_lost: AtomicBool::new(false),
            lost: Mutex::new(HashSet::new()),
        });
        let urgent = Arc::new(Notify::new());
        tokio::spawn(writer(store, rx, shared.clone(), urgent.clone()));
        Self {
            tx,
            shared,
            urgent,
            fail_open,
        }
    }

    /// Records a new session and waits until it is committed. An error means the session must
    /// not start.
    pub async fn session_started(&self, s: SessionStart) -> Result<(), RecordError> {
        let id = s.id.clone();
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Op::Start(s, done))
            .await
            .map_err(|_| RecordError::Stopped)?;
        self.urgent.notify_one();
        match wait.await.map_err(|_| RecordError::Stopped)? {
            Err(RecordError::Write(e)) if self.fail_open => {
                tracing::error!(error = %e, "session start not recorded; going on (recording.on_failure = continue)");
                self.shared.mark_lost([id]);
                Ok(())
            }
            r => r,
        }
    }

    /// Queues a statement; waits only for queue space. An error means the session must end.
    pub async fn statement(&self, st: StatementRecord) -> Result<(), RecordError> {
        if self.fail_open {
            // A session whose start (or an earlier batch) was lost has a hole already, and may
            // have no row for its statements to belong to: drop them rather than fail batches
            // of other sessions. Otherwise queue even while unhealthy: the next batch may well
            // be written.
            if self.shared.is_lost(&st.session_id) {
                return Ok(());
            }
            if self.tx.try_send(Op::Statement(st)).is_err() {
                tracing::warn!("statement not recorded: the recording queue is full or closed");
            }
            return Ok(());
        }
        if !self.healthy() {
            return Err(RecordError::Unhealthy);
        }
        if self.shared.is_lost(&st.session_id) {
            return Err(RecordError::Lost(st.session_id.to_string()));
        }
        self.tx
            .send(Op::Statement(st))
            .await
            .map_err(|_| RecordError::Stopped)
    }

    /// Queues the end of a session. Always attempted, even while unhealthy, so the session's row
    /// is closed when the store allows it. A session that lost records gets that noted in its
    /// end reason.
    pub async fn session_ended(
        &self,
        id: &str,
        mut summary: SessionSummary,
    ) -> Result<(), RecordError> {
        if self.shared.is_lost(id) {
            // Whoever reads the session later must know its log has a hole.
            summary.end_reason.push_str(" (recording incomplete)");
            self.shared.forget(id);
        }
        self.tx
            .send(Op::End(id.to_string(), summary))
            .await
            .map_err(|_| RecordError::Stopped)
    }

    /// False after a batch failed to be written, until one is written again. Adapters end their
    /// sessions when they see false.
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire) && !self.tx.is_closed()
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Op>,
    shared: Arc<Shared>,
    urgent: Arc<Notify>,
) {
    match store.sessions_close_open(ABANDONED).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, "closed sessions left open by a previous run"),
        // Not fatal: those rows only stay "active" in listings.
        Err(e) => tracing::warn!(error = %e, "cannot close sessions left open by a previous run"),
    }
    let mut ops: Vec<Op> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut ops, BATCH).await > 0 {
        // Not polling the queue while lingering is the point: senders push without waking us.
        let waited_for = ops.iter().any(|op| matches!(op, Op::Start(..)));
        if !waited_for && ops.len() < BATCH {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = urgent.notified() => {}
            }
            while ops.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
        }
        let mut batch = RecordingBatch::default();
        let mut waiting = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Start(s, done) => {
                    waiting.push((s.id.clone(), done));
                    batch.started.push(s);
                }
                Op::Statement(st) => batch.statements.push(st),
                Op::End(id, summary) => batch.ended.push((id, summary)),
            }
        }
        match write_with_retry(store.as_ref(), &batch).await {
            Ok(skipped) => {
                shared.healthy.store(true, Ordering::Release);
                for (id, done) in waiting {
                    let r = if skipped.contains(&id) {
                        Err(RecordError::Duplicate(id))
                    } else {
                        Ok(())
                    };
                    let _ = done.send(r);
                }
            }
            Err(e) => {
                // The sessions this batch touched (only worked out when it failed).
                let mut ids: HashSet<String> = batch
                    .started
                    .iter()
                    .map(|s| s.id.clone())
                    .chain(batch.statements.iter().map(|s| s.session_id.to_string()))
                    .chain(batch.ended.iter().map(|(id, _)| id.clone()))
                    .collect();
                tracing::error!(
                    error = %e,
                    sessions = ids.len(),
                    statements = batch.statements.len(),
                    "session recording write failed"
                );
                shared.healthy.store(false, Ordering::Release);
                // Sessions that were starting are told directly and never start; ended ones need
                // nothing more; the rest have a hole in their log from here on.
                for (id, _) in &waiting {
                    ids.remove(id);
                }
                for (id, _) in &batch.ended {
                    ids.remove(id);
                }
                shared.mark_lost(ids);
                let msg = e.to_string();
                for (_, done) in waiting {
                    let _ = done.send(Err(RecordError::Write(msg.clone())));
                }
            }
        }
    }
}

async fn write_with_retry(
    store: &dyn Store,
    batch: &RecordingBatch,
) -> Result<Vec<String>, StoreError> {
    // A busy database (another process holding the write lock) is worth a few retries; each
    // attempt is a whole transaction, so a retry never writes a record twice.
    let mut delay = Duration::from_millis(20);
    for _ in 0..5 {
        match store.recording_write(batch).await {
            Err(StoreError::Database(e)) if is_busy(&e) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            r => return r,
        }
    }
    store.recording_write(batch).await
}

fn is_busy(e: &sqlx::Error) -> bool {
    let s = e.to_string();
    s.contains("locked") || s.contains("busy")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use hoop_shared::audit::StoredRecord;

    use super::*;
    use crate::policy::MaskCounts;
    use crate::reviews::{Decision, Review, ReviewId, ReviewState};
    use crate::store::{
        ApiKeyRecord, DecideOutcome, NewReview, RefreshRecord, ReviewQuery, SessionFilter,
        SessionRow, SqliteStore, UserRecord,
    };

    /// A SQLite store whose recording writes fail on demand, counting the batches it sees.
    struct Flaky {
        inner: SqliteStore,
        fail: AtomicBool,
        batches: AtomicUsize,
    }

    #[async_trait]
    impl Store for Flaky {
        async fn user_create(&self, u: &UserRecord) -> Result<(), StoreError> {
            self.inner.user_create(u).await
        }
        async fn user_update(&self, u: &UserRecord) -> Result<bool, StoreError> {
            self.inner.user_update(u).await
        }
        async fn user_get(&self, n: &str) -> Result<Option<UserRecord>, StoreError> {
            self.inner.user_get(n).await
        }
        async fn user_list(&self) -> Result<Vec<UserRecord>, StoreError> {
            self.inner.user_list().await
        }
        async fn user_delete(&self, n: &str) -> Result<bool, StoreError> {
            self.inner.user_delete(n).await
        }
        async fn api_key_create(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
            self.inner.api_key_create(k).await
        }
        async fn api_key_by_hash(&self, h: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
            self.inner.api_key_by_hash(h).await
        }
        async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
            self.inner.api_key_list().await
        }
        async fn api_key_revoke(&self, n: &str, at: i64) -> Result<bool, StoreError> {
            self.inner.api_key_revoke(n, at).await
        }
        async fn refresh_put(&self, t: &RefreshRecord) -> Result<(), StoreError> {
            self.inner.refresh_put(t).await
        }
        async fn refresh_take(&self, h: &str) -> Result<Option<RefreshRecord>, StoreError> {
            self.inner.refresh_take(h).await
        }
        async fn refresh_revoke_subject(&self, s: &str) -> Result<u64, StoreError> {
            self.inner.refresh_revoke_subject(s).await
        }
        async fn audit_append(&self, e: &[Vec<u8>]) -> Result<i64, StoreError> {
            self.inner.audit_append(e).await
        }
        async fn audit_range(&self, a: i64, l: i64) -> Result<Vec<StoredRecord>, StoreError> {
            self.inner.audit_range(a, l).await
        }
        async fn session_insert(&self, s: &SessionStart) -> Result<(), StoreError> {
            self.inner.session_insert(s).await
        }
        async fn session_finish(&self, id: &str, s: &SessionSummary) -> Result<bool, StoreError> {
            self.inner.session_finish(id, s).await
        }
        async fn statements_insert(&self, s: &[StatementRecord]) -> Result<(), StoreError> {
            self.inner.statements_insert(s).await
        }
        async fn recording_write(&self, b: &RecordingBatch) -> Result<Vec<String>, StoreError> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Corrupt("disk on fire".into()));
            }
            self.inner.recording_write(b).await
        }
        async fn sessions_close_open(&self, r: &str) -> Result<u64, StoreError> {
            self.inner.sessions_close_open(r).await
        }
        async fn sessions_list(&self, f: &SessionFilter) -> Result<Vec<SessionRow>, StoreError> {
            self.inner.sessions_list(f).await
        }
        async fn session_get(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
            self.inner.session_get(id).await
        }
        async fn statements_of(
            &self,
            id: &str,
            after: Option<u64>,
            limit: u32,
        ) -> Result<Vec<StatementRecord>, StoreError> {
            self.inner.statements_of(id, after, limit).await
        }
        async fn review_create(&self, r: &NewReview) -> Result<ReviewId, StoreError> {
            self.inner.review_create(r).await
        }
        async fn review_get(&self, id: ReviewId) -> Result<Option<Review>, StoreError> {
            self.inner.review_get(id).await
        }
        async fn reviews_list(&self, q: &ReviewQuery) -> Result<Vec<Review>, StoreError> {
            self.inner.reviews_list(q).await
        }
        async fn review_decide(
            &self,
            id: ReviewId,
            d: &Decision,
            now: i64,
        ) -> Result<DecideOutcome, StoreError> {
            self.inner.review_decide(id, d, now).await
        }
        async fn review_set_state(
            &self,
            id: ReviewId,
            from: ReviewState,
            to: ReviewState,
            now: i64,
        ) -> Result<bool, StoreError> {
            self.inner.review_set_state(id, from, to, now).await
        }
        async fn reviews_due(&self, now: i64) -> Result<Vec<Review>, StoreError> {
            self.inner.reviews_due(now).await
        }
    }

    async fn flaky() -> (tempfile::TempDir, Arc<Flaky>) {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteStore::open(dir.path()).await.unwrap();
        let store = Arc::new(Flaky {
            inner,
            fail: AtomicBool::new(false),
            batches: AtomicUsize::new(0),
        });
        (dir, store)
    }

    fn start(id: &str) -> SessionStart {
        SessionStart {
            id: id.into(),
            subject: "alice".into(),
            name: "alice".into(),
            connection: "db".into(),
            kind: "postgres".into(),
            client_addr: None,
            started_at_ms: 1,
        }
    }

    fn stmt(session: &str, seq: u64) -> StatementRecord {
        StatementRecord {
            session_id: session.into(),
            seq,
            at_ms: seq as i64,
            text: format!("SELECT {seq}").into(),
            params: vec![],
            verdict: "allow".into(),
            rule: None,
            reason: None,
            outcome: "ok".into(),
            tag: None,
            sqlstate: None,
            rows: None,
            duration_us: 1,
            masked: MaskCounts::default(),
        }
    }

    fn summary(reason: &str) -> SessionSummary {
        SessionSummary {
            ended_at_ms: 99,
            bytes_up: 1,
            bytes_down: 2,
            statements: 0,
            blocked: 0,
            masked: MaskCounts::default(),
            end_reason: reason.into(),
        }
    }

    /// Waits until the writer has taken everything queued so far: a start waits for its commit,
    /// and the queue is first in, first out.
    async fn flush(rec: &Recorder, id: &str) {
        rec.session_started(start(id)).await.unwrap();
    }

    #[tokio::test]
    async fn many_statements_are_stored_in_order_in_batches() {
        let (_d, store) = flaky().await;
        let rec = Recorder::start(store.clone());
        rec.session_started(start("s")).await.unwrap();
        const N: u64 = 5_000;
        let producers: Vec<_> = ["s", "t"]
            .into_iter()
            .map(|sid| {
                let rec = rec.clone();
                tokio::spawn(async move {
                    if sid == "t" {
                        rec.session_started(start("t")).await.unwrap();
                    }
                    for seq in 1..=N {
                        rec.statement(stmt(sid, seq)).await.unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        rec.session_ended("s", summary("client closed"))
            .await
            .unwrap();
        flush(&rec, "flush").await;

        for sid in ["s", "t"] {
            let mut seqs = Vec::new();
            let mut after = None;
            loop {
                let page = store.statements_of(sid, after, 1000).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                seqs.extend(page.iter().map(|s| s.seq));
            }
            assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "session {sid}");
        }
        let s = store.session_get("s").await.unwrap().unwrap();
        assert_eq!(s.end_reason.as_deref(), Some("client closed"));
        // Group commit: far fewer transactions than records.
        let batches = store.batches.load(Ordering::SeqCst);
        assert!(batches < 2 * N as usize / 10, "{batches} batches");
        assert!(rec.healthy());
    }

    #[tokio::test]
    async fn a_failed_batch_fails_closed() {
        let (_d, store) = flaky().await;
        let rec = Recorder::start(store.clone());
        rec.session_started(start("s")).await.unwrap();
        rec.statement(stmt("s", 1)).await.unwrap();
        flush(&rec, "f1").await;
        assert!(rec.healthy());

        store.fail.store(true, Ordering::SeqCst);
        rec.statement(stmt("s", 2)).await.unwrap();
        // A start is refused when it cannot be committed.
        assert!(matches!(
            rec.session_started(start("n")).await,
            Err(RecordError::Write(_))
        ));
        assert!(!rec.healthy());
        assert!(matches!(
            rec.statement(stmt("s", 3)).await,
            Err(RecordError::Unhealthy)
        ));

        // The store recovers: new sessions start again, but the session that lost a record is
        // refused more, and its end says the log is incomplete.
        store.fail.store(false, Ordering::SeqCst);
        flush(&rec, "f2").await;
        assert!(rec.healthy());
        assert!(matches!(
            rec.statement(stmt("s", 4)).await,
            Err(RecordError::Lost(_))
        ));
        rec.session_ended("s", summary("recording failed"))
            .await
            .unwrap();
        flush(&rec, "f3").await;
        let s = store.session_get("s").await.unwrap().unwrap();
        assert_eq!(
            s.end_reason.as_deref(),
            Some("recording failed (recording incomplete)")
        );
        let seqs: Vec<u64> = store
            .statements_of("s", None, 100)
            .await
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(seqs, [1]);
        assert!(store.session_get("n").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn fail_open_keeps_sessions_going() {
        let (_d, store) = flaky().await;
        let rec = Recorder::start_with(store.clone(), true);
        rec.session_started(start("s")).await.unwrap();
        store.fail.store(true, Ordering::SeqCst);
        // Neither a start nor a statement that cannot be written stops anything.
        rec.session_started(start("n")).await.unwrap();
        rec.statement(stmt("n", 1)).await.unwrap();
        rec.statement(stmt("s", 1)).await.unwrap();
        flush(&rec, "f1").await;
        assert!(!rec.healthy());
        rec.statement(stmt("s", 2)).await.unwrap();
        store.fail.store(false, Ordering::SeqCst);
        flush(&rec, "f2").await;
        rec.session_ended("s", summary("client closed"))
            .await
            .unwrap();
        flush(&rec, "f3").await;
        assert!(rec.healthy());
        let s = store.session_get("s").await.unwrap().unwrap();
        assert_eq!(
            s.end_reason.as_deref(),
            Some("client closed (recording incomplete)")
        );
        assert!(store.session_get("n").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn duplicate_session_id_is_refused_alone() {
        let (_d, store) = flaky().await;
        let rec = Recorder::start(store.clone());
        rec.session_started(start("s")).await.unwrap();
        assert!(matches!(
            rec.session_started(start("s")).await,
            Err(RecordError::Duplicate(_))
        ));
        assert!(rec.healthy());
    }

    #[tokio::test]
    async fn sessions_left_open_are_closed_at_start() {
        let (_d, store) = flaky().await;
        store.inner.session_insert(&start("old")).await.unwrap();
        let rec = Recorder::start(store.clone());
        flush(&rec, "new").await;
        let old = store.session_get("old").await.unwrap().unwrap();
        assert_eq!(old.end_reason.as_deref(), Some(ABANDONED));
        let new = store.session_get("new").await.unwrap().unwrap();
        assert_eq!(new.ended_at_ms, None);
    }
}
