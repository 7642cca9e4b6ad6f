//! Another user of the client machine against `hoop connect`'s local hop, and credentials kept
//! out of logs and errors.
//!
//! Every case says what an attacker tries and what must hold. Each test function starts one
//! environment, runs every case of its table, and then fails listing each case that did not
//! hold. "Another local user" is a real second account: the commands run as `nobody` (uid
//! 65534) through the real psql, ssh and cat binaries; the suite runs as root, as the
//! PostgreSQL harness already needs.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hoop_tests::gateway::{Tunnel, code, run_with_stdin, stderr, stdout};
use hoop_tests::postgres::pg_bin_dir;
use hoop_tests::{ChildGuard, Gateway, bin_path, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::postgres::psql;

/// `nobody`: the other local user.
const NOBODY: u32 = 65534;

/// A command run by another user of this machine (uid and gid `nobody`, no supplementary
/// groups, nothing of ours in its environment).
fn stranger(program: impl AsRef<std::ffi::OsStr>) -> Command {
    assert!(
        rustix::process::geteuid().is_root(),
        "these cases run commands as another local user: run the suite as root (scripts/test.sh does)"
    );
    let mut cmd = Command::new(program);
    cmd.uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .env("HOME", "/tmp")
        .env_remove("PGPASSFILE")
        .env_remove("PGSERVICEFILE")
        .env_remove("PGPASSWORD")
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

fn run(mut cmd: Command) -> Output {
    run_with_stdin(&mut cmd, None).unwrap()
}

fn both(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// The sum of a Prometheus series (all label sets starting with `series`).
async fn metric(gw: &Gateway, series: &str) -> u64 {
    let text = gw
        .http()
        .unwrap()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// What a local attacker must not cause at the gateway: streams, sessions, audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trace {
    streams: u64,
    sessions: i64,
    audit: usize,
}

async fn trace(gw: &Gateway, kind: &str) -> Trace {
    // Audit records of refusals are queued, not awaited: give them a moment to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pool = gw.db().await.unwrap();
    let sessions: (i64,) = sqlx::query_as("SELECT count(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    Trace {
        streams: metric(gw, &format!("hoop_tunnel_streams_total{{kind=\"{kind}\"}}")).await,
        sessions: sessions.0,
        audit: gw.audit_events().await.unwrap().len(),
    }
}

async fn audit_kinds(gw: &Gateway, kind: &str) -> Vec<serde_json::Value> {
    gw.audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

fn mode(p: &Path) -> Option<(u32, u32)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.mode() & 0o777, m.uid()))
}

/// Every process's argv, as any local user can read it.
fn all_argv() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            out.push((pid, String::from_utf8_lossy(&raw).replace('\0', " ")));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

fn startup() -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0];
    b.extend_from_slice(&196_608i32.to_be_bytes());
    b.extend_from_slice(b"user\0hoop\0database\0shop\0\0");
    let len = b.len() as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b
}

fn password_message(p: &[u8]) -> Vec<u8> {
    let mut b = vec![b'p'];
    b.extend_from_slice(&(p.len() as i32 + 5).to_be_bytes());
    b.extend_from_slice(p);
    b.push(0);
    b
}

fn request(code: i32) -> Vec<u8> {
    [&8i32.to_be_bytes()[..], &code.to_be_bytes()].concat()
}

/// Sends `bytes` from a fresh socket, says it has no more (half-close), and reads until the
/// tunnel closes it (or 10 s pass): (what came back, whether it was closed).
async fn raw(port: u16, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .is_ok();
    (out, closed)
}

enum PgInput {
    /// psql, run by another local user, with this URL and environment (never prompting).
    StrangerPsql {
        url: String,
        env: Vec<(&'static str, String)>,
    },
    /// Raw bytes from another local user's socket.
    Raw(Vec<u8>),
    /// `raw` sockets and `psql` processes of another user at once, each with a wrong
    /// password, while the owner's psql runs.
    Flood { raw: usize, psql: usize },
    /// Reads every process's argv (and `ps`) while the owner's psql runs the printed URL.
    ReadArgv,
    /// Reads the tunnel's files and lists its directory as another user.
    ReadFiles,
    /// Looks for the files of a tunnel that has ended.
    EndedTunnelFiles(PathBuf),
    /// What `hoop connect` prints for people, and whether those lines work as printed.
    PrintedLines,
}

struct PgCase {
    attack: &'static str,
    input: PgInput,
    /// What must hold (the run checks it; this is what the failure report says).
    holds: &'static str,
    /// Text the attacker's client must be answered with.
    answer: Option<&'static str>,
    /// The gateway sees nothing: no stream, no session, no audit record.
    no_trace: bool,
}

#[tokio::test]
async fn another_local_user_gets_nothing_from_a_postgres_tunnel() {
    let env = crate::postgres::setup("", "").await;
    let port = env.tunnel.port;
    let passfile = env.tunnel.passfile.clone().unwrap();
    let service_file = env.tunnel.service_file.clone().unwrap();
    let printed = env.tunnel.url.clone();
    let psql_bin = pg_bin_dir().unwrap().join("psql");
    // A tunnel that ran and ended: its password is what a replaying attacker might hold.
    let mut ended = env
        .cli
        .connect("shop", &[("HOOP_TOKEN", &env.key)])
        .await
        .unwrap();
    let ended_password = ended.password.clone();
    let ended_dir = ended.private_dir().unwrap();
    assert!(ended.stop().await.unwrap().success(), "{}", ended.logs());
    let wrong = |pw: &str| env.tunnel.url_with_password(pw);
    let mut cancel = 16i32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&80_877_102i32.to_be_bytes());
    cancel.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0x0a, 0xbc, 0xde, 0xf0]);
    let almost = {
        let mut p = env.tunnel.password.clone();
        let last = if p.pop() == Some('a') { 'b' } else { 'a' };
        p.push(last);
        p
    };
    let cases = vec![
        PgCase {
            attack: "psql with no password at all",
            input: PgInput::StrangerPsql {
                url: format!("postgres://hoop@127.0.0.1:{port}/shop?sslmode=disable"),
                env: vec![],
            },
            holds: "refused locally: no stream, session or audit record",
            answer: Some("no password supplied"),
            no_trace: true,
        },
        PgCase {
            attack: "psql with a guessed password",
            input: PgInput::StrangerPsql {
                url: wrong("guessed-password-123"),
                env: vec![],
            },
            holds: "28P01 naming the tunnel password; nothing reaches the gateway",
            answer: Some("tunnel password"),
            no_trace: true,
        },
        PgCase {
            attack: "psql with the tunnel password but its last character changed",
            input: PgInput::StrangerPsql {
                url: wrong(&almost),
                env: vec![],
            },
            holds: "refused like any wrong password",
            answer: Some("tunnel password"),
            no_trace: true,
        },
        PgCase {
            attack: "psql with the exact URL the owner runs (read from ps): its passfile is the owner's",
            input: PgInput::StrangerPsql {
                url: printed.clone(),
                env: vec![],
            },
            holds: "the passfile cannot be read, so psql has no password; nothing reaches the gateway",
            answer: Some("no password supplied"),
            no_trace: true,
        },
        PgCase {
            attack: "psql through the owner's service file (PGSERVICEFILE)",
            input: PgInput::StrangerPsql {
                url: "service=shop".into(),
                env: vec![("PGSERVICEFILE", service_file.display().to_string())],
            },
            holds: "the service file cannot be read; nothing reaches the gateway",
            answer: Some("service"),
            no_trace: true,
        },
        PgCase {
            attack: "replay the password of an earlier tunnel of the same user",
            input: PgInput::StrangerPsql {
                url: wrong(&ended_password),
                env: vec![],
            },
            holds: "each tunnel has its own password: refused",
            answer: Some("tunnel password"),
            no_trace: true,
        },
        PgCase {
            attack: "raw: startup and a password message 1 GiB long",
            input: PgInput::Raw([startup(), b"p\x40\0\0\0".to_vec()].concat()),
            holds: "refused at once without buffering it",
            answer: Some("28P01"),
            no_trace: true,
        },
        PgCase {
            attack: "raw: the right password as a prefix, then a NUL and more",
            input: PgInput::Raw(
                [
                    startup(),
                    password_message(&[env.tunnel.password.as_bytes(), b"\0more"].concat()),
                ]
                .concat(),
            ),
            holds: "refused: the password is the whole message",
            answer: Some("28P01"),
            no_trace: true,
        },
        PgCase {
            attack: "raw: an HTTP request at the PostgreSQL port",
            input: PgInput::Raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            holds: "refused as not a login",
            answer: Some("08P01"),
            no_trace: true,
        },
        PgCase {
            attack: "raw: SSLRequest three times to keep the socket busy",
            input: PgInput::Raw(
                [
                    request(80_877_103),
                    request(80_877_103),
                    request(80_877_103),
                ]
                .concat(),
            ),
            holds: "refused after the second",
            answer: Some("08P01"),
            no_trace: true,
        },
        PgCase {
            attack: "raw: a CancelRequest with a guessed key (no password is needed for cancels)",
            input: PgInput::Raw(cancel),
            holds: "dropped: only keys of this tunnel's sessions are forwarded, so no stream opens",
            answer: None,
            no_trace: true,
        },
        PgCase {
            attack: "raw: connect and hang up without a word",
            input: PgInput::Raw(Vec::new()),
            holds: "no stream is opened for a socket that never logged in",
            answer: None,
            no_trace: true,
        },
        PgCase {
            attack: "flood: 200 sockets and 20 psql processes with wrong passwords, all at once",
            input: PgInput::Flood { raw: 200, psql: 20 },
            holds: "every one refused; the gateway sees only the owner's own session, which works meanwhile; hoop connect reports the refusals in a few lines",
            answer: Some("28P01"),
            no_trace: false,
        },
        PgCase {
            attack: "read every process's argv (ps, /proc/*/cmdline) while the owner's psql runs",
            input: PgInput::ReadArgv,
            holds: "the tunnel password is in no process's arguments",
            answer: None,
            no_trace: false,
        },
        PgCase {
            attack: "read the pgpass and service files, list their directory",
            input: PgInput::ReadFiles,
            holds: "files 0600 and directory 0700, owned by the owner; another user gets Permission denied",
            answer: Some("Permission denied"),
            no_trace: true,
        },
        PgCase {
            attack: "look for the password files of a tunnel that has ended",
            input: PgInput::EndedTunnelFiles(ended_dir),
            holds: "its private directory is gone",
            answer: None,
            no_trace: true,
        },
        PgCase {
            attack: "read the lines hoop connect printed for people (a terminal anyone may see)",
            input: PgInput::PrintedLines,
            holds: "no secret in stdout or stderr; the printed psql and service lines work as printed",
            answer: None,
            no_trace: false,
        },
    ];
    let count = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let before = trace(&env.gw, "postgres").await;
        let result = match &case.input {
            PgInput::StrangerPsql { url, env: vars } => {
                let mut cmd = stranger(&psql_bin);
                cmd.args(["-X", "-w", "-A", "-t", "-c", "select 1", url]);
                for (k, v) in vars {
                    cmd.env(k, v);
                }
                let out = run(cmd);
                let text = both(&out);
                if out.status.success() {
                    Err(format!("psql got in: {text}"))
                } else if let Some(a) = case.answer.filter(|a| !text.contains(a)) {
                    Err(format!("answer lacks {a:?}: {text}"))
                } else {
                    Ok(())
                }
            }
            PgInput::Raw(bytes) => {
                let (answer, closed) = raw(port, bytes).await;
                let text = String::from_utf8_lossy(&answer).into_owned();
                if !closed {
                    Err(format!("the socket was left open: {text:?}"))
                } else if let Some(a) = case.answer.filter(|a| !text.contains(a)) {
                    Err(format!("answer lacks {a:?}: {text:?}"))
                } else if case.answer.is_none() && !answer.is_empty() {
                    Err(format!("expected no answer, got {text:?}"))
                } else {
                    Ok(())
                }
            }
            PgInput::Flood {
                raw: sockets,
                psql: processes,
            } => flood(&env, &psql_bin, *sockets, *processes, &before).await,
            PgInput::ReadArgv => read_argv(&env.tunnel, &psql_bin),
            PgInput::ReadFiles => read_files(&[&passfile, &service_file]),
            PgInput::EndedTunnelFiles(dir) => {
                if dir.exists() {
                    Err(format!("{} still exists", dir.display()))
                } else {
                    Ok(())
                }
            }
            PgInput::PrintedLines => printed_pg_lines(&env).await,
        };
        let result = match result {
            Ok(()) if case.no_trace => {
                let after = trace(&env.gw, "postgres").await;
                if after == before {
                    Ok(())
                } else {
                    Err(format!(
                        "the gateway saw it: before {before:?}, after {after:?}"
                    ))
                }
            }
            other => other,
        };
        if let Err(why) = result {
            failures.push(format!(
                "- {} (must hold: {}): {why}",
                case.attack, case.holds
            ));
        }
    }
    // And the owner is served throughout.
    let out = psql(&env.tunnel.url, "select 7;");
    if stdout(&out).trim() != "7" {
        failures.push(format!(
            "- the owner's psql after the attacks failed: {}",
            both(&out)
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases did not hold:\n{}\n--- hoop connect:\n{}\n--- hoopd:\n{}",
        failures.len(),
        failures.join("\n"),
        env.tunnel.logs(),
        env.gw.logs()
    );
}

async fn flood(
    env: &crate::postgres::Env,
    psql_bin: &Path,
    sockets: usize,
    processes: usize,
    before: &Trace,
) -> Result<(), String> {
    let port = env.tunnel.port;
    let denied_before = audit_kinds(&env.gw, "access.denied").await.len();
    let refusal_lines = |logs: &str| logs.lines().filter(|l| l.contains("refused")).count();
    let lines_before = refusal_lines(&env.tunnel.logs());
    let owner_url = env.tunnel.url.clone();
    let owner = tokio::task::spawn_blocking(move || psql(&owner_url, "select 41 + 1;"));
    let mut raws = Vec::new();
    for i in 0..sockets {
        let bytes = [
            startup(),
            password_message(format!("flood-{i}-wrong").as_bytes()),
        ]
        .concat();
        raws.push(tokio::spawn(async move { raw(port, &bytes).await }));
    }
    let url = env.tunnel.url_with_password("flood-wrong-password");
    let psql_bin = psql_bin.to_path_buf();
    let procs = tokio::task::spawn_blocking(move || {
        let children: Vec<_> = (0..processes)
            .map(|_| {
                stranger(&psql_bin)
                    .args(["-X", "-w", "-c", "select 1", &url])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    });
    let mut problems = Vec::new();
    for r in raws {
        let (answer, closed) = r.await.unwrap();
        if !closed || !String::from_utf8_lossy(&answer).contains("28P01") {
            problems.push(format!(
                "a flood socket got {:?}",
                String::from_utf8_lossy(&answer)
            ));
            break;
        }
    }
    for out in procs.await.unwrap() {
        if out.status.success() || !both(&out).contains("tunnel password") {
            problems.push(format!("a flood psql got {}", both(&out)));
            break;
        }
    }
    let owner = owner.await.unwrap();
    if stdout(&owner).trim() != "42" {
        problems.push(format!(
            "the owner's psql during the flood failed: {}",
            both(&owner)
        ));
    }
    let after = trace(&env.gw, "postgres").await;
    // The owner's psql is the only stream and session the gateway saw.
    if after.streams != before.streams + 1 || after.sessions != before.sessions + 1 {
        problems.push(format!(
            "the gateway saw more than the owner: before {before:?}, after {after:?}"
        ));
    }
    let denied_after = audit_kinds(&env.gw, "access.denied").await.len();
    if denied_after != denied_before {
        problems.push(format!(
            "{} access.denied records written",
            denied_after - denied_before
        ));
    }
    // Refusals inside an interval are reported together when it ends (10 s).
    let mut lines = 0;
    for _ in 0..150 {
        lines = refusal_lines(&env.tunnel.logs()) - lines_before;
        if lines > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if lines == 0 || lines > 3 {
        problems.push(format!(
            "hoop connect reported the flood in {lines} lines (want 1 to 3)"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn read_argv(tunnel: &Tunnel, psql_bin: &Path) -> Result<(), String> {
    let secret = tunnel.password.clone();
    let mut owner = Command::new(psql_bin)
        .args(["-X", "-A", "-t", "-c", "select pg_sleep(2)", &tunnel.url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = owner.id();
    let mut seen_psql = false;
    let mut leaks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while owner.try_wait().unwrap().is_none() && Instant::now() < deadline {
        for (p, argv) in all_argv() {
            if p == pid && argv.contains("passfile=") {
                seen_psql = true;
            }
            if argv.contains(&secret) {
                leaks.push(format!("pid {p}: {argv}"));
            }
        }
        let ps = run({
            let mut c = stranger("ps");
            c.args(["-eo", "args"]);
            c
        });
        if stdout(&ps).contains(&secret) {
            leaks.push("ps -eo args".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = owner.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(format!("the owner's psql failed: {}", stderr(&out)));
    }
    if !seen_psql {
        return Err("never saw the owner's psql running (nothing was checked)".into());
    }
    if leaks.is_empty() {
        Ok(())
    } else {
        Err(format!("the password is in: {leaks:?}"))
    }
}

fn read_files(files: &[&Path]) -> Result<(), String> {
    let mut problems = Vec::new();
    let Some(dir) = files.first().and_then(|f| f.parent()) else {
        return Err("no files".into());
    };
    match mode(dir) {
        Some((0o700, 0)) => {}
        other => problems.push(format!("{}: mode/owner {other:?}", dir.display())),
    }
    for f in files {
        match mode(f) {
            Some((0o600, 0)) => {}
            other => problems.push(format!("{}: mode/owner {other:?}", f.display())),
        }
        let out = run({
            let mut c = stranger("cat");
            c.arg(f);
            c
        });
        if out.status.success() || !stderr(&out).contains("Permission denied") {
            problems.push(format!(
                "cat {} as another user: {}",
                f.display(),
                both(&out)
            ));
        }
    }
    let out = run({
        let mut c = stranger("ls");
        c.arg(dir);
        c
    });
    if out.status.success() {
        problems.push(format!(
            "ls {} as another user: {}",
            dir.display(),
            both(&out)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs `hoop connect` for people (no `-o json`), checks nothing secret is printed, then runs
/// the printed lines exactly as printed.
async fn printed_pg_lines(env: &crate::postgres::Env) -> Result<(), String> {
    let logs = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut cmd = env
        .cli
        .command(&["connect", "shop", "--port", &port])
        .unwrap();
    cmd.env("HOOP_TOKEN", &env.key);
    let mut child = ChildGuard::spawn("hoop-connect-table", &mut cmd, logs.path()).unwrap();
    child.set_stop_signal(hoop_tests::proc::Signal::TERM, Duration::from_secs(5));
    let psql_line = child
        .wait_for_output("psql \"", Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    let service_line = child
        .wait_for_output("PGSERVICEFILE=", Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let passfile = psql_line
        .split("passfile=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or_else(|| format!("no passfile in {psql_line:?}"))?
        .to_string();
    let secret = std::fs::read_to_string(&passfile)
        .map_err(|e| format!("{passfile}: {e}"))?
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or_default()
        .to_string();
    let mut problems = Vec::new();
    if secret.len() < 16 {
        problems.push(format!("no password in {passfile}"));
    }
    let printed = format!("{}{}", child.stdout(), child.stderr());
    if printed.contains(&secret) {
        problems.push(format!("the password is printed: {printed}"));
    }
    let bin = pg_bin_dir().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in [
        psql_line.as_str(),
        service_line.trim_start_matches("# or, for any libpq program: "),
    ] {
        let out = run({
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{line} -X -A -t -c 'select 40 + 2'"))
                .env("PATH", &path);
            c
        });
        if stdout(&out).trim() != "42" {
            problems.push(format!("`{line}` did not work: {}", both(&out)));
        }
    }
    let dir = Path::new(&passfile).parent().unwrap().to_path_buf();
    let _ = child.terminate(Duration::from_secs(10)).await;
    if dir.exists() {
        problems.push(format!("{} outlived its tunnel", dir.display()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// SSH
// ---------------------------------------------------------------------------------------------

enum SshInput {
    /// OpenSSH run by another user: these arguments (ending with the destination), then `true`.
    StrangerSsh(Vec<String>),
    /// Junk bytes to the port.
    Raw(Vec<u8>),
    /// `n` real ssh logins with wrong passwords at once.
    Flood(usize),
    /// Reads the tunnel's key and config and lists their directory as another user.
    ReadFiles,
    /// (owner) the printed `ssh -F`, `scp -F` and `sftp -F` lines, after all of the above.
    OwnerPrinted,
    /// What `hoop connect` prints for people (no `-o json`), run as printed.
    PrintedLines,
}

impl SshInput {
    /// The owner's own use, which is meant to reach the target.
    fn by_owner(&self) -> bool {
        matches!(self, SshInput::OwnerPrinted | SshInput::PrintedLines)
    }
}

struct SshCase {
    attack: &'static str,
    input: SshInput,
    holds: &'static str,
    /// Text the attacker's client must show.
    answer: Option<&'static str>,
    /// Refused logins the gateway must count (a client that never offers a credential, such
    /// as one that cannot read the key file, is refused by SSH itself before any).
    refusals: u64,
}

/// `ssh` options for a stranger who has no known_hosts (OpenSSH takes the first value given
/// for an option, so each case adds its own BatchMode).
fn stranger_ssh_options(port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([port.to_string()])
    .collect()
}

/// A directory another user may use (its own key, its askpass script).
fn stranger_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("stranger-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    dir
}

#[tokio::test]
async fn another_local_user_gets_nothing_from_an_ssh_tunnel() {
    let mut env = crate::ssh::setup("").await;
    let port = env.tunnel.port;
    let identity = env.tunnel.identity_file.clone().unwrap();
    let config = env.tunnel.ssh_config.clone().unwrap();
    let private_dir = env.tunnel.private_dir().unwrap();
    // The stranger's own key and a password script it can run.
    let own = stranger_dir();
    let own_key = own.path().join("id_ed25519");
    let keygen = run({
        let mut c = stranger("ssh-keygen");
        c.args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&own_key);
        c
    });
    assert!(keygen.status.success(), "{}", both(&keygen));
    let askpass = own.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho guessed-password-123\n").unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let with = |extra: &[&str]| -> Vec<String> {
        stranger_ssh_options(port)
            .into_iter()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let key_only = [
        "-o",
        "BatchMode=yes",
        "-o",
        "PreferredAuthentications=publickey",
        "-o",
        "IdentitiesOnly=yes",
    ];
    let by_password = [
        "-o",
        "BatchMode=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "NumberOfPasswordPrompts=1",
    ];
    let hoop = "hoop@127.0.0.1";
    let cases = vec![
        SshCase {
            attack: "ssh with no key and no password",
            input: SshInput::StrangerSsh(with(&[
                "-o",
                "BatchMode=yes",
                "-o",
                "PreferredAuthentications=publickey,password",
                hoop,
            ])),
            holds: "Permission denied; no session",
            answer: Some("Permission denied"),
            refusals: 0,
        },
        SshCase {
            attack: "ssh with the attacker's own key",
            input: SshInput::StrangerSsh(with(
                &[&key_only[..], &["-i", own_key.to_str().unwrap(), hoop]].concat(),
            )),
            holds: "only the tunnel's key is accepted",
            answer: Some("Permission denied"),
            refusals: 1,
        },
        SshCase {
            attack: "ssh with the owner's key file (its path is in the printed line)",
            input: SshInput::StrangerSsh(with(
                &[&key_only[..], &["-i", identity.to_str().unwrap(), hoop]].concat(),
            )),
            holds: "the key file cannot be read; Permission denied",
            answer: Some("Permission denied"),
            refusals: 0,
        },
        SshCase {
            attack: "ssh -F with the owner's ssh_config",
            input: SshInput::StrangerSsh(vec![
                "-F".into(),
                config.display().to_string(),
                "-o".into(),
                "BatchMode=yes".into(),
                env.tunnel.ssh_host.clone().unwrap(),
            ]),
            holds: "the config cannot be read",
            answer: Some("Permission denied"),
            refusals: 0,
        },
        SshCase {
            attack: "ssh with a guessed password",
            input: SshInput::StrangerSsh(with(&[&by_password[..], &[hoop]].concat())),
            holds: "Permission denied; the refusal is counted, not audited per attempt",
            answer: Some("Permission denied"),
            refusals: 1,
        },
        SshCase {
            attack: "ssh as root@ instead of hoop@, with a guessed password",
            input: SshInput::StrangerSsh(with(&[&by_password[..], &["root@127.0.0.1"]].concat())),
            holds: "Permission denied",
            answer: Some("Permission denied"),
            refusals: 1,
        },
        SshCase {
            attack: "raw: HTTP instead of SSH at the port",
            input: SshInput::Raw(b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            holds: "the connection ends; no session",
            answer: None,
            refusals: 0,
        },
        SshCase {
            attack: "flood: 30 ssh logins with guessed passwords at once",
            input: SshInput::Flood(30),
            holds: "all refused; every refusal counted in the metric; at most one audit record per minute",
            answer: Some("Permission denied"),
            refusals: 30,
        },
        SshCase {
            attack: "read the tunnel's private key and ssh_config, list their directory",
            input: SshInput::ReadFiles,
            holds: "key and config 0600, directory 0700, owner only; another user gets Permission denied",
            answer: Some("Permission denied"),
            refusals: 0,
        },
        SshCase {
            attack: "read the lines hoop connect printed for people (a terminal anyone may see)",
            input: SshInput::PrintedLines,
            holds: "no key material or password in stdout or stderr; the printed ssh line works as printed",
            answer: None,
            refusals: 0,
        },
        SshCase {
            attack: "(the owner, after all this) ssh, scp and sftp exactly as printed",
            input: SshInput::OwnerPrinted,
            holds: "hoop connect keeps serving the owner; host key pinned, no prompt, no password",
            answer: None,
            refusals: 0,
        },
    ];
    let count = cases.len();
    let refused_series = "hoop_local_logins_refused_total{";
    let first_refusal = Instant::now();
    let mut failures = Vec::new();
    let mut attempts = 0u64;
    for case in cases {
        attempts += case.refusals;
        let sessions_before = trace(&env.gw, "ssh").await.sessions;
        let refused_before = metric(&env.gw, refused_series).await;
        let result = match &case.input {
            SshInput::StrangerSsh(args) => {
                let out = run({
                    let mut c = stranger("ssh");
                    c.args(args)
                        .arg("true")
                        .env("SSH_ASKPASS", &askpass)
                        .env("SSH_ASKPASS_REQUIRE", "force")
                        .env("DISPLAY", ":0");
                    c
                });
                let text = both(&out);
                if out.status.success() {
                    Err(format!("ssh got in: {text}"))
                } else if let Some(a) = case.answer.filter(|a| !text.contains(a)) {
                    Err(format!("answer lacks {a:?}: {text}"))
                } else {
                    Ok(())
                }
            }
            SshInput::Raw(bytes) => {
                let (_, closed) = raw(port, bytes).await;
                if closed {
                    Ok(())
                } else {
                    Err("the socket was left open".into())
                }
            }
            SshInput::Flood(n) => {
                let args = with(&[&by_password[..], &[hoop]].concat());
                let askpass = askpass.clone();
                let outs = tokio::task::spawn_blocking({
                    let n = *n;
                    move || {
                        let children: Vec<_> = (0..n)
                            .map(|_| {
                                stranger("ssh")
                                    .args(&args)
                                    .arg("true")
                                    .env("SSH_ASKPASS", &askpass)
                                    .env("SSH_ASKPASS_REQUIRE", "force")
                                    .env("DISPLAY", ":0")
                                    .stdin(Stdio::null())
                                    .stdout(Stdio::piped())
                                    .stderr(Stdio::piped())
                                    .spawn()
                                    .unwrap()
                            })
                            .collect();
                        children
                            .into_iter()
                            .map(|c| c.wait_with_output().unwrap())
                            .collect::<Vec<_>>()
                    }
                })
                .await
                .unwrap();
                let got_in = outs.iter().filter(|o| o.status.success()).count();
                if got_in > 0 {
                    Err(format!("{got_in} logins got in"))
                } else {
                    Ok(())
                }
            }
            SshInput::ReadFiles => read_files(&[&identity, &config]),
            SshInput::OwnerPrinted => owner_ssh_as_printed(&env),
            SshInput::PrintedLines => printed_ssh_lines(&env).await,
        };
        let sessions_after = trace(&env.gw, "ssh").await.sessions;
        let refused = metric(&env.gw, refused_series).await - refused_before;
        let result = match result {
            Ok(()) if refused < case.refusals => Err(format!(
                "{refused} refusals counted, {} expected",
                case.refusals
            )),
            Ok(()) if !case.input.by_owner() && sessions_after != sessions_before => Err(format!(
                "a session was recorded ({sessions_before} -> {sessions_after})"
            )),
            other => other,
        };
        if let Err(why) = result {
            failures.push(format!(
                "- {} (must hold: {}): {why}",
                case.attack, case.holds
            ));
        }
    }
    // Over the whole table: every login attempt counted, yet at most one audit record per
    // minute (the first at once, the rest as one count when the minute is up).
    let refused_total = metric(&env.gw, refused_series).await;
    if refused_total < attempts {
        failures.push(format!(
            "- refusals counted: {refused_total}, attempts: {attempts}"
        ));
    }
    let denied = audit_kinds(&env.gw, "access.denied").await;
    let minutes = first_refusal.elapsed().as_secs() / 60;
    if denied.is_empty() || denied.len() as u64 > 1 + minutes {
        failures.push(format!(
            "- {} access.denied records for {attempts} refused attempts in {minutes} min (want 1 per minute): {denied:?}",
            denied.len()
        ));
    }
    if denied
        .iter()
        .any(|d| d["details"]["refused"].as_u64().is_none())
    {
        failures.push(format!(
            "- a refusal record does not say how many: {denied:?}"
        ));
    }
    // When the tunnel ends its key goes with it, and nobody answers on the port.
    let _ = env.tunnel.stop().await;
    if private_dir.exists() {
        failures.push(format!(
            "- the key's directory {} outlived the tunnel",
            private_dir.display()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases did not hold:\n{}\n--- hoop connect:\n{}\n--- hoopd:\n{}",
        failures.len(),
        failures.join("\n"),
        env.tunnel.logs(),
        env.gw.logs()
    );
}

/// Runs `hoop connect` for an ssh connection for people, checks that no secret is printed, and
/// runs the printed ssh line as printed.
async fn printed_ssh_lines(env: &crate::ssh::Env) -> Result<(), String> {
    let logs = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut cmd = env
        .cli
        .command(&["connect", "web", "--port", &port])
        .unwrap();
    cmd.env("HOOP_TOKEN", &env.key);
    let mut child = ChildGuard::spawn("hoop-connect-ssh-table", &mut cmd, logs.path()).unwrap();
    child.set_stop_signal(hoop_tests::proc::Signal::TERM, Duration::from_secs(5));
    let line = child
        .wait_for_output("ssh -F ", Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    child
        .wait_for_output("PreferredAuthentications", Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let config = line
        .split_whitespace()
        .nth(2)
        .ok_or_else(|| format!("no config in {line:?}"))?
        .to_string();
    let dir = Path::new(&config).parent().unwrap().to_path_buf();
    let key = std::fs::read_to_string(dir.join("id_ed25519")).map_err(|e| e.to_string())?;
    let printed = format!("{}{}", child.stdout(), child.stderr());
    let mut problems = Vec::new();
    let key_lines: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    if printed.contains("PRIVATE KEY") || key_lines.iter().any(|l| printed.contains(l)) {
        problems.push(format!("key material is printed: {printed}"));
    }
    if printed.contains("password") && !printed.contains("no password") {
        problems.push(format!("a password is mentioned: {printed}"));
    }
    let out = run({
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "{} echo as-printed",
                line.replacen("ssh ", "ssh -o BatchMode=yes ", 1)
            ))
            .env_remove("SSH_AUTH_SOCK");
        c
    });
    if stdout(&out).trim() != "as-printed" {
        problems.push(format!("`{line}` did not work: {}", both(&out)));
    }
    let _ = child.terminate(Duration::from_secs(10)).await;
    if dir.exists() {
        problems.push(format!("{} outlived its tunnel", dir.display()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn owner_ssh_as_printed(env: &crate::ssh::Env) -> Result<(), String> {
    let config = env.tunnel.ssh_config.as_ref().ok_or("no ssh_config")?;
    let host = env.tunnel.ssh_host.as_ref().ok_or("no ssh_host")?;
    let mut problems = Vec::new();
    let owner = |program: &str| {
        let mut c = Command::new(program);
        c.arg("-F")
            .arg(config)
            .args(["-o", "BatchMode=yes"])
            .env_remove("SSH_AUTH_SOCK");
        c
    };
    let out = run({
        let mut c = owner("ssh");
        c.args([host.as_str(), "echo as-printed"]);
        c
    });
    if stdout(&out).trim() != "as-printed" {
        problems.push(format!("ssh -F: {}", both(&out)));
    }
    let local = env.sshd.dir().join("printed-up.txt");
    std::fs::write(&local, "copied as printed\n").unwrap();
    let remote = env.sshd.dir().join("printed-down.txt");
    let out = run({
        let mut c = owner("scp");
        c.arg(&local).arg(format!("{host}:{}", remote.display()));
        c
    });
    if !out.status.success()
        || std::fs::read_to_string(&remote).ok().as_deref() != Some("copied as printed\n")
    {
        problems.push(format!("scp -F: {}", both(&out)));
    }
    let batch = env.sshd.dir().join("printed-sftp");
    std::fs::write(&batch, format!("ls {}\n", env.sshd.dir().display())).unwrap();
    let out = run({
        let mut c = owner("sftp");
        c.arg("-b").arg(&batch).arg(host);
        c
    });
    if !stdout(&out).contains("printed-down.txt") {
        problems.push(format!("sftp -F: {}", both(&out)));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials in logs and errors
// ---------------------------------------------------------------------------------------------

/// A webhook receiver that answers every request with HTTP 500.
async fn failing_receiver() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") });
    (
        port,
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
    )
}

/// A receiver that accepts connections and never answers (the delivery times out).
async fn silent_receiver() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (
        port,
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        }),
    )
}

struct LeakCase {
    attack: &'static str,
    /// The secret part of the webhook's URL.
    secret: &'static str,
    /// What the stored delivery error must say instead (so the case is not vacuous).
    error_says: &'static str,
}

/// Every file under `dir`, as bytes (the SQLite database, its WAL, keys).
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn webhook_urls_stay_out_of_logs_audit_and_status() {
    let secrets = tempfile::tempdir().unwrap();
    let hmac_file = secrets.path().join("hmac");
    std::fs::write(&hmac_file, "whsec-e2e").unwrap();
    let refused_port = free_port();
    let (failing_port, _failing) = failing_receiver().await;
    let (silent_port, _silent) = silent_receiver().await;
    let cases = [
        LeakCase {
            attack: "a Slack-style webhook whose path is the credential, receiver down",
            secret: "T0SLACKTEAM/B0SLACKHOOK/xoxSecretPathKq7",
            error_says: "request to http://127.0.0.1",
        },
        LeakCase {
            attack: "a webhook with a password in its URL, receiver answers 500",
            secret: "userinfoPw9",
            error_says: "HTTP 500",
        },
        LeakCase {
            attack: "a webhook with a token in its query, receiver answers 500",
            secret: "queryTokenZ3",
            error_says: "HTTP 500",
        },
        LeakCase {
            attack: "a Teams-style webhook path, receiver never answers (timeout)",
            secret: "IncomingWebhook/teamsSecretGuid5",
            error_says: "timed out",
        },
    ];
    let config = format!(
        r#"
[[webhooks]]
url = "http://127.0.0.1:{refused_port}/services/{s0}"
secret = {{ file = "{f}" }}
backoff = "100ms"
max_backoff = "200ms"
max_attempts = 2

[[webhooks]]
url = "http://hookuser:{s1}@127.0.0.1:{failing_port}/hook?token={s2}"
secret = {{ file = "{f}" }}
backoff = "100ms"
max_backoff = "200ms"
max_attempts = 2

[[webhooks]]
url = "http://127.0.0.1:{silent_port}/webhookb2/{s3}"
secret = {{ file = "{f}" }}
timeout = "1s"
backoff = "100ms"
max_backoff = "200ms"
max_attempts = 2
"#,
        s0 = cases[0].secret,
        s1 = cases[1].secret,
        s2 = cases[2].secret,
        s3 = cases[3].secret,
        f = hmac_file.display()
    );
    let gw = Gateway::start(&config).await.unwrap();
    // config.loaded goes to every webhook; wait until each has failed for good.
    let mut status = serde_json::Value::Null;
    for _ in 0..200 {
        let s = gw
            .hoopd(&["webhooks", "status", "-o", "json"], None)
            .unwrap();
        status = serde_json::from_str(&stdout(&s)).unwrap_or_default();
        if status["dead_letters"].as_array().map_or(0, Vec::len) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let table = gw.hoopd(&["webhooks", "status"], None).unwrap();
    let json = gw
        .hoopd(&["webhooks", "status", "-o", "json"], None)
        .unwrap();
    let audit = serde_json::to_string(&gw.audit_events().await.unwrap()).unwrap();
    let logs = gw.logs();
    let files = files_under(&gw.data_dir);
    let dead = status["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut failures = Vec::new();
    for case in &cases {
        let mut leaks = Vec::new();
        for (place, text) in [
            ("hoopd's log", logs.as_str()),
            ("the audit log", audit.as_str()),
            ("webhooks status", &both(&table)),
            ("webhooks status -o json", &both(&json)),
        ] {
            if text.contains(case.secret) {
                leaks.push(place.to_string());
            }
        }
        for (path, bytes) in &files {
            if contains(bytes, case.secret) {
                leaks.push(path.display().to_string());
            }
        }
        if !leaks.is_empty() {
            failures.push(format!("- {}: the secret is in {leaks:?}", case.attack));
        }
        if !dead.iter().any(|d| {
            d["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(case.error_says))
        }) {
            failures.push(format!(
                "- {}: no dead letter says {:?} (the failure must still be explained): {dead:?}",
                case.attack, case.error_says
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases did not hold:\n{}\n--- status:\n{}\n--- hoopd:\n{logs}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        stdout(&table)
    );
}

/// An IdP whose discovery document names a JWKS URL that carries a signed query (as some
/// IdPs and proxies hand out) and that nobody serves.
async fn idp_with_a_signed_jwks_url(secret: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dead = free_port();
    let app = axum::Router::new().route(
        "/realms/x/.well-known/openid-configuration",
        axum::routing::get(move || async move {
            axum::Json(serde_json::json!({
                "issuer": format!("http://127.0.0.1:{port}/realms/x"),
                "jwks_uri": format!("http://127.0.0.1:{dead}/keys?sig={secret}"),
            }))
        }),
    );
    (
        port,
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
    )
}

#[tokio::test]
async fn credentials_in_idp_and_target_settings_stay_out_of_logs_and_errors() {
    // At run time: a token makes the gateway fetch a JWKS whose URL carries a signature.
    let jwks_secret = "jwksSignatureK8";
    let (idp_port, _idp) = idp_with_a_signed_jwks_url(jwks_secret).await;
    let gw = Gateway::start(&format!(
        "[auth]\nissuer = \"http://127.0.0.1:{idp_port}/realms/x\"\naudience = \"hoop\"\n"
    ))
    .await
    .unwrap();
    // {"alg":"RS256","kid":"x"}: an allowed algorithm and a key id the gateway must look up.
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJ4IiwiaXNzIjoieCJ9.c2ln";
    let resp = gw
        .http()
        .unwrap()
        .get(format!("{}/api/v1/me", gw.url))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = gw.logs();
    let audit = serde_json::to_string(&gw.audit_events().await.unwrap()).unwrap();

    // In settings: `hoopd check` refuses them, and its messages must not repeat them.
    let dir = tempfile::tempdir().unwrap();
    let target_secret = "targetPwM2";
    let hook_secret = "hookPathSecretR6";
    let issuer_secret = "issuerPwQ5";
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[auth]\nissuer = \"https://idpuser:{issuer_secret}@idp.example.com/realms/x\"\n\n\
             [[connections]]\nname = \"db\"\ntype = \"postgres\"\naddress = \"postgres://app:{target_secret}@db.internal:5432/shop\"\ndatabase = \"shop\"\nuser = \"app\"\nallow = [\"x\"]\n\n\
             [[connections]]\nname = \"web\"\ntype = \"ssh\"\naddress = \"deploy:{target_secret}@web-1\"\nuser = \"deploy\"\nallow = [\"x\"]\nhost_key = \"SHA256:abc\"\npassword = {{ env = \"PATH\" }}\n\n\
             [[webhooks]]\nurl = \"http://hooks.example.com/services/{hook_secret}\"\nsecret = {{ env = \"PATH\" }}\n\n\
             [[webhooks]]\nurl = \"::not a url {hook_secret}\"\nsecret = {{ env = \"PATH\" }}\n"
        ),
    )
    .unwrap();
    let check = run({
        let mut c = Command::new(bin_path("hoopd").unwrap());
        c.args(["check", "--config"]).arg(&bad);
        c
    });
    let checked = both(&check);

    struct Case {
        attack: &'static str,
        secret: &'static str,
        shown: String,
        must_say: &'static str,
    }
    let cases = [
        Case {
            attack: "a JWKS URL with a signed query: the failed fetch is logged",
            secret: jwks_secret,
            shown: logs.clone(),
            must_say: "JWKS fetch failed",
        },
        Case {
            attack: "a JWKS URL with a signed query: the client's answer and the audit log",
            secret: jwks_secret,
            shown: format!("HTTP {status}: {body}\n{audit}"),
            must_say: "HTTP 401",
        },
        Case {
            attack: "an issuer URL with a password",
            secret: issuer_secret,
            shown: checked.clone(),
            must_say: "auth.issuer",
        },
        Case {
            attack: "a target address written as a URL with a password",
            secret: target_secret,
            shown: checked.clone(),
            must_say: "connections[0].address",
        },
        Case {
            attack: "an ssh target address written user:password@host",
            secret: target_secret,
            shown: checked.clone(),
            must_say: "connections[1].address",
        },
        Case {
            attack: "a plain-http webhook whose path is its credential",
            secret: hook_secret,
            shown: checked.clone(),
            must_say: "webhooks[0].url",
        },
        Case {
            attack: "a webhook URL that does not parse",
            secret: hook_secret,
            shown: checked.clone(),
            must_say: "webhooks[1].url",
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        if case.shown.contains(case.secret) {
            failures.push(format!("- {}: the secret is shown", case.attack));
        }
        if !case.shown.contains(case.must_say) {
            failures.push(format!(
                "- {}: the problem is not named ({:?})",
                case.attack, case.must_say
            ));
        }
    }
    if code(&check) == 0 {
        failures.push("- hoopd check accepted the bad settings".into());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases did not hold:\n{}\n--- hoopd check:\n{checked}\n--- hoopd:\n{logs}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
