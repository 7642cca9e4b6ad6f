//! A throwaway PostgreSQL cluster on a loopback port.
//!
//! `initdb` and `postgres` refuse to run as root: when the tests run as root, the temp
//! dir is given to the `postgres` user and both run with that uid/gid (set by
//! `std::process::Command::uid`, so `postgres` is our direct child and no `runuser` or
//! `pg_ctl` sits in between). Host connections need a password: SCRAM-SHA-256 for every
//! role except members of [`MD5_GROUP`], which use MD5.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rustix::process::Signal;
use tokio::io::AsyncWriteExt as _;

use crate::proc::{ChildGuard, free_port};

/// Superuser name and password of every test cluster.
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "hoop-test-superuser-pw";
/// Roles in this group authenticate with MD5 over TCP (see [`Postgres::create_role`]).
pub const MD5_GROUP: &str = "hoop_md5_users";

/// How a role's password is stored (and so which auth method `pg_hba.conf` applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordKind {
    Scram,
    Md5,
}

/// A running cluster; stopped (immediate shutdown) on drop and its files removed.
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    pub host: String,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    child: ChildGuard,
    // Dropped after `child`.
    dir: tempfile::TempDir,
}

/// The PostgreSQL server binaries: `HOOP_PG_BIN` if set, else the highest version under
/// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HOOP_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let Some(version) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.split('.').next().and_then(|m| m.parse::<u32>().ok()))
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("postgres").is_file() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("PostgreSQL server binaries not found: apt-get install -y postgresql")?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.join("postgres").is_file() {
        bail!(
            "PostgreSQL server binaries not found in {}: apt-get install -y postgresql",
            dir.display()
        );
    }
    Ok(dir)
}

/// uid and gid of `name` from /etc/passwd.
fn lookup_user(name: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    for line in passwd.lines() {
        let mut f = line.split(':');
        if f.next() == Some(name) {
            let _pw = f.next();
            let uid = f.next().and_then(|s| s.parse().ok());
            let gid = f.next().and_then(|s| s.parse().ok());
            if let (Some(uid), Some(gid)) = (uid, gid) {
                return Ok((uid, gid));
            }
        }
    }
    bail!("user {name:?} not found in /etc/passwd (install the postgresql package)")
}

/// SQL identifier quoting.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// SQL string literal quoting (standard_conforming_strings is on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Postgres {
    /// initdb a new cluster in a temp dir, start `postgres` on 127.0.0.1 and a free port,
    /// and wait until it accepts connections.
    pub async fn start() -> Result<Self> {
        let bin_dir = pg_bin_dir()?;
        let as_root = rustix::process::geteuid().is_root();
        let owner = if as_root {
            Some(lookup_user("postgres")?)
        } else {
            None
        };

        let dir = tempfile::Builder::new()
            .prefix("hoop-pg-")
            .tempdir()
            .context("create temp dir for PostgreSQL")?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().to_path_buf();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n")).context("write pwfile")?;
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
            .context("chmod pwfile")?;
        if let Some((uid, gid)) = owner {
            for p in [dir.path(), pwfile.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .with_context(|| format!("chown {} to postgres", p.display()))?;
            }
        }

        // initdb
        let mut initdb = tokio::process::Command::new(bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "--no-instructions"])
            .current_dir(dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().await.context("run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_file(&pwfile);

        // Host auth: MD5 for members of MD5_GROUP, SCRAM for everyone else; local
        // (socket inside the private temp dir) trusted.
        let hba = format!(
            "local all all trust\n\
             host all +{MD5_GROUP} 127.0.0.1/32 md5\n\
             host all all 127.0.0.1/32 scram-sha-256\n"
        );
        std::fs::write(data_dir.join("pg_hba.conf"), hba).context("write pg_hba.conf")?;

        // postgres, in the foreground, as our direct child. The port comes from
        // free_port(), so retry if another process grabbed it in between.
        let mut attempt = 0;
        let (port, child) = loop {
            attempt += 1;
            let port = free_port();
            let mut cmd = std::process::Command::new(bin_dir.join("postgres"));
            cmd.arg("-D")
                .arg(&data_dir)
                .arg("-p")
                .arg(port.to_string())
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", socket_dir.display()))
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                .args(["-c", "log_connections=on", "-c", "log_min_messages=warning"])
                .args(["-c", "password_encryption=scram-sha-256"])
                .current_dir(dir.path())
                .env("LC_ALL", "C");
            if let Some((uid, gid)) = owner {
                cmd.uid(uid).gid(gid);
            }
            let mut child = ChildGuard::spawn("postgres", &mut cmd, dir.path())?;
            // SIGQUIT = immediate shutdown (what `pg_ctl stop -m immediate` sends).
            child.set_stop_signal(Signal::QUIT, Duration::from_secs(5));
            match wait_ready(&mut child, &bin_dir, port, Duration::from_secs(30)).await {
                Ok(()) => break (port, child),
                Err(_) if attempt < 3 && child.stderr().contains("could not bind") => {
                    drop(child);
                }
                Err(e) => return Err(e),
            }
        };

        let pg = Self {
            port,
            host: "127.0.0.1".to_owned(),
            bin_dir,
            data_dir,
            socket_dir,
            child,
            dir,
        };
        pg.psql(
            "postgres",
            &format!("CREATE ROLE {} NOLOGIN", quote_ident(MD5_GROUP)),
        )
        .await?;
        Ok(pg)
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB` (superuser).
    pub fn url(&self, db: &str) -> String {
        self.url_for(SUPERUSER, SUPERUSER_PASSWORD, db)
    }

    /// Connection URL for another role.
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            urlencode(user),
            urlencode(password),
            self.host,
            self.port,
            urlencode(db)
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        self.child.logs()
    }

    /// Path of the `psql` client matching the server.
    pub fn psql_path(&self) -> PathBuf {
        let p = self.bin_dir.join("psql");
        if p.is_file() {
            p
        } else {
            PathBuf::from("psql")
        }
    }

    /// Run `sql` (one or more statements) as the superuser over TCP with a password;
    /// returns psql's unaligned, tuples-only output (`|`-separated columns, one row per
    /// line), trailing newline trimmed. Fails on the first error.
    pub async fn psql(&self, db: &str, sql: &str) -> Result<String> {
        self.psql_as(SUPERUSER, SUPERUSER_PASSWORD, db, sql).await
    }

    /// Like [`Postgres::psql`] as another role.
    pub async fn psql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> Result<String> {
        let mut child = tokio::process::Command::new(self.psql_path())
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                db,
                "-f",
                "-",
            ])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn psql")?;
        let mut stdin = child.stdin.take().context("psql stdin")?;
        stdin
            .write_all(sql.as_bytes())
            .await
            .context("write SQL to psql")?;
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .context("psql timed out after 60 s")?
            .context("wait for psql")?;
        if !out.status.success() {
            bail!(
                "psql as {user} on {db} failed ({}): {}\nSQL: {sql}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    /// Create a login role whose password is stored as SCRAM-SHA-256 or MD5. MD5 roles
    /// are added to [`MD5_GROUP`] so that `pg_hba.conf` applies `md5` auth to them.
    pub async fn create_role(&self, name: &str, password: &str, kind: PasswordKind) -> Result<()> {
        let enc = match kind {
            PasswordKind::Scram => "scram-sha-256",
            PasswordKind::Md5 => "md5",
        };
        let mut sql = format!(
            "SET password_encryption = '{enc}';\nCREATE ROLE {} LOGIN PASSWORD {};\n",
            quote_ident(name),
            quote_literal(password)
        );
        if kind == PasswordKind::Md5 {
            sql.push_str(&format!(
                "GRANT {} TO {};\n",
                quote_ident(MD5_GROUP),
                quote_ident(name)
            ));
        }
        self.psql("postgres", &sql).await.map(|_| ())
    }

    /// Create a database owned by `owner`.
    pub async fn create_database(&self, name: &str, owner: &str) -> Result<()> {
        self.psql(
            "postgres",
            &format!(
                "CREATE DATABASE {} OWNER {};",
                quote_ident(name),
                quote_ident(owner)
            ),
        )
        .await
        .map(|_| ())
    }

    /// Root of the cluster's temp dir (holds `data/`, the socket and the logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Wait until the cluster accepts TCP connections and `pg_isready` says yes.
async fn wait_ready(
    child: &mut ChildGuard,
    bin_dir: &Path,
    port: u16,
    timeout: Duration,
) -> Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    child.wait_for_tcp(addr, timeout).await?;
    let deadline = Instant::now() + timeout;
    loop {
        child.ensure_running()?;
        let status = tokio::process::Command::new(bin_dir.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", SUPERUSER])
            .args(["-d", "postgres", "-t", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("run pg_isready")?;
        if status.success() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("PostgreSQL not ready within {timeout:?}\n{}", child.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
