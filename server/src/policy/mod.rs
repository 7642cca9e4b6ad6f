//! The policy pipeline, protocol-neutral: adapters turn traffic into commands and values, and
//! this module decides (guardrails, later reviews) and transforms (masking). It never imports a
//! protocol module.

use std::collections::BTreeMap;

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
        })
    }

    /// Compiles an SSH connection's policy: its `guardrails` name shell rule sets
    /// (`[[shell_guardrails]]` or the built-in `no-destructive`); masking is as for databases.
    pub fn compile_shell(
        guardrail_names: &[String],
        masking_names: &[String],
        declared_shell: &[shell::ShellGuardrailConfig],
        declared_masking: &[masking::MaskingConfig],
    ) -> Result<Policy, String> {
        let mut p = Policy::compile(&[], masking_names, &[], declared_masking, &[])?;
        if !guardrail_names.is_empty() {
            p.shell = Some(shell::ShellGuardrails::resolve(
                guardrail_names,
                declared_shell,
            )?);
        }
        Ok(p)
    }

    /// Judges a shell command line (SSH exec, scp).
    pub fn check_command(&self, line: &str) -> Verdict {
        match &self.shell {
            Some(s) => s.check(line),
            None => Verdict::Allow,
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
        let infos = sql::analyze(sql);
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
            .collect();
        (verdict, defs)
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
        if c.kind == crate::config::ConnectionKind::Ssh {
            let p = Policy::compile_shell(
                &c.guardrails,
                &c.masking,
                &config.shell_guardrails,
                &config.masking,
            )
            .map_err(|e| format!("connection {:?}: {e}", c.name))?;
            out.insert(c.name.clone(), std::sync::Arc::new(p));
            continue;
        }
        let review = c
            .review
            .as_ref()
            .map(|r| r.statements.clone())
            .unwrap_or_default();
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
