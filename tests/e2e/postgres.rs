//! End to end: `hoop connect` and real PostgreSQL clients (psql, pgbench,
//! tokio-postgres) through the real gateway to a real PostgreSQL server.

use std::process::Output;
use std::time::Duration;

use hoop_tests::gateway::{Tunnel, code, stderr, stdout};
use hoop_tests::postgres::pg_bin_dir;
use hoop_tests::wire::Wire;
use hoop_tests::{CliUser, Gateway, PasswordKind, Postgres};

pub const TARGET_PASSWORD: &str = "target-secret-Xq93";

/// A target database, a gateway in front of it, a user with an API key, and a running tunnel.
pub struct Env {
    pub pg: Postgres,
    pub gw: Gateway,
    pub cli: CliUser,
    pub key: String,
    pub tunnel: Tunnel,
    _secrets: tempfile::TempDir,
}

/// `extra` goes into the connection's table (guardrails, masking) or after it.
pub async fn setup(connection_extra: &str, config_extra: &str) -> Env {
    setup_with("", connection_extra, config_extra).await
}

/// Like [`setup`], with extra `[auth]` keys.
pub async fn setup_with(auth_extra: &str, connection_extra: &str, config_extra: &str) -> Env {
    let pg = Postgres::start().await.unwrap();
    pg.create_role("app", TARGET_PASSWORD, PasswordKind::Scram)
        .await
        .unwrap();
    pg.create_database("shop", "app").await.unwrap();
    pg.psql_as(
        "app",
        TARGET_PASSWORD,
        "shop",
        "create table customers (id int primary key, name text, email text, card text, note text);
         insert into customers values
           (1, 'Ada', 'ada@example.com', '4111 1111 1111 1111', 'paid with 4111-1111-1111-1111 yesterday'),
           (2, 'Bob', 'bob@example.org', '5500 0000 0000 0004', 'call him');
         create table items (id int, qty int);
         insert into items select g, g from generate_series(1, 10) g;",
    )
    .await
    .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let pw_file = secrets.path().join("pw");
    let connection_extra = connection_extra.replace("$PGPORT", &pg.port.to_string());
    let config_extra = config_extra
        .replace("$PGPORT", &pg.port.to_string())
        .replace("$PWFILE", &pw_file.display().to_string());
    std::fs::write(&pw_file, TARGET_PASSWORD).unwrap();
    let gw = Gateway::start(&format!(
        r#"
[auth]
admins = ["admin"]
{auth_extra}

[[connections]]
name = "shop"
type = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
user = "app"
password = {{ file = "{pw}" }}
allow = ["engineering"]
{connection_extra}

[[connections]]
name = "sales"
type = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
user = "app"
password = {{ file = "{pw}" }}
allow = ["sales"]

{config_extra}
"#,
        port = pg.port,
        pw = pw_file.display()
    ))
    .await
    .unwrap();
    let out = gw
        .hoopd(
            &[
                "api-keys",
                "create",
                "--name",
                "tester",
                "--groups",
                "engineering",
            ],
            None,
        )
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let cli = CliUser::new().unwrap();
    cli.pin(&gw).unwrap();
    let tunnel = cli
        .connect("shop", &[("HOOP_TOKEN", &key)])
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.logs()));
    Env {
        pg,
        gw,
        cli,
        key,
        tunnel,
        _secrets: secrets,
    }
}

/// Runs psql against `url` with `sql` on stdin (unaligned, tuples only, stop on error).
pub fn psql(url: &str, sql: &str) -> Output {
    let psql = pg_bin_dir().unwrap().join("psql");
    hoop_tests::gateway::run_with_stdin(
        std::process::Command::new(psql)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url])
            .env("PGCONNECT_TIMEOUT", "10"),
        Some(sql),
    )
    .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}\n{}",
        stderr(out),
        stdout(out)
    );
    stdout(out)
}

#[tokio::test]
async fn psql_works_through_the_tunnel() {
    let env = setup("", "").await;
    let url = &env.tunnel.url;
    assert_eq!(
        ok(&psql(url, "select count(*) from customers;")).trim(),
        "2"
    );
    // Multi-statement string, \d, errors mid-stream keep the session usable.
    let out = ok(&psql(url, "select 1; select 2;\n\\d items\nselect 3;"));
    assert!(out.contains("qty"), "{out}");
    let out = psql(
        url,
        "\\set ON_ERROR_STOP 0\nselect * from nope;\nselect 42;",
    );
    assert!(stdout(&out).contains("42"), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // COPY out and in.
    let out = ok(&psql(
        url,
        "copy (select id, qty from items order by id) to stdout with (format csv);",
    ));
    assert_eq!(out.lines().count(), 10);
    let out = ok(&psql(
        url,
        "create table copied (id int, qty int);\ncopy copied from stdin with (format csv);\n1,2\n3,4\n\\.\nselect sum(qty) from copied;",
    ));
    assert!(out.trim().ends_with('6'), "{out}");
    // LISTEN/NOTIFY in one session.
    let out = psql(url, "listen ch;\nnotify ch, 'hello';\nselect 1;");
    assert!(
        stdout(&out).contains("hello") || stderr(&out).contains("hello"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // A one-million-row result.
    let out = ok(&psql(
        url,
        "select g, md5(g::text) from generate_series(1, 1000000) g;",
    ));
    assert_eq!(out.lines().count(), 1_000_000);
    // The target's password never reaches the client or the gateway's log.
    assert!(!out.contains(TARGET_PASSWORD));
    assert!(!env.gw.logs().contains(TARGET_PASSWORD));
    assert!(!env.tunnel.logs().contains(TARGET_PASSWORD));
}

#[tokio::test]
async fn wrong_tunnel_password_and_wrong_group_are_refused() {
    let env = setup("", "").await;
    let out = psql(
        &env.tunnel.url_with_password("guessed-password-123"),
        "select 1;",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tunnel password"), "{}", stderr(&out));
    // The tunnel itself stays up.
    assert_eq!(ok(&psql(&env.tunnel.url, "select 7;")).trim(), "7");

    // A connection for another group: `hoop connect` refuses with exit 85 (not listed).
    let out = env
        .cli
        .run_env(&["connect", "sales"], &[("HOOP_TOKEN", &env.key)])
        .unwrap();
    assert_eq!(code(&out), 85, "{}", stderr(&out));
    // And the gateway refuses a stream for it even if a client asks directly.
    let http = env.gw.http().unwrap();
    let r = http
        .request(reqwest::Method::CONNECT, &env.gw.url)
        .bearer_auth(&env.key)
        .header("x-hoop-connection", "sales")
        .header("x-hoop-secret", "0123456789abcdefghij")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn tokio_postgres_parameters_binary_results_and_cancel() {
    let env = setup("", "").await;
    let (client, conn) = tokio_postgres::connect(&env.tunnel.driver_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Extended protocol with parameters; tokio-postgres asks for binary results.
    let rows = client
        .query("select id, name from customers where id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let name: &str = rows[0].get(1);
    assert_eq!(name, "Ada");
    let stmt = client
        .prepare("select qty from items where id > $1 order by id")
        .await
        .unwrap();
    for _ in 0..3 {
        let rows = client.query(&stmt, &[&5i32]).await.unwrap();
        let qty: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(qty, vec![6, 7, 8, 9, 10]);
    }
    // Pipelined queries.
    let (a, b) = futures_util::join!(
        client.query_one("select 1::int", &[]),
        client.query_one("select 2::int", &[])
    );
    assert_eq!(
        (a.unwrap().get::<_, i32>(0), b.unwrap().get::<_, i32>(0)),
        (1, 2)
    );
    // Cancel a running query through the tunnel (the gateway maps our key to the target's).
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("cancel took effect")
        .unwrap();
    let err = r.unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(db.code().code(), "57014", "query_canceled: {db:?}");
}

#[tokio::test]
async fn pgbench_runs_clean_in_every_protocol_mode() {
    let env = setup("", "").await;
    let pgbench = pg_bin_dir().unwrap().join("pgbench");
    let init = std::process::Command::new(&pgbench)
        .args(["-i", "-s", "1", "-q"])
        .arg(env.pg.url_for("app", TARGET_PASSWORD, "shop"))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for mode in ["simple", "extended", "prepared"] {
        let out = std::process::Command::new(&pgbench)
            .args(["-S", "-c", "4", "-j", "2", "-T", "2", "-M", mode, "-n"])
            .arg(&env.tunnel.url)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pgbench -M {mode}: {text}");
        assert!(
            text.contains("number of failed transactions: 0"),
            "pgbench -M {mode}: {text}"
        );
    }
}

#[tokio::test]
async fn malformed_and_oversized_messages_end_only_that_session() {
    let env = setup("", "").await;
    let cases: Vec<Vec<u8>> = vec![
        // A Query declaring 1 GiB.
        [&[b'Q'][..], &0x4000_0000i32.to_be_bytes(), b"select 1"].concat(),
        // A length below the minimum.
        [&[b'Q'][..], &2i32.to_be_bytes()].concat(),
        // A Bind whose parameter runs past the message.
        [
            &[b'B'][..],
            &14i32.to_be_bytes(),
            &[0, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff][..],
        ]
        .concat(),
    ];
    for bytes in cases {
        let mut w = Wire::connect(env.tunnel.port, &env.tunnel.password, "shop")
            .await
            .unwrap();
        w.raw(&bytes).send().await.unwrap();
        // The gateway answers with an error or just closes; either way it does so promptly and
        // without waiting for a gigabyte.
        let rest = w.until_closed(Duration::from_secs(10)).await.unwrap();
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.contains("hoop: invalid message from the client"),
            "{text:?}"
        );
    }
    // The gateway and the tunnel carry on.
    assert_eq!(ok(&psql(&env.tunnel.url, "select 5;")).trim(), "5");
    let health = env
        .gw
        .http()
        .unwrap()
        .get(format!("{}/healthz", env.gw.url))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
}

#[tokio::test]
async fn a_long_connect_refreshes_its_token_for_new_streams() {
    // Access tokens live 2 s; the tunnel outlives several of them.
    let env = setup_with(
        "access_token_ttl = \"2s\"\ndevice_poll_interval = \"1s\"",
        "",
        "",
    )
    .await;
    env.gw
        .add_user("alice", "alice-password", "engineering")
        .unwrap();
    let cli = CliUser::new().unwrap();
    let gw = &env.gw;
    let out = cli
        .login(
            &["--gateway", &gw.url, "--fingerprint", &gw.fingerprint],
            |p| async move {
                let page = gw
                    .submit_device_page(&p.code, "alice", "alice-password", false)
                    .await?;
                anyhow::ensure!(page.contains("You are signed in"), "{page}");
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let tunnel = cli.connect("shop", &[]).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let out = psql(&tunnel.url, "select 1;");
        assert!(out.status.success(), "{}\n{}", stderr(&out), tunnel.logs());
    }
}

#[tokio::test]
async fn an_access_wait_outlives_its_token() {
    // Tokens live 2 s; the wait for approval spans a whole long poll (25 s) and more, so the
    // next poll needs a refreshed token.
    let env = setup_with(
        "access_token_ttl = \"2s\"\ndevice_poll_interval = \"1s\"",
        "",
        r#"
[[connections]]
name = "prod"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = { file = "$PWFILE" }
allow = ["engineering"]
review = { access = true, approvers = ["dba"] }
"#,
    )
    .await;
    let gw = &env.gw;
    gw.add_user("alice", "alice-password", "engineering")
        .unwrap();
    let out = gw
        .hoopd(
            &["api-keys", "create", "--name", "dba", "--groups", "dba"],
            None,
        )
        .unwrap();
    let dba = stdout(&out).trim().to_string();
    let cli = CliUser::new().unwrap();
    let out = cli
        .login(
            &["--gateway", &gw.url, "--fingerprint", &gw.fingerprint],
            |p| async move {
                let page = gw
                    .submit_device_page(&p.code, "alice", "alice-password", false)
                    .await?;
                anyhow::ensure!(page.contains("You are signed in"), "{page}");
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let approver = CliUser::new().unwrap();
    approver.pin(gw).unwrap();
    let approve = async {
        tokio::time::sleep(Duration::from_secs(28)).await;
        let env = [
            ("HOOP_TOKEN", dba.as_str()),
            ("HOOP_GATEWAY", gw.url.as_str()),
        ];
        let out = approver
            .run_env(&["reviews", "--to-approve", "-o", "json"], &env)
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = list[0]["id"].as_i64().expect("a pending review");
        let out = approver
            .run_env(&["approve", &id.to_string()], &env)
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    };
    let (tunnel, ()) = tokio::join!(
        cli.connect_with(
            "prod",
            &["--reason", "INC-7", "--duration", "10m", "--wait", "2m"],
            &[],
        ),
        approve
    );
    let tunnel = tunnel.unwrap();
    let out = psql(&tunnel.url, "select 1;");
    assert!(out.status.success(), "{}\n{}", stderr(&out), tunnel.logs());
}
