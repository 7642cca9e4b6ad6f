//! Exit codes and the error type that carries them.
//!
//! hoop's own codes live in 80–99. A remote command's exit status (later: `hoop ssh`, `hoop
//! exec` on a host) passes through unchanged, and remote programs rarely use this range:
//! shells use 1–2 and 126–127, signals 128+n, `sysexits.h` 64–78.

use std::fmt;

/// One row of the documented exit-code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The statement or remote command failed (its own error is printed).
    Failed = 1,
    /// Bad flags or arguments.
    Usage = 80,
    /// Not logged in, or the session expired and could not be refreshed.
    NotAuthenticated = 81,
    /// Logged in, but not allowed (no group grants it).
    AccessDenied = 82,
    /// The gateway could not be reached.
    Unreachable = 83,
    /// The gateway's certificate is not trusted or differs from the pinned one.
    Certificate = 84,
    /// The named connection, review or session does not exist.
    NotFound = 85,
    /// A guardrail blocked the statement or command.
    Blocked = 86,
    /// The review was rejected, expired or withdrawn.
    ReviewRejected = 87,
    /// The review is still pending (`--no-wait`).
    ReviewPending = 88,
    /// A time limit was reached.
    Timeout = 89,
    /// The gateway answered with an error, or hoop itself failed.
    Internal = 90,
    /// An audit export does not verify (altered, truncated, or another gateway's key).
    VerifyFailed = 91,
}

impl Exit {
    /// Every code with its meaning, for `--help` and the README.
    pub const TABLE: &'static [(Exit, &'static str)] = &[
        (Exit::Ok, "success"),
        (Exit::Failed, "the statement or remote command failed"),
        (Exit::Usage, "usage error (bad flags or arguments)"),
        (
            Exit::NotAuthenticated,
            "not logged in, or the session expired: run `hoop login`",
        ),
        (
            Exit::AccessDenied,
            "access denied: none of your groups may do this",
        ),
        (Exit::Unreachable, "the gateway could not be reached"),
        (
            Exit::Certificate,
            "the gateway's TLS certificate is untrusted or changed",
        ),
        (Exit::NotFound, "no such connection, review or session"),
        (Exit::Blocked, "blocked by a guardrail"),
        (
            Exit::ReviewRejected,
            "review rejected, expired or withdrawn",
        ),
        (Exit::ReviewPending, "review pending (--no-wait)"),
        (Exit::Timeout, "a time limit was reached"),
        (
            Exit::Internal,
            "the gateway reported an error, or hoop failed",
        ),
        (
            Exit::VerifyFailed,
            "an audit export does not verify (altered, truncated or wrong key)",
        ),
    ];

    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The exit-code table as help text.
pub fn table_text() -> String {
    let mut s = String::from("Exit codes:\n");
    for (e, what) in Exit::TABLE {
        s.push_str(&format!("  {:>3}  {what}\n", e.code()));
    }
    s
}

/// An error that ends the program with a given exit code and a one-line message.
#[derive(Debug)]
pub struct CliError {
    /// How the process exits.
    pub exit: Exit,
    /// What went wrong and what to do, one line.
    pub message: String,
}

impl CliError {
    /// Builds an error.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Result alias for commands.
pub type CliResult<T> = Result<T, CliError>;

/// Shorthand constructors.
pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::new(Exit::Usage, msg)
}

/// An internal failure (I/O on local files, serialisation).
pub fn internal(msg: impl Into<String>) -> CliError {
    CliError::new(Exit::Internal, msg)
}
