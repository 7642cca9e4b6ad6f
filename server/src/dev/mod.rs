//! `hoopd dev`: the gateway on embedded defaults, for a first try and for small teams.
//! SQLite and keys in the data dir, a self-signed certificate, the built-in issuer with one
//! dev user whose password is printed once, and, where PostgreSQL is installed, a `demo`
//! connection to a throwaway database with masking and guardrails on (see [`demo`]).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use crate::audit::event;
use crate::cmd::default_dev_dir;
use crate::config::{Config, STARTER};
use crate::server::{Gateway, ensure_data_dir, shutdown_signal};
use crate::store::UserRecord;
use crate::util::{now_unix, random_token};

pub mod demo;

/// The user `hoopd dev` creates.
pub const DEV_USER: &str = "dev";
/// The dev user's groups: administrator, and the group the starter connections allow.
pub const DEV_GROUPS: [&str; 2] = ["admin", "engineering"];

/// What became of the `demo` connection.
enum DemoState {
    /// `--no-demo`.
    Off,
    /// hoopd.toml declares its own `demo`.
    Declared,
    /// No PostgreSQL server binaries.
    NoPostgres,
    /// Starting it failed; the gateway runs without it.
    Failed(String),
    /// Running, and in the config.
    Running(Box<demo::Demo>),
}

/// Runs the dev gateway until SIGINT/SIGTERM/SIGHUP. With `with_demo`, starts the demo
/// database first (see [`demo`]) and stops it after the gateway.
pub async fn run(
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    with_demo: bool,
) -> anyhow::Result<()> {
    // Everything `hoopd dev` creates is private to its user (files 0600, directories 0700),
    // whatever the login's umask: the data dir may be opened to 0711 for the demo database.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let default_dir = data_dir.is_none();
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
    let mut config = Config::load(&config_path)?;
    let addr = listen.unwrap_or(config.server.listen);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another hoopd running? use --listen)")
    })?;
    let bound = listener.local_addr()?;
    let builtin = config.auth.issuer.is_none();
    let demo_state = if !with_demo {
        DemoState::Off
    } else if config.connections.iter().any(|c| c.name == demo::NAME) {
        DemoState::Declared
    } else {
        start_demo(&dir, default_dir, &mut config).await
    };
    // On an error from here on, dropping `demo_state` stops the demo database.
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
    match &demo_state {
        DemoState::Off => {}
        DemoState::Declared => writeln!(
            err,
            "  demo         the `demo` connection of hoopd.toml (the built-in demo database is not started)"
        )?,
        DemoState::NoPostgres => writeln!(
            err,
            "  demo connection: install PostgreSQL (e.g. `apt-get install postgresql`) and restart to get one"
        )?,
        DemoState::Failed(e) => writeln!(
            err,
            "  demo connection: not started: {e} (--no-demo turns it off)"
        )?,
        DemoState::Running(d) => writeln!(
            err,
            "  demo         PostgreSQL {} on 127.0.0.1:{}, cluster {} ({} in {:.1} s)",
            d.version(),
            d.port(),
            d.cluster().display(),
            if d.created() { "created" } else { "started" },
            d.took().as_secs_f64()
        )?,
    }
    let pin = if gw.self_signed() {
        format!(" --fingerprint {}", gw.fingerprint())
    } else {
        String::new()
    };
    writeln!(
        err,
        "\nNext, in another terminal:\n  hoop login --gateway {url}{pin}"
    )?;
    if matches!(demo_state, DemoState::Running(_)) {
        writeln!(
            err,
            "  hoop connect demo      (keeps running; it prints a psql line)\n\
             \nThen in a third terminal, run the psql line it printed:\n  \
             psql \"postgres://hoop@127.0.0.1:<port>/shop?sslmode=disable&passfile=<its private passfile>\"\n\
             and try:\n  \
             select * from customers;   -- card numbers, e-mails, phone numbers come back masked\n  \
             delete from customers;     -- refused: blocked by guardrail no-unbounded-writes\n  \
             select status, count(*), sum(amount) from orders group by status;"
        )?;
    }
    writeln!(err)?;
    drop(err);
    let shutdown = async {
        dev_shutdown().await;
        // The demo database goes down while the gateway drains: its sessions end at once
        // instead of holding the drain to its time limit.
        if let DemoState::Running(d) = &demo_state {
            d.begin_stop();
        }
    };
    let result = gw.serve(listener, shutdown).await;
    if let DemoState::Running(d) = demo_state {
        tracing::info!("stopping the demo database");
        d.stop().await;
    }
    result
}

/// Starts the demo database and adds its connection to `config`. Never fails: a problem is
/// logged and shown in the banner, and the gateway runs without the demo.
async fn start_demo(dir: &Path, default_dir: bool, config: &mut Config) -> DemoState {
    let demo = match demo::start(dir, default_dir).await {
        Ok(Some(d)) => d,
        Ok(None) => return DemoState::NoPostgres,
        Err(e) => {
            let e = format!("{e:#}").replace('\n', " ");
            tracing::warn!(error = %e, "the demo database did not start; running without it");
            return DemoState::Failed(e);
        }
    };
    let connection = match demo.connection() {
        Ok(c) => c,
        Err(e) => return DemoState::Failed(format!("{e:#}")),
    };
    config.connections.push(connection);
    let problems = config.validate();
    if !problems.is_empty() {
        // Without the demo: if the config itself is invalid, `Gateway::build` says so and stops.
        config.connections.pop();
        let e = problems.join("; ");
        tracing::warn!(error = %e, "the demo connection is invalid; running without it");
        return DemoState::Failed(e);
    }
    DemoState::Running(Box::new(demo))
}

/// SIGINT, SIGTERM, or SIGHUP (the terminal running `hoopd dev` was closed).
async fn dev_shutdown() {
    let hangup = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = shutdown_signal() => {},
        () = hangup => {},
    }
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
