//! The HTTP API under `/api/v1`, health and metrics, and (when the gateway is its own IdP) the
//! built-in issuer's endpoints. Tunnels arrive on the same port and are dispatched before this
//! router (see `server.rs`).

mod audit;
mod caller;
pub mod exec;
mod issuer_routes;
mod reviews;
mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hoop_shared::api::{ApiError, AuthConfig, ConnectionInfo, Me};

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

pub use caller::Caller;

/// Everything a request handler may need.
#[derive(Clone)]
pub struct AppState {
    /// The loaded configuration.
    pub config: Arc<Config>,
    /// Credential checks.
    pub auth: Arc<Authenticator>,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// The audit log.
    pub audit: AuditLog,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Session and statement recordings.
    pub recorder: crate::recording::Recorder,
    /// Compiled policy per connection name.
    pub policies: Arc<std::collections::HashMap<String, Arc<crate::policy::Policy>>>,
    /// Just-in-time reviews: access grants and held statements.
    pub reviews: Arc<crate::reviews::Reviews>,
    /// Signs audit checkpoints and exports.
    pub audit_key: Arc<hoop_shared::audit::SecretKey>,
}

impl AppState {
    /// The compiled policy of a connection (an empty policy if it has none).
    pub fn policy_for(&self, connection: &str) -> Arc<crate::policy::Policy> {
        self.policies.get(connection).cloned().unwrap_or_default()
    }
}

/// The peer address of the connection a request came on (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// An API error: status plus the JSON body every client can parse.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    body: ApiError,
}

impl ApiFailure {
    /// Builds an error response.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiError {
                error: code.to_string(),
                message: message.into(),
            },
        }
    }

    /// 500 with a generic message; the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the gateway failed; see its log",
        )
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/auth/config", get(auth_config))
        .route("/api/v1/me", get(me))
        .route("/api/v1/connections", get(connections))
        .merge(reviews::router())
        .merge(exec::router())
        .merge(sessions::router())
        .merge(audit::router());
    if state.auth.builtin_issuer().is_some() {
        r = r.merge(issuer_routes::router());
    }
    r.fallback(|| async { ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn auth_config(State(s): State<AppState>) -> Json<AuthConfig> {
    let a = &s.config.auth;
    Json(AuthConfig {
        issuer: s.auth.issuer_url(),
        client_id: a.client_id.clone(),
        scopes: a.scopes.clone(),
        audience: a.audience.clone(),
        builtin: s.auth.builtin_issuer().is_some(),
    })
}

async fn me(State(s): State<AppState>, Caller(id): Caller) -> Json<Me> {
    let admin = id.in_any(&s.config.auth.admins);
    Json(Me {
        subject: id.subject,
        name: id.name,
        groups: id.groups,
        method: id.method,
        admin,
        expires_at: id.expires_at,
    })
}

async fn connections(State(s): State<AppState>, Caller(id): Caller) -> Json<Vec<ConnectionInfo>> {
    // Strictly by group, admins included: listing a connection says "you may use this".
    Json(
        s.config
            .connections
            .iter()
            .filter(|c| id.in_any(&c.allow))
            .map(|c| ConnectionInfo {
                name: c.name.clone(),
                kind: c.kind.as_str().to_string(),
                description: c.description.clone(),
                database: c.database.clone(),
                allow: c.allow.clone(),
                access_review: c.review.as_ref().is_some_and(|r| r.access),
                ssh_host_key: (c.kind == crate::config::ConnectionKind::Ssh)
                    .then(crate::proxy::ssh::public_host_key)
                    .flatten(),
            })
            .collect(),
    )
}
