//! `/api/v1/reviews`: file access requests, list and read reviews, wait for a decision (long
//! poll), approve, reject, revoke and withdraw.
//!
//! A review is visible to its requester, the members of its approver groups, admins and
//! auditors; anyone else gets 404 as for a missing id. Decisions are not hidden that way: a
//! caller outside the approver groups is told which groups may decide (403), which is what they
//! need to find the right person.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hoop_shared::api::{
    AccessRequest, ApproveRequest, RejectRequest, ReviewDecisionInfo, ReviewInfo,
    ReviewStatementInfo,
};
use serde::Deserialize;

use super::{ApiFailure, AppState, Caller};
use crate::auth::Identity;
use crate::config::{AuthConfig, Config};
use crate::reviews::{Review, ReviewError, ReviewFilter, ReviewId, ReviewState, Reviews};
use crate::util::unix_to_rfc3339;

/// Reviews per listing unless `limit` says otherwise.
const DEFAULT_LIST_LIMIT: u32 = 50;
/// The most reviews one listing returns.
const MAX_LIST_LIMIT: u32 = 1000;
/// A long poll answers after this long unless `timeout` says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(25);
/// The longest long poll: proxies and load balancers cut idle requests not much later.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reviews", get(list).post(create))
        .route("/api/v1/reviews/{id}", get(show))
        .route("/api/v1/reviews/{id}/wait", get(wait))
        .route("/api/v1/reviews/{id}/approve", post(approve))
        .route("/api/v1/reviews/{id}/reject", post(reject))
        .route("/api/v1/reviews/{id}/revoke", post(revoke))
        .route("/api/v1/reviews/{id}/withdraw", post(withdraw))
}

/// `?scope=mine|to-approve|all&limit=`
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    scope: Option<String>,
    limit: Option<String>,
}

/// `?timeout=<seconds>`
#[derive(Debug, Default, Deserialize)]
struct WaitQuery {
    timeout: Option<String>,
}

fn bad_request(message: impl Into<String>) -> ApiFailure {
    ApiFailure::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// Maps a service error onto a status: 404, 409 (not pending: the code names the state, e.g.
/// `already_rejected`, so clients can tell a dead review from a decided one), 403, 400.
fn failure(e: ReviewError) -> ApiFailure {
    let message = e.to_string();
    match e {
        ReviewError::NotFound(_) => ApiFailure::new(StatusCode::NOT_FOUND, "not_found", message),
        ReviewError::NotPending { state, .. } => ApiFailure::new(
            StatusCode::CONFLICT,
            &format!("already_{}", state.as_str()),
            message,
        ),
        ReviewError::AlreadyDecided { .. } => {
            ApiFailure::new(StatusCode::CONFLICT, "already_decided", message)
        }
        ReviewError::Forbidden(_) => ApiFailure::new(StatusCode::FORBIDDEN, "forbidden", message),
        ReviewError::Invalid(_) => bad_request(message),
        ReviewError::Storage(_) => ApiFailure::internal(message),
    }
}

fn query<T: Default>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiFailure> {
    q.map(|Query(q)| q)
        .map_err(|e| bad_request(format!("bad query string: {}", e.body_text())))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiFailure> {
    b.map(|Json(b)| b)
        .map_err(|e| bad_request(format!("bad request body: {}", e.body_text())))
}

/// The id as typed; anything that is not a number is a review that does not exist.
fn parse_id(s: &str) -> Result<ReviewId, ApiFailure> {
    s.trim().parse::<ReviewId>().map_err(|_| {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no review {s:?}: review ids are numbers"),
        )
    })
}

fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// True when the caller reads every review.
fn sees_all(auth: &AuthConfig, id: &Identity) -> bool {
    id.in_any(&auth.admins) || id.in_any(&auth.auditors)
}

fn may_see(auth: &AuthConfig, caller: &Identity, r: &Review) -> bool {
    r.requester == caller.subject || caller.in_any(&r.approvers) || sees_all(auth, caller)
}

/// The review if the caller may read it; 404 otherwise, whether it exists or not.
async fn visible(
    reviews: &Reviews,
    auth: &AuthConfig,
    caller: &Identity,
    id: ReviewId,
) -> Result<Review, ApiFailure> {
    match reviews.get(id).await {
        Ok(r) if may_see(auth, caller, &r) => Ok(r),
        Ok(_) => Err(failure(ReviewError::NotFound(id))),
        Err(e) => Err(failure(e)),
    }
}

/// The wire shape of a review.
pub fn review_info(r: Review) -> ReviewInfo {
    ReviewInfo {
        approvals: u32::try_from(r.approvals()).unwrap_or(u32::MAX),
        id: r.id,
        kind: r.kind.as_str().to_string(),
        connection: r.connection,
        requester: r.requester,
        requester_name: r.requester_name,
        reason: r.reason,
        statement: r.statement,
        statements: r
            .statements
            .into_iter()
            .map(|st| ReviewStatementInfo {
                text: st.text,
                params: st.params,
                note: st.note,
            })
            .collect(),
        session_id: r.session_id,
        state: r.state.as_str().to_string(),
        created_at: unix_to_rfc3339(r.created_at),
        expires_at: unix_to_rfc3339(r.expires_at),
        updated_at: unix_to_rfc3339(r.updated_at),
        duration_secs: r.duration_secs,
        window_ends_at: r.window_ends_at.map(unix_to_rfc3339),
        min_approvals: r.min_approvals,
        approvers: r.approvers,
        decisions: r
            .decisions
            .into_iter()
            .map(|d| ReviewDecisionInfo {
                by: d.by,
                name: d.name,
                at: unix_to_rfc3339(d.at),
                decision: d.decision,
                comment: d.comment,
            })
            .collect(),
    }
}

async fn file_access(
    reviews: &Reviews,
    config: &Config,
    caller: &Identity,
    req: AccessRequest,
) -> Result<Review, ApiFailure> {
    let Some(conn) = config.connections.iter().find(|c| c.name == req.connection) else {
        return Err(ApiFailure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no connection named {:?}", req.connection),
        ));
    };
    let duration = Duration::from_secs(req.duration_secs);
    reviews
        .request_access(conn, caller, &req.reason, duration)
        .await
        .map_err(failure)
}

async fn list_reviews(
    reviews: &Reviews,
    auth: &AuthConfig,
    caller: &Identity,
    q: ListQuery,
) -> Result<Vec<ReviewInfo>, ApiFailure> {
    let limit = match given(q.limit) {
        None => DEFAULT_LIST_LIMIT,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => n.min(MAX_LIST_LIMIT),
            _ => {
                return Err(bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIST_LIMIT}, got {v:?}"
                )));
            }
        },
    };
    let filter = match given(q.scope).as_deref().unwrap_or("mine") {
        "mine" => ReviewFilter {
            requester: Some(caller.subject.clone()),
            limit,
            ..ReviewFilter::default()
        },
        "to-approve" => ReviewFilter {
            approvable_by: Some(caller.clone()),
            states: vec![ReviewState::Pending],
            limit,
            ..ReviewFilter::default()
        },
        "all" if sees_all(auth, caller) => ReviewFilter {
            limit,
            ..ReviewFilter::default()
        },
        "all" => {
            let mut groups = auth.admins.clone();
            groups.extend(auth.auditors.iter().cloned());
            return Err(ApiFailure::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                if groups.is_empty() {
                    "only admins and auditors list every review, and none are configured"
                        .to_string()
                } else {
                    format!(
                        "only admins and auditors ({}) list every review",
                        groups.join(", ")
                    )
                },
            ));
        }
        other => {
            return Err(bad_request(format!(
                "scope must be mine, to-approve or all, got {other:?}"
            )));
        }
    };
    let list = reviews.list(&filter).await.map_err(failure)?;
    Ok(list.into_iter().map(review_info).collect())
}

fn wait_timeout(q: WaitQuery) -> Result<Duration, ApiFailure> {
    match given(q.timeout) {
        None => Ok(DEFAULT_WAIT),
        Some(v) => v
            .parse::<u64>()
            .map(|s| Duration::from_secs(s).min(MAX_WAIT))
            .map_err(|_| {
                bad_request(format!(
                    "timeout must be whole seconds (at most {}), got {v:?}",
                    MAX_WAIT.as_secs()
                ))
            }),
    }
}

async fn create(
    State(s): State<AppState>,
    Caller(id): Caller,
    req: Result<Json<AccessRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ReviewInfo>), ApiFailure> {
    let req = body(req)?;
    let r = file_access(&s.reviews, &s.config, &id, req).await?;
    Ok((StatusCode::CREATED, Json(review_info(r))))
}

async fn list(
    State(s): State<AppState>,
    Caller(id): Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<ReviewInfo>>, ApiFailure> {
    let q = query(q)?;
    list_reviews(&s.reviews, &s.config.auth, &id, q)
        .await
        .map(Json)
}

async fn show(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(review): Path<String>,
) -> Result<Json<ReviewInfo>, ApiFailure> {
    let review = parse_id(&review)?;
    visible(&s.reviews, &s.config.auth, &id, review)
        .await
        .map(|r| Json(review_info(r)))
}

async fn wait(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(review): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<ReviewInfo>, ApiFailure> {
    let review = parse_id(&review)?;
    let timeout = wait_timeout(query(q)?)?;
    visible(&s.reviews, &s.config.auth, &id, review).await?;
    s.reviews
        .wait(review, timeout)
        .await
        .map(|r| Json(review_info(r)))
        .map_err(failure)
}

async fn approve(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(review): Path<String>,
    raw: Bytes,
) -> Result<Json<ReviewInfo>, ApiFailure> {
    let review = parse_id(&review)?;
    // The body is optional: an approval needs no comment.
    let req: ApproveRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        ApproveRequest::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("bad request body: {e}")))?
    };
    s.reviews
        .approve(review, &id, req.comment.as_deref())
        .await
        .map(|r| Json(review_info(r)))
        .map_err(failure)
}

async fn reject(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(review): Path<String>,
    req: Result<Json<RejectRequest>, JsonRejection>,
) -> Result<Json<ReviewInfo>, ApiFailure> {
    let review = parse_id(&review)?;
    let req = body(req)?;
    s.reviews
        .reject(review, &id, &req.reason)
        .await
        .map(|r| Json(review_info(r)))
        .map_err(failure)
}

async fn revoke(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(review): Path<String>,
) -> Result<Json<ReviewInfo>, ApiFailure> {
    let review = parse_id(&review)?;
    s.reviews
        .revoke(review, &id)
        .await
        .map(|r| Json(review_info(r)))
        .map_err(failure)
}

async fn withdraw(
    State(s): State<AppState>,
    Caller(id): Caller,
    Path(review): Path<String>,
) -> Result<Json<ReviewInfo>, ApiFailure> {
    let review = parse_id(&review)?;
    s.reviews
        .withdraw(review, &id)
        .await
        .map(|r| Json(review_info(r)))
        .map_err(failure)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::Arc;

    use hoop_shared::api::AuthMethod;

    use super::*;
    use crate::audit::AuditLog;
    use crate::store::{SqliteStore, Store};

    const CONFIG: &str = r#"
[auth]
admins = ["root"]
auditors = ["audit"]

[[connections]]
name = "prod"
type = "postgres"
address = "127.0.0.1:1"
database = "d"
user = "u"
allow = ["eng"]
review = { access = true, approvers = ["dba"], max_duration = "1h" }
"#;

    fn ident(subject: &str, groups: &[&str]) -> Identity {
        Identity {
            subject: subject.into(),
            name: subject.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            method: AuthMethod::Oidc,
            expires_at: None,
        }
    }

    async fn setup() -> (tempfile::TempDir, Arc<Reviews>, Config) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let reviews = Reviews::new(store.clone(), AuditLog::start(store), vec!["root".into()]);
        (dir, reviews, Config::parse(CONFIG).unwrap())
    }

    fn request(connection: &str, secs: u64) -> AccessRequest {
        AccessRequest {
            connection: connection.into(),
            reason: "INC-9".into(),
            duration_secs: secs,
        }
    }

    #[tokio::test]
    async fn filing_checks_the_connection_and_the_caller() {
        let (_d, reviews, config) = setup().await;
        let alice = ident("alice", &["eng"]);
        let e = file_access(&reviews, &config, &alice, request("nope", 60))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = file_access(
            &reviews,
            &config,
            &ident("mallory", &["x"]),
            request("prod", 60),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.body.message.contains("eng"), "{}", e.body.message);
        let e = file_access(&reviews, &config, &alice, request("prod", 7200))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.body.message.contains("1h"), "{}", e.body.message);
        let r = file_access(&reviews, &config, &alice, request("prod", 600))
            .await
            .unwrap();
        let info = review_info(r.clone());
        assert_eq!(
            (info.kind.as_str(), info.state.as_str()),
            ("access", "pending")
        );
        assert_eq!(info.duration_secs, Some(600));
        assert!(info.created_at.ends_with('Z'), "{}", info.created_at);
        assert_eq!(info.window_ends_at, None);

        // Decided: 409 naming the state.
        reviews
            .reject(r.id, &ident("bob", &["dba"]), "no")
            .await
            .unwrap();
        let e = failure(
            reviews
                .approve(r.id, &ident("dora", &["dba"]), None)
                .await
                .unwrap_err(),
        );
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.body.error, "already_rejected");
        assert_eq!(
            e.body.message,
            format!("review {} is already rejected", r.id)
        );
    }

    #[tokio::test]
    async fn visibility_and_scopes() {
        let (_d, reviews, config) = setup().await;
        let auth = &config.auth;
        let alice = ident("alice", &["eng"]);
        let r = file_access(&reviews, &config, &alice, request("prod", 600))
            .await
            .unwrap();
        for who in [
            alice.clone(),
            ident("bob", &["dba"]),
            ident("root", &["root"]),
            ident("eve", &["audit"]),
        ] {
            assert!(
                visible(&reviews, auth, &who, r.id).await.is_ok(),
                "{}",
                who.subject
            );
        }
        let outsider = visible(&reviews, auth, &ident("carol", &["eng"]), r.id)
            .await
            .unwrap_err();
        let missing = visible(&reviews, auth, &ident("carol", &["eng"]), 999)
            .await
            .unwrap_err();
        assert_eq!(outsider.status, StatusCode::NOT_FOUND);
        assert_eq!(outsider.body.error, missing.body.error);

        let scope = |s: &str| ListQuery {
            scope: Some(s.into()),
            limit: None,
        };
        let ids = |v: Vec<ReviewInfo>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        let bob = ident("bob", &["dba"]);
        assert_eq!(
            ids(list_reviews(&reviews, auth, &alice, ListQuery::default())
                .await
                .unwrap()),
            [r.id]
        );
        assert!(
            list_reviews(&reviews, auth, &bob, scope("mine"))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ids(list_reviews(&reviews, auth, &bob, scope("to-approve"))
                .await
                .unwrap()),
            [r.id]
        );
        assert!(
            list_reviews(&reviews, auth, &alice, scope("to-approve"))
                .await
                .unwrap()
                .is_empty()
        );
        let e = list_reviews(&reviews, auth, &bob, scope("all"))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.body.message.contains("root, audit"), "{}", e.body.message);
        let eve = ident("eve", &["audit"]);
        assert_eq!(
            ids(list_reviews(&reviews, auth, &eve, scope("all"))
                .await
                .unwrap()),
            [r.id]
        );
        let e = list_reviews(&reviews, auth, &eve, scope("everything"))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn ids_and_timeouts_parse() {
        assert_eq!(parse_id("42").unwrap(), 42);
        assert_eq!(parse_id("x").unwrap_err().status, StatusCode::NOT_FOUND);
        let t = |v: Option<&str>| {
            wait_timeout(WaitQuery {
                timeout: v.map(str::to_string),
            })
        };
        assert_eq!(t(None).unwrap(), DEFAULT_WAIT);
        assert_eq!(t(Some("5")).unwrap(), Duration::from_secs(5));
        assert_eq!(t(Some("600")).unwrap(), MAX_WAIT);
        assert_eq!(t(Some("soon")).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
