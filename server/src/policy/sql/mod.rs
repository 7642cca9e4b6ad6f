//! SQL statement analysis for guardrails and reviews, on PostgreSQL's own grammar.
//!
//! [`analyze`] turns the text of a simple-protocol Query or an extended-protocol Parse into one
//! [`StatementInfo`] per statement: what kind of statement it is, its class (read / write / ddl
//! / admin / session / other), the deny kinds it matches, whether it writes without a bound, the
//! functions it calls and the tables it names. It is IO-free and knows nothing about the wire
//! protocol.
//!
//! How it reads the text:
//! - Lexing, statement boundaries and parse trees come from libpg_query (`pg_query`), the
//!   scanner and grammar of PostgreSQL 18 itself: dollar quotes with any tag PostgreSQL accepts,
//!   `E''`, `U&''` and `U&""` with `UESCAPE`, nested comments and every statement type read the
//!   way the server reads them. Nothing is tokenized by hand.
//! - `standard_conforming_strings` changes how `'...\'...'` lexes, a client can turn it off
//!   (SET, `set_config`, a function's SET clause), and with pipelining the gateway may not know
//!   the session's value when it judges a text. So when a plain string holds a backslash the
//!   text is parsed both ways and the statements of both readings are judged
//!   ([`Reading`]; a statement only the other reading has is marked so). [`analyze_with`] takes
//!   the reading to report first.
//! - A text PostgreSQL's grammar rejects runs nothing on the server either; it is reported as one
//!   [`StatementKind::Unparsed`] statement that every rule set able to deny something blocks
//!   ([`StatementInfo::unverifiable`]), as is anything else the gateway cannot read.
//! - `EXPLAIN ANALYZE <stmt>` and `PREPARE p AS <stmt>` are judged as `<stmt>`; `EXECUTE p`
//!   names the prepared statement ([`StatementInfo::execute_name`]) so the caller judges its
//!   text. Data-modifying CTEs, `SELECT INTO`, row locks and nested statements are found
//!   anywhere in the tree.
//! - Every node of the tree is visited (`walk.rs` is generated from the tree types), so a function
//!   is seen wherever it is called: defaults, CHECK constraints, index expressions, views,
//!   policies, `COPY (query)`, `CALL`, and in functional notation (`(x).f`, `t.f`), where a
//!   field named like a listed function counts as a call.
//! - Bodies of `DO` blocks and functions (`LANGUAGE sql`, `plpgsql`, `BEGIN ATOMIC`) are
//!   analyzed too; PL/pgSQL bodies with PostgreSQL's PL/pgSQL parser, every SQL expression in
//!   them as SQL. `EXECUTE` of a constant string is analyzed; SQL built at run time cannot be.
//! - Text longer than [`MAX_SQL_BYTES`], of more than [`MAX_TOKENS`] tokens or more than
//!   [`MAX_STATEMENTS`] statements is not analyzed ([`StatementKind::TooLong`]); every guardrail
//!   blocks it. The bounds keep the worst parse to about a quarter of a second.
//!
//! Known limits (a guardrail on top of database permissions, not a replacement for them: grant
//! the gateway's database role only what it needs) are listed in docs/policy.md.

mod bodies;
mod catalog;
mod collect;
mod constant;
mod functions;
mod info;
mod lex;
mod pg;
mod statement;
mod walk;

pub use functions::{
    DANGEROUS_FUNCTIONS, WRITE_FUNCTIONS, has_side_effects, is_side_effect_free, is_utf8_encoding,
};
pub use info::{
    CopyDirection, CopyEndpoint, CopyFormat, CopyInfo, DENY_KINDS, FunctionRef, Keyword, Notation,
    PreparedDef, Reading, StatementClass, StatementInfo, StatementKind, is_deny_kind,
};
#[cfg(test)]
pub(crate) use lex::token_stream as lex_for_tests;
pub use lex::{CacheKey, cache_key};

/// Text longer than this (in bytes) is not analyzed and is blocked by every guardrail.
pub const MAX_SQL_BYTES: usize = 1024 * 1024;

/// Texts of more tokens than this are not analyzed (blocked like text over
/// [`MAX_SQL_BYTES`]). Parsing costs up to a few microseconds per token (libpg_query builds the
/// tree, encodes it as protobuf, the crate decodes it), and the analysis runs on the session's
/// own task, so this keeps the worst text to about a quarter of a second of CPU; 50,000 tokens
/// is a multi-row INSERT of 4,000 rows of 5 columns. Bodies inside the text share the budget.
pub const MAX_TOKENS: usize = 50_000;

/// More statements than this in one text are not analyzed and are blocked like text over
/// [`MAX_SQL_BYTES`].
pub const MAX_STATEMENTS: usize = 10_000;

/// How deep bodies inside bodies are analyzed (a DO block that runs `EXECUTE` of a string that
/// holds another DO block...); deeper text is not checked.
const MAX_BODY_DEPTH: usize = 4;

/// How much nested text (bodies) one analysis may still read, shared by everything inside one
/// top-level text so that bodies within bodies cannot multiply the work.
struct Budget {
    tokens: usize,
}

/// Analyzes `sql`: one [`StatementInfo`] per statement, in order, the standard reading first;
/// statements only the backslash-escape reading has follow. Empty text or text of only comments
/// gives an empty list.
pub fn analyze(sql: &str) -> Vec<StatementInfo> {
    analyze_with(sql, Reading::Standard)
}

/// [`analyze`] with `primary` as the reading to report first (the session's
/// `standard_conforming_strings`, when the caller knows it). Statements the other reading adds
/// follow, marked with that reading.
pub fn analyze_with(sql: &str, primary: Reading) -> Vec<StatementInfo> {
    let mut budget = Budget { tokens: MAX_TOKENS };
    analyze_text(sql, primary, &mut budget, 0)
}

/// The parse trees of `sql` in each reading the server may use: with
/// `standard_conforming_strings` on and, when the text has a backslash (the only byte the two
/// readings treat differently), off. A reading the grammar rejects is left out; the server
/// would reject that text too. Callers outside the analysis (masking lineage, the session
/// catalog) parse through here so every call to libpg_query holds its stderr lock.
pub fn parse_trees(sql: &str) -> Vec<pg_query::protobuf::ParseResult> {
    let mut trees = Vec::with_capacity(2);
    if let Ok(t) = pg::parse(sql, pg::Mode::Statements, true) {
        trees.push(t);
    }
    if sql.contains('\\')
        && let Ok(t) = pg::parse(sql, pg::Mode::Statements, false)
        && trees.first() != Some(&t)
    {
        trees.push(t);
    }
    trees
}

/// The one parse tree of `sql`, when every reading that parses gives the same tree (see
/// [`parse_trees`]); `None` when the text does not parse or reads two ways.
pub fn parse_tree(sql: &str) -> Option<pg_query::protobuf::ParseResult> {
    let mut trees = parse_trees(sql);
    if trees.len() == 1 { trees.pop() } else { None }
}

/// Analyzes one text (top-level, or a body at `depth`).
fn analyze_text(
    sql: &str,
    primary: Reading,
    budget: &mut Budget,
    depth: usize,
) -> Vec<StatementInfo> {
    if sql.len() > MAX_SQL_BYTES {
        return vec![StatementInfo::too_long(
            format!("statement longer than {MAX_SQL_BYTES} bytes"),
            sql,
        )];
    }
    let lexed = lex::Lexed::scan(sql);
    let cost = lexed.as_ref().map_or(sql.len(), |l| l.tokens.len());
    if cost > budget.tokens {
        let label = if depth == 0 {
            format!("text of more than {MAX_TOKENS} tokens")
        } else {
            format!("bodies of more than {MAX_TOKENS} tokens in all")
        };
        return vec![StatementInfo::too_long(label, sql)];
    }
    budget.tokens -= cost;
    if lexed
        .as_ref()
        .is_ok_and(|l| l.statement_separators() > MAX_STATEMENTS)
    {
        return vec![StatementInfo::too_long(
            format!("text of more than {MAX_STATEMENTS} statements"),
            sql,
        )];
    }
    let lexed = lexed.ok();
    // Only a plain string holding a backslash reads differently with
    // standard_conforming_strings off; without one, the other reading is the same text (or a
    // text the server rejects as a whole, which runs nothing).
    let two_readings = match &lexed {
        Some(l) => l.depends_on_standard_strings(),
        None => sql.contains('\\'),
    };
    let mut infos = Vec::new();
    let mut readings = vec![primary];
    if two_readings {
        readings.push(primary.other());
    }
    for reading in readings {
        let tokens = lexed.as_ref().filter(|_| reading == Reading::Standard);
        match pg::parse(sql, pg::Mode::Statements, reading == Reading::Standard) {
            Ok(tree) => {
                for raw in &tree.stmts {
                    let info = collect::raw_statement(raw, sql, tokens, reading, budget, depth);
                    if reading == primary || !infos.iter().any(|i| same_statement(i, &info)) {
                        infos.push(info);
                    }
                }
            }
            // A reading the grammar rejects runs nothing in a session that reads it so; only
            // the primary reading's failure is reported (and blocked).
            Err(e) if reading == primary => {
                let mut info = unparsed(sql, tokens, e);
                info.reading = reading;
                infos.push(info);
            }
            Err(_) => {}
        }
    }
    if sql.contains('\u{fffd}') && lex::has_undecodable_dollar_tag(sql) {
        for info in &mut infos {
            info.mark_unverifiable(
                "a dollar-quote tag holds bytes that are not UTF-8 (the gateway reads them all \
                 as one replacement character, the server may not)"
                    .into(),
            );
        }
    }
    infos
}

/// The same statement found in both readings (judging it twice adds nothing).
fn same_statement(a: &StatementInfo, b: &StatementInfo) -> bool {
    let mut b = b.clone();
    b.reading = a.reading;
    b.text.clone_from(&a.text);
    a == &b
}

fn unparsed(sql: &str, tokens: Option<&lex::Lexed>, e: pg::ParseError) -> StatementInfo {
    let text = match tokens {
        Some(l) => l.normalized(0..sql.len()),
        None => lex::collapse_whitespace(sql),
    };
    let mut info = StatementInfo::new(
        StatementKind::Unparsed,
        "statement that does not parse".into(),
        false,
        text,
    );
    info.class = StatementClass::Other;
    info.span = 0..sql.len();
    info.unverifiable = Some(format!(
        "statement could not be parsed ({}); only statements the gateway can read are allowed",
        e.0
    ));
    info
}

#[cfg(test)]
mod tests;
