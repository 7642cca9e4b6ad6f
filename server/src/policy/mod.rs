//! The policy pipeline, protocol-neutral: adapters turn traffic into commands and values, and
//! this module decides (guardrails, later reviews) and transforms (masking). It never imports a
//! protocol module.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;

pub mod guardrails;
pub mod masking;
pub mod shell;
pub mod sql;

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

/// Texts and shapes ([`sql::shape`]) of statements a policy allowed, with nothing else in play:
/// no `PREPARE` or `EXECUTE` (whose verdict depends on what was prepared before). Only `Allow`
/// is cached: a block or review is rare, and its reason is built afresh each time.
#[derive(Default)]
struct AllowCache {
    /// Exact texts: the same text always gets the same analysis.
    texts: HashSet<Box<str>>,
    /// Shapes (number literals blanked). Only used when no guardrail has deny patterns, since
    /// a pattern sees the numbers.
    shapes: HashSet<Box<str>>,
}

/// Entries per set; a full set is emptied (cheap, and an application's statements refill it).
const ALLOW_CACHE_ENTRIES: usize = 4096;

impl AllowCache {
    fn insert(set: &mut HashSet<Box<str>>, key: &str) {
        if set.len() >= ALLOW_CACHE_ENTRIES {
            set.clear();
        }
        set.insert(key.into());
    }
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
    pub fn check_sql(
        &self,
        sql: &str,
        prepared: &dyn Fn(&str) -> Option<String>,
    ) -> (Verdict, Vec<(String, String)>) {
        if self.guardrails.is_none() && self.review.is_empty() {
            return (Verdict::Allow, Vec::new());
        }
        if self.cache().texts.contains(sql) {
            return (Verdict::Allow, Vec::new());
        }
        let by_shape = self.guardrails.as_ref().is_none_or(|g| !g.has_patterns());
        let (shape, tokens) = sql::shape(sql);
        if by_shape
            && let Some((key, _)) = &shape
            && self.cache().shapes.contains(key.as_str())
        {
            return (Verdict::Allow, Vec::new());
        }
        let infos = sql::analyze_tokenized(sql, tokens);
        let verdict = match &self.guardrails {
            Some(g) => g.check_analyzed(&infos, prepared),
            None => Verdict::Allow,
        };
        let verdict = match verdict {
            // A guardrail switched from "block" to "review".
            Verdict::Block { rule, reason } if self.review.contains(&rule) => {
                Verdict::Review { rule, reason }
            }
            Verdict::Allow => self.review_class(&infos).unwrap_or(Verdict::Allow),
            other => other,
        };
        let defs = infos
            .iter()
            .filter_map(|i| i.prepare.as_ref().map(|p| (p.name.clone(), p.text.clone())))
            .collect::<Vec<_>>();
        let plain = infos
            .iter()
            .all(|i| i.prepare.is_none() && i.execute_name().is_none());
        if verdict == Verdict::Allow
            && plain
            && let Some((key, numbers)) = shape
        {
            let mut cache = self.cache();
            if !numbers {
                AllowCache::insert(&mut cache.texts, sql);
            } else if by_shape {
                AllowCache::insert(&mut cache.shapes, &key);
            }
        }
        (verdict, defs)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, AllowCache> {
        self.allowed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A review verdict when a statement's class is under review.
    fn review_class(&self, infos: &[sql::StatementInfo]) -> Option<Verdict> {
        use sql::StatementClass as C;
        for info in infos {
            let class = match info.class {
                C::Write => Some("write"),
                C::Ddl | C::Admin => Some("ddl"),
                C::Read | C::Other => None,
                C::Session => continue,
            };
            for wanted in &self.review {
                let hit = match wanted.as_str() {
                    "all" => true,
                    "write" => class == Some("write") || class == Some("ddl"),
                    "ddl" => class == Some("ddl"),
                    _ => false,
                };
                if hit {
                    return Some(Verdict::Review {
                        rule: wanted.clone(),
                        reason: format!("{} statements need approval", info.class.as_str()),
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

    /// The replacement when a column rule masks this column's whole value.
    pub fn column_masked(&self, table: Option<&str>, column: &str) -> Option<&[u8]> {
        self.masker
            .as_ref()
            .and_then(|m| m.column_replacement(table, column))
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
    /// True when column rules name tables, so results need their table names.
    pub fn needs_table_names(&self) -> bool {
        self.masker.as_ref().is_some_and(|m| m.has_table_rules())
    }

    /// True when a detector would mask something in `value` (no allocation).
    pub fn detects(&self, value: &[u8]) -> bool {
        self.masker.as_ref().is_some_and(|m| m.detects(value))
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
        assert_eq!(p.cache().shapes.len(), cases.len());
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
