//! Types of the gateway's HTTP API (`/api/v1`). Both sides serialise these, so a change here is a
//! change of the wire contract.

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
