//! `hoop exec` on a PostgreSQL connection: the gateway plays a small PostgreSQL client against
//! its own adapter, so the input takes exactly the path a `psql` statement takes through a
//! tunnel (one-time password, upstream login, guardrails, reviews, masking, recording, audit).
//!
//! ```text
//! HTTP request ──▶ exec::run ══ tokio::io::duplex ══▶ postgres::serve (the adapter, unchanged)
//!   NDJSON ◀── ExecSink ◀── frontend side here         └──▶ relay ──▶ target
//! ```
//!
//! The frontend side sends a startup, the one-time password and one simple Query holding the
//! whole input, and turns what comes back (RowDescription, DataRow, CommandComplete,
//! ErrorResponse, NoticeResponse, ReadyForQuery) into [`ExecEvent`]s. Memory stays bounded:
//! the duplex pipe holds at most [`PIPE`] bytes and the sink a few chunks, so a slow reader
//! of the HTTP answer stops the relay, which stops reading from the target (TCP backpressure).

use std::time::Duration;

use bytes::BytesMut;
use hoop_shared::exec::{ExecColumn, ExecErrorKind, ExecEvent, ExecRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec;
use super::relay::{BLOCKED_PREFIX, NOT_APPROVED_PREFIX, REVIEW_PENDING_PREFIX, review_in_notice};
use super::{SERVER_LIMITS, cancel_keys};
use crate::api::exec::{ExecSink, SinkClosed};
use crate::tunnel::TunnelContext;

/// Bytes buffered between the adapter and this client.
const PIPE: usize = 64 * 1024;
/// After a timeout's cancel, how long the target gets to answer before the answer is cut.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// How an ErrorResponse is reported.
fn classify(sqlstate: &str, message: &str, timed_out: bool) -> ExecErrorKind {
    if message.starts_with(BLOCKED_PREFIX) {
        ExecErrorKind::Blocked
    } else if message.starts_with(REVIEW_PENDING_PREFIX) {
        ExecErrorKind::ReviewPending
    } else if message.starts_with(NOT_APPROVED_PREFIX) {
        ExecErrorKind::ReviewRejected
    } else if timed_out && sqlstate == "57014" {
        ExecErrorKind::Timeout
    } else {
        ExecErrorKind::Statement
    }
}

/// Severity field of an ErrorResponse/NoticeResponse (`S`).
fn severity(msg: &[u8]) -> String {
    let mut rest = codec::body(msg);
    while let Some((&field, r)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some((v, r2)) = codec::cstr(r) else { break };
        if field == b'S' {
            return String::from_utf8_lossy(v).into_owned();
        }
        rest = r2;
    }
    String::new()
}

/// Asks the target to cancel what the session runs: `key` is the key the adapter gave us.
async fn cancel(key: (i32, i32)) {
    let target = cancel_keys().get(&key).cloned();
    if let Some(t) = target {
        let mut out = BytesMut::new();
        codec::put_cancel(&mut out, t.pid, t.key);
        if let Ok(mut s) = tokio::net::TcpStream::connect(&t.address).await {
            let _ = s.write_all(&out).await;
        }
    }
}

/// Runs `req` on the connection in `ctx` (whose `secret` is fresh) and streams the events.
pub async fn run(ctx: TunnelContext, req: ExecRequest, mut sink: ExecSink) {
    let secret = ctx.secret.clone();
    let (mut frontend, backend) = tokio::io::duplex(PIPE);
    let adapter = tokio::spawn(super::serve(backend, ctx));
    let outcome = drive(&mut frontend, &secret, &req, &mut sink).await;
    let ok = matches!(outcome, Ok(true));
    if outcome.is_ok() {
        let _ = sink.send(&ExecEvent::Done { ok }).await;
        let _ = sink.flush().await;
    }
    // The HTTP answer ends here; the adapter winds down (a statement still held after a
    // timeout sees the session close below, and its review is withdrawn).
    drop(sink);
    // Terminate (or just close) and let the adapter record the session's end.
    let mut out = BytesMut::new();
    codec::put_message(&mut out, b'X', &[]);
    let _ = frontend.write_all(&out).await;
    let _ = frontend.shutdown().await;
    drop(frontend);
    let _ = adapter.await;
}

/// The frontend side. Ok(true) when every statement succeeded; Err when the HTTP client left.
async fn drive<F>(
    frontend: &mut F,
    secret: &str,
    req: &ExecRequest,
    sink: &mut ExecSink,
) -> Result<bool, SinkClosed>
where
    F: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    codec::put_startup(
        &mut out,
        &[
            ("user", "hoop"),
            ("application_name", "hoop exec"),
            ("client_encoding", "UTF8"),
        ],
    );
    let session_error = |message: String| ExecEvent::Error {
        kind: ExecErrorKind::Session,
        sqlstate: String::new(),
        message,
    };
    if frontend.write_all(&out).await.is_err() {
        sink.send(&session_error("the gateway's adapter did not start".into()))
            .await?;
        return Ok(false);
    }
    let mut buf = BytesMut::with_capacity(PIPE);
    let deadline = req
        .timeout_secs
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut timed_out = false;
    let mut backend_key = None;
    let mut query_sent = false;
    let mut ok = true;
    let mut failed = false;
    loop {
        // Every complete message in the buffer.
        loop {
            let n = match codec::frame_len(&buf, SERVER_LIMITS) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    sink.send(&session_error(format!(
                        "invalid message in the session: {e}"
                    )))
                    .await?;
                    return Ok(false);
                }
            };
            let msg = buf.split_to(n);
            match msg.first().copied().unwrap_or_default() {
                b'R' => match codec::auth_request(&msg) {
                    Ok((3, _)) => {
                        out.clear();
                        let mut body = secret.as_bytes().to_vec();
                        body.push(0);
                        codec::put_message(&mut out, b'p', &body);
                        if frontend.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                    Ok((0, _)) => {}
                    _ => {
                        sink.send(&session_error("unexpected authentication request".into()))
                            .await?;
                        return Ok(false);
                    }
                },
                b'K' => backend_key = codec::backend_key(&msg).ok(),
                b'T' => {
                    let columns = codec::row_description(&msg)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| ExecColumn {
                            name: c.name,
                            type_oid: c.type_oid,
                        })
                        .collect();
                    sink.send(&ExecEvent::Columns { columns }).await?;
                }
                b'D' => {
                    let values = match codec::data_row_values(&msg) {
                        Ok(values) => values
                            .map(|v| {
                                v.ok()
                                    .flatten()
                                    .map(|b| String::from_utf8_lossy(b).into_owned())
                            })
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    sink.send(&ExecEvent::Row { values }).await?;
                }
                b'C' => {
                    sink.send(&ExecEvent::Complete {
                        command: codec::command_tag(&msg),
                    })
                    .await?;
                }
                b'N' => {
                    let (_, message) = codec::error_fields(&msg);
                    match review_in_notice(&message) {
                        Some(id) => {
                            sink.send(&ExecEvent::Review {
                                id,
                                state: "pending".into(),
                                message,
                            })
                            .await?
                        }
                        None => {
                            sink.send(&ExecEvent::Notice {
                                severity: severity(&msg),
                                message,
                            })
                            .await?
                        }
                    }
                    // A held statement can wait minutes: say so now, not with the result.
                    sink.flush().await?;
                }
                b'E' => {
                    let (sqlstate, message) = codec::error_fields(&msg);
                    let fatal = severity(&msg) == "FATAL";
                    let kind = if fatal && !query_sent {
                        ExecErrorKind::Session
                    } else {
                        classify(&sqlstate, &message, timed_out)
                    };
                    ok = false;
                    failed = true;
                    sink.send(&ExecEvent::Error {
                        kind,
                        sqlstate,
                        message,
                    })
                    .await?;
                    if fatal {
                        return Ok(false);
                    }
                }
                b'G' => {
                    // COPY ... FROM STDIN: there is no client-side data to send.
                    out.clear();
                    codec::put_message(
                        &mut out,
                        b'f',
                        b"hoop exec does not send COPY FROM STDIN data\0",
                    );
                    let _ = frontend.write_all(&out).await;
                }
                b'H' => {
                    sink.send(&ExecEvent::Columns {
                        columns: vec![ExecColumn {
                            name: "copy".into(),
                            type_oid: 25,
                        }],
                    })
                    .await?;
                }
                b'd' => {
                    let line = codec::body(&msg);
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    sink.send(&ExecEvent::Row {
                        values: vec![Some(String::from_utf8_lossy(line).into_owned())],
                    })
                    .await?;
                }
                b'Z' => {
                    if query_sent {
                        return Ok(ok);
                    }
                    query_sent = true;
                    out.clear();
                    let mut body = req.input.as_bytes().to_vec();
                    body.retain(|b| *b != 0);
                    body.push(0);
                    codec::put_message(&mut out, b'Q', &body);
                    if frontend.write_all(&out).await.is_err() {
                        break;
                    }
                }
                // ParameterStatus, NotificationResponse, EmptyQueryResponse, CopyDone...
                _ => {}
            }
        }
        sink.flush().await?;
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(PIPE);
        }
        // The HTTP client may leave while a statement waits (for its review, or the target):
        // then stop, so the adapter sees the session end and withdraws the review.
        let read = async {
            tokio::select! {
                r = frontend.read_buf(&mut buf) => Ok(r),
                () = sink.closed() => Err(SinkClosed),
            }
        };
        let n = match deadline {
            Some(d) if !timed_out => tokio::select! {
                r = read => r,
                () = tokio::time::sleep_until(d) => {
                    timed_out = true;
                    if let Some(key) = backend_key {
                        cancel(key).await;
                    }
                    continue;
                }
            },
            Some(d) => tokio::select! {
                r = read => r,
                () = tokio::time::sleep_until(d + CANCEL_GRACE) => {
                    sink.send(&ExecEvent::Error {
                        kind: ExecErrorKind::Timeout,
                        sqlstate: "57014".into(),
                        message: format!("the statement did not finish within {}s", req.timeout_secs.unwrap_or_default()),
                    })
                    .await?;
                    return Ok(false);
                }
            },
            None => read.await,
        };
        match n? {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The adapter ended the session without a FATAL of its own.
    if !failed {
        sink.send(&session_error(
            "the session ended before the input finished".into(),
        ))
        .await?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_answers_are_classified() {
        assert_eq!(
            classify("42501", "blocked by guardrail no-ddl: DROP", false),
            ExecErrorKind::Blocked
        );
        assert_eq!(
            classify(
                "42501",
                "statement not approved: review 3 was rejected",
                false
            ),
            ExecErrorKind::ReviewRejected
        );
        assert_eq!(
            classify(
                "42501",
                "statement review pending: review 3 is pending",
                false
            ),
            ExecErrorKind::ReviewPending
        );
        // The target's own permission error is a statement failure.
        assert_eq!(
            classify("42501", "permission denied for table t", false),
            ExecErrorKind::Statement
        );
        assert_eq!(
            classify("57014", "canceling statement due to user request", true),
            ExecErrorKind::Timeout
        );
        assert_eq!(
            classify(
                "57014",
                "canceling statement due to statement timeout",
                false
            ),
            ExecErrorKind::Statement
        );
    }

    #[test]
    fn the_review_notice_names_its_id() {
        assert_eq!(
            review_in_notice(
                "statement needs approval (write): review 42 — approve with `hoop approve 42`; waiting up to 5m"
            ),
            Some(42)
        );
        assert_eq!(review_in_notice("review 42"), None);
    }
}
