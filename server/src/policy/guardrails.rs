//! Guardrails: named SQL rule sets attached per connection, and their verdicts.
//!
//! A rule set denies statement kinds (`drop`, `truncate`, `copy_program`,
//! `do`, `ddl`, `write`, ... see [`DENY_KINDS`]), writes without a `WHERE`,
//! statements matching regular expressions, calls of named functions, or
//! everything but reads (`read_only`). [`Guardrails::check`] judges every
//! statement of a multi-statement text (simple protocol Query) or the one
//! statement of a Parse, and returns a [`Verdict`]; the protocol adapter
//! turns a block into its own error (PostgreSQL: ErrorResponse, SQLSTATE
//! [`SQLSTATE`], message [`error_message`]).
//!
//! Guardrails **fail closed**: a statement that does not parse is judged by a
//! keyword scan and blocked if a denied keyword appears; read-only mode blocks
//! every statement it cannot parse; text over [`super::sql::MAX_SQL_BYTES`]
//! or with more than [`super::sql::MAX_STATEMENTS`] statements is blocked;
//! `EXECUTE p` of a statement the caller cannot show the text of is blocked.
//!
//! This is a guardrail on top of database permissions, not a replacement for
//! them. It stops mistakes and casual misuse; it cannot see what functions,
//! triggers, rules or dynamic SQL do when they run, it does not detect
//! tautologies (`where true`), and it does not know which functions have side
//! effects beyond the lists in [`super::sql`]. Give the gateway's database
//! role only the privileges the connection needs. See the module docs of
//! [`super::sql`] for the full list of limits.
//!
//! Built-in rule sets, usable without being declared:
//! - `read-only`: only reads and session statements (`SET`, `BEGIN`...);
//!   dangerous and writing functions (`nextval`, `lo_import`...) are denied;
//! - `no-ddl`: deny kind `ddl` (every schema change, SELECT INTO, DO);
//! - `no-unbounded-writes`: DELETE/UPDATE without WHERE, and TRUNCATE;
//! - `no-admin`: deny kinds `admin` and `dangerous_functions`.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::Verdict;
use super::sql::{
    DENY_KINDS, Notation, Reading, StatementClass, StatementInfo, StatementKind, analyze,
    has_side_effects, is_side_effect_free,
};

/// Names of the built-in rule sets.
pub const BUILTIN_RULES: &[&str] = &["read-only", "no-ddl", "no-unbounded-writes", "no-admin"];

/// How many `EXECUTE` of a prepared statement are followed (a prepared
/// statement cannot itself be an EXECUTE in PostgreSQL; the bound only
/// guards against a caller's lookup that loops).
const MAX_EXECUTE_DEPTH: usize = 4;

/// Upper bound on the compiled size of one deny pattern, so a configuration
/// cannot make every check slow (the regex crate matches in linear time, but
/// a huge automaton still costs memory and time per statement).
const MAX_PATTERN_SIZE: usize = 1 << 20;

/// One named rule set as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    /// The name connections refer to; appears in every block message.
    pub name: String,
    /// Deny kinds (see [`DENY_KINDS`]): `drop`, `truncate`, `copy_program`,
    /// `do`, `set_role`, `dangerous_functions`, `ddl`, `write`, `admin`...
    #[serde(default)]
    pub deny: Vec<String>,
    /// Deny DELETE/UPDATE without WHERE (also in data-modifying CTEs) and TRUNCATE.
    #[serde(default)]
    pub deny_unbounded_writes: bool,
    /// Regular expressions, case-insensitive, matched against each statement
    /// normalised: comments replaced by a space, whitespace runs collapsed to
    /// one space (write `\s*` where spacing may vary, e.g. `pg_sleep\s*\(`).
    /// String literals are part of the text.
    #[serde(default)]
    pub deny_patterns: Vec<String>,
    /// Allow only reads (SELECT, SHOW, plain EXPLAIN, COPY TO STDOUT) and
    /// session statements; block every statement that does not parse.
    #[serde(default)]
    pub read_only: bool,
    /// Function names to deny wherever they are called, in any notation
    /// (`f(x)`, `(x).f`, `t.f`); case-insensitive, schema ignored.
    #[serde(default)]
    pub deny_functions: Vec<String>,
    /// With `read_only`: functions that may be called besides PostgreSQL's
    /// built-in functions known to be free of side effects (user functions
    /// are refused otherwise). Case-insensitive, schema ignored.
    #[serde(default)]
    pub allow_functions: Vec<String>,
    /// Extra text added to the block message (e.g. whom to ask).
    #[serde(default)]
    pub message: Option<String>,
}

impl GuardrailConfig {
    /// The built-in rule set called `name`, if there is one.
    pub fn builtin(name: &str) -> Option<GuardrailConfig> {
        let named = GuardrailConfig {
            name: name.to_owned(),
            ..GuardrailConfig::default()
        };
        match name {
            "read-only" => Some(GuardrailConfig {
                read_only: true,
                ..named
            }),
            "no-ddl" => Some(GuardrailConfig {
                deny: vec!["ddl".into()],
                ..named
            }),
            "no-unbounded-writes" => Some(GuardrailConfig {
                deny_unbounded_writes: true,
                ..named
            }),
            "no-admin" => Some(GuardrailConfig {
                deny: vec!["admin".into(), "dangerous_functions".into()],
                ..named
            }),
            _ => None,
        }
    }
}

/// SQLSTATE for a block: insufficient_privilege.
pub const SQLSTATE: &str = "42501";

/// The message for the client, `blocked by guardrail <rule>: <reason>`;
/// `None` when allowed.
pub fn error_message(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Allow | Verdict::Review { .. } => None,
        Verdict::Block { rule, reason } => Some(format!("blocked by guardrail {rule}: {reason}")),
    }
}

fn is_allowed(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Allow)
}

/// One compiled rule set.
#[derive(Debug, Clone)]
struct RuleSet {
    name: String,
    deny: Vec<&'static str>,
    deny_unbounded_writes: bool,
    patterns: Vec<(String, Regex)>,
    read_only: bool,
    deny_functions: Vec<String>,
    allow_functions: Vec<String>,
    message: Option<String>,
}

/// Rule sets compiled for checking; cheap to share (`Clone`) between
/// connections that use the same names.
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    sets: Vec<RuleSet>,
}

impl Guardrails {
    /// Compiles rule sets. Errors name the rule set and what is wrong (an
    /// unknown deny kind, a bad regex, an empty name or function).
    pub fn compile(sets: &[GuardrailConfig]) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(sets.len());
        for set in sets {
            compiled.push(compile_set(set)?);
        }
        Ok(Guardrails { sets: compiled })
    }

    /// The rule sets a connection names, looked up in `declared` and then in
    /// the built-ins. Errors on an unknown name.
    pub fn resolve(names: &[String], declared: &[GuardrailConfig]) -> Result<Self, String> {
        let mut sets = Vec::with_capacity(names.len());
        for name in names {
            let set = match declared.iter().find(|d| &d.name == name) {
                Some(d) => d.clone(),
                None => GuardrailConfig::builtin(name).ok_or_else(|| {
                    format!(
                        "unknown guardrail `{name}`: declare it or use a built-in ({})",
                        BUILTIN_RULES.join(", ")
                    )
                })?,
            };
            sets.push(set);
        }
        Self::compile(&sets)
    }

    /// Validates declared rule sets at configuration load: each compiles,
    /// names are unique and do not take a built-in's name (which would
    /// silently change what `read-only` means for every connection).
    pub fn validate(declared: &[GuardrailConfig]) -> Result<(), String> {
        for (i, set) in declared.iter().enumerate() {
            if BUILTIN_RULES.contains(&set.name.as_str()) {
                return Err(format!(
                    "guardrail `{}`: the name is built in; choose another",
                    set.name
                ));
            }
            if declared
                .iter()
                .skip(i + 1)
                .any(|other| other.name == set.name)
            {
                return Err(format!("guardrail `{}` is declared twice", set.name));
            }
        }
        Self::compile(declared).map(|_| ())
    }

    /// True when there is no rule set (every statement is allowed).
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// True when a rule set has deny patterns (which match the statement text itself).
    pub fn has_patterns(&self) -> bool {
        self.sets.iter().any(|s| !s.patterns.is_empty())
    }

    /// The rule set names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sets.iter().map(|s| s.name.as_str())
    }

    /// Judges `sql`. `EXECUTE p` is blocked, since its text is unknown here:
    /// callers that track prepared statements use [`Guardrails::check_with`].
    pub fn check(&self, sql: &str) -> Verdict {
        self.check_with(sql, |_| None)
    }

    /// Judges `sql`; `prepared(name)` returns the text of prepared statement
    /// `name` (from an earlier `PREPARE` or protocol Parse) so `EXECUTE name`
    /// is judged as that text.
    pub fn check_with(&self, sql: &str, prepared: impl Fn(&str) -> Option<String>) -> Verdict {
        if self.sets.is_empty() {
            return Verdict::Allow;
        }
        self.check_analyzed(&analyze(sql), &prepared)
    }

    /// Judges statements already analyzed (so a pipeline that also needs the
    /// classes for reviews analyzes once). A `PREPARE p` earlier in `infos`
    /// defines what a later `EXECUTE p` of the same text runs, ahead of
    /// `prepared`; a `DEALLOCATE` there forgets it.
    pub fn check_analyzed(
        &self,
        infos: &[StatementInfo],
        prepared: &dyn Fn(&str) -> Option<String>,
    ) -> Verdict {
        self.check_depth(infos, prepared, 0)
    }

    fn check_depth(
        &self,
        infos: &[StatementInfo],
        prepared: &dyn Fn(&str) -> Option<String>,
        depth: usize,
    ) -> Verdict {
        // Prepared earlier in this text; after a DEALLOCATE here, nothing the caller
        // remembers is looked up either (the server forgot it, the EXECUTE would fail).
        let mut local: Vec<(&str, &str)> = Vec::new();
        let mut deallocated = false;
        for info in infos {
            if let Some(name) = info.execute_name() {
                // Both readings of a text may prepare the same name: judge what either does.
                let here: Vec<&str> = local
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, text)| *text)
                    .collect();
                let text = if !here.is_empty() {
                    (!here.contains(&"")).then(|| here.join(";\n"))
                } else if deallocated || depth >= MAX_EXECUTE_DEPTH {
                    None
                } else {
                    prepared(name)
                };
                let verdict = self.check_execute(name, text, info, prepared, depth);
                if !is_allowed(&verdict) {
                    return verdict;
                }
            }
            // The statement itself too: `CREATE TABLE t AS EXECUTE p` creates a table, and
            // `EXECUTE p(f(x))` calls `f`.
            for set in &self.sets {
                if let Some(reason) = set.judge(info) {
                    return set.block(reason);
                }
            }
            if let Some(def) = &info.prepare {
                local.push((&def.name, &def.text));
            }
            if matches!(&info.kind, StatementKind::Other(k) if k == "deallocate") {
                local.clear();
                deallocated = true;
            }
        }
        Verdict::Allow
    }

    fn check_execute(
        &self,
        name: &str,
        text: Option<String>,
        info: &StatementInfo,
        prepared: &dyn Fn(&str) -> Option<String>,
        depth: usize,
    ) -> Verdict {
        // Patterns still apply to the EXECUTE text itself.
        for set in &self.sets {
            if let Some(reason) = set.match_patterns(info) {
                return set.block(reason);
            }
        }
        match (text, self.sets.first()) {
            (Some(text), _) => self.check_depth(&analyze(&text), prepared, depth + 1),
            (None, Some(first)) => first.block(format!(
                "EXECUTE of prepared statement `{name}` whose text the gateway has not checked"
            )),
            (None, None) => Verdict::Allow,
        }
    }
}

fn compile_set(set: &GuardrailConfig) -> Result<RuleSet, String> {
    let name = &set.name;
    if name.trim().is_empty() {
        return Err("a guardrail has an empty name".into());
    }
    let mut deny = Vec::with_capacity(set.deny.len());
    for kind in &set.deny {
        let kind = kind.trim().to_ascii_lowercase();
        match DENY_KINDS.iter().find(|(k, _)| *k == kind) {
            Some((k, _)) => deny.push(*k),
            None => {
                let known: Vec<&str> = DENY_KINDS.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "guardrail `{name}`: unknown deny kind `{kind}` (known: {})",
                    known.join(", ")
                ));
            }
        }
    }
    let mut patterns = Vec::with_capacity(set.deny_patterns.len());
    for pattern in &set.deny_patterns {
        let regex = RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(MAX_PATTERN_SIZE)
            .build()
            .map_err(|e| {
                format!("guardrail `{name}`: deny pattern `{pattern}` is not a valid regex: {e}")
            })?;
        patterns.push((pattern.clone(), regex));
    }
    let deny_functions = function_names(name, "deny_functions", &set.deny_functions)?;
    let allow_functions = function_names(name, "allow_functions", &set.allow_functions)?;
    if !allow_functions.is_empty() && !set.read_only {
        return Err(format!(
            "guardrail `{name}`: allow_functions only applies with read_only = true"
        ));
    }
    Ok(RuleSet {
        name: name.clone(),
        deny,
        deny_unbounded_writes: set.deny_unbounded_writes,
        patterns,
        read_only: set.read_only,
        deny_functions,
        allow_functions,
        message: set.message.clone(),
    })
}

/// Function names of a list in the configuration, folded like PostgreSQL folds unquoted
/// identifiers; the schema is ignored (`pg_catalog.pg_sleep` is `pg_sleep`), like in analysis.
fn function_names(set: &str, key: &str, names: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(names.len());
    for f in names {
        let f = f
            .trim()
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if f.is_empty() {
            return Err(format!("guardrail `{set}`: empty function name in {key}"));
        }
        out.push(f);
    }
    Ok(out)
}

impl RuleSet {
    fn block(&self, reason: String) -> Verdict {
        // The configured message rides along in the reason so every adapter
        // shows it without knowing about it.
        let reason = match &self.message {
            Some(hint) => format!("{reason} ({hint})"),
            None => reason,
        };
        Verdict::Block {
            rule: self.name.clone(),
            reason,
        }
    }

    /// Does this rule set deny anything at all? One that does blocks what the
    /// gateway cannot check; one that denies nothing lets everything through.
    fn could_deny(&self) -> bool {
        !self.deny.is_empty()
            || self.deny_unbounded_writes
            || !self.patterns.is_empty()
            || self.read_only
            || !self.deny_functions.is_empty()
    }

    /// Why this rule set blocks `info`, or `None` when it passes.
    fn judge(&self, info: &StatementInfo) -> Option<String> {
        if info.kind == StatementKind::TooLong {
            return Some(format!("{} is not checked", info.label));
        }
        let reason = self
            .judge_unverifiable(info)
            .or_else(|| self.judge_read_only(info))
            .or_else(|| self.judge_kinds(info))
            .or_else(|| self.judge_unbounded(info))
            .or_else(|| self.judge_functions(info))
            .or_else(|| self.match_patterns(info))?;
        Some(match info.reading {
            Reading::Standard => reason,
            // Say why a statement the user may not see in the text is there.
            Reading::BackslashEscapes => {
                format!("{reason} (reading backslashes in strings as escapes)")
            }
        })
    }

    fn judge_unverifiable(&self, info: &StatementInfo) -> Option<String> {
        let why = info.unverifiable.as_ref()?;
        if !self.could_deny() {
            return None;
        }
        Some(if info.parsed {
            format!("{} cannot be checked: {why}", info.label)
        } else {
            why.clone()
        })
    }

    fn judge_read_only(&self, info: &StatementInfo) -> Option<String> {
        if !self.read_only {
            return None;
        }
        let label = &info.class_label;
        let by_class = match info.class {
            StatementClass::Read | StatementClass::Session => None,
            StatementClass::Write => Some(format!("{label} writes data")),
            StatementClass::Ddl => Some(format!("{label} changes the schema")),
            StatementClass::Admin => Some(format!("{label} is an administrative statement")),
            StatementClass::Other => Some(format!("{label} is not known to be read-only")),
        };
        if by_class.is_some() {
            return by_class;
        }
        effects_of_a_read(info, &|name| self.allow_functions.iter().any(|a| a == name))
    }

    fn judge_kinds(&self, info: &StatementInfo) -> Option<String> {
        let kw = info.keywords.iter().find(|k| self.deny.contains(&k.kind))?;
        Some(match kw.kind {
            "dangerous_functions" => format!("function {} is denied", kw.label),
            _ => format!("{} is denied", kw.label),
        })
    }

    fn judge_unbounded(&self, info: &StatementInfo) -> Option<String> {
        if !self.deny_unbounded_writes {
            return None;
        }
        info.unbounded_write.clone()
    }

    fn judge_functions(&self, info: &StatementInfo) -> Option<String> {
        let f = info
            .functions
            .iter()
            .find(|f| self.deny_functions.contains(&f.name))?;
        Some(format!("function {} is denied", f.qualified()))
    }

    fn match_patterns(&self, info: &StatementInfo) -> Option<String> {
        self.patterns
            .iter()
            .find(|(_, re)| re.is_match(&info.text))
            .map(|(p, _)| format!("matches deny pattern `{p}`"))
    }
}

/// Why a statement PostgreSQL counts as a read may still change something: it takes row locks,
/// or calls a function that writes or is not known to be free of side effects (`allowed` names
/// functions the configuration vouches for). `None` for a plain read. Read-only mode refuses
/// such statements; a `write` review holds them.
pub fn effects_of_a_read(info: &StatementInfo, allowed: &dyn Fn(&str) -> bool) -> Option<String> {
    if let Some(lock) = info.keyword("lock") {
        return Some(format!("{} takes row locks", lock.label));
    }
    for f in &info.functions {
        if has_side_effects(&f.name) {
            return Some(format!("function {} has side effects", f.qualified()));
        }
        let free = f.notation != Notation::Call
            || is_side_effect_free(f.schema.as_deref(), &f.name)
            || allowed(&f.name);
        if !free {
            return Some(format!(
                "function {} is not known to be free of side effects (read-only allows \
                 PostgreSQL's built-in functions that are, and those in allow_functions)",
                f.qualified()
            ));
        }
    }
    None
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

    fn rules(names: &[&str], declared: &[GuardrailConfig]) -> Guardrails {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        Guardrails::resolve(&names, declared).unwrap()
    }

    fn deny(kinds: &[&str]) -> Guardrails {
        Guardrails::compile(&[GuardrailConfig {
            name: "t".into(),
            deny: kinds.iter().map(|s| s.to_string()).collect(),
            ..GuardrailConfig::default()
        }])
        .unwrap()
    }

    #[track_caller]
    fn blocked(g: &Guardrails, sql: &str) -> (String, String) {
        match g.check(sql) {
            Verdict::Block { rule, reason } => (rule, reason),
            other => panic!("{other:?} but should be blocked: {sql}"),
        }
    }

    #[track_caller]
    fn allowed(g: &Guardrails, sql: &str) {
        let v = g.check(sql);
        assert!(
            is_allowed(&v),
            "blocked but should be allowed: {sql}: {v:?}"
        );
    }

    /// Every bypass attempt with the rule set that must catch it.
    #[test]
    fn bypass_attempts_are_blocked() {
        let no_drop = deny(&["drop"]);
        let ro = rules(&["read-only"], &[]);
        let unbounded = rules(&["no-unbounded-writes"], &[]);
        let no_ddl = rules(&["no-ddl"], &[]);
        let admin = rules(&["no-admin"], &[]);
        let cases: Vec<(&Guardrails, String)> = vec![
            (&no_drop, "DrOp TaBlE x".into()),
            (&no_drop, "/* c */ drop/**/table x".into()),
            (&no_drop, "-- c\ndrop table x".into()),
            (&no_drop, "select 1; drop table x".into()),
            (&no_drop, "select 1;drop table x".into()),
            (&no_drop, "select ';'; drop table x".into()),
            (&no_drop, "select $$;$$; drop table x".into()),
            (
                &no_drop,
                "/* nested /* comment */ still */ drop table x".into(),
            ),
            (&no_drop, "drop\ttable\r\nx".into()),
            (&no_drop, "DROP TABLE IF EXISTS \"x\" CASCADE".into()),
            (&no_drop, "drop tabel x ;;; (".into()),
            (
                &no_drop,
                "DO $$ BEGIN EXECUTE 'drop table t'; END $$".into(),
            ),
            (
                &no_drop,
                "create function f() returns void language sql as $$ drop table t $$".into(),
            ),
            (&no_drop, "select 'a\\'' ; drop table t; -- '".into()),
            (
                &no_drop,
                "DO $x$ BEGIN EXECUTE $y$ EXECUTE $z$drop table t$z$ $y$; END $x$".into(),
            ),
            (&no_drop, "drop owned by bob".into()),
            (
                &ro,
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d".into(),
            ),
            (&ro, "EXPLAIN ANALYZE DELETE FROM t WHERE id = 1".into()),
            (
                &ro,
                "explain (analyze, format json) insert into t values (1)".into(),
            ),
            (&ro, "PREPARE p AS DELETE FROM t WHERE id = $1".into()),
            (&ro, "select * into newt from t".into()),
            (&ro, "create table x as select 1".into()),
            (&ro, "select nextval('s')".into()),
            (&ro, "select * from t for update".into()),
            (&ro, "SELECT pg_read_file('/etc/passwd')".into()),
            (&ro, "selec * from t".into()),
            (&ro, "execute p".into()),
            (&ro, "set role postgres".into()),
            (&ro, "copy t from stdin".into()),
            (&ro, "call do_things()".into()),
            (&unbounded, "update t set a=1".into()),
            (&unbounded, "DELETE FROM t".into()),
            (&unbounded, "delete from only t using u".into()),
            (
                &unbounded,
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d".into(),
            ),
            (&unbounded, "EXPLAIN ANALYZE DELETE FROM t".into()),
            (&unbounded, "PREPARE p AS DELETE FROM t".into()),
            (&unbounded, "TRUNCATE t".into()),
            (&unbounded, "truncate table only t cascade".into()),
            (&unbounded, "select 1; update t set a = 1".into()),
            (
                &unbounded,
                format!(
                    "update t set a = {}1{}",
                    "(".repeat(10_000),
                    ")".repeat(10_000)
                ),
            ),
            (&no_ddl, "select * into newt from t".into()),
            (&no_ddl, "create table x as select 1".into()),
            (
                &no_ddl,
                "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING".into(),
            ),
            (
                &no_ddl,
                "create or replace function f() returns int as $$ select 1 $$ language sql".into(),
            ),
            (
                &no_ddl,
                "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()".into(),
            ),
            (&no_ddl, "alter table t add column c int".into()),
            (&no_ddl, "DO $$ begin null; end $$".into()),
            (&no_ddl, "comment on table t is 'x'".into()),
            (&admin, "COPY t TO PROGRAM 'curl http://x'".into()),
            (&admin, "copy (select 1) to program 'sh'".into()),
            (&admin, "COPY t TO PROGRAM $$curl x$$".into()),
            (&admin, "copy t from '/etc/passwd'".into()),
            (&admin, "ALTER SYSTEM SET work_mem = '1GB'".into()),
            (&admin, "alter system reset all".into()),
            (&admin, "grant all on t to public".into()),
            (&admin, "SET ROLE postgres".into()),
            (&admin, "set session authorization postgres".into()),
            (&admin, "RESET ROLE".into()),
            (&admin, "set role = 'postgres'".into()),
            (&admin, "VACUUM (FULL) t".into()),
            (&admin, "lock table t in access exclusive mode".into()),
            (&admin, "select pg_terminate_backend(123)".into()),
            (
                &admin,
                "select set_config('role', 'postgres', false)".into(),
            ),
            (
                &admin,
                "select U&\"pg\\005fread_file\"('/etc/passwd')".into(),
            ),
            (&admin, "select \"pg_read_file\"('/etc/passwd')".into()),
            (&admin, "select * from pg_catalog.pg_ls_dir('.')".into()),
            (
                &admin,
                "select 1 from t where lo_import('/etc/passwd') > 0".into(),
            ),
            (
                &admin,
                "do language plpgsql $x$ begin perform 1; end $x$".into(),
            ),
            (&admin, "LOAD '/tmp/evil.so'".into()),
            (
                &admin,
                format!("select '{}'", "x".repeat(super::super::sql::MAX_SQL_BYTES)),
            ),
            (
                &admin,
                "select 1;".repeat(super::super::sql::MAX_STATEMENTS + 1),
            ),
        ];
        assert!(cases.len() >= 30);
        for (g, sql) in &cases {
            blocked(g, sql);
        }
    }

    #[test]
    fn deny_kinds_block_their_statements() {
        let cases = [
            ("truncate", "TRUNCATE t"),
            ("grant", "grant select on t to bob"),
            ("revoke", "revoke select on t from bob"),
            ("extension", "create extension dblink"),
            ("extension", "alter extension dblink update"),
            ("copy_program", "copy t from program 'cat /etc/passwd'"),
            ("do", "do language plpgsql $x$ begin null; end $x$"),
            ("alter_system", "ALTER SYSTEM SET fsync = off"),
            ("set_role", "SET LOCAL ROLE admin"),
            (
                "dangerous_functions",
                "select dblink_exec('x', 'drop table t')",
            ),
            ("vacuum", "VACUUM t"),
            ("vacuum", "VACUUM (FULL, ANALYZE) t"),
            ("lock", "LOCK TABLE t"),
            ("write", "insert into t values (1)"),
            (
                "write",
                "with x as (insert into t values (1) returning 1) select * from x",
            ),
            ("ddl", "drop index i"),
            ("create", "create index i on t (a)"),
            ("alter", "alter role bob superuser"),
            ("call", "CALL p()"),
            (
                "delete",
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            ),
            (
                "update",
                "insert into t values (1) on conflict (id) do update set a = 2",
            ),
        ];
        for (kind, sql) in cases {
            blocked(&deny(&[kind]), sql);
        }
    }

    #[test]
    fn reasons_are_short_and_specific() {
        let g = Guardrails::compile(&[GuardrailConfig {
            name: "prod".into(),
            deny: vec!["drop".into(), "dangerous_functions".into()],
            deny_unbounded_writes: true,
            deny_patterns: vec![r"pg_sleep\s*\(".into()],
            ..GuardrailConfig::default()
        }])
        .unwrap();
        let cases = [
            ("drop table x", "DROP TABLE is denied"),
            ("DELETE FROM t", "DELETE without WHERE"),
            ("update t set a = 1", "UPDATE without WHERE"),
            (
                "select pg_sleep (10)",
                r"matches deny pattern `pg_sleep\s*\(`",
            ),
            (
                "select 'a\\'' ; drop table t; -- '",
                "DROP TABLE is denied (reading backslashes in strings as escapes)",
            ),
            (
                "select pg_read_file('x')",
                "function pg_read_file is denied",
            ),
            (
                "drop tabel x ;;; (",
                "statement could not be parsed (syntax error); only statements the gateway can read are allowed",
            ),
            (
                "DO $$ BEGIN EXECUTE 'drop table t'; END $$",
                "DROP TABLE inside a DO block is denied",
            ),
            (
                "DO $$ BEGIN EXECUTE 'dr' || 'op table t'; END $$",
                "DO block cannot be checked: it runs SQL built at run time (EXECUTE of an expression that is not a constant string), which the gateway cannot check",
            ),
            (
                "select (pid).pg_terminate_backend from pg_stat_activity",
                "function pg_terminate_backend is denied",
            ),
        ];
        for (sql, reason) in cases {
            assert_eq!(
                blocked(&g, sql),
                ("prod".to_string(), reason.to_string()),
                "{sql}"
            );
        }
        let v = g.check("drop table x");
        assert_eq!(
            error_message(&v).unwrap(),
            "blocked by guardrail prod: DROP TABLE is denied"
        );
        assert_eq!(SQLSTATE, "42501");
    }

    #[test]
    fn read_only_reasons() {
        let g = rules(&["read-only"], &[]);
        assert_eq!(
            blocked(&g, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").1,
            "DELETE writes data"
        );
        assert_eq!(
            blocked(&g, "drop table t").1,
            "DROP TABLE changes the schema"
        );
        assert_eq!(
            blocked(&g, "grant all on t to x").1,
            "GRANT is an administrative statement"
        );
    }

    #[test]
    fn no_false_positives() {
        let no_drop = deny(&["drop", "do", "delete", "truncate", "set_role"]);
        allowed(&no_drop, "select 'drop table x'");
        allowed(&no_drop, "select * from \"drop\"");
        allowed(&no_drop, "select $$drop table t$$");
        allowed(&no_drop, "select 1 -- drop table x");
        allowed(&no_drop, "/* drop table x */ select 1");
        allowed(
            &no_drop,
            "insert into t values (1) on conflict (id) do nothing",
        );
        allowed(&no_drop, "select role from t");
        allowed(&no_drop, "select 'C:\\temp'");
        let ro = rules(&["read-only"], &[]);
        for sql in [
            "SELECT a, b FROM t WHERE id = $1",
            "select 1; select 2",
            "explain select * from t",
            "explain delete from t",
            "show search_path",
            "begin; select 1; commit",
            "set search_path = public",
            "with x as (select 1) select * from x",
            "copy (select 1) to stdout",
            "select count(*) from t join u on t.id = u.id group by 1 order by 1 limit 5",
            "",
            "-- nothing",
        ] {
            allowed(&ro, sql);
        }
        let unbounded = rules(&["no-unbounded-writes"], &[]);
        allowed(&unbounded, "delete from t where id = 1");
        allowed(&unbounded, "update t set a = 1 where id = 1");
        allowed(&unbounded, "insert into t select * from u");
    }

    /// Conditions made of constants bound nothing; other tautologies are a
    /// known limit, documented.
    #[test]
    fn constant_conditions_are_unbounded_other_tautologies_a_known_limit() {
        let g = rules(&["no-unbounded-writes"], &[]);
        blocked(&g, "update t set a=1 where true");
        blocked(&g, "delete from t where 1=1");
        blocked(&g, "delete from t where 'yes'");
        blocked(&g, "merge into t using s on true when matched then delete");
        allowed(&g, "delete from t where id > -1");
        allowed(&g, "delete from t where id is not null or id is null");
    }

    /// Read-only allows the functions PostgreSQL declares free of side
    /// effects, and those the rule set names; user functions are refused.
    #[test]
    fn read_only_allows_only_functions_known_free_of_side_effects() {
        let ro = rules(&["read-only"], &[]);
        for sql in [
            "select my_function_that_deletes()",
            "select public.lower('x')",
            "select * from my_table_function()",
            "select pg_try_advisory_lock(1)",
            // They assign a transaction ID: a WAL and commit-log write.
            "select txid_current()",
            "select pg_current_xact_id()",
        ] {
            blocked(&ro, sql);
        }
        for sql in [
            "select lower(name), count(*), now(), pg_catalog.upper('x') from t group by 1",
            "select random(), pg_relation_size('t'), generate_series(1, 3)",
            "select (t).my_field from t",
        ] {
            allowed(&ro, sql);
        }
        let mine = GuardrailConfig {
            name: "ro".into(),
            read_only: true,
            allow_functions: vec!["app.format_name".into()],
            ..GuardrailConfig::default()
        };
        let g = Guardrails::compile(&[mine]).unwrap();
        allowed(&g, "select format_name(a) from t");
        blocked(&g, "select other_function(a) from t");
        // Only with read_only.
        let bad = GuardrailConfig {
            name: "x".into(),
            allow_functions: vec!["f".into()],
            ..GuardrailConfig::default()
        };
        assert!(Guardrails::compile(&[bad]).is_err());
    }

    /// What PostgreSQL's grammar rejects is blocked by every rule set that
    /// can deny something (the server would reject it too); a rule set that
    /// denies nothing lets it through to the server's own error.
    #[test]
    fn unparseable_is_blocked_by_every_rule_set_that_can_deny() {
        for g in [
            deny(&["drop"]),
            rules(&["read-only"], &[]),
            rules(&["no-unbounded-writes"], &[]),
        ] {
            blocked(&g, "selec * from t");
            blocked(&g, "drop table t; select 'unterminated");
        }
        let nothing = Guardrails::compile(&[GuardrailConfig {
            name: "nothing".into(),
            ..GuardrailConfig::default()
        }])
        .unwrap();
        allowed(&nothing, "selec * from t");
    }

    /// `PREPARE` and `EXECUTE` in one text: the gateway sees both.
    #[test]
    fn execute_of_a_statement_prepared_in_the_same_text() {
        let g = rules(&["read-only"], &[]);
        allowed(&g, "prepare p as select 1; execute p");
        blocked(&g, "prepare p as delete from t where id = 1; execute p");
        // Prepared here, executed in a later text: the caller remembers it.
        let v = g.check_with("execute p", |n| (n == "p").then(|| "select 1".into()));
        assert!(is_allowed(&v));
        // After DEALLOCATE in the text, nothing remembered is trusted.
        let v = g.check_with("deallocate p; execute p", |n| {
            (n == "p").then(|| "select 1".into())
        });
        assert!(!is_allowed(&v));
        // The EXECUTE's own arguments are judged too.
        let v = g.check_with("execute p(pg_read_file('x'))", |n| {
            (n == "p").then(|| "select $1".into())
        });
        assert!(!is_allowed(&v));
        let u = rules(&["no-unbounded-writes"], &[]);
        blocked(&u, "prepare p as delete from t; execute p");
        allowed(&u, "prepare p as delete from t where id = $1; execute p(1)");
    }

    #[test]
    fn execute_is_judged_by_the_prepared_text() {
        let g = rules(&["read-only"], &[]);
        let lookup = |name: &str| match name {
            "reader" => Some("SELECT * FROM t WHERE id = $1".to_string()),
            "killer" => Some("DELETE FROM t".to_string()),
            _ => None,
        };
        assert!(is_allowed(&g.check_with("EXECUTE reader(1)", lookup)));
        assert!(!is_allowed(&g.check_with("EXECUTE killer", lookup)));
        let v = g.check_with("EXECUTE unknown", lookup);
        assert_eq!(
            v,
            Verdict::Block {
                rule: "read-only".into(),
                reason:
                    "EXECUTE of prepared statement `unknown` whose text the gateway has not checked"
                        .into(),
            }
        );
    }

    #[test]
    fn deny_functions_and_message() {
        let g = Guardrails::compile(&[GuardrailConfig {
            name: "x".into(),
            deny_functions: vec!["PG_CATALOG.pg_sleep".into()],
            message: Some("ask #dba".into()),
            ..GuardrailConfig::default()
        }])
        .unwrap();
        let v = g.check("select PG_SLEEP(1)");
        assert_eq!(
            error_message(&v).unwrap(),
            "blocked by guardrail x: function pg_sleep is denied (ask #dba)"
        );
        assert!(is_allowed(&g.check("select pg_sleep_for('1s')")));
    }

    #[test]
    fn config_errors_name_the_rule() {
        let bad_regex = GuardrailConfig {
            name: "r1".into(),
            deny_patterns: vec!["(unclosed".into()],
            ..GuardrailConfig::default()
        };
        let e = Guardrails::compile(&[bad_regex]).unwrap_err();
        assert!(e.contains("`r1`") && e.contains("(unclosed"), "{e}");
        let bad_kind = GuardrailConfig {
            name: "r2".into(),
            deny: vec!["dropp".into()],
            ..Default::default()
        };
        let e = Guardrails::compile(&[bad_kind]).unwrap_err();
        assert!(e.contains("`r2`") && e.contains("dropp"), "{e}");
        let e = Guardrails::resolve(&["nope".into()], &[]).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let shadow = GuardrailConfig {
            name: "read-only".into(),
            ..Default::default()
        };
        assert!(Guardrails::validate(&[shadow]).is_err());
        let a = GuardrailConfig {
            name: "a".into(),
            ..Default::default()
        };
        assert!(Guardrails::validate(&[a.clone(), a]).is_err());
    }

    #[test]
    fn config_deserializes_and_rejects_unknown_fields() {
        let cfg: GuardrailConfig = toml::from_str(
            "name = \"prod\"\ndeny = [\"drop\", \"truncate\"]\ndeny_unbounded_writes = true\n",
        )
        .unwrap();
        assert_eq!(cfg.deny, vec!["drop", "truncate"]);
        assert!(toml::from_str::<GuardrailConfig>("name = \"x\"\ndeny_all = true\n").is_err());
    }

    #[test]
    fn builtins_work_without_declaration() {
        for name in BUILTIN_RULES {
            let g = rules(&[name], &[]);
            assert_eq!(g.names().collect::<Vec<_>>(), vec![*name]);
        }
        assert!(is_allowed(&Guardrails::default().check("drop table t")));
    }

    #[test]
    fn declared_set_is_used_by_name() {
        let prod = GuardrailConfig {
            name: "prod".into(),
            deny: vec!["drop".into()],
            ..Default::default()
        };
        let g = rules(&["prod", "no-unbounded-writes"], &[prod]);
        assert_eq!(blocked(&g, "drop table t").0, "prod");
        assert_eq!(blocked(&g, "delete from t").0, "no-unbounded-writes");
    }
}
