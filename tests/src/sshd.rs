//! A real OpenSSH `sshd` from Debian on a loopback port, in a temp dir: its own host key, an
//! authorized key for the target user (the user running the tests; as root, root with
//! `PermitRootLogin prohibit-password`), `internal-sftp`, no PAM. Plus helpers to run the real
//! OpenSSH clients (`ssh`, `scp`, `sftp`) non-interactively, with the tunnel's key file or a password via `SSH_ASKPASS`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proc::{ChildGuard, free_port};

/// A running sshd.
pub struct Sshd {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The user the gateway logs in as.
    pub user: String,
    /// Private key whose public half is authorized (OpenSSH format).
    pub client_key: PathBuf,
    /// `ssh-ed25519 AAAA...` of the host key it serves.
    pub host_key_line: String,
    dir: tempfile::TempDir,
    child: ChildGuard,
}

fn keygen(path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hoop-test", "-f"])
        .arg(path)
        .output()
        .context("run ssh-keygen (package openssh-client)")?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A fresh Ed25519 public key line nobody serves (to pin a "changed" host key).
pub fn unrelated_host_key() -> Result<String> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("k");
    keygen(&p)?;
    Ok(std::fs::read_to_string(p.with_extension("pub"))?
        .trim()
        .to_string())
}

fn current_user() -> String {
    if rustix::process::geteuid().is_root() {
        return "root".into();
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into())
}

impl Sshd {
    /// Starts sshd and waits until it accepts connections.
    pub async fn start() -> Result<Sshd> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            bail!("/usr/sbin/sshd is missing: apt-get install openssh-server");
        }
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir()?;
        let host_key = dir.path().join("host_key");
        keygen(&host_key)?;
        let client_key = dir.path().join("client_key");
        keygen(&client_key)?;
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)?;
        // sshd wants its privilege-separation directory even with UsePrivilegeSeparation gone.
        if rustix::process::geteuid().is_root() {
            std::fs::create_dir_all("/run/sshd")?;
        }
        let port = free_port();
        let cfg = dir.path().join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host}\n\
                 PidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {auth}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\n\
                 Subsystem sftp internal-sftp\n\
                 AcceptEnv LANG LC_* HOOP_TEST_*\n\
                 AllowTcpForwarding yes\n\
                 PrintMotd no\n\
                 LogLevel VERBOSE\n",
                host = host_key.display(),
                dir = dir.path().display(),
                auth = authorized.display(),
            ),
        )?;
        let mut cmd = Command::new(sshd);
        cmd.arg("-D").arg("-e").arg("-f").arg(&cfg);
        let mut child = ChildGuard::spawn("sshd", &mut cmd, dir.path())?;
        child
            .wait_for_tcp(
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(20),
            )
            .await?;
        let host_key_line = std::fs::read_to_string(host_key.with_extension("pub"))?
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Sshd {
            port,
            user: current_user(),
            client_key,
            host_key_line,
            dir,
            child,
        })
    }

    /// sshd's log so far.
    pub fn logs(&self) -> String {
        self.child.logs()
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `[[connections]]` block for this target: key auth, the host key pinned.
    pub fn connection(&self, name: &str, extra: &str) -> String {
        format!(
            "[[connections]]\nname = \"{name}\"\ntype = \"ssh\"\naddress = \"127.0.0.1:{port}\"\nuser = \"{user}\"\nprivate_key = {{ file = \"{key}\" }}\nhost_key = \"{hk}\"\nallow = [\"engineering\"]\n{extra}\n",
            port = self.port,
            user = self.user,
            key = self.client_key.display(),
            hk = self.host_key_line,
        )
    }
}

/// How an [`SshClient`] logs in.
enum Login {
    /// A password through `SSH_ASKPASS`.
    Password(PathBuf),
    /// A private key file (`-i`, nothing else offered).
    Key(PathBuf),
}

/// Runs the OpenSSH clients non-interactively: with the tunnel's key file, as `hoop connect`
/// prints, or with a password given through `SSH_ASKPASS` (no terminal needed).
pub struct SshClient {
    /// Local port of `hoop connect`.
    pub port: u16,
    login: Login,
    _dir: tempfile::TempDir,
}

impl SshClient {
    /// A client that logs in with the private key at `identity` and offers no other.
    pub fn with_key(port: u16, identity: &Path) -> Result<Self> {
        Ok(Self {
            port,
            login: Login::Key(identity.to_path_buf()),
            _dir: tempfile::Builder::new().prefix("sshclient-").tempdir()?,
        })
    }

    /// A client that answers every password prompt with `password`.
    pub fn new(port: u16, password: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("askpass-").tempdir()?;
        let askpass = dir.path().join("askpass.sh");
        let pw_file = dir.path().join("pw");
        std::fs::write(&pw_file, password)?;
        std::fs::write(
            &askpass,
            format!("#!/bin/sh\ncat '{}'\n", pw_file.display()),
        )?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            port,
            login: Login::Password(askpass),
            _dir: dir,
        })
    }

    fn common(&self, cmd: &mut Command) {
        cmd.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ]);
        self.login(cmd);
    }

    fn login(&self, cmd: &mut Command) {
        cmd.args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"]);
        match &self.login {
            Login::Password(askpass) => {
                cmd.env("SSH_ASKPASS", askpass)
                    .env("SSH_ASKPASS_REQUIRE", "force")
                    .env("DISPLAY", ":0")
                    .args([
                        "-o",
                        "PreferredAuthentications=password",
                        "-o",
                        "NumberOfPasswordPrompts=1",
                    ]);
            }
            Login::Key(identity) => {
                cmd.env_remove("SSH_AUTH_SOCK")
                    .arg("-i")
                    .arg(identity)
                    .args([
                        "-o",
                        "IdentitiesOnly=yes",
                        "-o",
                        "PreferredAuthentications=publickey",
                        "-o",
                        "BatchMode=yes",
                    ]);
            }
        }
    }

    /// `ssh -p PORT hoop@127.0.0.1 <args...>`, stdin from `stdin`.
    pub fn ssh_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        self.common(&mut cmd);
        cmd.args(["-p", &self.port.to_string(), "hoop@127.0.0.1"])
            .args(args);
        cmd
    }

    /// Like [`SshClient::ssh_command`] but checking the host key strictly against the
    /// `known_hosts` file, under the alias `hoop-gateway` (as `hoop connect` suggests).
    pub fn ssh_pinned(&self, known_hosts: &std::path::Path, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "HostKeyAlias=hoop-gateway"]);
        self.login(&mut cmd);
        cmd.args(["-p", &self.port.to_string(), "hoop@127.0.0.1"])
            .args(args);
        run(cmd, None)
    }

    /// Runs `ssh ... <args>` to completion with `stdin` piped in.
    pub fn ssh(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        run(self.ssh_command(args), stdin)
    }

    /// `scp -P PORT <from> <to>` where remote paths are written `:path`.
    pub fn scp(&self, from: &str, to: &str) -> Result<Output> {
        // -O: the classic scp protocol (exec `scp -t`/`-f`), not SFTP.
        self.scp_with(&["-O"], from, to)
    }

    /// `scp <mode> -P PORT <from> <to>`: `&["-O"]` for the classic protocol, `&[]` for the
    /// SFTP protocol scp uses by default.
    pub fn scp_with(&self, mode: &[&str], from: &str, to: &str) -> Result<Output> {
        let fix = |p: &str| match p.strip_prefix(':') {
            Some(rest) => format!("hoop@127.0.0.1:{rest}"),
            None => p.to_string(),
        };
        let mut cmd = Command::new("scp");
        self.common(&mut cmd);
        cmd.args(mode)
            .args(["-q", "-P", &self.port.to_string()])
            .arg(fix(from))
            .arg(fix(to));
        run(cmd, None)
    }

    /// `sftp -P PORT hoop@127.0.0.1` reading `commands` from stdin (not `-b`, which turns on
    /// BatchMode and so disables password logins).
    pub fn sftp(&self, commands: &str) -> Result<Output> {
        let mut cmd = Command::new("sftp");
        self.common(&mut cmd);
        cmd.args(["-q", "-P", &self.port.to_string(), "hoop@127.0.0.1"]);
        run(cmd, Some(commands.as_bytes()))
    }
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Result<Output> {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawn OpenSSH client")?;
    if let Some(input) = stdin {
        let mut s = child.stdin.take().context("stdin")?;
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&input);
        });
    }
    Ok(child.wait_with_output()?)
}
