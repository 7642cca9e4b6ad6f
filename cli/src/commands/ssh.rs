//! `hoop ssh <name> [-- command...]`: a built-in SSH client over one tunnel stream. The only CLI
//! file that names russh (pinned `=0.65.1`, like the gateway's `russh_glue.rs`).
//!
//! The tunnel is TLS to the pinned gateway, so the gateway's SSH host key needs no second trust
//! decision; the client logs in as `hoop` with a fresh one-time secret it announced when opening
//! the stream. On a terminal it switches stdin to raw mode (restored on every exit path by a
//! drop guard), requests a pty of the terminal's size, and forwards resizes (SIGWINCH). The
//! remote command's exit status becomes hoop's exit status.

use std::io::Write;
use std::sync::Arc;

use russh::ChannelMsg;
use tokio::io::AsyncReadExt;

use crate::Ctx;
use crate::auth::{credential, open_store};
use crate::exit::{CliError, CliResult, Exit};
use crate::tunnel::TunnelClient;

/// `hoop ssh` flags.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// The ssh connection (see `hoop connections`).
    pub name: String,
    /// Ask for a terminal even when running a command (like `ssh -t`).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command to run instead of a shell, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

struct AnyGatewayKey;

impl russh::client::Handler for AnyGatewayKey {
    type Error = russh::Error;

    // The stream is TLS to the pinned gateway: its SSH key adds nothing to trust.
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Puts a terminal in raw mode and restores it when dropped.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

fn window() -> (u32, u32) {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (u32::from(w.ws_col), u32::from(w.ws_row)),
        _ => (80, 24),
    }
}

fn secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..32)
        .filter_map(|_| {
            ALPHABET
                .get(rng.random_range(0..ALPHABET.len()))
                .map(|b| *b as char)
        })
        .collect()
}

/// A fresh Ed25519 key pair for one `hoop connect` tunnel: the private key in OpenSSH format
/// (for a 0600 `IdentityFile`) and the public key line the gateway is told to accept.
pub(crate) fn tunnel_key_pair() -> CliResult<(String, String)> {
    use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
    let seed: [u8; 32] = rand::random();
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("hoop connect tunnel key");
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| crate::exit::internal(format!("cannot encode the tunnel's SSH key: {e}")))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| crate::exit::internal(format!("cannot encode the tunnel's SSH key: {e}")))?;
    Ok((private.to_string(), public))
}

fn ssh_error(what: &str) -> impl Fn(russh::Error) -> CliError + '_ {
    move |e| CliError::new(Exit::Internal, format!("{what}: {e}"))
}

/// Runs `hoop ssh`. Once the remote side has answered, the process exits with its status.
pub async fn run(ctx: &Ctx, args: SshArgs) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let conn = crate::commands::connect::find_connection(ctx, &gw, &store, &args.name).await?;
    if conn.kind != "ssh" {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{} is a {} connection; `hoop ssh` needs an ssh one (use `hoop connect {}`)",
                conn.name, conn.kind, conn.name
            ),
        ));
    }
    if conn.access_review {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{} needs an approved access review: run `hoop connect {} --reason \"...\"` and use ssh through it",
                conn.name, conn.name
            ),
        ));
    }
    let cred = credential(&gw, &store, ctx.token.as_deref()).await?;
    let tunnel = TunnelClient::new(gw.clone())?;
    let secret = secret();
    let stream = tunnel
        .open(&conn.name, cred.bearer(), &secret, None)
        .await?;
    let config = Arc::new(russh::client::Config {
        inactivity_timeout: None,
        ..Default::default()
    });
    let mut handle = russh::client::connect_stream(config, stream, AnyGatewayKey)
        .await
        .map_err(ssh_error("the gateway's SSH handshake failed"))?;
    let auth = handle
        .authenticate_password("hoop", secret)
        .await
        .map_err(ssh_error("the gateway's SSH login failed"))?;
    if !auth.success() {
        return Err(CliError::new(
            Exit::Internal,
            "the gateway refused the tunnel's one-time secret",
        ));
    }
    let mut channel = handle
        .channel_open_session()
        .await
        .map_err(ssh_error("the gateway refused a session"))?;
    let stdin_tty = rustix::termios::isatty(std::io::stdin());
    let pty = stdin_tty && (args.command.is_empty() || args.tty);
    if pty {
        let (cols, rows) = window();
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
        channel
            .request_pty(true, &term, cols, rows, 0, 0, &[])
            .await
            .map_err(ssh_error("pty request failed"))?;
    }
    if args.command.is_empty() {
        channel
            .request_shell(true)
            .await
            .map_err(ssh_error("shell request failed"))?;
    } else {
        // Like ssh: the words are joined with spaces and the remote shell parses them.
        channel
            .exec(true, args.command.join(" "))
            .await
            .map_err(ssh_error("exec request failed"))?;
    }
    let status = {
        let _raw = if pty { RawMode::enter() } else { None };
        relay(&mut channel).await
    };
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    let _ = std::io::stdout().flush();
    // The remote status is the process's status (0–255), which CliError cannot carry; the
    // terminal is already restored (the guard above is dropped).
    std::process::exit(status)
}

/// Copies stdin to the channel and the channel to stdout/stderr until it closes; returns the
/// remote exit status, or 255 (as OpenSSH does) when the command died of a signal or none came.
async fn relay(channel: &mut russh::Channel<russh::client::Msg>) -> i32 {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    let mut status = 255;
    #[cfg(unix)]
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    loop {
        let winched = async {
            match winch.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            n = stdin.read(&mut buf), if stdin_open => match n {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = channel.eof().await;
                }
                Ok(n) => {
                    if channel.data(buf.get(..n).unwrap_or_default()).await.is_err() {
                        break;
                    }
                }
            },
            () = winched => {
                let (cols, rows) = window();
                let _ = channel.window_change(cols, rows, 0, 0).await;
            }
            msg = channel.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&data);
                    let _ = out.flush();
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&data);
                    let _ = err.flush();
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    status = i32::try_from(exit_status).unwrap_or(255);
                }
                Some(ChannelMsg::ExitSignal { .. }) => status = 255,
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    status
}
