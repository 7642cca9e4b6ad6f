//! Guardrails for shell commands: the commands of `ssh host cmd`, scp's `scp -t`/`-f`, and (as
//! an audit aid only) lines typed into an interactive shell. IO-free and protocol-neutral.
//!
//! A command line is split into simple commands at the shell's control operators (`|`, `||`,
//! `&&`, `;`, `&`, newlines, `(`, `)`, and the openings of command substitutions `$(` and
//! backquotes), and each simple command is parsed into words with the `shell-words` crate
//! (POSIX quoting). Leading `NAME=value` assignments and wrappers (`sudo`, `env`, `nohup`,
//! `time`, `exec`, `command`, `nice`, `timeout N`, `xargs`) are skipped to find the program.
//!
//! A deny rule is itself written as a command: `rm -rf /` matches a simple command whose program
//! is `rm` and whose arguments contain every word of the rule (in any order), where a short-flag
//! cluster matches when every letter appears (`-rf` matches `-fr`, `-r -f`, `-Rf`); `*` as a
//! word matches anything. A rule with a `|` (`curl * | sh`) matches a pipeline where a command
//! matching the left side is followed by one matching the right side.
//!
//! Limits, stated plainly: this reads the command text the client sent; it is not a shell.
//! Variables (`$X`), globbing, aliases, functions, `eval`, scripts that run other commands,
//! and interpreters (`python -c ...`) are not expanded or followed. A command that does not
//! parse (unbalanced quotes) is blocked when the connection has any rule (fail closed). Use
//! the target's own permissions as the boundary; these rules stop accidents and make intent
//! visible.

use regex::Regex;
use serde::Deserialize;

use super::Verdict;

/// One named shell rule set as written in `[[shell_guardrails]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellGuardrailConfig {
    /// The name connections refer to (in their `guardrails`); appears in every block message.
    pub name: String,
    /// Commands to refuse, written as commands: `"rm -rf /"`, `"shutdown"`, `"curl * | sh"`.
    #[serde(default)]
    pub deny: Vec<String>,
    /// When set, only these programs may run (every simple command of a line must be one of
    /// them, by program name: `"ls"`, `"cat"`, `"scp"`).
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
                "shutdown",
                "reboot",
                "halt",
                "poweroff",
                "init 0",
                "init 6",
                "mkfs",
                "mkfs.ext4",
                "dd * of=/dev/*",
                "curl * | sh",
                "curl * | bash",
                "wget * | sh",
                "wget * | bash",
            ]
            .map(String::from)
            .to_vec(),
            allow: None,
            deny_patterns: vec![":\\(\\)\\s*\\{\\s*:\\|:&\\s*\\};:".into()],
            message: None,
        })
    }
}

/// A word of a deny rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleWord {
    /// `*`: anything.
    Any,
    /// A cluster of short flags (`-rf`): each letter must be set.
    Flags(Vec<char>),
    /// A glob-free word, or one ending in `*` (prefix match).
    Word(String),
}

/// One side of a pipeline rule: a program and the words its arguments must contain.
#[derive(Debug, Clone)]
struct CommandRule {
    program: String,
    words: Vec<RuleWord>,
}

#[derive(Debug, Clone)]
struct DenyRule {
    text: String,
    /// Pipeline stages, in order.
    stages: Vec<CommandRule>,
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

/// One simple command of a line, with its pipeline position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// The program's base name (`/usr/bin/rm` → `rm`).
    pub program: String,
    /// The arguments after the program.
    pub args: Vec<String>,
    /// Index of the pipeline it belongs to (commands joined by `|` share it).
    pub pipeline: usize,
}

/// Splits a command line into simple commands. `Err` when it cannot be parsed (unbalanced
/// quotes).
pub fn split_commands(line: &str) -> Result<Vec<SimpleCommand>, String> {
    let mut out = Vec::new();
    let mut pipeline = 0usize;
    for (segment, op) in split_operators(line)? {
        let words = shell_words::split(&segment)
            .map_err(|e| format!("cannot parse the command as shell words: {e}"))?;
        if let Some((program, args)) = program_of(&words) {
            out.push(SimpleCommand {
                program,
                args,
                pipeline,
            });
        }
        if op != Some('|') {
            pipeline += 1;
        }
    }
    Ok(out)
}

/// Cuts `line` at control operators outside quotes; each piece comes with the operator that
/// ended it (`|` for a pipe, `;` for everything else, `None` at the end).
fn split_operators(line: &str) -> Result<Vec<(String, Option<char>)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        if single {
            cur.push(c);
            if c == '\'' {
                single = false;
            }
            continue;
        }
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' if !double => {
                single = true;
                cur.push(c);
            }
            '"' => {
                double = !double;
                cur.push(c);
            }
            // A command substitution runs a command even inside double quotes.
            '`' => {
                out.push((std::mem::take(&mut cur), Some(';')));
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                out.push((std::mem::take(&mut cur), Some(';')));
            }
            _ if double => cur.push(c),
            '|' => {
                if chars.peek() == Some(&'|') {
                    chars.next();
                    out.push((std::mem::take(&mut cur), Some(';')));
                } else {
                    // `|&` pipes stderr too.
                    if chars.peek() == Some(&'&') {
                        chars.next();
                    }
                    out.push((std::mem::take(&mut cur), Some('|')));
                }
            }
            ';' | '&' | '\n' | '(' | ')' => {
                if c == '&' && chars.peek() == Some(&'&') {
                    chars.next();
                }
                out.push((std::mem::take(&mut cur), Some(';')));
            }
            _ => cur.push(c),
        }
    }
    if single || double {
        return Err("cannot parse the command: unbalanced quotes".into());
    }
    out.push((cur, None));
    Ok(out)
}

/// Skips assignments and wrappers; returns the program's base name and its arguments.
fn program_of(words: &[String]) -> Option<(String, Vec<String>)> {
    let mut i = 0;
    // Strip leading redirections like `2>&1` that were left attached (rare) and assignments.
    loop {
        let w = words.get(i)?;
        let is_assignment = w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        if is_assignment {
            i += 1;
            continue;
        }
        let base = basename(w);
        match base {
            "sudo" | "doas" => {
                i += 1;
                // sudo's own options (-u user, -E, ...).
                while let Some(o) = words.get(i) {
                    if !o.starts_with('-') {
                        break;
                    }
                    let takes_value = matches!(o.as_str(), "-u" | "-g" | "-C" | "-h" | "-p");
                    i += if takes_value { 2 } else { 1 };
                }
            }
            "env" | "nohup" | "exec" | "command" | "xargs" | "stdbuf" => {
                i += 1;
                while words.get(i).is_some_and(|o| o.starts_with('-')) {
                    i += 1;
                }
            }
            "time" | "nice" | "ionice" => {
                i += 1;
                while words.get(i).is_some_and(|o| o.starts_with('-')) {
                    i += 1;
                    if words
                        .get(i)
                        .is_some_and(|o| o.chars().all(|c| c.is_ascii_digit()))
                    {
                        i += 1;
                    }
                }
            }
            "timeout" => {
                i += 1;
                while words.get(i).is_some_and(|o| o.starts_with('-')) {
                    i += 1;
                }
                i += 1; // the duration
            }
            _ => {
                let args = words
                    .get(i + 1..)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default();
                return Some((base.to_string(), args));
            }
        }
    }
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

fn compile_rule(text: &str) -> Result<DenyRule, String> {
    let mut stages = Vec::new();
    for part in text.split('|') {
        let words = shell_words::split(part)
            .map_err(|e| format!("deny rule {text:?} is not valid shell words: {e}"))?;
        let mut it = words.into_iter();
        let program = it
            .next()
            .ok_or_else(|| format!("deny rule {text:?} has an empty command"))?;
        let words = it
            .map(|w| {
                if w == "*" {
                    RuleWord::Any
                } else if is_flag_cluster(&w) {
                    RuleWord::Flags(w.chars().skip(1).collect())
                } else {
                    RuleWord::Word(w)
                }
            })
            .collect();
        stages.push(CommandRule {
            program: basename(&program).to_string(),
            words,
        });
    }
    Ok(DenyRule {
        text: text.to_string(),
        stages,
    })
}

fn is_flag_cluster(w: &str) -> bool {
    w.len() > 1
        && w.starts_with('-')
        && !w.starts_with("--")
        && w.chars().skip(1).all(|c| c.is_ascii_alphabetic())
}

/// Short flags set anywhere in `args` (case-insensitive, so `-R` counts as `-r`), plus long
/// flags mapped to their usual short letter for `rm` and friends.
fn flags_of(args: &[String]) -> Vec<char> {
    let mut out = Vec::new();
    for a in args {
        if a == "--" {
            break;
        }
        if is_flag_cluster(a) {
            out.extend(a.chars().skip(1).map(|c| c.to_ascii_lowercase()));
        } else if a == "--recursive" {
            out.push('r');
        } else if a == "--force" {
            out.push('f');
        }
    }
    out
}

fn stage_matches(rule: &CommandRule, cmd: &SimpleCommand) -> bool {
    let program_ok = match rule.program.strip_suffix('*') {
        Some(prefix) => cmd.program.starts_with(prefix),
        None => cmd.program == rule.program,
    };
    if !program_ok {
        return false;
    }
    let flags = flags_of(&cmd.args);
    rule.words.iter().all(|w| match w {
        RuleWord::Any => true,
        RuleWord::Flags(want) => want.iter().all(|c| flags.contains(&c.to_ascii_lowercase())),
        RuleWord::Word(word) => cmd.args.iter().any(|a| word_matches(word, a)),
    })
}

fn word_matches(rule: &str, arg: &str) -> bool {
    if let Some(prefix) = rule.strip_suffix('*')
        && !prefix.contains('*')
    {
        return arg.starts_with(prefix);
    }
    match rule.split_once('*') {
        // `of=/dev/*`-style: prefix and suffix around one star.
        Some((pre, post)) => {
            arg.len() >= pre.len() + post.len() && arg.starts_with(pre) && arg.ends_with(post)
        }
        None => {
            // `/` also matches `//`, `/.` and `/*` (everything in it); `~` likewise, and
            // `$HOME`.
            if rule == "/" || rule == "~" {
                let trimmed = arg.trim_end_matches(['/', '.', '*']);
                let home = rule == "~" && matches!(trimmed, "~" | "$HOME" | "${HOME}");
                let root = rule == "/" && trimmed.is_empty() && arg.starts_with('/');
                return home || root;
            }
            arg == rule
        }
    }
}

fn rule_matches(rule: &DenyRule, cmds: &[SimpleCommand]) -> bool {
    let Some(first) = rule.stages.first() else {
        return false;
    };
    for (i, cmd) in cmds.iter().enumerate() {
        if !stage_matches(first, cmd) {
            continue;
        }
        // The remaining stages must follow in the same pipeline, in order.
        let mut next = 1;
        for later in cmds.iter().skip(i + 1) {
            if later.pipeline != cmd.pipeline {
                break;
            }
            match rule.stages.get(next) {
                Some(stage) if stage_matches(stage, later) => next += 1,
                Some(_) => {}
                None => break,
            }
        }
        if next >= rule.stages.len() {
            return true;
        }
    }
    false
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
        let deny = cfg
            .deny
            .iter()
            .map(|t| compile_rule(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("shell guardrail {:?}: {e}", cfg.name))?;
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

    /// Judges one command line.
    pub fn check(&self, line: &str) -> Verdict {
        if self.sets.is_empty() {
            return Verdict::Allow;
        }
        let cmds = match split_commands(line) {
            Ok(c) => c,
            Err(e) => {
                return Verdict::Block {
                    rule: self
                        .sets
                        .first()
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                    reason: e,
                };
            }
        };
        for set in &self.sets {
            let block = |reason: String| Verdict::Block {
                rule: set.name.clone(),
                reason: match &set.message {
                    Some(m) => format!("{reason} ({m})"),
                    None => reason,
                },
            };
            for (text, re) in &set.patterns {
                if re.is_match(line) {
                    return block(format!("the command matches the denied pattern {text:?}"));
                }
            }
            for rule in &set.deny {
                if rule_matches(rule, &cmds) {
                    return block(format!("{:?} is denied", rule.text));
                }
            }
            if let Some(allow) = &set.allow {
                if cmds.is_empty() {
                    return block("no command to check against the allow-list".into());
                }
                for c in &cmds {
                    if !allow.iter().any(|a| basename(a) == c.program) {
                        return block(format!(
                            "{:?} is not on the allow-list ({})",
                            c.program,
                            allow.join(", ")
                        ));
                    }
                }
            }
        }
        Verdict::Allow
    }
}

/// Assembles the lines typed into an interactive shell from the raw keystrokes the client
/// sends, for the recording. An audit aid, not a boundary: it sees keystrokes, not what the
/// shell made of them. Known gaps (each tested): tab completion and history recall (arrow keys)
/// insert text the gateway never sees, so such lines are marked `[edited]`; cursor movement
/// within a line is not replayed; bracketed paste wraps pasted text in escape sequences, so a
/// pasted line is marked `[edited]` too; programs that read input without echo (editors,
/// `read -s`) are recorded like a shell line.
#[derive(Debug, Default)]
pub struct TypedLines {
    line: String,
    edited: bool,
    /// Inside an escape sequence (ESC, then CSI parameters up to a final byte).
    escape: u8,
}

/// Longest line kept; the rest of a longer line is dropped (and the line marked).
const MAX_TYPED_LINE: usize = 4096;

impl TypedLines {
    /// Nothing typed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds keystrokes; returns the lines completed by Enter.
    pub fn push(&mut self, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(input);
        for c in text.chars() {
            match self.escape {
                1 => {
                    // ESC [ or ESC O start a sequence; anything else is a two-byte one.
                    self.escape = if c == '[' || c == 'O' { 2 } else { 0 };
                    self.edited = true;
                    continue;
                }
                2 => {
                    if ('\x40'..='\x7e').contains(&c) {
                        self.escape = 0;
                    }
                    continue;
                }
                _ => {}
            }
            match c {
                '\r' | '\n' => {
                    let line = std::mem::take(&mut self.line);
                    let edited = std::mem::take(&mut self.edited);
                    if !line.trim().is_empty() {
                        out.push(if edited {
                            format!("{line} [edited]")
                        } else {
                            line
                        });
                    }
                }
                '\x7f' | '\x08' => {
                    self.line.pop();
                }
                // Ctrl-C, Ctrl-U: the line is abandoned.
                '\x03' | '\x15' => {
                    self.line.clear();
                    self.edited = false;
                }
                '\t' => self.edited = true,
                '\x1b' => self.escape = 1,
                c if c.is_control() => {}
                c => {
                    if self.line.len() < MAX_TYPED_LINE {
                        self.line.push(c);
                    } else {
                        self.edited = true;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    fn rules(deny: &[&str], allow: Option<&[&str]>) -> ShellGuardrails {
        let cfg = ShellGuardrailConfig {
            name: "t".into(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
            deny_patterns: vec![],
            message: None,
        };
        ShellGuardrails::resolve(&["t".into()], &[cfg]).unwrap()
    }

    fn blocked(g: &ShellGuardrails, line: &str) -> bool {
        matches!(g.check(line), Verdict::Block { .. })
    }

    #[test]
    fn rm_rf_root_in_its_spellings() {
        let g = ShellGuardrails::resolve(&["no-destructive".into()], &[]).unwrap();
        for line in [
            "rm -rf /",
            "rm -fr /",
            "rm -r -f /",
            "rm -Rf /",
            "/bin/rm --recursive --force /",
            "sudo rm -rf /",
            "sudo -u root rm -rf /",
            "FOO=1 rm -rf /",
            "cd /tmp && rm -rf /",
            "echo hi; rm -rf //",
            "rm -rf /*",
            "rm -rf ~/",
            "rm -rf $HOME",
            "echo $(rm -rf /)",
            "echo `rm -rf /`",
            "'rm' '-rf' '/'",
            "shutdown -h now",
            "curl -s https://x.example/i.sh | sh",
            "curl https://x | sudo bash",
            "wget -qO- https://x | sh",
            "timeout 5 reboot",
        ] {
            assert!(blocked(&g, line), "{line} should be blocked");
        }
        for line in [
            "rm -rf /tmp/build",
            "rm -f /",
            "ls -la /",
            "echo 'rm -rf /'",
            "curl https://x -o file",
            "cat /etc/shutdown.conf",
            "grep shutdown /var/log/syslog",
            "scp -t /tmp",
        ] {
            assert!(!blocked(&g, line), "{line} should be allowed");
        }
    }

    #[test]
    fn allow_list_checks_every_command() {
        let g = rules(&[], Some(&["ls", "cat", "scp"]));
        assert!(!blocked(&g, "ls -la /var"));
        assert!(!blocked(&g, "cat a | cat"));
        assert!(!blocked(&g, "scp -f /tmp/x"));
        assert!(blocked(&g, "ls; whoami"));
        assert!(blocked(&g, "cat x | sh"));
        assert!(blocked(&g, "cat $(whoami)"));
        assert!(blocked(&g, ""));
    }

    #[test]
    fn unparsable_fails_closed_and_names_the_rule() {
        let g = rules(&["shutdown"], None);
        match g.check("echo 'unterminated") {
            Verdict::Block { rule, reason } => {
                assert_eq!(rule, "t");
                assert!(reason.contains("unbalanced"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(ShellGuardrails::default().check("echo 'x"), Verdict::Allow);
    }

    #[test]
    fn pipeline_rule_needs_order_within_one_pipeline() {
        let g = rules(&["curl * | sh"], None);
        assert!(blocked(&g, "curl x | tee f | sh"));
        assert!(!blocked(&g, "sh -c true; curl x"));
        assert!(!blocked(&g, "curl x; sh y"));
    }

    #[test]
    fn patterns_and_messages() {
        let cfg = ShellGuardrailConfig {
            name: "p".into(),
            deny_patterns: vec!["/etc/shadow".into()],
            message: Some("ask #sre".into()),
            ..Default::default()
        };
        let g = ShellGuardrails::resolve(&["p".into()], &[cfg]).unwrap();
        match g.check("cat /etc/SHADOW") {
            Verdict::Block { rule, reason } => {
                assert_eq!(rule, "p");
                assert!(reason.contains("ask #sre"));
            }
            v => panic!("{v:?}"),
        }
        let bad = ShellGuardrailConfig {
            name: "b".into(),
            deny_patterns: vec!["(".into()],
            ..Default::default()
        };
        assert!(ShellGuardrails::validate(&[bad]).is_err());
        assert!(ShellGuardrails::resolve(&["nope".into()], &[]).is_err());
    }

    #[test]
    fn split_finds_programs() {
        let c = split_commands("LANG=C sudo -E /usr/bin/ls -l | grep x && echo 'a|b'").unwrap();
        let progs: Vec<_> = c.iter().map(|c| c.program.as_str()).collect();
        assert_eq!(progs, ["ls", "grep", "echo"]);
        assert_eq!(c[0].pipeline, c[1].pipeline);
        assert_ne!(c[1].pipeline, c[2].pipeline);
        assert_eq!(c[2].args, ["a|b"]);
    }

    #[test]
    fn typed_lines_follow_keystrokes() {
        let mut t = TypedLines::new();
        assert!(t.push(b"ls -l").is_empty());
        assert_eq!(t.push(b"a\r"), ["ls -la"]);
        // Backspace, split across reads.
        t.push(b"cat foo");
        assert_eq!(t.push(b"\x7f\x7fx\r"), ["cat fx"]);
        // Ctrl-C abandons; blank lines are skipped.
        assert!(t.push(b"rm -rf /tmp/x\x03\r\r").is_empty());
        // Known gaps: history recall and tab completion mark the line as edited.
        assert_eq!(t.push(b"\x1b[A\r"), [] as [&str; 0]);
        assert_eq!(t.push(b"echo hi\x1b[D!\r"), ["echo hi! [edited]"]);
        assert_eq!(t.push(b"cat /etc/pas\t\r"), ["cat /etc/pas [edited]"]);
    }
}
