//! The one module that names `brush-parser` (pinned, 0.x): it turns a command line into our own
//! flat form, every simple command anywhere in it ([`Simple`]) with its words resolved as far
//! as the text allows ([`Word`]), which commands feed which ([`Parsed::flows`]), and what it
//! saw that only a running shell could settle ([`Finding`]).
//!
//! Walked: lists, pipelines, subshells, brace groups, `if`/`for`/`while`/`until`/`case`
//! bodies and their conditions and words, function bodies, coprocesses, `[[ ]]` operands,
//! arithmetic (`(( ))`, `$(( ))`, `for ((;;))`, array subscripts), command substitutions
//! (`$(...)`, backquotes) and process substitutions (`<(...)`, `>(...)`) in any word,
//! assignment, redirection target, here-string or expanding here-document, and parameter
//! expansions' operands (`${x:-$(...)}`). Brace expansion happens first, as in bash
//! (`{rm,-rf,/}` is three words).

use brush_parser::ast;
use brush_parser::word::{self as bw, BraceExpressionMember, BraceExpressionOrText, WordPiece};
use brush_parser::{Parser, ParserOptions};

use super::words::{Part, Word};

/// Longest text parsed, here and in every nested code string.
pub(crate) const MAX_TEXT: usize = 64 * 1024;
/// Deepest nesting (an over-estimate, see [`nesting`]) the parser is given: its recursion
/// follows the nesting, so a deeper line could exhaust the stack.
const MAX_NESTING: usize = 100;
/// Most words one word may become by brace expansion.
const MAX_BRACE_WORDS: usize = 1024;
/// Deepest quoting inside arithmetic read again (each level is a parse and a stack frame).
const MAX_ARITHMETIC_QUOTES: usize = 8;
/// Most simple commands one line may hold (with everything nested in it).
const MAX_COMMANDS: usize = 4096;

/// A simple command: its words after brace expansion, where its standard input comes from,
/// and which pipeline stages it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Simple {
    pub words: Vec<Word>,
    /// Names given values for this command only (`FOO=1 cmd`), or for the shell when there is
    /// no command word.
    pub assignments: Vec<String>,
    /// Standard input other than the pipe or the session.
    pub stdin: Option<Input>,
    /// Any redirection at all.
    pub redirected: bool,
    /// Ids of the pipeline stages it is part of, outermost first; the last is its own.
    pub stages: Vec<usize>,
    /// How many code strings deep (`sh -c`, `eval`) it sits.
    pub depth: u8,
}

/// Where a command's standard input comes from, when redirected.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// A here-document or here-string with this text.
    Text(Word),
    /// A file.
    File,
    /// A process substitution (`< <(cmd)`).
    Process,
}

/// Something only a running shell could settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// The gateway cannot tell what runs: refused by every rule set with deny rules or an
    /// allow-list.
    Unresolved(String),
    /// A construct that can run code hidden in a value (arithmetic on variables, `${!x}`,
    /// `${x@P}`) or change which program a name runs (an assignment to `PATH`): refused by
    /// allow-lists.
    Hazard(String),
}

/// Everything found in a line and the code strings nested in it.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub simples: Vec<Simple>,
    /// Stage ids in the order data flows through them: a pipeline, or a substitution feeding
    /// the command it sits in.
    pub flows: Vec<Vec<usize>>,
    /// Names of functions defined anywhere (their bodies are walked like any code; calling
    /// one is judged as the program of that name).
    pub functions: Vec<String>,
    /// Names assigned anywhere (`X=1`, `for X in`, `${X:=1}`).
    pub assignments: Vec<String>,
    pub findings: Vec<Finding>,
    next_stage: usize,
}

/// The context a node is walked in.
#[derive(Clone)]
struct Ctx {
    stages: Vec<usize>,
    depth: u8,
    /// The text being walked (positions in the tree point into it).
    source: std::rc::Rc<str>,
}

impl Ctx {
    fn own_stage(&self) -> Option<usize> {
        self.stages.last().copied()
    }
}

fn options() -> ParserOptions {
    // bash's defaults for `bash -c` (what sshd runs for an exec request), except extended
    // globs: with them on, `!(x)` and `@(x)` are read as globs instead of syntax errors, which
    // only makes more words unresolved, never fewer.
    ParserOptions::default()
}

/// An upper bound on how deeply the parser will recurse for `text`: every opening bracket,
/// backquote and compound keyword counts as one level, whatever quotes surround it.
pub(crate) fn nesting(text: &str) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    let bytes = text.as_bytes();
    let mut word_start = true;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'(' | b'{' | b'[' | b'`' => depth += 1,
            b')' | b'}' | b']' => depth = depth.saturating_sub(1),
            _ if word_start => {
                let rest = bytes.get(i..).unwrap_or_default();
                for kw in ["if", "case", "while", "until", "for", "select", "coproc"] {
                    if rest.starts_with(kw.as_bytes())
                        && rest
                            .get(kw.len())
                            .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_')
                    {
                        depth += 1;
                    }
                }
            }
            _ => {}
        }
        max = max.max(depth);
        word_start = !b.is_ascii_alphanumeric() && b != b'_';
        i += 1;
    }
    max
}

/// brush-parser unwraps number parses that can overflow: a file descriptor before `<` or `>`,
/// a brace sequence's bounds, `~+N`. Text with such a number is refused before brush reads it
/// (bash refuses it too). Long digit runs elsewhere (`echo 12345678901234567890`) pass.
fn overflowing_number(text: &str) -> Option<&'static str> {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(c) = b.get(i) {
        if !c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let len = i - start;
        let next = b.get(i).copied();
        let before = |k: usize| start.checked_sub(k).and_then(|p| b.get(p)).copied();
        if len >= 10 && matches!(next, Some(b'<' | b'>')) {
            return Some("a file descriptor number");
        }
        let near = |c: Option<u8>| matches!(c, Some(b'.' | b'{' | b'}' | b'~'));
        let signed = matches!(before(1), Some(b'+' | b'-')) && near(before(2));
        if len >= 18 && (near(next) || near(before(1)) || signed) {
            return Some("a number");
        }
    }
    None
}

impl Parsed {
    /// Parses `text` as code run in the stages `enclosing` (outermost first), `depth` code
    /// strings deep. What it holds is added to `self`. `Err` when it does not parse.
    pub fn parse(&mut self, text: &str, enclosing: &[usize], depth: u8) -> Result<(), String> {
        if text.len() > MAX_TEXT {
            return Err(format!(
                "the command is longer than {} KiB",
                MAX_TEXT / 1024
            ));
        }
        if let Some(what) = overflowing_number(text) {
            return Err(format!(
                "the command has {what} too large for the shell to read"
            ));
        }
        if nesting(text) > MAX_NESTING {
            return Err(format!(
                "the command nests more than {MAX_NESTING} levels of brackets and compound commands"
            ));
        }
        let mut parser = Parser::new(std::io::Cursor::new(text.as_bytes()), &options());
        let program = parser
            .parse_program()
            .map_err(|e| format!("cannot parse the command as shell syntax ({e})"))?;
        let ctx = Ctx {
            stages: enclosing.to_vec(),
            depth,
            source: text.into(),
        };
        for list in &program.complete_commands {
            self.compound_list(list, &ctx);
        }
        Ok(())
    }

    /// Parses a nested piece of code (a substitution's text); a failure is a finding.
    fn nested(&mut self, text: &str, ctx: &Ctx) {
        if let Err(e) = self.parse(text, &ctx.stages, ctx.depth) {
            self.unresolved(format!("{e}: {}", shorten(text)));
        }
    }

    pub fn new_stage(&mut self) -> usize {
        self.next_stage += 1;
        self.next_stage
    }

    pub fn unresolved(&mut self, why: String) {
        if !self
            .findings
            .iter()
            .any(|f| *f == Finding::Unresolved(why.clone()))
        {
            self.findings.push(Finding::Unresolved(why));
        }
    }

    pub fn hazard(&mut self, why: String) {
        if !self
            .findings
            .iter()
            .any(|f| *f == Finding::Hazard(why.clone()))
        {
            self.findings.push(Finding::Hazard(why));
        }
    }

    fn compound_list(&mut self, list: &ast::CompoundList, ctx: &Ctx) {
        for ast::CompoundListItem(and_or, _) in &list.0 {
            self.pipeline(&and_or.first, ctx);
            for next in &and_or.additional {
                match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p, ctx),
                }
            }
        }
    }

    fn pipeline(&mut self, p: &ast::Pipeline, ctx: &Ctx) {
        let mut flow = Vec::with_capacity(p.seq.len());
        for cmd in &p.seq {
            let id = self.new_stage();
            flow.push(id);
            let mut inner = ctx.clone();
            inner.stages.push(id);
            self.command(cmd, &inner);
        }
        if flow.len() > 1 {
            self.flows.push(flow);
        }
    }

    fn command(&mut self, cmd: &ast::Command, ctx: &Ctx) {
        match cmd {
            ast::Command::Simple(s) => self.simple(s, ctx),
            ast::Command::Compound(c, redirects) => {
                let mut stdin = None;
                if let Some(r) = redirects {
                    for io in &r.0 {
                        self.redirect(io, ctx, &mut stdin);
                    }
                }
                self.compound(c, ctx);
            }
            ast::Command::Function(f) => self.function(f, ctx),
            ast::Command::ExtendedTest(t, redirects) => {
                let mut stdin = None;
                if let Some(r) = redirects {
                    for io in &r.0 {
                        self.redirect(io, ctx, &mut stdin);
                    }
                }
                self.extended_test(&t.expr, ctx);
            }
        }
    }

    fn function(&mut self, f: &ast::FunctionDefinition, ctx: &Ctx) {
        let name = self.words(&f.fname.value, ctx);
        match name.first().and_then(Word::literal) {
            Some(n) => self.functions.push(n.to_string()),
            None => self.unresolved(format!(
                "a function whose name is not plain text ({})",
                f.fname.value
            )),
        }
        let ast::FunctionBody(body, redirects) = &f.body;
        let mut stdin = None;
        if let Some(r) = redirects {
            for io in &r.0 {
                self.redirect(io, ctx, &mut stdin);
            }
        }
        self.compound(body, ctx);
    }

    fn compound(&mut self, c: &ast::CompoundCommand, ctx: &Ctx) {
        match c {
            ast::CompoundCommand::Arithmetic(a) => {
                // brush reads `( (cmd) )` as `((cmd))` when `cmd` is also valid arithmetic;
                // bash reads `((` as arithmetic only when the two parentheses touch, and
                // otherwise runs `cmd` in nested subshells.
                let at = a.loc.start.index;
                let touching = ctx.source.chars().skip(at).take(2).eq("((".chars());
                if touching {
                    self.arithmetic(&a.expr.value, ctx);
                } else {
                    self.nested(&a.expr.value, ctx);
                }
            }
            ast::CompoundCommand::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater]
                    .into_iter()
                    .flatten()
                {
                    self.arithmetic(&e.value, ctx);
                }
                self.compound_list(&f.body.list, ctx);
            }
            ast::CompoundCommand::BraceGroup(b) => self.compound_list(&b.list, ctx),
            ast::CompoundCommand::Subshell(s) => self.compound_list(&s.list, ctx),
            ast::CompoundCommand::ForClause(f) => {
                self.assignments.push(f.variable_name.clone());
                for w in f.values.iter().flatten() {
                    self.words(&w.value, ctx);
                }
                self.compound_list(&f.body.list, ctx);
            }
            ast::CompoundCommand::CaseClause(c) => {
                self.words(&c.value.value, ctx);
                for item in &c.cases {
                    for p in &item.patterns {
                        self.words(&p.value, ctx);
                    }
                    if let Some(list) = &item.cmd {
                        self.compound_list(list, ctx);
                    }
                }
            }
            ast::CompoundCommand::IfClause(i) => {
                self.compound_list(&i.condition, ctx);
                self.compound_list(&i.then, ctx);
                for e in i.elses.iter().flatten() {
                    if let Some(cond) = &e.condition {
                        self.compound_list(cond, ctx);
                    }
                    self.compound_list(&e.body, ctx);
                }
            }
            ast::CompoundCommand::WhileClause(w) | ast::CompoundCommand::UntilClause(w) => {
                self.compound_list(&w.0, ctx);
                self.compound_list(&w.1.list, ctx);
            }
            ast::CompoundCommand::Coprocess(c) => {
                if let Some(n) = &c.name {
                    self.words(&n.value, ctx);
                }
                self.command(&c.body, ctx);
            }
        }
    }

    fn extended_test(&mut self, e: &ast::ExtendedTestExpr, ctx: &Ctx) {
        use ast::BinaryPredicate as B;
        use ast::ExtendedTestExpr as E;
        use ast::UnaryPredicate as U;
        match e {
            E::And(a, b) | E::Or(a, b) => {
                self.extended_test(a, ctx);
                self.extended_test(b, ctx);
            }
            E::Not(a) | E::Parenthesized(a) => self.extended_test(a, ctx),
            E::UnaryTest(pred, w) => {
                let words = self.words_quoted(&w.value, ctx);
                // `-v name[subscript]` evaluates the subscript.
                if matches!(
                    pred,
                    U::ShellVariableIsSetAndAssigned | U::ShellVariableIsSetAndNameRef
                ) {
                    self.arithmetic_operand(&words, ctx);
                }
            }
            E::BinaryTest(pred, l, r) => {
                let left = self.words_quoted(&l.value, ctx);
                let right = self.words_quoted(&r.value, ctx);
                if matches!(
                    pred,
                    B::ArithmeticEqualTo
                        | B::ArithmeticNotEqualTo
                        | B::ArithmeticLessThan
                        | B::ArithmeticLessThanOrEqualTo
                        | B::ArithmeticGreaterThan
                        | B::ArithmeticGreaterThanOrEqualTo
                ) {
                    self.arithmetic_operand(&left, ctx);
                    self.arithmetic_operand(&right, ctx);
                }
            }
        }
    }

    /// A word whose value bash evaluates as arithmetic.
    fn arithmetic_operand(&mut self, words: &[Word], ctx: &Ctx) {
        for w in words {
            match w.literal() {
                Some(text) => self.arithmetic(text, ctx),
                None => self.hazard(format!(
                    "{} is evaluated as arithmetic, which runs any command substitution in its value",
                    w.raw
                )),
            }
        }
    }

    fn simple(&mut self, s: &ast::SimpleCommand, ctx: &Ctx) {
        if self.simples.len() >= MAX_COMMANDS {
            self.unresolved(format!("the line holds more than {MAX_COMMANDS} commands"));
            return;
        }
        let mut out = Simple {
            words: Vec::new(),
            assignments: Vec::new(),
            stdin: None,
            redirected: false,
            stages: ctx.stages.clone(),
            depth: ctx.depth,
        };
        let mut items: Vec<&ast::CommandPrefixOrSuffixItem> = Vec::new();
        if let Some(p) = &s.prefix {
            items.extend(p.0.iter());
        }
        let name = s.word_or_name.as_ref();
        let suffix: Vec<&ast::CommandPrefixOrSuffixItem> =
            s.suffix.iter().flat_map(|x| x.0.iter()).collect();
        for item in items {
            self.item(item, ctx, &mut out, true);
        }
        if let Some(w) = name {
            let ws = self.words(&w.value, ctx);
            out.words.extend(ws);
        }
        for item in suffix {
            self.item(item, ctx, &mut out, false);
        }
        self.simples.push(out);
    }

    fn item(
        &mut self,
        item: &ast::CommandPrefixOrSuffixItem,
        ctx: &Ctx,
        out: &mut Simple,
        prefix: bool,
    ) {
        match item {
            ast::CommandPrefixOrSuffixItem::IoRedirect(io) => {
                out.redirected = true;
                self.redirect(io, ctx, &mut out.stdin);
            }
            ast::CommandPrefixOrSuffixItem::Word(w) => {
                let ws = self.words(&w.value, ctx);
                out.words.extend(ws);
            }
            ast::CommandPrefixOrSuffixItem::AssignmentWord(a, w) => {
                if prefix {
                    let name = self.assignment(a, ctx);
                    self.assignments.push(name.clone());
                    out.assignments.push(name);
                } else {
                    // After the command word it is an ordinary argument (`export X=1` is
                    // judged as the program `export`).
                    let ws = self.words(&w.value, ctx);
                    out.words.extend(ws);
                }
            }
            ast::CommandPrefixOrSuffixItem::ProcessSubstitution(kind, sub) => {
                self.process_substitution(kind, &sub.list, ctx);
                out.words.push(Word::from_parts(
                    vec![Part::Hole { split: false }],
                    &format!("{kind}(...)"),
                ));
            }
        }
    }

    /// Walks an assignment's value and subscript; returns the name.
    fn assignment(&mut self, a: &ast::Assignment, ctx: &Ctx) -> String {
        let name = match &a.name {
            ast::AssignmentName::VariableName(n) => n.clone(),
            ast::AssignmentName::ArrayElementName(n, index) => {
                self.arithmetic(index, ctx);
                n.clone()
            }
        };
        match &a.value {
            ast::AssignmentValue::Scalar(w) => {
                self.words_quoted(&w.value, ctx);
            }
            ast::AssignmentValue::Array(items) => {
                for (k, v) in items {
                    // `[key]=v`: an indexed array's key is arithmetic, even quoted
                    // (`x=(['a[$(cmd)]']=1)` runs cmd); read as one, whatever the array.
                    if let Some(k) = k {
                        let key = self.words_quoted(&k.value, ctx);
                        self.arithmetic_operand(&key, ctx);
                    }
                    let ws = self.words(&v.value, ctx);
                    // The parser may leave a quoted key in the word (`['k']=v`).
                    if k.is_none() && v.value.starts_with('[') {
                        self.arithmetic_operand(&ws, ctx);
                    }
                }
            }
        }
        name
    }

    fn process_substitution(
        &mut self,
        kind: &ast::ProcessSubstitutionKind,
        list: &ast::CompoundList,
        ctx: &Ctx,
    ) {
        let ps = self.new_stage();
        let mut inner = ctx.clone();
        inner.stages.push(ps);
        self.compound_list(list, &inner);
        if let Some(me) = ctx.own_stage() {
            self.flows.push(match kind {
                ast::ProcessSubstitutionKind::Read => vec![ps, me],
                ast::ProcessSubstitutionKind::Write => vec![me, ps],
            });
        }
    }

    fn redirect(&mut self, io: &ast::IoRedirect, ctx: &Ctx, stdin: &mut Option<Input>) {
        use ast::IoFileRedirectKind as K;
        use ast::IoFileRedirectTarget as T;
        match io {
            ast::IoRedirect::File(fd, kind, target) => {
                let reads_stdin = fd.is_none_or(|f| f == 0) && matches!(kind, K::Read);
                match target {
                    T::Filename(w) => {
                        let words = self.words(&w.value, ctx);
                        if reads_stdin {
                            *stdin = Some(Input::File);
                        }
                        if !matches!(kind, K::Read | K::DuplicateInput) && !is_null_device(&words) {
                            self.writes_file(io);
                        }
                    }
                    T::Duplicate(w) => {
                        let words = self.words(&w.value, ctx);
                        // `>&word` with a word that is not a descriptor writes stdout and
                        // stderr to the file of that name; `<&word` only ever fails.
                        if !matches!(kind, K::DuplicateInput)
                            && !is_descriptor(&words)
                            && !is_null_device(&words)
                        {
                            self.writes_file(io);
                        }
                    }
                    T::Fd(_) => {}
                    T::ProcessSubstitution(k, sub) => {
                        self.process_substitution(k, &sub.list, ctx);
                        if reads_stdin {
                            *stdin = Some(Input::Process);
                        }
                    }
                }
            }
            ast::IoRedirect::HereDocument(fd, doc) => {
                let text = if doc.requires_expansion {
                    match bw::parse_heredoc(&doc.doc.value, &options()) {
                        Ok(pieces) => {
                            let mut parts = Vec::new();
                            for p in pieces {
                                self.piece(p.piece, true, ctx, &mut parts);
                            }
                            Word::from_parts(parts, &doc.doc.value)
                        }
                        Err(e) => {
                            self.unresolved(format!("cannot read a here-document ({e})"));
                            Word::from_parts(vec![Part::Hole { split: false }], &doc.doc.value)
                        }
                    }
                } else {
                    Word::lit(&doc.doc.value)
                };
                if fd.is_none_or(|f| f == 0) {
                    *stdin = Some(Input::Text(text));
                }
            }
            ast::IoRedirect::HereString(fd, w) => {
                let mut ws = self.words_quoted(&w.value, ctx);
                if fd.is_none_or(|f| f == 0) && !ws.is_empty() {
                    let mut word = ws.swap_remove(0);
                    // A here-string ends with a newline the shell adds.
                    if let Some(Part::Lit(s)) = word.parts.last_mut() {
                        s.push('\n');
                    }
                    *stdin = Some(Input::Text(word));
                }
            }
            ast::IoRedirect::OutputAndError(w, _) => {
                let words = self.words(&w.value, ctx);
                if !is_null_device(&words) {
                    self.writes_file(io);
                }
            }
        }
    }

    /// A redirection that opens a file for writing: on a connection with an allow-list it
    /// would let a listed program write any file the account can (`~/.bashrc`, which bash
    /// sources for the next ssh command, or `~/.ssh/authorized_keys`), so it is a hazard.
    fn writes_file(&mut self, io: &ast::IoRedirect) {
        self.hazard(format!(
            "output redirection to a file is refused on connections with an allow-list ({}); \
             send output to /dev/null or to another descriptor (`2>&1`, `>&2`), or have the \
             admin list a program that writes files (such as tee) by name",
            shorten(&io.to_string())
        ));
    }

    /// Resolves a word as an argument: brace expansion, then quote removal and expansions.
    fn words(&mut self, raw: &str, ctx: &Ctx) -> Vec<Word> {
        let alternatives = match brace_expand(raw) {
            Ok(a) => a,
            Err(e) => {
                self.unresolved(e);
                vec![raw.to_string()]
            }
        };
        alternatives
            .into_iter()
            .map(|text| self.word(&text, false, ctx))
            .collect()
    }

    /// Resolves a word where the shell neither brace-expands nor splits it (assignment values,
    /// here-strings, `[[ ]]` operands).
    fn words_quoted(&mut self, raw: &str, ctx: &Ctx) -> Vec<Word> {
        let mut w = self.word(raw, false, ctx);
        for p in &mut w.parts {
            if let Part::Hole { split } = p {
                *split = false;
            }
            if let Part::Glob(s) = p {
                *p = Part::Lit(std::mem::take(s));
            }
        }
        vec![Word::from_parts(w.parts, raw)]
    }

    fn word(&mut self, text: &str, quoted: bool, ctx: &Ctx) -> Word {
        match bw::parse(text, &options()) {
            Ok(pieces) => {
                let mut parts = Vec::with_capacity(pieces.len());
                for p in pieces {
                    self.piece(p.piece, quoted, ctx, &mut parts);
                }
                Word::from_parts(parts, text)
            }
            Err(e) => {
                self.unresolved(format!("cannot read the word {} ({e})", shorten(text)));
                Word::from_parts(vec![Part::Hole { split: !quoted }], text)
            }
        }
    }

    fn piece(&mut self, piece: WordPiece, quoted: bool, ctx: &Ctx, parts: &mut Vec<Part>) {
        match piece {
            WordPiece::Text(s) => {
                if !quoted && has_glob(&s) {
                    parts.push(Part::Glob(s));
                } else {
                    parts.push(Part::Lit(s));
                }
            }
            WordPiece::SingleQuotedText(s) => parts.push(Part::Lit(s)),
            WordPiece::AnsiCQuotedText(s) => match ansi_c(&s) {
                Some(v) => parts.push(Part::Lit(v)),
                None => parts.push(Part::Hole { split: false }),
            },
            WordPiece::DoubleQuotedSequence(inner) => {
                if inner.is_empty() {
                    parts.push(Part::Lit(String::new()));
                }
                for p in inner {
                    self.piece(p.piece, true, ctx, parts);
                }
            }
            WordPiece::GettextDoubleQuotedSequence(inner) => {
                // Translated at run time through the locale's message catalog.
                let mut ignored = Vec::new();
                for p in inner {
                    self.piece(p.piece, true, ctx, &mut ignored);
                }
                parts.push(Part::Hole { split: false });
            }
            WordPiece::TildeExpansion(t) => match t {
                bw::TildeExpr::Home => parts.push(Part::Home),
                _ => parts.push(Part::Hole { split: false }),
            },
            WordPiece::ParameterExpansion(expr) => self.parameter(&expr, quoted, ctx, parts),
            WordPiece::CommandSubstitution(code)
            | WordPiece::BackquotedCommandSubstitution(code) => {
                let sub = self.new_stage();
                let mut inner = ctx.clone();
                inner.stages.push(sub);
                self.nested(&code, &inner);
                if let Some(me) = ctx.own_stage() {
                    self.flows.push(vec![sub, me]);
                }
                parts.push(Part::Hole { split: !quoted });
            }
            WordPiece::EscapeSequence(s) => {
                parts.push(Part::Lit(s.chars().skip(1).collect()));
            }
            WordPiece::ArithmeticExpression(e) => {
                self.arithmetic(&e.value, ctx);
                parts.push(Part::Hole { split: !quoted });
            }
        }
    }

    fn parameter(
        &mut self,
        expr: &bw::ParameterExpr,
        quoted: bool,
        ctx: &Ctx,
        parts: &mut Vec<Part>,
    ) {
        let op = operands(expr);
        if let (Some(bw::Parameter::Named(n)), false, true) = (
            op.parameter,
            op.indirect,
            op.words.is_empty() && op.arithmetic.is_empty(),
        ) && n == "HOME"
            && matches!(expr, bw::ParameterExpr::Parameter { .. })
        {
            parts.push(Part::Home);
            return;
        }
        if op.indirect {
            self.hazard(
                "an indirect expansion (${!name}) reads a variable named by a value".into(),
            );
        }
        if op.prompt {
            self.hazard("${name@P} runs the command substitutions found in the value".into());
        }
        match op.parameter {
            Some(bw::Parameter::NamedWithIndex { index, .. }) => self.arithmetic(index, ctx),
            Some(bw::Parameter::Named(n)) if op.assigns => self.assignments.push(n.clone()),
            _ => {}
        }
        // Operands (defaults, patterns, replacements) are words of their own.
        for text in op.words {
            match bw::parse(text, &options()) {
                Ok(pieces) => {
                    let mut ignored = Vec::new();
                    for p in pieces {
                        self.piece(p.piece, true, ctx, &mut ignored);
                    }
                }
                Err(e) => self.unresolved(format!(
                    "cannot read the parameter expansion operand {} ({e})",
                    shorten(text)
                )),
            }
        }
        for text in op.arithmetic {
            self.arithmetic(text, ctx);
        }
        parts.push(Part::Hole { split: !quoted });
    }

    /// Arithmetic text given as a command's argument (`let`), run where `stages` run.
    pub(crate) fn arithmetic_text(&mut self, text: &str, stages: &[usize], depth: u8) {
        let ctx = Ctx {
            stages: stages.to_vec(),
            depth,
            source: text.into(),
        };
        self.arithmetic(text, &ctx);
    }

    /// Arithmetic text: its substitutions run; names in it are evaluated recursively, so a
    /// value like `a[$(cmd)]` runs `cmd`.
    fn arithmetic(&mut self, text: &str, ctx: &Ctx) {
        self.arithmetic_at(text, ctx, 0);
    }

    fn arithmetic_at(&mut self, text: &str, ctx: &Ctx, level: usize) {
        match bw::parse(text, &options()) {
            Ok(pieces) => {
                let mut parts = Vec::new();
                for p in pieces {
                    self.piece(p.piece, true, ctx, &mut parts);
                }
                // bash removes quotes from arithmetic and evaluates the text again, so a
                // quoted `'a[$(cmd)]'` runs cmd: quoted text is arithmetic in turn.
                for p in &parts {
                    if let Part::Lit(s) | Part::Glob(s) = p
                        && s.len() < text.len()
                        && (s.contains("$(") || s.contains('`') || s.contains("${"))
                    {
                        if level >= MAX_ARITHMETIC_QUOTES {
                            self.unresolved(format!(
                                "the arithmetic {} nests quotes too deeply",
                                shorten(text)
                            ));
                        } else {
                            self.arithmetic_at(s, ctx, level + 1);
                        }
                    }
                }
                let names = parts.iter().any(|p| match p {
                    Part::Lit(s) | Part::Glob(s) => has_identifier(s),
                    _ => true,
                });
                if names {
                    self.hazard(format!(
                        "the arithmetic {} reads variables, whose values bash evaluates as code",
                        shorten(text)
                    ));
                }
            }
            Err(e) => self.unresolved(format!(
                "cannot read the arithmetic {} ({e})",
                shorten(text)
            )),
        }
    }
}

/// What a parameter expansion reads and evaluates.
struct Operands<'a> {
    parameter: Option<&'a bw::Parameter>,
    indirect: bool,
    /// Assigns the parameter (`${X:=v}`).
    assigns: bool,
    /// `${x@P}`: the value is expanded like a prompt, command substitutions included.
    prompt: bool,
    words: Vec<&'a str>,
    arithmetic: Vec<&'a str>,
}

fn operands(expr: &bw::ParameterExpr) -> Operands<'_> {
    use bw::ParameterExpr as P;
    let mut o = Operands {
        parameter: None,
        indirect: false,
        assigns: false,
        prompt: false,
        words: Vec::new(),
        arithmetic: Vec::new(),
    };
    match expr {
        P::Parameter {
            parameter,
            indirect,
        }
        | P::ParameterLength {
            parameter,
            indirect,
        } => {
            o.parameter = Some(parameter);
            o.indirect = *indirect;
        }
        P::UseDefaultValues {
            parameter,
            indirect,
            default_value: v,
            ..
        }
        | P::IndicateErrorIfNullOrUnset {
            parameter,
            indirect,
            error_message: v,
            ..
        }
        | P::UseAlternativeValue {
            parameter,
            indirect,
            alternative_value: v,
            ..
        }
        | P::RemoveSmallestSuffixPattern {
            parameter,
            indirect,
            pattern: v,
        }
        | P::RemoveLargestSuffixPattern {
            parameter,
            indirect,
            pattern: v,
        }
        | P::RemoveSmallestPrefixPattern {
            parameter,
            indirect,
            pattern: v,
        }
        | P::RemoveLargestPrefixPattern {
            parameter,
            indirect,
            pattern: v,
        }
        | P::UppercaseFirstChar {
            parameter,
            indirect,
            pattern: v,
        }
        | P::UppercasePattern {
            parameter,
            indirect,
            pattern: v,
        }
        | P::LowercaseFirstChar {
            parameter,
            indirect,
            pattern: v,
        }
        | P::LowercasePattern {
            parameter,
            indirect,
            pattern: v,
        } => {
            o.parameter = Some(parameter);
            o.indirect = *indirect;
            o.words.extend(v.as_deref());
        }
        P::AssignDefaultValues {
            parameter,
            indirect,
            default_value,
            ..
        } => {
            o.parameter = Some(parameter);
            o.indirect = *indirect;
            o.assigns = true;
            o.words.extend(default_value.as_deref());
        }
        P::Substring {
            parameter,
            indirect,
            offset,
            length,
        } => {
            o.parameter = Some(parameter);
            o.indirect = *indirect;
            o.arithmetic.push(&offset.value);
            o.arithmetic
                .extend(length.as_ref().map(|l| l.value.as_str()));
        }
        P::Transform {
            parameter,
            indirect,
            op,
        } => {
            o.parameter = Some(parameter);
            o.indirect = *indirect;
            o.prompt = matches!(op, bw::ParameterTransformOp::PromptExpand);
        }
        P::ReplaceSubstring {
            parameter,
            indirect,
            pattern,
            replacement,
            ..
        } => {
            o.parameter = Some(parameter);
            o.indirect = *indirect;
            o.words.push(pattern);
            o.words.extend(replacement.as_deref());
        }
        P::VariableNames { .. } | P::MemberKeys { .. } => {}
    }
    o
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?']) || (s.contains('[') && s.contains(']'))
}

fn has_identifier(s: &str) -> bool {
    let mut prev_word = false;
    for c in s.chars() {
        if (c.is_ascii_alphabetic() || c == '_') && !prev_word {
            return true;
        }
        prev_word = c.is_ascii_alphanumeric() || c == '_' || c == '#';
    }
    false
}

/// The only file a redirection may write on a connection with an allow-list. `/dev/stdout`,
/// `/dev/stderr` and `/dev/fd/N` are not: opening one reopens the file behind that
/// descriptor, and `1<~/.bashrc` makes that any file (`{ echo x >/dev/stdout; } 1<f`
/// truncates and writes `f`); `>&1` and `>&2` say the same without opening anything.
fn is_null_device(words: &[Word]) -> bool {
    matches!(words, [w] if w.literal() == Some("/dev/null"))
}

/// The target of `>&` is a descriptor to copy (`2`), to move (`3-`) or to close (`-`):
/// nothing is opened.
fn is_descriptor(words: &[Word]) -> bool {
    let [w] = words else { return false };
    let Some(text) = w.literal() else {
        return false;
    };
    let digits = text.strip_suffix('-').unwrap_or(text);
    text == "-" || (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Most unquoted `{` in one word handed to brush's brace parser, whose time grows
/// exponentially with them (measured: 12 take 40 ms, 16 take 3 s).
const MAX_BRACES: usize = 10;

/// How many `{` of a word's raw text bash could brace-expand: outside quotes, not escaped, not
/// opening `${`. An over-count only refuses sooner.
fn unquoted_braces(raw: &str) -> usize {
    let (mut single, mut double, mut count) = (false, false, 0);
    let mut prev = '\0';
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                chars.next();
                prev = '\0';
                continue;
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '{' if !single && !double && prev != '$' => count += 1,
            _ => {}
        }
        prev = c;
    }
    count
}

/// Bash's brace expansion of one word's raw text (quotes kept, so quoted braces stay).
fn brace_expand(raw: &str) -> Result<Vec<String>, String> {
    match unquoted_braces(raw) {
        0 => return Ok(vec![raw.to_string()]),
        n if n > MAX_BRACES => {
            return Err(format!(
                "the word {} has more than {MAX_BRACES} braces to expand",
                shorten(raw)
            ));
        }
        _ => {}
    }
    let parsed = bw::parse_brace_expansions(raw, &options())
        .map_err(|e| format!("cannot read the braces in {} ({e})", shorten(raw)))?;
    let Some(items) = parsed else {
        return Ok(vec![raw.to_string()]);
    };
    let mut out = vec![String::new()];
    expand_items(&items, &mut out, raw)?;
    Ok(out)
}

fn expand_items(
    items: &[BraceExpressionOrText],
    out: &mut Vec<String>,
    raw: &str,
) -> Result<(), String> {
    for item in items {
        match item {
            BraceExpressionOrText::Text(t) => {
                for o in out.iter_mut() {
                    o.push_str(t);
                }
            }
            BraceExpressionOrText::Expr(members) => {
                let mut alternatives = Vec::new();
                for m in members {
                    alternatives.extend(member_alternatives(m, raw)?);
                    if alternatives.len() > MAX_BRACE_WORDS {
                        return Err(too_many(raw));
                    }
                }
                if out.len().saturating_mul(alternatives.len()) > MAX_BRACE_WORDS {
                    return Err(too_many(raw));
                }
                let mut next = Vec::with_capacity(out.len() * alternatives.len());
                for o in out.iter() {
                    for a in &alternatives {
                        next.push(format!("{o}{a}"));
                    }
                }
                *out = next;
            }
        }
    }
    Ok(())
}

fn too_many(raw: &str) -> String {
    format!(
        "the braces in {} expand to more than {MAX_BRACE_WORDS} words",
        shorten(raw)
    )
}

fn member_alternatives(m: &BraceExpressionMember, raw: &str) -> Result<Vec<String>, String> {
    match m {
        BraceExpressionMember::Child(items) => {
            let mut out = vec![String::new()];
            expand_items(items, &mut out, raw)?;
            Ok(out)
        }
        BraceExpressionMember::NumberSequence {
            start,
            end,
            increment,
        } => {
            let step = increment.unsigned_abs().max(1);
            let count = start.abs_diff(*end) / step + 1;
            if count > MAX_BRACE_WORDS as u64 {
                return Err(too_many(raw));
            }
            let mut out = Vec::new();
            let mut v = *start;
            for _ in 0..count {
                out.push(v.to_string());
                v = if end >= start {
                    v.saturating_add_unsigned(step)
                } else {
                    v.saturating_sub_unsigned(step)
                };
            }
            Ok(out)
        }
        BraceExpressionMember::CharSequence {
            start,
            end,
            increment,
        } => {
            let (a, b) = (*start as u32, *end as u32);
            let step = increment.unsigned_abs().clamp(1, u32::MAX as u64) as u32;
            let (lo, hi) = (a.min(b), a.max(b));
            let mut out: Vec<String> = (lo..=hi)
                .step_by(step as usize)
                .filter_map(char::from_u32)
                .map(String::from)
                .collect();
            if a > b {
                out.reverse();
            }
            if out.len() > MAX_BRACE_WORDS {
                return Err(too_many(raw));
            }
            Ok(out)
        }
    }
}

/// Decodes the inside of `$'...'` as bash does; `None` for what this does not know how to
/// decode (the word is then treated as unknown).
fn ansi_c(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        let code =
            |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, radix: u32, max: usize| {
                let mut v = 0u32;
                let mut n = 0;
                while n < max {
                    match chars.peek().and_then(|c| c.to_digit(radix)) {
                        Some(d) => {
                            v = v * radix + d;
                            chars.next();
                            n += 1;
                        }
                        None => break,
                    }
                }
                (v, n)
            };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'e' | 'E' => out.push('\x1b'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' | '\'' | '"' | '?' => out.push(e),
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                let (rest, n) = code(&mut chars, 8, 2);
                v = v * 8u32.pow(n as u32) + rest;
                let b = u8::try_from(v & 0xff).ok()?;
                if b == 0 {
                    // bash stops the string at a NUL.
                    return Some(out);
                }
                out.push(char::from(b));
            }
            'x' => {
                let (v, n) = code(&mut chars, 16, 2);
                if n == 0 {
                    out.push_str("\\x");
                } else if v == 0 {
                    return Some(out);
                } else if v < 0x80 {
                    out.push(char::from_u32(v)?);
                } else {
                    // A raw byte above 0x7f: not valid UTF-8 on its own.
                    return None;
                }
            }
            'u' | 'U' => {
                let (v, n) = code(&mut chars, 16, if e == 'u' { 4 } else { 8 });
                if n == 0 {
                    out.push('\\');
                    out.push(e);
                } else if v == 0 {
                    return Some(out);
                } else {
                    out.push(char::from_u32(v)?);
                }
            }
            'c' => {
                let x = chars.next()?;
                let v = (x.to_ascii_uppercase() as u32) ^ 0x40;
                if v == 0 {
                    return Some(out);
                }
                out.push(char::from_u32(v)?);
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Parsed {
        let mut p = Parsed::default();
        p.parse(line, &[], 0).unwrap();
        p
    }

    fn programs(p: &Parsed) -> Vec<String> {
        p.simples
            .iter()
            .filter_map(|s| s.words.first())
            .map(|w| {
                w.literal()
                    .map(str::to_string)
                    .unwrap_or_else(|| w.raw.clone())
            })
            .collect()
    }

    #[test]
    fn every_simple_command_is_found() {
        let p = parse(
            "a | b && c || d; e & (f; g); { h; }; if i; then j; elif k; then l; else m; fi; for x in $(n); do o; done; while p; do q; done; case $(r) in x) s;; esac; t() { u; }; v <(w) >(y) < <(z) 2> >(aa); bb \"$(cc)\" `dd` $((1+$(ee))); ff <<< $(gg); [[ $(hh) == x ]]",
        );
        let mut got = programs(&p);
        got.sort();
        let mut want: Vec<String> =
            "a b c d e f g h i j k l m n o p q r s u v w y z aa bb cc dd ee ff gg hh"
                .split(' ')
                .map(String::from)
                .collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(p.functions, ["t"]);
    }

    #[test]
    fn words_lose_their_quotes_and_escapes() {
        let p = parse("r\\m \"-r\"'f' $'\\x2f' {rm,-rf,/}");
        let w: Vec<_> = p.simples[0]
            .words
            .iter()
            .map(|w| w.literal().unwrap())
            .collect();
        assert_eq!(w, ["rm", "-rf", "/", "rm", "-rf", "/"]);
    }

    #[test]
    fn here_documents_and_strings_are_standard_input() {
        let p = parse("bash <<'EOF'\nrm -rf /\nEOF\n");
        match &p.simples[0].stdin {
            Some(Input::Text(w)) => assert_eq!(w.literal(), Some("rm -rf /\n")),
            other => panic!("{other:?}"),
        }
        let p = parse("sh <<< 'id'");
        assert!(matches!(&p.simples[0].stdin, Some(Input::Text(w)) if w.literal() == Some("id\n")));
    }

    #[test]
    fn flows_follow_pipes_and_substitutions() {
        let p = parse("curl x | tee f | sh");
        assert_eq!(p.flows.len(), 1);
        assert_eq!(p.flows[0].len(), 3);
        let p = parse("bash <(curl x)");
        assert_eq!(p.flows.len(), 1);
    }

    #[test]
    fn nesting_is_bounded_before_brush_sees_it() {
        let deep = format!("echo {}x{}", "$(".repeat(500), ")".repeat(500));
        let mut p = Parsed::default();
        assert!(p.parse(&deep, &[], 0).unwrap_err().contains("nests"));
        let long = "a ".repeat(MAX_TEXT);
        assert!(p.parse(&long, &[], 0).unwrap_err().contains("longer"));
    }

    #[test]
    fn ansi_c_quoting_decodes() {
        assert_eq!(ansi_c("\\x72\\155").as_deref(), Some("rm"));
        assert_eq!(ansi_c("a\\0b").as_deref(), Some("a"));
        assert_eq!(ansi_c("\\u0041\\n").as_deref(), Some("A\n"));
        assert_eq!(ansi_c("\\cA").as_deref(), Some("\x01"));
        assert_eq!(ansi_c("\\q").as_deref(), Some("\\q"));
    }

    #[test]
    fn numbers_brush_would_overflow_on_are_refused() {
        let mut p = Parsed::default();
        for line in [
            "ls 99999999999>x",
            "ls 2147483648<x",
            "echo {1..99999999999999999999}",
            "echo {1..3..99999999999999999999}",
            "echo ~+99999999999999999999",
            "echo ~-99999999999999999999",
        ] {
            assert!(
                p.parse(line, &[], 0).unwrap_err().contains("too large"),
                "{line}"
            );
        }
        for line in [
            "echo 12345678901234567890",
            "ls 2>x",
            "date +%s%N 1700000000000000000",
        ] {
            assert!(p.parse(line, &[], 0).is_ok(), "{line}");
        }
    }

    #[test]
    fn quoted_braces_are_not_expanded_and_many_are_refused() {
        assert_eq!(unquoted_braces("'{a,b}' \"{c}\" \\{d} ${e}"), 0);
        assert_eq!(unquoted_braces("{a,{b}}"), 2);
        assert_eq!(
            brace_expand("'{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'")
                .unwrap()
                .len(),
            1
        );
        let hostile = format!("x{}-s", "{".repeat(40));
        assert!(brace_expand(&hostile).unwrap_err().contains("braces"));
    }

    #[test]
    fn brace_expansion_is_capped() {
        assert_eq!(brace_expand("a{1..3}").unwrap(), ["a1", "a2", "a3"]);
        assert_eq!(brace_expand("'{a,b}'").unwrap(), ["'{a,b}'"]);
        assert!(brace_expand("{1..100000}").is_err());
        assert!(brace_expand("{a..z}{a..z}{a..z}").is_err());
    }

    #[test]
    fn arithmetic_and_expansions_that_evaluate_values_are_hazards() {
        for line in [
            "echo $((x+1))",
            "echo ${!x}",
            "echo ${a[$i]}",
            "(( y > 2 ))",
            "[[ $x -eq 1 ]]",
        ] {
            let p = parse(line);
            assert!(
                p.findings.iter().any(|f| matches!(f, Finding::Hazard(_))),
                "{line}: {:?}",
                p.findings
            );
        }
        let p = parse("echo $((1+2)) ${a[0]} ${x:-y}");
        assert!(p.findings.is_empty(), "{:?}", p.findings);
        let p = parse("echo ${x:-$(id)} $(( $(whoami) ))");
        assert_eq!(programs(&p).len(), 3, "{:?}", programs(&p));
    }
}
