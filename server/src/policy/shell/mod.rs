//! Guardrails for shell commands: the commands of `ssh host cmd`, scp's own `scp -t`/`-f`,
//! SSH subsystems (sftp) judged as the programs they are, and, as an audit aid only, the lines
//! typed into an interactive shell ([`TypedLines`]). IO-free and protocol-neutral.
//!
//! A line is parsed with a real bash parser, and every simple command anywhere in it is
//! judged: in lists and pipelines, subshells and brace groups, the conditions and bodies of
//! `if`/`for`/`while`/`until`/`case`, function bodies, command and process substitutions in
//! any word, redirection or here-document. Words are resolved as the shell would (quotes,
//! escapes, `$'...'`, brace expansion); what only a running shell can know (a variable, a
//! glob, a substitution's output) is kept as an unknown, never guessed. Wrappers are followed
//! with their real option grammars (`env -u NAME`, `timeout -s SIG -k DUR`, `sudo -D DIR`,
//! `exec -a NAME`, `find -exec`, `xargs`, ...), and code passed as a string (`sh -c`, `eval`,
//! `su -c`, `env -S`, `watch`, a here-document fed to a shell) is parsed and judged in turn.
//!
//! Deny rules match what runs however it is spelled (see [`rules`]); they refuse what they
//! cannot judge (a program named by a variable, an option the gateway does not know). An
//! allow-list admits a line only when every program it runs is on the list: a program the
//! text does not decide, an assignment to an upper-case variable (`PATH=/tmp ls`), arithmetic
//! or expansions that evaluate values as code, or an unknown wrapper option refuses the line,
//! with a reason naming what could not be resolved. It also refuses every redirection that
//! opens a file for writing (only `/dev/null` and descriptor copies pass): the shell writing
//! `~/.bashrc` or `~/.ssh/authorized_keys` is not a listed program, and would make the next
//! line run what it wrote.
//!
//! Limits, stated plainly (each has a test in `tests.rs`): the judge reads text, it does not
//! run a shell. What a program does once running is invisible: an interpreter's code
//! (`python -c`), a script named by path, a program that runs others and is not one of the
//! wrappers above (an allow-listed `strace` or `make` allows what it runs), a listed program
//! that writes files by its arguments (`tee`, `cp`). Two steps through a file under deny rules
//! (`echo ... > f; sh f`) are two harmless-looking commands. The line is read as bash reads
//! it; a target account whose login shell is zsh or fish reads some text differently.
//! Deny rules are a blacklist and can be walked around by a different program that does the
//! same thing; an allow-list without shells or interpreters is the boundary.
//!
//! The parser is `brush-parser` (the parser of the brush shell, a bash-compatible shell tested
//! against bash itself; MIT, pure Rust, actively released). Compared: `yash-syntax` (a careful
//! POSIX parser, but GPL-3.0, which this Apache-2.0 project cannot link, and POSIX-only, so
//! bash's `$'...'`, `[[ ]]`, `<(...)` would be errors), `conch-parser` (unmaintained since
//! 2019), and `tree-sitter-bash` (C code under a C runtime, an error-tolerant grammar meant
//! for editors whose CST leaves quote removal and expansion to us). brush is wrapped in one
//! module ([`syntax`]) and pinned exactly, since its 0.x API changes between releases.

mod analysis;
mod names;
mod programs;
mod rules;
mod syntax;
mod typed;
mod words;

#[cfg(test)]
mod tests;

use regex::Regex;
use serde::Deserialize;

use super::Verdict;
use analysis::Analysis;
use programs::{Code, Extra, Invocation, Program, Role};
use rules::DenyRule;

pub use typed::TypedLines;

/// One named shell rule set as written in `[[shell_guardrails]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellGuardrailConfig {
    /// The name connections refer to (in their `guardrails`); appears in every block message.
    pub name: String,
    /// Commands to refuse, written as commands: `"rm -rf /"`, `"shutdown"`, `"curl * | sh"`.
    #[serde(default)]
    pub deny: Vec<String>,
    /// When set, only these programs may run: every program a line runs must be one of them
    /// (`"ls"`, `"cat"`, `"scp"`; `"sftp"` for the sftp subsystem; `"sh"` or another shell for
    /// interactive shells). A name with a `/` allows exactly that path. Redirections that
    /// write a file are refused under a list; a program that writes files (`tee`) must be on it.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Regular expressions (case-insensitive) matched against the whole command line.
    #[serde(default)]
    pub deny_patterns: Vec<String>,
    /// Extra text added to the block message.
    #[serde(default)]
    pub message: Option<String>,
}

impl ShellGuardrailConfig {
    /// The built-in set called `name`, if there is one: `no-destructive`.
    pub fn builtin(name: &str) -> Option<ShellGuardrailConfig> {
        (name == "no-destructive").then(|| ShellGuardrailConfig {
            name: name.to_string(),
            deny: [
                "rm -rf /",
                "rm -rf ~",
                "find / -delete",
                "shutdown",
                "reboot",
                "halt",
                "poweroff",
                "init 0",
                "init 6",
                "telinit 0",
                "telinit 6",
                "systemctl poweroff",
                "systemctl reboot",
                "systemctl halt",
                "mkfs*",
                "dd * of=/dev/*",
                // A shell stage after `|` stands for every shell and interpreter reading its
                // input: `curl u | zsh`, `wget -O- u | python3`, `bash <(curl u)`.
                "curl * | sh",
                "wget * | sh",
            ]
            .map(String::from)
            .to_vec(),
            allow: None,
            deny_patterns: vec![":\\(\\)\\s*\\{\\s*:\\|:&\\s*\\};:".into()],
            message: None,
        })
    }
}

#[derive(Debug, Clone)]
struct RuleSet {
    name: String,
    deny: Vec<DenyRule>,
    allow: Option<Vec<String>>,
    patterns: Vec<(String, Regex)>,
    message: Option<String>,
}

/// Compiled shell rule sets of one connection.
#[derive(Debug, Clone, Default)]
pub struct ShellGuardrails {
    sets: Vec<RuleSet>,
}

/// Stack for the thread that parses a line: the parser recurses with the line's nesting
/// (bounded by `syntax`), and a stack overflow would abort the whole gateway.
const JUDGE_STACK: usize = 32 << 20;

/// Runs `f` on a thread with a large stack; `None` if the thread could not run or panicked.
fn guarded<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("hoop-shell-judge".into())
            .stack_size(JUDGE_STACK)
            .spawn_scoped(s, f)
            .ok()?
            .join()
            .ok()
    })
}

fn analyze(line: &str) -> Analysis {
    guarded(|| analysis::analyze(line)).unwrap_or_else(|| Analysis {
        unresolved: vec!["the gateway could not analyse the command".into()],
        ..Analysis::default()
    })
}

impl ShellGuardrails {
    /// Compiles the named sets (declared ones first, then built-ins).
    pub fn resolve(names: &[String], declared: &[ShellGuardrailConfig]) -> Result<Self, String> {
        let mut sets = Vec::new();
        for n in names {
            let cfg = declared
                .iter()
                .find(|d| &d.name == n)
                .cloned()
                .or_else(|| ShellGuardrailConfig::builtin(n))
                .ok_or_else(|| {
                    format!(
                        "shell guardrail set {n:?} is not declared in [[shell_guardrails]] (built-in: no-destructive)"
                    )
                })?;
            sets.push(Self::compile_set(&cfg)?);
        }
        Ok(Self { sets })
    }

    fn compile_set(cfg: &ShellGuardrailConfig) -> Result<RuleSet, String> {
        let deny = guarded(|| {
            cfg.deny
                .iter()
                .map(|t| rules::compile(t))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_else(|| Err("the deny rules could not be compiled".into()))
        .map_err(|e| format!("shell guardrail {:?}: {e}", cfg.name))?;
        if let Some(allow) = &cfg.allow {
            for a in allow {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    return Err(format!(
                        "shell guardrail {:?}: allow entry {a:?} must be one program name or path",
                        cfg.name
                    ));
                }
            }
        }
        let patterns = cfg
            .deny_patterns
            .iter()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .map(|r| (p.clone(), r))
                    .map_err(|e| {
                        format!(
                            "shell guardrail {:?}: bad deny pattern {p:?}: {e}",
                            cfg.name
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RuleSet {
            name: cfg.name.clone(),
            deny,
            allow: cfg.allow.clone(),
            patterns,
            message: cfg.message.clone(),
        })
    }

    /// Checks the declared sets compile (names unique, rules and patterns valid).
    pub fn validate(declared: &[ShellGuardrailConfig]) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for d in declared {
            if !seen.insert(d.name.as_str()) {
                return Err(format!("shell guardrail {:?} is declared twice", d.name));
            }
            Self::compile_set(d)?;
        }
        Ok(())
    }

    /// True when no rule applies.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Judges one command line (an exec request).
    pub fn check(&self, line: &str) -> Verdict {
        if self.sets.is_empty() {
            return Verdict::Allow;
        }
        let a = analyze(line);
        self.judge(&a, Some(line))
    }

    /// Judges an exec request's bytes. Text that is not UTF-8 is refused by every set with
    /// rules: the shell reads bytes, and the judge would read a lossy copy of them.
    pub fn check_bytes(&self, command: &[u8]) -> Verdict {
        match std::str::from_utf8(command) {
            Ok(line) => self.check(line),
            Err(_) => {
                let a = Analysis {
                    unresolved: vec!["the command is not valid UTF-8".into()],
                    ..Analysis::default()
                };
                let lossy = String::from_utf8_lossy(command);
                self.judge(&a, Some(&lossy))
            }
        }
    }

    /// Judges an interactive shell request: the account's login shell reading what is typed.
    pub fn check_login_shell(&self) -> Verdict {
        let a = Analysis {
            invocations: vec![Invocation {
                program: Program::LoginShell,
                args: Vec::new(),
                extra: Extra::None,
                stages: Vec::new(),
                role: Role::Command,
                code: Code::Stdin,
            }],
            ..Analysis::default()
        };
        self.judge(&a, None)
    }

    fn judge(&self, a: &Analysis, line: Option<&str>) -> Verdict {
        for set in &self.sets {
            let block = |reason: String| Verdict::Block {
                rule: set.name.clone(),
                reason: match &set.message {
                    Some(m) => format!("{reason} ({m})"),
                    None => reason,
                },
            };
            if let Some(line) = line {
                for (text, re) in &set.patterns {
                    if re.is_match(line) {
                        return block(format!("the command matches the denied pattern {text:?}"));
                    }
                }
            }
            for rule in &set.deny {
                if rule.matches(a) {
                    return block(format!("{:?} is denied", rule.text));
                }
            }
            if set.deny.is_empty() && set.allow.is_none() {
                continue;
            }
            if let Some(why) = a.unresolved.first() {
                return block(format!("{why}; the gateway refuses what it cannot judge"));
            }
            let Some(allow) = &set.allow else { continue };
            if let Some(why) = a.hazards.first() {
                return block(why.clone());
            }
            if a.invocations.iter().all(|i| i.role == Role::Transparent) {
                return block("no command to check against the allow-list".into());
            }
            for inv in &a.invocations {
                if let Err(why) = rules::allowed(allow, inv) {
                    return block(why);
                }
            }
        }
        Verdict::Allow
    }

    /// May a client set this environment variable (an SSH `env` request)? Not one that can
    /// change what runs (`PATH`, `LD_PRELOAD`, `BASH_ENV`, ...) when an allow-list applies: the
    /// same rule as for assignments in a line.
    pub fn allows_env(&self, name: &str) -> bool {
        !(self.sets.iter().any(|s| s.allow.is_some()) && analysis::risky_assignment(name))
    }

    /// The allow-lists of these sets that name `program`.
    fn allow_lists_name(&self, program: &str) -> bool {
        self.sets.iter().any(|s| {
            s.allow
                .as_ref()
                .is_some_and(|l| l.iter().any(|e| e == program))
        })
    }
}

/// The program name an sftp subsystem request is judged as (`sftp-server` is the same to
/// rules).
pub const SFTP_PROGRAM: &str = "sftp";

/// Judges an SSH subsystem request as the program of that name: `sftp` like any program (deny
/// rules and allow-lists apply); any other subsystem is refused unless an allow-list names
/// it, even on a connection without rules, since nothing else would judge what it does.
pub fn check_subsystem(rules: Option<&ShellGuardrails>, name: &str) -> Verdict {
    let program = if name == "sftp-server" {
        SFTP_PROGRAM
    } else {
        name
    };
    let a = Analysis {
        invocations: vec![Invocation {
            program: Program::Named {
                base: program.to_string(),
                path: None,
            },
            args: Vec::new(),
            extra: Extra::None,
            stages: Vec::new(),
            role: Role::Command,
            code: Code::None,
        }],
        ..Analysis::default()
    };
    let verdict = rules.map_or(Verdict::Allow, |r| r.judge(&a, None));
    if verdict != Verdict::Allow || program == SFTP_PROGRAM {
        return verdict;
    }
    if rules.is_some_and(|r| r.allow_lists_name(name)) {
        return Verdict::Allow;
    }
    Verdict::Block {
        rule: "ssh-subsystems".into(),
        reason: format!(
            "the ssh subsystem {name:?} is refused unless a shell guardrail's allow-list names it"
        ),
    }
}

/// Is `line` exactly a real scp transfer: one simple command `scp` with only scp's own
/// remote-side flags (`-t` or `-f`, and `-r -p -d -v`), then paths; no other command,
/// assignment, redirection or substitution. Only such a line is relayed unmasked (file bytes
/// must arrive unchanged); anything else that mentions scp is an ordinary command.
pub fn is_scp_transfer(line: &str) -> bool {
    guarded(|| scp_transfer(line)).unwrap_or(false)
}

fn scp_transfer(line: &str) -> bool {
    let mut parsed = syntax::Parsed::default();
    if parsed.parse(line, &[], 0).is_err()
        || !parsed.findings.is_empty()
        || !parsed.flows.is_empty()
        || !parsed.functions.is_empty()
        || !parsed.assignments.is_empty()
    {
        return false;
    }
    let [simple] = parsed.simples.as_slice() else {
        return false;
    };
    if simple.redirected || !simple.assignments.is_empty() {
        return false;
    }
    let mut words = simple.words.iter();
    if words.next().and_then(words::Word::literal) != Some("scp") {
        return false;
    }
    let (mut to, mut from, mut paths) = (false, false, 0usize);
    let mut options_done = false;
    for w in words {
        let Some(text) = w.static_text() else {
            return false;
        };
        if !options_done && text == "--" {
            options_done = true;
            continue;
        }
        match text.strip_prefix('-') {
            Some(flags) if !options_done && w.literal().is_some() => {
                if flags.is_empty()
                    || !flags
                        .chars()
                        .all(|c| matches!(c, 't' | 'f' | 'r' | 'p' | 'd' | 'v'))
                {
                    return false;
                }
                to |= flags.contains('t');
                from |= flags.contains('f');
            }
            _ => {
                options_done = true;
                paths += 1;
            }
        }
    }
    to != from && paths > 0
}
