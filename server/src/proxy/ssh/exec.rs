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
//! what comes back into [`ExecEvent`]s: `output` (stdout/stderr, as text) and `exit`. The
//! gateway's own answers (a block, a review notice, a refusal) come beside the protocol, as
//! [`Answer`]s, and become `error`/`review` events: nothing the target prints can pass for them.
//! Memory stays bounded: the pipe holds [`PIPE`] bytes, the sink a few chunks, and the SSH
//! window stops the target when the HTTP reader is slow.

use std::time::Duration;

use hoop_shared::exec::{ExecErrorKind, ExecEvent, ExecRequest, ExecStream};

use tokio::sync::mpsc::UnboundedReceiver;

use super::russh_glue::{self, BackReader, BackWriter, FromTarget, Signal};
use crate::api::exec::{ExecSink, SinkClosed};
use crate::tunnel::{Answer, TunnelContext};

/// Bytes buffered between the adapter and this client.
const PIPE: usize = 64 * 1024;
/// After a timeout's SIGTERM, how long the command gets before the channel is closed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Runs `req` on the connection in `ctx` (whose `secret` is fresh and whose `answers` feed
/// `answers`) and streams the events.
pub async fn run(
    ctx: TunnelContext,
    req: ExecRequest,
    mut sink: ExecSink,
    mut answers: UnboundedReceiver<Answer>,
) {
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
                Ok((reader, writer)) => drive(reader, writer, &req, &mut sink, &mut answers).await,
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

/// Where the command is, as far as the gateway's answers tell.
enum Held {
    /// Not held for review (or approved).
    No,
    /// Waits for review `id`.
    Waiting(i64),
}

/// Takes one of the adapter's answers: a review notice becomes a `review` event at once; a
/// refusal is kept for the end.
async fn answered(
    a: Answer,
    held: &mut Held,
    refused: &mut Option<(ExecErrorKind, String)>,
    sink: &mut ExecSink,
) -> Result<(), SinkClosed> {
    if let Some(kind) = a.refusal() {
        let message = a.message().unwrap_or_default().to_string();
        refused.get_or_insert((kind, message));
        return Ok(());
    }
    match a {
        Answer::Review { id, message } => {
            *held = Held::Waiting(id);
            sink.send(&ExecEvent::Review {
                id,
                state: "pending".into(),
                message,
            })
            .await?;
            sink.flush().await?;
        }
        Answer::Approved => *held = Held::No,
        Answer::Blocked(_) | Answer::NotApproved(_) | Answer::Pending(_) => {}
    }
    Ok(())
}

/// Runs the command on an open channel and streams what it prints.
async fn drive(
    mut reader: BackReader,
    writer: BackWriter,
    req: &ExecRequest,
    sink: &mut ExecSink,
    answers: &mut UnboundedReceiver<Answer>,
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
    // The gateway's refusal (block, rejection, pending review), when it gave one.
    let mut refused: Option<(ExecErrorKind, String)> = None;
    let mut held = Held::No;
    let mut answers_open = true;
    let mut status: Option<u32> = None;
    let mut signal: Option<String> = None;
    let mut timed_out: Option<String> = None;
    // The review a held command was waiting for when the timeout passed.
    let mut timed_out_held: Option<i64> = None;
    let mut grace_until: Option<tokio::time::Instant> = None;
    // The channel was closed under the command (after a timeout).
    let mut closed = false;
    loop {
        enum Step {
            Msg(Option<FromTarget>),
            Answer(Option<Answer>),
            Deadline,
            GraceOver,
            Left,
        }
        let running = status.is_none() && signal.is_none();
        // Answers first: one already sent (an approval, say) must be seen before a deadline
        // that passes at the same moment is judged.
        let step = tokio::select! {
            biased;
            a = answers.recv(), if answers_open => Step::Answer(a),
            m = reader.next() => Step::Msg(m),
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }, if timed_out.is_none() && running => Step::Deadline,
            () = async {
                match grace_until {
                    Some(g) => tokio::time::sleep_until(g).await,
                    None => std::future::pending().await,
                }
            }, if grace_until.is_some() => Step::GraceOver,
            // The HTTP client may leave while the command waits (for its review) or runs:
            // close the channel, so the adapter withdraws the review or the target ends it.
            () = sink.closed() => Step::Left,
        };
        let msg = match step {
            Step::Left => {
                let _ = writer.close().await;
                return Err(SinkClosed);
            }
            Step::Answer(None) => {
                answers_open = false;
                continue;
            }
            Step::Answer(Some(a)) => {
                answered(a, &mut held, &mut refused, sink).await?;
                continue;
            }
            Step::Deadline => {
                let secs = req.timeout_secs.unwrap_or_default();
                while let Ok(a) = answers.try_recv() {
                    answered(a, &mut held, &mut refused, sink).await?;
                }
                match held {
                    Held::Waiting(id) => {
                        // It has not run: closing the channel withdraws its review.
                        timed_out_held = Some(id);
                        timed_out = Some(format!(
                            "the command was still waiting for review {id} after {secs}s \
                             (--timeout); it was not run and the review was withdrawn"
                        ));
                        let _ = writer.close().await;
                        closed = true;
                        grace_until = Some(tokio::time::Instant::now() + TERM_GRACE);
                    }
                    Held::No => {
                        // SIGTERM, then the command has TERM_GRACE to exit before the channel
                        // is closed under it.
                        timed_out = Some(format!(
                            "the command did not finish within {secs}s; it was sent SIGTERM"
                        ));
                        let _ = writer.signal(Signal::term()).await;
                        grace_until = Some(tokio::time::Instant::now() + TERM_GRACE);
                    }
                }
                continue;
            }
            Step::GraceOver => {
                if closed {
                    // The target did not confirm the close either: give up on it.
                    break;
                }
                let _ = writer.close().await;
                closed = true;
                grace_until = Some(tokio::time::Instant::now() + TERM_GRACE);
                continue;
            }
            Step::Msg(None) => break,
            Step::Msg(Some(m)) => m,
        };
        match msg {
            FromTarget::Data(d) => output(sink, ExecStream::Stdout, stdout.push(&d)).await?,
            FromTarget::Stderr(_, d) => output(sink, ExecStream::Stderr, stderr.push(&d)).await?,
            FromTarget::ExitStatus(s) => status = Some(s),
            FromTarget::ExitSignal { signal: s, .. } => signal = Some(s.name()),
            FromTarget::Close => break,
            FromTarget::Eof | FromTarget::Success | FromTarget::Failure => {}
        }
    }
    // An answer is sent before the exit status and close that follow it.
    while let Ok(a) = answers.try_recv() {
        answered(a, &mut held, &mut refused, sink).await?;
    }
    if let (Some(id), Held::No) = (timed_out_held, &held) {
        // The approval crossed the timeout: the adapter started the command just before its
        // channel closed, so it may have run (in part).
        timed_out = Some(format!(
            "review {id} was approved as the timeout ({}s) passed: the command was started, \
             then its channel was closed; it may have run in part",
            req.timeout_secs.unwrap_or_default()
        ));
    }
    output(sink, ExecStream::Stdout, stdout.finish()).await?;
    output(sink, ExecStream::Stderr, stderr.finish()).await?;
    if let Some((kind, message)) = refused {
        return Ok(Outcome::failed(kind, message));
    }
    if let Some(message) = timed_out {
        return Ok(Outcome::failed(ExecErrorKind::Timeout, message));
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
}
