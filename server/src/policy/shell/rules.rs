//! Deny rules and allow-lists, matched against what a line runs ([`Analysis`]).
//!
//! A deny rule is written as a command: `rm -rf /` matches a program named `rm` whose
//! arguments contain every word of the rule in any order. Short-flag clusters match letter by
//! letter (`-rf` ≡ `-fr` ≡ `-r -f`), long options by GNU's unique-prefix rule (`--recursive`
//! matches `--r`, `--rec`, `--recursive=...`), and for the programs in [`OPTION_TABLES`] long
//! and short spellings of one option are the same (`rm -R` ≡ `rm -r` ≡ `rm --recursive`). An
//! argument the text cannot tell (a variable, a glob, what `xargs` appends) may be anything
//! it could expand to, so `rm -rf "$d"` matches `rm -rf /`: the rule errs towards refusing.

use super::analysis::Analysis;
use super::programs::{Code, Extra, Invocation, Program, Role, is_interpreter, is_shell};
use super::syntax::{Finding, Parsed};
use super::words::{Options, Part, Word};

/// A word of a deny rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleWord {
    /// `*`: anything, or nothing.
    Any,
    /// A cluster of short flags (`-rf`): each letter must be set.
    Flags(Vec<char>),
    /// A long option (`--no-preserve-root`), or a whole-word option of a program such as
    /// `find` (`-delete`, matched exactly).
    Long { name: String, exact: bool },
    /// `/`: the root directory in any spelling (`//`, `/.`, `/*`).
    Root,
    /// `~`: the home directory (`~/`, `$HOME`).
    Home,
    /// Any other word, a glob when it has `*`, `?` or `[...]`.
    Word(String),
}

/// One stage of a rule: a program and the words its arguments must contain.
#[derive(Debug, Clone)]
struct Stage {
    /// The program's name; a trailing `*` matches any name with that prefix (`mkfs*`).
    program: String,
    words: Vec<RuleWord>,
}

/// A compiled deny rule; more than one stage means a pipeline (`curl * | sh`).
#[derive(Debug, Clone)]
pub(crate) struct DenyRule {
    pub text: String,
    stages: Vec<Stage>,
}

/// Programs whose options are whole words after one dash (`find -delete`).
const SINGLE_DASH: &[&str] = &["find"];

/// Per program: long options that are another spelling of a short one, and short letters
/// that are another spelling of one another.
struct OptionTable {
    programs: &'static [&'static str],
    long: &'static [(&'static str, char)],
    same: &'static [(char, char)],
}

const OPTION_TABLES: &[OptionTable] = &[
    OptionTable {
        programs: &["rm"],
        long: &[
            ("recursive", 'r'),
            ("force", 'f'),
            ("dir", 'd'),
            ("verbose", 'v'),
            ("interactive", 'i'),
        ],
        same: &[('R', 'r')],
    },
    OptionTable {
        programs: &["cp"],
        long: &[
            ("recursive", 'r'),
            ("force", 'f'),
            ("archive", 'a'),
            ("verbose", 'v'),
            ("interactive", 'i'),
        ],
        same: &[('R', 'r')],
    },
    OptionTable {
        programs: &["chmod", "chown", "chgrp"],
        long: &[("recursive", 'R'), ("verbose", 'v')],
        same: &[],
    },
    OptionTable {
        programs: &["shutdown"],
        long: &[("halt", 'H'), ("poweroff", 'P'), ("reboot", 'r')],
        same: &[],
    },
];

/// For programs not in the tables: the usual meaning of these long options.
const DEFAULT_LONG: &[(&str, char)] = &[("recursive", 'r'), ("force", 'f')];

const DEFAULT_TABLE: OptionTable = OptionTable {
    programs: &[],
    long: DEFAULT_LONG,
    same: &[],
};

fn table(program: &str) -> &'static OptionTable {
    OPTION_TABLES
        .iter()
        .find(|t| t.programs.contains(&program))
        .unwrap_or(&DEFAULT_TABLE)
}

fn fold(c: char, same: &[(char, char)]) -> char {
    same.iter().find(|(a, _)| *a == c).map_or(c, |(_, b)| *b)
}

fn is_flag_cluster(w: &str) -> bool {
    w.len() > 1
        && w.starts_with('-')
        && !w.starts_with("--")
        && w.chars().skip(1).all(|c| c.is_ascii_alphanumeric())
}

/// Compiles a rule's text (written as a command or a pipeline of commands).
pub(crate) fn compile(text: &str) -> Result<DenyRule, String> {
    let bad = |why: &str| format!("deny rule {text:?} {why}");
    let mut parsed = Parsed::default();
    parsed
        .parse(text, &[], 0)
        .map_err(|e| bad(&format!("is not a command: {e}")))?;
    if let Some(f) = parsed.findings.first() {
        let (Finding::Unresolved(w) | Finding::Hazard(w)) = f;
        return Err(bad(&format!("cannot be read: {w}")));
    }
    if parsed.flows.len() > 1 || (parsed.flows.is_empty() && parsed.simples.len() > 1) {
        return Err(bad(
            "must be one command or one pipeline (no `;`, `&&`, substitutions)",
        ));
    }
    let mut stages = Vec::new();
    for s in &parsed.simples {
        if !s.assignments.is_empty() || s.redirected {
            return Err(bad("has an assignment or a redirection"));
        }
        let mut words = s.words.iter();
        let program = match words.next().map(|w| (w.static_text(), w)) {
            Some((Some(p), _)) => p.rsplit('/').next().unwrap_or(&p).to_string(),
            Some((None, w)) => {
                return Err(bad(&format!(
                    "has a program that is not plain text: {}",
                    w.raw
                )));
            }
            None => return Err(bad("has an empty command")),
        };
        let single_dash = SINGLE_DASH.contains(&program.as_str());
        let words = words
            .map(|w| rule_word(w, single_dash).map_err(|e| bad(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        stages.push(Stage { program, words });
    }
    if stages.is_empty() {
        return Err(bad("has no command"));
    }
    Ok(DenyRule {
        text: text.to_string(),
        stages,
    })
}

fn rule_word(w: &Word, single_dash: bool) -> Result<RuleWord, String> {
    if w.may_be_home() && w.parts.iter().any(|p| matches!(p, Part::Home)) {
        return Ok(RuleWord::Home);
    }
    let text = w
        .static_text()
        .ok_or_else(|| format!("has a word that is not plain text: {}", w.raw))?;
    Ok(if text == "*" {
        RuleWord::Any
    } else if text == "/" {
        RuleWord::Root
    } else if single_dash && text.starts_with('-') && text.len() > 1 {
        RuleWord::Long {
            name: text.trim_start_matches('-').to_string(),
            exact: true,
        }
    } else if let Some(name) = text.strip_prefix("--").filter(|n| !n.is_empty()) {
        RuleWord::Long {
            name: name.to_string(),
            exact: false,
        }
    } else if is_flag_cluster(&text) {
        RuleWord::Flags(text.chars().skip(1).collect())
    } else if w.literal().is_some() {
        // Quoted glob characters are literal: escape them for the matcher.
        RuleWord::Word(
            text.chars()
                .flat_map(|c| match c {
                    '*' | '?' | '[' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect(),
        )
    } else {
        RuleWord::Word(text)
    })
}

impl DenyRule {
    /// The line runs something this rule denies.
    pub fn matches(&self, a: &Analysis) -> bool {
        match self.stages.as_slice() {
            [] => false,
            [only] => a
                .invocations
                .iter()
                .any(|inv| stage_matches(only, inv, false)),
            [first, rest @ ..] => a.flows.iter().any(|flow| {
                let mut want = std::iter::once(first).chain(rest.iter()).peekable();
                let mut position = 0usize;
                for element in flow {
                    let Some(stage) = want.peek() else { break };
                    let hit = a
                        .invocations
                        .iter()
                        .filter(|inv| inv.stages.contains(element))
                        .any(|inv| stage_matches(stage, inv, position > 0));
                    if hit {
                        want.next();
                        position += 1;
                    }
                }
                want.peek().is_none()
            }),
        }
    }
}

fn program_matches(rule: &str, inv: &Invocation, after_pipe: bool) -> bool {
    if after_pipe && is_shell(rule) {
        // `... | sh` means "a shell or interpreter runs what comes through": any of them.
        return runs_code_from_input(inv);
    }
    match &inv.program {
        Program::Named { base, .. } => {
            let base = sftp_alias(base);
            match rule.strip_suffix('*') {
                Some(prefix) => base.starts_with(prefix),
                None => base == sftp_alias(rule),
            }
        }
        Program::LoginShell => is_shell(rule),
        Program::Dynamic(_) => false,
    }
}

/// `sftp` and `sftp-server` are one program to rules: the subsystem and the server binary.
fn sftp_alias(name: &str) -> &str {
    if name == "sftp-server" { "sftp" } else { name }
}

/// A shell or interpreter whose code comes from its input or from something the text cannot
/// tell.
pub(crate) fn runs_code_from_input(inv: &Invocation) -> bool {
    let code_program = match &inv.program {
        Program::Named { base, .. } => {
            is_shell(base) || is_interpreter(base) || base == "source" || base == "."
        }
        Program::LoginShell => true,
        Program::Dynamic(_) => false,
    };
    code_program && matches!(inv.code, Code::Stdin | Code::Dynamic)
}

/// Where a rule word may be satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// By something that can serve any number of rule words.
    Free,
    /// Only by the argument at this index, which is one word.
    Single(usize),
}

fn stage_matches(stage: &Stage, inv: &Invocation, after_pipe: bool) -> bool {
    if !program_matches(&stage.program, inv, after_pipe) {
        return false;
    }
    if stage.words.is_empty() {
        return true;
    }
    let program = inv.name();
    let single_dash = SINGLE_DASH.contains(&program);
    let OptionTable {
        long: long_table,
        same,
        ..
    } = table(program);
    let mut args: Vec<Word> = inv.args.clone();
    let mut open = false;
    // Paths xargs appends from find: any number of them, none an option.
    let mut appended_paths: Option<Word> = None;
    match &inv.extra {
        Extra::None => {}
        Extra::FromInput | Extra::Unknown => open = true,
        Extra::Under(starts) => {
            appended_paths = Some(Word::from_parts(
                vec![Part::Under(starts.clone())],
                "(paths from find)",
            ));
        }
        Extra::Words(ws) => args.extend(ws.iter().map(|w| Word::lit(w))),
    }
    let opts = Options::of(&args, single_dash, open);
    let mut short: Vec<char> = opts.short.iter().map(|c| fold(*c, same)).collect();
    for l in &opts.long {
        let mut hits = long_table
            .iter()
            .filter(|(name, _)| name.starts_with(l.as_str()));
        if let (Some((_, c)), None) = (hits.next(), hits.next()) {
            short.push(fold(*c, same));
        }
    }
    let past_dashdash = |i: usize| args.iter().take(i).any(|w| w.literal() == Some("--"));
    let flags_set = |letters: &[char]| letters.iter().all(|l| short.contains(&fold(*l, same)));
    let long_set = |name: &str, exact: bool| {
        opts.long.iter().any(|a| {
            if exact {
                a == name
            } else {
                name.starts_with(a.as_str())
            }
        }) || (!exact
            && long_table
                .iter()
                .find(|(n, _)| *n == name)
                .is_some_and(|(_, s)| short.contains(&fold(*s, same))))
    };
    // Could argument `w` (at `i`) be this rule word?
    let may_be = |rw: &RuleWord, w: &Word, i: usize| match rw {
        RuleWord::Any => true,
        RuleWord::Flags(_) | RuleWord::Long { .. } => !past_dashdash(i) && w.may_be_option(),
        RuleWord::Root => w.may_be_root(),
        RuleWord::Home => w.may_be_home(),
        RuleWord::Word(g) => w.may_match_glob(g),
    };
    let candidates: Vec<Vec<Source>> = stage
        .words
        .iter()
        .map(|rw| {
            // Literal arguments, and those that may become several words (an unquoted
            // variable, a glob, what xargs appends), can serve any number of rule words.
            let free = opts.open
                || match rw {
                    RuleWord::Any => true,
                    RuleWord::Flags(letters) => flags_set(letters),
                    RuleWord::Long { name, exact } => long_set(name, *exact),
                    _ => {
                        args.iter().enumerate().any(|(i, w)| {
                            (w.literal().is_some() || w.may_split()) && may_be(rw, w, i)
                        }) || appended_paths
                            .as_ref()
                            .is_some_and(|w| may_be(rw, w, args.len()))
                    }
                };
            if free {
                return vec![Source::Free];
            }
            // A single word the text cannot tell serves at most one.
            args.iter()
                .enumerate()
                .filter(|(i, w)| w.literal().is_none() && !w.may_split() && may_be(rw, w, *i))
                .map(|(i, _)| Source::Single(i))
                .collect()
        })
        .collect();
    assign(&candidates, 0, &mut Vec::new())
}

/// Can every rule word get a source, each single argument used once?
fn assign(candidates: &[Vec<Source>], k: usize, used: &mut Vec<usize>) -> bool {
    let Some(options) = candidates.get(k) else {
        return true;
    };
    for s in options {
        match s {
            Source::Free => return assign(candidates, k + 1, used),
            Source::Single(i) if !used.contains(i) => {
                used.push(*i);
                if assign(candidates, k + 1, used) {
                    return true;
                }
                used.pop();
            }
            Source::Single(_) => {}
        }
    }
    false
}

/// Directories whose programs an allow-list entry without a `/` also covers when written
/// with their path (`/usr/bin/ls` for `ls`).
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/usr/bin",
    "/sbin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// Is `inv` allowed by the allow-list `entries`? `Err` names why not.
pub(crate) fn allowed(entries: &[String], inv: &Invocation) -> Result<(), String> {
    if inv.role == Role::Transparent {
        return Ok(());
    }
    let list = || entries.join(", ");
    match &inv.program {
        Program::Dynamic(raw) => Err(format!(
            "the program {raw} cannot be checked against the allow-list ({})",
            list()
        )),
        Program::LoginShell => {
            if entries.iter().any(|e| is_shell(e)) {
                Ok(())
            } else {
                Err(format!(
                    "an interactive shell runs whatever is typed, and no shell is on the allow-list ({})",
                    list()
                ))
            }
        }
        Program::Named { base, path } => {
            let ok = entries.iter().any(|e| {
                if e.contains('/') {
                    return path.as_deref() == Some(e.as_str());
                }
                if sftp_alias(e) != sftp_alias(base) {
                    return false;
                }
                match path {
                    None => true,
                    Some(p) => {
                        let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                        let dir = if dir.is_empty() { "/" } else { dir };
                        !p.contains("/../")
                            && !p.contains("/./")
                            && SYSTEM_DIRS.contains(&dir.trim_end_matches('/'))
                    }
                }
            });
            if ok {
                Ok(())
            } else if let Some(p) = path
                .as_deref()
                .filter(|_| entries.iter().any(|e| sftp_alias(e) == sftp_alias(base)))
            {
                Err(format!(
                    "{p} is not in a system directory; the allow-list ({}) names programs found on the PATH or in /bin, /usr/bin, /sbin, /usr/sbin, /usr/local/bin",
                    list()
                ))
            } else {
                Err(format!("{base:?} is not on the allow-list ({})", list()))
            }
        }
    }
}
