//! The policy pipeline, protocol-neutral: adapters turn traffic into commands and values, and
//! this module decides (guardrails, later reviews) and transforms (masking). It never imports a
//! protocol module.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;

#[cfg(test)]
mod cache_props;
pub mod guardrails;
pub mod masking;
pub mod shell;
pub mod sql;
pub mod stats;

/// How [`Policy::check_sql`] found a text in its cache.
enum Shape {
    /// No number in the text: it is cached as itself.
    Exact,
    /// Its shape is cached.
    Hit,
    /// Its shape, not cached yet.
    Miss(Box<[u8]>),
}

/// What happens to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Refuse it; the session goes on.
    Block {
        /// The rule set that refused it.
        rule: String,
        /// Why, in a few words.
        reason: String,
    },
    /// Hold it until someone approves (a statement review).
    Review {
        /// The class (`write`, `ddl`, `all`) or guardrail rule that asked for review.
        rule: String,
        /// Why, in a few words.
        reason: String,
    },
}

/// Per-session masking counters, by detector or rule.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MaskCounts {
    /// Matches per detector (`credit_card`, `email`, ...), whole-column masks under `column`,
    /// binary values withheld under `withheld`.
    pub counts: BTreeMap<String, u64>,
}

impl MaskCounts {
    /// Adds one to `what`.
    pub fn bump(&mut self, what: &str) {
        *self.counts.entry(what.to_string()).or_default() += 1;
    }

    /// Total of all counters.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, other: &MaskCounts) {
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += v;
        }
    }
}

/// The compiled policy of one connection, shared by all its sessions.
#[derive(Default)]
pub struct Policy {
    guardrails: Option<guardrails::Guardrails>,
    masker: Option<masking::Masker>,
    /// Statement classes (`write`, `ddl`, `all`) and guardrail rules whose statements are held
    /// for review instead of running (or being blocked).
    review: Vec<String>,
    /// Shell-command rules (SSH connections).
    shell: Option<shell::ShellGuardrails>,
    /// Statements already judged `Allow`, so the same statement (or one of the same shape) is not
    /// parsed again on every execution.
    allowed: Mutex<AllowCache>,
}

/// Texts and shapes of statements a policy allowed, with nothing else in play: no `PREPARE`
/// or `EXECUTE` (whose verdict depends on what was prepared before). Only `Allow` is cached: a
/// block or review is rare, and its reason is built afresh each time.
///
/// A shape is [`sql::cache_key`]: the exact token stream PostgreSQL's scanner reads, comments
/// left out and numbers blanked, encoded injectively, kept whole (never a hash of it), so two
/// texts share an entry only when they differ in nothing but number values. Shapes are not
/// used when a guardrail has deny patterns (a pattern sees the numbers), when the text reads
/// differently with `standard_conforming_strings` off, or when the analysis looked at a
/// number's value (`WHERE 1 = 1`).
#[derive(Default)]
struct AllowCache {
    /// Exact texts: the same text always gets the same analysis.
    texts: HashSet<Box<str>>,
    /// Shapes of texts with numbers.
    shapes: HashSet<Box<[u8]>>,
}

/// Entries per set; a full set is emptied (cheap, and an application's statements refill it).
const ALLOW_CACHE_ENTRIES: usize = 4096;

/// Longest text the cache holds (exactly or by shape): far below [`sql::MAX_SQL_BYTES`], so
/// 4096 entries stay small, and so that two texts of one shape (which differ only in how
/// their numbers are spelled) are both on the same side of the analysis limits.
const MAX_CACHED_BYTES: usize = 4096;

impl AllowCache {
    fn insert<K: ?Sized + Eq + std::hash::Hash>(set: &mut HashSet<Box<K>>, key: Box<K>) {
        if set.len() >= ALLOW_CACHE_ENTRIES {
            set.clear();
        }
        set.insert(key);
    }
}

thread_local! {
    /// The cache key of the text being judged, built in place: no allocation per message.
    static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The statements a text prepares, by name. When both readings of the text prepare a name
/// (`standard_conforming_strings` on and off), the text remembered is both statements, so a
/// later `EXECUTE` is judged as what either reading prepared.
fn prepared_defs(infos: &[sql::StatementInfo]) -> Vec<(String, String)> {
    let mut defs: Vec<(String, String)> = Vec::new();
    for def in infos.iter().filter_map(|i| i.prepare.as_ref()) {
        match defs.iter_mut().find(|(name, _)| *name == def.name) {
            Some((_, text)) if *text != def.text => {
                text.push_str(";\n");
                text.push_str(&def.text);
            }
            Some(_) => {}
            None => defs.push((def.name.clone(), def.text.clone())),
        }
    }
    defs
}

/// The built-in masking set connections may name without declaring it.
fn builtin_masking(name: &str) -> Option<masking::MaskingConfig> {
    (name == "pii").then(|| masking::MaskingConfig {
        name: "pii".into(),
        detectors: ["credit_card", "email", "ssn", "phone", "iban", "secrets"]
            .map(String::from)
            .to_vec(),
        columns: Vec::new(),
        replacement: None,
    })
}

impl Policy {
    /// Compiles a connection's named guardrail and masking sets.
    pub fn compile(
        guardrail_names: &[String],
        masking_names: &[String],
        declared_guardrails: &[guardrails::GuardrailConfig],
        declared_masking: &[masking::MaskingConfig],
        review: &[String],
    ) -> Result<Policy, String> {
        let guardrails = if guardrail_names.is_empty() {
            None
        } else {
            Some(guardrails::Guardrails::resolve(
                guardrail_names,
                declared_guardrails,
            )?)
        };
        let masker = if masking_names.is_empty() {
            None
        } else {
            let mut sets = Vec::new();
            for n in masking_names {
                match declared_masking
                    .iter()
                    .find(|m| &m.name == n)
                    .cloned()
                    .or_else(|| builtin_masking(n))
                {
                    Some(set) => sets.push(set),
                    None => {
                        return Err(format!(
                            "masking rule set {n:?} is not declared in [[masking]] (built-in: pii)"
                        ));
                    }
                }
            }
            Some(masking::Masker::compile(&sets)?)
        };
        Ok(Policy {
            guardrails,
            masker,
            review: review.to_vec(),
            shell: None,
            allowed: Mutex::default(),
        })
    }

    /// Compiles an SSH connection's policy: its `guardrails` name shell rule sets
    /// (`[[shell_guardrails]]` or the built-in `no-destructive`); masking is as for databases.
    /// `review` is the connection's `review.statements`: `all` (every exec command waits for
    /// approval) and names of its shell rule sets whose blocks become reviews.
    pub fn compile_shell(
        guardrail_names: &[String],
        masking_names: &[String],
        declared_shell: &[shell::ShellGuardrailConfig],
        declared_masking: &[masking::MaskingConfig],
        review: &[String],
    ) -> Result<Policy, String> {
        let mut p = Policy::compile(&[], masking_names, &[], declared_masking, review)?;
        if !guardrail_names.is_empty() {
            p.shell = Some(shell::ShellGuardrails::resolve(
                guardrail_names,
                declared_shell,
            )?);
        }
        Ok(p)
    }

    /// Judges a shell command line (SSH exec, scp). A block by a rule set named in
    /// `review.statements` becomes a review; with `all` there, every allowed command does too.
    pub fn check_command(&self, line: &str) -> Verdict {
        let verdict = match &self.shell {
            Some(s) => s.check(line),
            None => Verdict::Allow,
        };
        self.shell_review(verdict)
    }

    /// Judges an exec request's bytes ([`shell::ShellGuardrails::check_bytes`]).
    pub fn check_command_bytes(&self, command: &[u8]) -> Verdict {
        let verdict = match &self.shell {
            Some(s) => s.check_bytes(command),
            None => Verdict::Allow,
        };
        self.shell_review(verdict)
    }

    /// Judges an SSH subsystem request as the program of its name (`sftp`); other subsystems
    /// are refused unless an allow-list names them. Reviewed like exec commands.
    pub fn check_subsystem(&self, name: &str) -> Verdict {
        self.shell_review(shell::check_subsystem(self.shell.as_ref(), name))
    }

    /// Judges an interactive shell request (allowed unless an allow-list lacks a shell or a
    /// deny rule names one). Not reviewed: what is typed afterwards is not judged anyway.
    pub fn check_shell_request(&self) -> Verdict {
        self.shell
            .as_ref()
            .map_or(Verdict::Allow, shell::ShellGuardrails::check_login_shell)
    }

    /// May an SSH client set this environment variable? (See
    /// [`shell::ShellGuardrails::allows_env`]; the connection's `env_allow` applies too.)
    pub fn env_request_allowed(&self, name: &str) -> bool {
        self.shell.as_ref().is_none_or(|s| s.allows_env(name))
    }

    fn shell_review(&self, verdict: Verdict) -> Verdict {
        match verdict {
            Verdict::Block { rule, reason } if self.review.contains(&rule) => {
                Verdict::Review { rule, reason }
            }
            Verdict::Allow if self.review.iter().any(|r| r == "all") => Verdict::Review {
                rule: "all".into(),
                reason: "every command on this connection needs approval".into(),
            },
            other => other,
        }
    }

    /// The compiled masker, for adapters that mask streams (terminal output).
    pub fn masker(&self) -> Option<&masking::Masker> {
        self.masker.as_ref().filter(|m| m.has_detectors())
    }

    /// Judges one command (a whole simple-protocol query string, or one Parse). `prepared`
    /// looks up the text of a prepared statement by name, so `EXECUTE p` is judged as `p`.
    /// Returns the verdict and the statements the command prepares (`PREPARE name AS ...`:
    /// name and text), which the caller remembers once the command runs.
    pub fn check_sql(
        &self,
        sql: &str,
        prepared: &dyn Fn(&str) -> Option<String>,
    ) -> (Verdict, Vec<(String, String)>) {
        if let Some(refused) = self.masking_refuses(sql) {
            return (refused, Vec::new());
        }
        if self.guardrails.is_none() && self.review.is_empty() {
            return (Verdict::Allow, Vec::new());
        }
        let stats = stats::sql();
        if self.cache().texts.contains(sql) {
            stats.text_hits.inc();
            return (Verdict::Allow, Vec::new());
        }
        let by_shape = self.guardrails.as_ref().is_none_or(|g| !g.has_patterns());
        let key = self.shape_of(sql, by_shape);
        if let Some(Shape::Hit) = key {
            stats.shape_hits.inc();
            return (Verdict::Allow, Vec::new());
        }
        stats.misses.inc();
        let started = std::time::Instant::now();
        let infos = sql::analyze(sql);
        let verdict = match &self.guardrails {
            Some(g) => g.check_analyzed(&infos, prepared),
            None => Verdict::Allow,
        };
        stats
            .analysis_seconds
            .observe(started.elapsed().as_secs_f64());
        let verdict = match verdict {
            // A guardrail switched from "block" to "review".
            Verdict::Block { rule, reason } if self.review.contains(&rule) => {
                Verdict::Review { rule, reason }
            }
            Verdict::Allow => self
                .review_class(&infos, prepared, 0)
                .unwrap_or(Verdict::Allow),
            other => other,
        };
        let defs = prepared_defs(&infos);
        if verdict == Verdict::Allow {
            self.remember(sql, key, &infos);
        }
        (verdict, defs)
    }

    /// Looks `sql` up by shape. `None` when it is not cached by shape (too long, the scanner
    /// rejects it, no number in it, or its reading depends on `standard_conforming_strings`).
    fn shape_of(&self, sql: &str, by_shape: bool) -> Option<Shape> {
        if sql.len() > MAX_CACHED_BYTES {
            return None;
        }
        KEY.with_borrow_mut(|key| {
            let facts = sql::cache_key(sql, key)?;
            if !facts.numbers {
                return Some(Shape::Exact);
            }
            if !by_shape || facts.reading_dependent {
                return None;
            }
            if self.cache().shapes.contains(key.as_slice()) {
                Some(Shape::Hit)
            } else {
                Some(Shape::Miss(key.as_slice().into()))
            }
        })
    }

    /// Caches an allowed text, by shape when its shape may stand for it.
    fn remember(&self, sql: &str, key: Option<Shape>, infos: &[sql::StatementInfo]) {
        let plain = infos
            .iter()
            .all(|i| i.prepare.is_none() && i.execute_name().is_none());
        if !plain {
            return;
        }
        let mut cache = self.cache();
        match key {
            Some(Shape::Exact) => AllowCache::insert(&mut cache.texts, sql.into()),
            Some(Shape::Miss(shape)) if !infos.iter().any(|i| i.numbers_matter) => {
                AllowCache::insert(&mut cache.shapes, shape);
            }
            _ => {}
        }
    }

    /// True when `sql` is in the exact-text verdict cache: allowed, and with no statement whose
    /// verdict depends on the session (only such texts are cached), so a caller may reuse the
    /// verdict for the same bytes.
    pub fn allowed_as_cached(&self, sql: &str) -> bool {
        self.cache().texts.contains(sql)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, AllowCache> {
        self.allowed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A review verdict when a statement's class is under review. Preparing runs nothing, so
    /// `PREPARE p AS ...` is not reviewed; each `EXECUTE p` is, as the text it runs (a name the
    /// session did not prepare is reviewed, since what it runs is unknown).
    fn review_class(
        &self,
        infos: &[sql::StatementInfo],
        prepared: &dyn Fn(&str) -> Option<String>,
        depth: usize,
    ) -> Option<Verdict> {
        use sql::StatementClass as C;
        if self.review.is_empty() {
            return None;
        }
        /// `EXECUTE` of a statement that executes another is not valid SQL; bounded anyway.
        const MAX_EXECUTE_DEPTH: usize = 4;
        let classes = || {
            self.review
                .iter()
                .find(|r| matches!(r.as_str(), "all" | "write" | "ddl"))
        };
        for info in infos {
            if info.prepare.is_some() {
                continue;
            }
            if let Some(name) = info.execute_name() {
                let text = (depth < MAX_EXECUTE_DEPTH)
                    .then(|| prepared(name))
                    .flatten();
                let verdict = match text {
                    Some(text) => self.review_class(&sql::analyze(&text), prepared, depth + 1),
                    None => classes().map(|rule| Verdict::Review {
                        rule: rule.clone(),
                        reason: format!(
                            "EXECUTE of prepared statement `{name}`, which the gateway has not seen prepared"
                        ),
                    }),
                };
                if verdict.is_some() {
                    return verdict;
                }
                continue;
            }
            // What the gateway cannot check may be anything: under `write` or `ddl` review a
            // person looks at it (fail closed).
            let unknown = info.unverifiable.is_some() || info.class == C::Other;
            // A read that locks rows or calls a function with side effects (or one not known
            // to be free of them) is reviewed as the write it may be, as read-only refuses it.
            let effects = match info.class {
                C::Read | C::Session => guardrails::effects_of_a_read(info, &|_| false),
                _ => None,
            };
            let class = match info.class {
                C::Write => Some("write"),
                C::Ddl | C::Admin => Some("ddl"),
                C::Read | C::Session if effects.is_some() => Some("write"),
                C::Read | C::Other => None,
                C::Session if unknown => None,
                C::Session => continue,
            };
            for wanted in &self.review {
                let hit = match wanted.as_str() {
                    "all" => true,
                    "write" => unknown || class == Some("write") || class == Some("ddl"),
                    "ddl" => unknown || class == Some("ddl"),
                    _ => false,
                };
                if hit {
                    let reason = match (&info.unverifiable, &effects) {
                        (Some(why), _) => {
                            format!("statements the gateway cannot check need approval ({why})")
                        }
                        (None, Some(why)) => {
                            format!("statements that may write need approval ({why})")
                        }
                        (None, None) => format!("{} statements need approval", info.class.as_str()),
                    };
                    return Some(Verdict::Review {
                        rule: wanted.clone(),
                        reason,
                    });
                }
            }
        }
        None
    }

    /// True when any masking rule or detector applies.
    pub fn masking_active(&self) -> bool {
        self.masker.as_ref().is_some_and(|m| !m.is_empty())
    }

    /// Runs the detectors over a text value. On a match, writes the masked value into `out`
    /// and returns true; otherwise leaves `out` alone and returns false.
    #[inline]
    pub fn mask_text(
        &self,
        value: &[u8],
        out: &mut Vec<u8>,
        counts: &mut masking::MaskCounts,
    ) -> bool {
        match &self.masker {
            Some(m) => m.mask_into(value, out, counts),
            None => false,
        }
    }
}

impl Policy {
    /// A statement masking cannot let run: a binary-format `COPY ... TO` (its data cannot be
    /// masked) on a connection with masking; a `set_config` of a value that is not a constant
    /// on a connection with column rules (the setting would carry a ruled value to later
    /// statements: `current_setting`, `SHOW`, `pg_settings`).
    fn masking_refuses(&self, sql: &str) -> Option<Verdict> {
        if !self.masking_active() {
            return None;
        }
        if masking::lineage::is_binary_copy_to(sql) {
            return Some(Verdict::Block {
                rule: "masking".into(),
                reason: "COPY in binary format cannot be masked; use COPY ... TO STDOUT in text \
                         or csv format"
                    .into(),
            });
        }
        let rules = self.masker.as_ref().is_some_and(|m| m.has_column_rules());
        (rules && masking::lineage::sets_config_from_data(sql)).then(|| Verdict::Block {
            rule: "masking".into(),
            reason: "set_config with a computed name or value (or inside a DO block or \
                     function body) cannot be masked on a connection with column rules; \
                     pass constants or bound parameters"
                .into(),
        })
    }
}

impl From<&masking::MaskCounts> for MaskCounts {
    fn from(m: &masking::MaskCounts) -> Self {
        let mut out = MaskCounts::default();
        for d in masking::Detector::ALL {
            let n = m.get(d);
            if n > 0 {
                out.counts.insert(d.as_str().to_string(), n);
            }
        }
        if m.columns > 0 {
            out.counts.insert("column".into(), m.columns);
        }
        if m.withheld > 0 {
            out.counts.insert("withheld".into(), m.withheld);
        }
        out
    }
}

/// Compiles the policy of every connection from the config.
pub fn compile_all(
    config: &crate::config::Config,
) -> Result<std::collections::HashMap<String, std::sync::Arc<Policy>>, String> {
    guardrails::Guardrails::validate(&config.guardrails)?;
    shell::ShellGuardrails::validate(&config.shell_guardrails)?;
    let mut out = std::collections::HashMap::new();
    for c in &config.connections {
        let review = c
            .review
            .as_ref()
            .map(|r| r.statements.clone())
            .unwrap_or_default();
        if c.kind == crate::config::ConnectionKind::Ssh {
            let p = Policy::compile_shell(
                &c.guardrails,
                &c.masking,
                &config.shell_guardrails,
                &config.masking,
                &review,
            )
            .map_err(|e| format!("connection {:?}: {e}", c.name))?;
            out.insert(c.name.clone(), std::sync::Arc::new(p));
            continue;
        }
        let p = Policy::compile(
            &c.guardrails,
            &c.masking,
            &config.guardrails,
            &config.masking,
            &review,
        )
        .map_err(|e| format!("connection {:?}: {e}", c.name))?;
        out.insert(c.name.clone(), std::sync::Arc::new(p));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod cache_tests {
    use super::guardrails::GuardrailConfig;
    use super::*;

    fn policy(declared: &[GuardrailConfig], names: &[&str], review: &[&str]) -> Policy {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let review: Vec<String> = review.iter().map(|s| s.to_string()).collect();
        Policy::compile(&names, &[], declared, &[], &review).unwrap()
    }

    fn check(p: &Policy, sql: &str) -> Verdict {
        p.check_sql(sql, &|_| None).0
    }

    fn blocked(v: &Verdict) -> bool {
        matches!(v, Verdict::Block { .. })
    }

    #[test]
    fn cached_shapes_never_let_another_statement_through() {
        let p = policy(&[], &["no-ddl", "no-unbounded-writes"], &[]);
        // Each pair: an allowed statement, then texts that must still be judged on their own.
        let cases: &[(&str, &[&str])] = &[
            (
                "DELETE FROM t WHERE id = 1",
                &["DELETE FROM t", "DELETE FROM t -- WHERE id = 1"],
            ),
            ("SELECT 1", &["SELECT 1; DROP TABLE t", "DROP TABLE t1"]),
            ("SELECT 1 /* x */", &["SELECT 1 /* x */; drop table t"]),
            ("SELECT 'a''b', 2", &["SELECT 'a', 2; DROP TABLE t"]),
            ("UPDATE t SET a = 1 WHERE b = 2", &["UPDATE t SET a = 1"]),
        ];
        for (ok, bad) in cases {
            for _ in 0..2 {
                assert_eq!(check(&p, ok), Verdict::Allow, "{ok}");
            }
            for b in *bad {
                assert!(blocked(&check(&p, b)), "{b} after {ok}");
            }
        }
        // Same shape, other numbers: served from the cache, still allowed.
        assert_eq!(check(&p, "DELETE FROM t WHERE id = 99999"), Verdict::Allow);
        // `SELECT 1` and `SELECT 1 /* x */` are one shape (comments are not tokens the
        // grammar sees).
        assert_eq!(p.cache().shapes.len(), cases.len() - 1);
    }

    /// Where a number's value decides the verdict, texts of one shape are judged apart.
    #[test]
    fn numbers_that_decide_a_verdict_are_not_cached_by_shape() {
        let p = policy(&[], &["no-unbounded-writes"], &[]);
        assert_eq!(check(&p, "DELETE FROM t WHERE 1 = 2"), Verdict::Allow);
        assert!(blocked(&check(&p, "DELETE FROM t WHERE 1 = 1")));
        assert_eq!(
            check(&p, "MERGE INTO t USING s ON 1 = 2 WHEN MATCHED THEN DELETE"),
            Verdict::Allow
        );
        assert!(blocked(&check(
            &p,
            "MERGE INTO t USING s ON 2 = 2 WHEN MATCHED THEN DELETE"
        )));
        assert!(p.cache().shapes.is_empty());
    }

    /// The reported lexer disagreements, cached or not.
    #[test]
    fn lexing_tricks_are_judged_like_the_server_reads_them() {
        let p = policy(&[], &["no-ddl"], &["write"]);
        for _ in 0..2 {
            assert!(blocked(&check(&p, "select $€$ --$€$ ; drop table t")));
            assert!(matches!(
                check(&p, "select $€$ --$€$ ; delete from t"),
                Verdict::Review { .. }
            ));
        }
        // What the gateway cannot check is held for review under `write`.
        let r = policy(&[], &[], &["write"]);
        assert!(matches!(
            check(&r, "set client_encoding = 'SJIS'"),
            Verdict::Review { .. }
        ));
        // A quoted upper-case name is the same setting, and an allowed UTF-8 text of the same
        // shape is no precedent for it.
        assert_eq!(
            check(&r, r#"set "CLIENT_ENCODING" to 'UTF8'"#),
            Verdict::Allow
        );
        assert!(matches!(
            check(&r, r#"set "CLIENT_ENCODING" to 'SJIS'"#),
            Verdict::Review { .. }
        ));
        assert!(matches!(check(&r, "selec 1"), Verdict::Review { .. }));
        assert_eq!(check(&r, "select 1"), Verdict::Allow);
    }

    /// A PREPARE that reads two ways defines both statements under its name.
    #[test]
    fn a_prepare_of_two_readings_remembers_both() {
        let p = policy(&[], &["no-ddl"], &[]);
        let (v, defs) = p.check_sql(r"prepare q as select 'a\' || '; drop table t; --'", &|_| {
            None
        });
        assert!(blocked(&v), "{v:?}");
        let (v, defs2) = p.check_sql(r"prepare q as select 'a\b'", &|_| None);
        assert_eq!(v, Verdict::Allow);
        assert!(defs.is_empty() || defs.len() == 1);
        assert_eq!(defs2.len(), 1, "{defs2:?}");
        assert!(defs2.first().unwrap().1.contains(";\n"), "{defs2:?}");
    }

    #[test]
    fn deny_patterns_see_every_number() {
        let declared = [GuardrailConfig {
            name: "no-42".into(),
            deny_patterns: vec!["id = 42".into()],
            ..GuardrailConfig::default()
        }];
        let p = policy(&declared, &["no-42"], &[]);
        assert_eq!(check(&p, "SELECT * FROM t WHERE id = 1"), Verdict::Allow);
        assert!(blocked(&check(&p, "SELECT * FROM t WHERE id = 42")));
        assert!(p.cache().shapes.is_empty());
        // Exact texts are still cached: the same text always gets the same verdict.
        assert_eq!(check(&p, "SELECT * FROM t WHERE id = $1"), Verdict::Allow);
        assert!(p.cache().texts.contains("SELECT * FROM t WHERE id = $1"));
    }

    #[test]
    fn prepare_and_execute_are_never_cached() {
        let p = policy(&[], &["no-unbounded-writes"], &[]);
        let defs = std::cell::RefCell::new(std::collections::HashMap::<String, String>::new());
        let run = |sql: &str| {
            let (v, d) = p.check_sql(sql, &|n| defs.borrow().get(n).cloned());
            if v == Verdict::Allow {
                defs.borrow_mut().extend(d);
            }
            v
        };
        assert_eq!(run("PREPARE p AS SELECT 1"), Verdict::Allow);
        assert_eq!(run("EXECUTE p"), Verdict::Allow);
        defs.borrow_mut().insert("p".into(), "DELETE FROM t".into());
        assert!(blocked(&run("EXECUTE p")));
        assert!(p.cache().texts.is_empty() && p.cache().shapes.is_empty());
    }

    #[test]
    fn backslash_strings_and_reviews_are_judged_every_time() {
        let p = policy(&[], &["no-ddl"], &["write"]);
        // Harmless as PostgreSQL reads it by default; a DROP when backslashes escape quotes.
        let sql = r"SELECT 'a\', 1, 'x; DROP TABLE t; --'";
        assert!(blocked(&check(&p, sql)));
        assert!(blocked(&check(&p, sql)));
        assert!(matches!(
            check(&p, "INSERT INTO t VALUES (1)"),
            Verdict::Review { .. }
        ));
        assert!(matches!(
            check(&p, "INSERT INTO t VALUES (2)"),
            Verdict::Review { .. }
        ));
        assert!(p.cache().shapes.is_empty());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod execute_review_tests {
    use super::*;

    fn reviewed(v: &Verdict) -> bool {
        matches!(v, Verdict::Review { .. })
    }

    #[test]
    fn each_execute_of_a_reviewed_statement_is_reviewed_and_preparing_is_not() {
        let p = Policy::compile(&[], &[], &[], &[], &["write".into()]).unwrap();
        let texts = |n: &str| (n == "ins").then(|| "INSERT INTO t VALUES ($1)".to_string());
        let (v, defs) = p.check_sql("PREPARE ins AS INSERT INTO t VALUES ($1)", &texts);
        assert_eq!(v, Verdict::Allow);
        assert_eq!(defs.len(), 1);
        for _ in 0..2 {
            assert!(reviewed(&p.check_sql("EXECUTE ins(5)", &texts).0));
        }
        assert!(reviewed(&p.check_sql("SELECT 1; EXECUTE ins(6)", &texts).0));
        // A name the session never prepared: what it runs is unknown, so it is reviewed.
        assert!(reviewed(&p.check_sql("EXECUTE other", &texts).0));
        let reads = |_: &str| Some("SELECT 1".to_string());
        assert_eq!(p.check_sql("EXECUTE r", &reads).0, Verdict::Allow);
        // Without statement classes under review, EXECUTE is judged by the guardrails alone.
        let none = Policy::compile(&["no-ddl".into()], &[], &[], &[], &[]).unwrap();
        assert_eq!(none.check_sql("EXECUTE ins(1)", &texts).0, Verdict::Allow);
    }

    #[test]
    fn reads_with_effects_are_reviewed_as_writes() {
        let p = Policy::compile(&[], &[], &[], &[], &["write".into()]).unwrap();
        let none = |_: &str| None;
        for sql in [
            "select lo_from_bytea(0, 'x')",
            "select lo_put(16411, 0, '\\x41'::bytea)",
            "select lo_unlink(16411)",
            "select pg_notify('a', 'b')",
            "with n as (select pg_notify('a', 'b')) select * from n",
            "select set_config('my.x', 'y', false)",
            "select pg_advisory_lock(1)",
            "select pg_terminate_backend(1)",
            "select pg_cancel_backend(pg_backend_pid())",
            "select * from items for update",
            "select nextval('s')",
            "select txid_current()",
            "select app.do_something()",
            "update pg_settings set setting = 'SJIS' where name = 'client_encoding'",
        ] {
            assert!(reviewed(&p.check_sql(sql, &none).0), "{sql}");
        }
        for sql in [
            "select 1",
            "select lower(name) from t",
            "select now(), random()",
        ] {
            assert_eq!(p.check_sql(sql, &none).0, Verdict::Allow, "{sql}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod shell_review_tests {
    use super::*;

    fn shell(review: &[&str]) -> Policy {
        let review: Vec<String> = review.iter().map(|s| s.to_string()).collect();
        Policy::compile_shell(&["no-destructive".into()], &[], &[], &[], &review).unwrap()
    }

    #[test]
    fn a_reviewed_rule_set_turns_its_blocks_into_reviews() {
        let p = shell(&["no-destructive"]);
        assert!(matches!(
            p.check_command("rm -rf /"),
            Verdict::Review { rule, .. } if rule == "no-destructive"
        ));
        assert_eq!(p.check_command("ls"), Verdict::Allow);
    }

    #[test]
    fn all_reviews_every_allowed_command_and_blocks_stay_blocks() {
        let p = shell(&["all"]);
        assert!(matches!(
            p.check_command("uptime"),
            Verdict::Review { rule, .. } if rule == "all"
        ));
        assert!(matches!(p.check_command("rm -rf /"), Verdict::Block { .. }));
        assert_eq!(shell(&[]).check_command("uptime"), Verdict::Allow);
    }
}
