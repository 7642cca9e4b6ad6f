//! A text's tokens as PostgreSQL's scanner reads them (`standard_conforming_strings` on), and
//! what is derived from the tokens alone: the verdict cache key, whether the text reads
//! differently with backslash escapes, the normalised text of a statement.

use std::ops::Range;

use pg_query::protobuf::{ScanToken, Token};

use super::pg;

/// The tokens of one text.
pub(super) struct Lexed<'a> {
    sql: &'a str,
    pub(super) tokens: Vec<ScanToken>,
}

fn is_comment(kind: i32) -> bool {
    kind == Token::SqlComment as i32 || kind == Token::CComment as i32
}

fn is_number(kind: i32) -> bool {
    kind == Token::Iconst as i32 || kind == Token::Fconst as i32
}

fn range(t: &ScanToken) -> Range<usize> {
    let start = usize::try_from(t.start).unwrap_or(0);
    let end = usize::try_from(t.end).unwrap_or(0);
    start..end.max(start)
}

impl<'a> Lexed<'a> {
    /// Scans `sql`; an error when PostgreSQL's scanner rejects it (unterminated quote or
    /// comment, bad escape...).
    pub(super) fn scan(sql: &'a str) -> Result<Self, pg::ParseError> {
        pg::scan(sql).map(|tokens| Lexed { sql, tokens })
    }

    fn bytes(&self, t: &ScanToken) -> &'a [u8] {
        self.sql.as_bytes().get(range(t)).unwrap_or_default()
    }

    /// Top-level `;` tokens (statement separators).
    pub(super) fn statement_separators(&self) -> usize {
        let semicolon = Token::Ascii59 as i32;
        self.tokens.iter().filter(|t| t.token == semicolon).count()
    }

    /// Does a plain string (`'...'` or `N'...'`, not `E''`, `U&''` or a dollar quote) hold a
    /// backslash? Only then does the text read differently with `standard_conforming_strings`
    /// off.
    pub(super) fn depends_on_standard_strings(&self) -> bool {
        let sconst = Token::Sconst as i32;
        self.tokens.iter().any(|t| {
            let b = self.bytes(t);
            t.token == sconst && b.first() == Some(&b'\'') && b.contains(&b'\\')
        })
    }

    /// The text of `span` normalised: comments dropped, a single space wherever tokens were
    /// apart, nothing where they touched.
    pub(super) fn normalized(&self, span: Range<usize>) -> String {
        let mut out = String::with_capacity(span.len());
        let mut prev_end: Option<usize> = None;
        for t in &self.tokens {
            let r = range(t);
            if r.start < span.start || r.end > span.end {
                continue;
            }
            if is_comment(t.token) {
                continue;
            }
            if prev_end.is_some_and(|p| r.start > p) {
                out.push(' ');
            }
            out.push_str(self.sql.get(r.clone()).unwrap_or_default());
            prev_end = Some(r.end);
        }
        out
    }
}

/// Could a dollar-quote tag in `sql` hold U+FFFD? The gateway receives the text decoded with
/// invalid UTF-8 replaced by U+FFFD, so two different tags of invalid bytes look the same to it
/// while the server (in a single-byte client encoding) tells them apart. Read on the raw text, so
/// it holds for every reading of it: a `$`, tag characters among which a U+FFFD, a `$`.
pub(super) fn has_undecodable_dollar_tag(sql: &str) -> bool {
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        rest = rest.get(i + 1..).unwrap_or_default();
        let tag: &str = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || !c.is_ascii()))
            .next()
            .unwrap_or_default();
        if tag.contains('\u{fffd}') && rest.get(tag.len()..).is_some_and(|r| r.starts_with('$')) {
            return true;
        }
    }
    false
}

/// `text` with whitespace runs collapsed to one space and trimmed, for text the scanner
/// cannot read with `standard_conforming_strings` on.
pub(super) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What [`cache_key`] found out while building a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey {
    /// At least one number literal was blanked: the key stands for every text that differs
    /// only in its numbers.
    pub numbers: bool,
    /// The text reads differently with `standard_conforming_strings` off (a plain string holds
    /// a backslash): its verdict may not stand for other texts.
    pub reading_dependent: bool,
}

/// Writes the verdict cache key of `sql` into `out` (cleared first): the exact token stream
/// PostgreSQL's scanner reads, comments left out and number literals blanked, encoded so that
/// no two different token streams give the same bytes. Each token is its kind (two bytes), a
/// flag byte (bit 0: whitespace or a comment came before it; bit 1: a blanked number) and,
/// unless blanked, the length (four bytes) and exact bytes of its source text.
///
/// `None` when the scanner rejects the text. Two texts with the same key have the same tokens
/// in the same places except for number values, so the grammar builds the same tree for both
/// with only number constants differing.
pub fn cache_key(sql: &str, out: &mut Vec<u8>) -> Option<CacheKey> {
    out.clear();
    let lexed = Lexed::scan(sql).ok()?;
    let mut facts = CacheKey {
        numbers: false,
        reading_dependent: lexed.depends_on_standard_strings(),
    };
    let mut prev_end: Option<usize> = None;
    let mut gap = false;
    for t in &lexed.tokens {
        let r = range(t);
        gap |= prev_end.is_some_and(|p| r.start > p);
        prev_end = Some(r.end);
        if is_comment(t.token) {
            gap = true;
            continue;
        }
        let kind = u16::try_from(t.token).ok()?;
        out.extend_from_slice(&kind.to_le_bytes());
        let number = is_number(t.token);
        out.push(u8::from(gap) | (u8::from(number) << 1));
        gap = false;
        if number {
            facts.numbers = true;
            continue;
        }
        let bytes = lexed.bytes(t);
        let len = u32::try_from(bytes.len()).ok()?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Some(facts)
}

/// The tokens of `sql` as (kind, source text unless a number, whether whitespace or a comment
/// came before), comments left out: what [`cache_key`] encodes, built without the encoding so
/// tests can hold one against the other.
#[cfg(test)]
pub(crate) fn token_stream(sql: &str) -> Option<Vec<(i32, Option<String>, bool)>> {
    let lexed = Lexed::scan(sql).ok()?;
    let mut out = Vec::new();
    let mut prev_end: Option<usize> = None;
    let mut gap = false;
    for t in &lexed.tokens {
        let r = range(t);
        gap |= prev_end.is_some_and(|p| r.start > p);
        prev_end = Some(r.end);
        if is_comment(t.token) {
            gap = true;
            continue;
        }
        let text = (!is_number(t.token)).then(|| sql.get(r).unwrap_or_default().to_owned());
        out.push((t.token, text, gap));
        gap = false;
    }
    Some(out)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn key(sql: &str) -> Vec<u8> {
        let mut out = Vec::new();
        cache_key(sql, &mut out).unwrap();
        out
    }

    #[test]
    fn the_reported_collision_pair_has_two_keys() {
        let allowed = "select 'a'' ; delete from t where id = ''3'' ; select ''b', 1";
        let attack = "select 'a' ; delete from t where id = '3' ; select 'b', 1";
        assert_ne!(key(allowed), key(attack));
    }

    #[test]
    fn numbers_are_blanked_and_nothing_else() {
        assert_eq!(key("select 1 + 2.5"), key("select 99 + 3.75"));
        // Integer and float literals are different tokens.
        assert_ne!(key("select 1"), key("select 1.0"));
        // Strings, identifiers, parameters and spacing are kept.
        assert_ne!(key("select '1'"), key("select '2'"));
        assert_ne!(key("select $1"), key("select $2"));
        assert_ne!(key("select a1"), key("select a2"));
        assert_ne!(key("select 1+2"), key("select 1 + 2"));
        // Comments are dropped but still separate tokens.
        assert_eq!(key("select 1 /* x */ + 2"), key("select 1 -- y\n+ 2"));
        assert_eq!(key("select 1 /* x */ + 2"), key("select 1 + 2"));
    }

    #[test]
    fn odd_lexing_keeps_keys_apart() {
        let texts = [
            "select $a$ ; $a$",
            "select $b$ ; $b$",
            "select $$ ; $$",
            "select ' ; '",
            "select E' ; '",
            "select U&' ; '",
            "select \" ; \"",
            "select /* ; */ 1",
            "select $\u{20ac}$ --$\u{20ac}$ ; drop table t",
            "select $1",
            "select 'it''s'",
            "select 'it' 's'",
        ];
        for (i, a) in texts.iter().enumerate() {
            for b in texts.iter().skip(i + 1) {
                assert_ne!(key(a), key(b), "{a} / {b}");
            }
        }
    }

    #[test]
    fn backslash_in_a_plain_string_makes_the_reading_depend_on_the_setting() {
        let mut out = Vec::new();
        for (sql, dependent) in [
            ("select 'a\\b'", true),
            ("select n'a\\b'", true),
            ("select E'a\\b'", false),
            ("select $$a\\b$$", false),
            ("select 'ab' -- \\", false),
            ("select \"a\\b\"", false),
        ] {
            let k = cache_key(sql, &mut out).unwrap();
            assert_eq!(k.reading_dependent, dependent, "{sql}");
        }
    }

    #[test]
    fn dollar_tags_of_replacement_characters() {
        for (sql, suspect) in [
            ("select $\u{fffd}$ x $\u{fffd}$", true),
            ("select $a\u{fffd}b$ x $a\u{fffd}b$", true),
            ("select '$\u{fffd}$'", true),
            ("select '\u{fffd}', $a$ x $a$", false),
            ("select $1, '\u{fffd}'", false),
            ("select $\u{fffd} ", false),
        ] {
            assert_eq!(has_undecodable_dollar_tag(sql), suspect, "{sql}");
        }
    }

    #[test]
    fn normalized_text_drops_comments_and_collapses_gaps() {
        let sql = "  DrOp/**/TaBlE   x -- c\n ;";
        let l = Lexed::scan(sql).unwrap();
        assert_eq!(l.normalized(0..sql.len()), "DrOp TaBlE x ;");
        assert_eq!(collapse_whitespace(" a \n b "), "a b");
    }
}
