//! The real `hoopd` binary on a loopback port, and a `hoop` CLI user with a private HOME.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::proc::{ChildGuard, Signal, bin_path, free_port};

/// A running `hoopd --config <file>`.
pub struct Gateway {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// `SHA256:<hex>` of its certificate.
    pub fingerprint: String,
    /// The listening port.
    pub port: u16,
    /// The config file.
    pub config_path: PathBuf,
    /// The data dir (SQLite, keys, certificate).
    pub data_dir: PathBuf,
    child: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

/// `SHA256:<hex>` of the first certificate in a PEM file.
pub fn pem_fingerprint(path: &Path) -> Result<String> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64)?;
    use sha2::Digest;
    Ok(format!("SHA256:{}", hex::encode(sha2::Sha256::digest(der))))
}

impl Gateway {
    /// Writes a config (`[server]` is filled in; `rest` is appended verbatim) and starts hoopd.
    pub async fn start(rest: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("hoopd-").tempdir()?;
        let port = free_port();
        let data_dir = dir.path().join("data");
        let config_path = dir.path().join("hoopd.toml");
        std::fs::write(
            &config_path,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n\n{rest}\n"),
        )?;
        let mut gw = Gateway {
            url: format!("https://127.0.0.1:{port}"),
            fingerprint: String::new(),
            port,
            config_path,
            data_dir,
            child: None,
            dir,
        };
        gw.restart().await?;
        Ok(gw)
    }

    /// (Re)starts the process with the same config and port.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.terminate(Duration::from_secs(10)).await?;
        }
        let mut cmd = Command::new(bin_path("hoopd")?);
        cmd.arg("--config")
            .arg(&self.config_path)
            .env("HOOPD_LOG", "info,hoop_server=debug");
        let mut child = ChildGuard::spawn("hoopd", &mut cmd, self.dir.path())?;
        child.set_stop_signal(Signal::TERM, Duration::from_secs(10));
        // The port is bound before the certificate and keys exist: wait for the serving line.
        child
            .wait_for_output("gateway listening", Duration::from_secs(30))
            .await?;
        // Only a self-signed gateway has its certificate in the data dir.
        self.fingerprint = pem_fingerprint(&self.data_dir.join("tls.crt")).unwrap_or_default();
        self.child = Some(child);
        Ok(())
    }

    /// Crashes the process (`SIGKILL`, no chance to flush anything) and waits until it is gone.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.signal(Signal::KILL)?;
            c.wait_exit(Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// Stops the process (SIGTERM) and returns its exit status.
    pub async fn stop(&mut self) -> Result<std::process::ExitStatus> {
        match self.child.take() {
            Some(mut c) => c.terminate(Duration::from_secs(10)).await,
            None => bail!("not running"),
        }
    }

    /// hoopd's logs so far.
    pub fn logs(&self) -> String {
        self.child.as_ref().map(|c| c.logs()).unwrap_or_default()
    }

    /// `hoopd <args> --config <file>`, run to completion, `stdin` piped in.
    pub fn hoopd(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        run_with_stdin(
            Command::new(bin_path("hoopd")?)
                .args(args)
                .arg("--config")
                .arg(&self.config_path),
            stdin,
        )
    }

    /// Creates a local user (built-in issuer).
    pub fn add_user(&self, name: &str, password: &str, groups: &str) -> Result<()> {
        let out = self.hoopd(
            &["users", "add", name, "--groups", groups, "--password-stdin"],
            Some(&format!("{password}\n")),
        )?;
        if !out.status.success() {
            bail!("users add failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// An HTTP client that trusts this gateway's self-signed certificate.
    pub fn http(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()?)
    }

    /// Approves (or denies) a device login on the built-in issuer's page, as a browser would.
    pub async fn submit_device_page(
        &self,
        user_code: &str,
        user: &str,
        password: &str,
        deny: bool,
    ) -> Result<String> {
        let resp = self
            .http()?
            .post(format!("{}/device", self.url))
            .form(&[
                ("user_code", user_code),
                ("username", user),
                ("password", password),
                ("action", if deny { "deny" } else { "approve" }),
            ])
            .send()
            .await?;
        Ok(resp.text().await?)
    }

    /// Every audit event (decoded JSON), in order, read straight from the SQLite file.
    pub async fn audit_events(&self) -> Result<Vec<serde_json::Value>> {
        let pool = self.db().await?;
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, bytes FROM audit_log ORDER BY seq")
                .fetch_all(&pool)
                .await?;
        pool.close().await;
        rows.into_iter()
            .map(|(_, b)| serde_json::from_slice(&b).context("audit bytes are not JSON"))
            .collect()
    }

    /// A connection to the gateway's SQLite database.
    pub async fn db(&self) -> Result<sqlx::SqlitePool> {
        let url = format!("sqlite://{}", self.data_dir.join("hoop.db").display());
        Ok(sqlx::SqlitePool::connect(&url).await?)
    }
}

/// Runs a command to completion with optional stdin.
pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&str>) -> Result<Output> {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// A person (or CI job) using the `hoop` CLI: a private HOME, file credential store, no TTY.
pub struct CliUser {
    home: tempfile::TempDir,
}

/// What `hoop login` printed for the browser step.
#[derive(Debug, Clone)]
pub struct LoginPrompt {
    /// The verification URL.
    pub url: String,
    /// The user code.
    pub code: String,
}

impl CliUser {
    /// A fresh user with an empty HOME.
    pub fn new() -> Result<Self> {
        Ok(Self {
            home: tempfile::Builder::new().prefix("hoop-home-").tempdir()?,
        })
    }

    /// The HOME directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Where the file credential store keeps tokens.
    pub fn credentials_file(&self) -> PathBuf {
        self.home.path().join(".local/share/hoop/credentials.json")
    }

    /// `hoop <args>` with this user's environment (and nothing inherited that matters).
    pub fn command(&self, args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new(bin_path("hoop")?);
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("XDG_DATA_HOME", self.home.path().join(".local/share"))
            .env("HOOP_CREDENTIAL_STORE", "file")
            .env_remove("HOOP_GATEWAY")
            .env_remove("HOOP_TOKEN")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        Ok(cmd)
    }

    /// Runs `hoop <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        run_with_stdin(&mut self.command(args)?, None)
    }

    /// Runs `hoop <args>` with extra environment.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut cmd = self.command(args)?;
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_stdin(&mut cmd, None)
    }

    /// Runs `hoop login <args>`, hands the printed URL and code to `browser`, and waits for the
    /// login to finish. Returns hoop's output.
    pub async fn login<F, Fut>(&self, args: &[&str], browser: F) -> Result<Output>
    where
        F: FnOnce(LoginPrompt) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut all = vec!["login", "--no-browser"];
        all.extend_from_slice(args);
        let mut cmd = tokio::process::Command::from(self.command(&all)?);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let (mut url, mut code) = (None, None);
        let read = async {
            while let Some(line) = lines.next_line().await? {
                seen.push_str(&line);
                seen.push('\n');
                if let Some(u) = line.strip_prefix("To sign in, open this URL in a browser: ") {
                    url = Some(u.trim().to_string());
                }
                if let Some(c) = line.strip_prefix("and confirm this code: ") {
                    code = c.split_whitespace().next().map(str::to_string);
                }
                if url.is_some() && code.is_some() {
                    break;
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .context("hoop login printed no code")??;
        let (Some(url), Some(code)) = (url, code) else {
            let out = child.wait_with_output().await?;
            bail!(
                "hoop login ended without a code: {seen}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        browser(LoginPrompt { url, code }).await?;
        // Keep draining stderr so the child never blocks on a full pipe.
        let rest = tokio::spawn(async move {
            let mut more = String::new();
            while let Ok(Some(l)) = lines.next_line().await {
                more.push_str(&l);
                more.push('\n');
            }
            more
        });
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .context("hoop login did not finish")??;
        let mut stdout = Vec::new();
        if let Some(mut o) = child.stdout.take() {
            use tokio::io::AsyncReadExt;
            o.read_to_end(&mut stdout).await?;
        }
        let more = rest.await.unwrap_or_default();
        Ok(Output {
            status,
            stdout,
            stderr: format!("{seen}{more}").into_bytes(),
        })
    }
}

/// The exit code, or -1 for a signal.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `hoop connect` and what it printed.
pub struct Tunnel {
    /// The local port.
    pub port: u16,
    /// The tunnel password (from `-o json`; valid for every connection of this tunnel).
    pub password: String,
    /// The database in the URL.
    pub database: String,
    /// The URL `hoop connect` prints: no password in it; for PostgreSQL its `passfile`
    /// parameter names the tunnel's private pgpass file, so psql, pgbench and other libpq
    /// programs use it as it is. In-process drivers that read no passfile use
    /// [`Tunnel::driver_url`].
    pub url: String,
    /// PostgreSQL: the pgpass file holding the tunnel password.
    pub passfile: Option<PathBuf>,
    /// PostgreSQL: the connection service file (`PGSERVICEFILE`).
    pub service_file: Option<PathBuf>,
    /// PostgreSQL: the service's name in it.
    pub service: Option<String>,
    /// SSH: the tunnel's private key.
    pub identity_file: Option<PathBuf>,
    /// SSH: the ssh_config for `ssh -F`.
    pub ssh_config: Option<PathBuf>,
    /// SSH: the host name in that config (`<connection>.hoop`).
    pub ssh_host: Option<String>,
    /// The whole `ready` event.
    pub ready: serde_json::Value,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Tunnel {
    /// A libpq URL with another password (to test refusals).
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://hoop:{password}@127.0.0.1:{}/{}?sslmode=disable",
            self.port, self.database
        )
    }

    /// A URL with the tunnel password in it, for in-process drivers (tokio-postgres) that do
    /// not read a passfile. Never hand it to a child process: argv is readable by every user.
    pub fn driver_url(&self) -> String {
        self.url_with_password(&self.password)
    }

    /// `hoop connect`'s stderr so far.
    pub fn logs(&self) -> String {
        self.child.logs()
    }

    /// The `hoop connect` process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The tunnel's private directory (where its password or key files are).
    pub fn private_dir(&self) -> Option<PathBuf> {
        self.passfile
            .as_ref()
            .or(self.identity_file.as_ref())
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
    }

    /// Stops `hoop connect` (SIGTERM, like Ctrl-C) and waits until it has exited.
    pub async fn stop(&mut self) -> Result<std::process::ExitStatus> {
        self.child.terminate(Duration::from_secs(10)).await
    }
}

impl CliUser {
    /// Pins `gw` in this user's settings (what `hoop login --fingerprint` leaves behind).
    pub fn pin(&self, gw: &Gateway) -> Result<()> {
        let cfg = self.home.path().join(".config/hoop");
        std::fs::create_dir_all(&cfg)?;
        std::fs::write(
            cfg.join("config.toml"),
            format!(
                "gateway = \"{}\"\n[gateways.\"{}\"]\nfingerprint = \"{}\"\n",
                gw.url, gw.url, gw.fingerprint
            ),
        )?;
        Ok(())
    }

    /// Starts `hoop connect <name> -o json` with `env` and waits for its `ready` event.
    pub async fn connect(&self, name: &str, env: &[(&str, &str)]) -> Result<Tunnel> {
        self.connect_with(name, &[], env).await
    }

    /// Like [`CliUser::connect`] with extra flags (`--reason`, `--duration`...).
    pub async fn connect_with(
        &self,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Tunnel> {
        let dir = tempfile::Builder::new().prefix("hoop-connect-").tempdir()?;
        let port = free_port();
        let port_s = port.to_string();
        let mut args = vec!["connect", name, "-o", "json", "--port", port_s.as_str()];
        args.extend_from_slice(extra);
        let mut cmd = self.command(&args)?;
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = ChildGuard::spawn("hoop-connect", &mut cmd, dir.path())?;
        child.set_stop_signal(Signal::TERM, Duration::from_secs(5));
        let line = child
            .wait_for_output("\"event\":\"ready\"", Duration::from_secs(60))
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("ready line {line:?}"))?;
        let path = |k: &str| v[k].as_str().map(PathBuf::from);
        let text = |k: &str| v[k].as_str().map(str::to_string);
        Ok(Tunnel {
            port: v["port"].as_u64().context("port")? as u16,
            password: v["password"].as_str().context("password")?.to_string(),
            database: v["database"].as_str().context("database")?.to_string(),
            url: v["url"].as_str().context("url")?.to_string(),
            passfile: path("passfile"),
            service_file: path("service_file"),
            service: text("service"),
            identity_file: path("identity_file"),
            ssh_config: path("ssh_config"),
            ssh_host: text("ssh_host"),
            ready: v,
            child,
            _dir: dir,
        })
    }
}
