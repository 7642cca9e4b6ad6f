//! From a simple command's words to the programs it starts. Wrappers are read with their real
//! option grammars (GNU coreutils, util-linux, sudo, findutils, procps), so an option's
//! argument is never taken for the program (`env -u ls id` runs `id`, `timeout -s KILL 60 rm`
//! runs `rm`), and code handed over as a string (`sh -c`, `su -c`, `eval`, `env -S`, `flock -c`,
//! `watch`, `trap`, `alias`, a here-document fed to a shell) is parsed and judged like the line.
//! A wrapper option this module does not know, or an option the text cannot tell
//! (`env $OPTS rm`), makes the command unresolved: refused, with the reason, rather than guessed.

use super::names;
use super::syntax::{Input, Parsed, Simple};
use super::words::{Part, Word};

/// How many code strings deep (`sh -c "sh -c '...'"`) the judge follows.
const MAX_DEPTH: u8 = 8;

/// The program a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Program {
    /// A name the text decides: `base` without directories, `path` as written when it has a `/`.
    Named { base: String, path: Option<String> },
    /// A program the text cannot decide (`$X`, `$(cmd)`, `/???/r?`).
    Dynamic(String),
    /// The account's login shell, reading what the client types (`sudo -i`, `su`, an
    /// interactive session).
    LoginShell,
}

/// What kind of step a program is in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A program in its own right: allow-lists must name it.
    Command,
    /// A wrapper that only changes how the command after it runs (`env`, `nice`, `timeout`,
    /// `sh -c '...'`, `eval '...'`): allow-lists judge what it runs instead.
    Transparent,
}

/// Where a shell or interpreter takes its code from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Not a shell or interpreter.
    None,
    /// Its standard input (`sh`, `bash -s`, `python3 -`, `source /dev/stdin`).
    Stdin,
    /// A string the gateway parsed (`sh -c 'ls'`) or could not read (`python -c ...`).
    Text,
    /// A string or file the text cannot tell (`sh -c "$X"`, `bash <(curl ...)`).
    Dynamic,
    /// A script file named in the line.
    Script,
}

/// Arguments the program receives beyond its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Extra {
    None,
    /// `xargs` appends what it reads; resolved from the command feeding it when possible.
    FromInput,
    /// Unknown: may be any words, options included.
    Unknown,
    /// Paths at or below these (what `find` prints or passes).
    Under(Vec<String>),
    /// These literal words (what `echo` printed into `xargs`).
    Words(Vec<String>),
}

/// One program started by a line.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub program: Program,
    pub args: Vec<Word>,
    pub extra: Extra,
    /// Pipeline stages it belongs to (see [`Simple::stages`]).
    pub stages: Vec<usize>,
    pub role: Role,
    pub code: Code,
}

impl Invocation {
    pub fn name(&self) -> &str {
        match &self.program {
            Program::Named { base, .. } => base,
            Program::Dynamic(raw) => raw,
            Program::LoginShell => "the login shell",
        }
    }
}

/// Shells whose `-c` string bash's grammar reads the way they do: they are transparent to
/// allow-lists. Other shells' strings are still parsed for deny rules.
const POSIX_SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "ksh", "mksh", "rbash", "lksh"];
/// Every shell the judge knows (for `curl * | sh` rules and the login shell).
pub(crate) const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "ksh", "mksh", "rbash", "lksh", "zsh", "fish", "csh", "tcsh",
    "yash", "posh", "ksh93", "pdksh", "oksh",
];
/// Interpreters that run code from their input when given no script.
const INTERPRETERS: &[&str] = &[
    "python", "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "lua", "tclsh", "irb",
    "pypy", "pypy3",
];
/// Paths that are the standard input.
const STDIN_PATHS: &[&str] = &["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"];

pub(crate) fn is_shell(name: &str) -> bool {
    SHELLS.contains(&name)
}

pub(crate) fn is_interpreter(name: &str) -> bool {
    INTERPRETERS.contains(&name)
        || name
            .strip_prefix("python")
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The program a command word names.
pub(crate) fn program_of(w: &Word) -> Program {
    if let Some(l) = w.literal() {
        return match l.rsplit_once('/') {
            Some((_, base)) => Program::Named {
                base: base.to_string(),
                path: Some(l.to_string()),
            },
            None => Program::Named {
                base: l.to_string(),
                path: None,
            },
        };
    }
    // `~/bin/tool`, `"$DIR"/tool`: the name after the last `/` decides, when it is literal and
    // nothing before it can split into more words.
    let mut base = String::new();
    for (i, p) in w.parts.iter().enumerate().rev() {
        match p {
            Part::Lit(s) => match s.rsplit_once('/') {
                Some((_, tail)) => {
                    base.insert_str(0, tail);
                    let before_splits = w
                        .parts
                        .iter()
                        .take(i)
                        .any(|p| matches!(p, Part::Hole { split: true }));
                    if before_splits || base.is_empty() {
                        break;
                    }
                    return Program::Named {
                        base,
                        path: Some(w.raw.clone()),
                    };
                }
                None => base.insert_str(0, s),
            },
            _ => break,
        }
    }
    Program::Dynamic(w.raw.clone())
}

/// How an option is followed by its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    No,
    /// In the same word or the next.
    Required,
    /// Only in the same word (`-e[EOF]`, `--preserve-env[=list]`).
    Optional,
}

/// One option of a program: its short letter and long name (either may be absent).
#[derive(Debug)]
struct Spec {
    short: Option<char>,
    long: &'static str,
    takes: Takes,
}

const fn o(short: char, long: &'static str, takes: Takes) -> Spec {
    Spec {
        short: Some(short),
        long,
        takes,
    }
}

const fn l(long: &'static str, takes: Takes) -> Spec {
    Spec {
        short: None,
        long,
        takes,
    }
}

use Takes::{No, Optional as Opt, Required as Req};

const ENV: &[Spec] = &[
    o('i', "ignore-environment", No),
    o('0', "null", No),
    o('u', "unset", Req),
    o('C', "chdir", Req),
    o('S', "split-string", Req),
    o('v', "debug", No),
    l("default-signal", Opt),
    l("ignore-signal", Opt),
    l("block-signal", Opt),
    l("list-signal-handling", No),
    l("help", No),
    l("version", No),
];
const SUDO: &[Spec] = &[
    o('A', "askpass", No),
    o('a', "auth-type", Req),
    o('B', "bell", No),
    o('b', "background", No),
    o('C', "close-from", Req),
    o('c', "login-class", Req),
    o('D', "chdir", Req),
    o('E', "preserve-env", Opt),
    o('e', "edit", No),
    o('g', "group", Req),
    o('H', "set-home", No),
    o('h', "help", No),
    l("host", Req),
    o('i', "login", No),
    o('K', "remove-timestamp", No),
    o('k', "reset-timestamp", No),
    o('l', "list", No),
    o('N', "no-update", No),
    o('n', "non-interactive", No),
    o('P', "preserve-groups", No),
    o('p', "prompt", Req),
    o('R', "chroot", Req),
    o('r', "role", Req),
    o('S', "stdin", No),
    o('s', "shell", No),
    o('T', "command-timeout", Req),
    o('t', "type", Req),
    o('U', "other-user", Req),
    o('u', "user", Req),
    o('V', "version", No),
    o('v', "validate", No),
];
const DOAS: &[Spec] = &[
    o('a', "", Req),
    o('C', "", Req),
    o('L', "", No),
    o('n', "", No),
    o('s', "", No),
    o('u', "", Req),
];
const SU: &[Spec] = &[
    o('c', "command", Req),
    o('C', "session-command", Req),
    o('f', "fast", No),
    o('g', "group", Req),
    o('G', "supp-group", Req),
    o('l', "login", No),
    o('m', "preserve-environment", No),
    o('p', "", No),
    o('P', "pty", No),
    o('s', "shell", Req),
    o('u', "user", Req),
    o('w', "whitelist-environment", Req),
    o('h', "help", No),
    o('V', "version", No),
];
const TIMEOUT: &[Spec] = &[
    l("preserve-status", No),
    l("foreground", No),
    o('k', "kill-after", Req),
    o('s', "signal", Req),
    o('v', "verbose", No),
    l("help", No),
    l("version", No),
];
const NICE: &[Spec] = &[o('n', "adjustment", Req), l("help", No), l("version", No)];
const NOHUP: &[Spec] = &[l("help", No), l("version", No)];
const STDBUF: &[Spec] = &[
    o('i', "input", Req),
    o('o', "output", Req),
    o('e', "error", Req),
    l("help", No),
    l("version", No),
];
const SETSID: &[Spec] = &[
    o('c', "ctty", No),
    o('f', "fork", No),
    o('w', "wait", No),
    o('h', "help", No),
    o('V', "version", No),
];
const IONICE: &[Spec] = &[
    o('c', "class", Req),
    o('n', "classdata", Req),
    o('p', "pid", Req),
    o('P', "pgid", Req),
    o('u', "uid", Req),
    o('t', "ignore", No),
    o('h', "help", No),
    o('V', "version", No),
];
const CHRT: &[Spec] = &[
    o('a', "all-tasks", No),
    o('b', "batch", No),
    o('d', "deadline", No),
    o('D', "sched-deadline", Req),
    o('e', "ext", No),
    o('f', "fifo", No),
    o('i', "idle", No),
    o('m', "max", No),
    o('o', "other", No),
    o('p', "pid", No),
    o('P', "sched-period", Req),
    o('r', "rr", No),
    o('R', "reset-on-fork", No),
    o('T', "sched-runtime", Req),
    o('v', "verbose", No),
    o('h', "help", No),
    o('V', "version", No),
];
const TASKSET: &[Spec] = &[
    o('a', "all-tasks", No),
    o('c', "cpu-list", No),
    o('p', "pid", No),
    o('h', "help", No),
    o('V', "version", No),
];
const TIME: &[Spec] = &[
    o('a', "append", No),
    o('f', "format", Req),
    l("help", No),
    o('o', "output", Req),
    o('p', "portability", No),
    o('q', "quiet", No),
    o('v', "verbose", No),
    o('V', "version", No),
];
const FLOCK: &[Spec] = &[
    o('s', "shared", No),
    o('x', "exclusive", No),
    o('e', "", No),
    o('u', "unlock", No),
    o('n', "nonblock", No),
    l("nb", No),
    o('o', "close", No),
    o('F', "no-fork", No),
    o('w', "timeout", Req),
    l("wait", Req),
    o('E', "conflict-exit-code", Req),
    l("verbose", No),
    l("fcntl", No),
    o('h', "help", No),
    o('V', "version", No),
];
const XARGS: &[Spec] = &[
    o('0', "null", No),
    o('a', "arg-file", Req),
    o('d', "delimiter", Req),
    o('E', "", Req),
    o('e', "eof", Opt),
    o('i', "replace", Opt),
    o('I', "", Req),
    o('l', "max-lines", Opt),
    o('L', "", Req),
    o('n', "max-args", Req),
    o('o', "open-tty", No),
    o('p', "interactive", No),
    o('r', "no-run-if-empty", No),
    o('s', "max-chars", Req),
    o('t', "verbose", No),
    o('x', "exit", No),
    o('P', "max-procs", Req),
    l("process-slot-var", Req),
    l("show-limits", No),
    l("help", No),
    l("version", No),
];
const COMMAND: &[Spec] = &[o('p', "", No), o('v', "", No), o('V', "", No)];
const EXEC: &[Spec] = &[o('c', "", No), o('l', "", No), o('a', "", Req)];
const WATCH: &[Spec] = &[
    o('b', "beep", No),
    o('c', "color", No),
    o('C', "no-color", No),
    o('d', "differences", Opt),
    o('e', "errexit", No),
    o('g', "chgexit", No),
    o('n', "interval", Req),
    o('p', "precise", No),
    o('q', "equexit", Req),
    o('r', "no-rerun", No),
    o('t', "no-title", No),
    o('w', "no-wrap", No),
    o('x', "exec", No),
    o('h', "help", No),
    o('v', "version", No),
];
const CHROOT: &[Spec] = &[
    l("userspec", Req),
    l("groups", Req),
    l("skip-chdir", No),
    l("help", No),
    l("version", No),
];

/// Options found, in order, and where the operands start.
#[derive(Debug, Default)]
struct Opts {
    /// (short letter or first letter of the long name, long name, argument).
    found: Vec<(Option<char>, &'static str, Option<Word>)>,
    operands: Vec<Word>,
}

impl Opts {
    fn has(&self, short: char) -> bool {
        self.found.iter().any(|(s, _, _)| *s == Some(short))
    }

    fn has_long(&self, long: &str) -> bool {
        self.found.iter().any(|(_, l, _)| *l == long)
    }

    fn arg(&self, short: char) -> Option<&Word> {
        self.found
            .iter()
            .rev()
            .find(|(s, _, _)| *s == Some(short))
            .and_then(|(_, _, a)| a.as_ref())
    }
}

/// One option found: its short letter (if any), long name, and argument.
type Found = (Option<char>, &'static str, Option<Word>);

/// What the word at a position is to getopt.
enum Item {
    Options(Vec<Found>),
    /// `--`: operands follow.
    End,
    Operand,
}

/// Reads the word at `*i` (and its option argument, when that is the next word), advancing `*i`.
fn read_item(
    prog: &str,
    words: &[Word],
    i: &mut usize,
    specs: &'static [Spec],
) -> Result<Item, String> {
    let Some(w) = words.get(*i) else {
        return Ok(Item::End);
    };
    let Some(text) = w.literal() else {
        if w.may_be_option() {
            return Err(format!(
                "`{prog}` is given {}, which may be an option the gateway cannot read",
                w.raw
            ));
        }
        return Ok(Item::Operand);
    };
    if text == "--" {
        *i += 1;
        return Ok(Item::End);
    }
    if let Some(long) = text.strip_prefix("--") {
        *i += 1;
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(Word::lit(v))),
            None => (long, None),
        };
        let spec = long_spec(prog, specs, name)?;
        let arg = match (spec.takes, value) {
            (Takes::No, Some(_)) => return Err(format!("`{prog} --{name}` takes no value")),
            (Takes::No, None) => None,
            (Takes::Optional, v) => v,
            (Takes::Required, Some(v)) => Some(v),
            (Takes::Required, None) => {
                let v = words
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| format!("`{prog} --{}` needs a value", spec.long))?;
                *i += 1;
                Some(v)
            }
        };
        return Ok(Item::Options(vec![(spec.short, spec.long, arg)]));
    }
    let Some(cluster) = text.strip_prefix('-').filter(|c| !c.is_empty()) else {
        return Ok(Item::Operand);
    };
    *i += 1;
    let mut found = Vec::new();
    for (at, c) in cluster.char_indices() {
        let spec = specs
            .iter()
            .find(|s| s.short == Some(c))
            .ok_or_else(|| format!("`{prog}` has no option -{c} the gateway knows"))?;
        let rest = cluster.get(at + c.len_utf8()..).unwrap_or_default();
        match spec.takes {
            Takes::No => found.push((Some(c), spec.long, None)),
            Takes::Optional => {
                found.push((
                    Some(c),
                    spec.long,
                    (!rest.is_empty()).then(|| Word::lit(rest)),
                ));
                break;
            }
            Takes::Required => {
                let v = if rest.is_empty() {
                    let v = words
                        .get(*i)
                        .cloned()
                        .ok_or_else(|| format!("`{prog} -{c}` needs a value"))?;
                    *i += 1;
                    v
                } else {
                    Word::lit(rest)
                };
                found.push((Some(c), spec.long, Some(v)));
                break;
            }
        }
    }
    Ok(Item::Options(found))
}

/// Reads options the way getopt_long does: clusters of short letters, long names with GNU
/// abbreviations (a unique prefix), `--` ending them. `permute`: options may follow operands
/// (GNU's default); otherwise the first operand ends them (`+` in the option string).
fn getopt(
    prog: &str,
    words: &[Word],
    specs: &'static [Spec],
    permute: bool,
) -> Result<Opts, String> {
    let mut out = Opts::default();
    let mut i = 0;
    while i < words.len() {
        match read_item(prog, words, &mut i, specs)? {
            Item::Options(f) => out.found.extend(f),
            Item::End => {
                out.operands
                    .extend(words.get(i..).unwrap_or_default().iter().cloned());
                return Ok(out);
            }
            Item::Operand => {
                if !permute {
                    out.operands
                        .extend(words.get(i..).unwrap_or_default().iter().cloned());
                    return Ok(out);
                }
                out.operands.extend(words.get(i).cloned());
                i += 1;
            }
        }
    }
    Ok(out)
}

fn long_spec(prog: &str, specs: &'static [Spec], name: &str) -> Result<&'static Spec, String> {
    if name.is_empty() {
        return Err(format!("`{prog}` is given an empty long option"));
    }
    if let Some(s) = specs.iter().find(|s| s.long == name) {
        return Ok(s);
    }
    let mut hits = specs
        .iter()
        .filter(|s| !s.long.is_empty() && s.long.starts_with(name));
    match (hits.next(), hits.next()) {
        (Some(s), None) => Ok(s),
        (Some(_), Some(_)) => Err(format!("`{prog} --{name}` is ambiguous")),
        _ => Err(format!("`{prog}` has no option --{name} the gateway knows")),
    }
}

/// Where a judged command runs: its stages, nesting and standard input.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub stages: Vec<usize>,
    pub depth: u8,
    pub stdin: Option<Input>,
}

/// What a step of the wrapper chain leads to.
enum Next {
    /// Nothing more runs.
    Nothing,
    /// This command (with extra arguments).
    Run(Vec<Word>, Extra),
    /// Several commands (`find -exec a ; -exec b ;`).
    RunEach(Vec<(Vec<Word>, Extra)>),
    /// Code in a string, parsed as a line.
    Code(Word),
    /// The account's login shell reading its input.
    LoginShell,
}

/// The judgement of one step.
struct Step {
    role: Role,
    code: Code,
    next: Next,
    /// Names the step puts in the environment (`env X=1`, `sudo X=1`).
    assigns: Vec<String>,
}

impl Step {
    fn command(code: Code) -> Step {
        Step {
            role: Role::Command,
            code,
            next: Next::Nothing,
            assigns: Vec::new(),
        }
    }

    /// A transparent wrapper running `next` (a wrapper that runs nothing is judged as
    /// itself: `env` alone prints the environment).
    fn wraps(next: Next) -> Step {
        let role = match next {
            Next::Nothing => Role::Command,
            _ => Role::Transparent,
        };
        Step {
            role,
            code: Code::None,
            next,
            assigns: Vec::new(),
        }
    }

    /// A privileged wrapper (`sudo`, `su`): allow-lists must name it too.
    fn privileged(next: Next) -> Step {
        Step {
            role: Role::Command,
            code: Code::None,
            next,
            assigns: Vec::new(),
        }
    }
}

/// Resolves simple commands into invocations, following wrappers and code strings.
pub(crate) struct Resolver<'a> {
    pub parsed: &'a mut Parsed,
    pub out: &'a mut Vec<Invocation>,
}

impl Resolver<'_> {
    /// Resolves one simple command of the line.
    pub fn simple(&mut self, s: &Simple) {
        let site = Site {
            stages: s.stages.clone(),
            depth: s.depth,
            stdin: s.stdin.clone(),
        };
        self.run(s.words.clone(), Extra::None, &site);
    }

    fn run(&mut self, words: Vec<Word>, extra: Extra, site: &Site) {
        let mut words = words;
        let mut extra = extra;
        loop {
            let Some(first) = words.first() else { return };
            let program = program_of(first);
            let args: Vec<Word> = words.get(1..).unwrap_or_default().to_vec();
            let name = match &program {
                Program::Named { base, .. } => base.clone(),
                Program::Dynamic(raw) => {
                    self.parsed.unresolved(format!(
                        "the program is {raw}, which only the running shell can resolve; write the program's name"
                    ));
                    self.push(program, args, extra, site, Role::Command, Code::None);
                    return;
                }
                Program::LoginShell => return,
            };
            // A name the line defines as a function is judged as the program of that name
            // too: whether bash runs the function or the program depends on order, subshells
            // and exports the judge does not follow (`(id() { ls; }); id` runs /usr/bin/id).
            let step = match self.step(&name, &args, site) {
                Ok(s) => s,
                Err(why) => {
                    self.parsed.unresolved(why);
                    Step::command(Code::None)
                }
            };
            let role = step.role;
            self.parsed.assignments.extend(step.assigns);
            self.push(program, args, extra, site, role, step.code);
            match step.next {
                Next::Nothing => return,
                Next::Run(inner, e) => {
                    words = inner;
                    extra = e;
                }
                Next::RunEach(list) => {
                    for (inner, e) in list {
                        self.run(
                            inner,
                            e,
                            &Site {
                                stdin: None,
                                ..site.clone()
                            },
                        );
                    }
                    return;
                }
                Next::Code(text) => {
                    self.code(&text, site);
                    return;
                }
                Next::LoginShell => {
                    self.push(
                        Program::LoginShell,
                        Vec::new(),
                        Extra::None,
                        site,
                        Role::Command,
                        Code::Stdin,
                    );
                    self.stdin_code(site);
                    return;
                }
            }
        }
    }

    fn push(
        &mut self,
        program: Program,
        args: Vec<Word>,
        extra: Extra,
        site: &Site,
        role: Role,
        code: Code,
    ) {
        self.out.push(Invocation {
            program,
            args,
            extra,
            stages: site.stages.clone(),
            role,
            code,
        });
    }

    /// Parses a code string as a line run where `site` runs.
    pub(crate) fn code(&mut self, text: &Word, site: &Site) {
        let Some(text) = text.literal() else {
            self.parsed.unresolved(format!(
                "the code {} is only known when the command runs",
                text.raw
            ));
            return;
        };
        if site.depth >= MAX_DEPTH {
            self.parsed
                .unresolved(format!("code nested more than {MAX_DEPTH} strings deep"));
            return;
        }
        if let Err(e) = self.parsed.parse(text, &site.stages, site.depth + 1) {
            self.parsed
                .unresolved(format!("{e} (in the code string {})", quote(text)));
        }
    }

    /// A shell reads code from its standard input: when that is a here-document or
    /// here-string, the code is in the line.
    fn stdin_code(&mut self, site: &Site) {
        if let Some(Input::Text(w)) = &site.stdin {
            let w = w.clone();
            self.code(&w, site);
        }
    }

    /// Judges one step of a wrapper chain.
    fn step(&mut self, name: &str, args: &[Word], site: &Site) -> Result<Step, String> {
        Ok(match name {
            "env" => self.env(args)?,
            "sudo" => sudo(args)?,
            "doas" => {
                let o = getopt(name, args, DOAS, false)?;
                if o.has('C') || o.has('L') {
                    Step::privileged(Next::Nothing)
                } else if o.operands.is_empty() {
                    Step::privileged(if o.has('s') {
                        Next::LoginShell
                    } else {
                        Next::Nothing
                    })
                } else {
                    Step::privileged(Next::Run(o.operands, Extra::None))
                }
            }
            "su" | "runuser" => su(name, args)?,
            "timeout" => {
                let o = getopt(name, args, TIMEOUT, false)?;
                if o.has_long("help") || o.has_long("version") {
                    Step::wraps(Next::Nothing)
                } else {
                    // The first operand is the duration.
                    Step::wraps(run(o.operands.get(1..).unwrap_or_default()))
                }
            }
            "nice" => {
                let legacy = args.first().and_then(Word::literal).is_some_and(|a| {
                    let digits = a
                        .strip_prefix("--")
                        .or_else(|| a.strip_prefix("-+"))
                        .or_else(|| a.strip_prefix('-'));
                    digits.is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
                });
                let rest = if legacy {
                    args.get(1..).unwrap_or_default()
                } else {
                    args
                };
                let o = getopt(name, rest, NICE, false)?;
                Step::wraps(run(&o.operands))
            }
            "nohup" => Step::wraps(run(&getopt(name, args, NOHUP, false)?.operands)),
            "stdbuf" => Step::wraps(run(&getopt(name, args, STDBUF, false)?.operands)),
            "setsid" => Step::wraps(run(&getopt(name, args, SETSID, false)?.operands)),
            "ionice" => {
                let o = getopt(name, args, IONICE, false)?;
                if o.has('p') || o.has('P') || o.has('u') {
                    Step::wraps(Next::Nothing)
                } else {
                    Step::wraps(run(&o.operands))
                }
            }
            "chrt" => {
                let o = getopt(name, args, CHRT, false)?;
                if o.has('p') || o.has('m') || o.has('h') || o.has('V') {
                    Step::wraps(Next::Nothing)
                } else {
                    let ops = &o.operands;
                    let priority = ops
                        .first()
                        .and_then(Word::literal)
                        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                    Step::wraps(run(ops.get(usize::from(priority)..).unwrap_or_default()))
                }
            }
            "taskset" => {
                let o = getopt(name, args, TASKSET, false)?;
                if o.has('p') || o.has('h') || o.has('V') {
                    Step::wraps(Next::Nothing)
                } else {
                    // The first operand is the CPU mask or list.
                    Step::wraps(run(o.operands.get(1..).unwrap_or_default()))
                }
            }
            "time" => Step::wraps(run(&getopt(name, args, TIME, false)?.operands)),
            "flock" => {
                let o = getopt(name, args, FLOCK, false)?;
                let ops = o.operands.get(1..).unwrap_or_default();
                match ops.first().and_then(Word::literal) {
                    Some("-c" | "--command") => match ops.get(1) {
                        Some(code) => Step::wraps(Next::Code(code.clone())),
                        None => Step::wraps(Next::Nothing),
                    },
                    _ => Step::wraps(run(ops)),
                }
            }
            "xargs" => xargs(args)?,
            "busybox" => match args.first().and_then(Word::literal) {
                Some(a) if a.starts_with("--") => Step::wraps(Next::Nothing),
                _ => Step::wraps(run(args)),
            },
            "command" => {
                let o = getopt(name, args, COMMAND, false)?;
                if o.has('v') || o.has('V') {
                    Step::wraps(Next::Nothing)
                } else {
                    Step::wraps(run(&o.operands))
                }
            }
            "builtin" => Step::wraps(run(args
                .strip_prefix(&[Word::lit("--")][..])
                .unwrap_or(args))),
            "exec" => {
                let o = getopt(name, args, EXEC, false)?;
                let s = Step::wraps(run(&o.operands));
                // `exec` alone only applies its redirections: nothing runs.
                if o.operands.is_empty() {
                    Step {
                        role: Role::Transparent,
                        ..s
                    }
                } else {
                    s
                }
            }
            "watch" => {
                let o = getopt(name, args, WATCH, false)?;
                if o.operands.is_empty() {
                    Step::wraps(Next::Nothing)
                } else if o.has('x') {
                    Step::wraps(run(&o.operands))
                } else {
                    // watch joins its operands and runs them with `sh -c`.
                    Step::wraps(Next::Code(join(&o.operands)))
                }
            }
            "chroot" => {
                let o = getopt(name, args, CHROOT, false)?;
                match o.operands.get(1..) {
                    Some(cmd) if !cmd.is_empty() => Step::privileged(run(cmd)),
                    // `chroot DIR` runs the shell.
                    _ if !o.operands.is_empty() => Step::privileged(Next::LoginShell),
                    _ => Step::privileged(Next::Nothing),
                }
            }
            "eval" => Step::wraps(Next::Code(join(args))),
            "find" => find(args),
            "trap" => {
                // `trap CODE SIGNAL...` runs CODE later; `trap -p`, `trap - INT` and
                // `trap INT` do not set code.
                match args.first() {
                    Some(code)
                        if args.len() >= 2
                            && code
                                .literal()
                                .is_none_or(|c| c != "-" && !c.starts_with('-')) =>
                    {
                        self.code(code, site);
                        Step::command(Code::None)
                    }
                    _ => Step::command(Code::None),
                }
            }
            "alias" => {
                for a in args {
                    match a.literal() {
                        Some(t) => {
                            if let Some((_, value)) = t.split_once('=') {
                                self.code(&Word::lit(value), site);
                            }
                        }
                        None => {
                            return Err(format!(
                                "the alias {} is only known when the command runs",
                                a.raw
                            ));
                        }
                    }
                }
                Step::command(Code::None)
            }
            "let" => {
                for a in args {
                    match a.literal() {
                        Some(t) => self.parsed.arithmetic_text(t, &site.stages, site.depth),
                        None => self.parsed.hazard(format!(
                            "`let {}` evaluates a value as arithmetic, which runs command substitutions in it",
                            a.raw
                        )),
                    }
                }
                Step::command(Code::None)
            }
            "source" | "." => {
                let code = match args.first() {
                    Some(w) => match w.literal() {
                        Some(p) if STDIN_PATHS.contains(&p) => Code::Stdin,
                        Some(_) => Code::Script,
                        None => Code::Dynamic,
                    },
                    None => Code::None,
                };
                if code == Code::Stdin {
                    self.stdin_code(site);
                }
                Step::command(code)
            }
            n if names::takes_names(n) => {
                self.names(n, args, site);
                Step::command(Code::None)
            }
            n if is_shell(n) => self.shell(n, args, site)?,
            n if is_interpreter(n) => Step::command(interpreter_code(args)),
            _ => Step::command(Code::None),
        })
    }

    fn env(&mut self, args: &[Word]) -> Result<Step, String> {
        let mut words: Vec<Word> = args.to_vec();
        let mut i = 0;
        let mut done = false;
        // Options come first; `-S` splits its argument into words that are read next, as
        // options, assignments and the command, ahead of what followed it.
        while !done {
            match read_item("env", &words, &mut i, ENV)? {
                Item::Options(found) => {
                    for (short, long, value) in found {
                        if long == "help" || long == "version" {
                            return Ok(Step::wraps(Next::Nothing));
                        }
                        if short != Some('S') {
                            continue;
                        }
                        let value = value.ok_or("`env -S` needs a value")?;
                        let text = value.literal().ok_or_else(|| {
                            format!(
                                "`env -S` is given {}, which only the running shell can resolve",
                                value.raw
                            )
                        })?;
                        let mut spliced: Vec<Word> =
                            split_string(text)?.iter().map(|w| Word::lit(w)).collect();
                        spliced.extend(words.get(i..).unwrap_or_default().iter().cloned());
                        words = spliced;
                        i = 0;
                    }
                }
                Item::End | Item::Operand => done = true,
            }
        }
        let mut rest: &[Word] = words.get(i..).unwrap_or_default();
        if rest.first().and_then(Word::literal) == Some("-") {
            rest = rest.get(1..).unwrap_or_default();
        }
        let mut assigns = Vec::new();
        while let Some(w) = rest.first() {
            match w.literal() {
                Some(t) if t.contains('=') => {
                    assigns.push(t.split('=').next().unwrap_or_default().to_string());
                }
                Some(_) => break,
                None => {
                    return Err(format!(
                        "`env` is given {}, which may be an assignment or the program",
                        w.raw
                    ));
                }
            }
            rest = rest.get(1..).unwrap_or_default();
        }
        let mut s = Step::wraps(run(rest));
        s.assigns = assigns;
        Ok(s)
    }

    fn shell(&mut self, name: &str, args: &[Word], site: &Site) -> Result<Step, String> {
        let mut c_flag = false;
        let mut s_flag = false;
        let mut i = 0;
        while let Some(w) = args.get(i) {
            let Some(t) = w.literal() else {
                if w.may_be_option() {
                    return Err(format!(
                        "`{name}` is given {}, which may be an option the gateway cannot read",
                        w.raw
                    ));
                }
                break;
            };
            if t == "--" || t == "-" {
                i += 1;
                break;
            }
            if let Some(long) = t.strip_prefix("--") {
                match long {
                    "rcfile" | "init-file" => i += 1,
                    "norc" | "noprofile" | "login" | "posix" | "noediting" | "restricted"
                    | "verbose" | "version" | "help" | "debugger" | "dump-strings"
                    | "dump-po-strings" | "wordexp" | "pretty-print" | "protected" => {}
                    _ if name == "fish" && (long == "command" || long.starts_with("command=")) => {
                        c_flag = true;
                        if let Some(v) = long.strip_prefix("command=") {
                            return Ok(self.shell_with_code(name, Word::lit(v), site));
                        }
                    }
                    _ => return Err(format!("`{name}` has no option --{long} the gateway knows")),
                }
                i += 1;
                continue;
            }
            let Some(cluster) = t.strip_prefix('-').or_else(|| t.strip_prefix('+')) else {
                break;
            };
            if cluster.is_empty() {
                break;
            }
            i += 1;
            for c in cluster.chars() {
                match c {
                    'c' => c_flag = true,
                    's' => s_flag = true,
                    // `-o name`, `-O name` (bash), `-C init` (fish) take the next word.
                    'o' | 'O' => i += 1,
                    'C' if name == "fish" => i += 1,
                    c if c.is_ascii_alphabetic() => {}
                    c => return Err(format!("`{name}` has no option -{c} the gateway knows")),
                }
            }
        }
        let operands = args.get(i..).unwrap_or_default();
        if c_flag {
            return Ok(match operands.first() {
                Some(code) => self.shell_with_code(name, code.clone(), site),
                // The code comes from what a wrapper appends (`xargs sh -c`), or nowhere.
                None => Step::command(Code::Dynamic),
            });
        }
        if s_flag || operands.is_empty() {
            self.stdin_code(site);
            return Ok(Step::command(Code::Stdin));
        }
        let code = match operands.first().map(|w| (w.literal(), w)) {
            Some((Some(p), _)) if STDIN_PATHS.contains(&p) => {
                self.stdin_code(site);
                Code::Stdin
            }
            Some((Some(_), _)) => Code::Script,
            _ => Code::Dynamic,
        };
        Ok(Step::command(code))
    }

    /// `sh -c CODE`: the code is judged as a line. POSIX-family shells are transparent to
    /// allow-lists; others (zsh, fish, csh) read some text differently from bash, so they
    /// must be allowed themselves.
    fn shell_with_code(&mut self, name: &str, code: Word, site: &Site) -> Step {
        let dynamic = code.literal().is_none();
        self.code(&code, site);
        let code_kind = if dynamic { Code::Dynamic } else { Code::Text };
        if POSIX_SHELLS.contains(&name) && !dynamic {
            Step {
                role: Role::Transparent,
                code: code_kind,
                next: Next::Nothing,
                assigns: Vec::new(),
            }
        } else {
            Step::command(code_kind)
        }
    }
}

fn run(words: &[Word]) -> Next {
    if words.is_empty() {
        Next::Nothing
    } else {
        Next::Run(words.to_vec(), Extra::None)
    }
}

/// Operands joined with spaces, as `eval` and `watch` do before parsing them.
fn join(words: &[Word]) -> Word {
    let mut parts = Vec::new();
    let mut raw = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            parts.push(Part::Lit(" ".into()));
            raw.push(' ');
        }
        parts.extend(w.parts.iter().cloned());
        raw.push_str(&w.raw);
    }
    Word::from_parts(parts, &raw)
}

fn quote(text: &str) -> String {
    let short: String = text.chars().take(60).collect();
    if short.len() < text.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

fn sudo(args: &[Word]) -> Result<Step, String> {
    // `-h host` takes the next word when it is not an option; `-h` alone is the help.
    let mut words: Vec<Word> = Vec::with_capacity(args.len());
    let mut help = false;
    let mut i = 0;
    while let Some(w) = args.get(i) {
        i += 1;
        if w.literal() == Some("-h") {
            match args.get(i) {
                Some(next) if !next.may_be_option() => {
                    words.push(Word::lit("--host"));
                    words.push(next.clone());
                    i += 1;
                }
                _ => help = true,
            }
            continue;
        }
        // Past the first operand nothing is sudo's.
        let is_operand = !w.may_be_option();
        words.push(w.clone());
        if is_operand {
            words.extend(args.get(i..).unwrap_or_default().iter().cloned());
            break;
        }
    }
    let o = getopt("sudo", &words, SUDO, false)?;
    if help || o.has('V') || o.has('v') || o.has('K') {
        return Ok(Step::privileged(Next::Nothing));
    }
    let mut assigns = Vec::new();
    let mut rest: &[Word] = &o.operands;
    while let Some(t) = rest.first().and_then(Word::literal) {
        match t.split_once('=') {
            Some((n, _))
                if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                assigns.push(n.to_string());
                rest = rest.get(1..).unwrap_or_default();
            }
            _ => break,
        }
    }
    let next = if o.has('e') {
        // sudoedit: edits the files named; it runs the user's editor, not a command.
        Next::Run(
            std::iter::once(Word::lit("sudoedit"))
                .chain(rest.iter().cloned())
                .collect(),
            Extra::None,
        )
    } else if rest.is_empty() {
        if o.has('i') || o.has('s') {
            Next::LoginShell
        } else {
            Next::Nothing
        }
    } else {
        Next::Run(rest.to_vec(), Extra::None)
    };
    let mut s = Step::privileged(next);
    s.assigns = assigns;
    Ok(s)
}

fn su(name: &str, args: &[Word]) -> Result<Step, String> {
    let o = getopt(name, args, SU, true)?;
    if o.has('h') || o.has('V') {
        return Ok(Step::privileged(Next::Nothing));
    }
    let mut ops: &[Word] = &o.operands;
    if ops.first().and_then(Word::literal) == Some("-") {
        ops = ops.get(1..).unwrap_or_default();
    }
    // runuser -u USER COMMAND...: the command runs directly.
    if name == "runuser" && o.has('u') {
        return Ok(Step::privileged(run(ops)));
    }
    // The first operand is the user; the rest go to the shell.
    let extra = ops.get(1..).unwrap_or_default();
    let code = o.arg('c').or_else(|| o.arg('C')).cloned();
    let next = match (o.arg('s'), code) {
        // `-s PROGRAM` runs PROGRAM in place of the shell: judge it with what it is given.
        (Some(shell), code) => {
            let mut words = vec![shell.clone()];
            if let Some(c) = code {
                words.push(Word::lit("-c"));
                words.push(c);
            }
            words.extend(extra.iter().cloned());
            Next::Run(words, Extra::None)
        }
        (None, Some(c)) => Next::Code(c),
        (None, None) if extra.is_empty() => Next::LoginShell,
        (None, None) => Next::Run(
            std::iter::once(Word::lit("sh"))
                .chain(extra.iter().cloned())
                .collect(),
            Extra::None,
        ),
    };
    Ok(Step::privileged(next))
}

fn xargs(args: &[Word]) -> Result<Step, String> {
    let o = getopt("xargs", args, XARGS, false)?;
    if o.has_long("help") || o.has_long("version") || o.has_long("show-limits") {
        return Ok(Step::wraps(Next::Nothing));
    }
    let mut cmd: Vec<Word> = if o.operands.is_empty() {
        vec![Word::lit("echo")]
    } else {
        o.operands.clone()
    };
    // -I R (or -i[R]): R in the command's words is replaced by each input line; nothing is
    // appended.
    let replace = o
        .arg('I')
        .and_then(|w| w.literal().map(str::to_string))
        .or_else(|| {
            o.has('i').then(|| {
                o.arg('i')
                    .and_then(|w| w.literal().map(str::to_string))
                    .unwrap_or_else(|| "{}".into())
            })
        });
    if o.arg('I').is_some_and(|w| w.literal().is_none()) {
        return Err("`xargs -I` is given a replacement string only the running shell knows".into());
    }
    let extra = match &replace {
        Some(r) if !r.is_empty() => {
            for w in &mut cmd {
                if w.raw.contains(r.as_str()) || w.literal().is_some_and(|l| l.contains(r.as_str()))
                {
                    *w = Word::from_parts(vec![Part::Hole { split: false }], &w.raw);
                }
            }
            Extra::None
        }
        _ => Extra::FromInput,
    };
    Ok(Step::wraps(Next::Run(cmd, extra)))
}

/// find's starting points: the words before the expression.
pub(crate) fn find_starts(args: &[Word]) -> Vec<Word> {
    let mut out = Vec::new();
    let mut i = 0;
    // Leading -H -L -P, -D debugopts, -Olevel.
    while let Some(t) = args.get(i).and_then(Word::literal) {
        match t {
            "-H" | "-L" | "-P" => i += 1,
            "-D" => i += 2,
            t if t.starts_with("-O") => i += 1,
            _ => break,
        }
    }
    for w in args.get(i..).unwrap_or_default() {
        match w.literal() {
            Some(t) if t.starts_with('-') || matches!(t, "(" | "!" | ")" | ",") => break,
            _ => out.push(w.clone()),
        }
    }
    out
}

fn find(args: &[Word]) -> Step {
    let starts = find_starts(args);
    let under: Option<Vec<String>> = if starts.is_empty() {
        Some(vec![".".into()])
    } else {
        starts
            .iter()
            .map(|w| w.literal().map(str::to_string))
            .collect()
    };
    let placeholder = || match &under {
        Some(s) => Part::Under(s.clone()),
        None => Part::Hole { split: false },
    };
    let mut runs = Vec::new();
    let mut i = 0;
    while let Some(w) = args.get(i) {
        i += 1;
        if !matches!(w.literal(), Some("-exec" | "-execdir" | "-ok" | "-okdir")) {
            continue;
        }
        let mut cmd = Vec::new();
        let mut prev_braces = false;
        while let Some(w) = args.get(i) {
            i += 1;
            match w.literal() {
                Some(";") => break,
                Some("+") if prev_braces => break,
                _ => {}
            }
            prev_braces = w.literal() == Some("{}");
            let word = match w.literal() {
                Some(t) if t.contains("{}") => {
                    let mut parts = Vec::new();
                    for (k, piece) in t.split("{}").enumerate() {
                        if k > 0 {
                            parts.push(placeholder());
                        }
                        if !piece.is_empty() {
                            parts.push(Part::Lit(piece.to_string()));
                        }
                    }
                    Word::from_parts(parts, &w.raw)
                }
                _ => w.clone(),
            };
            cmd.push(word);
        }
        if !cmd.is_empty() {
            runs.push((cmd, Extra::None));
        }
    }
    Step {
        role: Role::Command,
        code: Code::None,
        next: if runs.is_empty() {
            Next::Nothing
        } else {
            Next::RunEach(runs)
        },
        assigns: Vec::new(),
    }
}

fn interpreter_code(args: &[Word]) -> Code {
    for w in args {
        match w.literal() {
            Some("-") => return Code::Stdin,
            Some(t) if t.starts_with("--") => {
                if t.starts_with("--eval") || t.starts_with("--print") {
                    return Code::Text;
                }
            }
            Some(t) if t.starts_with('-') => {
                if t.contains(['c', 'e', 'E', 'r', 'm']) {
                    return Code::Text;
                }
            }
            Some(_) => return Code::Script,
            None => return Code::Dynamic,
        }
    }
    Code::Stdin
}

/// GNU `env -S` splitting: whitespace separates words, `'...'` is literal, `"..."` and bare
/// text take backslash escapes (`\_` separates words outside quotes and is a space inside),
/// `#` at the start of a word ends the string, `\c` ends it too. `${NAME}` (the only
/// expansion env knows) is refused: its value is not in the text.
fn split_string(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars().peekable();
    let bad = |what: &str| format!("`env -S` text {s:?}: {what}");
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' => {
                if let Some(w) = cur.take() {
                    out.push(w);
                }
            }
            '#' if cur.is_none() => break,
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some('\\') if matches!(chars.peek(), Some('\\' | '\'')) => {
                            w.extend(chars.next());
                        }
                        Some(c) => w.push(c),
                        None => return Err(bad("unbalanced single quote")),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('_') => w.push(' '),
                            Some('c') => return Err(bad("\\c inside double quotes")),
                            Some(e) => w.push(escape(e).ok_or_else(|| bad("unknown escape"))?),
                            None => return Err(bad("unbalanced double quote")),
                        },
                        Some('$') => return Err(bad("a ${VAR} expansion")),
                        Some(c) => w.push(c),
                        None => return Err(bad("unbalanced double quote")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('_') => {
                    if let Some(w) = cur.take() {
                        out.push(w);
                    }
                }
                Some('c') => break,
                Some(e) => cur
                    .get_or_insert_with(String::new)
                    .push(escape(e).ok_or_else(|| bad("unknown escape"))?),
                None => return Err(bad("a trailing backslash")),
            },
            '$' => return Err(bad("a ${VAR} expansion")),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = cur {
        out.push(w);
    }
    Ok(out)
}

fn escape(e: char) -> Option<char> {
    Some(match e {
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        '#' | '$' | '\\' | '"' | '\'' => e,
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn env_split_string_is_gnu_env() {
        assert_eq!(
            split_string(r#"echo a\_b "c d" 'e f' # tail"#).unwrap(),
            ["echo", "a", "b", "c d", "e f"]
        );
        assert_eq!(split_string("rm -rf /").unwrap(), ["rm", "-rf", "/"]);
        assert!(split_string("${X}").is_err());
        assert!(split_string("'x").is_err());
    }

    #[test]
    fn getopt_reads_clusters_values_and_abbreviations() {
        let w = |s: &[&str]| s.iter().map(|x| Word::lit(x)).collect::<Vec<_>>();
        let o = getopt(
            "timeout",
            &w(&["-s", "KILL", "-k5", "60", "rm"]),
            TIMEOUT,
            false,
        )
        .unwrap();
        assert_eq!(o.operands.len(), 2);
        let o = getopt(
            "timeout",
            &w(&["--sig=KILL", "--kill", "5", "60", "rm"]),
            TIMEOUT,
            false,
        )
        .unwrap();
        assert_eq!(o.operands[1].literal(), Some("rm"));
        assert!(getopt("timeout", &w(&["--zap", "1", "rm"]), TIMEOUT, false).is_err());
        // Ambiguous: --b could be --background or --bell.
        assert!(getopt("sudo", &w(&["--b", "rm"]), SUDO, false).is_err());
        let o = getopt("su", &w(&["root", "-c", "id"]), SU, true).unwrap();
        assert_eq!(o.arg('c').and_then(Word::literal), Some("id"));
    }

    #[test]
    fn program_names_come_from_the_last_path_component() {
        assert_eq!(
            program_of(&Word::lit("/usr/bin/rm")),
            Program::Named {
                base: "rm".into(),
                path: Some("/usr/bin/rm".into())
            }
        );
        let w = Word::from_parts(
            vec![Part::Home, Part::Lit("/bin/tool".into())],
            "~/bin/tool",
        );
        assert!(matches!(program_of(&w), Program::Named { base, .. } if base == "tool"));
        let w = Word::from_parts(
            vec![Part::Hole { split: true }, Part::Lit("/ls".into())],
            "$X/ls",
        );
        assert!(matches!(program_of(&w), Program::Dynamic(_)));
        let w = Word::from_parts(vec![Part::Glob("/???/r?".into())], "/???/r?");
        assert!(matches!(program_of(&w), Program::Dynamic(_)));
    }
}
