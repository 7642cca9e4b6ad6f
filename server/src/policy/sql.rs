//! SQL statement analysis for guardrails and reviews (PostgreSQL dialect).
//!
//! [`analyze`] turns the text of a simple-protocol Query or an extended-protocol
//! Parse into one [`StatementInfo`] per statement: what kind of statement it is,
//! its class (read / write / ddl / admin / session / other), the deny kinds it
//! matches, whether it writes without a `WHERE`, the functions it calls and the
//! tables it names. It is IO-free and knows nothing about the wire protocol.
//!
//! How it reads the text:
//! - The text is tokenized once with sqlparser's tokenizer, so comments, case
//!   and whitespace cannot hide a keyword, and a `;` inside a string, a quoted
//!   identifier, a comment or a dollar quote does not split a statement.
//! - The tokens are split at top-level `;` and every piece is parsed on its own,
//!   so one statement sqlparser does not understand cannot hide the others.
//! - A piece that does not parse is judged by a keyword scan over its tokens
//!   (`parsed == false`): words, not raw text, so `select 'drop table x'` is not
//!   a DROP, while `DrOp/**/TaBlE x` is. This fails closed: a denied keyword
//!   anywhere in an unparseable statement blocks it. sqlparser 0.63 does not
//!   parse `DO`, `ALTER SYSTEM`, `VACUUM (...)`, `CREATE RULE`, `REINDEX`,
//!   `CLUSTER`, `REFRESH MATERIALIZED VIEW`, `COPY ... PROGRAM $$...$$` and
//!   others, so those always take this path.
//! - `EXPLAIN ANALYZE <stmt>` runs `<stmt>`, so it is judged as `<stmt>`;
//!   plain `EXPLAIN` is a read. `PREPARE p AS <stmt>` is judged as `<stmt>`.
//!   `EXECUTE p` cannot be seen through here: [`StatementInfo::execute_name`]
//!   names the prepared statement so the caller can look its text up.
//! - Data-modifying CTEs, `SELECT ... INTO`, `CREATE TABLE ... AS` and
//!   `SELECT ... FOR UPDATE` are found anywhere in the tree (sqlparser's visitor).
//! - Bodies of `DO` blocks and `CREATE FUNCTION` are analyzed as SQL too (and
//!   string literals inside them, a few levels deep), so a `DROP` inside
//!   `EXECUTE 'drop table t'` is seen. Dynamic SQL built at run time
//!   (`EXECUTE 'dr' || 'op ...'`) is not: deny `do` and `create` to be safe.
//! - PostgreSQL reads `'a\'...` differently when `standard_conforming_strings`
//!   is off, and a client can turn it off. When a string literal contains a
//!   backslash and the text tokenizes differently with backslash escapes, the
//!   statements of that second reading are appended too
//!   ([`Reading::BackslashEscapes`]), so a keyword hidden in one reading is
//!   seen in the other.
//! - `U&"..."` identifiers are decoded (sqlparser would read them as `U & "..."`),
//!   so `U&"pg\005fread_file"(...)` is a call of `pg_read_file`.
//! - Text longer than [`MAX_SQL_BYTES`] or of more than [`MAX_STATEMENTS`]
//!   statements is not analyzed at all and reported as
//!   [`StatementKind::TooLong`], which every guardrail blocks.
//!
//! Known limits (a guardrail on top of database permissions, not a replacement
//! for them: grant the gateway's database role only what it needs):
//! - Functions with side effects cannot be known from a `SELECT`:
//!   `select pg_terminate_backend(..)`, `select lo_import(..)`,
//!   `select dblink_exec(..)`, `select nextval(..)`, or any user function that
//!   writes. [`DANGEROUS_FUNCTIONS`] lists well-known ones (deny kind
//!   `dangerous_functions`) and a rule set may deny more by name; functions
//!   reached indirectly (views, triggers, other functions, operators, casts,
//!   `query_to_xml`-style executors with a computed query) are not seen.
//! - Tautologies are not detected: `update t set a = 1 where true` and
//!   `delete from t where 1 = 1` count as bounded.
//! - A statement that does not parse has no table list and its class is a
//!   guess from keywords; it is flagged `parsed == false` so read-only mode can
//!   block it.
//! - The keyword scan on unparseable text also flags keywords used as
//!   unquoted column names (`comment`, `lock`, `do` in `ON CONFLICT DO`...):
//!   false positives, by design. Quoted identifiers (`"drop"`) are never
//!   keywords.
//! - SQL-standard function bodies (`BEGIN ATOMIC ...; ... END`) are split at
//!   their inner `;` and judged piece by piece (stricter, never looser).
//! - Statements sqlparser does not know (`TABLE t`, `REINDEX`, plpgsql-only
//!   syntax) and expressions nested deeper than sqlparser's recursion limit
//!   (50) are unparsed: read-only mode blocks them (false positives, by design).
//! - In the keyword scan of an unparsed statement every DELETE/UPDATE counts
//!   as unbounded (no tree to tell which WHERE belongs to it), so a plpgsql
//!   function or DO body that deletes with a WHERE is still "unbounded".
//! - The backslash-escape reading is applied to the top-level text, not again
//!   inside DO / function bodies.
//! - Only SQL text is seen. Settings a client passes at connection start-up
//!   (`options=-c role=...`, `-c standard_conforming_strings=off`) must be
//!   handled by the protocol adapter.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopyTarget as AstCopyTarget, CreateFunctionBody, Expr, MergeAction, ObjectName,
    OnConflictAction, OnInsert, Query, Reset, Select, Set, Statement, TableFactor, Value, Visit,
    Visitor,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect};
use sqlparser::keywords::Keyword as SqlKeyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

/// Text longer than this (in bytes) is not analyzed and is blocked by every
/// guardrail: parsing megabytes per statement on the hot path is a denial of
/// service, and no interactive statement needs it.
pub const MAX_SQL_BYTES: usize = 1024 * 1024;

/// More statements than this in one text are not analyzed and are blocked
/// like text over [`MAX_SQL_BYTES`]: each costs a parse, so a text of tens of
/// thousands of `select 1;` would cost seconds of CPU per message.
pub const MAX_STATEMENTS: usize = 10_000;

/// How deep `DO` / function bodies and the string literals inside them are
/// analyzed as SQL; deeper text is judged by a raw word scan (fail closed).
const MAX_BODY_DEPTH: usize = 3;

/// Functions with effects outside the query (files, processes, other
/// backends, other servers, settings): matched by the deny kind
/// `dangerous_functions` and always denied in read-only mode.
pub const DANGEROUS_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalmapdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_replslotdir",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_logdir_ls",
    "lo_import",
    "lo_export",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_send_query",
    "dblink_open",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_logical_emit_message",
    "set_config",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
];

/// Functions that write data although called from a `SELECT`; denied in
/// read-only mode on top of [`DANGEROUS_FUNCTIONS`].
pub const WRITE_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "lowrite",
    "pg_advisory_xact_lock",
    "pg_advisory_lock",
];

/// Every deny kind a rule set may name, with what it matches.
pub const DENY_KINDS: &[(&str, &str)] = &[
    ("insert", "INSERT"),
    ("update", "UPDATE"),
    ("delete", "DELETE"),
    ("merge", "MERGE"),
    ("truncate", "TRUNCATE"),
    ("copy", "any COPY"),
    ("copy_program", "COPY ... TO/FROM PROGRAM"),
    ("copy_file", "COPY ... TO/FROM a server file"),
    ("drop", "any DROP"),
    ("create", "any CREATE, SELECT INTO"),
    ("alter", "any ALTER"),
    ("comment", "COMMENT ON"),
    ("grant", "GRANT"),
    ("revoke", "REVOKE"),
    ("extension", "CREATE/ALTER/DROP EXTENSION, LOAD"),
    ("do", "DO blocks"),
    ("alter_system", "ALTER SYSTEM"),
    (
        "set_role",
        "SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE",
    ),
    ("set", "SET/RESET of any setting"),
    (
        "dangerous_functions",
        "calls of the built-in dangerous function list",
    ),
    ("vacuum", "VACUUM"),
    (
        "maintenance",
        "VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, REFRESH",
    ),
    ("lock", "LOCK TABLE, SELECT ... FOR UPDATE/SHARE"),
    ("call", "CALL"),
    ("load", "LOAD"),
    ("write", "every statement that writes data, and DO/CALL"),
    ("ddl", "every schema change, and DO"),
    (
        "admin",
        "GRANT/REVOKE, roles, ALTER SYSTEM, SET ROLE, COPY PROGRAM/file, DO, VACUUM, LOCK, LOAD",
    ),
];

/// Is `kind` one of [`DENY_KINDS`]?
pub fn is_deny_kind(kind: &str) -> bool {
    DENY_KINDS.iter().any(|(k, _)| *k == kind)
}

/// Broad class of a statement, for read-only mode and review rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementClass {
    /// Reads data only (SELECT, SHOW, plain EXPLAIN, FETCH).
    Read,
    /// Changes only session state (transactions, SET of an ordinary setting,
    /// DEALLOCATE, DISCARD, LISTEN).
    Session,
    /// Writes data (INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY FROM, CALL).
    Write,
    /// Changes the schema (CREATE, ALTER, DROP, COMMENT, SELECT INTO).
    Ddl,
    /// Administrative or privilege-changing (GRANT, roles, ALTER SYSTEM,
    /// SET ROLE, COPY PROGRAM/file, DO, VACUUM, LOCK).
    Admin,
    /// Not known: never treated as read-only.
    Other,
}

impl StatementClass {
    /// The lower-case name used in configuration (`read`, `write`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Read => "read",
            StatementClass::Session => "session",
            StatementClass::Write => "write",
            StatementClass::Ddl => "ddl",
            StatementClass::Admin => "admin",
            StatementClass::Other => "other",
        }
    }
}

/// Direction of a COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    /// `COPY ... TO`: the server reads a table and writes out.
    To,
    /// `COPY ... FROM`: the server writes into a table.
    From,
}

/// Where a COPY reads or writes on the server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEndpoint {
    /// STDIN / STDOUT: through the client connection.
    Client,
    /// A file on the database server.
    File,
    /// A shell command on the database server.
    Program,
}

/// What a statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// SELECT, VALUES, TABLE.
    Select,
    /// `SELECT ... INTO new_table`: creates a table.
    SelectInto,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// MERGE.
    Merge,
    /// TRUNCATE.
    Truncate,
    /// COPY.
    Copy {
        /// TO or FROM.
        direction: CopyDirection,
        /// Client, server file or program.
        endpoint: CopyEndpoint,
    },
    /// A schema change, named like `create_table`, `drop_table`,
    /// `alter_table`, `create_extension`, `comment`.
    Ddl(String),
    /// GRANT.
    Grant,
    /// REVOKE.
    Revoke,
    /// SET ROLE / SET SESSION AUTHORIZATION / RESET ROLE.
    SetRole,
    /// SET or RESET of an ordinary setting.
    Set,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT...
    Transaction,
    /// `EXECUTE name`: the prepared text is needed to judge it.
    Execute {
        /// The prepared statement's name (folded like PostgreSQL does).
        name: String,
    },
    /// Plain EXPLAIN (without ANALYZE): nothing is executed.
    Explain,
    /// CALL of a procedure.
    Call,
    /// LOCK TABLE.
    Lock,
    /// VACUUM, ANALYZE.
    Maintenance(String),
    /// SHOW, FETCH, DESCRIBE and similar reads.
    Show,
    /// Anything else sqlparser understood, with a lower-case name.
    Other(String),
    /// Did not parse: judged by the keyword scan only.
    Unparsed,
    /// Longer than [`MAX_SQL_BYTES`] or more than [`MAX_STATEMENTS`]
    /// statements: not analyzed; [`StatementInfo::label`] says which.
    TooLong,
}

/// One deny kind a statement matches, with a human label for the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// One of [`DENY_KINDS`].
    pub kind: &'static str,
    /// What matched, e.g. `DROP TABLE`, `DELETE`, `pg_read_file`.
    pub label: String,
}

/// Which reading of the text a statement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// PostgreSQL's default, `standard_conforming_strings = on`.
    Standard,
    /// Backslashes escape in ordinary strings (`standard_conforming_strings =
    /// off`); only present when it differs from the standard reading.
    BackslashEscapes,
}

/// A statement defined by `PREPARE name AS <statement>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDef {
    /// The prepared statement's name (folded like PostgreSQL does).
    pub name: String,
    /// The prepared statement's text, as sqlparser prints it.
    pub text: String,
}

/// What [`analyze`] found out about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementInfo {
    /// What the statement is (after looking through EXPLAIN ANALYZE / PREPARE).
    pub kind: StatementKind,
    /// The most severe class of anything the statement does (a SELECT with a
    /// data-modifying CTE is a write).
    pub class: StatementClass,
    /// A short upper-case label of the statement, e.g. `DROP TABLE`.
    pub label: String,
    /// The label of the part that made [`Self::class`] what it is (`DELETE`
    /// for `WITH d AS (DELETE ...) SELECT ...`).
    pub class_label: String,
    /// The deny kinds this statement matches, in the order found, one entry per kind.
    pub keywords: Vec<Keyword>,
    /// `Some("DELETE without WHERE")` when the statement writes rows without a
    /// condition (DELETE/UPDATE without WHERE, TRUNCATE).
    pub unbounded_write: Option<String>,
    /// Functions called anywhere in the statement (lower-case unless quoted,
    /// schema dropped).
    pub functions: Vec<String>,
    /// Tables the statement names (CTE names and table functions left out).
    pub tables: Vec<String>,
    /// False when sqlparser could not parse it and the keyword scan judged it.
    pub parsed: bool,
    /// The statement text normalised: comments replaced by a space, runs of
    /// whitespace collapsed to one space, trimmed.
    pub text: String,
    /// Set for `PREPARE name AS ...`: what `EXECUTE name` will run.
    pub prepare: Option<PreparedDef>,
    /// Which reading of the text this statement comes from.
    pub reading: Reading,
}

impl StatementInfo {
    /// The first keyword of deny kind `kind`, if the statement matches it.
    pub fn keyword(&self, kind: &str) -> Option<&Keyword> {
        self.keywords.iter().find(|k| k.kind == kind)
    }

    /// For `EXECUTE name`, the prepared statement's name: the caller looks up
    /// the text it remembered for that name and analyzes that instead.
    pub fn execute_name(&self) -> Option<&str> {
        match &self.kind {
            StatementKind::Execute { name } => Some(name),
            _ => None,
        }
    }

    fn new(kind: StatementKind, label: String, parsed: bool, text: String) -> Self {
        StatementInfo {
            kind,
            class: StatementClass::Read,
            class_label: label.clone(),
            label,
            keywords: Vec::new(),
            unbounded_write: None,
            functions: Vec::new(),
            tables: Vec::new(),
            parsed,
            text,
            prepare: None,
            reading: Reading::Standard,
        }
    }

    fn add_keyword(&mut self, kind: &'static str, label: &str) {
        if self.keyword(kind).is_none() {
            self.keywords.push(Keyword {
                kind,
                label: label.to_owned(),
            });
        }
    }

    fn raise_class(&mut self, class: StatementClass, label: &str) {
        if class > self.class {
            self.class = class;
            label.clone_into(&mut self.class_label);
        }
    }

    fn add_function(&mut self, name: String) {
        if !self.functions.contains(&name) {
            self.functions.push(name);
        }
    }

    /// Adds what was found in a body (DO block, function body, string inside
    /// one): its deny kinds and unbounded writes count, its class does not
    /// (the body runs later, or the outer statement is already classed).
    fn absorb_body(&mut self, body: &[StatementInfo], place: &str) {
        for info in body {
            let placed = |label: &str| {
                if place.is_empty() {
                    label.to_owned()
                } else {
                    format!("{label} {place}")
                }
            };
            for kw in &info.keywords {
                self.add_keyword(kw.kind, &placed(&kw.label));
            }
            if self.unbounded_write.is_none() {
                self.unbounded_write = info.unbounded_write.as_deref().map(placed);
            }
            for f in &info.functions {
                self.add_function(f.clone());
            }
        }
    }

    /// Marks calls of [`DANGEROUS_FUNCTIONS`] as deny kind `dangerous_functions`.
    fn flag_dangerous_functions(&mut self) {
        let hits: Vec<String> = self
            .functions
            .iter()
            .filter(|f| DANGEROUS_FUNCTIONS.contains(&f.as_str()))
            .cloned()
            .collect();
        for f in hits {
            self.add_keyword("dangerous_functions", &f);
        }
    }
}

/// Analyzes `sql` (PostgreSQL dialect): one [`StatementInfo`] per statement,
/// in order; statements of the backslash-escape reading follow when that
/// reading differs. Empty text or text of only comments gives an empty list.
pub fn analyze(sql: &str) -> Vec<StatementInfo> {
    if sql.len() > MAX_SQL_BYTES {
        let label = format!("statement longer than {MAX_SQL_BYTES} bytes");
        let mut info = StatementInfo::new(StatementKind::TooLong, label, false, String::new());
        info.class = StatementClass::Other;
        return vec![info];
    }
    analyze_tokenized(sql, tokenize(sql, false))
}

/// Longest text [`shape`] describes: far below [`MAX_SQL_BYTES`], so that two texts of one shape
/// (which differ only in how their numbers are spelled) are both on the same side of that limit.
const MAX_SHAPE_BYTES: usize = 4096;

/// A statement text's shape, for caching verdicts: its tokens (comments and whitespace included)
/// with every number literal blanked out, and whether there was any number. Two texts of one
/// shape differ only in the values of their numbers, which nothing in [`analyze`] looks at, so
/// they get the same analysis. `None` when the text is not judged by its tokens alone: it is too
/// long, the tokenizer rejects it, or a string holds a backslash (then a second reading of the
/// raw text is analyzed too, where a number could sit inside a string).
///
/// The tokens come back as well so a cache miss need not tokenize again
/// ([`analyze_tokenized`]).
pub fn shape(sql: &str) -> (Option<(String, bool)>, Option<Vec<Token>>) {
    if sql.len() > MAX_SHAPE_BYTES {
        return (None, None);
    }
    let tokens = tokenize(sql, false);
    let Some(toks) = tokens.as_deref() else {
        return (None, tokens);
    };
    if has_backslash_string(Some(toks)) {
        return (None, tokens);
    }
    let mut key = String::with_capacity(sql.len() + 8);
    let mut numbers = false;
    for tok in toks {
        match tok {
            // NUL cannot appear in PostgreSQL query text, so the marker is unambiguous.
            Token::Number(_, long) => {
                numbers = true;
                key.push_str(if *long { "\0#L" } else { "\0#" });
            }
            Token::EOF => {}
            // Writing into a String cannot fail.
            other => {
                let _ = write!(key, "{other}");
            }
        }
    }
    (Some((key, numbers)), tokens)
}

/// [`analyze`] with the standard reading's tokens already made (by [`shape`]).
pub fn analyze_tokenized(sql: &str, standard: Option<Vec<Token>>) -> Vec<StatementInfo> {
    if sql.len() > MAX_SQL_BYTES {
        let label = format!("statement longer than {MAX_SQL_BYTES} bytes");
        let mut info = StatementInfo::new(StatementKind::TooLong, label, false, String::new());
        info.class = StatementClass::Other;
        return vec![info];
    }
    let pieces = standard
        .as_deref()
        .map_or(0, |t| t.iter().filter(|t| **t == Token::SemiColon).count());
    if pieces > MAX_STATEMENTS {
        let label = format!("text of more than {MAX_STATEMENTS} statements");
        let mut info = StatementInfo::new(StatementKind::TooLong, label, false, String::new());
        info.class = StatementClass::Other;
        return vec![info];
    }
    let mut infos = match &standard {
        Some(tokens) => analyze_tokens(tokens, 0),
        // sqlparser's tokenizer rejected the text (unterminated quote or
        // comment...): scan raw words, which sees even words inside strings.
        None => vec![raw_scan(sql)],
    };
    if has_backslash_string(standard.as_deref())
        && let Some(alt) = tokenize(sql, true)
        && standard.as_deref() != Some(alt.as_slice())
    {
        for mut info in analyze_tokens(&alt, 0) {
            info.reading = Reading::BackslashEscapes;
            infos.push(info);
        }
    }
    infos
}

/// Analyzes text found inside a statement (a DO block or function body).
fn analyze_nested(sql: &str, depth: usize) -> Vec<StatementInfo> {
    if depth >= MAX_BODY_DEPTH || sql.len() > MAX_SQL_BYTES {
        return vec![raw_scan(sql)];
    }
    match tokenize(sql, false) {
        Some(tokens) => analyze_tokens(&tokens, depth),
        None => vec![raw_scan(sql)],
    }
}

/// PostgreSQL with backslash escapes in ordinary strings, for the second
/// reading; everything else the tokenizer asks is answered like PostgreSQL.
#[derive(Debug)]
struct PostgresBackslash(PostgreSqlDialect);

impl Dialect for PostgresBackslash {
    // Reports PostgreSQL's type id so the tokenizer's `dialect_of!` checks
    // (e.g. `\r` ending a `--` comment) behave exactly as for PostgreSQL.
    fn dialect(&self) -> std::any::TypeId {
        std::any::TypeId::of::<PostgreSqlDialect>()
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }
    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.0.is_custom_operator_part(ch)
    }
    fn supports_unicode_string_literal(&self) -> bool {
        self.0.supports_unicode_string_literal()
    }
    fn supports_nested_comments(&self) -> bool {
        self.0.supports_nested_comments()
    }
    fn supports_string_escape_constant(&self) -> bool {
        self.0.supports_string_escape_constant()
    }
    fn supports_numeric_literal_underscores(&self) -> bool {
        self.0.supports_numeric_literal_underscores()
    }
    fn supports_geometric_types(&self) -> bool {
        self.0.supports_geometric_types()
    }
    fn supports_string_literal_backslash_escape(&self) -> bool {
        true
    }
}

fn tokenize(sql: &str, backslash_escapes: bool) -> Option<Vec<Token>> {
    let tokens = if backslash_escapes {
        Tokenizer::new(&PostgresBackslash(PostgreSqlDialect {}), sql).tokenize()
    } else {
        Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize()
    };
    tokens.ok().map(fix_tokens)
}

fn has_backslash_string(tokens: Option<&[Token]>) -> bool {
    tokens.is_some_and(|tokens| {
        tokens.iter().any(|t| match t {
            Token::SingleQuotedString(s) | Token::NationalStringLiteral(s) => s.contains('\\'),
            _ => false,
        })
    })
}

/// Makes the token stream read like PostgreSQL's lexer where sqlparser's
/// differs in a way that matters here:
/// - `U&"..."` (optionally `UESCAPE 'c'`) becomes one quoted identifier with
///   the escapes decoded, instead of `U & "..."`;
/// - an unquoted word with non-ASCII letters is never a keyword (PostgreSQL
///   matches keywords in ASCII only; sqlparser upper-cases Unicode, so `ſet`
///   would otherwise read as SET).
fn fix_tokens(tokens: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut iter = tokens.into_iter().peekable();
    while let Some(tok) = iter.next() {
        match tok {
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u") => {
                if iter.peek() != Some(&Token::Ampersand) {
                    out.push(Token::Word(w));
                    continue;
                }
                let amp = iter.next();
                match iter.next() {
                    Some(Token::Word(q)) if q.quote_style == Some('"') => {
                        let (escape, consumed) = uescape_clause(&mut iter);
                        let value = decode_unicode_escapes(&q.value, escape).unwrap_or(q.value);
                        out.push(Token::Word(Word {
                            value,
                            quote_style: Some('"'),
                            keyword: SqlKeyword::NoKeyword,
                        }));
                        out.extend(consumed);
                    }
                    other => {
                        out.push(Token::Word(w));
                        out.extend(amp);
                        out.extend(other);
                    }
                }
            }
            Token::Word(w) if w.quote_style.is_none() && !w.value.is_ascii() => {
                out.push(Token::Word(Word {
                    keyword: SqlKeyword::NoKeyword,
                    ..w
                }));
            }
            other => out.push(other),
        }
    }
    out
}

/// Consumes `UESCAPE 'c'` after a `U&"..."` identifier. Returns the escape
/// character and the tokens consumed that are not part of the clause (so
/// nothing is lost when there is no clause).
fn uescape_clause<I: Iterator<Item = Token>>(
    iter: &mut std::iter::Peekable<I>,
) -> (char, Vec<Token>) {
    let mut consumed = Vec::new();
    while let Some(Token::Whitespace(_)) = iter.peek() {
        consumed.extend(iter.next());
    }
    let is_uescape = matches!(iter.peek(), Some(Token::Word(w))
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("uescape"));
    if !is_uescape {
        return ('\\', consumed);
    }
    let kw = iter.next();
    let mut between = Vec::new();
    while let Some(Token::Whitespace(_)) = iter.peek() {
        between.extend(iter.next());
    }
    if let Some(Token::SingleQuotedString(s)) = iter.peek() {
        let mut chars = s.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            iter.next();
            return (c, Vec::new());
        }
    }
    // Malformed clause: PostgreSQL rejects it; keep the tokens as they were.
    consumed.extend(kw);
    consumed.extend(between);
    ('\\', consumed)
}

/// Decodes PostgreSQL's `U&` escapes: `\XXXX`, `\+XXXXXX`, `\\` (with
/// `escape` instead of `\`). `None` when malformed (PostgreSQL rejects those).
fn decode_unicode_escapes(s: &str, escape: char) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != escape {
            out.push(c);
            continue;
        }
        let digits = match chars.peek() {
            Some(&n) if n == escape => {
                chars.next();
                out.push(escape);
                continue;
            }
            Some('+') => {
                chars.next();
                6
            }
            _ => 4,
        };
        let mut code = 0u32;
        for _ in 0..digits {
            let d = chars.next()?.to_digit(16)?;
            code = code * 16 + d;
        }
        out.push(char::from_u32(code)?);
    }
    Some(out)
}

/// The tokens of `text` joined back with comments and whitespace runs turned
/// into one space.
fn normalize(tokens: &[Token]) -> String {
    let mut out = String::new();
    for tok in tokens {
        match tok {
            Token::Whitespace(_) | Token::EOF => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            other => {
                // Writing into a String cannot fail.
                let _ = write!(out, "{other}");
            }
        }
    }
    out.trim_end().to_owned()
}

fn is_trivia(tok: &Token) -> bool {
    matches!(tok, Token::Whitespace(_) | Token::EOF)
}

/// Splits at top-level `;` (the tokenizer already kept `;` inside strings,
/// quoted identifiers, comments and dollar quotes) and analyzes each piece.
fn analyze_tokens(tokens: &[Token], depth: usize) -> Vec<StatementInfo> {
    let mut infos = Vec::new();
    for piece in tokens.split(|t| *t == Token::SemiColon) {
        if piece.iter().all(is_trivia) {
            continue;
        }
        let text = normalize(piece);
        match Parser::new(&PostgreSqlDialect {})
            .with_tokens(piece.to_vec())
            .parse_statements()
        {
            Ok(stmts) if !stmts.is_empty() => {
                for stmt in &stmts {
                    infos.push(analyze_statement(stmt, text.clone(), depth));
                }
            }
            _ => infos.push(token_scan(piece, text, depth)),
        }
    }
    infos
}

/// Folds an identifier like PostgreSQL: unquoted ASCII letters to lower case.
fn fold_ident(value: &str, quoted: bool) -> String {
    if quoted {
        value.to_owned()
    } else {
        value.to_ascii_lowercase()
    }
}

fn object_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(id) => fold_ident(&id.value, id.quote_style.is_some()),
            None => p.to_string(),
        })
        .collect();
    parts.join(".")
}

/// The function's own name, schema left off (`pg_catalog.pg_read_file` is
/// `pg_read_file`).
fn function_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(part) => match part.as_ident() {
            Some(id) => fold_ident(&id.value, id.quote_style.is_some()),
            None => part.to_string(),
        },
        None => String::new(),
    }
}

/// What one statement node is, on its own (nested statements are found by
/// the visitor).
struct Classified {
    kind: StatementKind,
    class: StatementClass,
    label: Cow<'static, str>,
    kinds: &'static [&'static str],
    unbounded: Option<&'static str>,
}

fn cl(
    kind: StatementKind,
    class: StatementClass,
    label: impl Into<Cow<'static, str>>,
    kinds: &'static [&'static str],
) -> Classified {
    Classified {
        kind,
        class,
        label: label.into(),
        kinds,
        unbounded: None,
    }
}

fn ddl(name: &'static str, label: &'static str, kinds: &'static [&'static str]) -> Classified {
    cl(
        StatementKind::Ddl(name.to_owned()),
        StatementClass::Ddl,
        label,
        kinds,
    )
}

fn admin_ddl(
    name: &'static str,
    label: &'static str,
    kinds: &'static [&'static str],
) -> Classified {
    cl(
        StatementKind::Ddl(name.to_owned()),
        StatementClass::Admin,
        label,
        kinds,
    )
}

const CREATE: &[&str] = &["create", "ddl"];
const ALTER: &[&str] = &["alter", "ddl"];
const DROP: &[&str] = &["drop", "ddl"];

fn is_role_setting(name: &str) -> bool {
    name.eq_ignore_ascii_case("role") || name.eq_ignore_ascii_case("session_authorization")
}

/// Is this EXPLAIN one that executes its statement (`ANALYZE`, `ANALYSE` or
/// an `(ANALYZE ...)` option, whatever its value: fail closed)?
fn explain_executes(stmt: &Statement) -> bool {
    match stmt {
        Statement::Explain {
            analyze, options, ..
        } => {
            *analyze
                || options.as_ref().is_some_and(|opts| {
                    opts.iter().any(|o| {
                        o.name.value.eq_ignore_ascii_case("analyze")
                            || o.name.value.eq_ignore_ascii_case("analyse")
                    })
                })
        }
        _ => false,
    }
}

fn classify(stmt: &Statement) -> Classified {
    use StatementClass as C;
    use StatementKind as K;
    match stmt {
        Statement::Query(_) => cl(K::Select, C::Read, "SELECT", &[]),
        Statement::Insert(_) => cl(K::Insert, C::Write, "INSERT", &["insert", "write"]),
        Statement::Update(u) => Classified {
            unbounded: u.selection.is_none().then_some("UPDATE without WHERE"),
            ..cl(K::Update, C::Write, "UPDATE", &["update", "write"])
        },
        Statement::Delete(d) => Classified {
            unbounded: d.selection.is_none().then_some("DELETE without WHERE"),
            ..cl(K::Delete, C::Write, "DELETE", &["delete", "write"])
        },
        Statement::Merge(_) => cl(K::Merge, C::Write, "MERGE", &["merge", "write"]),
        Statement::Truncate(_) => Classified {
            unbounded: Some("TRUNCATE removes every row"),
            ..cl(K::Truncate, C::Write, "TRUNCATE", &["truncate", "write"])
        },
        Statement::Copy { to, target, .. } => {
            let direction = if *to {
                CopyDirection::To
            } else {
                CopyDirection::From
            };
            let (endpoint, class, label, kinds): (_, _, &'static str, &'static [&'static str]) =
                match (target, to) {
                    (AstCopyTarget::Program { .. }, true) => (
                        CopyEndpoint::Program,
                        C::Admin,
                        "COPY ... TO PROGRAM",
                        &["copy", "copy_program", "admin"],
                    ),
                    (AstCopyTarget::Program { .. }, false) => (
                        CopyEndpoint::Program,
                        C::Admin,
                        "COPY ... FROM PROGRAM",
                        &["copy", "copy_program", "admin", "write"],
                    ),
                    (AstCopyTarget::File { .. }, true) => (
                        CopyEndpoint::File,
                        C::Admin,
                        "COPY ... TO file",
                        &["copy", "copy_file", "admin"],
                    ),
                    (AstCopyTarget::File { .. }, false) => (
                        CopyEndpoint::File,
                        C::Admin,
                        "COPY ... FROM file",
                        &["copy", "copy_file", "admin", "write"],
                    ),
                    (_, true) => (
                        CopyEndpoint::Client,
                        C::Read,
                        "COPY ... TO STDOUT",
                        &["copy"],
                    ),
                    (_, false) => (
                        CopyEndpoint::Client,
                        C::Write,
                        "COPY ... FROM STDIN",
                        &["copy", "write"],
                    ),
                };
            cl(
                K::Copy {
                    direction,
                    endpoint,
                },
                class,
                label,
                kinds,
            )
        }
        Statement::CreateTable(ct) if ct.query.is_some() => ddl(
            "create_table_as",
            "CREATE TABLE AS",
            &["create", "ddl", "write"],
        ),
        Statement::CreateTable(_) => ddl("create_table", "CREATE TABLE", CREATE),
        Statement::CreateView(v) if v.materialized => ddl(
            "create_materialized_view",
            "CREATE MATERIALIZED VIEW",
            CREATE,
        ),
        Statement::CreateView(_) => ddl("create_view", "CREATE VIEW", CREATE),
        Statement::CreateIndex(_) => ddl("create_index", "CREATE INDEX", CREATE),
        Statement::CreateVirtualTable { .. } => ddl("create_table", "CREATE TABLE", CREATE),
        Statement::CreateSecret { .. } => ddl("create_secret", "CREATE SECRET", CREATE),
        Statement::CreateServer(_) => ddl("create_server", "CREATE SERVER", CREATE),
        Statement::CreatePolicy(_) => ddl("create_policy", "CREATE POLICY", CREATE),
        Statement::CreateConnector(_) => ddl("create_connector", "CREATE CONNECTOR", CREATE),
        Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_) => ddl("create_operator", "CREATE OPERATOR", CREATE),
        Statement::CreateTextSearch(_) => ddl("create_text_search", "CREATE TEXT SEARCH", CREATE),
        Statement::CreateCollation(_) => ddl("create_collation", "CREATE COLLATION", CREATE),
        Statement::CreateSchema { .. } => ddl("create_schema", "CREATE SCHEMA", CREATE),
        Statement::CreateDatabase { .. } => ddl("create_database", "CREATE DATABASE", CREATE),
        Statement::CreateFunction(_) => ddl("create_function", "CREATE FUNCTION", CREATE),
        Statement::CreateProcedure { .. } => ddl("create_procedure", "CREATE PROCEDURE", CREATE),
        Statement::CreateTrigger(_) => ddl("create_trigger", "CREATE TRIGGER", CREATE),
        Statement::CreateMacro { .. } => ddl("create_macro", "CREATE MACRO", CREATE),
        Statement::CreateStage { .. } => ddl("create_stage", "CREATE STAGE", CREATE),
        Statement::CreateFileFormat { .. } => {
            ddl("create_file_format", "CREATE FILE FORMAT", CREATE)
        }
        Statement::CreateWarehouse(_) => ddl("create_warehouse", "CREATE WAREHOUSE", CREATE),
        Statement::CreateSequence { .. } => ddl("create_sequence", "CREATE SEQUENCE", CREATE),
        Statement::CreateDomain(_) => ddl("create_domain", "CREATE DOMAIN", CREATE),
        Statement::CreateType { .. } => ddl("create_type", "CREATE TYPE", CREATE),
        Statement::CreateExtension(_) => ddl(
            "create_extension",
            "CREATE EXTENSION",
            &["create", "ddl", "extension"],
        ),
        Statement::CreateRole(_) => {
            admin_ddl("create_role", "CREATE ROLE", &["create", "ddl", "admin"])
        }
        Statement::CreateUser(_) => {
            admin_ddl("create_user", "CREATE USER", &["create", "ddl", "admin"])
        }
        Statement::AlterTable(_) => ddl("alter_table", "ALTER TABLE", ALTER),
        Statement::AlterSchema(_) => ddl("alter_schema", "ALTER SCHEMA", ALTER),
        Statement::AlterIndex { .. } => ddl("alter_index", "ALTER INDEX", ALTER),
        Statement::AlterView { .. } => ddl("alter_view", "ALTER VIEW", ALTER),
        Statement::AlterFunction(_) => ddl("alter_function", "ALTER FUNCTION", ALTER),
        Statement::AlterType(_) => ddl("alter_type", "ALTER TYPE", ALTER),
        Statement::AlterCollation(_) => ddl("alter_collation", "ALTER COLLATION", ALTER),
        Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_) => ddl("alter_operator", "ALTER OPERATOR", ALTER),
        Statement::AlterTextSearch(_) => ddl("alter_text_search", "ALTER TEXT SEARCH", ALTER),
        Statement::AlterPolicy(_) => ddl("alter_policy", "ALTER POLICY", ALTER),
        Statement::AlterConnector { .. } => ddl("alter_connector", "ALTER CONNECTOR", ALTER),
        Statement::RenameTable(_) => ddl("alter_table", "RENAME TABLE", ALTER),
        Statement::AlterRole { .. } => {
            admin_ddl("alter_role", "ALTER ROLE", &["alter", "ddl", "admin"])
        }
        Statement::AlterUser(_) => {
            admin_ddl("alter_user", "ALTER USER", &["alter", "ddl", "admin"])
        }
        Statement::Drop { object_type, .. } => {
            let what = object_type.to_string();
            let name = format!("drop_{}", what.to_ascii_lowercase().replace(' ', "_"));
            let is_role = matches!(what.as_str(), "ROLE" | "USER");
            let (class, kinds): (_, &'static [&'static str]) = if is_role {
                (C::Admin, &["drop", "ddl", "admin"])
            } else {
                (C::Ddl, DROP)
            };
            cl(K::Ddl(name), class, format!("DROP {what}"), kinds)
        }
        Statement::DropFunction(_) => ddl("drop_function", "DROP FUNCTION", DROP),
        Statement::DropDomain(_) => ddl("drop_domain", "DROP DOMAIN", DROP),
        Statement::DropProcedure { .. } => ddl("drop_procedure", "DROP PROCEDURE", DROP),
        Statement::DropSecret { .. } => ddl("drop_secret", "DROP SECRET", DROP),
        Statement::DropPolicy(_) => ddl("drop_policy", "DROP POLICY", DROP),
        Statement::DropConnector { .. } => ddl("drop_connector", "DROP CONNECTOR", DROP),
        Statement::DropTrigger(_) => ddl("drop_trigger", "DROP TRIGGER", DROP),
        Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_) => ddl("drop_operator", "DROP OPERATOR", DROP),
        Statement::DropExtension(_) => ddl(
            "drop_extension",
            "DROP EXTENSION",
            &["drop", "ddl", "extension"],
        ),
        Statement::Comment { .. } => ddl("comment", "COMMENT ON", &["comment", "ddl"]),
        Statement::Grant(_) | Statement::Deny(_) => {
            cl(K::Grant, C::Admin, "GRANT", &["grant", "admin"])
        }
        Statement::Revoke(_) => cl(K::Revoke, C::Admin, "REVOKE", &["revoke", "admin"]),
        Statement::Set(set) => classify_set(set),
        Statement::Reset(r) => match &r.reset {
            Reset::SessionAuthorization => cl(
                K::SetRole,
                C::Admin,
                "RESET SESSION AUTHORIZATION",
                &["set_role", "set", "admin"],
            ),
            Reset::ConfigurationParameter(name) if is_role_setting(&function_name(name)) => cl(
                K::SetRole,
                C::Admin,
                "RESET ROLE",
                &["set_role", "set", "admin"],
            ),
            _ => cl(K::Set, C::Session, "RESET", &["set"]),
        },
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => {
            cl(K::Transaction, C::Session, "transaction control", &[])
        }
        Statement::Deallocate { .. } => {
            cl(K::Other("deallocate".into()), C::Session, "DEALLOCATE", &[])
        }
        Statement::Discard { .. } => cl(K::Other("discard".into()), C::Session, "DISCARD", &[]),
        Statement::Close { .. } => cl(K::Other("close".into()), C::Session, "CLOSE", &[]),
        Statement::LISTEN { .. } => cl(K::Other("listen".into()), C::Session, "LISTEN", &[]),
        Statement::UNLISTEN { .. } => cl(K::Other("unlisten".into()), C::Session, "UNLISTEN", &[]),
        Statement::NOTIFY { .. } => cl(K::Other("notify".into()), C::Write, "NOTIFY", &["write"]),
        Statement::Declare { .. } => cl(K::Other("declare".into()), C::Read, "DECLARE CURSOR", &[]),
        Statement::Fetch { .. } => cl(K::Show, C::Read, "FETCH", &[]),
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. }
        | Statement::ExplainTable { .. } => cl(K::Show, C::Read, "SHOW", &[]),
        Statement::Explain { .. } => cl(K::Explain, C::Read, "EXPLAIN", &[]),
        Statement::Execute { name, .. } => {
            let name = name.as_ref().map(function_name).unwrap_or_default();
            cl(K::Execute { name }, C::Other, "EXECUTE", &[])
        }
        // Transparent wrappers: `analyze_statement` looks through them.
        Statement::Prepare { .. } => cl(K::Other("prepare".into()), C::Session, "PREPARE", &[]),
        Statement::Call(_) => cl(K::Call, C::Write, "CALL", &["call", "write"]),
        Statement::Lock(_) | Statement::LockTables { .. } => {
            cl(K::Lock, C::Admin, "LOCK TABLE", &["lock", "admin"])
        }
        Statement::Vacuum(_) => cl(
            K::Maintenance("vacuum".into()),
            C::Admin,
            "VACUUM",
            &["vacuum", "maintenance", "admin"],
        ),
        Statement::Analyze(_) => cl(
            K::Maintenance("analyze".into()),
            C::Admin,
            "ANALYZE",
            &["maintenance", "admin"],
        ),
        Statement::Install { .. } | Statement::Load { .. } | Statement::LoadData { .. } => cl(
            K::Other("load".into()),
            C::Admin,
            "LOAD",
            &["load", "extension", "admin"],
        ),
        Statement::Kill { .. } => cl(K::Other("kill".into()), C::Admin, "KILL", &["admin"]),
        _ => cl(K::Other("other".into()), C::Other, "statement", &[]),
    }
}

fn classify_set(set: &Set) -> Classified {
    use StatementClass as C;
    use StatementKind as K;
    let role = |label: &'static str| cl(K::SetRole, C::Admin, label, &["set_role", "set", "admin"]);
    match set {
        Set::SetRole { .. } => role("SET ROLE"),
        Set::SetSessionAuthorization(_) => role("SET SESSION AUTHORIZATION"),
        // `SET role = x` and `SET session_authorization = x` are the same
        // privilege change spelled as an ordinary setting.
        Set::SingleAssignment { variable, .. } if is_role_setting(&function_name(variable)) => {
            role("SET ROLE")
        }
        Set::ParenthesizedAssignments { variables, .. }
            if variables.iter().any(|v| is_role_setting(&function_name(v))) =>
        {
            role("SET ROLE")
        }
        Set::MultipleAssignments { assignments }
            if assignments
                .iter()
                .any(|a| is_role_setting(&function_name(&a.name))) =>
        {
            role("SET ROLE")
        }
        Set::SetTransaction { .. } => cl(K::Transaction, C::Session, "SET TRANSACTION", &[]),
        _ => cl(K::Set, C::Session, "SET", &["set"]),
    }
}

/// Collects, over the whole tree of one top-level statement, the nested
/// statements (data-modifying CTEs, procedure bodies), functions, tables.
struct Collector<'a> {
    info: &'a mut StatementInfo,
    depth: usize,
    body_depth: usize,
    /// Depth of a plain EXPLAIN being visited: statements under it are not
    /// executed, so they do not count (their functions and tables still do).
    explain_at: Option<usize>,
    table_functions: Vec<String>,
    ctes: Vec<String>,
}

impl Collector<'_> {
    fn merge(&mut self, c: &Classified) {
        self.info.raise_class(c.class, &c.label);
        for kind in c.kinds {
            self.info.add_keyword(kind, &c.label);
        }
        if self.info.unbounded_write.is_none() {
            self.info.unbounded_write = c.unbounded.map(str::to_owned);
        }
    }

    fn scan_function_body(&mut self, body: &Option<CreateFunctionBody>) {
        let expr = match body {
            Some(CreateFunctionBody::AsBeforeOptions { body, .. }) => body,
            Some(CreateFunctionBody::AsAfterOptions(body)) => body,
            _ => return,
        };
        if let Some(text) = string_value(expr) {
            let nested = analyze_nested(text, self.body_depth + 1);
            self.info.absorb_body(&nested, "inside a function body");
        }
    }
}

fn string_value(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s)
            | Value::NationalStringLiteral(s) => Some(s),
            Value::DollarQuotedString(d) => Some(&d.value),
            _ => None,
        },
        _ => None,
    }
}

impl Visitor for Collector<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        self.depth += 1;
        if self.explain_at.is_some() {
            return ControlFlow::Continue(());
        }
        match stmt {
            Statement::Explain { .. } if !explain_executes(stmt) => {
                self.explain_at = Some(self.depth);
                self.merge(&classify(stmt));
            }
            // Looked through: what they wrap is what counts.
            Statement::Explain { .. } | Statement::Prepare { .. } => {}
            Statement::CreateFunction(f) => {
                self.merge(&classify(stmt));
                let language = f.language.as_ref().map(|l| l.value.to_ascii_lowercase());
                if matches!(language.as_deref(), Some("c" | "internal")) {
                    // Native code: as powerful as LOAD.
                    self.info
                        .add_keyword("admin", "CREATE FUNCTION ... LANGUAGE C");
                    self.info
                        .add_keyword("load", "CREATE FUNCTION ... LANGUAGE C");
                }
                self.scan_function_body(&f.function_body);
            }
            Statement::Call(f) => {
                self.merge(&classify(stmt));
                self.info.add_function(function_name(&f.name));
            }
            // An upsert and a MERGE also update or delete: deny kinds
            // `update` / `delete` must see that.
            Statement::Insert(i) => {
                self.merge(&classify(stmt));
                let updates = match &i.on {
                    Some(OnInsert::OnConflict(c)) => {
                        matches!(c.action, OnConflictAction::DoUpdate(_))
                    }
                    Some(OnInsert::DuplicateKeyUpdate(_)) => true,
                    _ => false,
                };
                if updates {
                    self.info
                        .add_keyword("update", "INSERT ... ON CONFLICT DO UPDATE");
                }
            }
            Statement::Merge(m) => {
                self.merge(&classify(stmt));
                for clause in &m.clauses {
                    match clause.action {
                        MergeAction::Insert(_) => {
                            self.info.add_keyword("insert", "MERGE ... INSERT")
                        }
                        MergeAction::Update(_) => {
                            self.info.add_keyword("update", "MERGE ... UPDATE")
                        }
                        MergeAction::Delete { .. } => {
                            self.info.add_keyword("delete", "MERGE ... DELETE")
                        }
                        MergeAction::DoNothing { .. } => {}
                    }
                }
            }
            other => self.merge(&classify(other)),
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _stmt: &Statement) -> ControlFlow<()> {
        if self.explain_at == Some(self.depth) {
            self.explain_at = None;
        }
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let n = &cte.alias.name;
                self.ctes
                    .push(fold_ident(&n.value, n.quote_style.is_some()));
            }
        }
        if !query.locks.is_empty() && self.explain_at.is_none() {
            // Row locks: PostgreSQL refuses them in read-only transactions too.
            self.info.add_keyword("lock", "SELECT ... FOR UPDATE/SHARE");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() && self.explain_at.is_none() {
            self.merge(&ddl(
                "select_into",
                "SELECT INTO",
                &["create", "ddl", "write"],
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            self.info.add_function(function_name(&f.name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                self.info.add_function(function_name(name));
                self.table_functions.push(object_name(name));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let name = object_name(relation);
        if !self.info.tables.contains(&name) {
            self.info.tables.push(name);
        }
        ControlFlow::Continue(())
    }
}

/// Looks through `EXPLAIN ANALYZE` and `PREPARE` to the statement that runs.
fn peel(stmt: &Statement) -> (&Statement, Option<PreparedDef>) {
    let mut cur = stmt;
    let mut prepare = None;
    loop {
        match cur {
            Statement::Explain { statement, .. } if explain_executes(cur) => cur = statement,
            Statement::Prepare {
                name, statement, ..
            } => {
                prepare = Some(PreparedDef {
                    name: fold_ident(&name.value, name.quote_style.is_some()),
                    text: statement.to_string(),
                });
                cur = statement;
            }
            _ => return (cur, prepare),
        }
    }
}

fn analyze_statement(stmt: &Statement, text: String, depth: usize) -> StatementInfo {
    let (effective, prepare) = peel(stmt);
    let top = classify(effective);
    let mut kind = top.kind;
    let mut info = StatementInfo::new(StatementKind::Unparsed, top.label.into_owned(), true, text);
    info.prepare = prepare;
    let mut collector = Collector {
        info: &mut info,
        depth: 0,
        body_depth: depth,
        explain_at: None,
        table_functions: Vec::new(),
        ctes: Vec::new(),
    };
    // The visitor never breaks, so the result carries nothing.
    let _ = stmt.visit(&mut collector);
    let Collector {
        table_functions,
        ctes,
        ..
    } = collector;
    info.tables
        .retain(|t| !table_functions.contains(t) && !ctes.contains(t));
    if kind == StatementKind::Select && info.keyword("create").is_some() {
        kind = StatementKind::SelectInto;
        "SELECT INTO".clone_into(&mut info.label);
    }
    info.kind = kind;
    info.flag_dangerous_functions();
    info
}

/// One word of a keyword scan: an unquoted word (ASCII-lower-cased), or a
/// quoted identifier (never a keyword, may be a function name).
struct ScanWord {
    text: String,
    quoted: bool,
    /// Followed by `(`: may be a function call.
    call: bool,
}

/// The fail-closed judgement of a statement sqlparser could not parse, from
/// its tokens: every deny kind whose keyword appears anywhere counts.
fn token_scan(tokens: &[Token], text: String, depth: usize) -> StatementInfo {
    let significant: Vec<&Token> = tokens.iter().filter(|t| !is_trivia(t)).collect();
    let mut words = Vec::new();
    for (i, tok) in significant.iter().enumerate() {
        if let Token::Word(w) = tok {
            let call = matches!(significant.get(i + 1), Some(Token::LParen));
            let quoted = w.quote_style.is_some();
            let text = if quoted {
                w.value.clone()
            } else {
                w.value.to_ascii_lowercase()
            };
            words.push(ScanWord { text, quoted, call });
        }
    }
    let mut info = scan_words(&words, text);
    // A DO block's or a function's body is code in a string: analyze it too.
    let has_body = info.keyword("do").is_some()
        || (info.keyword("create").is_some()
            && words
                .iter()
                .any(|w| !w.quoted && matches!(w.text.as_str(), "function" | "procedure")));
    if has_body || depth > 0 {
        // Only the outermost body names the place; deeper strings are part of it.
        let place = match (depth, info.keyword("do").is_some()) {
            (0, true) => "inside a DO block",
            (0, false) => "inside a function body",
            _ => "",
        };
        for tok in &significant {
            if let Some(body) = token_string(tok) {
                let nested = analyze_nested(body, depth + 1);
                info.absorb_body(&nested, place);
            }
        }
    }
    info.flag_dangerous_functions();
    info
}

fn token_string(tok: &Token) -> Option<&str> {
    match tok {
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::UnicodeStringLiteral(s)
        | Token::NationalStringLiteral(s) => Some(s),
        Token::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}

/// The keyword scan over raw text, for text the tokenizer rejected or nested
/// too deep: every run of identifier characters is a word, even inside
/// strings and comments (fail closed).
fn raw_scan(sql: &str) -> StatementInfo {
    let words: Vec<ScanWord> = sql
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(|w| ScanWord {
            text: w.to_ascii_lowercase(),
            quoted: false,
            call: true,
        })
        .collect();
    let text = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut info = scan_words(&words, text);
    info.flag_dangerous_functions();
    info
}

fn scan_words(words: &[ScanWord], text: String) -> StatementInfo {
    use StatementClass as C;
    let mut info = StatementInfo::new(
        StatementKind::Unparsed,
        "unparsed statement".into(),
        false,
        text,
    );
    info.class = C::Other;
    let has = |w: &str| words.iter().any(|x| !x.quoted && x.text == w);
    let first = words
        .first()
        .filter(|w| !w.quoted)
        .map(|w| w.text.as_str())
        .unwrap_or("");
    let add = |info: &mut StatementInfo, kinds: &[&'static str], label: &str| {
        for kind in kinds {
            info.add_keyword(kind, label);
        }
    };
    for w in words {
        if w.quoted {
            continue;
        }
        match w.text.as_str() {
            "drop" => add(&mut info, &["drop", "ddl"], "DROP"),
            "truncate" => {
                add(&mut info, &["truncate", "write"], "TRUNCATE");
                info.unbounded_write
                    .get_or_insert_with(|| "TRUNCATE".into());
            }
            "alter" => add(&mut info, &["alter", "ddl"], "ALTER"),
            "create" => add(&mut info, &["create", "ddl"], "CREATE"),
            "grant" => add(&mut info, &["grant", "admin"], "GRANT"),
            "revoke" => add(&mut info, &["revoke", "admin"], "REVOKE"),
            "copy" => add(&mut info, &["copy", "write"], "COPY"),
            "do" => add(&mut info, &["do", "write", "ddl", "admin"], "DO"),
            "insert" => add(&mut info, &["insert", "write"], "INSERT"),
            "merge" => add(&mut info, &["merge", "write"], "MERGE"),
            "update" | "delete" => {
                let label = w.text.to_ascii_uppercase();
                add(&mut info, &["write"], &label);
                let kind = if w.text == "update" {
                    "update"
                } else {
                    "delete"
                };
                add(&mut info, &[kind], &label);
                // Fail closed: without a parse tree there is no telling
                // whether a WHERE belongs to this write.
                info.unbounded_write.get_or_insert(label);
            }
            "call" => add(&mut info, &["call", "write"], "CALL"),
            "lock" => add(&mut info, &["lock", "admin"], "LOCK"),
            "vacuum" => add(&mut info, &["vacuum", "maintenance", "admin"], "VACUUM"),
            "analyze" | "analyse" | "cluster" | "reindex" | "checkpoint" => {
                add(
                    &mut info,
                    &["maintenance", "admin"],
                    &w.text.to_ascii_uppercase(),
                );
            }
            "refresh" => add(&mut info, &["maintenance", "admin", "write"], "REFRESH"),
            "load" => add(&mut info, &["load", "extension", "admin"], "LOAD"),
            "extension" if has("create") || has("alter") || has("drop") => {
                add(&mut info, &["extension"], "EXTENSION");
            }
            "system" if has("alter") => add(&mut info, &["alter_system", "admin"], "ALTER SYSTEM"),
            "program" if has("copy") => {
                add(&mut info, &["copy_program", "admin"], "COPY ... PROGRAM")
            }
            "role" | "authorization" | "session_authorization" if has("set") || has("reset") => {
                add(&mut info, &["set_role", "set", "admin"], "SET ROLE");
            }
            "role" | "user" if has("create") || has("alter") || has("drop") => {
                add(&mut info, &["admin"], "ROLE");
            }
            "set" | "reset" if first == w.text => add(&mut info, &["set"], "SET"),
            "into" if !has("insert") && !has("merge") => {
                add(&mut info, &["create", "ddl", "write"], "SELECT INTO");
            }
            "comment" if first == "comment" => add(&mut info, &["comment", "ddl"], "COMMENT"),
            "security" if first == "security" => add(&mut info, &["ddl"], "SECURITY LABEL"),
            "import" if first == "import" => {
                add(&mut info, &["create", "ddl"], "IMPORT FOREIGN SCHEMA")
            }
            "reassign" if first == "reassign" => {
                add(&mut info, &["ddl", "admin"], "REASSIGN OWNED")
            }
            _ => {}
        }
    }
    if has("copy") && !has("program") && !has("stdin") && !has("stdout") {
        // COPY without STDIN/STDOUT reads or writes a server file.
        add(&mut info, &["copy_file", "admin"], "COPY ... file");
    }
    for w in words.iter().filter(|w| w.call) {
        info.add_function(w.text.clone());
    }
    info.label = match first {
        "do" => "DO block".into(),
        "" => "unparsed statement".into(),
        f => format!("{} (unparsed)", f.to_ascii_uppercase()),
    };
    info.kind = if first == "do" {
        StatementKind::Other("do".into())
    } else {
        StatementKind::Unparsed
    };
    let class = if info.keyword("admin").is_some() {
        C::Admin
    } else if info.keyword("ddl").is_some() {
        C::Ddl
    } else if info.keyword("write").is_some() {
        C::Write
    } else {
        C::Other
    };
    info.class = class;
    info.class_label = info.label.clone();
    info
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

    fn one(sql: &str) -> StatementInfo {
        let infos = analyze(sql);
        assert_eq!(infos.len(), 1, "{sql}: {infos:#?}");
        infos.into_iter().next().unwrap()
    }

    #[test]
    fn plain_select_is_a_read() {
        let i = one("SELECT a, b FROM t WHERE id = $1");
        assert_eq!(i.kind, StatementKind::Select);
        assert_eq!(i.class, StatementClass::Read);
        assert!(i.parsed && i.keywords.is_empty() && i.unbounded_write.is_none());
        assert_eq!(i.tables, vec!["t"]);
        assert_eq!(i.text, "SELECT a, b FROM t WHERE id = $1");
    }

    #[test]
    fn classes_of_common_statements() {
        let cases = [
            ("insert into t values (1)", StatementClass::Write),
            ("update t set a = 1 where id = 2", StatementClass::Write),
            ("delete from t where id = 2", StatementClass::Write),
            ("create table x (a int)", StatementClass::Ddl),
            ("drop table x", StatementClass::Ddl),
            ("alter table x add column b int", StatementClass::Ddl),
            ("grant select on t to bob", StatementClass::Admin),
            ("set search_path = public", StatementClass::Session),
            ("begin", StatementClass::Session),
            ("commit", StatementClass::Session),
            ("show search_path", StatementClass::Read),
            ("explain select 1", StatementClass::Read),
            ("explain delete from t", StatementClass::Read),
            ("explain analyze delete from t", StatementClass::Write),
            ("set role postgres", StatementClass::Admin),
            ("copy t to stdout", StatementClass::Read),
            ("copy t from stdin", StatementClass::Write),
        ];
        for (sql, class) in cases {
            assert_eq!(one(sql).class, class, "{sql}");
        }
    }

    #[test]
    fn data_modifying_cte_is_an_unbounded_write() {
        let i = one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d");
        assert_eq!(i.kind, StatementKind::Select);
        assert_eq!(i.class, StatementClass::Write);
        assert_eq!(i.class_label, "DELETE");
        assert_eq!(i.unbounded_write.as_deref(), Some("DELETE without WHERE"));
        assert_eq!(i.tables, vec!["t"]);
    }

    #[test]
    fn explain_analyze_and_prepare_are_seen_through() {
        let i = one("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t");
        assert_eq!(i.kind, StatementKind::Delete);
        assert!(i.unbounded_write.is_some());
        let p = one("PREPARE p AS DELETE FROM t");
        assert_eq!(p.kind, StatementKind::Delete);
        let def = p.prepare.unwrap();
        assert_eq!(
            (def.name.as_str(), def.text.as_str()),
            ("p", "DELETE FROM t")
        );
        let e = one("EXECUTE P(1)");
        assert_eq!(e.execute_name(), Some("p"));
        let plain = one("EXPLAIN DELETE FROM t");
        assert_eq!(plain.kind, StatementKind::Explain);
        assert!(plain.keywords.is_empty() && plain.unbounded_write.is_none());
    }

    #[test]
    fn splitting_respects_strings_comments_and_dollar_quotes() {
        let infos = analyze("select ';' ; select $$;$$; /* ; */ select \";\" -- ;\n; select 1");
        assert_eq!(infos.len(), 4, "{infos:#?}");
        assert!(
            infos
                .iter()
                .all(|i| i.parsed && i.class == StatementClass::Read)
        );
        assert!(analyze("  -- only a comment\n /* and this */ ;;").is_empty());
    }

    #[test]
    fn one_unparseable_statement_does_not_hide_the_others() {
        let infos = analyze("DO $$ begin null; end $$; drop table t; select 1");
        assert_eq!(infos.len(), 3);
        assert!(!infos[0].parsed && infos[0].keyword("do").is_some());
        assert!(infos[1].parsed && infos[1].keyword("drop").is_some());
        assert!(infos[2].parsed);
    }

    #[test]
    fn keyword_scan_uses_tokens_not_text() {
        // Unparseable on purpose (`tabel`), with DROP in a string only.
        let i = one("selec 'drop table x' from tabel");
        assert!(!i.parsed);
        assert!(i.keyword("drop").is_none(), "{i:#?}");
        let infos = analyze("/* x */ DrOp/**/TaBlE x ;;; (");
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].label, "DROP TABLE");
        assert_eq!(infos[0].text, "DrOp TaBlE x");
        assert!(!infos[1].parsed);
    }

    #[test]
    fn do_body_is_analyzed() {
        let i = one("DO $$ BEGIN EXECUTE 'drop table t'; END $$");
        assert_eq!(i.kind, StatementKind::Other("do".into()));
        let drop = i.keyword("drop").unwrap();
        assert_eq!(drop.label, "DROP TABLE inside a DO block");
    }

    #[test]
    fn function_body_is_analyzed() {
        let i = one("create function f() returns void language sql as $$ delete from t $$");
        assert_eq!(i.kind, StatementKind::Ddl("create_function".into()));
        assert_eq!(
            i.keyword("delete").unwrap().label,
            "DELETE inside a function body"
        );
        assert!(i.unbounded_write.is_some());
    }

    #[test]
    fn functions_are_found_anywhere() {
        for sql in [
            "SELECT pg_read_file('/etc/passwd')",
            "select * from pg_read_file('/etc/passwd')",
            "select pg_catalog.PG_READ_FILE('/etc/passwd')",
            "select \"pg_read_file\"('/etc/passwd')",
            "select U&\"pg\\005fread_file\"('/etc/passwd')",
            "select U&\"pg!005fread_file\" UESCAPE '!' ('/etc/passwd')",
            "select 1 where exists (select pg_read_file('x'))",
            "insert into t values ((select pg_read_file('x')))",
        ] {
            let i = one(sql);
            assert!(
                i.functions.contains(&"pg_read_file".to_string()),
                "{sql}: {i:#?}"
            );
            assert!(i.keyword("dangerous_functions").is_some(), "{sql}");
        }
        // Quoted with another case is another (nonexistent) function.
        assert!(
            one("select \"PG_READ_FILE\"('x')")
                .keyword("dangerous_functions")
                .is_none()
        );
    }

    #[test]
    fn unicode_lookalike_is_not_a_keyword() {
        // `ſet` upper-cases to SET in Unicode; PostgreSQL does not treat it as a keyword.
        let tokens = tokenize("update t \u{17f}et a = 1", false).unwrap();
        assert!(
            tokens
                .iter()
                .all(|t| !matches!(t, Token::Word(w) if w.keyword == SqlKeyword::SET))
        );
    }

    #[test]
    fn backslash_reading_is_added_when_it_differs() {
        let infos = analyze("select 'a\\'' ; drop table t; -- '");
        assert!(
            infos
                .iter()
                .any(|i| i.reading == Reading::BackslashEscapes && i.keyword("drop").is_some()),
            "{infos:#?}"
        );
        // An ordinary backslash that reads the same adds nothing.
        let plain = analyze("select 'C:\\temp'");
        assert!(plain.iter().all(|i| i.keywords.is_empty()));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let sql = format!("select {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let i = one(&sql);
        assert!(!i.parsed);
        let sql = format!(
            "update t set a = {}1{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(one(&sql).unbounded_write.is_some());
    }

    #[test]
    fn too_long_is_not_analyzed() {
        let sql = format!("select '{}'", "x".repeat(MAX_SQL_BYTES));
        assert_eq!(one(&sql).kind, StatementKind::TooLong);
        let many = "select 1;".repeat(MAX_STATEMENTS + 1);
        assert_eq!(one(&many).kind, StatementKind::TooLong);
    }

    #[test]
    fn upsert_and_merge_name_their_actions() {
        let i = one("insert into t values (1) on conflict (id) do update set a = 2");
        assert_eq!(
            i.keyword("update").unwrap().label,
            "INSERT ... ON CONFLICT DO UPDATE"
        );
        let m = one("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE");
        assert_eq!(m.keyword("delete").unwrap().label, "MERGE ... DELETE");
        assert_eq!(m.class, StatementClass::Write);
    }

    #[test]
    fn select_into_and_ctas_create_tables() {
        let i = one("select * into newt from t");
        assert_eq!(i.kind, StatementKind::SelectInto);
        assert_eq!(i.class, StatementClass::Ddl);
        let c = one("create table x as select 1");
        assert_eq!(c.kind, StatementKind::Ddl("create_table_as".into()));
        assert!(c.keyword("write").is_some());
    }

    #[test]
    fn decode_unicode_escapes_handles_forms() {
        assert_eq!(
            decode_unicode_escapes("a\\0062\\+000063\\\\", '\\').as_deref(),
            Some("abc\\")
        );
        assert_eq!(decode_unicode_escapes("bad\\zz", '\\'), None);
    }

    #[test]
    fn deny_kinds_table_covers_every_kind_used() {
        for sql in [
            "drop table t",
            "copy t to program 'x'",
            "set role x",
            "vacuum t",
            "lock table t",
            "select pg_read_file('x')",
            "create extension x",
            "grant all on t to public",
            "revoke all on t from public",
            "call p()",
            "comment on table t is 'x'",
            "ALTER SYSTEM SET x = 1",
            "DO $$ begin end $$",
            "copy t from '/tmp/x'",
        ] {
            for info in analyze(sql) {
                for k in &info.keywords {
                    assert!(is_deny_kind(k.kind), "{sql}: unknown kind {}", k.kind);
                }
            }
        }
    }
}
