//! The wire contract of `POST /api/v1/connections/{name}/exec` (`hoop exec`).
//!
//! The request is one JSON object ([`ExecRequest`]). Once the gateway has authorised it, the
//! answer is `200` with `application/x-ndjson`: one [`ExecEvent`] per line, in the order the
//! target produced them, streamed as they are produced. The last line is always a `done` event;
//! a stream that ends without one was cut (the CLI reports it as a gateway failure).

use serde::{Deserialize, Serialize};

/// The NDJSON content type of an exec answer.
pub const EXEC_CONTENT_TYPE: &str = "application/x-ndjson";

/// What to do when a statement needs a review (`review.statements` on the connection).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum ExecReviewMode {
    /// Hold the statement until it is decided or the connection's `statement_timeout` passes
    /// (what an interactive session does).
    #[default]
    Hold,
    /// File the review and wait at most `secs` (0: not at all). Still pending then: the
    /// answer is a `review` event with state `pending`, and the review stays pending so that
    /// `--review <id>` can run the statement once it is approved.
    Wait {
        /// Seconds to wait for a decision.
        secs: u64,
    },
    /// Run a statement whose review was already approved. The gateway checks the review is a
    /// statement review on this connection, filed by the caller, approved, and for exactly
    /// this statement text; running it marks it executed (once).
    Approved {
        /// The approved review.
        review: i64,
    },
}

/// The request body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The input: SQL for PostgreSQL (several statements separated by `;` run as one simple
    /// query, i.e. in one implicit transaction); for SSH one command line for the remote shell.
    pub input: String,
    /// What to do with a statement that needs review.
    #[serde(default)]
    pub review: ExecReviewMode,
    /// Stop the statement after this many seconds (the target's statement is cancelled).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// One result column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecColumn {
    /// Column name.
    pub name: String,
    /// The target's type id (PostgreSQL type OID).
    pub type_oid: u32,
}

/// The stream an `output` event belongs to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Why an `error` event ended the input.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecErrorKind {
    /// The target refused the statement (its SQLSTATE is given).
    Statement,
    /// A guardrail blocked it; it never reached the target.
    Blocked,
    /// Its review was rejected, expired, or does not cover this statement.
    ReviewRejected,
    /// Its review is still pending and the caller chose not to wait (longer); the `review`
    /// event before this one names it.
    ReviewPending,
    /// The `timeout_secs` limit was reached and the statement was cancelled.
    Timeout,
    /// The session could not start or was ended (target unreachable, recording failed,
    /// access grant ended...).
    Session,
}

/// One line of the answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum ExecEvent {
    /// A result set begins.
    Columns {
        /// Its columns.
        columns: Vec<ExecColumn>,
    },
    /// One row of the current result set, as text (masking applied); `null` is SQL NULL.
    Row {
        /// Values, one per column.
        values: Vec<Option<String>>,
    },
    /// A statement finished.
    Complete {
        /// The command tag (`SELECT 3`, `INSERT 0 1`).
        command: String,
    },
    /// Output of a remote command (SSH connections), masking applied, as it arrives. Text:
    /// bytes that are not UTF-8 arrive as U+FFFD (use `hoop ssh` or scp for binary data).
    Output {
        /// Which stream.
        stream: ExecStream,
        /// The text.
        data: String,
    },
    /// The remote command ended (SSH connections): its exit status, or the signal it died of.
    Exit {
        /// The exit status (0–255), when it exited.
        status: Option<u32>,
        /// The signal's name (`TERM`, `KILL`...), when it was killed.
        signal: Option<String>,
    },
    /// A notice from the target or the gateway.
    Notice {
        /// Severity (`NOTICE`, `WARNING`...).
        severity: String,
        /// The text.
        message: String,
    },
    /// A statement needs a review.
    Review {
        /// The review id (`hoop approve <id>`).
        id: i64,
        /// `pending` when the answer ends without a decision.
        state: String,
        /// What the gateway said about it.
        message: String,
    },
    /// The input failed; nothing after it ran.
    Error {
        /// Why.
        kind: ExecErrorKind,
        /// SQLSTATE (PostgreSQL), empty when there is none.
        sqlstate: String,
        /// The message.
        message: String,
    },
    /// The last line: the session ended. `ok` is false after an `error` (and, on SSH
    /// connections, when the command did not exit 0).
    Done {
        /// True when every statement succeeded.
        ok: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_single_lines() {
        let events = vec![
            ExecEvent::Columns {
                columns: vec![ExecColumn {
                    name: "id".into(),
                    type_oid: 23,
                }],
            },
            ExecEvent::Row {
                values: vec![Some("1".into()), None],
            },
            ExecEvent::Complete {
                command: "SELECT 1".into(),
            },
            ExecEvent::Error {
                kind: ExecErrorKind::Blocked,
                sqlstate: "42501".into(),
                message: "blocked".into(),
            },
            ExecEvent::Output {
                stream: ExecStream::Stderr,
                data: "line 1\nline 2\n".into(),
            },
            ExecEvent::Exit {
                status: Some(3),
                signal: None,
            },
            ExecEvent::Done { ok: false },
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap_or_default();
            assert!(!line.contains('\n'));
            let back: ExecEvent =
                serde_json::from_str(&line).unwrap_or(ExecEvent::Done { ok: true });
            assert_eq!(back, e);
        }
    }

    #[test]
    fn review_mode_defaults_to_hold() {
        let r: Result<ExecRequest, _> = serde_json::from_str(r#"{"input":"select 1"}"#);
        assert_eq!(r.map(|r| r.review).ok(), Some(ExecReviewMode::Hold));
        let r: Result<ExecRequest, _> =
            serde_json::from_str(r#"{"input":"x","review":{"mode":"wait","secs":0}}"#);
        assert_eq!(
            r.map(|r| r.review).ok(),
            Some(ExecReviewMode::Wait { secs: 0 })
        );
    }
}
