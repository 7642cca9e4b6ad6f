//! `hoopd dev`: the gateway on embedded defaults, for a first try and for small teams.
//! SQLite and keys in the data dir, a self-signed certificate, the built-in issuer with one
//! dev user whose password is printed once.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::audit::event;
use crate::cmd::default_dev_dir;
use crate::config::{Config, STARTER};
use crate::server::{Gateway, ensure_data_dir, shutdown_signal};
use crate::store::UserRecord;
use crate::util::{now_unix, random_token};

/// The user `hoopd dev` creates.
pub const DEV_USER: &str = "dev";
/// The dev user's groups: administrator, and the group the starter connections allow.
pub const DEV_GROUPS: [&str; 2] = ["admin", "engineering"];

/// Runs the dev gateway until SIGINT/SIGTERM.
pub async fn run(data_dir: Option<PathBuf>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let dir = match data_dir {
        Some(d) => d,
        None => default_dev_dir()?,
    };
    ensure_data_dir(&dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let config_path = dir.join("hoopd.toml");
    if !config_path.exists() {
        std::fs::write(&config_path, STARTER)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    let config = Config::load(&config_path)?;
    let addr = listen.unwrap_or(config.server.listen);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another hoopd running? use --listen)")
    })?;
    let bound = listener.local_addr()?;
    let builtin = config.auth.issuer.is_none();
    let gw = Gateway::build(config, bound).await?;
    let password = if builtin {
        ensure_dev_user(&gw).await?
    } else {
        None
    };

    let mut err = std::io::stderr().lock();
    let url = gw.public_url().to_string();
    writeln!(err, "\nhoopd dev: gateway running at {url}")?;
    writeln!(err, "  data dir     {}", dir.display())?;
    writeln!(
        err,
        "  config       {} (edit, then restart)",
        config_path.display()
    )?;
    writeln!(
        err,
        "  certificate  {}{}",
        gw.fingerprint(),
        if gw.self_signed() {
            " (self-signed)"
        } else {
            ""
        }
    )?;
    if builtin {
        match &password {
            Some(pw) => writeln!(
                err,
                "  dev user     {DEV_USER} / {pw}   (shown once; groups: {})",
                DEV_GROUPS.join(",")
            )?,
            None => writeln!(
                err,
                "  dev user     {DEV_USER} (password shown when it was created; reset: hoopd users passwd {DEV_USER} --data-dir {})",
                dir.display()
            )?,
        }
    }
    let pin = if gw.self_signed() {
        format!(" --fingerprint {}", gw.fingerprint())
    } else {
        String::new()
    };
    writeln!(
        err,
        "\nNext, in another terminal:\n  hoop login --gateway {url}{pin}\n"
    )?;
    drop(err);
    gw.serve(listener, shutdown_signal()).await
}

async fn ensure_dev_user(gw: &Gateway) -> anyhow::Result<Option<String>> {
    let state = gw.state();
    if state.store.user_get(DEV_USER).await?.is_some() {
        return Ok(None);
    }
    let pw = random_token(12);
    let groups: Vec<String> = DEV_GROUPS.iter().map(|g| g.to_string()).collect();
    state
        .store
        .user_create(&UserRecord {
            name: DEV_USER.into(),
            password_hash: crate::auth::password::hash(&pw).map_err(anyhow::Error::msg)?,
            groups: groups.clone(),
            created_at: now_unix(),
        })
        .await?;
    state
        .audit
        .record(event(
            "user.created",
            Some("hoopd-dev"),
            None,
            "success",
            json!({"user": DEV_USER, "groups": groups}),
        ))
        .await?;
    Ok(Some(pw))
}
