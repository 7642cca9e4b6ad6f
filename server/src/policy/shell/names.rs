//! Builtins that take variable names. bash evaluates the subscript of a name given as an
//! argument (`printf -v 'a[$(cmd)]'`, `read 'a[$(cmd)]'`, `test -v 'a[$(cmd)]'`,
//! `declare 'a[$(cmd)]=1'`) as arithmetic, which runs the command substitutions in it; a
//! `declare` value written `'(...)'` is read as a compound array assignment with every
//! expansion in it; an integer variable (`declare -i`) evaluates what it is given and a name
//! reference (`declare -n`) a name. Each of these is judged as the arithmetic, name or code
//! it becomes. Options are read the way bash's builtins read them (letters clustered after
//! `-` or `+`, an option's argument attached or in the next word, `--` ends them).

use super::programs::{Resolver, Site};
use super::words::{Part, Word};

/// Builtins with arguments bash reads as variable names.
pub(crate) fn takes_names(program: &str) -> bool {
    matches!(
        program,
        "printf"
            | "read"
            | "mapfile"
            | "readarray"
            | "getopts"
            | "wait"
            | "unset"
            | "declare"
            | "typeset"
            | "local"
            | "export"
            | "readonly"
            | "test"
            | "["
    )
}

/// What bash does with one argument.
enum Use<'a> {
    /// A variable name, possibly with a subscript.
    Name(&'a Word),
    /// `NAME` or `NAME=value` given to `declare` and its kin.
    Declared(&'a Word),
    /// Code run later (`mapfile -C`).
    Code(&'a Word),
}

/// The arguments of one call, sorted by what bash does with them.
#[derive(Default)]
struct Uses<'a> {
    uses: Vec<Use<'a>>,
    /// `declare -i`: values are evaluated as arithmetic.
    integer: bool,
    /// `declare -n`: values are variable names.
    nameref: bool,
    /// An option word only the running shell can read.
    unknown: Option<&'a Word>,
}

/// One option as read: its letter, whether it was given with `-` (not `+`), its argument.
type Opt<'a> = (char, bool, Option<&'a Word>);

/// Options as bash's builtins read them: `(letter, argument)`, then the operands. A word
/// that may be an option but is not literal stops the reading and is reported.
fn options<'a>(
    args: &'a [Word],
    with_argument: &str,
    out: &mut Uses<'a>,
) -> (Vec<Opt<'a>>, &'a [Word]) {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(w) = args.get(i) {
        let Some(t) = w.literal() else {
            if w.may_be_option() {
                out.unknown = Some(w);
            }
            break;
        };
        if t == "--" {
            i += 1;
            break;
        }
        let (minus, cluster) = match (t.strip_prefix('-'), t.strip_prefix('+')) {
            (Some(c), _) if !c.is_empty() => (true, c),
            (_, Some(c)) if !c.is_empty() => (false, c),
            _ => break,
        };
        i += 1;
        for (at, c) in cluster.char_indices() {
            if with_argument.contains(c) {
                let attached = cluster.get(at + c.len_utf8()..).unwrap_or_default();
                if attached.is_empty() {
                    found.push((c, minus, args.get(i)));
                    i += 1;
                } else {
                    // The rest of the cluster is the argument; a borrowed word cannot hold
                    // it, so it is recorded through the whole word (judged conservatively).
                    found.push((c, minus, Some(w)));
                }
                break;
            }
            found.push((c, minus, None));
        }
    }
    (found, args.get(i..).unwrap_or_default())
}

fn uses<'a>(program: &str, args: &'a [Word]) -> Uses<'a> {
    let mut out = Uses::default();
    let names = |ops: &'a [Word], out: &mut Uses<'a>| {
        out.uses.extend(ops.iter().map(Use::Name));
    };
    match program {
        "printf" => {
            let (opts, _) = options(args, "v", &mut out);
            for (_, _, value) in opts {
                out.uses.extend(value.map(Use::Name));
            }
        }
        "read" => {
            let (opts, ops) = options(args, "adiNnptu", &mut out);
            for (c, _, value) in opts {
                if c == 'a' {
                    out.uses.extend(value.map(Use::Name));
                }
            }
            names(ops, &mut out);
        }
        "mapfile" | "readarray" => {
            let (opts, ops) = options(args, "dnOsuCc", &mut out);
            for (c, _, value) in opts {
                if c == 'C' {
                    out.uses.extend(value.map(Use::Code));
                }
            }
            names(ops, &mut out);
        }
        // `getopts OPTSTRING NAME [ARG...]`; the words after NAME are judged too (they
        // are data, but a name among them costs nothing).
        "getopts" => names(args.get(1..).unwrap_or_default(), &mut out),
        "wait" => {
            let (opts, _) = options(args, "p", &mut out);
            for (_, _, value) in opts {
                out.uses.extend(value.map(Use::Name));
            }
        }
        "unset" => {
            let (_, ops) = options(args, "", &mut out);
            names(ops, &mut out);
        }
        "declare" | "typeset" | "local" | "export" | "readonly" => {
            let (opts, ops) = options(args, "", &mut out);
            let attributes = program != "export" && program != "readonly";
            for (c, minus, _) in opts {
                out.integer |= attributes && minus && c == 'i';
                out.nameref |= attributes && minus && c == 'n';
            }
            out.uses.extend(ops.iter().map(Use::Declared));
        }
        // `test -v NAME`, `test -R NAME`; a word that may be `-v` makes the next a name.
        "test" | "[" => {
            let mut next_is_name = false;
            for w in args {
                if next_is_name {
                    out.uses.push(Use::Name(w));
                }
                next_is_name = w.may_equal("-v") || w.may_equal("-R");
            }
        }
        _ => {}
    }
    out
}

/// The subscript of a literal variable name (`a[$(cmd)]` gives `$(cmd)`), when it has one.
fn subscript(name: &str) -> Option<&str> {
    let (_, rest) = name.split_once('[')?;
    Some(rest.strip_suffix(']').unwrap_or(rest))
}

/// Splits a `declare` operand into its name and value (`None` when it has no `=`), when its
/// name is literal.
fn split_declared(w: &Word) -> Option<(String, Option<Word>)> {
    if let Some(t) = w.literal() {
        return Some(match t.split_once('=') {
            Some((n, v)) => (n.trim_end_matches('+').to_string(), Some(Word::lit(v))),
            None => (t.to_string(), None),
        });
    }
    let (Part::Lit(first), rest) = w.parts.split_first()? else {
        return None;
    };
    let (n, v) = first.split_once('=')?;
    let mut parts = vec![Part::Lit(v.to_string())];
    parts.extend(rest.iter().cloned());
    Some((
        n.trim_end_matches('+').to_string(),
        Some(Word::from_parts(parts, &w.raw)),
    ))
}

impl Resolver<'_> {
    /// Judges the arguments a builtin reads as names, arithmetic or code.
    pub(crate) fn names(&mut self, program: &str, args: &[Word], site: &Site) {
        let u = uses(program, args);
        if let Some(w) = u.unknown {
            self.parsed.hazard(format!(
                "`{program}` is given {}, which may be an option naming a variable whose subscript bash evaluates as arithmetic",
                w.raw
            ));
            // What follows may be names: judge every literal one.
            for w in args {
                self.name(program, w, site, true);
            }
        }
        if u.integer || u.nameref {
            self.parsed.hazard(format!(
                "`{program}` gives a variable the integer or name-reference attribute, so every value it is later given is evaluated as arithmetic or a variable name"
            ));
        }
        for x in u.uses {
            match x {
                Use::Name(w) => self.name(program, w, site, false),
                Use::Code(w) => self.code(w, site),
                Use::Declared(w) => self.declared(program, w, u.integer, u.nameref, site),
            }
        }
    }

    /// A variable name: its subscript is arithmetic.
    fn name(&mut self, program: &str, w: &Word, site: &Site, quiet: bool) {
        match w.literal() {
            Some(t) => {
                if let Some(s) = subscript(t) {
                    self.parsed.arithmetic_text(s, &site.stages, site.depth);
                }
            }
            None if !quiet => self.parsed.hazard(format!(
                "`{program}` is given {} as a variable name; bash evaluates a subscript in it as arithmetic, which runs command substitutions",
                w.raw
            )),
            None => {}
        }
    }

    /// `NAME` or `NAME=value` given to `declare`, `local`, `export`, ...
    fn declared(&mut self, program: &str, w: &Word, integer: bool, nameref: bool, site: &Site) {
        let Some((name, value)) = split_declared(w) else {
            self.parsed.hazard(format!(
                "`{program}` is given {}, whose name bash reads only when it runs",
                w.raw
            ));
            return;
        };
        self.name(program, &Word::lit(&name), site, false);
        let Some(value) = value else { return };
        match value.literal() {
            Some(v) => {
                if integer {
                    self.parsed.arithmetic_text(v, &site.stages, site.depth);
                }
                if nameref {
                    self.name(program, &value, site, false);
                }
                // A value in parentheses is a compound array assignment: bash expands every
                // word and evaluates every `[subscript]` in it.
                if v.trim_start().starts_with('(') {
                    self.code(&Word::lit(&format!("v={v}")), site);
                }
            }
            None => {
                let may_be_compound = !matches!(value.parts.first(), Some(Part::Lit(s)) if !s.is_empty() && !s.starts_with('('));
                if integer || nameref || may_be_compound {
                    self.parsed.hazard(format!(
                        "`{program} {}` gives a value bash may evaluate (as an array, arithmetic or a name) only when it runs",
                        w.raw
                    ));
                }
            }
        }
    }
}
