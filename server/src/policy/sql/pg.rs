//! The one module that calls `pg_query` (libpg_query: PostgreSQL's own scanner and parser, built
//! from the PostgreSQL 18 sources). The crate is pinned to an exact version in Cargo.toml: its
//! tree types are generated from PostgreSQL's and change between releases, and `walk.rs` is
//! generated from them.
//!
//! Three things about libpg_query shape this wrapper:
//! - Its parse functions point the process's stderr (fd 2) at a pipe while they run, to capture
//!   PostgreSQL's warnings, and put it back afterwards. Two threads doing that at once can leave
//!   fd 2 pointing at a closed pipe for good (the second restores the first one's pipe), which
//!   would silently end the gateway's logging. Every call that redirects runs under one lock,
//!   and the gateway logs to a copy of fd 2 taken at start (`cmd.rs`), so a line logged by
//!   another thread during a parse is not swallowed by the pipe.
//! - A failed parse with `standard_conforming_strings` off leaves that setting off in the
//!   thread's copy of the global, and the scanner and the PL/pgSQL parser read it. After such a
//!   failure an empty parse with default options puts it back.
//! - The Rust side decodes the tree from protobuf with prost's recursion limit (100 messages
//!   deep), so an expression nested deeper than about 45 levels fails to decode. That is an
//!   error like any other here: the caller fails closed.
//!
//! A panic inside the crate (its result post-processing indexes and casts) is caught and turned
//! into an error, so hostile text can never take down the session that sent it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use pg_query::protobuf::{ParseResult, ScanToken};
use pg_query::{NodeEnum, ParserOptions};

/// Held while libpg_query has fd 2 redirected (see the module docs).
static STDERR_REDIRECT: Mutex<()> = Mutex::new(());

/// Which grammar entry point to parse with: whole statements, or the pieces PL/pgSQL hands
/// to the SQL parser (`PLpgSQL_expr.parseMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Statements (`parseMode` 0).
    Statements,
    /// A PL/pgSQL expression (`parseMode` 2).
    Expression,
    /// A PL/pgSQL assignment `a := ...`, `a.b := ...`, `a.b.c := ...` (`parseMode` 3 to 5).
    Assignment(u8),
}

impl Mode {
    /// The mode of a PL/pgSQL `parseMode` number, if it is one the gateway knows.
    pub(super) fn from_plpgsql(mode: i64) -> Option<Mode> {
        match mode {
            0 => Some(Mode::Statements),
            2 => Some(Mode::Expression),
            3..=5 => u8::try_from(mode - 2).ok().map(Mode::Assignment),
            _ => None,
        }
    }

    fn options(self) -> ParserOptions {
        match self {
            Mode::Statements => ParserOptions::DEFAULT,
            Mode::Expression => ParserOptions::PLPGSQL_EXPR,
            Mode::Assignment(1) => ParserOptions::PLPGSQL_ASSIGN1,
            Mode::Assignment(2) => ParserOptions::PLPGSQL_ASSIGN2,
            Mode::Assignment(_) => ParserOptions::PLPGSQL_ASSIGN3,
        }
    }
}

/// Why libpg_query did not return a tree. The message never quotes the input (it may hold a
/// secret: `unterminated quoted string at or near "'4111...`), so it can go into a block
/// reason, the audit log and the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParseError(pub(super) String);

/// The tokens of `sql` as PostgreSQL's scanner reads it with `standard_conforming_strings` on
/// (comments included; whitespace is not a token).
pub(super) fn scan(sql: &str) -> Result<Vec<ScanToken>, ParseError> {
    // Text of nothing but whitespace has no token, and pg_query then builds a slice from a
    // null pointer (an abort in a debug build). PostgreSQL's whitespace is exactly these
    // bytes; anything else is a token or a scanner error.
    if sql
        .bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        return Ok(Vec::new());
    }
    // The scanner does not redirect stderr, so it needs no lock.
    match catch_unwind(|| pg_query::scan_tokens(sql)) {
        Ok(Ok(tokens)) => Ok(tokens),
        Ok(Err(e)) => Err(ParseError(sanitize(&e.to_string()))),
        Err(_) => Err(ParseError("the scanner failed".into())),
    }
}

/// Parses `sql` with PostgreSQL's grammar. `standard` is `standard_conforming_strings`.
pub(super) fn parse(sql: &str, mode: Mode, standard: bool) -> Result<ParseResult, ParseError> {
    let mut options = mode.options() | ParserOptions::DISABLE_ESCAPE_STRING_WARNING;
    if !standard {
        options |= ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS;
    }
    let _redirect = STDERR_REDIRECT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = catch_unwind(|| pg_query::parse(sql, options));
    let failed = !matches!(result, Ok(Ok(_)));
    if failed && !standard {
        reset_globals();
    }
    match result {
        Ok(Ok(parsed)) => Ok(parsed.protobuf),
        Ok(Err(pg_query::Error::Decode(_))) => Err(ParseError(
            "nested more deeply than the gateway reads (about 45 levels)".into(),
        )),
        Ok(Err(e)) => Err(ParseError(sanitize(&e.to_string()))),
        Err(_) => Err(ParseError("the parser failed".into())),
    }
}

/// The PL/pgSQL functions libpg_query compiles from `text` (a `CREATE FUNCTION` or `DO`
/// statement), as JSON.
pub(super) fn parse_plpgsql(text: &str) -> Result<serde_json::Value, ParseError> {
    let _redirect = STDERR_REDIRECT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match catch_unwind(|| pg_query::parse_plpgsql(text)) {
        Ok(Ok(json)) => Ok(json),
        Ok(Err(e)) => Err(ParseError(sanitize(&e.to_string()))),
        Err(_) => Err(ParseError("the PL/pgSQL parser failed".into())),
    }
}

/// SQL text for one statement node, as PostgreSQL's deparser prints it.
pub(super) fn deparse(node: &NodeEnum) -> Result<String, ParseError> {
    // The deparser does not redirect stderr. `AssertUnwindSafe`: the node is only read.
    match catch_unwind(AssertUnwindSafe(|| node.deparse(Default::default()))) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(ParseError(sanitize(&e.to_string()))),
        Err(_) => Err(ParseError("the deparser failed".into())),
    }
}

/// Puts `standard_conforming_strings` (and the other parser settings) back to their defaults
/// on this thread: a successful parse with default options leaves them so.
fn reset_globals() {
    let _ = catch_unwind(|| pg_query::parse("", ParserOptions::DEFAULT));
}

/// The error without the part that quotes the input, and without the crate's prefix.
fn sanitize(message: &str) -> String {
    let message = message
        .strip_prefix("Invalid statement: ")
        .or_else(|| message.strip_prefix("Error scanning: "))
        .unwrap_or(message);
    let cut = [" at or near ", "\""]
        .iter()
        .filter_map(|m| message.find(m))
        .min()
        .unwrap_or(message.len());
    let kept = message.get(..cut).unwrap_or(message).trim();
    if kept.is_empty() {
        "syntax error".into()
    } else {
        kept.to_owned()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_quote_the_input() {
        for sql in [
            "select 'card 4111 1111 1111 1111",
            "selec secret_value",
            "select $x$ never closed",
            "select \"unterminated",
        ] {
            let e = parse(sql, Mode::Statements, true).unwrap_err();
            assert!(
                !e.0.contains("4111") && !e.0.contains("secret") && !e.0.contains("never"),
                "{sql}: {e:?}"
            );
            assert!(!e.0.is_empty());
        }
    }

    #[test]
    fn a_failed_parse_with_backslash_escapes_does_not_change_later_scans() {
        // Unterminated with backslash escapes (the `\'` escapes the quote).
        assert!(parse("select 'a\\'", Mode::Statements, false).is_err());
        // With standard_conforming_strings on, `'a\'` is a whole string.
        let tokens = scan("select 'a\\', 1").unwrap();
        assert_eq!(tokens.len(), 4, "{tokens:?}");
        assert!(parse("select 'a\\', 1", Mode::Statements, true).is_ok());
    }

    #[test]
    fn whitespace_only_text_has_no_tokens() {
        for sql in ["", " ", "\t\n\r\x0b\x0c "] {
            assert_eq!(scan(sql).unwrap().len(), 0, "{sql:?}");
        }
        // A non-breaking space is not PostgreSQL whitespace: an identifier character.
        assert_eq!(scan("\u{a0}").unwrap().len(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for sql in [
            format!("select {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("select 1{}", "+1".repeat(100_000)),
            format!("select 1{}", "+1".repeat(60)),
            format!("select {}1{}", "f(".repeat(10_000), ")".repeat(10_000)),
        ] {
            assert!(parse(&sql, Mode::Statements, true).is_err());
        }
    }

    #[test]
    fn concurrent_parses_leave_stderr_alone() {
        let before = rustix::fs::fstat(std::io::stderr()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    for n in 0..200 {
                        let sql = if n % 2 == 0 {
                            format!("select {i}, {n}")
                        } else {
                            format!("selec {i}")
                        };
                        let _ = parse(&sql, Mode::Statements, n % 3 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // fd 2 is the file it was, not a pipe some parse left behind.
        let after = rustix::fs::fstat(std::io::stderr()).unwrap();
        assert_eq!((before.st_dev, before.st_ino), (after.st_dev, after.st_ino));
    }
}
