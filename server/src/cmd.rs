//! `hoopd`'s command line: run the gateway, the embedded dev mode, config checks, and the admin
//! commands that work on a data dir (users, API keys, audit verification).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::audit::{AuditLog, event, verify_store};
use crate::auth::{apikey, password};
use crate::config::Config;
use crate::server::{Gateway, open_store, shutdown_signal};
use crate::store::{ApiKeyRecord, Store, StoreError, UserRecord};
use crate::util::{now_unix, unix_to_rfc3339};

/// hoopd: the hoop access gateway.
#[derive(Debug, Parser)]
#[command(name = "hoopd", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Configuration file (runs the gateway when no command is given).
    #[arg(long, short, env = "HOOPD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data dir for admin commands when no --config is given (default: the `hoopd dev` one).
    #[arg(long, env = "HOOPD_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Output format of listings.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with --config.
    Run,
    /// Run on embedded defaults: SQLite, self-signed TLS, built-in issuer with a dev user, and a
    /// `demo` PostgreSQL database where PostgreSQL is installed.
    Dev(DevArgs),
    /// Validate a configuration file without starting.
    Check,
    /// Local users of the built-in issuer.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Machine API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The audit signing key.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// The retention purge (`[retention]`).
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// Webhook deliveries (`[[webhooks]]`).
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Print the public key that verifies audit checkpoints and exports (`hoop audit verify
    /// --key`); creates the key if the data dir has none yet.
    Show {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Purge now what `[retention]` says is past its age (needs --config).
    Purge {
        /// Reckon ages from this RFC 3339 time instead of the clock (rehearsals and tests).
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// Deliveries per webhook, and the dead letters.
    Status {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
        /// Dead letters shown at most.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Listen address (overrides the config's `server.listen`).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Do not start the throwaway `demo` PostgreSQL database.
    #[arg(long)]
    pub no_demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Create a user (prompts for the password on a terminal).
    Add {
        /// Login name.
        name: String,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password (and groups, if given).
    Passwd {
        /// Login name.
        name: String,
        /// Replace the groups.
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a user and end their refresh tokens.
    Remove {
        /// Login name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCmd {
    /// Create a key; it is printed once and stored hashed.
    Create {
        /// Unique name (shows in audit records as `apikey:<name>`).
        #[arg(long)]
        name: String,
        /// Comma-separated groups the key acts with.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime, like `90d`; default: no expiry.
        #[arg(long)]
        expires: Option<humantime::Duration>,
    },
    /// List keys (never the secrets).
    List {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Revoke a key by name or id.
    Revoke {
        /// Name or id.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Re-hash the stored chain; names the first bad record.
    Verify,
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hoopd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hoopd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOPD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_writer());
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Logs go to a copy of stderr taken at start: libpg_query points fd 2 at a pipe for the few
/// microseconds of each parse (`policy/sql/pg.rs`), and a line logged by another thread then
/// would be lost.
fn log_writer() -> tracing_subscriber::fmt::writer::BoxMakeWriter {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    match rustix::io::dup(std::io::stderr()) {
        Ok(fd) => BoxMakeWriter::new(std::sync::Arc::new(std::fs::File::from(fd))),
        Err(_) => BoxMakeWriter::new(std::io::stderr),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None | Some(Command::Run) => {
            let Some(path) = cli.config else {
                bail!("give --config <file> (or run `hoopd dev` for the embedded defaults)");
            };
            let config = Config::load(&path)?;
            init_logging(config.server.log_format == "json");
            run(config, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Dev(args)) => {
            init_logging(false);
            crate::dev::run(cli.data_dir, args.listen, !args.no_demo).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Check) => check(cli.config.as_deref()),
        Some(Command::Users(c)) => {
            init_logging(false);
            let (store, audit) =
                admin_store(cli.config.as_deref(), cli.data_dir.as_deref()).await?;
            users(c, store.as_ref(), &audit).await
        }
        Some(Command::ApiKeys(c)) => {
            init_logging(false);
            let (store, audit) =
                admin_store(cli.config.as_deref(), cli.data_dir.as_deref()).await?;
            api_keys(c, store.as_ref(), &audit).await
        }
        Some(Command::Keys(KeysCmd::Show { output })) => {
            let dir = data_dir_for(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::server::ensure_data_dir(&dir)?;
            let p = crate::audit::keys::load_or_create(&dir)?.public();
            let mut out = std::io::stdout().lock();
            match output {
                Output::Json => writeln!(
                    out,
                    "{}",
                    json!({"algorithm": "ed25519", "public_key": p.to_text(), "key_id": p.key_id()})
                )?,
                Output::Table => writeln!(out, "{}", p.to_text())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Retention(RetentionCmd::Purge { now })) => {
            init_logging(false);
            let Some(path) = cli.config.as_deref() else {
                bail!("give --config <file>: the purge follows its [retention] section");
            };
            let config = Config::load(path)?;
            if config.retention.recordings.is_none() && config.retention.audit.is_none() {
                bail!(
                    "{} has no [retention] periods (`recordings`, `audit`): nothing to purge",
                    path.display()
                );
            }
            let now_ms = match now {
                Some(t) => {
                    let t = time::OffsetDateTime::parse(
                        &t,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .with_context(|| {
                        format!(
                            "--now must be an RFC 3339 time such as 2027-01-31T00:00:00Z, got {t:?}"
                        )
                    })?;
                    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                        .context("--now is out of range")?
                }
                None => i64::try_from(
                    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
                )
                .context("the clock is out of range")?,
            };
            let (store, audit) = admin_store(Some(path), None).await?;
            let r = crate::audit::retention::purge(
                store.as_ref(),
                &audit,
                &config.retention,
                now_ms,
                &local_actor(),
            )
            .await
            .map_err(anyhow::Error::msg)?;
            writeln!(
                std::io::stdout().lock(),
                "purged {} statement(s) and {} audit record(s){}",
                r.statements,
                r.tombstones,
                r.audit_through_seq
                    .map(|s| format!(" (through seq {s})"))
                    .unwrap_or_default()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Webhooks(WebhooksCmd::Status { output, limit })) => {
            init_logging(false);
            let dir = data_dir_for(cli.config.as_deref(), cli.data_dir.as_deref())?;
            let store = open_store(&dir).await?;
            let (mut stats, mut dead) = store.outbox_status(limit).await?;
            // Rows an older hoopd wrote may name a webhook by its URL or quote it in an error;
            // a chat webhook's URL is its credential.
            use crate::util::scrub_urls;
            for s in &mut stats {
                s.webhook = scrub_urls(&s.webhook);
            }
            for d in &mut dead {
                d.webhook = scrub_urls(&d.webhook);
                d.last_error = d.last_error.as_deref().map(scrub_urls);
            }
            let mut out = std::io::stdout().lock();
            match output {
                Output::Json => {
                    let v = json!({
                        "webhooks": stats.iter().map(|s| json!({"webhook": s.webhook, "pending": s.pending, "delivered": s.delivered, "dead": s.dead})).collect::<Vec<_>>(),
                        "dead_letters": dead.iter().map(|d| json!({"id": d.id, "webhook": d.webhook, "audit_seq": d.audit_seq, "attempts": d.attempts, "last_error": d.last_error})).collect::<Vec<_>>(),
                    });
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
                Output::Table => {
                    writeln!(
                        out,
                        "{:<32} {:>8} {:>10} {:>6}",
                        "WEBHOOK", "PENDING", "DELIVERED", "DEAD"
                    )?;
                    for s in &stats {
                        writeln!(
                            out,
                            "{:<32} {:>8} {:>10} {:>6}",
                            s.webhook, s.pending, s.delivered, s.dead
                        )?;
                    }
                    if !dead.is_empty() {
                        writeln!(
                            out,
                            "\nDEAD LETTERS\n{:<8} {:<32} {:>9} {:>8}  LAST ERROR",
                            "ID", "WEBHOOK", "AUDIT SEQ", "ATTEMPTS"
                        )?;
                        for d in &dead {
                            writeln!(
                                out,
                                "{:<8} {:<32} {:>9} {:>8}  {}",
                                d.id,
                                d.webhook,
                                d.audit_seq,
                                d.attempts,
                                d.last_error.as_deref().unwrap_or("-")
                            )?;
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Audit(AuditCmd::Verify)) => {
            init_logging(false);
            let dir = data_dir_for(cli.config.as_deref(), cli.data_dir.as_deref())?;
            let store = open_store(&dir).await?;
            let key = crate::audit::keys::load_or_create(&dir)?.public();
            match verify_store(store.as_ref(), Some(&key)).await {
                Ok(r) => {
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "audit chain OK: {} records, {} signed checkpoints, head {}",
                        r.records,
                        r.checkpoints,
                        r.head.as_deref().unwrap_or("-")
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "hoopd: audit chain BROKEN: {e}");
                    Ok(ExitCode::from(3))
                }
            }
        }
    }
}

/// Runs the gateway on `config` (listening where it says, or on `listen`).
pub async fn run(config: Config, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let addr = listen.unwrap_or(config.server.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let gw = Gateway::build(config, bound).await?;
    let fp = gw.fingerprint().to_string();
    tracing::info!(url = gw.public_url(), fingerprint = %fp, "starting");
    gw.serve(listener, shutdown_signal()).await
}

fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Some(path) = path else {
        bail!("give --config <file> to check")
    };
    let mut err = std::io::stderr().lock();
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "hoopd check: {e}")?;
            return Ok(ExitCode::from(2));
        }
    };
    let problems = config.validate();
    if problems.is_empty() {
        writeln!(
            std::io::stdout().lock(),
            "{}: OK ({} connection(s), issuer: {})",
            path.display(),
            config.connections.len(),
            config.auth.issuer.as_deref().unwrap_or("built-in")
        )?;
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            writeln!(err, "hoopd check: {}: {p}", path.display())?;
        }
        Ok(ExitCode::from(2))
    }
}

/// The dev data dir: `$XDG_DATA_HOME/hoopd/dev` or `~/.local/share/hoopd/dev`.
pub fn default_dev_dir() -> anyhow::Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|b| b.data_dir().join("hoopd").join("dev"))
        .context("cannot find a home directory; give --data-dir")
}

fn data_dir_for(config: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(c) = config {
        return Ok(Config::load(c)?.server.data_dir);
    }
    if let Some(d) = data_dir {
        return Ok(d.to_path_buf());
    }
    let d = default_dev_dir()?;
    let _ = writeln!(
        std::io::stderr(),
        "hoopd: using the dev data dir {} (give --config or --data-dir for another)",
        d.display()
    );
    Ok(d)
}

async fn admin_store(
    config: Option<&Path>,
    data_dir: Option<&Path>,
) -> anyhow::Result<(std::sync::Arc<dyn Store>, AuditLog)> {
    let dir = data_dir_for(config, data_dir)?;
    let store = open_store(&dir).await?;
    // Admin commands sign checkpoints with the gateway's key too, so their records are covered
    // even when the gateway is not running.
    let key = std::sync::Arc::new(crate::audit::keys::load_or_create(&dir)?);
    let audit = AuditLog::start_with(
        store.clone(),
        crate::audit::WriterOptions {
            key: Some(key),
            ..Default::default()
        },
    );
    Ok((store, audit))
}

/// Who runs an admin command, for the audit record.
fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("local:{user}")
}

fn read_password(from_stdin: bool, what: &str) -> anyhow::Result<String> {
    let pw = if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut s)
            .context("cannot read the password from stdin")?;
        s.lines().next().unwrap_or_default().to_string()
    } else if std::io::stdin().is_terminal() {
        dialoguer::Password::new()
            .with_prompt(format!("Password for {what}"))
            .with_confirmation("Repeat it", "the passwords do not match")
            .interact()
            .context("cannot read the password")?
    } else {
        bail!("standard input is not a terminal: pass --password-stdin and pipe the password in");
    };
    if pw.chars().count() < 8 {
        bail!("the password is too short: use at least 8 characters");
    }
    Ok(pw)
}

fn validate_name(name: &str, what: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        bail!("{what} {name:?}: use 1-64 letters, digits, `-`, `_`, `.` or `@`");
    }
    Ok(())
}

async fn users(cmd: UsersCmd, store: &dyn Store, audit: &AuditLog) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        UsersCmd::Add {
            name,
            groups,
            password_stdin,
        } => {
            validate_name(&name, "user name")?;
            let pw = read_password(password_stdin, &name)?;
            let rec = UserRecord {
                name: name.clone(),
                password_hash: password::hash(&pw).map_err(anyhow::Error::msg)?,
                groups: groups.clone(),
                created_at: now_unix(),
            };
            match store.user_create(&rec).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    bail!("user {name:?} already exists (use `hoopd users passwd`)")
                }
                Err(e) => return Err(e.into()),
            }
            audit
                .record(event(
                    "user.created",
                    Some(&local_actor()),
                    None,
                    "success",
                    json!({"user": name, "groups": groups}),
                ))
                .await?;
            writeln!(out, "created user {name} (groups: {})", groups.join(","))?;
        }
        UsersCmd::Passwd {
            name,
            groups,
            password_stdin,
        } => {
            let Some(mut rec) = store.user_get(&name).await? else {
                bail!("no user {name:?}")
            };
            rec.password_hash = password::hash(&read_password(password_stdin, &name)?)
                .map_err(anyhow::Error::msg)?;
            if let Some(g) = groups {
                rec.groups = g;
            }
            store.user_update(&rec).await?;
            // A new password ends existing sessions' ability to refresh.
            store.refresh_revoke_subject(&name).await?;
            audit
                .record(event(
                    "user.updated",
                    Some(&local_actor()),
                    None,
                    "success",
                    json!({"user": name, "groups": rec.groups}),
                ))
                .await?;
            writeln!(out, "updated user {name}")?;
        }
        UsersCmd::List { output } => {
            let users = store.user_list().await?;
            match output {
                Output::Json => {
                    let v: Vec<_> = users
                        .iter()
                        .map(|u| json!({"name": u.name, "groups": u.groups, "created_at": unix_to_rfc3339(u.created_at)}))
                        .collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
                Output::Table => {
                    writeln!(out, "{:<24} {:<30} CREATED", "NAME", "GROUPS")?;
                    for u in users {
                        writeln!(
                            out,
                            "{:<24} {:<30} {}",
                            u.name,
                            u.groups.join(","),
                            unix_to_rfc3339(u.created_at)
                        )?;
                    }
                }
            }
        }
        UsersCmd::Remove { name } => {
            if !store.user_delete(&name).await? {
                bail!("no user {name:?}");
            }
            audit
                .record(event(
                    "user.deleted",
                    Some(&local_actor()),
                    None,
                    "success",
                    json!({"user": name}),
                ))
                .await?;
            writeln!(out, "deleted user {name}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn api_keys(
    cmd: ApiKeysCmd,
    store: &dyn Store,
    audit: &AuditLog,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ApiKeysCmd::Create {
            name,
            groups,
            expires,
        } => {
            validate_name(&name, "key name")?;
            let key = apikey::generate();
            let now = now_unix();
            let rec = ApiKeyRecord {
                id: key.id.clone(),
                name: name.clone(),
                key_hash: key.hash,
                groups: groups.clone(),
                created_at: now,
                created_by: local_actor(),
                expires_at: expires.map(|d| now + d.as_secs() as i64),
                revoked_at: None,
            };
            match store.api_key_create(&rec).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => bail!("an API key named {name:?} already exists"),
                Err(e) => return Err(e.into()),
            }
            audit
                .record(event(
                    "api_key.created",
                    Some(&local_actor()),
                    None,
                    "success",
                    json!({"name": name, "id": key.id, "groups": groups, "expires_at": rec.expires_at}),
                ))
                .await?;
            let _ = writeln!(
                std::io::stderr(),
                "created API key {name} (id {}); it is shown once, store it now:",
                key.id
            );
            writeln!(out, "{}", key.secret)?;
        }
        ApiKeysCmd::List { output } => {
            let keys = store.api_key_list().await?;
            let state = |k: &ApiKeyRecord| {
                if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= now_unix()) {
                    "expired"
                } else {
                    "active"
                }
            };
            match output {
                Output::Json => {
                    let v: Vec<_> = keys
                        .iter()
                        .map(|k| {
                            json!({"id": k.id, "name": k.name, "groups": k.groups, "state": state(k),
                                   "created_at": unix_to_rfc3339(k.created_at), "created_by": k.created_by,
                                   "expires_at": k.expires_at.map(unix_to_rfc3339),
                                   "revoked_at": k.revoked_at.map(unix_to_rfc3339)})
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
                Output::Table => {
                    writeln!(
                        out,
                        "{:<12} {:<20} {:<24} {:<8} CREATED",
                        "ID", "NAME", "GROUPS", "STATE"
                    )?;
                    for k in &keys {
                        writeln!(
                            out,
                            "{:<12} {:<20} {:<24} {:<8} {}",
                            k.id,
                            k.name,
                            k.groups.join(","),
                            state(k),
                            unix_to_rfc3339(k.created_at)
                        )?;
                    }
                }
            }
        }
        ApiKeysCmd::Revoke { key } => {
            if !store.api_key_revoke(&key, now_unix()).await? {
                bail!("no active API key named or with id {key:?}");
            }
            audit
                .record(event(
                    "api_key.revoked",
                    Some(&local_actor()),
                    None,
                    "success",
                    json!({"key": key}),
                ))
                .await?;
            writeln!(out, "revoked API key {key}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
