#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Instant;

use hoop_shared::api::AuthMethod;

use super::*;
use crate::config::Config;
use crate::store::SqliteStore;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    reviews: Arc<Reviews>,
    config: Config,
}

const CONFIG: &str = r#"
[[connections]]
name = "prod"
type = "postgres"
address = "127.0.0.1:1"
database = "d"
user = "u"
allow = ["eng"]
review = { access = true, approvers = ["dba", "sre"], max_duration = "2h" }

[[connections]]
name = "shop"
type = "postgres"
address = "127.0.0.1:1"
database = "d"
user = "u"
allow = ["eng"]
review = { statements = ["write"], approvers = ["dba"], min_approvals = 2, statement_timeout = "1s" }
"#;

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let audit = AuditLog::start(store.clone());
    let reviews = Reviews::new(store.clone(), audit, vec!["admin".into()]);
    Env {
        _dir: dir,
        store,
        reviews,
        config: Config::parse(CONFIG).unwrap(),
    }
}

impl Env {
    fn conn(&self, name: &str) -> &ConnectionConfig {
        self.config
            .connections
            .iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    async fn access(&self, who: &Identity) -> Review {
        self.reviews
            .request_access(self.conn("prod"), who, "INC-1", Duration::from_secs(1800))
            .await
            .unwrap()
    }

    async fn statement(&self, who: &Identity) -> Review {
        self.reviews
            .request_statement(
                self.conn("shop"),
                who,
                "UPDATE t SET a = '***'",
                "UPDATE t SET a = 'x'",
                "sess-1",
                "write",
            )
            .await
            .unwrap()
    }

    /// Kinds of the audit events so far, in order.
    async fn audited(&self) -> Vec<serde_json::Value> {
        self.store
            .audit_range(0, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.bytes).unwrap())
            .collect()
    }

    async fn audited_kinds(&self) -> Vec<String> {
        self.audited()
            .await
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }
}

fn ident(subject: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: subject.into(),
        name: format!("{subject} name"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        method: AuthMethod::Oidc,
        expires_at: None,
    }
}

fn alice() -> Identity {
    ident("alice", &["eng"])
}
fn bob() -> Identity {
    ident("bob", &["dba"])
}
fn dave() -> Identity {
    ident("dave", &["dba", "eng"])
}
fn carol() -> Identity {
    ident("carol", &["eng"])
}

#[tokio::test]
async fn self_approval_is_refused() {
    let e = env().await;
    // Alice is an approver too: still not for her own request.
    let alice = ident("alice", &["eng", "dba"]);
    let r = e.access(&alice).await;
    let err = e.reviews.approve(r.id, &alice, None).await.unwrap_err();
    assert!(matches!(err, ReviewError::Forbidden(_)), "{err:?}");
    assert_eq!(err.to_string(), "you cannot approve your own request");
    let err = e.reviews.reject(r.id, &alice, "no").await.unwrap_err();
    assert!(matches!(err, ReviewError::Forbidden(_)), "{err:?}");
    assert_eq!(
        e.reviews.get(r.id).await.unwrap().state,
        ReviewState::Pending
    );
}

#[tokio::test]
async fn non_approver_is_told_which_groups_may_approve() {
    let e = env().await;
    let r = e.access(&alice()).await;
    let err = e.reviews.approve(r.id, &carol(), None).await.unwrap_err();
    assert!(matches!(err, ReviewError::Forbidden(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("dba, sre"), "{msg}");
    assert!(msg.contains(&format!("review {}", r.id)), "{msg}");
    let err = e.reviews.approve(9999, &bob(), None).await.unwrap_err();
    assert!(matches!(err, ReviewError::NotFound(9999)), "{err:?}");
}

#[tokio::test]
async fn two_approvals_need_two_people() {
    let e = env().await;
    let r = e.statement(&alice()).await;
    assert_eq!(
        (r.min_approvals, r.approvers.clone()),
        (2, vec!["dba".to_string()])
    );
    assert_eq!(r.reason.as_deref(), Some("write"));
    let once = e.reviews.approve(r.id, &bob(), Some("fine")).await.unwrap();
    assert_eq!(once.state, ReviewState::Pending);
    assert_eq!(once.approvals(), 1);
    assert_eq!(once.decisions[0].comment.as_deref(), Some("fine"));
    let err = e.reviews.approve(r.id, &bob(), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("you already approved review {}", r.id)
    );
    assert_eq!(e.reviews.get(r.id).await.unwrap().approvals(), 1);
    let twice = e.reviews.approve(r.id, &dave(), None).await.unwrap();
    assert_eq!(twice.state, ReviewState::Approved);
    assert_eq!(twice.window_ends_at, None, "statements have no window");
    e.reviews.mark_executed(r.id).await.unwrap();
    assert_eq!(
        e.reviews.get(r.id).await.unwrap().state,
        ReviewState::Executed
    );
    let kinds = e.audited_kinds().await;
    let approvals: Vec<_> = e
        .audited()
        .await
        .into_iter()
        .filter(|ev| ev["kind"] == "review.approved")
        .map(|ev| {
            (
                ev["details"]["approvals"].as_u64(),
                ev["details"]["min_approvals"].as_u64(),
            )
        })
        .collect();
    assert_eq!(approvals, [(Some(1), Some(2)), (Some(2), Some(2))]);
    assert!(kinds.contains(&"review.executed".to_string()), "{kinds:?}");
    // The statement is never in the audit log.
    for ev in e.audited().await {
        assert!(!ev.to_string().contains("UPDATE t"), "{ev}");
    }
}

#[tokio::test]
async fn one_rejection_rejects() {
    let e = env().await;
    let r = e.statement(&alice()).await;
    let err = e.reviews.reject(r.id, &bob(), "  ").await.unwrap_err();
    assert!(matches!(err, ReviewError::Invalid(_)), "{err:?}");
    let done = e.reviews.reject(r.id, &bob(), "not now").await.unwrap();
    assert_eq!(done.state, ReviewState::Rejected);
    assert_eq!(done.decisions[0].decision, "reject");
    assert_eq!(done.decisions[0].comment.as_deref(), Some("not now"));
    let err = e.reviews.approve(r.id, &dave(), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("review {} is already rejected", r.id)
    );
    assert!(
        e.audited_kinds()
            .await
            .contains(&"review.rejected".to_string())
    );
}

#[tokio::test]
async fn only_the_requester_withdraws_a_pending_review() {
    let e = env().await;
    let r = e.access(&alice()).await;
    let err = e.reviews.withdraw(r.id, &bob()).await.unwrap_err();
    assert!(matches!(err, ReviewError::Forbidden(_)), "{err:?}");
    let w = e.reviews.withdraw(r.id, &alice()).await.unwrap();
    assert_eq!(w.state, ReviewState::Withdrawn);
    let err = e.reviews.withdraw(r.id, &alice()).await.unwrap_err();
    assert!(matches!(
        err,
        ReviewError::NotPending {
            state: ReviewState::Withdrawn,
            ..
        }
    ));
    let err = e.reviews.approve(r.id, &bob(), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("review {} is already withdrawn", r.id)
    );
    assert!(
        e.audited_kinds()
            .await
            .contains(&"review.withdrawn".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_apply_one_transition() {
    let e = env().await;
    for _ in 0..5 {
        let r = e.access(&alice()).await;
        // Two tasks, so on two worker threads both may pass the pending check before either
        // writes: the store's guarded transaction must let only one through.
        let (r1, r2) = (e.reviews.clone(), e.reviews.clone());
        let ta = tokio::spawn(async move { r1.approve(r.id, &bob(), None).await });
        let tb = tokio::spawn(async move { r2.approve(r.id, &ident("sam", &["sre"]), None).await });
        let (a, b) = (ta.await.unwrap(), tb.await.unwrap());
        let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
        assert_eq!(oks, 1, "{a:?} / {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert!(
            matches!(
                loser,
                Err(ReviewError::NotPending {
                    state: ReviewState::Approved,
                    ..
                })
            ),
            "{loser:?}"
        );
        let now = e.reviews.get(r.id).await.unwrap();
        assert_eq!(now.state, ReviewState::Approved);
        assert_eq!(now.decisions.len(), 1);
        // Next round: a fresh request (the grant is revoked so a new one is filed).
        e.reviews.revoke(r.id, &alice()).await.unwrap();
    }
    let approved = e
        .audited_kinds()
        .await
        .iter()
        .filter(|k| *k == "review.approved")
        .count();
    assert_eq!(approved, 5);
}

#[tokio::test]
async fn access_requests_are_checked_and_idempotent() {
    let e = env().await;
    let prod = e.conn("prod");
    let long = e
        .reviews
        .request_access(prod, &alice(), "x", Duration::from_secs(3 * 3600))
        .await
        .unwrap_err();
    assert!(matches!(long, ReviewError::Invalid(_)));
    assert!(long.to_string().contains("2h"), "{long}");
    let no_reason = e
        .reviews
        .request_access(prod, &alice(), " ", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(no_reason, ReviewError::Invalid(_)));
    let not_reviewed = e
        .reviews
        .request_access(e.conn("shop"), &alice(), "x", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(not_reviewed, ReviewError::Invalid(_)));
    let outsider = e
        .reviews
        .request_access(prod, &bob(), "x", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(outsider, ReviewError::Forbidden(_)));

    let first = e.access(&alice()).await;
    assert_eq!(first.kind, ReviewKind::Access);
    assert_eq!(first.duration_secs, Some(1800));
    assert!(first.expires_at >= first.created_at + 3600);
    let again = e.access(&alice()).await;
    assert_eq!(
        again.id, first.id,
        "a pending request is returned, not filed twice"
    );
    assert!(
        e.reviews
            .active_grant("prod", "alice")
            .await
            .unwrap()
            .is_none()
    );
    let approved = e.reviews.approve(first.id, &bob(), None).await.unwrap();
    let ends = approved.window_ends_at.unwrap();
    assert!((approved.updated_at + 1800..=approved.updated_at + 1801).contains(&ends));
    let again = e.access(&alice()).await;
    assert_eq!((again.id, again.state), (first.id, ReviewState::Approved));
    let kinds = e.audited_kinds().await;
    assert_eq!(kinds.iter().filter(|k| *k == "review.requested").count(), 1);
}

#[tokio::test]
async fn grants_share_one_token_and_revoke_cancels_it() {
    let e = env().await;
    let r = e.access(&alice()).await;
    e.reviews.approve(r.id, &bob(), None).await.unwrap();
    let g1 = e
        .reviews
        .active_grant("prod", "alice")
        .await
        .unwrap()
        .unwrap();
    let g2 = e
        .reviews
        .active_grant("prod", "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g1.review, r.id);
    assert!(
        e.reviews
            .active_grant("prod", "bob")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        e.reviews
            .active_grant("other", "alice")
            .await
            .unwrap()
            .is_none()
    );
    let err = e.reviews.revoke(r.id, &carol()).await.unwrap_err();
    assert!(matches!(err, ReviewError::Forbidden(_)), "{err:?}");
    let revoked = e
        .reviews
        .revoke(r.id, &ident("root", &["admin"]))
        .await
        .unwrap();
    assert_eq!(revoked.state, ReviewState::Revoked);
    assert!(g1.ended.is_cancelled() && g2.ended.is_cancelled());
    assert!(
        e.reviews
            .active_grant("prod", "alice")
            .await
            .unwrap()
            .is_none()
    );
    let err = e.reviews.revoke(r.id, &bob()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("review {} is already revoked", r.id)
    );
    assert!(
        e.audited_kinds()
            .await
            .contains(&"review.revoked".to_string())
    );
}

#[tokio::test]
async fn pending_reviews_expire() {
    let e = env().await;
    let r = e.access(&alice()).await;
    assert_eq!(e.reviews.expire_due(now()).await.unwrap(), 0);
    assert_eq!(e.reviews.expire_due(r.expires_at).await.unwrap(), 1);
    let r = e.reviews.get(r.id).await.unwrap();
    assert_eq!(r.state, ReviewState::Expired);
    let err = e.reviews.approve(r.id, &bob(), None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("review {} is already expired", r.id)
    );
    let ev = e
        .audited()
        .await
        .into_iter()
        .find(|ev| ev["kind"] == "review.expired")
        .unwrap();
    assert_eq!(ev["actor"], serde_json::Value::Null);
    assert_eq!(ev["details"]["was"], "pending");
    // A new request is filed once the old one expired.
    assert_ne!(e.access(&alice()).await.id, r.id);
}

#[tokio::test]
async fn the_expiry_task_ends_unanswered_statements() {
    let e = env().await;
    // statement_timeout is 1 s: the task expires it within about a sweep after that.
    let r = e.statement(&alice()).await;
    let started = Instant::now();
    let done = e.reviews.wait(r.id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(done.state, ReviewState::Expired);
    assert!(
        started.elapsed() < Duration::from_millis(2600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_ended_access_window_cancels_the_grant() {
    let e = env().await;
    let r = e.access(&alice()).await;
    let approved = e.reviews.approve(r.id, &bob(), None).await.unwrap();
    let grant = e
        .reviews
        .active_grant("prod", "alice")
        .await
        .unwrap()
        .unwrap();
    let ends = approved.window_ends_at.unwrap();
    assert_eq!(grant.ends_at, ends);
    assert_eq!(e.reviews.expire_due(ends - 1).await.unwrap(), 0);
    assert!(!grant.ended.is_cancelled());
    assert_eq!(e.reviews.expire_due(ends).await.unwrap(), 1);
    assert!(grant.ended.is_cancelled());
    assert_eq!(
        e.reviews.get(r.id).await.unwrap().state,
        ReviewState::Expired
    );
    let ev = e
        .audited()
        .await
        .into_iter()
        .find(|ev| ev["kind"] == "review.expired")
        .unwrap();
    assert_eq!(ev["details"]["was"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_wakes_promptly_on_a_decision() {
    let e = env().await;
    let r = e.access(&alice()).await;
    let timed_out = e
        .reviews
        .wait(r.id, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(timed_out.state, ReviewState::Pending);
    let reviews = e.reviews.clone();
    let waiter = tokio::spawn(async move {
        let r = reviews.wait(r.id, Duration::from_secs(10)).await.unwrap();
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.reviews.approve(r.id, &bob(), None).await.unwrap();
    let decided_at = Instant::now();
    let (got, woke_at) = waiter.await.unwrap();
    assert_eq!(got.state, ReviewState::Approved);
    let lag = woke_at.saturating_duration_since(decided_at);
    assert!(
        lag < Duration::from_millis(100),
        "woke {lag:?} after the decision"
    );
}

#[tokio::test]
async fn listings_scope_by_requester_and_approver() {
    let e = env().await;
    let a = e.access(&alice()).await;
    let s = e.statement(&alice()).await;
    let c = e.access(&ident("carl", &["eng", "sre"])).await;
    let ids = |v: Vec<Review>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let mine = e
        .reviews
        .list(&ReviewFilter {
            requester: Some("alice".into()),
            ..ReviewFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(mine), [s.id, a.id]);
    let for_bob = ReviewFilter {
        approvable_by: Some(bob()),
        ..ReviewFilter::default()
    };
    assert_eq!(
        ids(e.reviews.list(&for_bob).await.unwrap()),
        [c.id, s.id, a.id]
    );
    // carl (sre) may approve alice's access request but not his own, nor the dba-only one.
    let for_carl = ReviewFilter {
        approvable_by: Some(ident("carl", &["sre"])),
        ..ReviewFilter::default()
    };
    assert_eq!(ids(e.reviews.list(&for_carl).await.unwrap()), [a.id]);
    // Once bob approved, it leaves his list.
    e.reviews.approve(s.id, &bob(), None).await.unwrap();
    assert_eq!(ids(e.reviews.list(&for_bob).await.unwrap()), [c.id, a.id]);
    let all = e.reviews.list(&ReviewFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    let limited = ReviewFilter {
        limit: 1,
        ..ReviewFilter::default()
    };
    assert_eq!(ids(e.reviews.list(&limited).await.unwrap()), [c.id]);
}

#[tokio::test]
async fn an_approved_statement_runs_once_for_its_requester_and_exact_text() {
    let e = env().await;
    let r = e.statement(&alice()).await;
    // Not approved yet.
    let err = e
        .reviews
        .execute_approved(r.id, &alice(), "shop", "UPDATE t SET a = 'x'", "s2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("still pending"), "{err}");
    e.reviews.approve(r.id, &bob(), None).await.unwrap();
    e.reviews.approve(r.id, &dave(), None).await.unwrap();
    // Another statement, another connection, another person: refused, nothing consumed.
    let err = e
        .reviews
        .execute_approved(r.id, &alice(), "shop", "UPDATE t SET a = 'y'", "s2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("different statement"), "{err}");
    let err = e
        .reviews
        .execute_approved(r.id, &alice(), "prod", "UPDATE t SET a = 'x'", "s2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is for connection"), "{err}");
    let err = e
        .reviews
        .execute_approved(r.id, &carol(), "shop", "UPDATE t SET a = 'x'", "s2")
        .await
        .unwrap_err();
    assert!(matches!(err, ReviewError::NotFound(_)), "{err:?}");
    e.reviews
        .execute_approved(r.id, &alice(), "shop", "UPDATE t SET a = 'x'", "s2")
        .await
        .unwrap();
    assert_eq!(
        e.reviews.get(r.id).await.unwrap().state,
        ReviewState::Executed
    );
    // Once only.
    let err = e
        .reviews
        .execute_approved(r.id, &alice(), "shop", "UPDATE t SET a = 'x'", "s3")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ReviewError::NotPending {
                state: ReviewState::Executed,
                ..
            }
        ),
        "{err:?}"
    );
    // The digest is salted per review and never holds the text.
    let d = e.reviews.get(r.id).await.unwrap().statement_digest.unwrap();
    assert!(!d.contains("UPDATE"), "{d}");
    assert_ne!(
        crate::reviews::statement_digest("x", None),
        crate::reviews::statement_digest("x", None)
    );
}

#[tokio::test]
async fn a_client_leaving_as_its_statement_is_approved_withdraws_it() {
    use hoop_shared::exec::ExecReviewMode;
    let e = env().await;
    let who = alice();
    let shown = [ReviewedStatement {
        text: "UPDATE t SET a = $1".into(),
        params: vec![Some("5".into())],
        note: None,
    }];
    let h = Hold {
        connection: e.conn("shop"),
        identity: &who,
        mode: ExecReviewMode::Hold,
        masked: "UPDATE t SET a = $1",
        exact: "\0batch\nUPDATE t SET a = $1\0ab\n",
        session_id: "s1",
        rule: "write",
    };
    let filed_id = std::sync::Mutex::new(None);
    let reviews = e.reviews.clone();
    // The client goes away only once the approval has landed: the cancel must still win the
    // record (nothing will run), not leave an approved review behind.
    let cancel = async {
        let id = loop {
            if let Some(id) = *filed_id.lock().unwrap() {
                break id;
            }
            tokio::task::yield_now().await;
        };
        reviews.approve(id, &bob(), None).await.unwrap();
        Withdrawn::Canceled
    };
    let r = e
        .reviews
        .hold_statements(
            h,
            &shown,
            async |id, _| {
                *filed_id.lock().unwrap() = Some(id);
                Ok(())
            },
            cancel,
        )
        .await;
    assert!(matches!(r, Err(NotRun::Refused(_))), "{r:?}");
    let id = filed_id.lock().unwrap().unwrap();
    let review = e.reviews.get(id).await.unwrap();
    assert_eq!(review.state, ReviewState::Withdrawn);
    // What the reviewer saw is stored as shown, and its digest is in the audit record.
    assert_eq!(review.statements, shown);
    assert!(review.statement.unwrap().contains("$1 = '5'"));
    let requested = e
        .audited()
        .await
        .into_iter()
        .find(|a| a["kind"] == "review.requested" && a["details"]["id"] == id)
        .unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(&shown).unwrap()))
    };
    assert_eq!(requested["details"]["shown_sha256"], digest.as_str());
    assert!(!requested.to_string().contains("UPDATE"));
}
