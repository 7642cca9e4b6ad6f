//! The SSH adapter: the gateway is an SSH server to the local client (through the tunnel; user
//! `hoop`, with the tunnel's key or password) and an SSH client to the target (the vaulted key or
//! password, the pinned host key). Session channels are relayed request by request (pty, shell,
//! exec, subsystem, env, window-change, signal, exit status/signal, EOF, close) with exec
//! commands judged by the shell guardrails, terminal output masked, and the session recorded.
//!
//! russh is used only through `russh_glue.rs`. Its callbacks do no
//! logic: each becomes a [`russh_glue::FrontEvent`] for the one session task (`session.rs`),
//! which owns the session's state; channel pumps report what they see to it as notes.

mod channel;
pub mod exec;
pub mod russh_glue;
mod session;
pub mod sftp;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::ConnectionConfig;
use crate::tunnel::TunnelContext;
use russh_glue::{HostKey, HostKeyPin};

/// File name of the gateway's SSH host key in the data dir.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// Exit status of a command refused by a guardrail (hoop's own "blocked" code).
pub const BLOCKED_STATUS: u32 = 86;
/// Exit status of a command whose review rejected it, expired or was withdrawn (hoop's 87).
pub const NOT_APPROVED_STATUS: u32 = 87;
/// Exit status of a command whose review is still pending when `hoop exec --wait/--no-wait`
/// stopped waiting (hoop's 88).
pub const REVIEW_PENDING_STATUS: u32 = 88;

/// The gateway's own answers on an exec channel start with these (a stderr line `hoop: ...`
/// to an ssh client; `hoop exec` gets them beside the protocol, see [`crate::tunnel::Answer`]).
pub(crate) const BLOCKED_PREFIX: &str = "blocked by guardrail ";
/// See [`BLOCKED_PREFIX`]: a command held for review; the review id follows `review `.
pub(crate) const REVIEW_NOTICE_PREFIX: &str = "command needs approval";
/// See [`BLOCKED_PREFIX`].
pub(crate) const NOT_APPROVED_PREFIX: &str = "command not approved: ";
/// See [`BLOCKED_PREFIX`].
pub(crate) const REVIEW_PENDING_PREFIX: &str = "command review pending: ";

static HOST_KEY: OnceLock<HostKey> = OnceLock::new();

/// Loads (or on first start creates) the gateway's SSH host key in `data_dir`. Called at
/// gateway start when any ssh connection is configured.
pub fn prepare(data_dir: &Path) -> Result<String, String> {
    let key = host_key(data_dir)?;
    Ok(key.fingerprint())
}

/// The gateway's SSH host key as an OpenSSH public key line, once [`prepare`] loaded it.
pub fn public_host_key() -> Option<String> {
    HOST_KEY.get().map(HostKey::public_openssh)
}

fn host_key(data_dir: &Path) -> Result<HostKey, String> {
    if let Some(k) = HOST_KEY.get() {
        return Ok(k.clone());
    }
    let path: PathBuf = data_dir.join(HOST_KEY_FILE);
    let key = match HostKey::load_or_create(&path) {
        Ok(k) => k,
        // Two first connections raced to create it: the other one won.
        Err(_) if path.exists() => HostKey::load_or_create(&path)?,
        Err(e) => return Err(e),
    };
    Ok(HOST_KEY.get_or_init(|| key).clone())
}

/// What `hoopd check` reports about an ssh connection.
pub fn validate_connection(c: &ConnectionConfig, at: &str) -> Vec<String> {
    let mut problems = Vec::new();
    match (&c.password, &c.private_key) {
        (None, None) => problems.push(format!(
            "`{at}`: an ssh connection needs `private_key = {{ file = \"...\" }}` (or `{{ env = \"VAR\" }}`) or `password`"
        )),
        (Some(_), Some(_)) => problems.push(format!(
            "`{at}`: give either `private_key` or `password`, not both"
        )),
        (None, Some(k)) => match k.resolve() {
            Ok(pem) => {
                if let Err(e) = russh_glue::check_private_key(pem.expose()) {
                    problems.push(format!("`{at}.private_key`: {e}"));
                }
            }
            Err(e) => problems.push(format!("`{at}.private_key`: {e}")),
        },
        (Some(_), None) => {}
    }
    match &c.host_key {
        None => problems.push(format!(
            "`{at}.host_key` is required for an ssh connection: pin the target's key as a known_hosts line (`ssh-keyscan -t ed25519 HOST`) or its `SHA256:` fingerprint"
        )),
        Some(k) => {
            if let Err(e) = HostKeyPin::parse(k) {
                problems.push(format!("`{at}.host_key`: {e}"));
            }
        }
    }
    // An address with '@' is refused (without being echoed) by the common checks.
    if !c.address.contains(':') && !c.address.contains('@') {
        problems.push(format!(
            "`{at}.address` {:?}: write host:port (e.g. web-1.internal:22)",
            c.address
        ));
    }
    if c.database.is_some() {
        problems.push(format!(
            "`{at}.database` applies only to postgres connections"
        ));
    }
    problems
}

/// Serves one tunnel stream as an SSH session.
pub async fn serve<C>(io: C, ctx: TunnelContext)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let key = match host_key(&ctx.state.config.server.data_dir) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "no SSH host key; refusing the ssh session");
            return;
        }
    };
    session::run(io, ctx, key).await;
}
