//! `GET /api/v1/sessions`, `/api/v1/sessions/{id}` and `/api/v1/sessions/{id}/statements`: the
//! recorded sessions and their statement logs.
//!
//! Admins and auditors read every session; anyone else only sessions whose subject is theirs.
//! Another user's session answers 404 exactly like a missing one, so session ids are not an
//! oracle for who did what.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hoop_shared::api::{SessionInfo, SessionState, StatementInfo};
use serde::Deserialize;

use super::{ApiFailure, AppState, Caller};
use crate::auth::Identity;
use crate::config::AuthConfig;
use crate::store::{SessionFilter, SessionRow, StatementRecord, Store};

/// Sessions per listing unless `limit` says otherwise.
const DEFAULT_LIST_LIMIT: u32 = 50;
/// The most sessions one listing returns.
const MAX_LIST_LIMIT: u32 = 1000;
/// Statements per page unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 1000;
/// The most statements one page returns.
const MAX_PAGE: u32 = 10_000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", get(list))
        .route("/api/v1/sessions/{id}", get(show))
        .route("/api/v1/sessions/{id}/statements", get(statements))
        .route("/api/v1/sessions/{id}/cast", get(cast))
}

/// `?user=&connection=&since=&until=&verdict=&limit=`; strings so a bad value gets our own error
/// body.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    user: Option<String>,
    verdict: Option<String>,
    connection: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

/// `?after=&limit=`
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// `?channel=N` picks one terminal recording of a session (default: the first).
#[derive(Debug, Default, Deserialize)]
struct CastQuery {
    channel: Option<String>,
}

/// True when the caller reads every session.
fn sees_all(auth: &AuthConfig, id: &Identity) -> bool {
    id.in_any(&auth.admins) || id.in_any(&auth.auditors)
}

fn bad_request(message: impl Into<String>) -> ApiFailure {
    ApiFailure::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn not_found() -> ApiFailure {
    ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such session")
}

fn query<T: Default>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiFailure> {
    q.map(|Query(q)| q)
        .map_err(|e| bad_request(format!("bad query string: {}", e.body_text())))
}

/// An empty parameter (`?user=`) means "not given".
fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn parse_time(name: &str, v: Option<String>) -> Result<Option<i64>, ApiFailure> {
    let Some(v) = given(v) else { return Ok(None) };
    let t = time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad_request(format!("{name} must be an RFC 3339 time, got {v:?}")))?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms)
        .map(Some)
        .map_err(|_| bad_request(format!("{name} is out of range")))
}

/// `verdict=block` (sessions with a blocked statement) or `verdict=allow`.
fn parse_verdict(v: Option<String>) -> Result<Option<String>, ApiFailure> {
    match given(v).as_deref() {
        None => Ok(None),
        Some("block" | "blocked") => Ok(Some("block".into())),
        Some("allow" | "allowed") => Ok(Some("allow".into())),
        Some(other) => Err(bad_request(format!(
            "verdict must be `block` or `allow`, got {other:?}"
        ))),
    }
}

fn parse_limit(v: Option<String>, default: u32, max: u32) -> Result<u32, ApiFailure> {
    let Some(v) = given(v) else {
        return Ok(default);
    };
    match v.parse::<u32>() {
        Ok(0) | Err(_) => Err(bad_request(format!(
            "limit must be a whole number from 1 to {max}, got {v:?}"
        ))),
        Ok(n) => Ok(n.min(max)),
    }
}

fn ms_to_rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn session_info(r: SessionRow) -> SessionInfo {
    let s = r.start;
    SessionInfo {
        duration_ms: r
            .ended_at_ms
            .map(|e| u64::try_from(e.saturating_sub(s.started_at_ms)).unwrap_or(0)),
        state: if r.ended_at_ms.is_some() {
            SessionState::Ended
        } else {
            SessionState::Active
        },
        ended_at: r.ended_at_ms.map(ms_to_rfc3339),
        started_at: ms_to_rfc3339(s.started_at_ms),
        id: s.id,
        subject: s.subject,
        name: s.name,
        connection: s.connection,
        kind: s.kind,
        client_addr: s.client_addr,
        bytes_up: r.bytes_up,
        bytes_down: r.bytes_down,
        statements: r.statements,
        blocked: r.blocked,
        masked: r.masked.counts,
        end_reason: r.end_reason,
    }
}

fn statement_info(st: StatementRecord) -> StatementInfo {
    StatementInfo {
        seq: st.seq,
        at: ms_to_rfc3339(st.at_ms),
        text: st.text.to_string(),
        params: st.params,
        verdict: st.verdict,
        rule: st.rule,
        reason: st.reason,
        outcome: st.outcome,
        tag: st.tag,
        sqlstate: st.sqlstate,
        rows: st.rows,
        duration_us: st.duration_us,
        masked: st.masked.counts,
    }
}

/// The session if the caller may read it; 404 otherwise, whether it exists or not.
async fn visible_session(
    store: &dyn Store,
    auth: &AuthConfig,
    caller: &Identity,
    id: &str,
) -> Result<SessionRow, ApiFailure> {
    let row = store
        .session_get(id)
        .await
        .map_err(ApiFailure::internal)?
        .ok_or_else(not_found)?;
    if sees_all(auth, caller) || row.start.subject == caller.subject {
        Ok(row)
    } else {
        Err(not_found())
    }
}

async fn list_sessions(
    store: &dyn Store,
    auth: &AuthConfig,
    caller: &Identity,
    q: ListQuery,
) -> Result<Vec<SessionInfo>, ApiFailure> {
    let filter = SessionFilter {
        // Everyone else is scoped to their own subject; `user=` can only narrow that further.
        subject: (!sees_all(auth, caller)).then(|| caller.subject.clone()),
        user: given(q.user),
        connection: given(q.connection),
        since_ms: parse_time("since", q.since)?,
        until_ms: parse_time("until", q.until)?,
        verdict: parse_verdict(q.verdict)?,
        limit: parse_limit(q.limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?,
    };
    let rows = store
        .sessions_list(&filter)
        .await
        .map_err(ApiFailure::internal)?;
    Ok(rows.into_iter().map(session_info).collect())
}

async fn session_statements(
    store: &dyn Store,
    auth: &AuthConfig,
    caller: &Identity,
    id: &str,
    q: PageQuery,
) -> Result<Vec<StatementInfo>, ApiFailure> {
    visible_session(store, auth, caller, id).await?;
    let after = match given(q.after) {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| bad_request(format!("after must be a sequence number, got {v:?}")))?,
        ),
    };
    let limit = parse_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let page = store
        .statements_of(id, after, limit)
        .await
        .map_err(ApiFailure::internal)?;
    Ok(page.into_iter().map(statement_info).collect())
}

async fn list(
    State(s): State<AppState>,
    Caller(id): Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<SessionInfo>>, ApiFailure> {
    let q = query(q)?;
    list_sessions(s.store.as_ref(), &s.config.auth, &id, q)
        .await
        .map(Json)
}

async fn show(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(session): Path<String>,
) -> Result<Json<SessionInfo>, ApiFailure> {
    visible_session(s.store.as_ref(), &s.config.auth, &id, &session)
        .await
        .map(|r| Json(session_info(r)))
}

async fn statements(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(session): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Vec<StatementInfo>>, ApiFailure> {
    let q = query(q)?;
    session_statements(s.store.as_ref(), &s.config.auth, &id, &session, q)
        .await
        .map(Json)
}

/// `GET /api/v1/sessions/{id}/cast`: a terminal recording (asciicast v2) of an SSH session,
/// under the same access rules as the session itself.
async fn cast(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(session): Path<String>,
    q: Result<Query<CastQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiFailure> {
    let q = query(q)?;
    visible_session(s.store.as_ref(), &s.config.auth, &id, &session).await?;
    let want = match given(q.channel) {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| bad_request(format!("channel must be a number, got {v:?}")))?,
        ),
    };
    let casts = s
        .store
        .casts_of(&session)
        .await
        .map_err(ApiFailure::internal)?;
    let channels: Vec<String> = casts.iter().map(|(c, _)| c.to_string()).collect();
    let found = casts
        .into_iter()
        .find(|(c, _)| want.is_none_or(|w| w == *c));
    let Some((channel, data)) = found else {
        return Err(ApiFailure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            &if channels.is_empty() {
                "this session has no terminal recording (only SSH shell and exec channels are recorded)".to_string()
            } else {
                format!(
                    "no such channel; recorded channels: {}",
                    channels.join(", ")
                )
            },
        ));
    };
    let mut resp = axum::response::Response::new(axum::body::Body::from(data));
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-asciicast"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&channel.to_string()) {
        headers.insert("x-hoop-channel", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&channels.join(",")) {
        headers.insert("x-hoop-channels", v);
    }
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::Arc;

    use hoop_shared::api::AuthMethod;

    use super::*;
    use crate::policy::MaskCounts;
    use crate::store::{SessionStart, SessionSummary, SqliteStore};

    fn ident(subject: &str, groups: &[&str]) -> Identity {
        Identity {
            subject: subject.into(),
            name: subject.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            method: AuthMethod::Builtin,
            expires_at: None,
        }
    }

    fn auth() -> AuthConfig {
        AuthConfig {
            admins: vec!["sre".into()],
            auditors: vec!["audit".into()],
            ..AuthConfig::default()
        }
    }

    fn start(id: &str, subject: &str, at: i64) -> SessionStart {
        SessionStart {
            id: id.into(),
            subject: subject.into(),
            name: subject.into(),
            connection: "db".into(),
            kind: "postgres".into(),
            client_addr: None,
            started_at_ms: at,
        }
    }

    fn stmt(session: &str, seq: u64) -> StatementRecord {
        StatementRecord {
            session_id: session.into(),
            seq,
            at_ms: 1_000 + seq as i64,
            text: format!("SELECT {seq}").into(),
            params: vec![],
            verdict: "allow".into(),
            rule: None,
            reason: None,
            outcome: "ok".into(),
            tag: Some("SELECT 1".into()),
            sqlstate: None,
            rows: Some(1),
            duration_us: 10,
            masked: MaskCounts::default(),
        }
    }

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        s.session_insert(&start("a1", "alice", 1_000))
            .await
            .unwrap();
        s.session_insert(&start("b1", "bob", 2_000)).await.unwrap();
        s.statements_insert(&[stmt("a1", 1), stmt("a1", 2), stmt("a1", 3)])
            .await
            .unwrap();
        s.session_finish(
            "a1",
            &SessionSummary {
                ended_at_ms: 5_500,
                bytes_up: 10,
                bytes_down: 20,
                statements: 3,
                blocked: 0,
                masked: MaskCounts::default(),
                end_reason: "client closed".into(),
            },
        )
        .await
        .unwrap();
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn users_see_only_their_own_sessions() {
        let (_d, s) = store().await;
        let a = auth();
        let ids = |v: Vec<SessionInfo>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        let alice = ident("alice", &["dev"]);
        let mine = list_sessions(s.as_ref(), &a, &alice, ListQuery::default())
            .await
            .unwrap();
        assert_eq!(ids(mine), ["a1"]);
        // Asking for someone else's sessions narrows to nothing rather than widening.
        let q = ListQuery {
            user: Some("bob".into()),
            ..ListQuery::default()
        };
        assert!(
            list_sessions(s.as_ref(), &a, &alice, q)
                .await
                .unwrap()
                .is_empty()
        );
        for who in [ident("root", &["sre"]), ident("eve", &["audit"])] {
            let all = list_sessions(s.as_ref(), &a, &who, ListQuery::default())
                .await
                .unwrap();
            assert_eq!(ids(all), ["b1", "a1"], "newest first");
        }
    }

    #[tokio::test]
    async fn another_users_session_is_not_found() {
        let (_d, s) = store().await;
        let a = auth();
        let bob = ident("bob", &[]);
        let e = visible_session(s.as_ref(), &a, &bob, "a1")
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let missing = visible_session(s.as_ref(), &a, &bob, "zz")
            .await
            .unwrap_err();
        assert_eq!(missing.body, e.body, "indistinguishable from a missing id");
        let e = session_statements(s.as_ref(), &a, &bob, "a1", PageQuery::default())
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let own = visible_session(s.as_ref(), &a, &bob, "b1").await.unwrap();
        let info = session_info(own);
        assert_eq!(info.state, SessionState::Active);
        assert_eq!(info.ended_at, None);
    }

    #[tokio::test]
    async fn shapes_times_and_paging() {
        let (_d, s) = store().await;
        let a = auth();
        let alice = ident("alice", &[]);
        let info = session_info(visible_session(s.as_ref(), &a, &alice, "a1").await.unwrap());
        assert_eq!(info.state, SessionState::Ended);
        assert_eq!(info.started_at, "1970-01-01T00:00:01Z");
        assert_eq!(info.ended_at.as_deref(), Some("1970-01-01T00:00:05.5Z"));
        assert_eq!(info.duration_ms, Some(4_500));
        let page = PageQuery {
            after: Some("1".into()),
            limit: Some("1".into()),
        };
        let st = session_statements(s.as_ref(), &a, &alice, "a1", page)
            .await
            .unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].seq, 2);
        assert_eq!(st[0].text, "SELECT 2");

        let since = ListQuery {
            since: Some("1970-01-01T00:00:01.5Z".into()),
            ..ListQuery::default()
        };
        let root = ident("root", &["sre"]);
        let l = list_sessions(s.as_ref(), &a, &root, since).await.unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].id, "b1");

        for bad in [
            ListQuery {
                since: Some("yesterday".into()),
                ..ListQuery::default()
            },
            ListQuery {
                limit: Some("0".into()),
                ..ListQuery::default()
            },
        ] {
            let e = list_sessions(s.as_ref(), &a, &root, bad).await.unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
