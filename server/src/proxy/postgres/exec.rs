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

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use hoop_shared::exec::{ExecColumn, ExecErrorKind, ExecEvent, ExecRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

use super::codec;
use super::{SERVER_LIMITS, cancel_keys};
use crate::api::exec::{ExecSink, SinkClosed};
use crate::tunnel::{Answer, TunnelContext};

/// Bytes buffered between the adapter and this client.
const PIPE: usize = 64 * 1024;
/// After a timeout's cancel, how long the target gets to answer before the answer is cut.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// How an ErrorResponse is reported: the gateway's own answer when one with this message was
/// told beside the protocol (see [`Answer`]); otherwise the target's.
fn classify(sqlstate: &str, answer: Option<&Answer>, timed_out: bool) -> ExecErrorKind {
    match answer.and_then(Answer::refusal) {
        // `--timeout` on a held statement cancels it, which withdraws its review.
        Some(ExecErrorKind::ReviewRejected) if timed_out => ExecErrorKind::Timeout,
        Some(kind) => kind,
        None if timed_out && sqlstate == "57014" => ExecErrorKind::Timeout,
        None => ExecErrorKind::Statement,
    }
}

/// The adapter's answers told so far, matched to the messages that carry them.
struct Told {
    rx: UnboundedReceiver<Answer>,
    queue: VecDeque<Answer>,
}

impl Told {
    /// The answer whose message is `message`, if the adapter told one. An answer is told
    /// before its message is written, so it is here by the time the message is read.
    fn take(&mut self, message: &str) -> Option<Answer> {
        while let Ok(a) = self.rx.try_recv() {
            self.queue.push_back(a);
        }
        // The protocol drops NULs from messages (`codec::put_cstr`), so compare without them.
        let same = |m: &str| m.chars().filter(|c| *c != '\0').eq(message.chars());
        let at = self
            .queue
            .iter()
            .position(|a| a.message().is_some_and(same))?;
        self.queue.remove(at)
    }

    /// Whether the adapter said a held statement was approved (it runs now); forgets it.
    fn approved(&mut self) -> bool {
        while let Ok(a) = self.rx.try_recv() {
            self.queue.push_back(a);
        }
        let before = self.queue.len();
        self.queue.retain(|a| *a != Answer::Approved);
        self.queue.len() != before
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

/// Runs `req` on the connection in `ctx` (whose `secret` is fresh and whose `answers` feed
/// `answers`) and streams the events.
pub async fn run(
    ctx: TunnelContext,
    req: ExecRequest,
    mut sink: ExecSink,
    answers: UnboundedReceiver<Answer>,
) {
    let secret = ctx.secret.clone();
    let (mut frontend, backend) = tokio::io::duplex(PIPE);
    let adapter = tokio::spawn(super::serve(backend, ctx));
    let mut told = Told {
        rx: answers,
        queue: VecDeque::new(),
    };
    let outcome = drive(&mut frontend, &secret, &req, &mut sink, &mut told).await;
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
    told: &mut Told,
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
    // The review the statement waits for, once the adapter said it filed one.
    let mut held: Option<i64> = None;
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
                    match told.take(&message) {
                        Some(Answer::Review { id, .. }) => {
                            held = Some(id);
                            sink.send(&ExecEvent::Review {
                                id,
                                state: "pending".into(),
                                message,
                            })
                            .await?
                        }
                        _ => {
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
                    let (sqlstate, mut message) = codec::error_fields(&msg);
                    let fatal = severity(&msg) == "FATAL";
                    let kind = if fatal && !query_sent {
                        ExecErrorKind::Session
                    } else {
                        let answer = told.take(&message);
                        let kind = classify(&sqlstate, answer.as_ref(), timed_out);
                        if matches!(answer, Some(Answer::NotApproved(_))) && timed_out {
                            message = format!(
                                "the statement was still waiting for review after {}s (--timeout); it was not run ({message})",
                                req.timeout_secs.unwrap_or_default()
                            );
                        }
                        kind
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
                    if let Some(id) = held.filter(|_| !told.approved()) {
                        // It has not run: ending the session (the caller closes it) withdraws
                        // its review.
                        sink.send(&ExecEvent::Error {
                            kind: ExecErrorKind::Timeout,
                            sqlstate: String::new(),
                            message: format!(
                                "the statement was still waiting for review {id} after {}s (--timeout); it was not run and the review was withdrawn",
                                req.timeout_secs.unwrap_or_default()
                            ),
                        })
                        .await?;
                        return Ok(false);
                    }
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
    fn only_told_answers_are_the_gateways() {
        let (tx, rx) = crate::tunnel::Answers::new();
        let ctx_told = |a: Answer| {
            // What TunnelContext::tell does.
            let _ = tx.0.send(a);
        };
        let mut told = Told {
            rx,
            queue: VecDeque::new(),
        };
        ctx_told(Answer::Blocked("blocked by guardrail no-ddl: DROP".into()));
        ctx_told(Answer::Review {
            id: 42,
            message: "statement needs approval (write): review 42".into(),
        });
        // A target that words its own error like the gateway's is still the target.
        let spoof = told.take("statement not approved: review 3 was rejected");
        assert_eq!(spoof, None);
        assert_eq!(
            classify("42501", spoof.as_ref(), false),
            ExecErrorKind::Statement
        );
        let a = told.take("blocked by guardrail no-ddl: DROP");
        assert_eq!(classify("42501", a.as_ref(), false), ExecErrorKind::Blocked);
        // Each answer stands for one message.
        assert_eq!(told.take("blocked by guardrail no-ddl: DROP"), None);
        assert!(matches!(
            told.take("statement needs approval (write): review 42"),
            Some(Answer::Review { id: 42, .. })
        ));
        assert_eq!(
            classify("42501", Some(&Answer::NotApproved("x".into())), false),
            ExecErrorKind::ReviewRejected
        );
        assert_eq!(
            classify("42501", Some(&Answer::Pending("x".into())), false),
            ExecErrorKind::ReviewPending
        );
        assert_eq!(classify("57014", None, true), ExecErrorKind::Timeout);
        assert_eq!(
            classify("42501", Some(&Answer::NotApproved("x".into())), true),
            ExecErrorKind::Timeout
        );
        // NULs never reach the wire, so a told message with one still matches.
        let (tx, rx) = crate::tunnel::Answers::new();
        let mut told = Told {
            rx,
            queue: VecDeque::new(),
        };
        let _ = tx.0.send(Answer::NotApproved("rejected: a\0b".into()));
        assert!(told.take("rejected: ab").is_some());
        assert_eq!(classify("57014", None, false), ExecErrorKind::Statement);
    }
}
