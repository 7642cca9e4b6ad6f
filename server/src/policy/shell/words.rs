//! Words as the shell will see them after quote removal, with what the text cannot tell (a
//! variable, a command substitution, a glob, `~`) kept as a typed hole rather than guessed.
//! Everything here answers "could this word be X?", erring towards yes: a judge that is unsure
//! refuses.

/// One piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Text the shell leaves as it is (quotes and escapes removed).
    Lit(String),
    /// Unquoted text with glob characters (`*`, `?`, `[...]`), kept raw: the shell replaces it
    /// with matching file names, so it may become any number of words.
    Glob(String),
    /// The user's home directory (`~`, `$HOME`).
    Home,
    /// A value known only when the command runs (a variable, a command or arithmetic
    /// substitution). Unquoted (`split`), it is also split into words and globbed.
    Hole {
        /// Word splitting applies: the hole may become any number of words.
        split: bool,
    },
    /// A path equal to or below one of these (what `find` puts in place of `{}`).
    Under(Vec<String>),
}

/// A word of a command as the shell will pass it, and its text as written (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub parts: Vec<Part>,
    pub raw: String,
}

impl Word {
    /// A word that is exactly `text`.
    pub fn lit(text: &str) -> Word {
        Word {
            parts: vec![Part::Lit(text.to_string())],
            raw: text.to_string(),
        }
    }

    /// A word built from parts, adjacent literal pieces merged (so a literal word is one
    /// [`Part::Lit`]).
    pub fn from_parts(parts: Vec<Part>, raw: &str) -> Word {
        let mut out: Vec<Part> = Vec::with_capacity(parts.len());
        for p in parts {
            match (out.last_mut(), p) {
                (Some(Part::Lit(a)), Part::Lit(b)) => a.push_str(&b),
                (Some(Part::Glob(a)), Part::Glob(b)) => a.push_str(&b),
                (_, p) => out.push(p),
            }
        }
        if out.is_empty() {
            out.push(Part::Lit(String::new()));
        }
        Word {
            parts: out,
            raw: raw.to_string(),
        }
    }

    /// The word's value when the text alone decides it.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// The word's text with glob characters kept, when it has no hole (`/*`, `*.log`).
    pub fn static_text(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) | Part::Glob(s) => out.push_str(s),
                _ => return None,
            }
        }
        Some(out)
    }

    /// The shell may turn this word into several words (or none): an unquoted expansion or a
    /// glob.
    pub fn may_split(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Hole { split: true } | Part::Glob(_)))
    }

    /// The word could start with `-`, i.e. be read as an option.
    pub fn may_be_option(&self) -> bool {
        if self.may_split() {
            return true;
        }
        match self.parts.first() {
            Some(Part::Lit(s)) => s.starts_with('-') || (s.is_empty() && self.parts.len() > 1),
            Some(Part::Hole { .. }) => true,
            _ => false,
        }
    }

    /// Some value of this word equals `target`.
    pub fn may_equal(&self, target: &str) -> bool {
        if let Some(l) = self.literal() {
            return l == target;
        }
        if self
            .parts
            .iter()
            .any(|p| matches!(p, Part::Hole { split: true }))
        {
            return true;
        }
        let toks = tokens_of(&self.parts);
        let chars: Vec<char> = target.chars().collect();
        matches_tokens(&toks, &chars)
    }

    /// Some value of this word matches the glob `pattern` (a rule word such as `of=/dev/*`).
    /// Exact for literal words; for others, true when the word may equal the pattern with its
    /// stars left empty or filled, which is what the rules need.
    pub fn may_match_glob(&self, pattern: &str) -> bool {
        if let Some(l) = self.literal() {
            return glob_matches(pattern, l);
        }
        if !pattern.contains(['*', '?', '[']) {
            return self.may_equal(pattern);
        }
        let empty: String = pattern.chars().filter(|c| *c != '*').collect();
        let filled = pattern.replace('*', "x");
        self.may_equal(&empty) || self.may_equal(&filled)
    }

    /// The word could name the root directory or everything in it (`/`, `//`, `/.`, `/*`).
    pub fn may_be_root(&self) -> bool {
        if let Some(text) = self.static_text() {
            return text.starts_with('/') && text.trim_end_matches(['/', '.', '*']).is_empty();
        }
        self.may_equal("/") || self.may_equal("/*")
    }

    /// The word could name the user's home directory or everything in it (`~`, `~/`, `$HOME`,
    /// `"$dir"`).
    pub fn may_be_home(&self) -> bool {
        if self
            .parts
            .iter()
            .any(|p| matches!(p, Part::Hole { split: true }))
        {
            return true;
        }
        let (first, rest) = match self.parts.split_first() {
            Some(x) => x,
            None => return false,
        };
        let rest_is_trailer = rest.iter().all(|p| match p {
            Part::Lit(s) | Part::Glob(s) => s.chars().all(|c| matches!(c, '/' | '.' | '*')),
            _ => false,
        });
        match first {
            Part::Home | Part::Hole { .. } => rest_is_trailer,
            Part::Lit(s) => {
                matches!(
                    s.trim_end_matches(['/', '.', '*']),
                    "~" | "$HOME" | "${HOME}"
                ) && rest_is_trailer
            }
            _ => false,
        }
    }
}

/// A token of a word's possible values.
#[derive(Debug, Clone)]
enum Tok<'a> {
    Char(char),
    AnyChar,
    AnyString,
    Class {
        set: Vec<(char, char)>,
        negated: bool,
    },
    Under(&'a [String]),
}

fn tokens_of(parts: &[Part]) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    for p in parts {
        match p {
            Part::Lit(s) => out.extend(s.chars().map(Tok::Char)),
            Part::Glob(s) => out.extend(glob_tokens(s)),
            Part::Home | Part::Hole { .. } => out.push(Tok::AnyString),
            Part::Under(starts) => out.push(Tok::Under(starts)),
        }
    }
    out
}

/// Tokens of a glob pattern; a `[` without its `]` is a plain character, as in the shell.
fn glob_tokens(pattern: &str) -> Vec<Tok<'static>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '*' => out.push(Tok::AnyString),
            '?' => out.push(Tok::AnyChar),
            '\\' => {
                i += 1;
                if let Some(&n) = chars.get(i) {
                    out.push(Tok::Char(n));
                }
            }
            '[' => match bracket(&chars, i) {
                Some((tok, end)) => {
                    out.push(tok);
                    i = end;
                }
                None => out.push(Tok::Char('[')),
            },
            c => out.push(Tok::Char(c)),
        }
        i += 1;
    }
    out
}

/// Parses a bracket expression starting at `start` (`[`); returns it and the index of its `]`.
fn bracket(chars: &[char], start: usize) -> Option<(Tok<'static>, usize)> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut set = Vec::new();
    let first = i;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && i > first {
            return Some((Tok::Class { set, negated }, i));
        }
        // A character class such as `[:alpha:]` could be anything here: any character.
        if c == '[' && chars.get(i + 1) == Some(&':') {
            set.push(('\0', char::MAX));
            i += 2;
            while chars.get(i) != Some(&':') || chars.get(i + 1) != Some(&']') {
                chars.get(i)?;
                i += 1;
            }
            i += 2;
            continue;
        }
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|e| *e != ']') {
            let end = *chars.get(i + 2)?;
            set.push((c, end));
            i += 3;
        } else {
            set.push((c, c));
            i += 1;
        }
    }
}

/// Does the glob `pattern` match all of `text`?
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let toks = glob_tokens(pattern);
    let chars: Vec<char> = text.chars().collect();
    matches_tokens(&toks, &chars)
}

/// Backtracking match with memoisation over (token, position), so patterns with many stars
/// stay linear in practice.
fn matches_tokens(toks: &[Tok<'_>], text: &[char]) -> bool {
    let width = text.len() + 1;
    let mut seen = vec![false; (toks.len() + 1) * width];
    go(toks, text, 0, 0, &mut seen, width)
}

fn go(
    toks: &[Tok<'_>],
    text: &[char],
    t: usize,
    i: usize,
    seen: &mut [bool],
    width: usize,
) -> bool {
    let key = t * width + i;
    match seen.get_mut(key) {
        Some(s) if *s => return false,
        Some(s) => *s = true,
        None => return false,
    }
    let Some(tok) = toks.get(t) else {
        return i == text.len();
    };
    let here = text.get(i);
    match tok {
        Tok::Char(c) => here == Some(c) && go(toks, text, t + 1, i + 1, seen, width),
        Tok::AnyChar => here.is_some() && go(toks, text, t + 1, i + 1, seen, width),
        Tok::Class { set, negated } => {
            let Some(&c) = here else { return false };
            let inside = set.iter().any(|(a, b)| (*a..=*b).contains(&c));
            inside != *negated && go(toks, text, t + 1, i + 1, seen, width)
        }
        Tok::AnyString => (i..=text.len()).any(|j| go(toks, text, t + 1, j, seen, width)),
        Tok::Under(starts) => starts.iter().any(|s| {
            let s: Vec<char> = s.chars().collect();
            let rest = text.get(i..).unwrap_or_default();
            if !rest.starts_with(&s) {
                return false;
            }
            let after = i + s.len();
            // The start itself, or anything below it.
            go(toks, text, t + 1, after, seen, width)
                || (s.last() == Some(&'/') || text.get(after) == Some(&'/'))
                    && (after..=text.len()).any(|j| go(toks, text, t + 1, j, seen, width))
        }),
    }
}

/// The short option letters and long option names a command's arguments set, read the way
/// GNU getopt reads them (options anywhere until `--`), and whether some argument the text
/// cannot tell could set more.
#[derive(Debug, Default)]
pub(crate) struct Options {
    pub short: Vec<char>,
    /// Long options as written, without `--` and any `=value` (possibly abbreviated).
    pub long: Vec<String>,
    /// An argument might be any option (a variable, a glob, input from `xargs`).
    pub open: bool,
}

impl Options {
    /// Reads the options of `args`. `single_dash_words`: the program's options are whole words
    /// (`find -delete`), not letter clusters.
    pub fn of(args: &[Word], single_dash_words: bool, extra_open: bool) -> Options {
        let mut o = Options {
            open: extra_open,
            ..Options::default()
        };
        for a in args {
            match a.literal() {
                Some("--") => break,
                Some(l) if single_dash_words => {
                    if let Some(name) = l.strip_prefix('-') {
                        o.long.push(name.trim_start_matches('-').to_string());
                    }
                }
                Some(l) => {
                    if let Some(long) = l.strip_prefix("--") {
                        let name = long.split('=').next().unwrap_or(long);
                        if !name.is_empty() {
                            o.long.push(name.to_string());
                        }
                    } else if let Some(cluster) = l.strip_prefix('-') {
                        o.short.extend(cluster.chars());
                    }
                }
                // A word that may split could be any number of options; a single unknown
                // word is weighed by the caller, once.
                None => {
                    if a.may_split() && a.may_be_option() {
                        o.open = true;
                    }
                }
            }
        }
        o
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn hole(split: bool) -> Part {
        Part::Hole { split }
    }

    #[test]
    fn literal_words_equal_only_themselves() {
        let w = Word::lit("/etc");
        assert!(w.may_equal("/etc"));
        assert!(!w.may_equal("/"));
        assert_eq!(w.literal(), Some("/etc"));
    }

    #[test]
    fn holes_may_be_anything_their_literal_parts_allow() {
        let w = Word::from_parts(
            vec![hole(false), Part::Lit("/.cache".into())],
            "\"$d\"/.cache",
        );
        assert!(w.may_equal("/root/.cache"));
        assert!(!w.may_equal("/"));
        assert!(!w.may_be_root());
        let w = Word::from_parts(vec![hole(false), Part::Lit("/".into())], "\"$d\"/");
        assert!(w.may_be_root());
        let split = Word::from_parts(vec![Part::Lit("a".into()), hole(true)], "a$x");
        assert!(split.may_equal("-rf"), "word splitting can make any word");
    }

    #[test]
    fn globs_match_like_the_shell() {
        assert!(glob_matches("of=/dev/*", "of=/dev/sda"));
        assert!(!glob_matches("of=/dev/*", "of=/tmp/x"));
        assert!(glob_matches("r[a-z]", "rm"));
        assert!(glob_matches("r[!a]", "rm"));
        assert!(!glob_matches("r[!m]", "rm"));
        assert!(glob_matches("[", "["));
        let w = Word::from_parts(vec![Part::Glob("/???/r?".into())], "/???/r?");
        assert!(w.may_equal("/bin/rm"));
    }

    #[test]
    fn root_and_home() {
        for t in ["/", "//", "/.", "/*", "/./"] {
            let w = Word::from_parts(vec![Part::Glob(t.into())], t);
            assert!(w.may_be_root(), "{t}");
        }
        assert!(!Word::lit("/tmp").may_be_root());
        assert!(Word::from_parts(vec![Part::Home], "~").may_be_home());
        assert!(Word::from_parts(vec![Part::Home, Part::Lit("/".into())], "~/").may_be_home());
        assert!(!Word::from_parts(vec![Part::Home, Part::Lit("/x".into())], "~/x").may_be_home());
    }

    #[test]
    fn under_matches_a_start_and_below() {
        let starts = vec!["/".to_string()];
        let w = Word::from_parts(vec![Part::Under(starts)], "{}");
        assert!(w.may_be_root());
        assert!(w.may_equal("/etc"));
        let w = Word::from_parts(vec![Part::Under(vec![".".into()])], "{}");
        assert!(!w.may_be_root());
        assert!(w.may_equal("./x"));
        assert!(!w.may_equal("-rf"));
    }

    #[test]
    fn options_read_like_getopt() {
        let args: Vec<Word> = ["-rf", "--no-pres", "x", "--", "-v"]
            .iter()
            .map(|a| Word::lit(a))
            .collect();
        let o = Options::of(&args, false, false);
        assert_eq!(o.short, ['r', 'f']);
        assert_eq!(o.long, ["no-pres"]);
        assert!(!o.open);
        let o = Options::of(&[Word::from_parts(vec![hole(true)], "$f")], false, false);
        assert!(o.open);
        let o = Options::of(
            &[Word::from_parts(vec![hole(false)], "\"$f\"")],
            false,
            false,
        );
        assert!(!o.open);
    }
}
