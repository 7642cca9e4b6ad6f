//! `hoopd dev`'s `demo` connection end to end: the real binaries, the throwaway PostgreSQL
//! cluster it starts in its data dir, masking and guardrails seen through psql, no PostgreSQL
//! left behind after SIGTERM, and the cluster (with its data) reused by the next start.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use hoop_tests::CliUser;
use hoop_tests::gateway::{code, stderr, stdout};
use hoop_tests::proc::{ChildGuard, Signal, bin_path, free_port};

use crate::postgres::psql;

/// Card numbers and addresses of `server/src/dev/demo.sql` that must never come back raw.
const RAW: [&str; 8] = [
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5500 0000 0000 0004",
    "3782 822463 10005",
    "6011111111111117",
    "alice.martin@example.com",
    "billing@novak.example.cz",
    "omar.gifts@example.com",
];

/// Starts `hoopd dev` on `data_dir` and waits for its banner; also returns how long that took.
async fn start_dev(
    name: &str,
    data_dir: &Path,
    port: u16,
    extra: &[&str],
) -> (ChildGuard, String, Duration) {
    let mut cmd = std::process::Command::new(bin_path("hoopd").unwrap());
    cmd.args(["dev", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra);
    let log_dir = data_dir.parent().unwrap();
    let began = Instant::now();
    let mut dev = ChildGuard::spawn(name, &mut cmd, log_dir).unwrap();
    dev.set_stop_signal(Signal::TERM, Duration::from_secs(20));
    dev.wait_for_output("hoop login --gateway", Duration::from_secs(90))
        .await
        .unwrap();
    let took = began.elapsed();
    // The banner is written in one go; give its tail a moment to land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let banner = dev.stderr();
    (dev, banner, took)
}

/// The cluster directory named on the banner's `demo` line.
fn banner_cluster(banner: &str) -> PathBuf {
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("demo ") && l.contains(" cluster "))
        .unwrap_or_else(|| panic!("no demo line in the banner:\n{banner}"));
    let after = line.split(" cluster ").nth(1).unwrap();
    PathBuf::from(after.rsplit_once(" (").unwrap().0)
}

/// Processes whose command line mentions `dir`, or whose working directory is inside it
/// (PostgreSQL's own children carry no path on their command line but run in its data dir).
fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        if cmdline.contains(needle) || cwd.starts_with(dir) {
            found.push((pid, cmdline));
        }
    }
    found
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
async fn hoopd_dev_demo_masks_blocks_and_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    // As root, PostgreSQL runs as `postgres`, which must pass through the temp dir (0700) to
    // reach <data dir>/demo-pg; hoopd opens the data dir itself to 0711.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let data = tmp.path().join("dev");
    let port = free_port();

    let (mut dev, banner, first_start) = start_dev("hoopd-dev", &data, port, &[]).await;
    let cluster = banner_cluster(&banner);
    assert_eq!(cluster, data.join("demo-pg"), "{banner}");
    assert!(banner.contains("(created in"), "{banner}");
    for hint in [
        "hoop connect demo",
        // The banner's psql line, like hoop connect's, holds no password.
        "psql \"postgres://hoop@",
        "select * from customers;",
        "delete from customers;",
    ] {
        assert!(banner.contains(hint), "{hint:?} missing:\n{banner}");
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("demo-password")), 0o600);
    assert_eq!(mode(&data.join("hoop.db")), 0o600);
    if rustix::process::geteuid().is_root() {
        assert_eq!(mode(&data), 0o711);
    }

    // Log in as the dev user, through the built-in issuer's page, with the printed line.
    let login_line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("hoop login "))
        .unwrap()
        .trim()
        .to_string();
    let password = banner
        .lines()
        .find(|l| l.contains("dev user"))
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap()
        .to_string();
    let args: Vec<&str> = login_line.split_whitespace().skip(2).collect();
    let url = format!("https://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let cli = CliUser::new().unwrap();
    let out = cli
        .login(&args, |p| {
            let (http, url, password) = (http.clone(), url.clone(), password.clone());
            async move {
                let page = http
                    .post(format!("{url}/device"))
                    .form(&[
                        ("user_code", p.code.as_str()),
                        ("username", "dev"),
                        ("password", &password),
                        ("action", "approve"),
                    ])
                    .send()
                    .await?
                    .text()
                    .await?;
                anyhow::ensure!(page.contains("You are signed in"), "{page}");
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list = cli.run(&["connections"]).unwrap();
    assert!(
        stdout(&list).contains("demo") && stdout(&list).contains("throwaway demo database"),
        "{}",
        stdout(&list)
    );

    let tunnel = cli
        .connect("demo", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dev.logs()));
    assert_eq!(tunnel.database, "shop");

    // Masked: card numbers in their column and inside free text, e-mail addresses.
    let rows = ok(&psql(
        &tunnel.url,
        "select card, email, note from customers;",
    ));
    assert_eq!(rows.lines().count(), 20, "{rows}");
    for raw in RAW {
        assert!(!rows.contains(raw), "{raw:?} came back unmasked:\n{rows}");
    }
    assert!(rows.contains("**** **** **** 1111"), "{rows}");
    assert!(rows.contains("***@example.com"), "{rows}");
    // Blocked by a guardrail, and nothing deleted.
    let out = psql(&tunnel.url, "delete from customers;");
    assert!(
        !out.status.success(),
        "delete went through: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("blocked by guardrail no-unbounded-writes"),
        "{}",
        stderr(&out)
    );
    let out = psql(&tunnel.url, "drop table orders;");
    assert!(
        stderr(&out).contains("blocked by guardrail no-ddl"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        ok(&psql(&tunnel.url, "select count(*) from customers;")).trim(),
        "20"
    );
    assert_eq!(
        ok(&psql(&tunnel.url, "select count(*) from orders;")).trim(),
        "60"
    );
    // A bounded write is allowed; the next start must still see it.
    ok(&psql(
        &tunnel.url,
        "update customers set name = 'Alice Martin (edited)' where id = 1;",
    ));
    drop(tunnel);

    // SIGTERM: hoopd stops PostgreSQL before it exits, and leaves nothing running.
    let status = dev.terminate(Duration::from_secs(40)).await.unwrap();
    assert!(
        status.success(),
        "hoopd dev exited with {status:?}\n{}",
        dev.logs()
    );
    let left = processes_in(&cluster);
    assert!(left.is_empty(), "still running after hoopd: {left:?}");
    assert!(
        !cluster.join("postmaster.pid").exists(),
        "PostgreSQL did not shut down cleanly"
    );

    // The next start reuses the cluster and its data.
    let (mut again, banner2, second_start) = start_dev("hoopd-dev-2", &data, port, &[]).await;
    assert_eq!(banner_cluster(&banner2), cluster, "{banner2}");
    assert!(banner2.contains("(started in"), "{banner2}");
    assert!(!banner2.contains(&password), "dev password shown again");
    let tunnel = cli
        .connect("demo", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", again.logs()));
    assert_eq!(
        ok(&psql(
            &tunnel.url,
            "select name from customers where id = 1;"
        ))
        .trim(),
        "Alice Martin (edited)"
    );
    assert_eq!(
        ok(&psql(&tunnel.url, "select count(*) from customers;")).trim(),
        "20"
    );
    // SIGTERM with a session busy in the demo database: PostgreSQL goes down with the gateway's
    // drain instead of after its 10 s limit, and nothing is left running.
    let url = tunnel.url.clone();
    let busy = tokio::task::spawn_blocking(move || psql(&url, "select pg_sleep(60);"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let began = Instant::now();
    let status = again.terminate(Duration::from_secs(40)).await.unwrap();
    let stop_took = began.elapsed();
    assert!(status.success(), "{}", again.logs());
    assert!(
        stop_took < Duration::from_secs(8),
        "shutdown took {stop_took:?}"
    );
    let out = busy.await.unwrap();
    assert!(
        !out.status.success(),
        "the busy session went on: {}",
        stdout(&out)
    );
    drop(tunnel);
    let left = processes_in(&cluster);
    assert!(left.is_empty(), "still running after hoopd: {left:?}");

    let demo_line = |b: &str| {
        b.lines()
            .find(|l| l.trim_start().starts_with("demo "))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    eprintln!(
        "hoopd dev start to banner: first {first_start:.2?} ({}), second {second_start:.2?} ({}); \
         SIGTERM with a busy session: exited in {stop_took:.2?}",
        demo_line(&banner),
        demo_line(&banner2)
    );
}

#[tokio::test]
async fn hoopd_dev_no_demo_starts_no_database() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dev");
    let port = free_port();
    let (mut dev, banner, took) = start_dev("hoopd-dev-no-demo", &data, port, &["--no-demo"]).await;
    assert!(
        !banner.contains("hoop connect demo")
            && !banner.lines().any(|l| l.trim_start().starts_with("demo")),
        "{banner}"
    );
    assert!(!data.join("demo-pg").exists());
    assert!(!data.join("demo-password").exists());
    let status = dev.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{}", dev.logs());
    eprintln!("hoopd dev --no-demo start to banner: {took:.2?}");
}
