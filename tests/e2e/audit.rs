//! Issue 7 end to end: evidence for auditors. Real hoopd and hoop binaries, real PostgreSQL:
//! signed exports verified offline (and tampered ones refused, naming the record), sessions
//! filtered by verdict, the retention purge on a controlled clock, webhooks received by a real
//! HTTP server in this process (down, then up), and `kill -9` during traffic, twenty times.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hmac::{KeyInit, Mac};
use hoop_tests::gateway::{code, stderr, stdout};
use hoop_tests::{Gateway, free_port};

use crate::postgres::{Env, TARGET_PASSWORD, psql, setup_with};

const AUDITORS: &str = "auditors = [\"auditors\"]";

fn api_key(gw: &Gateway, name: &str, groups: &str) -> String {
    let out = gw
        .hoopd(
            &["api-keys", "create", "--name", name, "--groups", groups],
            None,
        )
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// `hoopd keys show` into `dir/gateway.pub`.
fn save_key(gw: &Gateway, dir: &Path) -> std::path::PathBuf {
    let out = gw.hoopd(&["keys", "show"], None).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join("gateway.pub");
    std::fs::write(&path, stdout(&out)).unwrap();
    path
}

/// Waits until the writer has signed a checkpoint at the chain head (it does so within about
/// a second of the last event), so exports end on a signed head.
async fn wait_for_checkpoint(gw: &Gateway) {
    let pool = gw.db().await.unwrap();
    for _ in 0..100 {
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
            .fetch_one(&pool)
            .await
            .unwrap();
        let signed: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
            .fetch_one(&pool)
            .await
            .unwrap();
        if head.is_some() && head == signed {
            pool.close().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint at the chain head");
}

/// Kinds of the audit records that still have content, read from the gateway's database.
async fn audit_kinds(gw: &Gateway) -> Vec<String> {
    let pool = gw.db().await.unwrap();
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT bytes FROM audit_log WHERE purged = 0 ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.iter()
        .map(|b| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn export(env: &Env, token: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "export"];
    args.extend_from_slice(extra);
    env.cli.run_env(&args, &[("HOOP_TOKEN", token)]).unwrap()
}

fn verify(env: &Env, file: &Path, key: &Path) -> std::process::Output {
    env.cli
        .run(&[
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-o",
            "json",
        ])
        .unwrap()
}

#[tokio::test]
async fn export_verifies_offline_and_tampering_names_the_record() {
    let env = setup_with(AUDITORS, "guardrails = [\"no-ddl\"]", "").await;
    let ok = psql(&env.tunnel.url, "select count(*) from customers;");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let blocked = psql(&env.tunnel.url, "drop table items;");
    assert!(!blocked.status.success());
    let auditor = api_key(&env.gw, "auditor", "auditors");
    let dir = tempfile::tempdir().unwrap();
    let key = save_key(&env.gw, dir.path());

    // The API serves the same key as `hoopd keys show`, to anyone.
    let api: serde_json::Value = env
        .gw
        .http()
        .unwrap()
        .get(format!("{}/api/v1/audit/key", env.gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        api["public_key"].as_str().unwrap(),
        std::fs::read_to_string(&key).unwrap().trim()
    );
    let via_cli = env.cli.run(&["audit", "key"]).unwrap();
    assert_eq!(stdout(&via_cli).trim(), api["public_key"].as_str().unwrap());

    // Sessions for investigators: the verdict filter finds the session with the blocked DROP.
    let all = env
        .cli
        .run_env(&["sessions", "-o", "json"], &[("HOOP_TOKEN", &auditor)])
        .unwrap();
    assert_eq!(code(&all), 0, "{}", stderr(&all));
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&all)).unwrap();
    assert!(all.len() >= 2, "{all:?}");
    let blocked_only = env
        .cli
        .run_env(
            &["sessions", "--verdict", "block", "-o", "json"],
            &[("HOOP_TOKEN", &auditor)],
        )
        .unwrap();
    assert_eq!(code(&blocked_only), 0, "{}", stderr(&blocked_only));
    let blocked_only: Vec<serde_json::Value> =
        serde_json::from_str(&stdout(&blocked_only)).unwrap();
    assert_eq!(blocked_only.len(), 1, "{blocked_only:?}");
    assert_eq!(blocked_only[0]["blocked"], 1);

    // Only admins and auditors export.
    let denied = export(&env, &env.key, &[]);
    assert_eq!(code(&denied), 82, "{}", stderr(&denied));

    wait_for_checkpoint(&env.gw).await;
    let out = export(&env, &auditor, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let v = verify(&env, &file, &key);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&v)).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["first_seq"], 1);
    assert!(summary["checkpoints"].as_u64().unwrap() >= 1, "{summary}");
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect();
    // The stored bytes are in the export: the blocked statement's record is there.
    let kinds: Vec<String> = records
        .iter()
        .filter(|r| r["type"] == "record")
        .map(|r| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(r["bytes"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        kinds.contains(&"statement.blocked".to_string()),
        "{kinds:?}"
    );

    // An edited record: its content no longer matches its hash, and the error names it.
    let (i, victim) = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r["type"] == "record")
        .nth(2)
        .unwrap();
    let seq = victim["seq"].as_i64().unwrap();
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(victim["bytes"].as_str().unwrap())
        .unwrap();
    let pos = bytes.iter().position(|b| *b == b'"').unwrap() + 1;
    bytes[pos] ^= 0x01;
    // Edit the line in place (the verifier insists on the exporter's exact spelling).
    let mut tampered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    tampered[i] = lines[i].replace(
        victim["bytes"].as_str().unwrap(),
        &base64::engine::general_purpose::STANDARD.encode(&bytes),
    );
    let bad = dir.path().join("edited.jsonl");
    std::fs::write(&bad, tampered.join("\n") + "\n").unwrap();
    let v = verify(&env, &bad, &key);
    assert_eq!(code(&v), 91, "{}", stdout(&v));
    assert!(
        stderr(&v).contains(&format!("record {seq}: content does not match")),
        "{}",
        stderr(&v)
    );

    // A deleted record: the gap names the record that follows it.
    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(i);
    let bad = dir.path().join("deleted.jsonl");
    std::fs::write(&bad, deleted.join("\n") + "\n").unwrap();
    let v = verify(&env, &bad, &key);
    assert_eq!(code(&v), 91);
    assert!(
        stderr(&v).contains(&format!("expected sequence {seq}")),
        "{}",
        stderr(&v)
    );

    // Truncated: the signed end line is gone.
    let bad = dir.path().join("truncated.jsonl");
    std::fs::write(&bad, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let v = verify(&env, &bad, &key);
    assert_eq!(code(&v), 91);
    assert!(stderr(&v).contains("truncated"), "{}", stderr(&v));

    // Another gateway's key does not vouch for this export.
    let other = Gateway::start("").await.unwrap();
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other_key = save_key(&other, &other_dir);
    let v = verify(&env, &file, &other_key);
    assert_eq!(code(&v), 91);
    assert!(stderr(&v).contains("signature"), "{}", stderr(&v));

    // A time range: nothing before `since`, and it still verifies on its own.
    let out = export(&env, &auditor, &["--since", "1s"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let part = dir.path().join("part.jsonl");
    std::fs::write(&part, &out.stdout).unwrap();
    let v = verify(&env, &part, &key);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
}

#[tokio::test]
async fn retention_purge_on_a_controlled_clock_keeps_the_chain_verifiable() {
    let env = setup_with(
        AUDITORS,
        "",
        "[retention]\nrecordings = \"90d\"\naudit = \"1y\"\n",
    )
    .await;
    let ok = psql(&env.tunnel.url, "select 1; select 2;");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let auditor = api_key(&env.gw, "auditor", "auditors");
    let sessions = env
        .cli
        .run_env(&["sessions", "-o", "json"], &[("HOOP_TOKEN", &auditor)])
        .unwrap();
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&sessions)).unwrap();
    let ended = sessions
        .iter()
        .find(|s| s["state"] == "ended" && s["statements"].as_u64().unwrap() >= 2)
        .unwrap_or_else(|| panic!("{sessions:?}"));
    let id = ended["id"].as_str().unwrap().to_string();
    wait_for_checkpoint(&env.gw).await;

    // Today nothing is old enough.
    let out = env.gw.hoopd(&["retention", "purge"], None).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("purged 0 statement(s) and 0 audit record(s)"),
        "{}",
        stdout(&out)
    );

    // Two years from now, everything signed so far is past both periods.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(730);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = env
        .gw
        .hoopd(&["retention", "purge", "--now", &later], None)
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(!said.contains("purged 0 statement(s)"), "{said}");
    assert!(!said.contains("and 0 audit record(s)"), "{said}");

    // The recording's statements are gone, the session row stays.
    let show = env
        .cli
        .run_env(
            &["sessions", "show", &id, "-o", "json"],
            &[("HOOP_TOKEN", &auditor)],
        )
        .unwrap();
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let show: serde_json::Value = serde_json::from_str(&stdout(&show)).unwrap();
    assert_eq!(show["statements"].as_array().unwrap().len(), 0, "{show}");

    // The purge is audited, the store's chain verifies, and the export verifies offline with
    // its tombstones.
    let events = audit_kinds(&env.gw).await;
    assert!(events.iter().any(|k| k == "retention.purged"), "{events:?}");
    let v = env.gw.hoopd(&["audit", "verify"], None).unwrap();
    assert!(v.status.success(), "{}", stderr(&v));
    wait_for_checkpoint(&env.gw).await;
    let dir = tempfile::tempdir().unwrap();
    let key = save_key(&env.gw, dir.path());
    let out = export(&env, &auditor, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let v = verify(&env, &file, &key);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&v)).unwrap();
    assert!(summary["tombstones"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["records"].as_u64().unwrap() >= 1, "{summary}");

    // A tombstone whose purge record is cut out of the export does not pass.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"type\":\"tombstone\""));
}

/// What the receiver got: headers we check, and the body.
#[derive(Debug, Clone)]
struct Received {
    signature: String,
    event: String,
    body: Vec<u8>,
}

async fn receiver(port: u16, got: Arc<Mutex<Vec<Received>>>) -> tokio::task::JoinHandle<()> {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let got = got.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    got.lock().unwrap().push(Received {
                        signature: h("x-hoop-signature"),
                        event: h("x-hoop-event"),
                        body: body.to_vec(),
                    });
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

/// Checks `t=<t>,v1=<hex>` the way a SIEM would: recompute the HMAC, refuse an old `t`.
fn signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        if let Some(x) = part.strip_prefix("t=") {
            t = x.parse::<i64>().ok();
        }
        if let Some(x) = part.strip_prefix("v1=") {
            v1 = hex::decode(x).ok();
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

#[tokio::test]
async fn webhooks_are_signed_and_arrive_after_the_receiver_comes_up() {
    let port = free_port();
    let secrets = tempfile::tempdir().unwrap();
    let secret = "whsec-test-5c1e";
    let secret_file = secrets.path().join("hook");
    std::fs::write(&secret_file, secret).unwrap();
    let dead_port = free_port();
    let config = format!(
        r#"
[audit]
jsonl_file = "events.jsonl"

[[webhooks]]
name = "siem"
url = "http://127.0.0.1:{port}/hook"
secret = {{ file = "{f}" }}
events = ["session.*", "statement.blocked"]
backoff = "200ms"
max_backoff = "1s"
max_attempts = 1000

[[webhooks]]
name = "nowhere"
url = "http://127.0.0.1:{dead_port}/hook"
secret = {{ file = "{f}" }}
events = ["session.started"]
backoff = "100ms"
max_backoff = "200ms"
max_attempts = 2
"#,
        f = secret_file.display()
    );
    let env = setup_with("", "guardrails = [\"no-ddl\"]", &config).await;
    // The receiver is down while these events happen.
    let ok = psql(&env.tunnel.url, "select 1;");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let blocked = psql(&env.tunnel.url, "drop table items;");
    assert!(!blocked.status.success());
    // Wait until the gateway has tried and failed at least once.
    let mut failed_once = false;
    for _ in 0..100 {
        let s = env
            .gw
            .hoopd(&["webhooks", "status", "-o", "json"], None)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout(&s)).unwrap();
        let dead = v["dead_letters"].as_array().unwrap();
        let pending = v["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["webhook"] == "siem")
            .map(|w| w["pending"].as_u64().unwrap())
            .unwrap_or(0);
        if pending >= 4 && dead.iter().any(|d| d["webhook"] == "nowhere") {
            failed_once = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(failed_once, "{}", env.gw.logs());

    // Now the receiver comes up: every pending event arrives, signed.
    let got = Arc::new(Mutex::new(Vec::new()));
    let server = receiver(port, got.clone()).await;
    let mut kinds = BTreeSet::new();
    for _ in 0..150 {
        kinds = got
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.event.clone())
            .collect::<BTreeSet<_>>();
        let distinct = got
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect::<BTreeSet<_>>()
            .len();
        if kinds.contains("statement.blocked")
            && kinds.contains("session.started")
            && kinds.contains("session.ended")
            && distinct >= 5
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        kinds.contains("statement.blocked") && kinds.contains("session.ended"),
        "{kinds:?}\n{}",
        env.gw.logs()
    );
    let all = got.lock().unwrap().clone();
    for r in &all {
        assert!(
            signature_ok(secret, &r.signature, &r.body),
            "bad signature {r:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["schema"], "hoop.event/1");
        assert_eq!(v["kind"], r.event.as_str());
        assert_eq!(v["event"]["kind"], r.event.as_str());
        assert!(v["seq"].as_i64().unwrap() >= 1);
        // The filter held: nothing but sessions and blocks.
        assert!(
            r.event.starts_with("session.") || r.event == "statement.blocked",
            "{r:?}"
        );
        // A tampered body fails the same check.
        let mut forged = r.body.clone();
        forged[2] ^= 1;
        assert!(!signature_ok(secret, &r.signature, &forged));
    }
    // The secret never appears in what was sent.
    assert!(
        !all.iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(secret))
    );

    // The status shows deliveries and the dead letter of the webhook that never came up.
    // Wait until the outbox has drained (the receiver may have answered the last POST before
    // the gateway marked it delivered).
    let mut v = serde_json::Value::Null;
    for _ in 0..150 {
        let s = env
            .gw
            .hoopd(&["webhooks", "status", "-o", "json"], None)
            .unwrap();
        v = serde_json::from_str(&stdout(&s)).unwrap();
        let drained = v["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["webhook"] == "siem" && w["pending"] == 0);
        if drained {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let siem = v["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["webhook"] == "siem")
        .unwrap()
        .clone();
    assert!(siem["delivered"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(siem["pending"], 0, "{v}");
    let dead = v["dead_letters"].as_array().unwrap();
    assert!(
        dead.iter()
            .any(|d| d["webhook"] == "nowhere" && d["attempts"] == 2),
        "{v}"
    );
    let table = env.gw.hoopd(&["webhooks", "status"], None).unwrap();
    assert!(
        stdout(&table).contains("DEAD LETTERS"),
        "{}",
        stdout(&table)
    );

    // The JSON-lines file sink has every committed event, the same envelope.
    let sink = env.gw.config_path.parent().unwrap().join("events.jsonl");
    let text = std::fs::read_to_string(&sink).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["kind"] == "config.loaded"), "{text}");
    assert!(
        lines.iter().any(|l| l["kind"] == "statement.blocked"),
        "{text}"
    );
    assert!(lines.iter().all(|l| l["schema"] == "hoop.event/1"));
    server.abort();
}

/// `kill -9` during a stream of INSERTs, twenty times. After every restart: the stored chain
/// verifies, and the session's recorded statements are exactly the first k statements the
/// database executed (no hole, no statement that did not happen); only a tail still in the
/// recorder's queue at the crash may be missing (the documented guarantee).
#[tokio::test]
async fn kill_9_during_traffic_twenty_times_keeps_the_chain_and_a_gapless_log() {
    let mut env = setup_with("", "", "").await;
    env.pg
        .psql_as(
            "app",
            TARGET_PASSWORD,
            "shop",
            "create table hits (n bigint primary key);",
        )
        .await
        .unwrap();
    let direct = env.pg.url_for("app", TARGET_PASSWORD, "shop");
    let (db, conn) = tokio_postgres::connect(&direct, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut lost_tail_total = 0i64;
    let mut executed_total = 0i64;
    // Four sessions insert at once; client c of round r uses n in (base, base + SPAN].
    const CLIENTS: i64 = 4;
    const SPAN: i64 = 100_000;
    for round in 0..20i64 {
        let mut traffic = Vec::new();
        for c in 0..CLIENTS {
            let base = (round * CLIENTS + c) * SPAN;
            let url = env.tunnel.driver_url();
            traffic.push(tokio::spawn(async move {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                for i in 1..SPAN {
                    if client
                        .batch_execute(&format!("insert into hits values ({})", base + i))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }));
        }
        // Heavy enough: wait until the database has a good number of this round's rows.
        let (lo, hi) = (round * CLIENTS * SPAN, (round + 1) * CLIENTS * SPAN);
        let mut n = 0i64;
        for _ in 0..500 {
            n = db
                .query_one(
                    "select count(*) from hits where n > $1 and n <= $2",
                    &[&lo, &hi],
                )
                .await
                .unwrap()
                .get(0);
            if n >= 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(n >= 100, "round {round}: no traffic\n{}", env.gw.logs());
        env.gw.kill9().await.unwrap();
        for t in traffic {
            let _ = t.await;
        }
        env.gw.restart().await.unwrap();

        let v = env.gw.hoopd(&["audit", "verify"], None).unwrap();
        assert!(
            v.status.success(),
            "round {round}: {}\n{}",
            stderr(&v),
            stdout(&v)
        );
        let pool = env.gw.db().await.unwrap();
        let texts: Vec<String> = sqlx::query_scalar(
            "SELECT text FROM statements WHERE text LIKE 'insert into hits values (%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        let recorded_all: Vec<i64> = texts
            .iter()
            .filter_map(|t| {
                t.trim_start_matches("insert into hits values (")
                    .trim_end_matches(')')
                    .parse::<i64>()
                    .ok()
            })
            .collect();
        for c in 0..CLIENTS {
            let base = (round * CLIENTS + c) * SPAN;
            let in_db: Vec<i64> = db
                .query(
                    "select n - $1 from hits where n > $1 and n <= $2 order by n",
                    &[&base, &(base + SPAN)],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut recorded: Vec<i64> = recorded_all
                .iter()
                .filter(|n| **n > base && **n <= base + SPAN)
                .map(|n| n - base)
                .collect();
            recorded.sort_unstable();
            let executed = in_db.len() as i64;
            // The database ran 1..=executed of this session, in order.
            assert_eq!(in_db, (1..=executed).collect::<Vec<_>>(), "round {round}");
            // Recorded: a prefix of that (the last one may have been recorded as it was sent,
            // before the database committed it, hence `+ 1`).
            let k = recorded.len() as i64;
            assert_eq!(
                recorded,
                (1..=k).collect::<Vec<_>>(),
                "round {round} client {c}: hole in the log"
            );
            assert!(
                k <= executed + 1,
                "round {round} client {c}: recorded {k} > executed {executed}"
            );
            lost_tail_total += (executed - k).max(0);
            executed_total += executed;
        }
    }
    // After twenty crashes the whole chain still exports and verifies offline, signatures and all.
    let admin = api_key(&env.gw, "admin", "admin");
    wait_for_checkpoint(&env.gw).await;
    let out = export(&env, &admin, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let key = save_key(&env.gw, dir.path());
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let v = verify(&env, &file, &key);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    // Not a timing assertion: informational, for the report.
    eprintln!(
        "kill -9 x20: {executed_total} statements executed, {lost_tail_total} of them not recorded (lost tails)"
    );
}

/// Someone with write access to the database but not the key edits a record and re-hashes the
/// rest of the chain so every link holds again: the signed checkpoints give it away, in the
/// store (`hoopd audit verify`) and in an export verified offline.
#[tokio::test]
async fn a_rehashed_chain_without_the_key_is_caught_by_the_checkpoints() {
    use sha2::Digest;
    let mut gw = Gateway::start("[auth]\nadmins = [\"admin\"]\n")
        .await
        .unwrap();
    let admin = api_key(&gw, "admin", "admin");
    for name in ["ci-1", "ci-2", "ci-3"] {
        api_key(&gw, name, "deploy");
    }
    wait_for_checkpoint(&gw).await;
    gw.stop().await.unwrap();

    let pool = gw.db().await.unwrap();
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT seq, bytes FROM audit_log ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(rows.len() >= 4);
    let mut prev = [0u8; 32].to_vec();
    for (seq, bytes) in &rows {
        let bytes = if *seq == 2 {
            String::from_utf8(bytes.clone())
                .unwrap()
                .replace("\"success\"", "\"denied\"")
                .into_bytes()
        } else {
            bytes.clone()
        };
        let mut h = sha2::Sha256::new();
        h.update(&prev);
        h.update(&bytes);
        let hash = h.finalize().to_vec();
        sqlx::query("UPDATE audit_log SET bytes = ?, prev_hash = ?, hash = ? WHERE seq = ?")
            .bind(&bytes)
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
        prev = hash;
    }
    pool.close().await;

    let v = gw.hoopd(&["audit", "verify"], None).unwrap();
    assert_eq!(v.status.code(), Some(3), "{}", stdout(&v));
    assert!(stderr(&v).contains("checkpoint"), "{}", stderr(&v));

    gw.restart().await.unwrap();
    let cli = hoop_tests::CliUser::new().unwrap();
    cli.pin(&gw).unwrap();
    let out = cli
        .run_env(&["audit", "export"], &[("HOOP_TOKEN", &admin)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let key = save_key(&gw, dir.path());
    let v = cli
        .run(&[
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(code(&v), 91, "{}", stdout(&v));
    assert!(
        stderr(&v).contains("checkpoint names another hash"),
        "{}",
        stderr(&v)
    );
}
