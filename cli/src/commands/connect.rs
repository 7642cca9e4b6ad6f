//! `hoop connect <name>`: a local listener on 127.0.0.1 whose every accepted socket becomes one
//! tunnel stream through the gateway. Local clients must present a one-time secret (for
//! PostgreSQL, the password in the printed URL), so another local user cannot ride this
//! identity.

use std::sync::Arc;

use hoop_shared::api::ConnectionInfo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::Ctx;
use crate::auth::token_store::TokenStore;
use crate::auth::{Credential, authed_get, credential, now_unix, open_store};
use crate::exit::{CliError, CliResult, Exit};
use crate::gateway::Gateway;
use crate::tunnel::TunnelClient;
use crate::ui::{OutputFormat, note, out};

/// `hoop connect` flags.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The connection (see `hoop connections`).
    pub name: String,
    /// Local port; default 5433 for PostgreSQL, 2222 for SSH (the next free one if taken).
    #[arg(long)]
    pub port: Option<u16>,
    /// `json`: print one `ready` event with host, port, user, password and url.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Why you need access (when the connection needs an approved review).
    #[arg(long)]
    pub reason: Option<String>,
    /// How long the access window should last, like `30m` (reviewed connections).
    #[arg(long, default_value = "1h")]
    pub duration: humantime::Duration,
    /// Wait at most this long for the approval (default: until it is decided).
    #[arg(long, conflicts_with = "no_wait")]
    pub wait: Option<humantime::Duration>,
    /// File the request, print its id and exit with the "pending" code.
    #[arg(long)]
    pub no_wait: bool,
}

/// Hands out bearer tokens, refreshing one at a time (providers that rotate refresh tokens
/// revoke the whole grant when two refreshes race).
struct Tokens {
    gw: Gateway,
    store: TokenStore,
    env: Option<String>,
    current: tokio::sync::Mutex<Option<Credential>>,
}

impl Tokens {
    async fn bearer(&self) -> CliResult<String> {
        let mut cur = self.current.lock().await;
        let fresh = match cur.as_ref() {
            Some(Credential::Env(_)) => true,
            Some(Credential::Cached(t)) => t.expires_at.is_none_or(|e| e - 60 > now_unix()),
            None => false,
        };
        if !fresh {
            *cur = Some(credential(&self.gw, &self.store, self.env.as_deref()).await?);
        }
        Ok(cur
            .as_ref()
            .map(|c| c.bearer().to_string())
            .unwrap_or_default())
    }
}

fn default_port(kind: &str) -> u16 {
    match kind {
        "postgres" => 5433,
        "ssh" => 2222,
        _ => 0,
    }
}

async fn bind(port: Option<u16>, kind: &str) -> CliResult<TcpListener> {
    if let Some(p) = port {
        return TcpListener::bind(("127.0.0.1", p)).await.map_err(|e| {
            CliError::new(
                Exit::Usage,
                format!("cannot listen on 127.0.0.1:{p}: {e}; pick another --port"),
            )
        });
    }
    let first = default_port(kind);
    if first == 0 {
        return TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| crate::exit::internal(format!("cannot listen on 127.0.0.1: {e}")));
    }
    for p in first..first.saturating_add(50) {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", p)).await {
            if p != first {
                note(format!(
                    "hoop: port {first} is in use; listening on {p} instead"
                ));
            }
            return Ok(l);
        }
    }
    TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| crate::exit::internal(format!("cannot listen on 127.0.0.1: {e}")))
}

fn secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .filter_map(|_| {
            ALPHABET
                .get(rng.random_range(0..ALPHABET.len()))
                .map(|b| *b as char)
        })
        .collect()
}

/// What a local PostgreSQL client sees when the gateway refuses the stream: a FATAL error in
/// its own protocol, so psql prints the reason instead of "server closed the connection".
fn pg_fatal(message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (b'M', message),
    ] {
        body.push(k);
        body.extend(v.bytes().filter(|b| *b != 0));
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// The alias the gateway's SSH host key is pinned under in known_hosts.
const HOST_KEY_ALIAS: &str = "hoop-gateway";

/// What `hoop connect` prints for an ssh connection: the command, the one-time password, and an
/// ssh_config block (so scp, sftp and rsync work by host name). `HostKeyAlias` keeps one
/// known_hosts entry for the gateway whatever local port the tunnel gets; the gateway's key
/// (from the connection listing, which came over the pinned TLS connection) is printed as that
/// known_hosts line, so the first `ssh` need not trust on first use.
fn ssh_instructions(name: &str, port: u16, secret: &str, host_key: Option<&str>) -> String {
    let pin = match host_key {
        Some(k) => format!(
            "# the gateway's SSH host key; pin it once, then ssh never asks:\n\
             #   echo '{HOST_KEY_ALIAS} {k}' >> ~/.ssh/known_hosts\n"
        ),
        None => String::new(),
    };
    format!(
        "ssh -p {port} -o HostKeyAlias={HOST_KEY_ALIAS} hoop@127.0.0.1\n\
         # password (one-time, for this tunnel): {secret}\n\
         {pin}\
         # scp -P {port} FILE hoop@127.0.0.1:/tmp/   ·   sftp -P {port} hoop@127.0.0.1\n\
         # or add to ~/.ssh/config and use `ssh {name}.hoop`:\n\
         Host {name}.hoop\n  \
         HostName 127.0.0.1\n  \
         Port {port}\n  \
         User hoop\n  \
         HostKeyAlias {HOST_KEY_ALIAS}\n  \
         PreferredAuthentications password\n"
    )
}

/// The connection called `name` among those the caller may use (exit 85 when there is none).
pub(crate) async fn find_connection(
    ctx: &Ctx,
    gw: &Gateway,
    store: &TokenStore,
    name: &str,
) -> CliResult<ConnectionInfo> {
    let list: Vec<ConnectionInfo> =
        authed_get(gw, store, ctx.token.as_deref(), "/api/v1/connections").await?;
    list.into_iter().find(|c| c.name == name).ok_or_else(|| {
        CliError::new(
            Exit::NotFound,
            format!("no connection named {name:?} that you may use; `hoop connections` lists them"),
        )
    })
}

/// Runs `hoop connect`.
pub async fn run(ctx: &Ctx, args: ConnectArgs) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let conn = find_connection(ctx, &gw, &store, &args.name).await?;
    let tokens = Arc::new(Tokens {
        gw: gw.clone(),
        store,
        env: ctx.token.clone(),
        current: tokio::sync::Mutex::new(None),
    });
    if conn.access_review {
        let reason = match &args.reason {
            Some(r) if !r.trim().is_empty() => r.clone(),
            _ if crate::ui::stdin_is_tty() && crate::ui::stderr_is_tty() => {
                dialoguer::Input::<String>::new()
                    .with_prompt(format!("{} needs an approved review; reason", conn.name))
                    .interact_text()
                    .map_err(|e| CliError::new(Exit::Usage, format!("no reason given ({e})")))?
            }
            _ => {
                return Err(CliError::new(
                    Exit::Usage,
                    format!(
                        "{} needs an approved access review: give --reason \"...\" (and --duration)",
                        conn.name
                    ),
                ));
            }
        };
        let bearer = || tokens.bearer();
        crate::commands::reviews::request_and_wait_access_with(
            &gw,
            &bearer,
            &conn.name,
            &reason,
            args.duration.into(),
            args.wait.map(Into::into),
            args.no_wait,
        )
        .await?;
    }
    let tunnel = Arc::new(TunnelClient::new(gw.clone())?);
    tunnel.warm_up().await?;
    let listener = bind(args.port, &conn.kind).await?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let secret = secret();
    let database = conn.database.clone().unwrap_or_else(|| "postgres".into());
    let url = match conn.kind.as_str() {
        "postgres" => {
            format!("postgres://hoop:{secret}@127.0.0.1:{port}/{database}?sslmode=disable")
        }
        "ssh" => format!("ssh://hoop@127.0.0.1:{port}"),
        _ => format!("tcp://127.0.0.1:{port}"),
    };
    match args.output {
        OutputFormat::Json => out(&format!(
            "{}\n",
            json!({"event": "ready", "connection": conn.name, "type": conn.kind, "host": "127.0.0.1",
                   "port": port, "user": "hoop", "password": secret, "database": database, "url": url,
                   "ssh_host_key": conn.ssh_host_key, "host_key_alias": (conn.kind == "ssh").then_some(HOST_KEY_ALIAS)})
        ))?,
        OutputFormat::Table => {
            note(format!(
                "hoop: {} ({}) through {} is ready on 127.0.0.1:{port}; Ctrl-C to stop.",
                conn.name, conn.kind, gw.url
            ));
            note("Connect with:");
            if conn.kind == "ssh" {
                out(&ssh_instructions(
                    &conn.name,
                    port,
                    &secret,
                    conn.ssh_host_key.as_deref(),
                ))?;
            } else {
                out(&format!("psql \"{url}\"\n"))?;
            }
        }
    }

    let name = Arc::new(conn.name.clone());
    let kind = Arc::new(conn.kind.clone());
    let secret = Arc::new(secret);
    let shutdown = async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::pin!(shutdown);
    loop {
        let (mut socket, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = socket.set_nodelay(true);
        let (tunnel, tokens, name, kind, secret) = (
            tunnel.clone(),
            tokens.clone(),
            name.clone(),
            kind.clone(),
            secret.clone(),
        );
        tokio::spawn(async move {
            let stream = match tokens.bearer().await {
                Ok(bearer) => tunnel.open(&name, &bearer, &secret).await,
                Err(e) => Err(e),
            };
            match stream {
                Ok(mut stream) => {
                    if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
                        &mut socket,
                        &mut stream,
                        64 * 1024,
                        64 * 1024,
                    )
                    .await
                    {
                        tracing::debug!(error = %e, "tunnel closed");
                    }
                }
                Err(e) => {
                    note(format!("hoop: {}", e.message));
                    if kind.as_str() == "postgres" {
                        use tokio::io::AsyncWriteExt;
                        let _ = socket
                            .write_all(&pg_fatal(&format!("hoop: {}", e.message)))
                            .await;
                    }
                }
            }
        });
    }
    note("hoop: tunnel closed.");
    Ok(())
}
