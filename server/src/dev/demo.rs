//! The `demo` connection of `hoopd dev`: a throwaway PostgreSQL cluster with made-up customer
//! data (card numbers, e-mail addresses, phone numbers, free text), masking and guardrails on,
//! so a newcomer sees the product work with `hoopd dev`, `hoop login`, `hoop connect demo` and
//! psql.
//!
//! Where the PostgreSQL server binaries are installed (the highest version under
//! `/usr/lib/postgresql/*/bin`, else `initdb` on `PATH`), [`start`] creates the cluster once in
//! `<data dir>/demo-pg`, starts `postgres` as a child of hoopd on a free loopback port, and on
//! creation loads `demo.sql` into the database `shop` owned by the role `demo_app`, whose random
//! password is kept in `<data dir>/demo-password` (0600). Later starts reuse the cluster and its
//! data. [`Demo::stop`], or dropping the [`Demo`], shuts PostgreSQL down (SIGINT, its "fast"
//! shutdown). A cluster left running by a hoopd that was killed (SIGKILL cannot be caught) is
//! stopped at the next start.
//!
//! As root: `initdb` and `postgres` refuse to run as root, so they (and the `psql` that loads the
//! data) run as the `postgres` system user, set with `Command::uid/gid` so that `postgres` stays
//! our direct child. That user must be able to reach the cluster: the data dir becomes 0711
//! (search only, see [`open_data_dir`]). When a parent of the data dir is closed to it: for the
//! default dev data dir (under `/root`, mode 0700) the cluster goes to the `postgres` user's home
//! instead (`~postgres/hoopd-demo-<hash of the data dir>`); for a `--data-dir` the user chose,
//! the demo is not started and the banner says which directory is in the way.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal};
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};

use crate::config::ConnectionConfig;
use crate::util::{random_token, sha256_hex};

/// The connection's name.
pub const NAME: &str = "demo";
/// The database holding the sample data.
pub const DATABASE: &str = "shop";
/// The role the gateway logs in as (owner of [`DATABASE`]).
pub const ROLE: &str = "demo_app";
/// Groups allowed to use the demo (the dev user is a member).
pub const ALLOW: [&str; 1] = ["engineering"];
/// Guardrails on the demo connection.
pub const GUARDRAILS: [&str; 2] = ["no-ddl", "no-unbounded-writes"];
/// Masking on the demo connection.
pub const MASKING: [&str; 1] = ["pii"];
/// Shown by `hoop connections`.
pub const DESCRIPTION: &str = "throwaway demo database (masking and guardrails on)";

/// The cluster's directory under the data dir (PGDATA and the Unix socket).
const CLUSTER_DIR: &str = "demo-pg";
/// `demo_app`'s password, read by the gateway (`password = { file = ... }`).
const PASSWORD_FILE: &str = "demo-password";
/// PostgreSQL's output (stdout and stderr), rewritten at every start.
const LOG_FILE: &str = "demo-pg.log";
/// The sample data.
const SEED: &str = include_str!("demo.sql");
/// The cluster's bootstrap superuser; it logs in only through the socket in the cluster dir.
const SUPERUSER: &str = "postgres";
/// The system user that runs PostgreSQL when hoopd runs as root.
const SYSTEM_USER: &str = "postgres";
/// How long PostgreSQL may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before an immediate one.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest Unix socket path: `sun_path` holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where `demo_app`'s password is kept.
pub fn password_file(data_dir: &Path) -> PathBuf {
    data_dir.join(PASSWORD_FILE)
}

/// PostgreSQL's log.
pub fn log_file(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_FILE)
}

/// The running demo cluster. Dropping it stops PostgreSQL (blocking for up to a few seconds);
/// prefer [`Demo::stop`] in async code.
#[derive(Debug)]
pub struct Demo {
    child: Option<Child>,
    port: u16,
    cluster: PathBuf,
    password_file: PathBuf,
    version: String,
    created: bool,
    took: Duration,
}

impl Demo {
    /// The loopback port PostgreSQL listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (PGDATA).
    pub fn cluster(&self) -> &Path {
        &self.cluster
    }

    /// PostgreSQL's version, like `15.8`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// True when this start created the cluster (or loaded the data again).
    pub fn created(&self) -> bool {
        self.created
    }

    /// How long [`start`] took.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// The `demo` connection for the gateway's config.
    pub fn connection(&self) -> anyhow::Result<ConnectionConfig> {
        connection_config(self.port, &self.password_file)
    }

    /// Asks PostgreSQL to shut down (SIGINT, its fast shutdown) without waiting: sessions end
    /// and the gateway's drain does not wait for them. [`Demo::stop`] waits.
    pub fn begin_stop(&self) {
        if let Some(child) = &self.child {
            signal_child(child, Signal::INT);
        }
    }

    /// Shuts PostgreSQL down and waits for it.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child_blocking(&mut child);
        }
    }
}

/// The `demo` connection to PostgreSQL on `port`, `demo_app`'s password read from
/// `password_file`. Built through serde so that keys added to [`ConnectionConfig`] later take
/// their defaults.
pub fn connection_config(port: u16, password_file: &Path) -> anyhow::Result<ConnectionConfig> {
    let file = password_file
        .to_str()
        .context("the data dir's path is not UTF-8")?;
    let list = |items: &[&str]| {
        toml::Value::Array(
            items
                .iter()
                .map(|s| toml::Value::String((*s).to_string()))
                .collect(),
        )
    };
    let mut password = toml::Table::new();
    password.insert("file".into(), file.into());
    let mut t = toml::Table::new();
    t.insert("name".into(), NAME.into());
    t.insert("type".into(), "postgres".into());
    t.insert("description".into(), DESCRIPTION.into());
    t.insert("address".into(), format!("127.0.0.1:{port}").into());
    t.insert("database".into(), DATABASE.into());
    t.insert("user".into(), ROLE.into());
    t.insert("password".into(), toml::Value::Table(password));
    t.insert("allow".into(), list(&ALLOW));
    t.insert("guardrails".into(), list(&GUARDRAILS));
    t.insert("masking".into(), list(&MASKING));
    toml::Value::Table(t)
        .try_into()
        .context("cannot build the demo connection")
}

/// Starts the demo cluster (creating and loading it the first time). `Ok(None)`: no PostgreSQL
/// server binaries are installed. `default_dir`: `data_dir` is hoopd's default, not one the
/// user chose (see the module's documentation for what changes).
pub async fn start(data_dir: &Path, default_dir: bool) -> anyhow::Result<Option<Demo>> {
    let began = Instant::now();
    let Some(mut bins) = Binaries::find() else {
        return Ok(None);
    };
    let run_as = system_user().await?;
    let cluster = cluster_location(data_dir, default_dir, run_as.as_ref())?;
    let socket_len = cluster.as_os_str().len() + "/.s.PGSQL.65535".len();
    if socket_len > MAX_SOCKET_PATH {
        bail!(
            "the path {} is too long for PostgreSQL's socket ({socket_len} > {MAX_SOCKET_PATH} \
             bytes): use a shorter --data-dir",
            cluster.display()
        );
    }
    ensure_cluster_dir(&cluster, run_as.as_ref())?;
    stop_orphan(&cluster).await?;

    let mut version = bins.version().await?;
    let mut fresh = false;
    match std::fs::read_to_string(cluster.join("PG_VERSION")) {
        Ok(made_by) => {
            let made_by = made_by.trim().to_string();
            if made_by != version_key(&version) {
                match Binaries::for_version(&made_by) {
                    Some(b) => {
                        bins = b;
                        version = bins.version().await?;
                    }
                    None => {
                        tracing::warn!(
                            cluster = %cluster.display(),
                            "the demo cluster was made by PostgreSQL {made_by}, which is no longer \
                             installed: creating it again with {version}"
                        );
                        fresh = true;
                    }
                }
            }
        }
        Err(_) => fresh = true,
    }
    if fresh {
        tracing::info!(cluster = %cluster.display(), "creating the demo PostgreSQL cluster");
        clear_dir(&cluster)?;
        initdb(&bins, &cluster, run_as.as_ref()).await?;
    }

    let log = log_file(data_dir);
    let (child, port) = spawn_postgres(&bins, &cluster, run_as.as_ref(), &log)
        .await
        .with_context(|| {
            let fatal = std::fs::read_to_string(&log)
                .ok()
                .and_then(|t| {
                    t.lines()
                        .rev()
                        .find_map(|l| l.find("FATAL:").and_then(|i| l.get(i..)))
                        .map(str::to_string)
                })
                .map(|l| format!("; {}", l.trim()))
                .unwrap_or_default();
            format!(
                "PostgreSQL did not start (its log: {}{fatal})",
                log.display()
            )
        })?;
    let password_file = password_file(data_dir);
    let mut demo = Demo {
        child: Some(child),
        port,
        cluster,
        password_file,
        version,
        created: false,
        took: Duration::ZERO,
    };
    // A new cluster, or one whose password file is gone (or that was killed while loading):
    // (re)load the data. Until the password file is written, the load counts as not done.
    if fresh || !demo.password_file.exists() {
        seed(
            &bins,
            &demo.cluster,
            port,
            run_as.as_ref(),
            &demo.password_file,
        )
        .await?;
        demo.created = true;
    }
    demo.took = began.elapsed();
    Ok(Some(demo))
}

/// The PostgreSQL programs used.
#[derive(Debug, Clone)]
struct Binaries {
    /// Holds `initdb` and `postgres`.
    dir: PathBuf,
    psql: PathBuf,
    pg_isready: Option<PathBuf>,
}

const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

impl Binaries {
    /// The highest version under `/usr/lib/postgresql/*/bin`, else `initdb` on `PATH`.
    fn find() -> Option<Binaries> {
        highest_version_dir(Path::new(DEBIAN_ROOT))
            .and_then(|d| Binaries::in_dir(&d))
            .or_else(|| {
                let path = std::env::var_os("PATH")?;
                std::env::split_paths(&path).find_map(|d| Binaries::in_dir(&d))
            })
    }

    /// `/usr/lib/postgresql/<version>/bin`, if installed.
    fn for_version(version: &str) -> Option<Binaries> {
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return None;
        }
        Binaries::in_dir(&Path::new(DEBIAN_ROOT).join(version).join("bin"))
    }

    fn in_dir(dir: &Path) -> Option<Binaries> {
        if !is_executable(&dir.join("initdb")) || !is_executable(&dir.join("postgres")) {
            return None;
        }
        let tool = |name: &str| {
            let here = dir.join(name);
            if is_executable(&here) {
                Some(here)
            } else {
                which(name)
            }
        };
        Some(Binaries {
            dir: dir.to_path_buf(),
            psql: tool("psql").unwrap_or_else(|| PathBuf::from("psql")),
            pg_isready: tool("pg_isready"),
        })
    }

    fn postgres(&self) -> PathBuf {
        self.dir.join("postgres")
    }

    /// The server's version (`15.8`), from `postgres -V` (which works as root).
    async fn version(&self) -> anyhow::Result<String> {
        let out = Command::new(self.postgres())
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {} -V", self.postgres().display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_version(&text)
            .with_context(|| format!("unexpected `postgres -V` output: {}", text.trim()))
    }
}

/// `/usr/lib/postgresql/<highest version>/bin` holding `initdb` and `postgres`.
fn highest_version_dir(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(version_numbers) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if is_executable(&bin.join("initdb"))
            && is_executable(&bin.join("postgres"))
            && best.as_ref().is_none_or(|(v, _)| version > *v)
        {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; anything else → `None`.
fn version_numbers(s: &str) -> Option<Vec<u32>> {
    s.split('.').map(|p| p.parse().ok()).collect()
}

/// `15.8` from `postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)`.
fn parse_version(output: &str) -> Option<String> {
    let rest = output.split("(PostgreSQL)").nth(1)?;
    let v = rest.split_whitespace().next()?;
    v.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit())
        .then(|| v.to_string())
}

/// What a cluster's `PG_VERSION` file says for a server version: the major version (`15` for
/// `15.8`; `9.6` for `9.6.24`).
fn version_key(version: &str) -> String {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or_default();
    match major.parse::<u32>() {
        Ok(m) if m < 10 => format!("{major}.{}", parts.next().unwrap_or("0")),
        _ => major.to_string(),
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// A system user PostgreSQL runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunAs {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The user PostgreSQL runs as: `postgres` when hoopd runs as root (PostgreSQL refuses root),
/// else hoopd's own user (`None`).
async fn system_user() -> anyhow::Result<Option<RunAs>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    lookup_user(SYSTEM_USER)
        .await
        .context("hoopd runs as root, and PostgreSQL must run as the `postgres` system user")
        .map(Some)
}

/// `getent passwd <name>` (any NSS source), else `/etc/passwd`.
async fn lookup_user(name: &str) -> anyhow::Result<RunAs> {
    if let Ok(out) = Command::new("getent")
        .args(["passwd", name])
        .stdin(Stdio::null())
        .output()
        .await
        && out.status.success()
        && let Some(u) = parse_passwd(&String::from_utf8_lossy(&out.stdout), name)
    {
        return Ok(u);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    parse_passwd(&passwd, name).with_context(|| {
        format!("there is no {name:?} user (installing the postgresql package creates it)")
    })
}

/// The entry for `name` in passwd(5) text.
fn parse_passwd(text: &str, name: &str) -> Option<RunAs> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [n, _pw, uid, gid, _gecos, home, ..] if *n == name => Some(RunAs {
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home: PathBuf::from(home),
            }),
            _ => None,
        }
    })
}

/// The first directory from `/` down to `dir` that `user` may not search (mode bits; ACLs and
/// supplementary groups are not considered, which errs on the side of "may not").
fn closed_ancestor(dir: &Path, user: &RunAs) -> Option<PathBuf> {
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    chain
        .into_iter()
        .find(|a| {
            !std::fs::metadata(a).is_ok_and(|m| {
                let bit = if m.uid() == user.uid {
                    0o100
                } else if m.gid() == user.gid {
                    0o010
                } else {
                    0o001
                };
                m.is_dir() && m.mode() & bit != 0
            })
        })
        .map(Path::to_path_buf)
}

/// `<data dir>/demo-pg`, unless PostgreSQL runs as another user who cannot reach the data dir:
/// then, for the default data dir, a directory in that user's home.
fn cluster_location(
    data_dir: &Path,
    default_dir: bool,
    run_as: Option<&RunAs>,
) -> anyhow::Result<PathBuf> {
    let inside = data_dir.join(CLUSTER_DIR);
    let Some(user) = run_as else {
        return Ok(inside);
    };
    let closed = data_dir.parent().and_then(|p| closed_ancestor(p, user));
    let Some(closed) = closed else {
        open_data_dir(data_dir)?;
        return Ok(inside);
    };
    if !default_dir {
        bail!(
            "PostgreSQL runs as the `postgres` user, who cannot pass through {} to reach the \
             data dir (`chmod o+x` it, or use another --data-dir)",
            closed.display()
        );
    }
    if let Some(home_closed) = closed_ancestor(&user.home, user) {
        bail!(
            "PostgreSQL runs as the `postgres` user, who can reach neither the data dir ({} is \
             closed) nor its home ({} is closed): use a --data-dir others may pass through",
            closed.display(),
            home_closed.display()
        );
    }
    let tag: String = sha256_hex(data_dir.as_os_str().as_bytes())
        .chars()
        .take(12)
        .collect();
    tracing::info!(
        data_dir = %data_dir.display(),
        "the `postgres` user cannot reach the data dir; the demo cluster goes to its home"
    );
    Ok(user.home.join(format!("hoopd-demo-{tag}")))
}

/// Lets the `postgres` user reach its cluster in the data dir: the data dir becomes 0711, so
/// others may pass through it (search) but not list it. A file whose name is known could then
/// be opened if its own mode allowed it, so every entry loses its group and other bits first:
/// the secrets (`hoop.db`, `tls.key`, the issuer key, `demo-password`) stay 0600, and `hoopd dev`
/// runs with umask 077, so whatever it creates later is private as well.
fn open_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(data_dir)
        .with_context(|| format!("cannot list the data dir {}", data_dir.display()))?;
    for entry in entries.flatten() {
        if entry.file_name() == CLUSTER_DIR {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        if meta.file_type().is_symlink() || mode & 0o077 == 0 {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o077))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    let mode = std::fs::metadata(data_dir)
        .with_context(|| format!("cannot read {}", data_dir.display()))?
        .mode()
        & 0o7777;
    if mode != 0o711 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot make {} searchable (0711)", data_dir.display()))?;
    }
    Ok(())
}

/// Creates the cluster's directory (0700), owned by the user PostgreSQL runs as.
fn ensure_cluster_dir(cluster: &Path, run_as: Option<&RunAs>) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if !cluster.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(cluster)
            .with_context(|| format!("cannot create {}", cluster.display()))?;
    }
    if let Some(u) = run_as {
        let meta = std::fs::metadata(cluster)?;
        if meta.uid() != u.uid || meta.gid() != u.gid {
            std::os::unix::fs::chown(cluster, Some(u.uid), Some(u.gid))
                .with_context(|| format!("cannot give {} to postgres", cluster.display()))?;
        }
    }
    Ok(())
}

/// Empties the cluster's directory (keeping the directory, its owner and mode).
fn clear_dir(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
    {
        let path = entry.path();
        let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
        let r = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Sets the user (and a matching environment) a PostgreSQL program runs as.
fn run_as_user(cmd: &mut Command, run_as: Option<&RunAs>) {
    if let Some(u) = run_as {
        cmd.uid(u.uid)
            .gid(u.gid)
            .env("HOME", &u.home)
            .env("USER", SYSTEM_USER)
            .env("LOGNAME", SYSTEM_USER);
    }
}

async fn initdb(bins: &Binaries, cluster: &Path, run_as: Option<&RunAs>) -> anyhow::Result<()> {
    let mut cmd = Command::new(bins.dir.join("initdb"));
    cmd.arg("-D")
        .arg(cluster)
        .args(["-U", SUPERUSER, "--encoding=UTF8", "--locale=C"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        // Throwaway data: no need to wait for the disk.
        .arg("--no-sync")
        .current_dir(cluster)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    run_as_user(&mut cmd, run_as);
    let out = cmd.output().await.context("cannot run initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts `postgres` on a free port (trying again if another process took the port in between)
/// and waits until it accepts connections.
async fn spawn_postgres(
    bins: &Binaries,
    cluster: &Path,
    run_as: Option<&RunAs>,
    log: &Path,
) -> anyhow::Result<(Child, u16)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let log_out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let log_err = log_out.try_clone()?;
        let mut cmd = Command::new(bins.postgres());
        cmd.arg("-D")
            .arg(cluster)
            .arg("-k")
            .arg(cluster)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Throwaway data: speed over durability.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .current_dir(cluster)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_out))
            .stderr(Stdio::from(log_err))
            // hoopd's process group, on purpose: whatever signals the whole group (Ctrl-C in the
            // terminal, a supervisor or test runner killing the group) reaches PostgreSQL too, so
            // it does not outlive a hoopd that had no chance to stop it. SIGKILL if hoopd drops
            // the handle without stopping it.
            .kill_on_drop(true);
        run_as_user(&mut cmd, run_as);
        let mut child = cmd.spawn().context("cannot start postgres")?;
        match wait_ready(&mut child, bins, port).await {
            Ok(()) => return Ok((child, port)),
            Err(e) => {
                stop_child(&mut child).await;
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if attempt < 3 && text.contains("could not bind") {
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// A free loopback port (bound and released; PostgreSQL binds it next).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Waits until PostgreSQL listens on `port` and accepts connections (not "starting up").
async fn wait_ready(child: &mut Child, bins: &Binaries, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("postgres exited ({status}) before accepting connections");
        }
        let listening = matches!(
            tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr)
            )
            .await,
            Ok(Ok(_))
        );
        if listening {
            let Some(isready) = &bins.pg_isready else {
                return Ok(());
            };
            let ok = Command::new(isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-U", SUPERUSER, "-d", "postgres", "-t", "2"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("postgres did not accept connections within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `demo_app` with a new random password, the database `shop` and the sample data
/// (dropping earlier ones), then writes the password file.
async fn seed(
    bins: &Binaries,
    cluster: &Path,
    port: u16,
    run_as: Option<&RunAs>,
    password_file: &Path,
) -> anyhow::Result<()> {
    // base64url: nothing to escape inside a SQL string literal.
    let password = random_token(24);
    let script = format!(
        "SET password_encryption = 'scram-sha-256';\n\
         DROP DATABASE IF EXISTS {DATABASE};\n\
         DROP ROLE IF EXISTS {ROLE};\n\
         CREATE ROLE {ROLE} LOGIN PASSWORD '{password}';\n\
         CREATE DATABASE {DATABASE} OWNER {ROLE} ENCODING 'UTF8' TEMPLATE template0;\n\
         \\connect {DATABASE}\n\
         SET ROLE {ROLE};\n\
         {SEED}"
    );
    // Through the socket in the cluster dir (trusted; only its owner can reach it). The script,
    // password included, goes through stdin, not the command line.
    let mut cmd = Command::new(&bins.psql);
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(cluster)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-f",
            "-",
        ])
        .current_dir(cluster)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .env_remove("PGDATABASE")
        .env_remove("PGUSER")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    run_as_user(&mut cmd, run_as);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bins.psql.display()))?;
    let mut stdin = child.stdin.take().context("psql has no stdin")?;
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("loading the demo data took over 60 s")??;
    if !out.status.success() {
        bail!(
            "loading the demo data failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    write_private(password_file, &password)
}

/// Writes `text` to `path` with mode 0600, through a temporary file and a rename.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A `postmaster` still running on the cluster after its hoopd died (SIGKILL, a crash) keeps
/// the new one from starting: stop it. One whose parent is a live hoopd belongs to another
/// `hoopd dev` on the same data dir, and is left alone.
async fn stop_orphan(cluster: &Path) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(cluster.join("postmaster.pid")) else {
        return Ok(());
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    if !is_postmaster_of(pid, cluster) {
        return Ok(()); // A stale lock file: PostgreSQL handles it.
    }
    if let Some(ppid) = parent_pid(pid)
        && proc_comm(ppid).as_deref() == Some("hoopd")
    {
        bail!(
            "the demo cluster {} is in use by another hoopd (pid {ppid})",
            cluster.display()
        );
    }
    tracing::warn!(
        pid,
        "stopping the demo PostgreSQL left running by an earlier hoopd"
    );
    let Some(p) = Pid::from_raw(pid) else {
        return Ok(());
    };
    for (signal, wait) in [
        (Signal::INT, STOP_TIMEOUT),
        (Signal::QUIT, Duration::from_secs(5)),
        (Signal::KILL, Duration::from_secs(5)),
    ] {
        let _ = rustix::process::kill_process(p, signal);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if !is_alive(pid) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    bail!("PostgreSQL (pid {pid}) still runs on {}", cluster.display())
}

/// Whether `pid` runs `postgres -D <cluster>`.
fn is_postmaster_of(pid: i32, cluster: &Path) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0);
    let is_postgres = args
        .next()
        .is_some_and(|a0| a0.ends_with(b"postgres") || a0.ends_with(b"postmaster"));
    is_postgres && args.any(|a| a == cluster.as_os_str().as_bytes())
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, ...
fn proc_stat(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Alive and not a zombie.
fn is_alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

fn parent_pid(pid: i32) -> Option<i32> {
    proc_stat(pid)?.get(1)?.parse().ok()
}

fn proc_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn signal_child(child: &Child, signal: Signal) {
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// SIGINT (fast shutdown: ends sessions, writes a checkpoint), then SIGQUIT (immediate), then
/// SIGKILL.
async fn stop_child(child: &mut Child) {
    for (signal, wait) in [
        (Signal::INT, STOP_TIMEOUT),
        (Signal::QUIT, Duration::from_secs(5)),
    ] {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        signal_child(child, signal);
        if tokio::time::timeout(wait, child.wait()).await.is_ok() {
            return;
        }
        tracing::warn!("the demo PostgreSQL did not stop after {signal:?}");
    }
    let _ = child.kill().await;
}

/// [`stop_child`] for `Drop`: polls instead of awaiting.
fn stop_child_blocking(child: &mut Child) {
    for (signal, wait) in [
        (Signal::INT, STOP_TIMEOUT),
        (Signal::QUIT, Duration::from_secs(5)),
    ] {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        signal_child(child, signal);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.start_kill();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entries_parse() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            parse_passwd(text, "postgres"),
            Some(RunAs {
                uid: 101,
                gid: 104,
                home: PathBuf::from("/var/lib/postgresql")
            })
        );
        assert_eq!(parse_passwd(text, "postgre"), None);
        assert_eq!(parse_passwd("postgres:x:abc:1:::\n", "postgres"), None);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n").as_deref(),
            Some("15.8")
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17devel").as_deref(),
            Some("17devel")
        );
        assert_eq!(parse_version("bash: postgres: not found"), None);
        assert_eq!(version_key("15.8"), "15");
        assert_eq!(version_key("17devel"), "17devel");
        assert_eq!(version_key("9.6.24"), "9.6");
        assert_eq!(version_numbers("16"), Some(vec![16]));
        assert_eq!(version_numbers("9.6"), Some(vec![9, 6]));
        assert_eq!(version_numbers("main"), None);
        assert!(version_numbers("16") > version_numbers("9.6"));
    }

    #[test]
    fn highest_installed_version_wins() {
        let root = tempfile::tempdir().unwrap();
        for (v, complete) in [("9.6", true), ("13", true), ("16", false), ("15", true)] {
            let bin = root.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let names: &[&str] = if complete {
                &["initdb", "postgres"]
            } else {
                &["initdb"]
            };
            for n in names {
                std::fs::write(bin.join(n), "").unwrap();
                std::fs::set_permissions(bin.join(n), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
        }
        std::fs::create_dir_all(root.path().join("notes")).unwrap();
        assert_eq!(
            highest_version_dir(root.path()),
            Some(root.path().join("15/bin"))
        );
        assert_eq!(highest_version_dir(&root.path().join("none")), None);
    }

    #[test]
    fn demo_connection_validates() {
        let dir = tempfile::tempdir().unwrap();
        let pw = password_file(dir.path());
        write_private(&pw, "s3cret").unwrap();
        assert_eq!(
            std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut config = crate::config::Config::parse(crate::config::STARTER).unwrap();
        config
            .connections
            .push(connection_config(5433, &pw).unwrap());
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let c = &config.connections[0];
        assert_eq!(c.name, "demo");
        assert_eq!(c.address, "127.0.0.1:5433");
        assert_eq!(c.database.as_deref(), Some("shop"));
        assert_eq!(c.user.as_deref(), Some("demo_app"));
        assert_eq!(c.allow, ["engineering"]);
        assert_eq!(c.guardrails, ["no-ddl", "no-unbounded-writes"]);
        assert_eq!(c.masking, ["pii"]);
        assert_eq!(
            c.password.as_ref().unwrap().resolve().unwrap().expose(),
            "s3cret"
        );
    }

    #[test]
    fn traversal_follows_mode_bits() {
        let me = RunAs {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            home: PathBuf::from("/"),
        };
        let other = RunAs {
            uid: me.uid.wrapping_add(4242),
            gid: me.gid.wrapping_add(4242),
            home: PathBuf::from("/"),
        };
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        // Only if every ancestor of the temp dir lets others through (it does for /tmp).
        if closed_ancestor(dir.path().parent().unwrap(), &other).is_none() {
            assert_eq!(closed_ancestor(&inner, &me), None);
            assert_eq!(closed_ancestor(&inner, &other).as_deref(), Some(dir.path()));
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
            assert_eq!(closed_ancestor(&inner, &other), None);
        }
    }

    #[test]
    fn opening_the_data_dir_makes_its_files_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hoop.db");
        std::fs::write(&db, "x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sub = dir.path().join("recordings");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        open_data_dir(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(dir.path()), 0o711);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&sub), 0o700);
    }

    #[test]
    fn seed_data_has_cards_in_columns_and_notes() {
        assert!(SEED.contains("'4111 1111 1111 1111'"));
        assert!(SEED.contains("Paid with 4111-1111-1111-1111"));
        assert!(SEED.contains("3782 822463 10005"));
        assert!(SEED.contains("5500 0000 0000 0004"));
        assert!(
            !SEED.contains("\\connect"),
            "the seed runs inside `shop` already"
        );
    }
}
