//! `hoop exec` on an SSH connection: as for PostgreSQL (`postgres/exec.rs`), the gateway plays
//! a small SSH client against its own adapter, so the command takes exactly the path an
//! `ssh host cmd` through a tunnel takes (one-time secret, target login, shell guardrails,
//! reviews, output masking, recording, audit).
//!
//! ```text
//! HTTP request ──▶ exec::run ══ tokio::io::duplex ══▶ ssh::serve (the adapter, unchanged)
//!   NDJSON ◀── ExecSink ◀── client side here           └──▶ channel ──▶ target
//! ```
//!
//! The client side opens one session channel, sends `exec` with the input and EOF, and turns
//! what comes back into [`ExecEvent`]s: `output` (stdout/stderr, as text), `exit`, and the
//! gateway's own answers (a block, a review notice, a refusal) as `error`/`review` events.
//! Memory stays bounded: the pipe holds [`PIPE`] bytes, the sink a few chunks, and the SSH
//! window stops the target when the HTTP reader is slow.

use std::time::Duration;

use hoop_shared::exec::{ExecErrorKind, ExecEvent, ExecRequest, ExecStream};

use super::russh_glue::{self, BackReader, BackWriter, FromTarget, Signal};
use crate::api::exec::{ExecSink, SinkClosed};
use crate::tunnel::TunnelContext;

/// Bytes buffered between the adapter and this client.
const PIPE: usize = 64 * 1024;
/// After a timeout's SIGTERM, how long the command gets before the channel is closed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Runs `req` on the connection in `ctx` (whose `secret` is fresh) and streams the events.
pub async fn run(ctx: TunnelContext, req: ExecRequest, mut sink: ExecSink) {
    let key = match super::host_key(&ctx.state.config.server.data_dir) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "no SSH host key; refusing hoop exec");
            let _ = finish(&mut sink, Some((ExecErrorKind::Session, e)), false).await;
            return;
        }
    };
    let secret = ctx.secret.clone();
    let (client, adapter_io) = tokio::io::duplex(PIPE);
    let adapter = tokio::spawn(super::serve(adapter_io, ctx));
    let outcome = match russh_glue::connect_own_adapter(client, &key, &secret).await {
        Ok(target) => {
            let r = match target.open_session().await {
                Ok((reader, writer)) => drive(reader, writer, &req, &mut sink).await,
                Err(e) => Ok(Outcome::failed(ExecErrorKind::Session, e)),
            };
            target.close().await;
            r
        }
        Err(e) => Ok(Outcome::failed(ExecErrorKind::Session, e.to_string())),
    };
    if let Ok(o) = outcome {
        let _ = finish(&mut sink, o.error, o.ok).await;
    }
    // The adapter ends once its client is gone; it records the session's end first.
    if tokio::time::timeout(Duration::from_secs(10), adapter)
        .await
        .is_err()
    {
        tracing::warn!("the ssh adapter of a hoop exec did not end");
    }
}

/// How the command ended.
struct Outcome {
    ok: bool,
    error: Option<(ExecErrorKind, String)>,
}

impl Outcome {
    fn failed(kind: ExecErrorKind, message: String) -> Self {
        Self {
            ok: false,
            error: Some((kind, message)),
        }
    }
}

async fn finish(
    sink: &mut ExecSink,
    error: Option<(ExecErrorKind, String)>,
    ok: bool,
) -> Result<(), SinkClosed> {
    if let Some((kind, message)) = error {
        sink.send(&ExecEvent::Error {
            kind,
            sqlstate: String::new(),
            message,
        })
        .await?;
    }
    sink.send(&ExecEvent::Done { ok }).await?;
    sink.flush().await
}

/// One of the adapter's own stderr lines: what it means for the exec answer.
#[derive(Debug, PartialEq, Eq)]
enum GatewayLine {
    Blocked(String),
    Notice { id: i64, message: String },
    NotApproved(String),
    Pending(String),
}

impl GatewayLine {
    /// The line as it was printed.
    fn spoken(self) -> String {
        match self {
            GatewayLine::Blocked(m)
            | GatewayLine::NotApproved(m)
            | GatewayLine::Pending(m)
            | GatewayLine::Notice { message: m, .. } => format!("hoop: {m}\n"),
        }
    }
}

/// Recognises the adapter's own answers (see the prefixes in `ssh/mod.rs`). Only a line that
/// comes before any output can be one: the target never sees a held command before its
/// approval, nor a blocked one at all.
fn gateway_line(text: &str) -> Option<GatewayLine> {
    let line = text.trim_end();
    let plain = |l: &str| l.strip_prefix("hoop: ").unwrap_or(l).to_string();
    if line.starts_with(super::BLOCKED_PREFIX) {
        return Some(GatewayLine::Blocked(plain(line)));
    }
    if line.starts_with(super::NOT_APPROVED_PREFIX) {
        return Some(GatewayLine::NotApproved(plain(line)));
    }
    if line.starts_with(super::REVIEW_PENDING_PREFIX) {
        return Some(GatewayLine::Pending(plain(line)));
    }
    Some(GatewayLine::Notice {
        id: crate::reviews::id_in_notice(line, super::REVIEW_NOTICE_PREFIX)?,
        message: plain(line),
    })
}

/// Decodes a byte stream as UTF-8 across chunk boundaries: a character split between two
/// SSH data messages is kept until its rest arrives; invalid bytes become U+FFFD.
#[derive(Default)]
struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, data: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(data);
        let mut out = String::with_capacity(bytes.len());
        let mut rest: &[u8] = &bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(good));
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = bad.get(n..).unwrap_or_default();
                        }
                        None => {
                            // An incomplete character at the end: wait for the rest.
                            self.carry = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.carry);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

async fn output(sink: &mut ExecSink, stream: ExecStream, data: String) -> Result<(), SinkClosed> {
    if data.is_empty() {
        return Ok(());
    }
    sink.send(&ExecEvent::Output { stream, data }).await
}

/// Runs the command on an open channel and streams what it prints.
async fn drive(
    mut reader: BackReader,
    writer: BackWriter,
    req: &ExecRequest,
    sink: &mut ExecSink,
) -> Result<Outcome, SinkClosed> {
    if let Err(e) = writer.exec(req.input.clone().into_bytes()).await {
        return Ok(Outcome::failed(ExecErrorKind::Session, e));
    }
    // The command reads no stdin.
    let _ = writer.eof().await;
    let deadline = req
        .timeout_secs
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut stdout = Utf8Stream::default();
    let mut stderr = Utf8Stream::default();
    // Nothing but the gateway's own lines came yet.
    let mut quiet = true;
    let mut answer: Option<GatewayLine> = None;
    let mut status: Option<u32> = None;
    let mut signal: Option<String> = None;
    let mut timed_out = false;
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        let step = async {
            match deadline {
                Some(d) if !timed_out => match tokio::time::timeout_at(d, reader.next()).await {
                    Ok(m) => Some(m),
                    Err(_) => {
                        // SIGTERM, then the command has TERM_GRACE to exit before the channel is
                        // closed under it.
                        timed_out = true;
                        let _ = writer.signal(Signal::term()).await;
                        grace_until = Some(tokio::time::Instant::now() + TERM_GRACE);
                        None
                    }
                },
                Some(_) => match grace_until {
                    Some(g) => match tokio::time::timeout_at(g, reader.next()).await {
                        Ok(m) => Some(m),
                        Err(_) => {
                            let _ = writer.close().await;
                            grace_until = None;
                            Some(
                                tokio::time::timeout(TERM_GRACE, reader.next())
                                    .await
                                    .unwrap_or_default(),
                            )
                        }
                    },
                    None => Some(
                        tokio::time::timeout(TERM_GRACE, reader.next())
                            .await
                            .unwrap_or_default(),
                    ),
                },
                None => Some(reader.next().await),
            }
        };
        // The HTTP client may leave while the command waits (for its review) or runs: close
        // the channel, so the adapter withdraws the review or the target ends the command.
        let mut left = false;
        let next = tokio::select! {
            m = step => m,
            () = sink.closed() => {
                left = true;
                None
            }
        };
        if left {
            let _ = writer.close().await;
            return Err(SinkClosed);
        }
        // None: the deadline passed just now (SIGTERM sent); read on.
        let Some(next) = next else { continue };
        let Some(msg) = next else { break };
        if matches!(msg, FromTarget::Data(_) | FromTarget::Stderr(..))
            && let Some(line) = answer.take()
        {
            // More output after it: the target printed that line, not the gateway.
            quiet = false;
            output(sink, ExecStream::Stderr, line.spoken()).await?;
        }
        match msg {
            FromTarget::Data(d) => {
                quiet = false;
                output(sink, ExecStream::Stdout, stdout.push(&d)).await?;
            }
            FromTarget::Stderr(_, d) => {
                let text = stderr.push(&d);
                if quiet && let Some(line) = gateway_line(&text) {
                    if let GatewayLine::Notice { id, message } = line {
                        sink.send(&ExecEvent::Review {
                            id,
                            state: "pending".into(),
                            message,
                        })
                        .await?;
                        sink.flush().await?;
                    } else {
                        answer = Some(line);
                    }
                    continue;
                }
                quiet = false;
                output(sink, ExecStream::Stderr, text).await?;
            }
            FromTarget::ExitStatus(s) => status = Some(s),
            FromTarget::ExitSignal { signal: s, .. } => signal = Some(s.name()),
            FromTarget::Close => break,
            FromTarget::Eof | FromTarget::Success | FromTarget::Failure => {}
        }
    }
    output(sink, ExecStream::Stdout, stdout.finish()).await?;
    output(sink, ExecStream::Stderr, stderr.finish()).await?;
    if let Some(line) = answer {
        let expected = match &line {
            GatewayLine::Blocked(_) => super::BLOCKED_STATUS,
            GatewayLine::NotApproved(_) => super::NOT_APPROVED_STATUS,
            GatewayLine::Pending(_) => super::REVIEW_PENDING_STATUS,
            GatewayLine::Notice { .. } => 0,
        };
        if quiet && status == Some(expected) {
            return Ok(match line {
                GatewayLine::Blocked(m) => Outcome::failed(ExecErrorKind::Blocked, m),
                GatewayLine::NotApproved(m) => Outcome::failed(ExecErrorKind::ReviewRejected, m),
                GatewayLine::Pending(m) => Outcome::failed(ExecErrorKind::ReviewPending, m),
                GatewayLine::Notice { message, .. } => {
                    Outcome::failed(ExecErrorKind::Session, message)
                }
            });
        }
        // Not the gateway's after all: the target printed it.
        output(sink, ExecStream::Stderr, line.spoken()).await?;
    }
    if timed_out {
        return Ok(Outcome::failed(
            ExecErrorKind::Timeout,
            format!(
                "the command did not finish within {}s; it was sent SIGTERM",
                req.timeout_secs.unwrap_or_default()
            ),
        ));
    }
    if status.is_none() && signal.is_none() {
        return Ok(Outcome::failed(
            ExecErrorKind::Session,
            "the target closed the channel without an exit status".into(),
        ));
    }
    sink.send(&ExecEvent::Exit {
        status,
        signal: signal.clone(),
    })
    .await?;
    Ok(Outcome {
        ok: status == Some(0),
        error: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let mut s = Utf8Stream::default();
        let text = "cafe\u{301} – ünïcödé";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(1) {
            out.push_str(&s.push(chunk));
        }
        out.push_str(&s.finish());
        assert_eq!(out, text);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut s = Utf8Stream::default();
        let out = s.push(b"a\xffb\xc3");
        assert_eq!(out, "a\u{fffd}b");
        assert_eq!(s.finish(), "\u{fffd}");
    }

    #[test]
    fn gateway_lines_are_recognised() {
        assert_eq!(
            gateway_line("hoop: blocked by guardrail no-destructive: \"rm -rf\" is denied; the command was not run\r\n"),
            Some(GatewayLine::Blocked(
                "blocked by guardrail no-destructive: \"rm -rf\" is denied; the command was not run"
                    .into()
            ))
        );
        let notice = format!(
            "{} (every command on this connection needs approval): review 42; approve with `hoop approve 42`; waiting up to 5m\r\n",
            super::super::REVIEW_NOTICE_PREFIX
        );
        assert!(matches!(
            gateway_line(&notice),
            Some(GatewayLine::Notice { id: 42, .. })
        ));
        assert_eq!(gateway_line("ls: cannot access 'x'\n"), None);
    }
}
