//! Issue 5 end to end: `hoop exec` as a CI job would run it — real `hoop` and `hoopd`, a real
//! PostgreSQL, tokens from the real OIDC provider and the gateway's API keys, an empty HOME, no
//! config file, no TTY, everything from the environment (`HOOP_TOKEN`, `HOOP_GATEWAY`,
//! `HOOP_FINGERPRINT`).

use std::process::Output;
use std::time::Duration;

use hoop_tests::gateway::{code, run_with_stdin, stderr, stdout};
use hoop_tests::{CliUser, Gateway, OidcOptions, OidcProvider, PasswordKind, Postgres, free_port};
use serde::Deserialize;
use serde_json::Value;

const PW: &str = "exec-target-pw-5";

struct Env {
    _pg: Postgres,
    idp: OidcProvider,
    gw: Gateway,
    /// A fresh HOME: nothing pinned, no config, no credentials.
    cli: CliUser,
    /// `hoopd api-keys create --groups deploy`.
    api_key: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Env {
    setup_with(false).await
}

/// `workload`: the gateway is its own issuer (local users) and trusts the OIDC provider only
/// for machines, through `[[auth.workload]]`; otherwise the provider is `[auth].issuer`.
async fn setup_with(workload: bool) -> Env {
    let pg = Postgres::start().await.unwrap();
    pg.create_role("app", PW, PasswordKind::Scram)
        .await
        .unwrap();
    pg.create_database("shop", "app").await.unwrap();
    pg.psql_as(
        "app",
        PW,
        "shop",
        "create table customers (id int primary key, name text, email text); \
         insert into customers values (1, 'Alice', 'alice@example.com'), (2, 'Bruno', 'bruno@example.org'), (3, 'Chen', null); \
         create table items (id int primary key, qty int); insert into items select g, g from generate_series(1, 5) g;",
    )
    .await
    .unwrap();
    let idp = OidcProvider::start(OidcOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), PW).unwrap();
    let conn = |name: &str, allow: &str, extra: &str| {
        format!(
            "[[connections]]\nname = \"{name}\"\ntype = \"postgres\"\naddress = \"127.0.0.1:{}\"\ndatabase = \"shop\"\nuser = \"app\"\npassword = {{ file = \"{}\" }}\nallow = {allow}\n{extra}\n",
            pg.port,
            dir.path().join("pw").display()
        )
    };
    let auth = if workload {
        format!(
            "[auth]\nadmins = [\"admin\"]\n\n[[auth.workload]]\nname = \"ci\"\nissuer = \"{}\"\naudience = \"{}\"\nrules = [{{ claim = \"client_id\", value = \"hoop-ci\", groups = [\"deploy\"] }}]\n",
            idp.issuer,
            idp.audience()
        )
    } else {
        format!(
            "[auth]\nissuer = \"{}\"\nadmins = [\"admin\"]\n",
            idp.issuer
        )
    };
    let ssh = format!(
        "[[connections]]\nname = \"web\"\ntype = \"ssh\"\naddress = \"127.0.0.1:1\"\nuser = \"deploy\"\npassword = {{ file = \"{}\" }}\nhost_key = \"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\"\nallow = [\"deploy\"]\n\n",
        dir.path().join("pw").display()
    ) + "[[connections]]\nname = \"down\"\ntype = \"postgres\"\naddress = \"127.0.0.1:1\"\ndatabase = \"shop\"\nuser = \"app\"\nallow = [\"deploy\"]\n";
    let gw = Gateway::start(&format!(
        "{}\n{ssh}\n{}{}{}{}",
        auth,
        conn(
            "shop",
            "[\"engineering\", \"deploy\"]",
            "guardrails = [\"no-ddl\"]\nmasking = [\"pii\"]\nreview = { statements = [\"write\"], approvers = [\"dba\"], statement_timeout = \"10m\" }"
        ),
        conn("plain", "[\"deploy\"]", ""),
        conn("secret", "[\"nobody\"]", ""),
        conn(
            "prod",
            "[\"deploy\"]",
            "review = { access = true, approvers = [\"dba\"] }"
        ),
    ))
    .await
    .unwrap();
    let out = gw
        .hoopd(
            &["api-keys", "create", "--name", "ci", "--groups", "deploy"],
            None,
        )
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let api_key = stdout(&out).trim().to_string();
    Env {
        _pg: pg,
        idp,
        gw,
        cli: CliUser::new().unwrap(),
        api_key,
        _dir: dir,
    }
}

impl Env {
    fn user_token(&self, user: &str) -> String {
        self.idp
            .mint(&self.idp.user_claims(user, 600).unwrap())
            .unwrap()
    }

    /// `hoop <args>` with `token`, the gateway and its fingerprint from the environment only.
    fn hoop_with(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.cli.command(args).unwrap();
        cmd.env("HOOP_TOKEN", token)
            .env("HOOP_GATEWAY", &self.gw.url)
            .env("HOOP_FINGERPRINT", &self.gw.fingerprint);
        run_with_stdin(&mut cmd, stdin).unwrap()
    }

    /// `hoop exec` as the CI job (API key).
    fn ci(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        self.hoop_with(&self.api_key, &all, None)
    }

    fn as_user(&self, user: &str, args: &[&str]) -> Output {
        self.hoop_with(&self.user_token(user), args, None)
    }
}

/// `-o json`: one object per result set and line.
#[derive(Debug, Deserialize)]
struct ResultSet {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    command: Option<String>,
}

fn result_sets(out: &Output) -> Vec<ResultSet> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn json_error(out: &Output) -> Value {
    let err = stderr(out);
    let line = err
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON error on stderr: {err}"));
    serde_json::from_str(line).unwrap()
}

const SELECT: &str = "select id, name, email from customers order by id";

#[tokio::test]
async fn exec_with_an_api_key_prints_every_format_masked() {
    let env = setup().await;
    // The CLI user's HOME is empty: no config, no pin, no credentials.
    assert!(std::fs::read_dir(env.cli.home()).unwrap().next().is_none());

    // json: one object per result set; the e-mail addresses are masked.
    let out = env.ci(&["shop", "-o", "json", SELECT]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), env.gw.logs());
    let sets = result_sets(&out);
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].columns, ["id", "name", "email"]);
    assert_eq!(sets[0].command.as_deref(), Some("SELECT 3"));
    assert_eq!(
        sets[0].rows,
        vec![
            vec![
                Some("1".into()),
                Some("Alice".into()),
                Some("***@example.com".into())
            ],
            vec![
                Some("2".into()),
                Some("Bruno".into()),
                Some("***@example.org".into())
            ],
            vec![Some("3".into()), Some("Chen".into()), None],
        ]
    );

    // csv and tsv parse with a CSV reader, masked the same way.
    for (format, delimiter) in [("csv", b','), ("tsv", b'\t')] {
        let out = env.ci(&["shop", "-o", format, SELECT]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .from_reader(out.stdout.as_slice());
        let headers: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(headers, ["id", "name", "email"]);
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        assert_eq!(rows.len(), 3, "{format}");
        assert_eq!(rows[0], ["1", "Alice", "***@example.com"], "{format}");
        assert_eq!(rows[2], ["3", "Chen", ""], "{format}");
    }

    // table, for people.
    let out = env.ci(&["shop", SELECT]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("***@example.com"), "{table}");
    assert!(table.contains("(3 rows)"), "{table}");
    assert!(table.lines().next().unwrap().starts_with("id"), "{table}");

    // --stream: the gateway's NDJSON events, one row per line.
    let out = env.ci(&["shop", "-o", "json", "--stream", SELECT]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["columns", "row", "row", "row", "complete"]);
    assert_eq!(events[1]["values"][2], "***@example.com");

    // No format ever carries the raw addresses.
    for format in ["table", "csv", "tsv", "json"] {
        let out = env.ci(&["shop", "-o", format, SELECT]);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("alice@"), "{format}: {all}");
    }

    // Several statements: one result set each; input from stdin and from a file.
    let two = "select 1 as a; select 'x' as b, 2 as c";
    let mut cmd = env.cli.command(&["exec", "plain", "-o", "json"]).unwrap();
    cmd.env("HOOP_TOKEN", &env.api_key)
        .env("HOOP_GATEWAY", &env.gw.url)
        .env("HOOP_FINGERPRINT", &env.gw.fingerprint);
    let out = run_with_stdin(&mut cmd, Some(two)).unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sets = result_sets(&out);
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1].columns, ["b", "c"]);
    assert_eq!(sets[1].rows, vec![vec![Some("x".into()), Some("2".into())]]);
    let file = env.cli.home().join("q.sql");
    std::fs::write(
        &file,
        "insert into items values (100, 1); select count(*) from items",
    )
    .unwrap();
    let out = env.ci(&["plain", "-o", "json", "-f", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sets = result_sets(&out);
    assert_eq!(sets[0].command.as_deref(), Some("INSERT 0 1"));
    assert_eq!(sets[1].rows, vec![vec![Some("6".into())]]);

    // The sessions are recorded under the API key's identity, like a tunnel's.
    let out = env.hoop_with(&env.api_key, &["sessions", "-o", "json"], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sessions: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["subject"] == "apikey:ci"),
        "{sessions}"
    );
    assert!(sessions.as_array().unwrap().len() >= 8, "{sessions}");
    // ... and the exec requests are audited, without their text.
    let audit = env.gw.audit_events().await.unwrap();
    let execs: Vec<&Value> = audit
        .iter()
        .filter(|e| e["kind"] == "exec.requested")
        .collect();
    assert!(execs.len() >= 8, "{execs:?}");
    assert!(
        !serde_json::to_string(&audit)
            .unwrap()
            .contains("customers order by")
    );
}

#[tokio::test]
async fn exec_exit_codes() {
    let env = setup().await;
    // 1: the statement failed; the SQLSTATE is printed.
    let out = env.ci(&["plain", "select * from nope"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("42P01"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    // ... and with -o json, as a JSON object on stderr.
    let out = env.ci(&["plain", "-o", "json", "select * from nope"]);
    assert_eq!(code(&out), 1);
    let err = json_error(&out);
    assert_eq!(err["exit"], 1);
    assert_eq!(err["sqlstate"], "42P01");
    assert_eq!(err["error"], "failed");

    // 86: a guardrail blocks it; it never reaches the target.
    let out = env.ci(&["shop", "drop table items"]);
    assert_eq!(code(&out), 86, "{}", stderr(&out));
    assert!(stderr(&out).contains("no-ddl"), "{}", stderr(&out));
    let out = env.ci(&["shop", "-o", "json", "drop table items"]);
    assert_eq!(json_error(&out)["error"], "blocked");
    let out = env.ci(&["plain", "-o", "csv", "select count(*) from items"]);
    assert_eq!(stdout(&out).lines().nth(1), Some("5"));

    // 80: usage — no input (stdin is not a terminal and empty), --stream without json.
    let out = env.ci(&["plain"]);
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    let out = env.ci(&["plain", "--stream", "select 1"]);
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    let out = env.ci(&["plain", "-o", "yaml", "select 1"]);
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    // An access-reviewed connection without --reason says what to give.
    let out = env.ci(&["prod", "select 1"]);
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));

    // 88: its access review is pending (--no-wait), the id on stdout.
    let out = env.ci(&["prod", "--reason", "deploy 42", "--no-wait", "select 1"]);
    assert_eq!(code(&out), 88, "{}", stderr(&out));
    assert!(
        stdout(&out).trim().parse::<i64>().is_ok(),
        "{}",
        stdout(&out)
    );

    // 90: an ssh connection whose target is down; the adapter's reason reaches the caller.
    let out = env.ci(&["web", "uptime"]);
    assert_eq!(code(&out), 90, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the target 127.0.0.1:1"),
        "{}",
        stderr(&out)
    );

    // 81: a refused token.
    let out = env.hoop_with("hoopk_nope_nope", &["exec", "plain", "select 1"], None);
    assert_eq!(code(&out), 81, "{}", stderr(&out));
    // 82: not in an allowed group.
    let out = env.ci(&["secret", "select 1"]);
    assert_eq!(code(&out), 82, "{}", stderr(&out));
    // 85: no such connection.
    let out = env.ci(&["nope", "select 1"]);
    assert_eq!(code(&out), 85, "{}", stderr(&out));
    // 84: the gateway presents another certificate than the given fingerprint.
    let out = env.hoop_with(
        &env.api_key,
        &[
            "exec",
            "plain",
            "--fingerprint",
            "SHA256:0000000000000000000000000000000000000000000000000000000000000000",
            "select 1",
        ],
        None,
    );
    assert_eq!(code(&out), 84, "{}", stderr(&out));
    // 83: nothing listens there.
    let mut cmd = env
        .cli
        .command(&["exec", "plain", "-o", "json", "select 1"])
        .unwrap();
    cmd.env("HOOP_TOKEN", &env.api_key)
        .env("HOOP_GATEWAY", format!("https://127.0.0.1:{}", free_port()))
        .env("HOOP_FINGERPRINT", &env.gw.fingerprint);
    let out = run_with_stdin(&mut cmd, None).unwrap();
    assert_eq!(code(&out), 83, "{}", stderr(&out));
    assert_eq!(json_error(&out)["error"], "unreachable");
    // 89: --timeout cancels the statement on the target.
    let out = env.ci(&["plain", "--timeout", "1s", "select pg_sleep(60)"]);
    assert_eq!(code(&out), 89, "{}", stderr(&out));
    assert!(stderr(&out).contains("57014"), "{}", stderr(&out));
    // The session goes on working afterwards (the cancel hit only that statement).
    let out = env.ci(&["plain", "select 1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // 90: the gateway cannot reach the target (the session never starts).
    let out = env.ci(&["down", "-o", "json", "select 1"]);
    assert_eq!(code(&out), 90, "{}", stderr(&out));
    let err = json_error(&out);
    assert_eq!(err["error"], "internal");
    assert_eq!(err["sqlstate"], "08006");
    // 0 with a client-credentials token from the real OIDC provider (external issuer).
    let token = env
        .idp
        .client_credentials_token("hoop-ci", "ci-secret")
        .await
        .unwrap();
    let out = env.hoop_with(
        &token,
        &["exec", "plain", "-o", "json", "select 7 as n"],
        None,
    );
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), env.gw.logs());
    assert_eq!(result_sets(&out)[0].rows, vec![vec![Some("7".into())]]);
    // --token-file works the same, without HOOP_TOKEN.
    let tf = env.cli.home().join("token");
    std::fs::write(&tf, format!("{token}\n")).unwrap();
    let mut cmd = env
        .cli
        .command(&[
            "exec",
            "plain",
            "--token-file",
            tf.to_str().unwrap(),
            "select 1",
        ])
        .unwrap();
    cmd.env("HOOP_GATEWAY", &env.gw.url)
        .env("HOOP_FINGERPRINT", &env.gw.fingerprint);
    let out = run_with_stdin(&mut cmd, None).unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[tokio::test]
async fn a_target_cannot_pass_its_errors_off_as_the_gateways() {
    let env = setup().await;
    // The target's error worded like a guardrail block is a statement failure (1), not 86.
    let out = env.ci(&[
        "plain",
        "do $$ begin raise exception 'blocked by guardrail fake: nothing'; end $$",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("blocked by guardrail fake"),
        "{}",
        stderr(&out)
    );
    // ... and a rejection or a pending review likewise.
    let out = env.ci(&[
        "plain",
        "do $$ begin raise exception 'statement review pending: review 1 is pending'; end $$",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // The target's notice naming a review is a notice, not a review event.
    let out = env.ci(&[
        "plain",
        "-o",
        "json",
        "--stream",
        "do $$ begin raise notice 'statement needs approval (x): review 1 — approve with `hoop approve 1`; waiting up to 5m'; end $$",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.iter().any(|e| e["event"] == "review"), "{events:?}");
    assert!(
        events.iter().any(|e| e["event"] == "notice"
            && e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("review 1")),
        "{events:?}"
    );
    // The gateway's own block is still 86.
    let out = env.ci(&["shop", "drop table items"]);
    assert_eq!(code(&out), 86, "{}", stderr(&out));
    // --timeout on a statement still waiting for review: 89, it never runs, the review is
    // withdrawn.
    let out = env.ci(&[
        "shop",
        "--timeout",
        "2s",
        "update items set qty = 55 where id = 1",
    ]);
    assert_eq!(code(&out), 89, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("still waiting for review") && err.contains("not run"),
        "{err}"
    );
    let at = err.find("waiting for review ").unwrap() + "waiting for review ".len();
    let id: String = err[at..].chars().take_while(char::is_ascii_digit).collect();
    let mut state = Value::Null;
    for _ in 0..100 {
        let out = env.hoop_with(&env.api_key, &["reviews", "show", &id, "-o", "json"], None);
        state = serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default()["state"].clone();
        if state == "withdrawn" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "withdrawn", "{}", env.gw.logs());
    let out = env.ci(&["plain", "-o", "csv", "select qty from items where id = 1"]);
    assert_eq!(stdout(&out), "qty\n1\n", "the timed-out update did not run");
}

#[tokio::test]
async fn exec_review_no_wait_then_approved_review_runs_it() {
    let env = setup().await;
    let update = "update items set qty = 0 where id = 1";
    // --no-wait: the review id on stdout, exit 88; the statement did not run.
    let out = env.as_user("alice", &["exec", "shop", "--no-wait", update]);
    assert_eq!(code(&out), 88, "{}\n{}", stderr(&out), env.gw.logs());
    let id: i64 = stdout(&out).trim().parse().unwrap();
    assert!(
        stderr(&out).contains(&format!("hoop approve {id}")),
        "{}",
        stderr(&out)
    );
    let qty = |env: &Env| {
        let out = env.ci(&["plain", "-o", "csv", "select qty from items where id = 1"]);
        stdout(&out).lines().nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(qty(&env), "1");
    // Not approved yet: --review refuses (87) and runs nothing.
    let out = env.as_user(
        "alice",
        &["exec", "shop", "--review", &id.to_string(), update],
    );
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert!(stderr(&out).contains("pending"), "{}", stderr(&out));

    // Another user approves it.
    let out = env.as_user("bob", &["approve", &id.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // Only the exact approved text runs under it, only for its requester.
    let out = env.as_user(
        "alice",
        &[
            "exec",
            "shop",
            "--review",
            &id.to_string(),
            "update items set qty = 0",
        ],
    );
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("different statement"),
        "{}",
        stderr(&out)
    );
    let out = env.ci(&["shop", "--review", &id.to_string(), update]);
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    assert_eq!(qty(&env), "1");

    let out = env.as_user(
        "alice",
        &[
            "exec",
            "shop",
            "-o",
            "json",
            "--review",
            &id.to_string(),
            update,
        ],
    );
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), env.gw.logs());
    assert_eq!(result_sets(&out)[0].command.as_deref(), Some("UPDATE 1"));
    assert_eq!(qty(&env), "0");
    let out = env.as_user("alice", &["reviews", "show", &id.to_string(), "-o", "json"]);
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["state"], "executed");
    // Once only.
    let out = env.as_user(
        "alice",
        &["exec", "shop", "--review", &id.to_string(), update],
    );
    assert_eq!(code(&out), 87, "{}", stderr(&out));
    let audit = env.gw.audit_events().await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "review.executed" && e["details"]["id"] == id),
        "{audit:?}"
    );

    // --wait runs out: exit 89, the review stays pending.
    let out = env.as_user(
        "alice",
        &["exec", "shop", "--wait", "1s", "-o", "json", update],
    );
    assert_eq!(code(&out), 89, "{}", stderr(&out));
    let err = json_error(&out);
    let id2 = err["review"].as_i64().unwrap();
    let out = env.as_user(
        "alice",
        &["reviews", "show", &id2.to_string(), "-o", "json"],
    );
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["state"], "pending");
    // A rejected review: 87 with the reason.
    let out = env.as_user(
        "bob",
        &["reject", &id2.to_string(), "--reason", "not today"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = env.as_user(
        "alice",
        &["exec", "shop", "--review", &id2.to_string(), update],
    );
    assert_eq!(code(&out), 87, "{}", stderr(&out));

    // Waiting (the default): approved while the CLI waits, the statement then runs.
    let token = env.user_token("alice");
    let mut cmd = tokio::process::Command::from(
        env.cli
            .command(&["exec", "shop", "update items set qty = 9 where id = 2"])
            .unwrap(),
    );
    cmd.env("HOOP_TOKEN", &token)
        .env("HOOP_GATEWAY", &env.gw.url)
        .env("HOOP_FINGERPRINT", &env.gw.fingerprint)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    let mut id3 = None;
    for _ in 0..200 {
        let out = env.as_user("bob", &["reviews", "--to-approve", "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        id3 = list
            .as_array()
            .and_then(|l| l.iter().filter_map(|r| r["id"].as_i64()).max());
        if id3.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id3 = id3.expect("the held statement filed a review");
    let out = env.as_user("bob", &["approve", &id3.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("UPDATE 1"), "{}", stdout(&out));
}

#[tokio::test]
async fn exec_streams_a_million_rows() {
    let env = setup().await;
    let out = env.ci(&[
        "shop",
        "-o",
        "csv",
        "select g as id, 'user' || g || '@example.com' as email from generate_series(1, 1000000) g",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let mut n = 0u64;
    for r in reader.records() {
        let r = r.unwrap();
        n += 1;
        if n == 1 || n == 1_000_000 {
            assert_eq!(&r[1], "***@example.com", "row {n}");
        }
    }
    assert_eq!(n, 1_000_000);
}

#[tokio::test]
async fn exec_with_a_workload_token_and_no_stored_secret() {
    // The gateway is its own issuer; the OIDC provider is trusted for machines only.
    let env = setup_with(true).await;
    let token = env
        .idp
        .client_credentials_token("hoop-ci", "ci-secret")
        .await
        .unwrap();
    let out = env.hoop_with(&token, &["whoami", "-o", "json"], None);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), env.gw.logs());
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["subject"], "workload:ci:hoop-ci");
    assert_eq!(me["method"], "workload");
    assert_eq!(me["groups"], serde_json::json!(["deploy"]));
    let out = env.hoop_with(
        &token,
        &[
            "exec",
            "shop",
            "-o",
            "json",
            "select email from customers where id = 1",
        ],
        None,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        result_sets(&out)[0].rows,
        vec![vec![Some("***@example.com".into())]]
    );
    // A token of the same issuer that matches no rule (a user's) is refused: 81.
    let out = env.as_user("alice", &["exec", "shop", "select 1"]);
    assert_eq!(code(&out), 81, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("matches none of its rules"),
        "{}",
        stderr(&out)
    );
}
