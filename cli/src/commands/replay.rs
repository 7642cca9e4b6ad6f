//! `hoop replay <session>`: plays an SSH session's terminal recording (asciicast v2) in this
//! terminal, or with `--cast` prints the file for `asciinema play`.

use std::io::Write;

use hoop_shared::asciicast;

use crate::Ctx;
use crate::auth::{credential, open_store};
use crate::exit::{CliError, CliResult, Exit};

/// `hoop replay` flags.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The session id (see `hoop sessions`).
    pub session: String,
    /// Which channel's recording, when a session has several (default: the first).
    #[arg(long)]
    pub channel: Option<u32>,
    /// Play this many times faster.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Shorten every pause to at most this many seconds.
    #[arg(long)]
    pub idle_limit: Option<f64>,
    /// Print the asciicast v2 file to stdout instead of playing it.
    #[arg(long)]
    pub cast: bool,
}

/// Runs `hoop replay`.
pub async fn run(ctx: &Ctx, args: ReplayArgs) -> CliResult<()> {
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        return Err(CliError::new(
            Exit::Usage,
            format!("--speed must be a positive number, got {}", args.speed),
        ));
    }
    if args
        .idle_limit
        .is_some_and(|l| !(l >= 0.0 && l.is_finite()))
    {
        return Err(CliError::new(
            Exit::Usage,
            "--idle-limit must be zero or a positive number of seconds",
        ));
    }
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let cred = credential(&gw, &store, ctx.token.as_deref()).await?;
    let id: String = args
        .session
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let mut path = format!("/api/v1/sessions/{id}/cast");
    if let Some(c) = args.channel {
        path.push_str(&format!("?channel={c}"));
    }
    let text = gw.get_text(&path, cred.bearer()).await?;
    let events = if args.cast {
        None
    } else {
        let (_, events) = asciicast::parse(&text).map_err(|e| {
            CliError::new(
                Exit::Internal,
                format!("the gateway sent an unreadable recording: {e}"),
            )
        })?;
        Some(events)
    };
    let play = || -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let Some(events) = &events else {
            return stdout.write_all(text.as_bytes());
        };
        let delays = asciicast::delays(events, args.speed, args.idle_limit);
        for (event, delay) in events.iter().zip(delays) {
            if delay > 0.0 {
                stdout.flush()?;
                std::thread::sleep(std::time::Duration::from_secs_f64(delay));
            }
            // Input events are not echoed: the output already shows what the terminal echoed.
            if event.code == "o" {
                stdout.write_all(event.data.as_bytes())?;
            }
        }
        stdout.flush()
    };
    match play() {
        Ok(()) => Ok(()),
        // `hoop replay ... | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(
            Exit::Internal,
            format!("cannot write to stdout: {e}"),
        )),
    }
}
