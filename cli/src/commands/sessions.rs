//! `hoop sessions`: recorded sessions (yours, or everyone's for admins and auditors), and
//! `hoop sessions show <id>`: one session with its statement log.

use std::time::Duration;

use hoop_shared::api::{SessionInfo, SessionState, StatementInfo};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Ctx;
use crate::auth::{authed_get, open_store};
use crate::exit::{CliResult, internal, usage};
use crate::ui::{OutputFormat, out, out_json, out_table};

/// Statements fetched per request by `show`.
const PAGE: usize = 1000;

/// `hoop sessions` flags; without a subcommand it lists.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SessionsArgs {
    /// `show <id>`.
    #[command(subcommand)]
    pub command: Option<SessionsCommand>,
    /// Listing filters.
    #[command(flatten)]
    pub list: ListArgs,
}

/// `hoop sessions` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SessionsCommand {
    /// Show one session and its statement log.
    Show {
        /// The session id (first column of `hoop sessions`).
        id: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// Filters of the listing.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this user's sessions (subject or name).
    #[arg(long)]
    pub user: Option<String>,
    /// Only sessions on this connection.
    #[arg(long)]
    pub connection: Option<String>,
    /// Only sessions started since: a time span ago (`1h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only sessions started before: a time span ago or an RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only sessions with a statement of this verdict: `block` (something was blocked) or `allow`.
    #[arg(long, value_parser = ["block", "allow"])]
    pub verdict: Option<String>,
    /// At most this many sessions, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Runs `hoop sessions`.
pub async fn run(ctx: &Ctx, args: SessionsArgs) -> CliResult<()> {
    match args.command {
        Some(SessionsCommand::Show { id, output }) => show(ctx, &id, output).await,
        None => list(ctx, args.list).await,
    }
}

/// `1h` (that long ago) or an RFC 3339 time, as RFC 3339 for the API.
pub(crate) fn parse_when(flag: &str, v: &str, now: OffsetDateTime) -> CliResult<String> {
    let t = if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        t
    } else if let Ok(d) = humantime::parse_duration(v) {
        time::Duration::try_from(d)
            .ok()
            .and_then(|d| now.checked_sub(d))
            .ok_or_else(|| usage(format!("--{flag} {v} reaches too far back")))?
    } else {
        return Err(usage(format!(
            "--{flag} takes a time span such as 1h or 7d, or an RFC 3339 time such as 2025-01-31T09:00:00Z; got {v:?}"
        )));
    };
    t.format(&Rfc3339)
        .map_err(|e| internal(format!("cannot format a time: {e}")))
}

/// The API path of a session (the id percent-encoded as one path segment).
fn session_path(id: &str, tail: &str) -> CliResult<String> {
    let mut u =
        url::Url::parse("https://gateway/api/v1/sessions").map_err(|e| internal(e.to_string()))?;
    u.path_segments_mut()
        .map_err(|_| internal("cannot build a URL"))?
        .push(id)
        .extend(tail.split('/').filter(|s| !s.is_empty()));
    Ok(u.path().to_string())
}

fn list_path(a: &ListArgs, now: OffsetDateTime) -> CliResult<String> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(u) = &a.user {
        q.append_pair("user", u);
    }
    if let Some(c) = &a.connection {
        q.append_pair("connection", c);
    }
    if let Some(s) = &a.since {
        q.append_pair("since", &parse_when("since", s, now)?);
    }
    if let Some(s) = &a.until {
        q.append_pair("until", &parse_when("until", s, now)?);
    }
    if let Some(v) = &a.verdict {
        q.append_pair("verdict", v);
    }
    q.append_pair("limit", &a.limit.to_string());
    Ok(format!("/api/v1/sessions?{}", q.finish()))
}

async fn list(ctx: &Ctx, args: ListArgs) -> CliResult<()> {
    let path = list_path(&args, OffsetDateTime::now_utc())?;
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let list: Vec<SessionInfo> = authed_get(&gw, &store, ctx.token.as_deref(), &path).await?;
    match args.output {
        OutputFormat::Json => out_json(&list),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        clean(&s.id),
                        clean(&s.name),
                        clean(&s.connection),
                        when(&s.started_at),
                        duration_of(s),
                        s.statements.to_string(),
                        s.blocked.to_string(),
                        s.masked.values().sum::<u64>().to_string(),
                    ]
                })
                .collect();
            out_table(
                &[
                    "ID",
                    "USER",
                    "CONNECTION",
                    "STARTED",
                    "DURATION",
                    "STATEMENTS",
                    "BLOCKED",
                    "MASKED",
                ],
                &rows,
            )
        }
    }
}

async fn show(ctx: &Ctx, id: &str, output: OutputFormat) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let token = ctx.token.as_deref();
    let session: SessionInfo = authed_get(&gw, &store, token, &session_path(id, "")?).await?;
    let base = session_path(id, "statements")?;
    let mut statements: Vec<StatementInfo> = Vec::new();
    loop {
        let path = match statements.last() {
            Some(last) => format!("{base}?limit={PAGE}&after={}", last.seq),
            None => format!("{base}?limit={PAGE}"),
        };
        let page: Vec<StatementInfo> = authed_get(&gw, &store, token, &path).await?;
        let full = page.len() >= PAGE;
        statements.extend(page);
        if !full {
            break;
        }
    }
    match output {
        OutputFormat::Json => out_json(&json!({ "session": session, "statements": statements })),
        OutputFormat::Table => {
            out(&header(&session))?;
            if statements.is_empty() {
                return out("\nNo statements recorded.\n");
            }
            out("\n")?;
            let rows: Vec<Vec<String>> = statements.iter().map(statement_row).collect();
            out_table(
                &["TIME", "RESULT", "ROWS/CODE", "DURATION", "STATEMENT"],
                &rows,
            )
        }
    }
}

fn header(s: &SessionInfo) -> String {
    let user = if s.name == s.subject {
        clean(&s.name)
    } else {
        format!("{} (subject {})", clean(&s.name), clean(&s.subject))
    };
    let ended = match (s.state, &s.ended_at) {
        (SessionState::Ended, Some(at)) => format!(
            "{}, after {}{}",
            when(at),
            duration_of(s),
            s.end_reason
                .as_deref()
                .map(|r| format!(": {}", clean(r)))
                .unwrap_or_default()
        ),
        _ => "active".to_string(),
    };
    let masked = if s.masked.is_empty() {
        "none".to_string()
    } else {
        s.masked
            .iter()
            .map(|(k, v)| format!("{} {v}", clean(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "Session:     {}\nUser:        {user}\nConnection:  {} ({})\nClient:      {}\nStarted:     {}\nEnded:       {ended}\n",
        clean(&s.id),
        clean(&s.connection),
        clean(&s.kind),
        s.client_addr
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| "-".into()),
        when(&s.started_at),
    );
    if s.state == SessionState::Ended {
        text.push_str(&format!(
            "Traffic:     {} up, {} down\n",
            bytes(s.bytes_up),
            bytes(s.bytes_down)
        ));
    }
    text.push_str(&format!(
        "Statements:  {} ({} blocked)\nMasked:      {masked}\n",
        s.statements, s.blocked
    ));
    text
}

fn statement_row(st: &StatementInfo) -> Vec<String> {
    let result = if st.verdict == "block" {
        match &st.rule {
            Some(r) => format!("blocked ({})", clean(r)),
            None => "blocked".to_string(),
        }
    } else {
        clean(&st.outcome)
    };
    let code = match (&st.sqlstate, st.rows) {
        (Some(code), _) => format!("SQLSTATE {}", clean(code)),
        (None, Some(1)) => "1 row".to_string(),
        (None, Some(n)) => format!("{n} rows"),
        (None, None) => "-".to_string(),
    };
    let mut text = clean(&st.text);
    if !st.params.is_empty() {
        let params: Vec<String> = st
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Some(v) => format!("${}='{}'", i + 1, clean(v)),
                None => format!("${}=NULL", i + 1),
            })
            .collect();
        text.push_str(&format!("  -- {}", params.join(", ")));
    }
    vec![clock(&st.at), result, code, micros(st.duration_us), text]
}

/// One line of terminal-safe text: whitespace runs become one space and other control
/// characters are escaped, so recorded text (typed by whoever ran the session) cannot move the
/// cursor or recolour the auditor's terminal.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
            continue;
        }
        space = false;
        if c.is_control() || is_bidi(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bidirectional overrides and isolates: they make text display in another order than stored
/// ("trojan source"), so a recorded statement could read as something it is not.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `2025-01-31 09:00:00Z` from RFC 3339 (UTC: a listing means the same to everyone reading it).
pub(crate) fn when(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second]Z"
                ))
                .ok()
        })
        .unwrap_or_else(|| clean(rfc3339))
}

/// `09:00:00.123` (UTC) for the statement log, whose date the header gives.
fn clock(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(time::macros::format_description!(
                    "[hour]:[minute]:[second].[subsecond digits:3]"
                ))
                .ok()
        })
        .unwrap_or_else(|| clean(rfc3339))
}

fn duration_of(s: &SessionInfo) -> String {
    match (s.state, s.duration_ms) {
        (SessionState::Ended, Some(ms)) => {
            // Whole seconds past a second: milliseconds of a long session are noise.
            let d = if ms >= 1000 {
                Duration::from_secs(ms / 1000)
            } else {
                Duration::from_millis(ms)
            };
            humantime::format_duration(d).to_string()
        }
        _ => "active".to_string(),
    }
}

fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = "KiB";
    for u in UNITS.iter().skip(1) {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn info() -> SessionInfo {
        SessionInfo {
            id: "s1".into(),
            subject: "u-123".into(),
            name: "alice".into(),
            connection: "prod-db".into(),
            kind: "postgres".into(),
            client_addr: Some("127.0.0.1:5555".into()),
            started_at: "2025-01-31T09:00:00.5Z".into(),
            ended_at: Some("2025-01-31T10:01:02Z".into()),
            state: SessionState::Ended,
            duration_ms: Some(3_661_500),
            bytes_up: 100,
            bytes_down: 3 * 1024 * 1024,
            statements: 2,
            blocked: 1,
            masked: BTreeMap::from([("email".to_string(), 3)]),
            end_reason: Some("client closed".into()),
        }
    }

    #[test]
    fn parses_list_and_show() {
        let c = Cli::try_parse_from(["hoop", "sessions", "--user", "bob", "--limit", "5"]).unwrap();
        let Command::Sessions(a) = c.command else {
            unreachable!()
        };
        assert!(a.command.is_none());
        assert_eq!(a.list.user.as_deref(), Some("bob"));
        assert_eq!(a.list.limit, 5);
        let c = Cli::try_parse_from(["hoop", "sessions", "show", "s1", "-o", "json"]).unwrap();
        let Command::Sessions(a) = c.command else {
            unreachable!()
        };
        assert!(matches!(
            a.command,
            Some(SessionsCommand::Show { ref id, output: OutputFormat::Json }) if id == "s1"
        ));
        assert!(Cli::try_parse_from(["hoop", "sessions", "--limit", "0"]).is_err());
    }

    #[test]
    fn since_takes_spans_and_times() {
        let now = OffsetDateTime::parse("2025-01-31T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(
            parse_when("since", "1h", now).unwrap(),
            "2025-01-31T11:00:00Z"
        );
        assert_eq!(
            parse_when("since", "2025-01-30T00:00:00+02:00", now).unwrap(),
            "2025-01-30T00:00:00+02:00"
        );
        assert!(parse_when("since", "yesterday", now).is_err());
        let a = ListArgs {
            user: Some("a b&c".into()),
            connection: None,
            since: Some("30m".into()),
            until: None,
            verdict: None,
            limit: 50,
            output: OutputFormat::Table,
        };
        assert_eq!(
            list_path(&a, now).unwrap(),
            "/api/v1/sessions?user=a+b%26c&since=2025-01-31T11%3A30%3A00Z&limit=50"
        );
        assert_eq!(
            session_path("a/b c", "statements").unwrap(),
            "/api/v1/sessions/a%2Fb%20c/statements"
        );
    }

    #[test]
    fn recorded_text_cannot_drive_the_terminal() {
        assert_eq!(clean("SELECT\n  1;\t-- x"), "SELECT 1; -- x");
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn renders_header_and_rows() {
        let s = info();
        assert_eq!(duration_of(&s), "1h 1m 1s");
        assert_eq!(when(&s.started_at), "2025-01-31 09:00:00Z");
        let h = header(&s);
        assert!(h.contains("User:        alice (subject u-123)"), "{h}");
        assert!(h.contains("Ended:       2025-01-31 10:01:02Z, after 1h 1m 1s: client closed"));
        assert!(h.contains("Traffic:     100 B up, 3.0 MiB down"));
        assert!(h.contains("Masked:      email 3"));
        let active = SessionInfo {
            state: SessionState::Active,
            ended_at: None,
            duration_ms: None,
            ..info()
        };
        assert_eq!(duration_of(&active), "active");
        assert!(header(&active).contains("Ended:       active"));

        let st = StatementInfo {
            seq: 1,
            at: "2025-01-31T09:00:01.25Z".into(),
            text: "DROP TABLE x".into(),
            params: vec![Some("a".into()), None],
            verdict: "block".into(),
            rule: Some("no-ddl".into()),
            reason: Some("DDL".into()),
            outcome: "blocked".into(),
            tag: None,
            sqlstate: Some("42501".into()),
            rows: None,
            duration_us: 1500,
            masked: BTreeMap::new(),
        };
        assert_eq!(
            statement_row(&st),
            [
                "09:00:01.250",
                "blocked (no-ddl)",
                "SQLSTATE 42501",
                "1.5ms",
                "DROP TABLE x  -- $1='a', $2=NULL"
            ]
        );
    }
}
