//! Durable state behind one trait, so the embedded SQLite default and a shared PostgreSQL (for
//! several gateway replicas) run the same code above it.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use hoop_shared::audit::{Checkpoint, StoredRecord};

use crate::policy::MaskCounts;
use crate::reviews::{Decision, Review, ReviewId, ReviewKind, ReviewState};

pub use sqlite::SqliteStore;

/// A store failure. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row already exists (a user or key name taken).
    #[error("{0} already exists")]
    Conflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// This store does not implement the operation (test doubles).
    #[error("the store does not support {0}")]
    Unsupported(&'static str),
}

/// One webhook delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Row id.
    pub id: i64,
    /// The webhook's name.
    pub webhook: String,
    /// The audit record it carries.
    pub audit_seq: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// The last failure.
    pub last_error: Option<String>,
    /// Unix milliseconds of the next attempt.
    pub next_at_ms: i64,
}

/// Outbox counts of one webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// The webhook's name.
    pub webhook: String,
    /// Waiting to be sent (or retried).
    pub pending: u64,
    /// Sent and acknowledged.
    pub delivered: u64,
    /// Given up on after the last attempt.
    pub dead: u64,
}

/// A local user of the built-in issuer.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Login name, also the token subject.
    pub name: String,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A machine API key. Only the SHA-256 of the key is stored.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// Short public id (also embedded in the key, so logs can name a key without its secret).
    pub id: String,
    /// Unique name given at creation.
    pub name: String,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    /// Groups the key acts with.
    pub groups: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Unix seconds, if it expires.
    pub expires_at: Option<i64>,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<i64>,
}

/// A refresh token of the built-in issuer (stored hashed, single use).
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The user.
    pub subject: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Granted scope.
    pub scope: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A session as it opens: who, where to, from where. Written before the session may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStart {
    /// Unique session id, chosen by the adapter.
    pub id: String,
    /// The caller's stable subject (authorisation and "my sessions" key on it).
    pub subject: String,
    /// The caller's display name.
    pub name: String,
    /// The connection's configured name.
    pub connection: String,
    /// Protocol: `postgres`, `ssh`, ...
    pub kind: String,
    /// The client's address as the gateway saw it.
    pub client_addr: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
}

/// One statement of a database session's structured log. Nothing here is ever unmasked: the
/// adapter masks parameters before handing them over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRecord {
    /// The session it belongs to (shared by all records of a session: no copy per statement).
    pub session_id: Arc<str>,
    /// Position in the session, increasing; unique per session.
    pub seq: u64,
    /// Unix milliseconds when the statement arrived.
    pub at_ms: i64,
    /// The statement text as the client sent it (shared with the adapter's prepared statement).
    pub text: Arc<str>,
    /// Bound parameters (extended protocol), already masked; `None` is SQL NULL.
    pub params: Vec<Option<String>>,
    /// `allow` or `block`.
    pub verdict: String,
    /// The rule that decided, when one did.
    pub rule: Option<String>,
    /// Why it was blocked.
    pub reason: Option<String>,
    /// `ok`, `error`, `blocked` or `skipped`.
    pub outcome: String,
    /// The command tag (`SELECT 3`), when the target answered one.
    pub tag: Option<String>,
    /// The SQLSTATE of an error.
    pub sqlstate: Option<String>,
    /// Rows returned or affected, when known.
    pub rows: Option<u64>,
    /// Time from the statement to its completion, in microseconds.
    pub duration_us: u64,
    /// Values masked in this statement's results.
    pub masked: MaskCounts,
}

/// How a session ended: its totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Unix milliseconds.
    pub ended_at_ms: i64,
    /// Bytes from the client to the target.
    pub bytes_up: u64,
    /// Bytes from the target to the client.
    pub bytes_down: u64,
    /// Statements seen.
    pub statements: u64,
    /// Statements blocked.
    pub blocked: u64,
    /// Values masked over the whole session.
    pub masked: MaskCounts,
    /// Why it ended, in a few words (`client closed`, `recording failed`, ...).
    pub end_reason: String,
}

/// A stored session, open or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// How it started.
    pub start: SessionStart,
    /// Unix milliseconds; `None` while the session is open.
    pub ended_at_ms: Option<i64>,
    /// Bytes up (0 until the session ends).
    pub bytes_up: u64,
    /// Bytes down (0 until the session ends).
    pub bytes_down: u64,
    /// Statements: the summary's once ended, counted from the log so far while open.
    pub statements: u64,
    /// Blocked statements, counted the same way.
    pub blocked: u64,
    /// Masked values (empty until the session ends).
    pub masked: MaskCounts,
    /// Why it ended.
    pub end_reason: Option<String>,
}

/// Which sessions to list. Every set field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Exactly this subject (the authorisation scope of a caller who may only see their own).
    pub subject: Option<String>,
    /// This subject or display name (what a person types after `--user`).
    pub user: Option<String>,
    /// This connection.
    pub connection: Option<String>,
    /// Started at or after (unix milliseconds).
    pub since_ms: Option<i64>,
    /// Started before (unix milliseconds).
    pub until_ms: Option<i64>,
    /// Only sessions with at least one statement of this verdict (`allow`, `block`).
    pub verdict: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// What the recorder's writer commits in one transaction (group commit), applied in this order:
/// new sessions, statements, then ends, which is the order any one session produces them in.
#[derive(Debug, Clone, Default)]
pub struct RecordingBatch {
    /// Sessions to insert.
    pub started: Vec<SessionStart>,
    /// Statements to append.
    pub statements: Vec<StatementRecord>,
    /// Sessions to close, by id.
    pub ended: Vec<(String, SessionSummary)>,
}

/// A review as it is filed; the store assigns the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    /// Access or statement.
    pub kind: ReviewKind,
    /// Connection name.
    pub connection: String,
    /// Requester subject.
    pub requester: String,
    /// Requester display name.
    pub requester_name: String,
    /// Why, or the rule that asked for review.
    pub reason: Option<String>,
    /// The masked statement (statement reviews): every statement as one text.
    pub statement: Option<String>,
    /// Every statement the review covers, as the reviewer sees it (statement reviews).
    pub statements: Vec<crate::reviews::ReviewedStatement>,
    /// The session holding the statement.
    pub session_id: Option<String>,
    /// Salted digest of the exact statement text (`reviews::statement_digest`), so an approved
    /// review can later be matched to exactly that statement (`hoop exec --review`).
    pub statement_digest: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// A pending review expires at this time (unix seconds).
    pub expires_at: i64,
    /// Requested window in seconds (access reviews).
    pub duration_secs: Option<i64>,
    /// Approvals needed, as configured when filed.
    pub min_approvals: u32,
    /// Groups that may approve, as configured when filed.
    pub approvers: Vec<String>,
}

/// Which reviews to list. Every set field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewQuery {
    /// Requested by this subject.
    pub requester: Option<String>,
    /// On this connection.
    pub connection: Option<String>,
    /// Of this kind.
    pub kind: Option<ReviewKind>,
    /// In one of these states (any state when empty).
    pub states: Vec<ReviewState>,
    /// Only access windows still open at this time (unix seconds): `window_ends_at` after it.
    pub window_open_at: Option<i64>,
    /// At most this many, newest first (0: no limit).
    pub limit: u32,
}

/// What recording a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideOutcome {
    /// The decision is stored; the review as it now stands (its state changed when this was
    /// the rejection or the last approval needed).
    Recorded(Box<Review>),
    /// No such review.
    NotFound,
    /// The review is no longer pending (another decision won, or it ended).
    NotPending(ReviewState),
    /// This person has already decided on this review.
    AlreadyDecided,
    /// The review is still pending but past its expiry: nothing was stored.
    PastExpiry,
}

/// The gateway's durable state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user; `Conflict` if the name is taken.
    async fn user_create(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Replaces a user's password hash and groups; false if no such user.
    async fn user_update(&self, user: &UserRecord) -> Result<bool, StoreError>;
    /// Looks a user up by name.
    async fn user_get(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// All users, by name.
    async fn user_list(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes a user and their refresh tokens; false if no such user.
    async fn user_delete(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores a new key; `Conflict` if the name is taken.
    async fn api_key_create(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Finds a key by the hash of the presented secret.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// All keys, revoked ones included.
    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes by name or id; false if none matched or it was already revoked.
    async fn api_key_revoke(&self, name_or_id: &str, at: i64) -> Result<bool, StoreError>;

    /// Stores a refresh token.
    async fn refresh_put(&self, token: &RefreshRecord) -> Result<(), StoreError>;
    /// Removes and returns a refresh token (tokens are single use: rotation).
    async fn refresh_take(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError>;
    /// Removes every refresh token of a subject (logout everywhere, user deleted).
    async fn refresh_revoke_subject(&self, subject: &str) -> Result<u64, StoreError>;

    /// Appends events to the hash chain in one transaction; returns the first new sequence number
    /// (the events get consecutive numbers from there).
    async fn audit_append(&self, events: &[Vec<u8>]) -> Result<i64, StoreError>;
    /// Records with `seq > after`, at most `limit`, in order.
    async fn audit_range(&self, after: i64, limit: i64) -> Result<Vec<StoredRecord>, StoreError>;

    /// Records a new session; `Conflict` if the id exists.
    async fn session_insert(&self, session: &SessionStart) -> Result<(), StoreError>;
    /// Closes a session with its totals; false if no such session or it was already closed.
    async fn session_finish(&self, id: &str, summary: &SessionSummary) -> Result<bool, StoreError>;
    /// Appends statements in one transaction; `Conflict` if a (session, seq) pair repeats in
    /// them or repeats the first of a stored batch (the SQLite store keeps one chunk per session
    /// per call and does not search older chunks for it).
    async fn statements_insert(&self, statements: &[StatementRecord]) -> Result<(), StoreError>;
    /// Writes a recorder batch in one transaction. A session whose id already exists is skipped,
    /// not fatal (one bad start must not lose everyone else's records): the ids skipped are
    /// returned.
    async fn recording_write(&self, batch: &RecordingBatch) -> Result<Vec<String>, StoreError>;
    /// Closes every session still open, at its last recorded activity, with `reason`; returns
    /// how many. Run at start-up: those sessions died with the previous process.
    async fn sessions_close_open(&self, reason: &str) -> Result<u64, StoreError>;
    /// Sessions matching `filter`, newest first.
    async fn sessions_list(&self, filter: &SessionFilter) -> Result<Vec<SessionRow>, StoreError>;
    /// One session.
    async fn session_get(&self, id: &str) -> Result<Option<SessionRow>, StoreError>;
    /// A session's statements with `seq > after_seq` (all when `None`), in order, at most
    /// `limit`.
    async fn statements_of(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StatementRecord>, StoreError>;

    /// Appends chunk `seq` of a channel's terminal recording (asciicast v2 text).
    async fn cast_append(
        &self,
        _session_id: &str,
        _channel: u32,
        _seq: u64,
        _data: &[u8],
    ) -> Result<(), StoreError> {
        Err(StoreError::Corrupt(
            "this store keeps no terminal recordings".into(),
        ))
    }
    /// A session's terminal recordings, one whole cast per channel, in channel order.
    async fn casts_of(&self, _session_id: &str) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }

    /// Files a review in state `pending`; returns its id.
    async fn review_create(&self, review: &NewReview) -> Result<ReviewId, StoreError>;
    /// One review with its decisions.
    async fn review_get(&self, id: ReviewId) -> Result<Option<Review>, StoreError>;
    /// Reviews matching `query`, newest first, with their decisions.
    async fn reviews_list(&self, query: &ReviewQuery) -> Result<Vec<Review>, StoreError>;
    /// Records an approval or rejection and applies its state change in one transaction: only
    /// a pending, unexpired review takes decisions, each person decides once, a rejection ends
    /// the review and the `min_approvals`-th distinct approval approves it (an access review
    /// then gets `window_ends_at = now + duration_secs`). Two concurrent decisions cannot both
    /// apply a transition.
    async fn review_decide(
        &self,
        id: ReviewId,
        decision: &Decision,
        now: i64,
    ) -> Result<DecideOutcome, StoreError>;
    /// Moves a review from `from` to `to`; false when it was not in `from` (someone else moved
    /// it first).
    async fn review_set_state(
        &self,
        id: ReviewId,
        from: ReviewState,
        to: ReviewState,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Reviews due to expire at `now`: pending past `expires_at`, and approved access windows
    /// past `window_ends_at`.
    async fn reviews_due(&self, now: i64) -> Result<Vec<Review>, StoreError>;

    // Evidence for auditors (issue 7). Default bodies exist so test doubles need not implement
    // them; the SQLite store implements every one.

    /// Like [`Store::audit_append`], and in the same transaction queues webhook deliveries:
    /// `routes` pairs an index into `events` with a webhook name.
    async fn audit_append_routed(
        &self,
        events: &[Vec<u8>],
        routes: &[(usize, String)],
    ) -> Result<i64, StoreError> {
        if routes.is_empty() {
            self.audit_append(events).await
        } else {
            Err(StoreError::Unsupported("webhook outboxes"))
        }
    }
    /// The chain head (seq, hash), if any record exists.
    async fn audit_head(&self) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        Err(StoreError::Unsupported("audit checkpoints"))
    }
    /// Stores a signed checkpoint (`at_ms` is its time in unix milliseconds); one per seq.
    async fn audit_checkpoint_put(&self, _c: &Checkpoint, _at_ms: i64) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("audit checkpoints"))
    }
    /// Checkpoints with `after < seq <= through`, in order.
    async fn audit_checkpoints(
        &self,
        _after: i64,
        _through: i64,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        Err(StoreError::Unsupported("audit checkpoints"))
    }
    /// The newest checkpoint signed before `at_ms` (all when `None`).
    async fn audit_checkpoint_before(
        &self,
        _at_ms: Option<i64>,
    ) -> Result<Option<Checkpoint>, StoreError> {
        Err(StoreError::Unsupported("audit checkpoints"))
    }
    /// Turns records with `seq <= through` into tombstones (bytes removed, hashes kept); returns
    /// how many changed.
    async fn audit_tombstone(&self, _through: i64) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported("retention"))
    }
    /// Deletes the statement logs of sessions that ended before `ended_before_ms`; returns the
    /// statements deleted.
    async fn recordings_purge(&self, _ended_before_ms: i64) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported("retention"))
    }
    /// Pending deliveries of `webhook` due at `now_ms`, oldest first.
    async fn outbox_due(
        &self,
        _webhook: &str,
        _now_ms: i64,
        _limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        Err(StoreError::Unsupported("webhook outboxes"))
    }
    /// Marks a delivery done.
    async fn outbox_delivered(&self, _id: i64, _now_ms: i64) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("webhook outboxes"))
    }
    /// Records a failed attempt: retried at `next_at_ms`, or `dead` when `dead`.
    async fn outbox_failed(
        &self,
        _id: i64,
        _error: &str,
        _next_at_ms: i64,
        _dead: bool,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("webhook outboxes"))
    }
    /// Counts per webhook, and the dead letters (newest first, at most `limit`).
    async fn outbox_status(
        &self,
        _limit: u32,
    ) -> Result<(Vec<OutboxStats>, Vec<OutboxItem>), StoreError> {
        Err(StoreError::Unsupported("webhook outboxes"))
    }
    /// Moves the deliveries stored under the webhook name `from` to `to`, and replaces `from`
    /// with `to` in their recorded errors (a webhook's default name used to be its URL, which
    /// for chat webhooks is the secret). Returns how many rows moved.
    async fn outbox_rename(&self, _from: &str, _to: &str) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported("webhook outboxes"))
    }
    /// One audit record by seq.
    async fn audit_get(&self, seq: i64) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self
            .audit_range(seq - 1, 1)
            .await?
            .into_iter()
            .find(|r| r.seq == seq))
    }
}
