//! Issue 4 end to end: access windows and statement reviews, decided from the terminal by other
//! users of the real OIDC provider (tokens signed by the provider's key, presented through
//! `HOOP_TOKEN`), with psql waiting on a held statement.

use std::time::Duration;

use hoop_tests::gateway::{code, stderr, stdout};
use hoop_tests::postgres::pg_bin_dir;
use hoop_tests::{CliUser, Gateway, OidcOptions, OidcProvider, PasswordKind, Postgres};
use serde_json::Value;

const PW: &str = "review-target-pw-7";

struct Env {
    _pg: Postgres,
    idp: OidcProvider,
    gw: Gateway,
    cli: CliUser,
    approver2: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Env {
    let pg = Postgres::start().await.unwrap();
    pg.create_role("app", PW, PasswordKind::Scram)
        .await
        .unwrap();
    pg.create_database("shop", "app").await.unwrap();
    pg.psql_as("app", PW, "shop", "create table items (id int primary key, qty int); insert into items select g, g from generate_series(1, 5) g;")
        .await
        .unwrap();
    let idp = OidcProvider::start(OidcOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), PW).unwrap();
    let conn = |name: &str, review: &str| {
        format!(
            "[[connections]]\nname = \"{name}\"\ntype = \"postgres\"\naddress = \"127.0.0.1:{}\"\ndatabase = \"shop\"\nuser = \"app\"\npassword = {{ file = \"{}\" }}\nallow = [\"engineering\"]\nreview = {review}\n",
            pg.port,
            dir.path().join("pw").display()
        )
    };
    let gw = Gateway::start(&format!(
        "[auth]\nissuer = \"{}\"\nadmins = [\"admin\"]\n\n{}\n{}\n{}",
        idp.issuer,
        conn(
            "prod",
            "{ access = true, approvers = [\"dba\"], max_duration = \"1h\" }"
        ),
        conn(
            "shop",
            "{ statements = [\"write\"], approvers = [\"dba\"], statement_timeout = \"4s\" }"
        ),
        conn(
            "shop2",
            "{ statements = [\"write\"], approvers = [\"dba\"], min_approvals = 2 }"
        ) + &conn(
            "shop3",
            "{ statements = [\"no-unbounded-writes\"], approvers = [\"dba\"] }"
        )
        .replace(
            "review = ",
            "guardrails = [\"no-unbounded-writes\"]\nreview = "
        ),
    ))
    .await
    .unwrap();
    let out = gw
        .hoopd(
            &[
                "api-keys",
                "create",
                "--name",
                "approver2",
                "--groups",
                "dba",
            ],
            None,
        )
        .unwrap();
    let approver2 = stdout(&out).trim().to_string();
    let cli = CliUser::new().unwrap();
    cli.pin(&gw).unwrap();
    Env {
        _pg: pg,
        idp,
        gw,
        cli,
        approver2,
        _dir: dir,
    }
}

impl Env {
    fn token(&self, user: &str) -> String {
        self.idp
            .mint(&self.idp.user_claims(user, 600).unwrap())
            .unwrap()
    }
    fn hoop(&self, user: &str, args: &[&str]) -> std::process::Output {
        let token = if user == "approver2" {
            self.approver2.clone()
        } else {
            self.token(user)
        };
        self.cli.run_env(args, &[("HOOP_TOKEN", &token)]).unwrap()
    }
    /// The newest pending review `user` may approve.
    async fn pending_for(&self, user: &str) -> i64 {
        for _ in 0..100 {
            let out = self.hoop(user, &["reviews", "--to-approve", "-o", "json"]);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            let list: Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(id) = list
                .as_array()
                .and_then(|l| l.iter().filter_map(|r| r["id"].as_i64()).max())
            {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no review appeared for {user}");
    }
}

fn psql_spawn(url: &str, sql: &str) -> std::process::Child {
    let psql = pg_bin_dir().unwrap().join("psql");
    std::process::Command::new(psql)
        .args(["-X", "-A", "-t", url, "-c", sql])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn access_review_opens_a_window_and_revoke_closes_live_sessions() {
    let env = setup().await;
    // Without a reason and a terminal, connect says what to give.
    let out = env.hoop("alice", &["connect", "prod"]);
    assert_eq!(code(&out), 80, "{}", stderr(&out));
    // --no-wait files the request, prints its id, exits "pending".
    let out = env.hoop(
        "alice",
        &[
            "connect",
            "prod",
            "--reason",
            "INC-123",
            "--duration",
            "30m",
            "--no-wait",
        ],
    );
    assert_eq!(code(&out), 88, "{}", stderr(&out));
    let id: i64 = stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id on stdout: {}", stdout(&out)));
    assert!(
        stderr(&out).contains(&format!("hoop approve {id}")),
        "{}",
        stderr(&out)
    );
    // Nobody approves their own request; a non-approver is told who may.
    let out = env.hoop("alice", &["approve", &id.to_string()]);
    assert_eq!(code(&out), 82, "{}", stderr(&out));
    let out = env.hoop("carol", &["approve", &id.to_string()]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("dba"), "{}", stderr(&out));
    let out = env.hoop(
        "bob",
        &["approve", &id.to_string(), "--comment", "ok for INC-123"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Approving again says the review is decided.
    let out = env.hoop("bob", &["approve", &id.to_string()]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).to_lowercase().contains("approved"),
        "{}",
        stderr(&out)
    );

    // The grant opens the tunnel (once per grant: a second connect needs no new review).
    let alice = env.token("alice");
    let tunnel = env
        .cli
        .connect_with(
            "prod",
            &["--reason", "INC-123", "--duration", "30m"],
            &[("HOOP_TOKEN", &alice)],
        )
        .await
        .unwrap();
    let psql = pg_bin_dir().unwrap().join("psql");
    let out = std::process::Command::new(&psql)
        .args(["-X", "-A", "-t", &tunnel.url, "-c", "select 1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A live session under the grant ends when bob revokes it; new streams are refused.
    let long = psql_spawn(&tunnel.url, "select pg_sleep(20)");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = env.hoop("bob", &["revoke", &id.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = tokio::time::timeout(
        Duration::from_secs(8),
        tokio::task::spawn_blocking(move || long.wait_with_output()),
    )
    .await
    .expect("the live session ended within seconds of the revoke")
    .unwrap()
    .unwrap();
    assert!(!done.status.success());
    assert!(
        String::from_utf8_lossy(&done.stderr).contains("access grant"),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let out = std::process::Command::new(&psql)
        .args(["-X", "-A", "-t", &tunnel.url, "-c", "select 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs an approved review"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every transition is audited and the chain verifies.
    let kinds: Vec<String> = env
        .gw
        .audit_events()
        .await
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for k in ["review.requested", "review.approved", "review.revoked"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
    let out = env.gw.hoopd(&["audit", "verify"], None).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn held_statements_run_when_approved_and_fail_when_rejected_or_unanswered() {
    let env = setup().await;
    let alice = env.token("alice");
    let tunnel = env
        .cli
        .connect("shop", &[("HOOP_TOKEN", &alice)])
        .await
        .unwrap();

    // Approved: psql waits, then gets its result.
    let held = psql_spawn(&tunnel.url, "update items set qty = 42 where id = 1");
    let id = env.pending_for("bob").await;
    let shown = env.hoop("bob", &["reviews", "show", &id.to_string(), "-o", "json"]);
    let review: Value = serde_json::from_slice(&shown.stdout).unwrap_or(Value::Null);
    assert!(
        review.to_string().contains("update items"),
        "the reviewer sees the statement: {review}"
    );
    assert!(
        review.to_string().contains("alice"),
        "and who asked: {review}"
    );
    let out = env.hoop("alice", &["approve", &id.to_string()]);
    assert_eq!(code(&out), 82, "self-approval refused: {}", stderr(&out));
    let out = env.hoop("bob", &["approve", &id.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = tokio::task::spawn_blocking(move || held.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        String::from_utf8_lossy(&done.stderr).contains(&format!("review {id}")),
        "the notice names the review"
    );
    let out = std::process::Command::new(pg_bin_dir().unwrap().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            &tunnel.url,
            "-c",
            "select qty from items where id = 1",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // Rejected: an error with the reason; the session could go on.
    let held = psql_spawn(&tunnel.url, "update items set qty = 0 where id = 2");
    let id = env.pending_for("bob").await;
    let out = env.hoop(
        "bob",
        &[
            "reject",
            &id.to_string(),
            "--reason",
            "not during the freeze",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = tokio::task::spawn_blocking(move || held.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!done.status.success());
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        err.contains("not approved") && err.contains("not during the freeze"),
        "{err}"
    );

    // Nobody answers within statement_timeout (4 s): the statement fails.
    let started = std::time::Instant::now();
    let out = std::process::Command::new(pg_bin_dir().unwrap().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            &tunnel.url,
            "-c",
            "update items set qty = 0 where id = 3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not approved within"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // Nothing rejected or unanswered reached the target.
    let out = std::process::Command::new(pg_bin_dir().unwrap().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            &tunnel.url,
            "-c",
            "select qty from items where id in (2, 3) order by id",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2\n3");
}

#[tokio::test]
async fn two_approvals_are_needed_when_configured() {
    let env = setup().await;
    let alice = env.token("alice");
    let tunnel = env
        .cli
        .connect("shop2", &[("HOOP_TOKEN", &alice)])
        .await
        .unwrap();
    let held = psql_spawn(&tunnel.url, "update items set qty = 7 where id = 4");
    let id = env.pending_for("bob").await;
    let out = env.hoop("bob", &["approve", &id.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // One approval of two: still held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = env.hoop("bob", &["reviews", "show", &id.to_string(), "-o", "json"]);
    assert!(stdout(&out).contains("pending"), "{}", stdout(&out));
    let out = env.hoop("approver2", &["approve", &id.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = tokio::task::spawn_blocking(move || held.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

#[tokio::test]
async fn an_access_window_expires_and_ends_its_sessions() {
    let env = setup().await;
    let out = env.hoop(
        "alice",
        &[
            "connect",
            "prod",
            "--reason",
            "INC-9",
            "--duration",
            "4s",
            "--no-wait",
        ],
    );
    assert_eq!(code(&out), 88, "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let out = env.hoop("bob", &["approve", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let alice = env.token("alice");
    let tunnel = env
        .cli
        .connect_with(
            "prod",
            &["--reason", "INC-9", "--duration", "4s"],
            &[("HOOP_TOKEN", &alice)],
        )
        .await
        .unwrap();
    let long = psql_spawn(&tunnel.url, "select pg_sleep(30)");
    let done = tokio::time::timeout(
        Duration::from_secs(12),
        tokio::task::spawn_blocking(move || long.wait_with_output()),
    )
    .await
    .expect("the session ended when the window closed")
    .unwrap()
    .unwrap();
    assert!(!done.status.success());
    assert!(
        String::from_utf8_lossy(&done.stderr).contains("access grant"),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let out = env.hoop("alice", &["reviews", "show", &id, "-o", "json"]);
    assert!(stdout(&out).contains("expired"), "{}", stdout(&out));
}

#[tokio::test]
async fn a_guardrail_can_ask_for_review_instead_of_blocking() {
    let env = setup().await;
    let alice = env.token("alice");
    let tunnel = env
        .cli
        .connect("shop3", &[("HOOP_TOKEN", &alice)])
        .await
        .unwrap();
    let held = psql_spawn(&tunnel.url, "delete from items");
    let id = env.pending_for("bob").await;
    let out = env.hoop("bob", &["approve", &id.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = tokio::task::spawn_blocking(move || held.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("DELETE 5") || done.status.success());
}

/// The state of review `id` as `user` sees it.
fn review_state(env: &Env, user: &str, id: i64) -> String {
    let out = env.hoop(user, &["reviews", "show", &id.to_string(), "-o", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    review["state"].as_str().unwrap_or_default().to_string()
}

/// Polls until review `id` is in `want` (the withdrawal follows the client's exit).
async fn wait_state(env: &Env, id: i64, want: &str) {
    let mut last = String::new();
    for _ in 0..100 {
        last = review_state(env, "alice", id);
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("review {id} is {last}, not {want}:\n{}", env.gw.logs());
}

#[tokio::test]
async fn a_client_that_leaves_withdraws_its_held_statement() {
    let env = setup().await;
    let alice = env.token("alice");
    // A killed psql (no CancelRequest, the connection just closes).
    let tunnel = env
        .cli
        .connect("shop2", &[("HOOP_TOKEN", &alice)])
        .await
        .unwrap();
    let mut held = psql_spawn(&tunnel.url, "update items set qty = 77 where id = 3");
    let id = env.pending_for("bob").await;
    held.kill().unwrap();
    let _ = held.wait();
    wait_state(&env, id, "withdrawn").await;
    // So a late approval cannot run it.
    let out = env.hoop("bob", &["approve", &id.to_string()]);
    assert_ne!(code(&out), 0, "a withdrawn review cannot be approved");

    // A `hoop exec` whose caller is killed while its statement waits.
    let mut cmd = tokio::process::Command::from(
        env.cli
            .command(&["exec", "shop2", "update items set qty = 78 where id = 3"])
            .unwrap(),
    );
    cmd.env("HOOP_TOKEN", &alice)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let id = env.pending_for("bob").await;
    child.kill().await.unwrap();
    wait_state(&env, id, "withdrawn").await;
    let out = env.hoop(
        "alice",
        &[
            "exec",
            "shop2",
            "-o",
            "csv",
            "select qty from items where id = 3",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "qty\n3\n", "neither update ran");
}

#[tokio::test]
async fn a_held_statement_is_refused_when_over_1_mib_is_pipelined_behind_it() {
    let env = setup().await;
    let alice = env.token("alice");
    let tunnel = env
        .cli
        .connect("shop2", &[("HOOP_TOKEN", &alice)])
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&tunnel.driver_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // tokio-postgres pipelines: the selects are sent while the update waits for review.
    let literal = "z".repeat(64 * 1024);
    let selects: Vec<String> = (0..24)
        .map(|i| format!("select {i}, '{literal}'"))
        .collect();
    // Preparing runs nothing and is not reviewed; the execution is held.
    let stmt = client
        .prepare("update items set qty = 79 where id = 3")
        .await
        .unwrap();
    let update = client.execute(&stmt, &[]);
    let rest = futures_util::future::join_all(selects.iter().map(|q| client.simple_query(q)));
    let (update, rest) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(update, rest)
    })
    .await
    .expect("the pipelined session stalled");
    let err = update.expect_err("the held update must be refused");
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("more than 1024 KiB"), "{err:?}");
    // The statements behind it ran, each with its own answer.
    for (i, r) in rest.iter().enumerate() {
        let first = r.as_ref().unwrap().iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(first, Some(i.to_string()));
    }
    let id: i64 = msg
        .split("review ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no review id in {msg}"));
    assert_eq!(review_state(&env, "alice", id), "withdrawn");
    let out = env.hoop(
        "alice",
        &[
            "exec",
            "shop2",
            "-o",
            "csv",
            "select qty from items where id = 3",
        ],
    );
    assert_eq!(stdout(&out), "qty\n3\n", "the update did not run");
}

#[tokio::test]
async fn ctrl_c_withdraws_what_it_waits_for() {
    use hoop_tests::proc::{ChildGuard, Signal};
    let env = setup().await;
    let alice = env.token("alice");

    // psql's Ctrl-C on a held statement: the CancelRequest withdraws the review and psql gets
    // an error at once.
    let tunnel = env
        .cli
        .connect("shop2", &[("HOOP_TOKEN", &alice)])
        .await
        .unwrap();
    let held = psql_spawn(&tunnel.url, "update items set qty = 7 where id = 4");
    let id = env.pending_for("bob").await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(held.id() as i32).unwrap(),
        Signal::INT,
    )
    .unwrap();
    let done = tokio::task::spawn_blocking(move || held.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!done.status.success());
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        err.contains("canceled") && err.contains(&format!("review {id} was withdrawn")),
        "{err}"
    );
    assert_eq!(review_state(&env, "alice", id), "withdrawn");
    let out = env.hoop("bob", &["approve", &id.to_string()]);
    assert_ne!(code(&out), 0, "a withdrawn review cannot be approved");
    assert!(stderr(&out).contains("withdrawn"), "{}", stderr(&out));

    // Ctrl-C on `hoop connect` waiting for an access review withdraws the request.
    let log_dir = tempfile::tempdir().unwrap();
    let mut cmd = env
        .cli
        .command(&[
            "connect",
            "prod",
            "--reason",
            "INC-9",
            "--duration",
            "10m",
            "--wait",
            "5m",
        ])
        .unwrap();
    cmd.env("HOOP_TOKEN", &alice);
    let mut waiting = ChildGuard::spawn("hoop-connect-wait", &mut cmd, log_dir.path()).unwrap();
    let id = env.pending_for("bob").await;
    assert_eq!(review_state(&env, "alice", id), "pending");
    waiting.signal(Signal::INT).unwrap();
    let mut status = None;
    for _ in 0..100 {
        status = waiting.try_status().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("hoop connect ends on Ctrl-C");
    assert!(!status.success(), "{}", waiting.logs());
    assert_eq!(
        review_state(&env, "alice", id),
        "withdrawn",
        "{}",
        waiting.logs()
    );
}

#[tokio::test]
async fn approve_without_an_id_offers_a_picker_on_a_terminal() {
    use std::io::{Read, Write};
    let env = setup().await;
    let out = env.hoop(
        "alice",
        &[
            "connect",
            "prod",
            "--reason",
            "INC-5",
            "--duration",
            "10m",
            "--no-wait",
        ],
    );
    assert_eq!(code(&out), 88, "{}", stderr(&out));
    let id: i64 = stdout(&out).trim().parse().unwrap();

    // Without a terminal, the id is required.
    let out = env.hoop("bob", &["approve"]);
    assert_eq!(code(&out), 80, "{}", stderr(&out));

    // On a terminal (script(1) gives hoop a pty), Enter picks the first review listed.
    let hoop = hoop_tests::bin_path("hoop").unwrap();
    let base = env.cli.command(&[]).unwrap();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{} approve", hoop.display()), "/dev/null"]);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("HOOP_TOKEN", env.token("bob"))
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut screen = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = screen.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    for _ in 0..200 {
        if text().contains("Approve which review") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text().contains("Approve which review"),
        "no picker: {}",
        text()
    );
    assert!(
        text().contains(&id.to_string()),
        "the picker lists the review: {}",
        text()
    );
    stdin.write_all(b"\r").unwrap();
    stdin.flush().unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait();
        drop(stdin);
        status
    })
    .await
    .unwrap()
    .unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{}", text());
    assert_eq!(review_state(&env, "alice", id), "approved", "{}", text());
}
