//! `hoop login`: trust the gateway, run the device flow against the issuer it names, cache the
//! tokens, and confirm who we are.

use std::path::PathBuf;

use hoop_shared::api::{AuthConfig, Me};

use crate::Ctx;
use crate::auth::device::{self, DeviceLogin, Prompt};
use crate::auth::token_store::CachedTokens;
use crate::auth::{bearer_of, idp_client, now_unix, open_store};
use crate::exit::{CliError, CliResult, Exit};
use crate::gateway::{Gateway, gateway_url, trust_for};
use crate::settings::GatewaySettings;
use crate::trust::{Trust, probe_fingerprint};
use crate::ui::{note, spinner, stderr_is_tty, stdin_is_tty};

/// `hoop login` flags.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Trust the gateway's certificate through this CA bundle (PEM).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Pin the gateway's certificate by its SHA-256 fingerprint (as `hoopd dev` prints it).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Do not open a browser; only print the URL and code.
    #[arg(long)]
    pub no_browser: bool,
}

/// Connects with the configured trust; on an untrusted self-signed certificate, offers to pin it
/// (on a terminal) or explains how to (otherwise).
async fn trusted_gateway(url: &str, trust: Trust) -> CliResult<(Gateway, AuthConfig)> {
    let gw = Gateway::new(url.to_string(), trust.clone())?;
    match gw.get_public::<AuthConfig>("/api/v1/auth/config").await {
        Ok(cfg) => Ok((gw, cfg)),
        Err(e) if e.exit == Exit::Certificate && trust == Trust::System => {
            let parsed = url::Url::parse(url).map_err(|e| crate::exit::usage(e.to_string()))?;
            let fp = probe_fingerprint(&parsed).await?;
            let how = format!("hoop login --gateway {url} --fingerprint {fp}");
            if !stdin_is_tty() || !stderr_is_tty() {
                return Err(CliError::new(
                    Exit::Certificate,
                    format!(
                        "the gateway {url} has a certificate this system does not trust, with fingerprint {fp}. \
                         Compare it with the one hoopd printed, then run: {how}"
                    ),
                ));
            }
            note(format!(
                "The gateway {url} presents a certificate this system does not trust."
            ));
            note(format!("Its fingerprint is {fp}"));
            note("Compare it with the fingerprint hoopd printed at start-up.");
            let yes = dialoguer::Confirm::new()
                .with_prompt("Trust and pin this certificate?")
                .default(false)
                .interact()
                .map_err(|e| {
                    CliError::new(
                        Exit::Certificate,
                        format!("no answer ({e}); to pin it without asking run: {how}"),
                    )
                })?;
            if !yes {
                return Err(CliError::new(
                    Exit::Certificate,
                    "certificate not trusted; nothing was saved",
                ));
            }
            let gw = Gateway::new(url.to_string(), Trust::Pin(fp))?;
            let cfg = gw.get_public::<AuthConfig>("/api/v1/auth/config").await?;
            Ok((gw, cfg))
        }
        Err(e) => Err(e),
    }
}

fn has_display() -> bool {
    cfg!(target_os = "macos")
        || cfg!(windows)
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
}

fn show_prompt(p: &Prompt, open_browser: bool) {
    let minutes = (p.expires_in.as_secs() / 60).max(1);
    note(format!(
        "To sign in, open this URL in a browser: {}",
        p.verification_uri
    ));
    note(format!(
        "and confirm this code: {}   (valid {minutes} min)",
        p.user_code
    ));
    if let Some(full) = &p.verification_uri_complete {
        note(format!("(or open {full} with the code filled in)"));
    }
    if open_browser {
        let target = p
            .verification_uri_complete
            .as_deref()
            .unwrap_or(&p.verification_uri);
        if let Err(e) = open::that_detached(target) {
            tracing::debug!(error = %e, "could not open a browser");
        }
    }
}

/// Runs `hoop login`.
pub async fn run(ctx: &Ctx, args: LoginArgs) -> CliResult<()> {
    let url = gateway_url(ctx.gateway.as_deref(), &ctx.settings)?;
    let trust = trust_for(
        &url,
        &ctx.settings,
        args.ca_file.as_deref(),
        args.fingerprint.as_deref(),
    )?;
    let (gw, cfg) = trusted_gateway(&url, trust).await?;
    let http = if gw.same_origin(&cfg.issuer) {
        gw.client.http.clone()
    } else {
        idp_client()?
    };
    let open_browser = !args.no_browser && has_display() && stderr_is_tty();

    let spin = std::rc::Rc::new(std::cell::RefCell::new(None));
    let spin_for_prompt = spin.clone();
    let tokens = device::login(
        http,
        DeviceLogin {
            issuer: &cfg.issuer,
            client_id: &cfg.client_id,
            scopes: &cfg.scopes,
            audience: &cfg.audience,
        },
        move |p| {
            show_prompt(p, open_browser);
            *spin_for_prompt.borrow_mut() = spinner(format!(
                "Waiting for you to sign in with code {}",
                p.user_code
            ));
        },
        tokio::time::sleep,
    )
    .await;
    if let Some(pb) = spin.borrow_mut().take() {
        pb.finish_and_clear();
    }
    let tokens = tokens?;

    let cached = CachedTokens {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        id_token: tokens.id_token,
        expires_at: tokens.expires_in.map(|d| now_unix() + d.as_secs() as i64),
        token_endpoint: Some(tokens.token_endpoint),
        client_id: Some(cfg.client_id.clone()),
        revocation_endpoint: tokens.revocation_endpoint,
    };
    // Ask the gateway who we are before saving anything: a token it refuses is no login.
    let me: Me = gw
        .get("/api/v1/me", Some(bearer_of(&cached)))
        .await
        .map_err(|e| {
            CliError::new(
                e.exit,
                format!(
                    "the identity provider logged you in, but the gateway refused the token: {}",
                    e.message
                ),
            )
        })?;
    let store = open_store(&ctx.paths.data_dir)?;
    store
        .save(&gw.url, &cached)
        .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?;

    let mut settings = ctx.settings.clone();
    settings.gateway = Some(gw.url.clone());
    let entry = match &gw.client.trust {
        Trust::System => GatewaySettings::default(),
        Trust::CaFile(p) => GatewaySettings {
            ca_file: Some(p.clone()),
            fingerprint: None,
        },
        Trust::Pin(fp) => GatewaySettings {
            fingerprint: Some(fp.clone()),
            ca_file: None,
        },
    };
    if entry == GatewaySettings::default() {
        settings.gateways.remove(&gw.url);
    } else {
        settings.gateways.insert(gw.url.clone(), entry);
    }
    settings.save(&ctx.paths.settings_file())?;
    let groups = if me.groups.is_empty() {
        "none".to_string()
    } else {
        me.groups.join(", ")
    };
    note(format!(
        "Logged in to {} as {} (groups: {groups}).",
        gw.url, me.name
    ));
    Ok(())
}
