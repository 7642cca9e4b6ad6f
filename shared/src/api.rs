//! Types of the gateway's HTTP API (`/api/v1`). Both sides serialise these, so a change here is a
//! change of the wire contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /api/v1/auth/config`: everything the CLI needs to log in, knowing only the gateway URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthConfig {
    /// The OIDC issuer whose discovery document the CLI reads.
    pub issuer: String,
    /// The public client id the CLI presents in the device flow.
    pub client_id: String,
    /// Scopes the CLI asks for.
    pub scopes: Vec<String>,
    /// The audience the gateway expects in tokens; sent as `audience` and `resource` where the
    /// provider supports them.
    pub audience: String,
    /// True when the gateway itself is the issuer (`hoopd dev`, small teams).
    pub builtin: bool,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A token from an external OIDC provider.
    Oidc,
    /// A token from the gateway's built-in issuer.
    Builtin,
    /// A machine API key.
    ApiKey,
    /// A machine's token from a trusted workload issuer (`[[auth.workload]]`).
    Workload,
}

/// `GET /api/v1/me`: the caller as the gateway sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Me {
    /// Stable subject (`sub` claim, local user name, or `apikey:<name>`).
    pub subject: String,
    /// A human-readable name (preferred_username, e-mail, or the subject).
    pub name: String,
    /// Groups used for authorisation.
    pub groups: Vec<String>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// True when one of the caller's groups is in `[auth].admins`.
    pub admin: bool,
    /// When the presented credential expires (unix seconds), if it does.
    pub expires_at: Option<i64>,
}

/// One entry of `GET /api/v1/connections`. Never carries a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The name users type (`hoop connect <name>`).
    pub name: String,
    /// Protocol: `postgres`, `ssh`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text from the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Database name (PostgreSQL) the gateway will connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Groups allowed to use the connection.
    pub allow: Vec<String>,
    /// Connecting needs an approved access review (`hoop connect --reason ... --duration ...`).
    #[serde(default)]
    pub access_review: bool,
    /// SSH connections: the gateway's own SSH host key (`ssh-ed25519 AAAA...`), the key a local
    /// `ssh` through `hoop connect` sees, so it can be pinned in known_hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
}

/// The body of every API error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    /// A stable machine-readable code: `unauthenticated`, `forbidden`, `not_found`, `bad_request`,
    /// `internal`.
    pub error: String,
    /// A sentence for humans: what was wrong and what to do.
    pub message: String,
}

/// Whether a session is still open.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Open: `ended_at` is null and the counters are those of the log so far.
    Active,
    /// Closed: the counters are final.
    Ended,
}

/// One entry of `GET /api/v1/sessions`, and `GET /api/v1/sessions/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// The user's stable subject.
    pub subject: String,
    /// The user's display name.
    pub name: String,
    /// The connection used.
    pub connection: String,
    /// Protocol: `postgres`, `ssh`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The client's address as the gateway saw it.
    pub client_addr: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339; null while the session is active.
    pub ended_at: Option<String>,
    /// `active` or `ended`.
    pub state: SessionState,
    /// Milliseconds from start to end; null while active.
    pub duration_ms: Option<u64>,
    /// Bytes from the client to the target (0 while active).
    pub bytes_up: u64,
    /// Bytes from the target to the client (0 while active).
    pub bytes_down: u64,
    /// Statements seen.
    pub statements: u64,
    /// Statements blocked.
    pub blocked: u64,
    /// Values masked, by detector or rule (empty while active).
    pub masked: BTreeMap<String, u64>,
    /// Why the session ended.
    pub end_reason: Option<String>,
}

/// One entry of `GET /api/v1/sessions/{id}/statements`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatementInfo {
    /// Position in the session (`after=` pages on it).
    pub seq: u64,
    /// RFC 3339.
    pub at: String,
    /// The statement as the client sent it.
    pub text: String,
    /// Bound parameters, masked; null is SQL NULL.
    pub params: Vec<Option<String>>,
    /// `allow` or `block`.
    pub verdict: String,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// Why it was blocked.
    pub reason: Option<String>,
    /// `ok`, `error`, `blocked` or `skipped`.
    pub outcome: String,
    /// The target's command tag (`SELECT 3`).
    pub tag: Option<String>,
    /// SQLSTATE of an error.
    pub sqlstate: Option<String>,
    /// Rows returned or affected, when known.
    pub rows: Option<u64>,
    /// Microseconds from the statement to its completion.
    pub duration_us: u64,
    /// Values masked in its results, by detector or rule.
    pub masked: BTreeMap<String, u64>,
}

/// `POST /api/v1/reviews`: ask for a window of access to a connection that needs review.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessRequest {
    /// The connection.
    pub connection: String,
    /// Why (approvers see it): a ticket, an incident.
    pub reason: String,
    /// How long the window should last once approved, in seconds.
    pub duration_secs: u64,
}

/// `POST /api/v1/reviews/{id}/approve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApproveRequest {
    /// A note kept with the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `POST /api/v1/reviews/{id}/reject`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RejectRequest {
    /// Why (required; the requester sees it).
    pub reason: String,
}

/// One approval or the rejection of a review.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewDecisionInfo {
    /// Who (subject).
    pub by: String,
    /// Their display name.
    pub name: String,
    /// RFC 3339.
    pub at: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// The approval's comment or the rejection's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One statement of a statement review, as the approver sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewStatementInfo {
    /// The statement text (detectors applied).
    pub text: String,
    /// Bound parameter values, `$1` first; null for SQL NULL (detectors applied; a binary value
    /// of a type the gateway cannot render shows as `<N bytes, binary>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
    /// What else the approver should know, such as the prepared statement an `EXECUTE` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A review as the API shows it (`/api/v1/reviews`). Kind and state are strings, so a client
/// keeps working when a later gateway adds one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewInfo {
    /// The short id people type (`hoop approve 42`).
    pub id: i64,
    /// `access` or `statement`.
    pub kind: String,
    /// Connection name.
    pub connection: String,
    /// Requester subject.
    pub requester: String,
    /// Requester display name.
    pub requester_name: String,
    /// Why (access), or the class or guardrail rule that asked for review (statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The held statement, masked by the detectors (statement reviews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Every statement the review covers, with its bound parameter values, masked by the
    /// detectors (statement reviews). Approving runs each of them once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<ReviewStatementInfo>,
    /// The session holding the statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `pending`, `approved`, `rejected`, `expired`, `withdrawn`, `executed` or `revoked`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
    /// When a pending review expires (RFC 3339).
    pub expires_at: String,
    /// Last change of state or decision (RFC 3339).
    pub updated_at: String,
    /// Requested window length in seconds (access reviews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<i64>,
    /// When the approved access window ends (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ends_at: Option<String>,
    /// Approvals needed.
    pub min_approvals: u32,
    /// Approvals so far.
    pub approvals: u32,
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// Approvals and the rejection, oldest first.
    pub decisions: Vec<ReviewDecisionInfo>,
}
