//! What the analysis reports about a statement: [`StatementInfo`] and the types in it, and the
//! deny kinds rule sets match.

use std::ops::Range;

use super::functions;

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
        "SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE, set_config('role', ...)",
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
    ("notify", "NOTIFY, pg_notify"),
    (
        "write",
        "every statement that writes data, and DO/CALL/NOTIFY",
    ),
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
    /// Reads data only (SELECT, TABLE, VALUES, SHOW, plain EXPLAIN, FETCH, COPY TO STDOUT).
    Read,
    /// Changes only session state (transactions, SET of an ordinary setting, DEALLOCATE,
    /// DISCARD, LISTEN).
    Session,
    /// Writes data (INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY FROM, CALL, NOTIFY).
    Write,
    /// Changes the schema (CREATE, ALTER, DROP, COMMENT, SELECT INTO).
    Ddl,
    /// Administrative or privilege-changing (GRANT, roles, ALTER SYSTEM, SET ROLE, COPY
    /// PROGRAM/file, DO, VACUUM, LOCK, two-phase commit).
    Admin,
    /// Not known (did not parse, or a statement type the gateway does not classify): never
    /// treated as read-only.
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

/// The data format of a COPY (`FORMAT` option, or the old `BINARY` / `CSV` keywords).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format (the default).
    Text,
    /// CSV.
    Csv,
    /// PostgreSQL's binary format: values are not text, so nothing can mask them.
    Binary,
    /// A format name PostgreSQL does not know (the server refuses the COPY).
    Other(String),
}

/// What a COPY moves, for callers that act on the data (masking refuses binary COPY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInfo {
    /// TO or FROM.
    pub direction: CopyDirection,
    /// Client, server file or program.
    pub endpoint: CopyEndpoint,
    /// The data format.
    pub format: CopyFormat,
    /// The table (`schema.table` when qualified), for `COPY table`.
    pub relation: Option<String>,
    /// The column list, when one is given.
    pub columns: Vec<String>,
    /// For `COPY (query) TO`, the query as PostgreSQL's deparser prints it.
    pub query: Option<String>,
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
    /// COPY (see [`StatementInfo::copy`] for the rest).
    Copy {
        /// TO or FROM.
        direction: CopyDirection,
        /// Client, server file or program.
        endpoint: CopyEndpoint,
    },
    /// A schema change, named after its command tag: `create_table`, `drop_table`,
    /// `alter_table`, `create_extension`, `comment`, `create_table_as`...
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
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, REFRESH MATERIALIZED VIEW.
    Maintenance(String),
    /// SHOW, FETCH, MOVE.
    Show,
    /// Anything else, with a lower-case name (`do`, `listen`, `notify`, `discard`...).
    Other(String),
    /// PostgreSQL's grammar rejects it.
    Unparsed,
    /// Longer than [`MAX_SQL_BYTES`] or [`MAX_TOKENS`], or more than [`MAX_STATEMENTS`]
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
    /// Backslashes escape in ordinary strings (`standard_conforming_strings = off`).
    BackslashEscapes,
}

impl Reading {
    pub(super) fn other(self) -> Reading {
        match self {
            Reading::Standard => Reading::BackslashEscapes,
            Reading::BackslashEscapes => Reading::Standard,
        }
    }
}

/// A statement defined by `PREPARE name AS <statement>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDef {
    /// The prepared statement's name (folded like PostgreSQL does).
    pub name: String,
    /// The prepared statement's text, as PostgreSQL's deparser prints it (strings with
    /// backslashes as `E''`, so it reads the same whatever `standard_conforming_strings` is).
    pub text: String,
}

/// How a function name was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Notation {
    /// A call: `f(...)`, `CALL f(...)`, `FROM f(...)`, a TABLESAMPLE method.
    Call,
    /// A field: `(x).f`, `t.f`, `s.t.f`. PostgreSQL calls `f(x)` when `x` has no column `f`,
    /// so a field named like a listed function counts as a call; other names may be columns.
    Field,
    /// Named as the function an object will call later: a trigger's or event trigger's
    /// function, a cast's `WITH FUNCTION`, an operator's or aggregate's support function.
    Reference,
}

/// A function name found in a statement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionRef {
    /// The function's own name, folded like PostgreSQL folds identifiers (lower case unless
    /// quoted). Lists match on this.
    pub name: String,
    /// The schema when the name was qualified (`pg_catalog` for `pg_catalog.now()`).
    pub schema: Option<String>,
    /// How it was written.
    pub notation: Notation,
}

impl FunctionRef {
    /// `schema.name` or `name`, for messages.
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// What [`analyze`] found out about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementInfo {
    /// What the statement is (after looking through EXPLAIN ANALYZE / PREPARE).
    pub kind: StatementKind,
    /// The most severe class of anything the statement does (a SELECT with a data-modifying
    /// CTE is a write).
    pub class: StatementClass,
    /// A short upper-case label of the statement, e.g. `DROP TABLE`.
    pub label: String,
    /// The label of the part that made [`Self::class`] what it is (`DELETE` for
    /// `WITH d AS (DELETE ...) SELECT ...`).
    pub class_label: String,
    /// The command tag PostgreSQL gives the statement (`SELECT`, `CREATE TABLE`, `EXPLAIN`,
    /// `SELECT INTO`...), before row counts; empty when it did not parse.
    pub tag: String,
    /// The deny kinds this statement matches, in the order found, one entry per kind.
    pub keywords: Vec<Keyword>,
    /// Why the statement writes rows without a bound (DELETE/UPDATE without WHERE or with a
    /// WHERE that is always true, TRUNCATE, MERGE ... ON true).
    pub unbounded_write: Option<String>,
    /// Functions named anywhere in the statement, bodies included.
    pub functions: Vec<FunctionRef>,
    /// Tables the statement names (CTE names left out).
    pub tables: Vec<String>,
    /// False when PostgreSQL's grammar rejected the text.
    pub parsed: bool,
    /// The statement text normalised: comments replaced by a space, runs of whitespace
    /// collapsed to one space, trimmed.
    pub text: String,
    /// Set for `PREPARE name AS ...`: what `EXECUTE name` will run.
    pub prepare: Option<PreparedDef>,
    /// Which reading of the text this statement comes from.
    pub reading: Reading,
    /// The prepared statement this statement runs (`EXECUTE p`, `EXPLAIN ANALYZE EXECUTE p`,
    /// `CREATE TABLE t AS EXECUTE p`).
    pub executes: Option<String>,
    /// For COPY: direction, endpoint, format, table or query.
    pub copy: Option<CopyInfo>,
    /// Why the gateway cannot vouch for what this statement does (it does not parse, a body
    /// cannot be read, it runs SQL built at run time, it changes how later text is decoded...).
    /// Every rule set that can deny anything blocks it.
    pub unverifiable: Option<String>,
    /// Where the statement is in the analyzed text (bytes).
    pub span: Range<usize>,
    /// The analysis looked at the value of a number literal (`WHERE 1 = 1`), so texts that
    /// differ only in numbers may be judged differently: not cached by shape.
    pub numbers_matter: bool,
}

impl StatementInfo {
    /// The first keyword of deny kind `kind`, if the statement matches it.
    pub fn keyword(&self, kind: &str) -> Option<&Keyword> {
        self.keywords.iter().find(|k| k.kind == kind)
    }

    /// The prepared statement this statement runs, if any: the caller looks up the text it
    /// remembered for that name and judges that too.
    pub fn execute_name(&self) -> Option<&str> {
        self.executes.as_deref()
    }

    pub(super) fn new(kind: StatementKind, label: String, parsed: bool, text: String) -> Self {
        StatementInfo {
            kind,
            class: StatementClass::Read,
            class_label: label.clone(),
            label,
            tag: String::new(),
            keywords: Vec::new(),
            unbounded_write: None,
            functions: Vec::new(),
            tables: Vec::new(),
            parsed,
            text,
            prepare: None,
            reading: Reading::Standard,
            executes: None,
            copy: None,
            unverifiable: None,
            span: 0..0,
            numbers_matter: false,
        }
    }

    /// A statement the gateway did not analyze because of its size.
    pub(super) fn too_long(label: String, sql: &str) -> Self {
        let mut info = StatementInfo::new(StatementKind::TooLong, label, false, String::new());
        info.class = StatementClass::Other;
        info.class_label = info.label.clone();
        info.unverifiable = Some(format!("{} is not checked", info.label));
        info.span = 0..sql.len();
        info
    }

    pub(super) fn add_keyword(&mut self, kind: &'static str, label: &str) {
        if self.keyword(kind).is_none() {
            self.keywords.push(Keyword {
                kind,
                label: label.to_owned(),
            });
        }
    }

    pub(super) fn raise_class(&mut self, class: StatementClass, label: &str) {
        if class > self.class {
            self.class = class;
            label.clone_into(&mut self.class_label);
        }
    }

    pub(super) fn add_function(&mut self, f: FunctionRef) {
        if !self.functions.contains(&f) {
            self.functions.push(f);
        }
    }

    pub(super) fn mark_unverifiable(&mut self, why: String) {
        if self.unverifiable.is_none() {
            self.unverifiable = Some(why);
        }
    }

    /// Takes in what a body (DO block, function body, string run by EXECUTE) does: its deny
    /// kinds, unbounded writes, functions and anything that cannot be checked count, its class
    /// does not (the body runs later, or the outer statement is already classed).
    pub(super) fn absorb_body(&mut self, body: &[StatementInfo], place: &str) {
        for info in body {
            let placed = |label: &str| {
                if place.is_empty() || label.ends_with(place) {
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
            if let Some(why) = &info.unverifiable {
                self.mark_unverifiable(placed(why));
            }
            self.numbers_matter |= info.numbers_matter;
        }
    }

    /// Marks calls of [`DANGEROUS_FUNCTIONS`] (in any notation) as deny kind
    /// `dangerous_functions`, and `pg_notify` as `notify`.
    pub(super) fn flag_listed_functions(&mut self) {
        let dangerous: Vec<String> = self
            .functions
            .iter()
            .filter(|f| functions::is_dangerous(&f.name))
            .map(FunctionRef::qualified)
            .collect();
        let notify: Vec<String> = self
            .functions
            .iter()
            .filter(|f| f.name == "pg_notify")
            .map(FunctionRef::qualified)
            .collect();
        for name in dangerous {
            self.add_keyword("dangerous_functions", &name);
        }
        for name in notify {
            self.add_keyword("notify", &name);
            self.add_keyword("write", &name);
        }
    }
}
