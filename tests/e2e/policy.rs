//! Guardrails, masking and recording through the real gateway, with psql and tokio-postgres.

use hoop_tests::gateway::{code, stderr, stdout};
use serde_json::Value;

use crate::postgres::{psql, setup};

const GUARDED: &str = r#"guardrails = ["no-ddl", "no-unbounded-writes", "ops"]
masking = ["pii", "cards"]"#;

const RULES: &str = r#"
[[guardrails]]
name = "ops"
deny = ["copy_program", "do", "alter_system", "set_role", "dangerous_functions", "extension", "grant", "revoke", "vacuum", "lock"]
deny_patterns = ['pg_sleep\(\s*[0-9]{3,}']

[[masking]]
name = "cards"
columns = ["*.card", "customers.name"]
"#;

/// Statements that must never reach the target, each written to slip past a naive filter.
const BYPASS_ATTEMPTS: &[&str] = &[
    "DROP TABLE items",
    "drop table items",
    "DrOp TaBlE items",
    "/* harmless */ drop /**/ table items",
    "-- a comment\ndrop table items",
    "select 1; drop table items",
    "select 1;drop table items",
    "truncate items",
    "truncate table only items cascade",
    "delete from items",
    "DELETE FROM items -- where id = 1",
    "update items set qty = 0",
    "with d as (delete from items returning *) select * from d",
    "explain analyze delete from items",
    "prepare p as delete from items",
    "do $$ begin execute 'drop table items'; end $$",
    "do language plpgsql $x$ begin perform 1; end $x$",
    "copy items to program 'cat'",
    "copy (select 1) to program 'sh -c id'",
    "alter system set work_mem = '1GB'",
    "create extension if not exists dblink",
    "grant all on items to public",
    "revoke all on items from app",
    "set role postgres",
    "set session authorization postgres",
    "select pg_read_file('/etc/passwd')",
    "select \"pg_read_file\"('/etc/passwd')",
    "select pg_catalog.pg_read_file('/etc/passwd')",
    "select pg_terminate_backend(1)",
    "alter table items add column x int",
    "create table evil (a int)",
    "select * into newt from items",
    "create table t3 as select 1",
    "drop tabel items ;; (",
    "vacuum (full) items",
    "lock table items",
    "create or replace function f() returns int as 'select 1' language sql",
    "select pg_sleep(600)",
    "U&\"pg\\005fread_file\"('/etc/passwd')",
    "begin; drop table items; commit",
];

/// `hoop ARGS` with `key` as the token, its stdout parsed as JSON.
fn cli_json(cli: &hoop_tests::CliUser, key: &str, args: &[&str]) -> Value {
    let out = cli.run_env(args, &[("HOOP_TOKEN", key)]).unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sqlstate_of(stderr: &str) -> bool {
    stderr.contains("blocked by guardrail")
}

#[tokio::test]
async fn guardrails_block_every_bypass_attempt_and_the_session_goes_on() {
    let env = setup(GUARDED, RULES).await;
    let url = &env.tunnel.url;
    for sql in BYPASS_ATTEMPTS {
        let out = psql(url, &format!("{sql};\n"));
        assert!(
            !out.status.success(),
            "not blocked: {sql}\n{}",
            stdout(&out)
        );
        assert!(sqlstate_of(&stderr(&out)), "{sql}: {}", stderr(&out));
    }
    // Nothing reached the target.
    let check = env
        .pg
        .psql_as(
            "app",
            crate::postgres::TARGET_PASSWORD,
            "shop",
            "select count(*) from items;",
        )
        .await
        .unwrap();
    assert_eq!(check.trim(), "10");
    // Reads, bounded writes and look-alikes in strings pass; a blocked statement in a session
    // does not end it.
    let out = psql(
        url,
        "\\set ON_ERROR_STOP 0\nselect 'drop table items';\ndrop table items;\nupdate items set qty = 1 where id = 1;\nselect qty from items where id = 1;\n",
    );
    let text = stdout(&out);
    assert!(text.contains("drop table items"), "{text}");
    assert!(
        text.lines().any(|l| l.trim() == "1"),
        "{text}\n{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("42501") || stderr(&out).contains("blocked by guardrail"),
        "{}",
        stderr(&out)
    );

    // Extended protocol: a blocked Parse answers an error and the connection stays usable.
    let (client, conn) = tokio_postgres::connect(&env.tunnel.driver_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let err = client.execute("delete from items", &[]).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message()
            .contains("blocked by guardrail no-unbounded-writes"),
        "{}",
        db.message()
    );
    assert!(client.prepare("drop table items").await.is_err());
    let n: i64 = client
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    // EXECUTE of a statement prepared through SQL is judged as its text.
    client
        .batch_execute("prepare ok as select 1")
        .await
        .unwrap();
    client.batch_execute("execute ok").await.unwrap();
    drop(client);

    // Every block is audited with its rule.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let blocked = env
        .gw
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e["kind"] == "statement.blocked")
        .count();
    assert!(
        blocked >= BYPASS_ATTEMPTS.len(),
        "{blocked} audit records for {} attempts",
        BYPASS_ATTEMPTS.len()
    );
}

#[tokio::test]
async fn results_are_masked_in_text_binary_and_copy() {
    let env = setup(GUARDED, RULES).await;
    let url = &env.tunnel.url;
    let out = stdout(&psql(
        url,
        "select id, name, email, card, note from customers order by id;",
    ));
    for raw in [
        "ada@example.com",
        "bob@example.org",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5500 0000 0000 0004",
    ] {
        assert!(!out.contains(raw), "{raw} leaked: {out}");
    }
    assert!(
        !out.contains("Ada") && out.contains("paid with"),
        "customers.name is masked: {out}"
    );
    // `customers.name` is precise: another table's `name` column is not masked (the gateway
    // learns table names per session).
    env.pg
        .psql_as(
            "app",
            crate::postgres::TARGET_PASSWORD,
            "shop",
            "create table vendors (name text); insert into vendors values ('Acme');",
        )
        .await
        .unwrap();
    let out = stdout(&psql(url, "select name from vendors;"));
    assert_eq!(out.trim(), "Acme");
    // COPY TO STDOUT (text and CSV) is masked too.
    for fmt in ["text", "csv"] {
        let out = stdout(&psql(
            url,
            &format!("copy (select email, note from customers) to stdout with (format {fmt});"),
        ));
        assert!(
            !out.contains("ada@example.com") && !out.contains("4111-1111-1111-1111"),
            "{fmt}: {out}"
        );
        assert!(out.contains("paid with"), "{fmt}: {out}");
    }
    // Binary results (tokio-postgres): text columns are still checked; a binary value under a
    // column rule is withheld (NULL), never passed raw.
    let (client, conn) = tokio_postgres::connect(&env.tunnel.driver_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "select email, card, note from customers where id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    let email: String = row.get(0);
    let card: Option<String> = row.get(1);
    let note: String = row.get(2);
    assert!(!email.contains("ada@example.com"), "{email}");
    assert_eq!(card, None);
    assert!(!note.contains("4111-1111-1111-1111"), "{note}");
    drop(client);

    // The session's record counts what was masked, and the statement log holds no raw value.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let out = env
        .cli
        .run_env(&["sessions", "-o", "json"], &[("HOOP_TOKEN", &env.key)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sessions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = sessions.as_array().unwrap();
    assert!(!list.is_empty());
    let id = list[0]["id"].as_str().unwrap().to_string();
    let out = env
        .cli
        .run_env(
            &["sessions", "show", &id, "-o", "json"],
            &[("HOOP_TOKEN", &env.key)],
        )
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains("ada@example.com") && !text.contains("4111"),
        "{text}"
    );
    // Each psql session that saw masked values ends with a `masking.applied` audit event (what
    // SIEM webhooks filter on), carrying counts, never values.
    let mut applied = Vec::new();
    for _ in 0..50 {
        applied = env
            .gw
            .audit_events()
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e["kind"] == "masking.applied")
            .collect();
        if !applied.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let first = applied.first().expect("a masking.applied event");
    assert!(
        first["details"]["masked"]["email"].as_u64() > Some(0),
        "{first}"
    );
    assert!(!first.to_string().contains("ada@example.com"), "{first}");
}

#[tokio::test]
async fn sessions_record_statements_with_outcomes() {
    let env = setup(GUARDED, RULES).await;
    let out = psql(
        &env.tunnel.url,
        "\\set ON_ERROR_STOP 0\nselect count(*) from items;\nselect * from nope;\ndelete from items;\n",
    );
    assert!(stdout(&out).contains("10"));
    drop(env.tunnel);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let sessions = cli_json(&env.cli, &env.key, &["sessions", "-o", "json"]);
    let s = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["statements"].as_u64().unwrap_or(0) >= 3)
        .cloned()
        .expect("a recorded session");
    assert_eq!(s["subject"], "apikey:tester");
    assert_eq!(s["connection"], "shop");
    assert_eq!(s["blocked"], 1);
    let id = s["id"].as_str().unwrap();
    let shown = cli_json(&env.cli, &env.key, &["sessions", "show", id, "-o", "json"]);
    let stmts = shown["statements"].as_array().unwrap();
    let find = |needle: &str| {
        stmts
            .iter()
            .find(|s| s["text"].as_str().unwrap_or("").contains(needle))
            .cloned()
            .unwrap()
    };
    let ok = find("count(*)");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["rows"], 1);
    let err = find("nope");
    assert_eq!(err["outcome"], "error");
    assert_eq!(err["sqlstate"], "42P01");
    let blocked = find("delete");
    assert_eq!(blocked["outcome"], "blocked");
    assert_eq!(blocked["rule"], "no-unbounded-writes");
    // A user sees only their own sessions: another key with no sessions sees none.
    let other = env
        .gw
        .hoopd(
            &[
                "api-keys",
                "create",
                "--name",
                "other",
                "--groups",
                "engineering",
            ],
            None,
        )
        .unwrap();
    let other_key = stdout(&other).trim().to_string();
    let out = env
        .cli
        .run_env(&["sessions", "-o", "json"], &[("HOOP_TOKEN", &other_key)])
        .unwrap();
    let none: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(none.as_array().unwrap().len(), 0);
    let out = env
        .cli
        .run_env(&["sessions", "show", id], &[("HOOP_TOKEN", &other_key)])
        .unwrap();
    assert_eq!(code(&out), 85, "{}", stderr(&out));
}

/// A prepared statement run again keeps being masked (the gateway reuses the masking plan of an
/// identical RowDescription, and makes a new one when the shape changes), and a portal fetched
/// in row-limited steps is recorded with its parameters once, on its first Execute.
#[tokio::test]
async fn repeated_statements_stay_masked_and_a_portal_records_its_params_once() {
    let env = setup(GUARDED, RULES).await;
    let (mut client, conn) =
        tokio_postgres::connect(&env.tunnel.driver_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let by_id = client
        .prepare("select email, note, id from customers where id = $1")
        .await
        .unwrap();
    let cards = client
        .prepare("select id, card from customers order by id")
        .await
        .unwrap();
    for (round, id) in [1i32, 2, 1, 1].into_iter().enumerate() {
        let row = client.query_one(&by_id, &[&id]).await.unwrap();
        let email: String = row.get(0);
        let note: String = row.get(1);
        assert_eq!(row.get::<_, i32>(2), id, "round {round}");
        assert!(
            !email.contains("ada@") && !email.contains("bob@"),
            "round {round}: {email} leaked"
        );
        assert!(!note.contains("4111-1111"), "round {round}: {note} leaked");
        if round == 1 {
            // Another shape in between: the card column is under a column rule (withheld in
            // binary), the id passes.
            let rows = client.query(&cards, &[]).await.unwrap();
            let got: Vec<(i32, Option<String>)> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            assert_eq!(got, vec![(1, None), (2, None)]);
        }
    }
    let tx = client.transaction().await.unwrap();
    let portal = tx
        .bind(
            "select id from items where id::text <> $1 order by id",
            &[&"3"],
        )
        .await
        .unwrap();
    let first = tx.query_portal(&portal, 2).await.unwrap();
    let rest = tx.query_portal(&portal, 100).await.unwrap();
    assert_eq!((first.len(), rest.len()), (2, 7));
    tx.commit().await.unwrap();
    // Binary parameters of several types: recorded as their text, the detectors applied (a
    // card number sent as an int8 is masked like one sent as text).
    let row = client
        .query_one(
            "select $1::int8 > 0, $2::text <> '', $3::bool, $4::float8 > 0, $5::timestamptz > now() - interval '1 day'",
            &[
                &4_111_111_111_111_111i64,
                &"mail ada@example.com now",
                &true,
                &0.25f64,
                &std::time::SystemTime::now(),
            ],
        )
        .await
        .unwrap();
    assert!((0..5).all(|i| row.get::<_, bool>(i)));
    drop(client);

    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let sessions = cli_json(&env.cli, &env.key, &["sessions", "-o", "json"]);
    let id = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["statements"].as_u64().unwrap_or(0) >= 7)
        .and_then(|s| s["id"].as_str())
        .expect("the recorded session")
        .to_string();
    let shown = cli_json(&env.cli, &env.key, &["sessions", "show", &id, "-o", "json"]);
    let stmts = shown["statements"].as_array().unwrap();
    let of = |needle: &str| -> Vec<Value> {
        stmts
            .iter()
            .filter(|s| s["text"].as_str().unwrap_or("").contains(needle))
            .cloned()
            .collect()
    };
    let runs = of("from customers where id = $1");
    // tokio-postgres sends the int4 in binary; the gateway learned its type from the target's
    // ParameterDescription and records it as text.
    let params: Vec<Value> = runs.iter().map(|s| s["params"].clone()).collect();
    assert_eq!(
        params,
        ["1", "2", "1", "1"].map(|p| serde_json::json!([p])),
        "{runs:?}"
    );
    // Masked on every run (Ada's row has an e-mail and a card in its note; Bob's an e-mail).
    let masked: Vec<Value> = runs.iter().map(|s| s["masked"].clone()).collect();
    assert_eq!(
        masked,
        vec![
            serde_json::json!({"credit_card": 1, "email": 1}),
            serde_json::json!({"email": 1}),
            serde_json::json!({"credit_card": 1, "email": 1}),
            serde_json::json!({"credit_card": 1, "email": 1})
        ]
    );
    let portal_runs = of("from items where id::text <> $1");
    let params: Vec<Value> = portal_runs.iter().map(|s| s["params"].clone()).collect();
    assert_eq!(
        params,
        vec![serde_json::json!(["3"]), serde_json::json!([])],
        "{portal_runs:?}"
    );
    let typed = of("$1::int8 > 0");
    assert_eq!(typed.len(), 1, "{stmts:?}");
    let params = typed[0]["params"].as_array().unwrap();
    let shown: Vec<&str> = params.iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(shown.len(), 5, "{shown:?}");
    assert!(
        !shown[0].contains("4111111111111111") && shown[0].len() == 16,
        "the int8 card number is masked: {shown:?}"
    );
    assert!(
        shown[1].starts_with("mail ") && !shown[1].contains("ada@example.com"),
        "{shown:?}"
    );
    assert_eq!((shown[2], shown[3]), ("t", "0.25"), "{shown:?}");
    assert!(
        shown[4].starts_with("20") && shown[4].ends_with("+00"),
        "a timestamptz as text: {shown:?}"
    );
    assert!(
        !serde_json::to_string(&shown).unwrap().contains("\\u0000"),
        "no raw binary: {shown:?}"
    );
}
