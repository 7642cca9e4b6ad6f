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

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::AuditLog;
use crate::auth::Identity;
use crate::config::ConnectionConfig;
use crate::store::Store;

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
    /// The session holding the statement (statement reviews).
    pub session_id: Option<String>,
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
}

/// Why a review operation failed; each maps to an HTTP status and a one-line message.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such review (or not visible to the caller).
    #[error("no review {0}")]
    NotFound(ReviewId),
    /// The review is not pending (names its state).
    #[error("review {id} is already {state:?}")]
    NotPending {
        /// The review.
        id: ReviewId,
        /// Its state.
        state: ReviewState,
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
    /// Most recent first, at most this many.
    pub limit: u32,
}

/// The review service.
pub struct Reviews {
    store: Arc<dyn Store>,
    audit: AuditLog,
}

impl Reviews {
    /// Creates the service (and its expiry task).
    pub fn new(store: Arc<dyn Store>, audit: AuditLog) -> Arc<Self> {
        Arc::new(Self { store, audit })
    }

    /// Files an access request for `duration` (at most the connection's `max_duration`).
    pub async fn request_access(&self, _conn: &ConnectionConfig, _who: &Identity, _reason: &str, _duration: Duration) -> Result<Review, ReviewError> {
        let _ = (&self.store, &self.audit);
        Err(ReviewError::Invalid("not implemented".into()))
    }
}
