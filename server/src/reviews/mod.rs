//! Just-in-time reviews, protocol-neutral: access windows (a grant to use a connection for a
//! while) and single statements held in flight until someone else approves.
//!
//! State machine: pending → approved | rejected | expired | withdrawn;
//! approved → executed (statements) | revoked | expired (access windows).
//! Nobody approves their own request; approvers must be in the connection's `approvers`
//! groups; `min_approvals` distinct approvers are needed. Every transition is audited.
//!
//! Waiters are woken in-process by a watch channel per review (`wait`), so a decision reaches a
//! held statement or a waiting `hoop connect` within milliseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, event};
use crate::auth::Identity;
use crate::config::ConnectionConfig;
use crate::store::{DecideOutcome, NewReview, ReviewQuery, Store, StoreError};

/// How often the expiry task looks for pending reviews and access windows past their time.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// A waiter re-reads the store at least this often, so a decision taken by another process on
/// the same database (which cannot wake this one's channels) is still seen.
const WAIT_RECHECK: Duration = Duration::from_secs(2);

/// The short id people type (`hoop approve 42`).
pub type ReviewId = i64;

/// What is being reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewKind {
    /// A window of access to a connection.
    Access,
    /// One statement, held in a live session.
    Statement,
}

impl ReviewKind {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::Access => "access",
            ReviewKind::Statement => "statement",
        }
    }

    /// The inverse of [`ReviewKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(ReviewKind::Access),
            "statement" => Some(ReviewKind::Statement),
            _ => None,
        }
    }
}

impl std::fmt::Display for ReviewKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Waiting for approvals.
    Pending,
    /// Approved: an access window is open, or a statement may run.
    Approved,
    /// Someone rejected it.
    Rejected,
    /// Nobody decided in time, or the access window ended.
    Expired,
    /// The requester withdrew it.
    Withdrawn,
    /// The approved statement ran.
    Executed,
    /// The access window was ended early.
    Revoked,
}

impl ReviewState {
    /// Every state.
    pub const ALL: [ReviewState; 7] = [
        ReviewState::Pending,
        ReviewState::Approved,
        ReviewState::Rejected,
        ReviewState::Expired,
        ReviewState::Withdrawn,
        ReviewState::Executed,
        ReviewState::Revoked,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Rejected => "rejected",
            ReviewState::Expired => "expired",
            ReviewState::Withdrawn => "withdrawn",
            ReviewState::Executed => "executed",
            ReviewState::Revoked => "revoked",
        }
    }

    /// The inverse of [`ReviewState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for ReviewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approval (or the rejection).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Decision {
    /// Who (subject).
    pub by: String,
    /// Display name.
    pub name: String,
    /// Unix seconds.
    pub at: i64,
    /// `approve` or `reject`.
    pub decision: String,
    /// Comment or rejection reason.
    pub comment: Option<String>,
}

/// One statement a review covers, as the reviewer sees it: the masking detectors applied to
/// its text and to each parameter value (binary values as their text by type).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewedStatement {
    /// The statement text.
    pub text: String,
    /// Its bound parameter values, `$1` first (None: NULL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
    /// What else the reviewer should know (the prepared statement an `EXECUTE` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The statements as one text (the `statement` of a review, for listings and older clients):
/// each on its own line, parameters after it as `-- $1 = '...'`.
pub fn statements_summary(statements: &[ReviewedStatement]) -> String {
    let mut out = String::new();
    for (i, st) in statements.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&st.text);
        if !st.params.is_empty() {
            out.push_str("  -- ");
            for (j, p) in st.params.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                match p {
                    Some(v) => out.push_str(&format!("${} = '{}'", j + 1, v.replace('\'', "''"))),
                    None => out.push_str(&format!("${} = NULL", j + 1)),
                }
            }
        }
        if let Some(note) = &st.note {
            out.push_str("  -- ");
            out.push_str(note);
        }
    }
    out
}

/// A review as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Review {
    /// Short id.
    pub id: ReviewId,
    /// Access or statement.
    pub kind: ReviewKind,
    /// Connection name.
    pub connection: String,
    /// Requester subject.
    pub requester: String,
    /// Requester display name.
    pub requester_name: String,
    /// Why (access requests), or the guardrail/class that asked for review (statements).
    pub reason: Option<String>,
    /// The statement, with the masking detectors applied (statement reviews).
    pub statement: Option<String>,
    /// Every statement the review covers, with its parameters (statement reviews).
    pub statements: Vec<ReviewedStatement>,
    /// The session holding the statement (statement reviews).
    pub session_id: Option<String>,
    /// Salted digest of the exact statement (see [`statement_digest`]); never shown.
    #[serde(skip)]
    pub statement_digest: Option<String>,
    /// Where it stands.
    pub state: ReviewState,
    /// Unix seconds.
    pub created_at: i64,
    /// A pending review expires at this time (unix seconds).
    pub expires_at: i64,
    /// Requested window length in seconds (access reviews).
    pub duration_secs: Option<i64>,
    /// When an approved access window ends (unix seconds).
    pub window_ends_at: Option<i64>,
    /// Approvals needed.
    pub min_approvals: u32,
    /// Groups that may approve.
    pub approvers: Vec<String>,
    /// Approvals and the rejection so far.
    pub decisions: Vec<Decision>,
    /// Last change (unix seconds): the decision or transition that put it in its state.
    pub updated_at: i64,
}

impl Review {
    /// Distinct approvals so far.
    pub fn approvals(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.decision == "approve")
            .count()
    }
}

/// Why a review operation failed; each maps to an HTTP status and a one-line message.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such review (or not visible to the caller).
    #[error("no review {0}")]
    NotFound(ReviewId),
    /// The review is not pending (names its state).
    #[error("review {id} is already {state}")]
    NotPending {
        /// The review.
        id: ReviewId,
        /// Its state.
        state: ReviewState,
    },
    /// This person already decided on this pending review (a second approval does not count).
    #[error("you already {decision} review {id}")]
    AlreadyDecided {
        /// The review.
        id: ReviewId,
        /// `approved` or `rejected`.
        decision: &'static str,
    },
    /// The caller may not do this (self-approval, wrong group: the message says which groups).
    #[error("{0}")]
    Forbidden(String),
    /// Bad request (duration too long, connection without reviews...).
    #[error("{0}")]
    Invalid(String),
    /// Store or audit failure.
    #[error("review storage failed: {0}")]
    Storage(String),
}

impl From<StoreError> for ReviewError {
    fn from(e: StoreError) -> Self {
        ReviewError::Storage(e.to_string())
    }
}

/// A live access grant: sessions under it end when `ended` fires (revoked or expired).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The access review.
    pub review: ReviewId,
    /// Unix seconds.
    pub ends_at: i64,
    /// Cancelled when the grant is revoked or expires.
    pub ended: tokio_util::sync::CancellationToken,
}

/// Filter for listings.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    /// Only those requested by this subject.
    pub requester: Option<String>,
    /// Only pending ones the caller may approve (caller's groups and not their own).
    pub approvable_by: Option<Identity>,
    /// Only these states.
    pub states: Vec<ReviewState>,
    /// Most recent first, at most this many (0: all).
    pub limit: u32,
}

/// The review service.
pub struct Reviews {
    store: Arc<dyn Store>,
    audit: AuditLog,
    /// `[auth].admins`: they may revoke any access grant.
    admins: Vec<String>,
    /// One channel per review someone waits on. Leaving `pending` removes (drops) the sender,
    /// which wakes every receiver.
    waiters: Mutex<HashMap<ReviewId, watch::Sender<()>>>,
    /// One token per live access grant, so every session under a grant ends together.
    grants: Mutex<HashMap<ReviewId, CancellationToken>>,
    /// Serialises access requests so a double-clicked request files one review, not two.
    filing: tokio::sync::Mutex<()>,
}

/// `<salt hex>:<SHA-256(salt || statement) hex>`; a fresh random salt when `salt` is None.
/// Salted so equal statements do not share a digest and a low-entropy statement (one that
/// differs from the masked text only by a masked value) is not found in a precomputed table.
pub fn statement_digest(statement: &str, salt: Option<&str>) -> String {
    use sha2::Digest;
    let salt = match salt {
        Some(s) => s.to_string(),
        None => {
            let bytes: [u8; 16] = rand::random();
            hex::encode(bytes)
        }
    };
    let mut h = sha2::Sha256::new();
    h.update(salt.as_bytes());
    h.update(statement.as_bytes());
    format!("{salt}:{}", hex::encode(h.finalize()))
}

/// Seconds since the epoch, `after` from now, rounded up: a deadline is never earlier than
/// configured.
fn deadline(after: Duration) -> i64 {
    let now_ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let ns = now_ns.saturating_add(i128::try_from(after.as_nanos()).unwrap_or(i128::MAX));
    let secs = ns.div_euclid(1_000_000_000) + i128::from(ns.rem_euclid(1_000_000_000) != 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    crate::util::now_unix()
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps cannot leave them inconsistent (single inserts and
    // removes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reviews {
    /// Creates the service and starts its expiry task (every [`SWEEP_INTERVAL`]; the task ends
    /// when the service is dropped). `admins` are `[auth].admins`, who may revoke any grant.
    /// Must be called inside a Tokio runtime.
    pub fn new(store: Arc<dyn Store>, audit: AuditLog, admins: Vec<String>) -> Arc<Self> {
        let this = Arc::new(Self {
            store,
            audit,
            admins,
            waiters: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            filing: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&this);
        tokio::spawn(sweeper(weak));
        this
    }

    /// Files an access request for `duration` (at most the connection's `max_duration`).
    ///
    /// Idempotent: when the requester already has an open grant on this connection, or a
    /// pending request for one, that review comes back instead of a new one.
    pub async fn request_access(
        &self,
        conn: &ConnectionConfig,
        who: &Identity,
        reason: &str,
        duration: Duration,
    ) -> Result<Review, ReviewError> {
        let Some(rc) = conn.review.as_ref().filter(|r| r.access) else {
            return Err(ReviewError::Invalid(format!(
                "{:?} does not take access requests: connecting needs no review",
                conn.name
            )));
        };
        if !who.in_any(&conn.allow) {
            return Err(ReviewError::Forbidden(format!(
                "{} may not use {:?}: it is allowed to groups {}",
                who.name,
                conn.name,
                conn.allow.join(", ")
            )));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ReviewError::Invalid(
                "give a reason (approvers see it), like --reason \"INC-123: fix stuck orders\""
                    .into(),
            ));
        }
        if duration.is_zero() {
            return Err(ReviewError::Invalid(
                "the access window must last longer than zero".into(),
            ));
        }
        if duration > rc.max_duration {
            return Err(ReviewError::Invalid(format!(
                "{} is longer than {:?} allows: max_duration is {}",
                human(duration),
                conn.name,
                human(rc.max_duration)
            )));
        }
        let _filing = self.filing.lock().await;
        let now = now();
        let open = self
            .store
            .reviews_list(&ReviewQuery {
                requester: Some(who.subject.clone()),
                connection: Some(conn.name.clone()),
                kind: Some(ReviewKind::Access),
                states: vec![ReviewState::Pending, ReviewState::Approved],
                ..ReviewQuery::default()
            })
            .await?;
        let existing = open.into_iter().find(|r| match r.state {
            ReviewState::Approved => r.window_ends_at.is_some_and(|t| t > now),
            _ => r.expires_at > now,
        });
        if let Some(r) = existing {
            return Ok(r);
        }
        // Whole seconds, rounded up: a window is never shorter than asked for.
        let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
        let new = NewReview {
            kind: ReviewKind::Access,
            connection: conn.name.clone(),
            requester: who.subject.clone(),
            requester_name: who.name.clone(),
            reason: Some(reason.to_string()),
            statement: None,
            statements: Vec::new(),
            session_id: None,
            statement_digest: None,
            created_at: now,
            expires_at: deadline(rc.pending_expiry),
            duration_secs: Some(i64::try_from(secs).unwrap_or(i64::MAX)),
            min_approvals: rc.min_approvals,
            approvers: rc.approvers.clone(),
        };
        self.file(new, who, json!({ "reason": reason, "duration_secs": secs }))
            .await
    }

    /// Files a statement review: `statement` is already masked; `rule` is the class or
    /// guardrail rule that asked for review (kept as the review's reason). It expires after the
    /// connection's `statement_timeout`.
    ///
    /// `exact` is the statement as it will run: only its salted digest is stored, so that
    /// [`Reviews::execute_approved`] can later check a statement is exactly the approved one.
    pub async fn request_statement(
        &self,
        conn: &ConnectionConfig,
        who: &Identity,
        statement: &str,
        exact: &str,
        session_id: &str,
        rule: &str,
    ) -> Result<Review, ReviewError> {
        let shown = [ReviewedStatement {
            text: statement.to_string(),
            ..ReviewedStatement::default()
        }];
        self.request_statements(conn, who, &shown, exact, session_id, rule)
            .await
    }

    /// Files one review covering every statement of `shown` (already masked): a batch the
    /// session holds whole until it is approved. `exact` is what will run (for a batch, an
    /// encoding of its texts and parameter values): only its salted digest is stored.
    pub async fn request_statements(
        &self,
        conn: &ConnectionConfig,
        who: &Identity,
        shown: &[ReviewedStatement],
        exact: &str,
        session_id: &str,
        rule: &str,
    ) -> Result<Review, ReviewError> {
        let Some(rc) = conn.review.as_ref() else {
            return Err(ReviewError::Invalid(format!(
                "{:?} has no review settings",
                conn.name
            )));
        };
        let new = NewReview {
            kind: ReviewKind::Statement,
            connection: conn.name.clone(),
            requester: who.subject.clone(),
            requester_name: who.name.clone(),
            reason: Some(rule.to_string()),
            statement: Some(statements_summary(shown)),
            statements: shown.to_vec(),
            session_id: Some(session_id.to_string()),
            statement_digest: Some(statement_digest(exact, None)),
            created_at: now(),
            expires_at: deadline(rc.statement_timeout),
            duration_secs: None,
            min_approvals: rc.min_approvals,
            approvers: rc.approvers.clone(),
        };
        // The audit log keeps no statement text (the recording and the review hold it), but a
        // digest of exactly what the reviewer was shown, so the stored review can be checked
        // against the hash chain.
        let shown_json = serde_json::to_vec(shown).unwrap_or_default();
        let shown_sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&shown_json))
        };
        self.file(
            new,
            who,
            json!({ "rule": rule, "session": session_id, "statements": shown.len(),
                    "shown_sha256": shown_sha256 }),
        )
        .await
    }

    /// Stores a new review and audits it. A review whose record cannot be audited is expired at
    /// once, so nothing unaudited can be approved.
    async fn file(
        &self,
        new: NewReview,
        who: &Identity,
        extra: serde_json::Value,
    ) -> Result<Review, ReviewError> {
        let id = self.store.review_create(&new).await?;
        let review = self.get(id).await?;
        let mut extra = extra;
        if let Some(obj) = extra.as_object_mut() {
            obj.insert("approvers".into(), json!(review.approvers));
            obj.insert("min_approvals".into(), json!(review.min_approvals));
        }
        if let Err(e) = self
            .audit_event("review.requested", Some(&who.subject), &review, extra)
            .await
        {
            let _ = self
                .store
                .review_set_state(id, ReviewState::Pending, ReviewState::Expired, now())
                .await;
            return Err(e);
        }
        Ok(review)
    }

    /// Approves a pending review. The `min_approvals`-th distinct approval approves it; an
    /// access review's window then starts.
    pub async fn approve(
        &self,
        id: ReviewId,
        who: &Identity,
        comment: Option<&str>,
    ) -> Result<Review, ReviewError> {
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        self.decide(id, who, true, comment).await
    }

    /// Rejects a pending review; `reason` is required and shown to the requester.
    pub async fn reject(
        &self,
        id: ReviewId,
        who: &Identity,
        reason: &str,
    ) -> Result<Review, ReviewError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ReviewError::Invalid(
                "give a reason for the rejection (the requester sees it)".into(),
            ));
        }
        self.decide(id, who, false, Some(reason)).await
    }

    async fn decide(
        &self,
        id: ReviewId,
        who: &Identity,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<Review, ReviewError> {
        let review = self.get(id).await?;
        if review.state != ReviewState::Pending {
            return Err(ReviewError::NotPending {
                id,
                state: review.state,
            });
        }
        let verb = if approve { "approve" } else { "reject" };
        if review.requester == who.subject {
            return Err(ReviewError::Forbidden(if approve {
                "you cannot approve your own request".to_string()
            } else {
                format!("you cannot reject your own request; withdraw review {id} instead")
            }));
        }
        if !who.in_any(&review.approvers) {
            return Err(ReviewError::Forbidden(format!(
                "only members of {} may {verb} review {id}",
                review.approvers.join(", ")
            )));
        }
        let decision = Decision {
            by: who.subject.clone(),
            name: who.name.clone(),
            at: now(),
            decision: verb.to_string(),
            comment: comment.map(str::to_string),
        };
        let decided = match self.store.review_decide(id, &decision, decision.at).await? {
            DecideOutcome::Recorded(r) => *r,
            DecideOutcome::NotFound => return Err(ReviewError::NotFound(id)),
            DecideOutcome::NotPending(state) => {
                return Err(ReviewError::NotPending { id, state });
            }
            DecideOutcome::AlreadyDecided => {
                let earlier = review
                    .decisions
                    .iter()
                    .find(|d| d.by == who.subject)
                    .map(|d| d.decision.as_str());
                return Err(ReviewError::AlreadyDecided {
                    id,
                    decision: if earlier == Some("reject") {
                        "rejected"
                    } else {
                        "approved"
                    },
                });
            }
            DecideOutcome::PastExpiry => {
                // The sweep has not reached it yet: expire it now rather than let a late
                // decision through.
                self.expire(&review, now()).await?;
                return Err(ReviewError::NotPending {
                    id,
                    state: ReviewState::Expired,
                });
            }
        };
        if decided.state != ReviewState::Pending {
            self.wake(id);
        }
        let result = if approve {
            self.audit_event(
                "review.approved",
                Some(&who.subject),
                &decided,
                json!({
                    "approvals": decided.approvals(),
                    "min_approvals": decided.min_approvals,
                    "approved": decided.state == ReviewState::Approved,
                    "window_ends_at": decided.window_ends_at,
                    "comment": comment,
                }),
            )
            .await
        } else {
            self.audit_event(
                "review.rejected",
                Some(&who.subject),
                &decided,
                json!({ "reason": comment }),
            )
            .await
        };
        result.map(|()| decided)
    }

    /// Ends an approved access grant early: its sessions end. The requester, the review's
    /// approvers and admins may revoke.
    pub async fn revoke(&self, id: ReviewId, who: &Identity) -> Result<Review, ReviewError> {
        let review = self.get(id).await?;
        if review.kind != ReviewKind::Access {
            return Err(ReviewError::Invalid(format!(
                "review {id} is a statement review; only access grants can be revoked"
            )));
        }
        if review.requester != who.subject
            && !who.in_any(&review.approvers)
            && !who.in_any(&self.admins)
        {
            return Err(ReviewError::Forbidden(format!(
                "only the requester, members of {} or an admin may revoke review {id}",
                review.approvers.join(", ")
            )));
        }
        match review.state {
            ReviewState::Approved => {}
            ReviewState::Pending => {
                return Err(ReviewError::Invalid(format!(
                    "review {id} is still pending: reject it (or withdraw it, if it is yours)"
                )));
            }
            state => return Err(ReviewError::NotPending { id, state }),
        }
        self.transition(&review, ReviewState::Approved, ReviewState::Revoked)
            .await?;
        self.end_grant(id);
        self.wake(id);
        let revoked = self.get(id).await?;
        self.audit_event("review.revoked", Some(&who.subject), &revoked, json!({}))
            .await?;
        Ok(revoked)
    }

    /// The requester gives up a pending review (`hoop connect` does this on Ctrl-C; a held
    /// statement when its client stops waiting).
    pub async fn withdraw(&self, id: ReviewId, who: &Identity) -> Result<Review, ReviewError> {
        let review = self.get(id).await?;
        if review.requester != who.subject {
            return Err(ReviewError::Forbidden(format!(
                "only the requester may withdraw review {id}"
            )));
        }
        if review.state != ReviewState::Pending {
            return Err(ReviewError::NotPending {
                id,
                state: review.state,
            });
        }
        self.transition(&review, ReviewState::Pending, ReviewState::Withdrawn)
            .await?;
        self.wake(id);
        let withdrawn = self.get(id).await?;
        self.audit_event(
            "review.withdrawn",
            Some(&who.subject),
            &withdrawn,
            json!({}),
        )
        .await?;
        Ok(withdrawn)
    }

    /// The client that held a statement left (or canceled) before it ran: the review is
    /// withdrawn, also when an approval landed in the same moment (approved → withdrawn), so
    /// the record never says "approved" for a statement that will not run.
    async fn give_up(&self, id: ReviewId, who: &Identity) {
        match self.withdraw(id, who).await {
            Err(ReviewError::NotPending {
                state: ReviewState::Approved,
                ..
            }) => {}
            _ => return,
        }
        let Ok(review) = self.get(id).await else {
            return;
        };
        if review.kind != ReviewKind::Statement
            || self
                .transition(&review, ReviewState::Approved, ReviewState::Withdrawn)
                .await
                .is_err()
        {
            return;
        }
        self.wake(id);
        if let Ok(withdrawn) = self.get(id).await {
            let _ = self
                .audit_event(
                    "review.withdrawn",
                    Some(&who.subject),
                    &withdrawn,
                    json!({ "was": "approved", "why": "the client left before the statement ran" }),
                )
                .await;
        }
    }

    /// Records that an approved statement ran.
    pub async fn mark_executed(&self, id: ReviewId) -> Result<(), ReviewError> {
        let review = self.get(id).await?;
        if review.kind != ReviewKind::Statement {
            return Err(ReviewError::Invalid(format!(
                "review {id} is an access review; only statements are executed"
            )));
        }
        if review.state != ReviewState::Approved {
            return Err(ReviewError::NotPending {
                id,
                state: review.state,
            });
        }
        self.transition(&review, ReviewState::Approved, ReviewState::Executed)
            .await?;
        self.wake(id);
        let executed = self.get(id).await?;
        self.audit_event(
            "review.executed",
            Some(&review.requester),
            &executed,
            json!({ "session": executed.session_id }),
        )
        .await
    }

    /// Runs an already approved statement review in a new session (`hoop exec --review <id>`):
    /// it must be a statement review on `connection`, filed by `who`, approved, and for exactly
    /// `exact` (compared by its salted digest). It moves to `executed` before the statement is
    /// sent, so one approval runs one statement once, even when two callers race.
    pub async fn execute_approved(
        &self,
        id: ReviewId,
        who: &Identity,
        connection: &str,
        exact: &str,
        session_id: &str,
    ) -> Result<(), ReviewError> {
        let review = self.get(id).await?;
        // Someone else's review answers like a missing one: ids are no oracle.
        if review.requester != who.subject {
            return Err(ReviewError::NotFound(id));
        }
        if review.kind != ReviewKind::Statement {
            return Err(ReviewError::Invalid(format!(
                "review {id} is an access review, not a statement review"
            )));
        }
        if review.connection != connection {
            return Err(ReviewError::Invalid(format!(
                "review {id} is for connection {:?}, not {connection:?}",
                review.connection
            )));
        }
        match review.state {
            ReviewState::Approved => {}
            ReviewState::Pending => {
                return Err(ReviewError::Invalid(format!(
                    "review {id} is still pending: it needs approval first (`hoop reviews show {id}`)"
                )));
            }
            state => return Err(ReviewError::NotPending { id, state }),
        }
        let matches = review
            .statement_digest
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .is_some_and(|(salt, _)| {
                review.statement_digest.as_deref()
                    == Some(statement_digest(exact, Some(salt)).as_str())
            });
        if !matches {
            return Err(ReviewError::Invalid(format!(
                "review {id} approved a different statement: run exactly the approved text"
            )));
        }
        self.transition(&review, ReviewState::Approved, ReviewState::Executed)
            .await?;
        self.wake(id);
        let executed = self.get(id).await?;
        self.audit_event(
            "review.executed",
            Some(&who.subject),
            &executed,
            json!({ "session": session_id, "filed_in": review.session_id }),
        )
        .await
    }

    /// Moves `review` from `from` to `to`, or says where it went instead.
    async fn transition(
        &self,
        review: &Review,
        from: ReviewState,
        to: ReviewState,
    ) -> Result<(), ReviewError> {
        if self
            .store
            .review_set_state(review.id, from, to, now())
            .await?
        {
            return Ok(());
        }
        let state = self.get(review.id).await?.state;
        Err(ReviewError::NotPending {
            id: review.id,
            state,
        })
    }

    /// One review.
    pub async fn get(&self, id: ReviewId) -> Result<Review, ReviewError> {
        self.store
            .review_get(id)
            .await?
            .ok_or(ReviewError::NotFound(id))
    }

    /// Reviews matching `filter`, newest first.
    pub async fn list(&self, filter: &ReviewFilter) -> Result<Vec<Review>, ReviewError> {
        let Some(who) = &filter.approvable_by else {
            return Ok(self
                .store
                .reviews_list(&ReviewQuery {
                    requester: filter.requester.clone(),
                    states: filter.states.clone(),
                    limit: filter.limit,
                    ..ReviewQuery::default()
                })
                .await?);
        };
        if !filter.states.is_empty() && !filter.states.contains(&ReviewState::Pending) {
            return Ok(Vec::new());
        }
        // Approver groups are stored per review, so the group match happens here; pending
        // reviews are few, so all of them are read.
        let now = now();
        let mut pending = self
            .store
            .reviews_list(&ReviewQuery {
                requester: filter.requester.clone(),
                states: vec![ReviewState::Pending],
                ..ReviewQuery::default()
            })
            .await?;
        pending.retain(|r| {
            r.expires_at > now
                && r.requester != who.subject
                && who.in_any(&r.approvers)
                && !r.decisions.iter().any(|d| d.by == who.subject)
        });
        if filter.limit > 0 {
            pending.truncate(usize::try_from(filter.limit).unwrap_or(usize::MAX));
        }
        Ok(pending)
    }

    /// Waits until the review leaves `pending` or `timeout` passes, and returns it as it then
    /// stands (still pending on a timeout).
    pub async fn wait(&self, id: ReviewId, timeout: Duration) -> Result<Review, ReviewError> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            // Subscribe before reading, so a decision between the read and the wait is not
            // missed.
            let mut rx = self.subscribe(id);
            let review = self.get(id).await?;
            let now = tokio::time::Instant::now();
            if review.state != ReviewState::Pending || now >= until {
                return Ok(review);
            }
            let slice = (until - now).min(WAIT_RECHECK);
            let _ = tokio::time::timeout(slice, rx.changed()).await;
        }
    }

    /// The open access grant of `subject` on `connection`, if any. Every caller of one grant
    /// gets the same token, cancelled when the grant is revoked or expires.
    pub async fn active_grant(
        &self,
        connection: &str,
        subject: &str,
    ) -> Result<Option<Grant>, ReviewError> {
        let now = now();
        let open = self
            .store
            .reviews_list(&ReviewQuery {
                requester: Some(subject.to_string()),
                connection: Some(connection.to_string()),
                kind: Some(ReviewKind::Access),
                states: vec![ReviewState::Approved],
                window_open_at: Some(now),
                ..ReviewQuery::default()
            })
            .await?;
        let Some((id, _)) = open
            .iter()
            .filter_map(|r| r.window_ends_at.map(|t| (r.id, t)))
            .max_by_key(|(_, t)| *t)
        else {
            return Ok(None);
        };
        let token = lock(&self.grants).entry(id).or_default().clone();
        // Read again after taking the token: a revoke or expiry that ran between the listing
        // and the insert above would otherwise leave a token nobody cancels.
        let current = self.get(id).await?;
        match current.window_ends_at {
            Some(ends_at) if current.state == ReviewState::Approved && ends_at > now => {
                Ok(Some(Grant {
                    review: id,
                    ends_at,
                    ended: token,
                }))
            }
            _ => {
                self.end_grant(id);
                Ok(None)
            }
        }
    }

    /// Expires what is due at `now`: pending reviews past `expires_at` and access windows past
    /// `window_ends_at`. Returns how many were expired. The expiry task calls this.
    pub async fn expire_due(&self, now: i64) -> Result<usize, ReviewError> {
        let due = self.store.reviews_due(now).await?;
        let mut n = 0;
        let mut first_error = None;
        // One failure (an audit write, say) must not hold back the other expiries.
        for r in &due {
            match self.expire(r, now).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Expires one review (pending, or an approved access window); false when something else
    /// moved it first.
    async fn expire(&self, r: &Review, now: i64) -> Result<bool, ReviewError> {
        let from = r.state;
        if !matches!(from, ReviewState::Pending | ReviewState::Approved) {
            return Ok(false);
        }
        if !self
            .store
            .review_set_state(r.id, from, ReviewState::Expired, now)
            .await?
        {
            return Ok(false);
        }
        if from == ReviewState::Approved {
            self.end_grant(r.id);
        }
        self.wake(r.id);
        let expired = Review {
            state: ReviewState::Expired,
            ..r.clone()
        };
        let what = if from == ReviewState::Approved {
            "the access window ended"
        } else {
            "nobody decided in time"
        };
        self.audit_event(
            "review.expired",
            None,
            &expired,
            json!({ "was": from.as_str(), "why": what }),
        )
        .await?;
        Ok(true)
    }

    fn subscribe(&self, id: ReviewId) -> watch::Receiver<()> {
        lock(&self.waiters)
            .entry(id)
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// Wakes everyone waiting on `id` (dropping the sender ends their `changed()`).
    fn wake(&self, id: ReviewId) {
        let sender = lock(&self.waiters).remove(&id);
        if let Some(tx) = sender {
            tx.send_replace(());
        }
    }

    fn end_grant(&self, id: ReviewId) {
        let token = lock(&self.grants).remove(&id);
        if let Some(t) = token {
            t.cancel();
        }
    }

    async fn audit_event(
        &self,
        kind: &str,
        actor: Option<&str>,
        r: &Review,
        extra: serde_json::Value,
    ) -> Result<(), ReviewError> {
        // The statement text is never audited, masked or not: the recording holds it.
        let mut details = json!({
            "id": r.id,
            "kind": r.kind.as_str(),
            "connection": r.connection,
            "requester": r.requester,
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
            d.extend(extra);
        }
        self.audit
            .record(event(kind, actor, None, "success", details))
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(review = r.id, event = kind, error = %e, "review transition not audited");
                ReviewError::Storage(e.to_string())
            })
    }
}

/// Why an adapter gave up a held statement or command (the `cancel` of [`Reviews::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// The client canceled it or went away.
    Canceled,
    /// The client sent more than `limit` bytes behind it while it waited, more than the
    /// adapter keeps.
    TooMuchInput { limit: usize },
}

/// Why a statement (or command) that needed review did not run.
#[derive(Debug)]
pub enum NotRun {
    /// Rejected, expired, withdrawn, not fileable, or (`--review`) not the approved statement.
    Refused(String),
    /// `hoop exec --no-wait`/`--wait`: still pending when the caller stopped waiting; the
    /// review stays pending.
    Pending(String),
}

impl NotRun {
    /// What to tell the client and the recording.
    pub fn why(&self) -> &str {
        match self {
            NotRun::Refused(w) | NotRun::Pending(w) => w,
        }
    }
}

/// One statement (SQL) or command (SSH exec) a session holds for review.
pub struct Hold<'a> {
    /// The connection it runs on.
    pub connection: &'a ConnectionConfig,
    /// Who asked to run it.
    pub identity: &'a Identity,
    /// What the caller asked for (`hoop exec --wait/--no-wait/--review`; a tunnel holds).
    pub mode: hoop_shared::exec::ExecReviewMode,
    /// The text as the approver sees it (masking detectors applied).
    pub masked: &'a str,
    /// The exact text that will run (only its salted digest is stored).
    pub exact: &'a str,
    /// The session that holds it.
    pub session_id: &'a str,
    /// The class or rule set that asked for review.
    pub rule: &'a str,
}

impl Reviews {
    /// The protocol-neutral half of holding a statement: files the review (or, in `--review`
    /// mode, checks and consumes the approved one), calls `filed(id, "waiting up to 5m")` so the
    /// adapter can tell its client in its own protocol, then waits for the decision or for
    /// `cancel` (the client gave up: the review is withdrawn).
    ///
    /// Ok(Some(id)) when approved: the caller runs it, then calls [`Reviews::mark_executed`].
    /// Ok(None) when an approved review was given and consumed (already executed).
    pub async fn hold(
        &self,
        h: Hold<'_>,
        filed: impl AsyncFnOnce(ReviewId, String) -> Result<(), String>,
        cancel: impl std::future::Future<Output = Withdrawn>,
    ) -> Result<Option<ReviewId>, NotRun> {
        self.hold_statements(h, &[], filed, cancel).await
    }

    /// [`Reviews::hold`] for a review covering several statements (`statements`, as the
    /// approver sees them; empty: `h.masked` alone).
    pub async fn hold_statements(
        &self,
        h: Hold<'_>,
        statements: &[ReviewedStatement],
        filed: impl AsyncFnOnce(ReviewId, String) -> Result<(), String>,
        cancel: impl std::future::Future<Output = Withdrawn>,
    ) -> Result<Option<ReviewId>, NotRun> {
        use hoop_shared::exec::ExecReviewMode as Mode;
        if let Mode::Approved { review } = h.mode {
            return match self
                .execute_approved(
                    review,
                    h.identity,
                    &h.connection.name,
                    h.exact,
                    h.session_id,
                )
                .await
            {
                Ok(()) => Ok(None),
                Err(e) => Err(NotRun::Refused(e.to_string())),
            };
        }
        let timeout = h
            .connection
            .review
            .as_ref()
            .map(|r| r.statement_timeout)
            .unwrap_or(Duration::from_secs(300));
        let one = [ReviewedStatement {
            text: h.masked.to_string(),
            ..ReviewedStatement::default()
        }];
        let shown = if statements.is_empty() {
            &one[..]
        } else {
            statements
        };
        let review = self
            .request_statements(
                h.connection,
                h.identity,
                shown,
                h.exact,
                h.session_id,
                h.rule,
            )
            .await
            .map_err(|e| NotRun::Refused(format!("the review could not be filed: {e}")))?;
        let id = review.id;
        // A little past the review's own expiry, so the sweeper's verdict is what we read.
        let (waits, wait) = match h.mode {
            Mode::Wait { secs } => {
                let d = Duration::from_secs(secs);
                (
                    format!(
                        "waiting up to {}",
                        humantime::format_duration(d.min(timeout))
                    ),
                    d.min(timeout + Duration::from_secs(2)),
                )
            }
            _ => (
                format!("waiting up to {}", humantime::format_duration(timeout)),
                timeout + Duration::from_secs(2),
            ),
        };
        // The client hears of the review before the wait starts (`--no-wait` waits 0 s).
        filed(id, waits).await.map_err(NotRun::Refused)?;
        let decided = tokio::select! {
            r = self.wait(id, wait) => r.map_err(|e| NotRun::Refused(e.to_string()))?,
            why = cancel => {
                self.give_up(id, h.identity).await;
                return Err(NotRun::Refused(match why {
                    Withdrawn::Canceled => {
                        format!("the client canceled it; review {id} was withdrawn")
                    }
                    Withdrawn::TooMuchInput { limit } => format!(
                        "the client sent more than {} KiB of input while it waited for review, \
                         so review {id} was withdrawn; send input only once it runs (or get it \
                         approved first and run it with `hoop exec --review`)",
                        limit / 1024
                    ),
                }));
            }
        };
        match decided.state {
            ReviewState::Approved | ReviewState::Executed => Ok(Some(id)),
            ReviewState::Rejected => {
                let by = decided
                    .decisions
                    .iter()
                    .rev()
                    .find(|d| d.decision == "reject");
                Err(NotRun::Refused(match by {
                    Some(d) => format!(
                        "review {id} was rejected by {}: {}",
                        d.name,
                        d.comment.clone().unwrap_or_default()
                    ),
                    None => format!("review {id} was rejected"),
                }))
            }
            ReviewState::Pending if matches!(h.mode, Mode::Wait { .. }) => {
                // The caller chose not to wait (longer): the review stays pending for `--review`.
                Err(NotRun::Pending(format!(
                    "review {id} is pending; once it is approved, run the same input with `hoop exec {} --review {id}`",
                    h.connection.name
                )))
            }
            ReviewState::Pending | ReviewState::Expired => {
                // Give up on it so a late approval cannot run a statement nobody waits for.
                let _ = self.withdraw(id, h.identity).await;
                Err(NotRun::Refused(format!(
                    "review {id} was not approved within {}",
                    humantime::format_duration(timeout)
                )))
            }
            other => Err(NotRun::Refused(format!("review {id} is {other:?}"))),
        }
    }
}

/// The expiry task: holds only a weak reference, so it ends with the service.
async fn sweeper(service: Weak<Reviews>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(service) = service.upgrade() else {
            return;
        };
        if let Err(e) = service.expire_due(now()).await {
            tracing::warn!(error = %e, "review expiry sweep failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests;
