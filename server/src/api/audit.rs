//! `GET /api/v1/audit/key` (the public key that verifies checkpoints and exports; no login
//! needed, it is public) and `GET /api/v1/audit/export?since=&until=` (admins and
//! `[auth].auditors`; streamed JSON lines, format in `hoop_shared::audit`).

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::{ApiFailure, AppState, Caller};
use crate::audit::event;
use crate::audit::export::{self, Range};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit/key", get(key))
        .route("/api/v1/audit/export", get(export_lines))
}

async fn key(State(s): State<AppState>) -> Json<serde_json::Value> {
    let p = s.audit_key.public();
    Json(json!({
        "algorithm": "ed25519",
        "public_key": p.to_text(),
        "key_id": p.key_id(),
    }))
}

#[derive(Debug, Default, Deserialize)]
struct ExportQuery {
    since: Option<String>,
    until: Option<String>,
}

fn bad_request(message: impl Into<String>) -> ApiFailure {
    ApiFailure::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn parse_time(name: &str, v: Option<String>) -> Result<Option<i64>, ApiFailure> {
    let Some(v) = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let t = time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad_request(format!("{name} must be an RFC 3339 time, got {v:?}")))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map(Some)
        .map_err(|_| bad_request(format!("{name} is out of range")))
}

async fn export_lines(
    State(s): State<AppState>,
    Caller(id): Caller,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(q) = q.map_err(|e| bad_request(format!("bad query string: {}", e.body_text())))?;
    let auth = &s.config.auth;
    if !(id.in_any(&auth.admins) || id.in_any(&auth.auditors)) {
        return Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "exporting the audit log is for admins and auditors (`[auth].admins`, `[auth].auditors`)",
        ));
    }
    let range = Range {
        since_ms: parse_time("since", q.since.clone())?,
        until_ms: parse_time("until", q.until.clone())?,
    };
    if let (Some(a), Some(b)) = (range.since_ms, range.until_ms)
        && a >= b
    {
        return Err(bad_request("since must be before until"));
    }
    // Who exported what is itself evidence.
    s.audit
        .record(event(
            "audit.exported",
            Some(&id.subject),
            None,
            "success",
            json!({"since": q.since, "until": q.until}),
        ))
        .await
        .map_err(ApiFailure::internal)?;
    let rx = export::start(s.store.clone(), s.audit_key.clone(), range);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
