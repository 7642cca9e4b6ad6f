//! The `Caller` extractor: a verified identity from `Authorization: Bearer`, or a 401 that is
//! audited with the reason.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::json;

use super::{ApiFailure, AppState, ClientAddr};
use crate::audit::event;
use crate::auth::Identity;

/// A request made by a verified identity.
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let source = parts
            .extensions
            .get::<ClientAddr>()
            .map(|a| a.0.to_string());
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        let bearer = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(bearer) = bearer.filter(|b| !b.is_empty()) else {
            return Err(ApiFailure::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "no bearer token; run `hoop login` (or set HOOP_TOKEN)",
            ));
        };
        match state.auth.authenticate(bearer).await {
            Ok(id) => {
                state
                    .metrics
                    .auth_success
                    .get_or_create(&vec![("method", format!("{:?}", id.method).to_lowercase())])
                    .inc();
                Ok(Caller(id))
            }
            Err(f) => {
                state
                    .metrics
                    .auth_rejected
                    .get_or_create(&vec![("reason", f.code.to_string())])
                    .inc();
                let ev = event(
                    "auth.rejected",
                    None,
                    source,
                    "denied",
                    json!({ "reason": f.code, "path": parts.uri.path() }),
                );
                if let Err(e) = state.audit.record_nowait(ev).await {
                    tracing::error!(error = %e, "cannot audit a rejected token");
                }
                tracing::info!(reason = f.code, "credential rejected");
                Err(ApiFailure::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    f.message,
                ))
            }
        }
    }
}
