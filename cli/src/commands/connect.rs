//! `hoop connect <name>`: a local listener on 127.0.0.1 whose every accepted socket becomes one
//! tunnel stream through the gateway. A local client must prove it knows the tunnel's secret
//! before it gets a stream (see `tunnel::local`), so another local user cannot ride this
//! identity; the secret is kept in files only this user can read (`tunnel::files`), and the
//! printed lines name those files instead of containing it.

use std::sync::Arc;

use hoop_shared::api::ConnectionInfo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::Ctx;
use crate::auth::token_store::TokenStore;
use crate::auth::{authed_get, open_store};
use crate::exit::{CliError, CliResult, Exit};
use crate::gateway::Gateway;
use crate::tunnel::TunnelClient;
use crate::tunnel::files::{self, PgFiles, SshFiles, TunnelDir};
use crate::tunnel::local::{Hop, Protocol, Refusals, Tokens};
use crate::ui::{OutputFormat, note, out};

/// `hoop connect` flags.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The connection (see `hoop connections`).
    pub name: String,
    /// Local port; default 5433 for PostgreSQL, 2222 for SSH (the next free one if taken).
    #[arg(long)]
    pub port: Option<u16>,
    /// `json`: print one `ready` event with host, port, user, the tunnel password, a URL
    /// without it, and the paths of the files that hold it.
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

/// The tunnel password: 24 characters from 57 (about 140 bits), valid for every local
/// connection through this tunnel until it ends.
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

/// The alias the gateway's SSH host key is pinned under in known_hosts.
const HOST_KEY_ALIAS: &str = "hoop-gateway";

/// What `hoop connect` prints for a PostgreSQL connection: a psql line whose URL names the
/// passfile (no password in it), and the service-file form for other libpq programs.
fn pg_instructions(f: &PgFiles) -> String {
    format!(
        "psql \"{url}\"\n\
         # or, for any libpq program: PGSERVICEFILE={service_file} psql service={service}\n\
         # the tunnel password (for every connection through this tunnel, until it ends) is in\n\
         # {passfile}, readable only by you; `hoop connect -o json` prints it\n",
        url = f.url,
        service_file = shell(&f.service_file),
        service = f.service,
        passfile = f.passfile.display(),
    )
}

/// A path as one shell word (quoted only when it has to be).
fn shell(p: &std::path::Path) -> String {
    shell_words::quote(&p.display().to_string()).into_owned()
}

/// What `hoop connect` prints for an ssh connection: `ssh -F` with the tunnel's own ssh_config
/// (its key, the gateway's pinned host key), the same for scp and sftp, and a block for
/// ~/.ssh/config. `HostKeyAlias` keeps one known_hosts entry for the gateway whatever local
/// port the tunnel gets. Nothing printed is a secret: the key is a 0600 file.
fn ssh_instructions(port: u16, f: &SshFiles, host_key: Option<&str>) -> String {
    let config = shell(&f.config);
    let identity = shell(&f.identity);
    let host = &f.host;
    let pin = match host_key {
        Some(k) => format!(
            "# the gateway's SSH host key, for ~/.ssh/known_hosts (the -F config pins it already):\n\
             #   echo '{HOST_KEY_ALIAS} {k}' >> ~/.ssh/known_hosts\n"
        ),
        None => String::new(),
    };
    format!(
        "ssh -F {config} {host}\n\
         # scp -F {config} FILE {host}:/tmp/   ·   sftp -F {config} {host}\n\
         # without -F: ssh -p {port} -i {identity} -o IdentitiesOnly=yes -o HostKeyAlias={HOST_KEY_ALIAS} hoop@127.0.0.1\n\
         # the tunnel's login key is {identity}, readable only by you; it ends with the tunnel\n\
         {pin}\
         # or add to ~/.ssh/config and use `ssh {host}`:\n\
         Host {host}\n  \
         HostName 127.0.0.1\n  \
         Port {port}\n  \
         User hoop\n  \
         HostKeyAlias {HOST_KEY_ALIAS}\n  \
         IdentityFile \"{}\"\n  \
         IdentitiesOnly yes\n  \
         PreferredAuthentications publickey\n",
        f.identity.display()
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

/// What the local client logs in with, and the files that hold it.
enum LocalLogin {
    /// libpq's pgpass and service files.
    Postgres(PgFiles),
    /// OpenSSH's files, and the tunnel's public key for the gateway.
    Ssh { files: SshFiles, public_key: String },
    /// A protocol hoop does not log in for.
    Other,
}

/// Writes the files a local client of this kind logs in with.
fn write_login_files(
    dir: &TunnelDir,
    conn: &ConnectionInfo,
    port: u16,
    secret: &str,
) -> CliResult<LocalLogin> {
    Ok(match conn.kind.as_str() {
        "postgres" => {
            let database = conn.database.as_deref().unwrap_or("postgres");
            LocalLogin::Postgres(files::write_pg_files(
                dir, &conn.name, port, database, secret,
            )?)
        }
        "ssh" => {
            let (private_key, public_key) = crate::commands::ssh::tunnel_key_pair()?;
            let files = files::write_ssh_files(
                dir,
                &conn.name,
                port,
                &private_key,
                conn.ssh_host_key.as_deref(),
                HOST_KEY_ALIAS,
            )?;
            LocalLogin::Ssh { files, public_key }
        }
        _ => LocalLogin::Other,
    })
}

/// Prints the ready line(s): for people, commands that name the private files; for programs
/// (`-o json`, on the user's own stdout), the password as well.
fn print_ready(
    output: OutputFormat,
    gw: &Gateway,
    conn: &ConnectionInfo,
    port: u16,
    secret: &str,
    login: &LocalLogin,
) -> CliResult<()> {
    let database = conn.database.clone().unwrap_or_else(|| "postgres".into());
    if output == OutputFormat::Json {
        let mut ready = json!({"event": "ready", "connection": conn.name, "type": conn.kind,
            "host": "127.0.0.1", "port": port, "user": "hoop", "password": secret,
            "password_scope": "tunnel", "database": database,
            "ssh_host_key": conn.ssh_host_key,
            "host_key_alias": (conn.kind == "ssh").then_some(HOST_KEY_ALIAS)});
        let extra = match login {
            LocalLogin::Postgres(f) => json!({"url": f.url, "passfile": f.passfile,
                "service_file": f.service_file, "service": f.service}),
            LocalLogin::Ssh {
                files: f,
                public_key,
            } => json!({
                "url": format!("ssh://hoop@127.0.0.1:{port}"), "identity_file": f.identity,
                "ssh_config": f.config, "ssh_host": f.host, "known_hosts": f.known_hosts,
                "ssh_public_key": public_key}),
            LocalLogin::Other => json!({"url": format!("tcp://127.0.0.1:{port}")}),
        };
        if let (Some(r), Some(e)) = (ready.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        return out(&format!("{ready}\n"));
    }
    note(format!(
        "hoop: {} ({}) through {} is ready on 127.0.0.1:{port}; Ctrl-C to stop.",
        conn.name, conn.kind, gw.url
    ));
    note("Connect with:");
    match login {
        LocalLogin::Postgres(f) => out(&pg_instructions(f)),
        LocalLogin::Ssh { files: f, .. } => {
            out(&ssh_instructions(port, f, conn.ssh_host_key.as_deref()))
        }
        LocalLogin::Other => out(&format!("127.0.0.1:{port}\n")),
    }
}

/// Files an access request and waits for its approval (connections under `review.access`).
async fn request_access(
    gw: &Gateway,
    tokens: &Tokens,
    conn: &ConnectionInfo,
    args: &ConnectArgs,
) -> CliResult<()> {
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
        gw,
        &bearer,
        &conn.name,
        &reason,
        args.duration.into(),
        args.wait.map(Into::into),
        args.no_wait,
    )
    .await
    .map(|_| ())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            () = term => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs `hoop connect`.
pub async fn run(ctx: &Ctx, args: ConnectArgs) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let conn = find_connection(ctx, &gw, &store, &args.name).await?;
    let tokens = Arc::new(Tokens::new(gw.clone(), store, ctx.token.clone()));
    if conn.access_review {
        request_access(&gw, &tokens, &conn, &args).await?;
    }
    let tunnel = Arc::new(TunnelClient::new(gw.clone())?);
    tunnel.warm_up().await?;
    let listener = bind(args.port, &conn.kind).await?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let secret = secret();
    // Removed (with the password or key in it) when this function returns.
    let dir = TunnelDir::create(&conn.name)?;
    let login = write_login_files(&dir, &conn, port, &secret)?;
    print_ready(args.output, &gw, &conn, port, &secret, &login)?;
    let (protocol, ssh_key) = match login {
        LocalLogin::Postgres(_) => (Protocol::Postgres, None),
        LocalLogin::Ssh { public_key, .. } => (Protocol::Raw, Some(public_key)),
        LocalLogin::Other => (Protocol::Raw, None),
    };
    let hop = Arc::new(Hop {
        tunnel,
        tokens,
        connection: conn.name.clone(),
        protocol,
        secret,
        ssh_key,
        cancel_keys: Default::default(),
        refusals: Refusals::new(port),
    });
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let hop = hop.clone();
        tokio::spawn(async move { hop.serve(socket).await });
    }
    drop(dir);
    note("hoop: tunnel closed.");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn printed_lines_name_the_files_not_the_secrets() {
        let secret = "Zq8TunnelPasswordXy7Wk3";
        let dir = TunnelDir::create("shop").unwrap();
        let pg = files::write_pg_files(&dir, "shop", 5433, "shop", secret).unwrap();
        let text = pg_instructions(&pg);
        assert!(!text.contains(secret), "{text}");
        assert!(
            text.starts_with(
                "psql \"postgres://hoop@127.0.0.1:5433/shop?sslmode=disable&passfile="
            )
        );
        assert!(text.contains(&format!("PGSERVICEFILE={}", pg.service_file.display())));

        let (private, public) = crate::commands::ssh::tunnel_key_pair().unwrap();
        assert!(public.starts_with("ssh-ed25519 "));
        let web = TunnelDir::create("web").unwrap();
        let f = files::write_ssh_files(
            &web,
            "web",
            2222,
            &private,
            Some("ssh-ed25519 AAAA"),
            HOST_KEY_ALIAS,
        )
        .unwrap();
        let text = ssh_instructions(2222, &f, Some("ssh-ed25519 AAAA"));
        assert!(
            text.starts_with(&format!("ssh -F {} web.hoop\n", f.config.display())),
            "{text}"
        );
        for line in private.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "{text}");
        }
        assert!(!text.contains("password"), "{text}");
    }
}
