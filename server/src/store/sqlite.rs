//! The embedded default store: one SQLite file in the data dir, WAL mode.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hoop_shared::audit::{Checkpoint, GENESIS, StoredRecord, chain_hash};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{
    ApiKeyRecord, DecideOutcome, NewReview, OutboxItem, OutboxStats, RecordingBatch, RefreshRecord,
    ReviewQuery, SessionFilter, SessionRow, SessionStart, SessionSummary, StatementRecord, Store,
    StoreError, UserRecord,
};
use crate::policy::MaskCounts;
use crate::reviews::{Decision, Review, ReviewId, ReviewKind, ReviewState, ReviewedStatement};

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection of its own for the session recorder's group commits. SQLite keeps a
    /// page cache per connection and drops it whenever another connection wrote: with the
    /// shared pool the recorder's transactions rotated over its idle connections, each of
    /// which re-read the pages the last one changed (`pread` per batch under load).
    recorder: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `hoop.db` in `data_dir` and runs migrations.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("hoop.db");
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the
            // last transactions, never corrupt the chain.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            // Multi-row statement inserts need a statement journal; on disk that is a temp file
            // created and unlinked per batch (seen in strace under pgbench load). In memory it
            // holds at most the pages one batch touches. Sorts of large reads (an export's
            // ORDER BY without an index) use memory too.
            .pragma("temp_store", "memory")
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let recorder = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Idle for a while is normal (no sessions); it stays open and warm.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        Ok(Self { pool, recorder })
    }
}

fn groups_to_json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".into())
}

fn groups_from_json(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("groups: {e}")))
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn user_from_row(r: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        groups: groups_from_json(&r.try_get::<String, _>("groups_json")?)?,
        created_at: r.try_get("created_at")?,
    })
}

fn key_from_row(r: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        key_hash: r.try_get("key_hash")?,
        groups: groups_from_json(&r.try_get::<String, _>("groups_json")?)?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn record_from_row(r: &SqliteRow) -> Result<StoredRecord, StoreError> {
    Ok(StoredRecord {
        seq: r.try_get("seq")?,
        bytes: r.try_get("bytes")?,
        prev_hash: hash32(r.try_get("prev_hash")?, "prev_hash")?,
        hash: hash32(r.try_get("hash")?, "hash")?,
        purged: r.try_get::<i64, _>("purged")? != 0,
    })
}

fn checkpoint_from_row(r: &SqliteRow) -> Result<Checkpoint, StoreError> {
    let sig: Vec<u8> = r.try_get("signature")?;
    Ok(Checkpoint {
        seq: r.try_get("seq")?,
        hash: hash32(r.try_get("hash")?, "hash")?,
        time: r.try_get("time")?,
        signature: sig
            .try_into()
            .map_err(|_| StoreError::Corrupt("checkpoint signature is not 64 bytes".into()))?,
    })
}

fn outbox_from_row(r: &SqliteRow) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        webhook: r.try_get("webhook")?,
        audit_seq: r.try_get("audit_seq")?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        state: r.try_get("state")?,
        last_error: r.try_get("last_error")?,
        next_at_ms: r.try_get("next_at_ms")?,
    })
}

const CHECKPOINT_COLUMNS: &str = "seq, hash, time, signature";
const OUTBOX_COLUMNS: &str = "id, webhook, audit_seq, attempts, state, last_error, next_at_ms";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// SQLite integers are signed; counters beyond `i64::MAX` do not occur, so saturate.
fn to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_db(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative")))
}

fn masked_to_json(m: &MaskCounts) -> Result<String, StoreError> {
    if m.counts.is_empty() {
        // Most statements mask nothing: no serializer per row for that.
        return Ok("{}".into());
    }
    serde_json::to_string(&m.counts).map_err(|e| StoreError::Corrupt(format!("masked: {e}")))
}

fn masked_from_json(s: &str) -> Result<MaskCounts, StoreError> {
    let counts: BTreeMap<String, u64> =
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("masked: {e}")))?;
    Ok(MaskCounts { counts })
}

/// Columns of a session row, the open ones' counters taken live from the statement log (the
/// stored counters are only written when the session ends).
const SESSION_COLUMNS: &str = "s.id, s.subject, s.name, s.connection, s.kind, s.client_addr, \
     s.started_at_ms, s.ended_at_ms, s.bytes_up, s.bytes_down, s.masked_json, s.end_reason, \
     CASE WHEN s.ended_at_ms IS NULL \
       THEN (SELECT COALESCE(SUM(c.statements), 0) FROM statement_chunks c WHERE c.session_id = s.id) \
       ELSE s.statements END AS n_statements, \
     CASE WHEN s.ended_at_ms IS NULL \
       THEN (SELECT COALESCE(SUM(c.blocked), 0) FROM statement_chunks c WHERE c.session_id = s.id) \
       ELSE s.blocked END AS n_blocked";

fn session_from_row(r: &SqliteRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        start: SessionStart {
            id: r.try_get("id")?,
            subject: r.try_get("subject")?,
            name: r.try_get("name")?,
            connection: r.try_get("connection")?,
            kind: r.try_get("kind")?,
            client_addr: r.try_get("client_addr")?,
            started_at_ms: r.try_get("started_at_ms")?,
        },
        ended_at_ms: r.try_get("ended_at_ms")?,
        bytes_up: from_db(r.try_get("bytes_up")?, "bytes_up")?,
        bytes_down: from_db(r.try_get("bytes_down")?, "bytes_down")?,
        statements: from_db(r.try_get("n_statements")?, "statements")?,
        blocked: from_db(r.try_get("n_blocked")?, "blocked")?,
        masked: masked_from_json(&r.try_get::<String, _>("masked_json")?)?,
        end_reason: r.try_get("end_reason")?,
    })
}

/// One statement in a chunk's `records` (the session id is the chunk's). Absent optional
/// fields and empty lists are left out, so a typical entry is about 150 bytes of JSON.
#[derive(Serialize)]
struct EntryOut<'a> {
    seq: u64,
    at_ms: i64,
    text: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    params: &'a [Option<String>],
    verdict: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    duration_us: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    masked: &'a BTreeMap<String, u64>,
}

/// [`EntryOut`] read back (also what the migration of per-row logs wrote: nulls for absent).
#[derive(Deserialize)]
struct EntryIn {
    seq: u64,
    at_ms: i64,
    text: String,
    #[serde(default)]
    params: Option<Vec<Option<String>>>,
    verdict: String,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    outcome: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    sqlstate: Option<String>,
    #[serde(default)]
    rows: Option<u64>,
    duration_us: u64,
    #[serde(default)]
    masked: Option<BTreeMap<String, u64>>,
}

impl EntryIn {
    fn into_record(self, session_id: &Arc<str>) -> StatementRecord {
        StatementRecord {
            session_id: Arc::clone(session_id),
            seq: self.seq,
            at_ms: self.at_ms,
            text: self.text.into(),
            params: self.params.unwrap_or_default(),
            verdict: self.verdict,
            rule: self.rule,
            reason: self.reason,
            outcome: self.outcome,
            tag: self.tag,
            sqlstate: self.sqlstate,
            rows: self.rows,
            duration_us: self.duration_us,
            masked: MaskCounts {
                counts: self.masked.unwrap_or_default(),
            },
        }
    }
}

/// One row of `statement_chunks`, ready to insert.
struct Chunk<'a> {
    session_id: &'a Arc<str>,
    first_seq: u64,
    last_seq: u64,
    statements: u64,
    blocked: u64,
    verdicts: String,
    last_at_ms: i64,
    records: String,
}

/// Groups statements by session, in seq order, into one chunk each. Two records with the same
/// session and seq are refused (a duplicate would otherwise be stored twice).
fn chunks_of(statements: &[StatementRecord]) -> Result<Vec<Chunk<'_>>, StoreError> {
    let mut sorted: Vec<&StatementRecord> = statements.iter().collect();
    sorted.sort_by(|a, b| (&*a.session_id, a.seq).cmp(&(&*b.session_id, b.seq)));
    let mut out = Vec::new();
    for run in sorted.chunk_by(|a, b| a.session_id == b.session_id) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        if run
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.seq == b.seq))
        {
            return Err(StoreError::Conflict(
                "a statement of this batch was already recorded".into(),
            ));
        }
        let entries: Vec<EntryOut<'_>> = run
            .iter()
            .map(|st| EntryOut {
                seq: st.seq,
                at_ms: st.at_ms,
                text: &st.text,
                params: &st.params,
                verdict: &st.verdict,
                rule: st.rule.as_deref(),
                reason: st.reason.as_deref(),
                outcome: &st.outcome,
                tag: st.tag.as_deref(),
                sqlstate: st.sqlstate.as_deref(),
                rows: st.rows,
                duration_us: st.duration_us,
                masked: &st.masked.counts,
            })
            .collect();
        let mut seen: Vec<&str> = Vec::new();
        for st in run {
            if !seen.contains(&st.verdict.as_str()) {
                seen.push(&st.verdict);
            }
        }
        let verdicts = format!(",{},", seen.join(","));
        out.push(Chunk {
            session_id: &first.session_id,
            first_seq: first.seq,
            last_seq: last.seq,
            statements: run.len() as u64,
            blocked: run.iter().filter(|st| st.verdict == "block").count() as u64,
            verdicts,
            last_at_ms: run.iter().map(|st| st.at_ms).max().unwrap_or(first.at_ms),
            records: serde_json::to_string(&entries)
                .map_err(|e| StoreError::Corrupt(format!("statements: {e}")))?,
        });
    }
    Ok(out)
}

/// Inserts a session. With `skip_existing`, an existing id is not an error and `false` comes
/// back instead.
async fn insert_session(
    conn: &mut SqliteConnection,
    s: &SessionStart,
    skip_existing: bool,
) -> Result<bool, StoreError> {
    let sql = if skip_existing {
        "INSERT INTO sessions (id, subject, name, connection, kind, client_addr, started_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
    } else {
        "INSERT INTO sessions (id, subject, name, connection, kind, client_addr, started_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?)"
    };
    let r = sqlx::query(sql)
        .bind(&s.id)
        .bind(&s.subject)
        .bind(&s.name)
        .bind(&s.connection)
        .bind(&s.kind)
        .bind(&s.client_addr)
        .bind(s.started_at_ms)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("session {:?}", s.id))
            } else {
                e.into()
            }
        })?;
    Ok(r.rows_affected() == 1)
}

/// Chunks per INSERT: each `execute` is a round trip to sqlx's SQLite worker thread (8 columns
/// × 64 rows stays far below SQLite's variable limit).
const CHUNKS_PER_INSERT: usize = 64;

async fn insert_statements(
    conn: &mut SqliteConnection,
    statements: &[StatementRecord],
) -> Result<(), StoreError> {
    let chunks = chunks_of(statements)?;
    for part in chunks.chunks(CHUNKS_PER_INSERT) {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO statement_chunks (session_id, first_seq, last_seq, statements, blocked, \
             verdicts, last_at_ms, records) ",
        );
        qb.push_values(part, |mut b, c| {
            b.push_bind(Arc::clone(c.session_id))
                .push_bind(to_db(c.first_seq))
                .push_bind(to_db(c.last_seq))
                .push_bind(to_db(c.statements))
                .push_bind(to_db(c.blocked))
                .push_bind(c.verdicts.as_str())
                .push_bind(c.last_at_ms)
                .push_bind(c.records.as_str());
        });
        qb.build().execute(&mut *conn).await.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("a statement of this batch was already recorded".into())
            } else {
                StoreError::from(e)
            }
        })?;
    }
    Ok(())
}

async fn finish_session(
    conn: &mut SqliteConnection,
    id: &str,
    s: &SessionSummary,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE sessions SET ended_at_ms = ?, bytes_up = ?, bytes_down = ?, statements = ?, \
         blocked = ?, masked_json = ?, end_reason = ? WHERE id = ? AND ended_at_ms IS NULL",
    )
    .bind(s.ended_at_ms)
    .bind(to_db(s.bytes_up))
    .bind(to_db(s.bytes_down))
    .bind(to_db(s.statements))
    .bind(to_db(s.blocked))
    .bind(masked_to_json(&s.masked)?)
    .bind(&s.end_reason)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

fn review_from_row(r: &SqliteRow) -> Result<Review, StoreError> {
    let kind: String = r.try_get("kind")?;
    let state: String = r.try_get("state")?;
    let min: i64 = r.try_get("min_approvals")?;
    Ok(Review {
        id: r.try_get("id")?,
        kind: ReviewKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("review kind {kind:?}")))?,
        connection: r.try_get("connection")?,
        requester: r.try_get("requester")?,
        requester_name: r.try_get("requester_name")?,
        reason: r.try_get("reason")?,
        statements: statements_from_row(r)?,
        statement: r.try_get("statement")?,
        session_id: r.try_get("session_id")?,
        statement_digest: r.try_get("statement_digest")?,
        state: ReviewState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("review state {state:?}")))?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        duration_secs: r.try_get("duration_secs")?,
        window_ends_at: r.try_get("window_ends_at")?,
        min_approvals: u32::try_from(min)
            .map_err(|_| StoreError::Corrupt(format!("min_approvals {min}")))?,
        approvers: groups_from_json(&r.try_get::<String, _>("approvers_json")?)?,
        decisions: Vec::new(),
        updated_at: r.try_get("updated_at")?,
    })
}

/// A review's statements: the stored list, or for reviews filed before there was one, its
/// `statement` alone.
fn statements_from_row(r: &SqliteRow) -> Result<Vec<ReviewedStatement>, StoreError> {
    let json: Option<String> = r.try_get("statements_json")?;
    if let Some(json) = json {
        return serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("review statements: {e}")));
    }
    let statement: Option<String> = r.try_get("statement")?;
    Ok(statement
        .map(|text| ReviewedStatement {
            text,
            ..ReviewedStatement::default()
        })
        .into_iter()
        .collect())
}

fn decision_from_row(r: &SqliteRow) -> Result<(ReviewId, Decision), StoreError> {
    Ok((
        r.try_get("review_id")?,
        Decision {
            by: r.try_get("by_subject")?,
            name: r.try_get("name")?,
            at: r.try_get("at")?,
            decision: r.try_get("decision")?,
            comment: r.try_get("comment")?,
        },
    ))
}

/// Fills in the decisions of `reviews` with one query.
async fn attach_decisions(
    conn: &mut SqliteConnection,
    reviews: &mut [Review],
) -> Result<(), StoreError> {
    if reviews.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT * FROM review_decisions WHERE review_id IN (");
    let mut ids = q.separated(", ");
    for r in reviews.iter() {
        ids.push_bind(r.id);
    }
    q.push(") ORDER BY at, rowid");
    let rows = q.build().fetch_all(&mut *conn).await?;
    let mut by_id: BTreeMap<ReviewId, Vec<Decision>> = BTreeMap::new();
    for row in &rows {
        let (id, d) = decision_from_row(row)?;
        by_id.entry(id).or_default().push(d);
    }
    for r in reviews.iter_mut() {
        r.decisions = by_id.remove(&r.id).unwrap_or_default();
    }
    Ok(())
}

async fn get_review(
    conn: &mut SqliteConnection,
    id: ReviewId,
) -> Result<Option<Review>, StoreError> {
    let row = sqlx::query("SELECT * FROM reviews WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut review = [review_from_row(&row)?];
    attach_decisions(conn, &mut review).await?;
    let [review] = review;
    Ok(Some(review))
}

/// Applies a decision inside an open write transaction (see [`Store::review_decide`]).
async fn decide(
    conn: &mut SqliteConnection,
    id: ReviewId,
    d: &Decision,
    now: i64,
) -> Result<DecideOutcome, StoreError> {
    let Some(review) = get_review(conn, id).await? else {
        return Ok(DecideOutcome::NotFound);
    };
    if review.state != ReviewState::Pending {
        return Ok(DecideOutcome::NotPending(review.state));
    }
    if review.expires_at <= now {
        return Ok(DecideOutcome::PastExpiry);
    }
    if review.decisions.iter().any(|x| x.by == d.by) {
        return Ok(DecideOutcome::AlreadyDecided);
    }
    let inserted = sqlx::query(
        "INSERT INTO review_decisions (review_id, by_subject, name, at, decision, comment) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(&d.by)
    .bind(&d.name)
    .bind(d.at)
    .bind(&d.decision)
    .bind(&d.comment)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Ok(DecideOutcome::AlreadyDecided),
        Err(e) => return Err(e.into()),
    }
    let approvals = review
        .decisions
        .iter()
        .filter(|x| x.decision == "approve")
        .count()
        + usize::from(d.decision == "approve");
    let min = usize::try_from(review.min_approvals).unwrap_or(usize::MAX);
    let transition = if d.decision == "reject" {
        Some(("rejected", None))
    } else if approvals >= min {
        let window = match review.kind {
            ReviewKind::Access => review.duration_secs.map(|s| now.saturating_add(s)),
            ReviewKind::Statement => None,
        };
        Some(("approved", window))
    } else {
        None
    };
    let r = match transition {
        // The state guard makes a decision that lost a race change nothing.
        Some((to, window)) => {
            sqlx::query(
                "UPDATE reviews SET state = ?, window_ends_at = ?, updated_at = ? \
                 WHERE id = ? AND state = 'pending'",
            )
            .bind(to)
            .bind(window)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?
        }
        None => {
            sqlx::query("UPDATE reviews SET updated_at = ? WHERE id = ? AND state = 'pending'")
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
    };
    if r.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!(
            "review {id} changed state during its decision"
        )));
    }
    match get_review(conn, id).await? {
        Some(review) => Ok(DecideOutcome::Recorded(Box::new(review))),
        None => Ok(DecideOutcome::NotFound),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn user_create(&self, u: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, groups_json, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(groups_to_json(&u.groups))
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("user {:?}", u.name))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn user_update(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE users SET password_hash = ?, groups_json = ? WHERE name = ?")
            .bind(&u.password_hash)
            .bind(groups_to_json(&u.groups))
            .bind(&u.name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn user_get(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_list(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn user_delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE subject = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn api_key_create(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, groups_json, created_at, created_by, expires_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.key_hash)
        .bind(groups_to_json(&k.groups))
        .bind(k.created_at)
        .bind(&k.created_by)
        .bind(k.expires_at)
        .bind(k.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("API key {:?}", k.name))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn api_key_revoke(&self, name_or_id: &str, at: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE (name = ? OR id = ?) AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(name_or_id)
        .bind(name_or_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn refresh_put(&self, t: &RefreshRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, subject, client_id, scope, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&t.token_hash)
        .bind(&t.subject)
        .bind(&t.client_id)
        .bind(&t.scope)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn refresh_take(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let rec = RefreshRecord {
            token_hash: row.try_get("token_hash")?,
            subject: row.try_get("subject")?,
            client_id: row.try_get("client_id")?,
            scope: row.try_get("scope")?,
            expires_at: row.try_get("expires_at")?,
        };
        let del = sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Two concurrent refreshes with one token: only the one that deleted the row wins.
        Ok((del.rows_affected() == 1).then_some(rec))
    }

    async fn refresh_revoke_subject(&self, subject: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM refresh_tokens WHERE subject = ?")
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn audit_append(&self, events: &[Vec<u8>]) -> Result<i64, StoreError> {
        self.audit_append_routed(events, &[]).await
    }

    async fn audit_append_routed(
        &self,
        events: &[Vec<u8>],
        routes: &[(usize, String)],
    ) -> Result<i64, StoreError> {
        // BEGIN IMMEDIATE takes the write lock before reading the head, so two writers (another
        // process running `hoopd users add`, say) cannot fork the chain.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
            let (mut seq, mut prev) = match head {
                Some(r) => (
                    r.try_get::<i64, _>("seq")?,
                    hash32(r.try_get("hash")?, "hash")?,
                ),
                None => (0, GENESIS),
            };
            let first = seq + 1;
            for bytes in events {
                seq += 1;
                let hash = chain_hash(&prev, bytes);
                sqlx::query(
                    "INSERT INTO audit_log (seq, bytes, prev_hash, hash) VALUES (?, ?, ?, ?)",
                )
                .bind(seq)
                .bind(bytes.as_slice())
                .bind(prev.as_slice())
                .bind(hash.as_slice())
                .execute(&mut *conn)
                .await?;
                prev = hash;
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            for (i, webhook) in routes {
                let seq = first + i64::try_from(*i).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO webhook_outbox (webhook, audit_seq, next_at_ms, created_at_ms, updated_at_ms) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(webhook)
                .bind(seq)
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            Ok::<_, StoreError>(first)
        }
        .await;
        match result {
            Ok(first) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(first)
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

    async fn audit_range(&self, after: i64, limit: i64) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, bytes, prev_hash, hash, purged FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn session_insert(&self, session: &SessionStart) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_session(&mut conn, session, false).await?;
        Ok(())
    }

    async fn session_finish(&self, id: &str, summary: &SessionSummary) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        finish_session(&mut conn, id, summary).await
    }

    async fn statements_insert(&self, statements: &[StatementRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_statements(&mut tx, statements).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recording_write(&self, batch: &RecordingBatch) -> Result<Vec<String>, StoreError> {
        let mut tx = self.recorder.begin().await?;
        let mut skipped = Vec::new();
        for s in &batch.started {
            if !insert_session(&mut tx, s, true).await? {
                skipped.push(s.id.clone());
            }
        }
        insert_statements(&mut tx, &batch.statements).await?;
        for (id, summary) in &batch.ended {
            if !finish_session(&mut tx, id, summary).await? {
                // Not fatal: the row may never have been written (its start failed) or was
                // closed already; refusing the batch would lose other sessions' records.
                tracing::warn!(session = %id, "end of an unknown or already closed session");
            }
        }
        tx.commit().await?;
        Ok(skipped)
    }

    async fn sessions_close_open(&self, reason: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET \
             ended_at_ms = COALESCE((SELECT MAX(c.last_at_ms) FROM statement_chunks c WHERE c.session_id = sessions.id), started_at_ms), \
             statements = (SELECT COALESCE(SUM(c.statements), 0) FROM statement_chunks c WHERE c.session_id = sessions.id), \
             blocked = (SELECT COALESCE(SUM(c.blocked), 0) FROM statement_chunks c WHERE c.session_id = sessions.id), \
             end_reason = ? \
             WHERE ended_at_ms IS NULL",
        )
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn sessions_list(&self, f: &SessionFilter) -> Result<Vec<SessionRow>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        q.push(SESSION_COLUMNS);
        q.push(" FROM sessions s WHERE 1 = 1");
        if let Some(subject) = &f.subject {
            q.push(" AND s.subject = ").push_bind(subject.clone());
        }
        if let Some(user) = &f.user {
            q.push(" AND (s.subject = ")
                .push_bind(user.clone())
                .push(" OR s.name = ")
                .push_bind(user.clone())
                .push(")");
        }
        if let Some(c) = &f.connection {
            q.push(" AND s.connection = ").push_bind(c.clone());
        }
        if let Some(t) = f.since_ms {
            q.push(" AND s.started_at_ms >= ").push_bind(t);
        }
        if let Some(t) = f.until_ms {
            q.push(" AND s.started_at_ms < ").push_bind(t);
        }
        if let Some(v) = &f.verdict {
            q.push(" AND EXISTS (SELECT 1 FROM statement_chunks c WHERE c.session_id = s.id AND instr(c.verdicts, ")
                .push_bind(format!(",{v},"))
                .push(") > 0)");
        }
        q.push(" ORDER BY s.started_at_ms DESC, s.id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn session_get(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        // Only constants go into the text; the id is bound.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn statements_of(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        use futures_util::TryStreamExt;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // -1 is below every stored seq (they are u64), so "from the start" needs no second query.
        let after = after_seq.map_or(-1, to_db);
        let limit = limit as usize;
        let id: Arc<str> = session_id.into();
        // Chunks in first_seq order; a statement recorded late (a blocked one is recorded at
        // once, the statements before it when the target answers) can make a chunk overlap an
        // earlier one, so chunks are read until the next starts past the page's last seq.
        let mut rows = sqlx::query(
            "SELECT first_seq, records FROM statement_chunks \
             WHERE session_id = ? AND last_seq > ? ORDER BY first_seq",
        )
        .bind(session_id)
        .bind(after)
        .fetch(&self.pool);
        let mut out: Vec<StatementRecord> = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let first = from_db(row.try_get("first_seq")?, "first_seq")?;
            if out.len() >= limit && out.get(limit - 1).is_some_and(|l| first > l.seq) {
                break;
            }
            let entries: Vec<EntryIn> = serde_json::from_str(row.try_get("records")?)
                .map_err(|e| StoreError::Corrupt(format!("statements of {session_id}: {e}")))?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| to_db(e.seq) > after)
                    .map(|e| e.into_record(&id)),
            );
            out.sort_by_key(|st| st.seq);
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn cast_append(
        &self,
        session_id: &str,
        channel: u32,
        seq: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO casts (session_id, channel, seq, data) VALUES (?, ?, ?, ?)")
            .bind(session_id)
            .bind(i64::from(channel))
            .bind(to_db(seq))
            .bind(data)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn casts_of(&self, session_id: &str) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT channel, data FROM casts WHERE session_id = ? ORDER BY channel, seq",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
        for (channel, data) in rows {
            let channel = u32::try_from(channel)
                .map_err(|_| StoreError::Corrupt(format!("cast channel {channel}")))?;
            match out.last_mut() {
                Some((c, buf)) if *c == channel => buf.extend_from_slice(&data),
                _ => out.push((channel, data)),
            }
        }
        Ok(out)
    }

    async fn review_create(&self, r: &NewReview) -> Result<ReviewId, StoreError> {
        let res = sqlx::query(
            "INSERT INTO reviews (kind, connection, requester, requester_name, reason, statement, \
             session_id, state, created_at, expires_at, duration_secs, window_ends_at, \
             min_approvals, approvers_json, updated_at, statement_digest, statements_json) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
        )
        .bind(r.kind.as_str())
        .bind(&r.connection)
        .bind(&r.requester)
        .bind(&r.requester_name)
        .bind(&r.reason)
        .bind(&r.statement)
        .bind(&r.session_id)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.duration_secs)
        .bind(i64::from(r.min_approvals))
        .bind(groups_to_json(&r.approvers))
        .bind(r.created_at)
        .bind(&r.statement_digest)
        .bind(if r.statements.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&r.statements)
                    .map_err(|e| StoreError::Corrupt(format!("review statements: {e}")))?,
            )
        })
        .execute(&self.pool)
        .await?;
        Ok(res.last_insert_rowid())
    }

    async fn review_get(&self, id: ReviewId) -> Result<Option<Review>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        get_review(&mut conn, id).await
    }

    async fn reviews_list(&self, f: &ReviewQuery) -> Result<Vec<Review>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM reviews WHERE 1 = 1");
        if let Some(r) = &f.requester {
            q.push(" AND requester = ").push_bind(r.clone());
        }
        if let Some(c) = &f.connection {
            q.push(" AND connection = ").push_bind(c.clone());
        }
        if let Some(k) = f.kind {
            q.push(" AND kind = ").push_bind(k.as_str());
        }
        if !f.states.is_empty() {
            q.push(" AND state IN (");
            let mut states = q.separated(", ");
            for st in &f.states {
                states.push_bind(st.as_str());
            }
            q.push(")");
        }
        if let Some(t) = f.window_open_at {
            q.push(" AND window_ends_at > ").push_bind(t);
        }
        q.push(" ORDER BY id DESC");
        if f.limit > 0 {
            q.push(" LIMIT ").push_bind(i64::from(f.limit));
        }
        let mut conn = self.pool.acquire().await?;
        let rows = q.build().fetch_all(&mut *conn).await?;
        let mut reviews = rows
            .iter()
            .map(review_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        attach_decisions(&mut conn, &mut reviews).await?;
        Ok(reviews)
    }

    async fn review_decide(
        &self,
        id: ReviewId,
        decision: &Decision,
        now: i64,
    ) -> Result<DecideOutcome, StoreError> {
        // IMMEDIATE takes the write lock before the state is read, so the check and the
        // transition cannot interleave with another decision (a deferred transaction would
        // fail to upgrade instead of waiting).
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = decide(&mut tx, id, decision, now).await?;
        if matches!(outcome, DecideOutcome::Recorded(_)) {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    async fn review_set_state(
        &self,
        id: ReviewId,
        from: ReviewState,
        to: ReviewState,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r =
            sqlx::query("UPDATE reviews SET state = ?, updated_at = ? WHERE id = ? AND state = ?")
                .bind(to.as_str())
                .bind(now)
                .bind(id)
                .bind(from.as_str())
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn reviews_due(&self, now: i64) -> Result<Vec<Review>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM reviews WHERE (state = 'pending' AND expires_at <= ?) \
             OR (state = 'approved' AND kind = 'access' AND window_ends_at <= ?) ORDER BY id",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        // The sweep only needs ids, kinds and connections: decisions are not loaded.
        rows.iter().map(review_from_row).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("seq")?, hash32(r.try_get("hash")?, "hash")?)))
            .transpose()
    }

    async fn audit_checkpoint_put(&self, c: &Checkpoint, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, time, at_ms, signature) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(c.hash.as_slice())
        .bind(&c.time)
        .bind(at_ms)
        .bind(c.signature.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_checkpoints(
        &self,
        after: i64,
        through: i64,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq > ? AND seq <= ? ORDER BY seq"
        )))
        .bind(after)
        .bind(through)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn audit_checkpoint_before(
        &self,
        at_ms: Option<i64>,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE at_ms < ? ORDER BY seq DESC LIMIT 1"
        )))
        .bind(at_ms.unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn audit_tombstone(&self, through: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE audit_log SET bytes = X'', purged = 1 WHERE seq <= ? AND purged = 0",
        )
        .bind(through)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn recordings_purge(&self, ended_before_ms: i64) -> Result<u64, StoreError> {
        let removed: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM statement_chunks WHERE session_id IN \
             (SELECT id FROM sessions WHERE ended_at_ms IS NOT NULL AND ended_at_ms < ?) \
             RETURNING statements",
        )
        .bind(ended_before_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(removed.into_iter().map(|n| n.max(0) as u64).sum())
    }

    async fn outbox_due(
        &self,
        webhook: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLUMNS} FROM webhook_outbox \
             WHERE state = 'pending' AND webhook = ? AND next_at_ms <= ? ORDER BY id LIMIT ?"
        )))
        .bind(webhook)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn outbox_delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, \
             last_error = NULL, updated_at_ms = ? WHERE id = ?",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        next_at_ms: i64,
        dead: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?, next_at_ms = ?, \
             state = ?, updated_at_ms = ? WHERE id = ?",
        )
        .bind(error)
        .bind(next_at_ms)
        .bind(if dead { "dead" } else { "pending" })
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_status(
        &self,
        limit: u32,
    ) -> Result<(Vec<OutboxStats>, Vec<OutboxItem>), StoreError> {
        let rows = sqlx::query(
            "SELECT webhook, \
             SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending, \
             SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END) AS delivered, \
             SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead \
             FROM webhook_outbox GROUP BY webhook ORDER BY webhook",
        )
        .fetch_all(&self.pool)
        .await?;
        let stats = rows
            .iter()
            .map(|r| {
                Ok(OutboxStats {
                    webhook: r.try_get("webhook")?,
                    pending: from_db(r.try_get("pending")?, "pending")?,
                    delivered: from_db(r.try_get("delivered")?, "delivered")?,
                    dead: from_db(r.try_get("dead")?, "dead")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let dead = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLUMNS} FROM webhook_outbox WHERE state = 'dead' ORDER BY id DESC LIMIT ?"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let dead = dead
            .iter()
            .map(outbox_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((stats, dead))
    }

    async fn outbox_rename(&self, from: &str, to: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE webhook_outbox SET webhook = ?2, last_error = replace(last_error, ?1, ?2) \
             WHERE webhook = ?1",
        )
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use hoop_shared::audit::verify_chain;

    #[tokio::test]
    async fn audit_chain_appends_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .audit_append(&[b"a".to_vec(), b"b".to_vec()])
            .await
            .unwrap();
        store.audit_append(&[b"c".to_vec()]).await.unwrap();
        let recs = store.audit_range(0, 100).await.unwrap();
        assert_eq!(recs.len(), 3);
        verify_chain((0, GENESIS), &recs).unwrap();
    }

    #[tokio::test]
    async fn deliveries_stored_under_a_webhook_url_move_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let url = "https://hooks.slack.com/services/T0/B0/s3cret";
        store
            .audit_append_routed(
                &[b"{}".to_vec(), b"{}".to_vec()],
                &[(0, url.into()), (1, url.into())],
            )
            .await
            .unwrap();
        let due = store.outbox_due(url, i64::MAX, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        let first = due.first().unwrap().id;
        store
            .outbox_failed(
                first,
                &format!("error sending request for url ({url})"),
                0,
                true,
                0,
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .outbox_rename(url, "hooks.slack.com-1a2b3c4d")
                .await
                .unwrap(),
            2
        );
        assert!(
            store
                .outbox_due(url, i64::MAX, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let (stats, dead) = store.outbox_status(10).await.unwrap();
        assert!(
            stats
                .iter()
                .all(|s| s.webhook == "hooks.slack.com-1a2b3c4d")
        );
        let error = dead.first().unwrap().last_error.clone().unwrap();
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[tokio::test]
    async fn refresh_tokens_are_single_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let t = RefreshRecord {
            token_hash: "h".into(),
            subject: "alice".into(),
            client_id: "c".into(),
            scope: "openid".into(),
            expires_at: 10,
        };
        store.refresh_put(&t).await.unwrap();
        assert!(store.refresh_take("h").await.unwrap().is_some());
        assert!(store.refresh_take("h").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn duplicate_user_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let u = UserRecord {
            name: "a".into(),
            password_hash: "x".into(),
            groups: vec![],
            created_at: 0,
        };
        store.user_create(&u).await.unwrap();
        assert!(matches!(
            store.user_create(&u).await,
            Err(StoreError::Conflict(_))
        ));
    }

    fn start(id: &str, subject: &str, connection: &str, at: i64) -> SessionStart {
        SessionStart {
            id: id.into(),
            subject: subject.into(),
            name: format!("{subject} name"),
            connection: connection.into(),
            kind: "postgres".into(),
            client_addr: Some("127.0.0.1:5555".into()),
            started_at_ms: at,
        }
    }

    fn stmt(session: &str, seq: u64, verdict: &str) -> StatementRecord {
        let mut masked = MaskCounts::default();
        masked.bump("email");
        StatementRecord {
            session_id: session.into(),
            seq,
            at_ms: 10_000 + seq as i64,
            text: format!("SELECT {seq}").into(),
            params: vec![Some("a".into()), None],
            verdict: verdict.into(),
            rule: (verdict == "block").then(|| "no-ddl".into()),
            reason: (verdict == "block").then(|| "DDL".into()),
            outcome: if verdict == "block" { "blocked" } else { "ok" }.into(),
            tag: Some("SELECT 1".into()),
            sqlstate: (verdict == "block").then(|| "42501".into()),
            rows: Some(3),
            duration_us: 42,
            masked,
        }
    }

    fn summary(at: i64) -> SessionSummary {
        let mut masked = MaskCounts::default();
        masked.bump("credit_card");
        masked.bump("credit_card");
        SessionSummary {
            ended_at_ms: at,
            bytes_up: 100,
            bytes_down: 2000,
            statements: 7,
            blocked: 1,
            masked,
            end_reason: "client closed".into(),
        }
    }

    /// A statement recorded late (a blocked one is recorded at once, those before it when the
    /// target answers) lands in a later chunk than statements after it: reads still come back in
    /// seq order, page by page, and counters, the verdict filter and purges see every chunk.
    #[tokio::test]
    async fn statements_recorded_late_come_back_in_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .session_insert(&start("s1", "alice", "db", 1_000))
            .await
            .unwrap();
        store
            .session_insert(&start("s2", "bob", "db", 1_001))
            .await
            .unwrap();
        let first = [
            stmt("s1", 1, "allow"),
            stmt("s2", 1, "allow"),
            stmt("s1", 5, "block"),
            stmt("s1", 2, "allow"),
        ];
        store.statements_insert(&first).await.unwrap();
        let second = [
            stmt("s1", 4, "allow"),
            stmt("s1", 3, "allow"),
            stmt("s1", 6, "allow"),
        ];
        store.statements_insert(&second).await.unwrap();

        let seqs = |v: Vec<StatementRecord>| v.iter().map(|s| s.seq).collect::<Vec<_>>();
        let all = store.statements_of("s1", None, 100).await.unwrap();
        assert_eq!(seqs(all.clone()), [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            all[4],
            stmt("s1", 5, "block"),
            "a record survives its chunk"
        );
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store.statements_of("s1", after, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            paged.extend(seqs(page));
        }
        assert_eq!(paged, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            seqs(store.statements_of("s1", Some(4), 1).await.unwrap()),
            [5]
        );
        assert!(store.statements_of("s1", None, 0).await.unwrap().is_empty());
        assert_eq!(
            seqs(store.statements_of("s2", None, 10).await.unwrap()),
            [1]
        );

        let open = store.session_get("s1").await.unwrap().unwrap();
        assert_eq!((open.statements, open.blocked), (6, 1));
        let view: (i64, i64, String, String) = sqlx::query_as(
            "SELECT count(*), sum(verdict = 'block'), min(params_json), min(masked_json) \
             FROM statements WHERE session_id = 's1'",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(view, (6, 1, "[\"a\",null]".into(), "{\"email\":1}".into()));
        let with = |verdict: &str| SessionFilter {
            verdict: Some(verdict.into()),
            limit: 10,
            ..SessionFilter::default()
        };
        let ids = |v: Vec<SessionRow>| v.into_iter().map(|s| s.start.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.sessions_list(&with("block")).await.unwrap()),
            ["s1"]
        );
        assert_eq!(
            ids(store.sessions_list(&with("allow")).await.unwrap()),
            ["s2", "s1"]
        );
        assert!(
            store.sessions_list(&with("loc")).await.unwrap().is_empty(),
            "no substring match"
        );

        assert_eq!(
            store
                .sessions_close_open("gateway restarted")
                .await
                .unwrap(),
            2
        );
        let closed = store.session_get("s1").await.unwrap().unwrap();
        assert_eq!(
            (closed.statements, closed.blocked, closed.ended_at_ms),
            (6, 1, Some(10_006))
        );
        assert_eq!(
            store.recordings_purge(i64::MAX).await.unwrap(),
            7,
            "statements purged"
        );
        assert!(
            store
                .statements_of("s1", None, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A data dir written before statement logs were chunked keeps its logs: the migration
    /// turns each session's rows into one chunk, and they read back as they were written.
    #[tokio::test]
    async fn per_row_statement_logs_migrate_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("hoop.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new().connect_with(opts).await.unwrap();
        let mut before = sqlx::migrate!("./migrations/sqlite");
        before.migrations = before
            .migrations
            .iter()
            .filter(|m| m.version < 12)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, subject, name, connection, kind, client_addr, started_at_ms) \
             VALUES ('old', 'alice', 'Alice', 'db', 'postgres', NULL, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let rows = [
            (2, "allow", None, "[\"a\",null]", "{\"email\":1}", Some(3)),
            (1, "block", Some("no-ddl"), "[]", "{}", None),
        ];
        for (seq, verdict, rule, params, masked, count) in rows {
            sqlx::query(
                "INSERT INTO statements (session_id, seq, at_ms, text, params_json, verdict, rule, \
                 reason, outcome, tag, sqlstate, row_count, duration_us, masked_json) \
                 VALUES ('old', ?, ?, 'SELECT \"x\"', ?, ?, ?, NULL, 'ok', NULL, NULL, ?, 7, ?)",
            )
            .bind(seq)
            .bind(100 + seq)
            .bind(params)
            .bind(verdict)
            .bind(rule)
            .bind(count)
            .bind(masked)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(dir.path()).await.unwrap();
        let got = store.statements_of("old", None, 10).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].seq, got[0].verdict.as_str(), got[0].rule.as_deref()),
            (1, "block", Some("no-ddl"))
        );
        assert_eq!(
            (
                got[0].params.clone(),
                got[0].rows,
                got[0].masked.counts.len()
            ),
            (vec![], None, 0)
        );
        assert_eq!(got[1].params, vec![Some("a".to_string()), None]);
        assert_eq!(
            (got[1].at_ms, got[1].rows, got[1].duration_us),
            (102, Some(3), 7)
        );
        assert_eq!(&*got[1].text, "SELECT \"x\"");
        assert_eq!(got[1].masked.counts.get("email"), Some(&1));
        let s = store.session_get("old").await.unwrap().unwrap();
        assert_eq!((s.statements, s.blocked), (2, 1));
        // The `statements` view still reads them one per row, for SQL against the file.
        let rows: Vec<(i64, String, String, Option<i64>, String)> = sqlx::query_as(
            "SELECT seq, verdict, params_json, row_count, masked_json FROM statements \
             WHERE session_id = 'old' ORDER BY seq",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                (1, "block".into(), "[]".into(), None, "{}".into()),
                (
                    2,
                    "allow".into(),
                    "[\"a\",null]".into(),
                    Some(3),
                    "{\"email\":1}".into()
                )
            ]
        );
    }

    #[tokio::test]
    async fn sessions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let s = start("s1", "alice", "db", 1_000);
        store.session_insert(&s).await.unwrap();
        assert!(matches!(
            store.session_insert(&s).await,
            Err(StoreError::Conflict(_))
        ));
        let stmts = vec![
            stmt("s1", 1, "allow"),
            stmt("s1", 2, "block"),
            stmt("s1", 3, "allow"),
        ];
        store.statements_insert(&stmts).await.unwrap();

        // Open: counters come from the log so far.
        let open = store.session_get("s1").await.unwrap().unwrap();
        assert_eq!(open.start, s);
        assert_eq!(open.ended_at_ms, None);
        assert_eq!((open.statements, open.blocked), (3, 1));

        assert_eq!(store.statements_of("s1", None, 100).await.unwrap(), stmts);
        let page = store.statements_of("s1", Some(1), 1).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].seq, 2);
        assert!(
            store
                .statements_of("s2", None, 100)
                .await
                .unwrap()
                .is_empty()
        );

        // A duplicate seq fails the whole transaction: nothing of it is stored.
        let dup = [stmt("s1", 4, "allow"), stmt("s1", 1, "allow")];
        assert!(matches!(
            store.statements_insert(&dup).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.statements_of("s1", None, 100).await.unwrap().len(), 3);

        assert!(store.session_finish("s1", &summary(9_000)).await.unwrap());
        assert!(!store.session_finish("s1", &summary(9_500)).await.unwrap());
        assert!(!store.session_finish("nope", &summary(9_500)).await.unwrap());
        let done = store.session_get("s1").await.unwrap().unwrap();
        assert_eq!(done.ended_at_ms, Some(9_000));
        assert_eq!(
            (done.statements, done.blocked),
            (7, 1),
            "the summary's totals"
        );
        assert_eq!((done.bytes_up, done.bytes_down), (100, 2000));
        assert_eq!(done.masked.counts.get("credit_card"), Some(&2));
        assert_eq!(done.end_reason.as_deref(), Some("client closed"));
        assert!(store.session_get("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_list_filters_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .session_insert(&start("a1", "alice", "db", 1_000))
            .await
            .unwrap();
        store
            .session_insert(&start("a2", "alice", "web", 2_000))
            .await
            .unwrap();
        store
            .session_insert(&start("b1", "bob", "db", 3_000))
            .await
            .unwrap();
        let ids = |rows: Vec<SessionRow>| rows.into_iter().map(|r| r.start.id).collect::<Vec<_>>();
        let list = |f: SessionFilter| {
            let store = store.clone();
            async move { ids(store.sessions_list(&f).await.unwrap()) }
        };
        let all = SessionFilter {
            limit: 100,
            ..SessionFilter::default()
        };
        assert_eq!(list(all.clone()).await, ["b1", "a2", "a1"]);
        assert_eq!(
            list(SessionFilter {
                limit: 2,
                ..all.clone()
            })
            .await,
            ["b1", "a2"]
        );
        assert_eq!(
            list(SessionFilter {
                subject: Some("alice".into()),
                ..all.clone()
            })
            .await,
            ["a2", "a1"]
        );
        assert_eq!(
            list(SessionFilter {
                user: Some("bob name".into()),
                ..all.clone()
            })
            .await,
            ["b1"]
        );
        assert_eq!(
            list(SessionFilter {
                connection: Some("db".into()),
                ..all.clone()
            })
            .await,
            ["b1", "a1"]
        );
        assert_eq!(
            list(SessionFilter {
                since_ms: Some(2_000),
                until_ms: Some(3_000),
                ..all.clone()
            })
            .await,
            ["a2"]
        );
        // Scoped to alice, a filter on bob widens nothing.
        assert!(
            list(SessionFilter {
                subject: Some("alice".into()),
                user: Some("bob".into()),
                ..all
            })
            .await
            .is_empty()
        );
    }

    #[tokio::test]
    async fn recording_batch_and_abandoned_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .session_insert(&start("old", "alice", "db", 1_000))
            .await
            .unwrap();
        let batch = RecordingBatch {
            started: vec![
                start("new", "bob", "db", 2_000),
                start("old", "mallory", "db", 2_000),
            ],
            statements: vec![stmt("old", 1, "allow"), stmt("old", 2, "block")],
            ended: vec![("new".into(), summary(3_000))],
        };
        let skipped = store.recording_write(&batch).await.unwrap();
        assert_eq!(
            skipped,
            ["old"],
            "an existing id is skipped, not overwritten"
        );
        let old = store.session_get("old").await.unwrap().unwrap();
        assert_eq!(old.start.subject, "alice");
        assert_eq!(
            store.session_get("new").await.unwrap().unwrap().ended_at_ms,
            Some(3_000)
        );

        assert_eq!(
            store.sessions_close_open("gateway stopped").await.unwrap(),
            1
        );
        let old = store.session_get("old").await.unwrap().unwrap();
        assert_eq!(old.ended_at_ms, Some(10_002), "its last statement");
        assert_eq!((old.statements, old.blocked), (2, 1));
        assert_eq!(old.end_reason.as_deref(), Some("gateway stopped"));
        assert_eq!(store.sessions_close_open("again").await.unwrap(), 0);
    }
}
