//! Property tests of the verdict cache key: texts with odd lexing, and pairs derived from them
//! by the edits that fooled the old key (a quote doubled or undoubled, a dollar tag changed, a
//! backslash added, a number changed, spacing changed).
//!
//! For every pair: equal keys imply equal token streams except number values (so the encoding
//! is injective), and, unless the analysis looked at a number's value, the same statements,
//! kinds and verdicts; and a policy that cached the first text gives the second the verdict it
//! gives it fresh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;

use super::sql::{self, StatementInfo};
use super::{Policy, Verdict};

/// Fragments chosen for how they lex, not for meaning.
const FRAGMENTS: &[&str] = &[
    "select",
    "delete",
    "from",
    "t",
    "drop",
    "table",
    "where",
    "id",
    "do",
    "execute",
    "prepare",
    "p",
    "as",
    "into",
    "u",
    "pg_read_file",
    "nextval",
    "set",
    "role",
    "copy",
    "to",
    "stdout",
    "\"q\"\"x\"",
    "U&\"d\\0061\"",
    "a1",
    "t2",
    "\"drop\"",
    "1",
    "42",
    "3.5",
    "1e3",
    "0",
    "'a'",
    "'a''b'",
    "''",
    "'\\'",
    "'a\\'b'",
    "E'a\\'b'",
    "E'\\\\'",
    "U&'\\0041'",
    "$$x$$",
    "$a$ ; $a$",
    "$a1$ x $a1$",
    "$€$ --$€$",
    "$1",
    "'1'",
    ";",
    ",",
    "(",
    ")",
    "=",
    "+",
    ".",
    "::",
    "--c\n",
    "/* c */",
    "/* /* n */ */",
    "'",
    "$$",
    "\\",
];

fn text() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        (
            prop::sample::select(FRAGMENTS),
            prop::sample::select(&[" ", "", "\n"][..]),
        )
            .prop_map(|(f, sep)| format!("{f}{sep}")),
        1..14,
    )
}

/// One edit of the kind that moved statement boundaries past the old key.
fn edit(parts: &[String], which: usize, how: u8) -> Vec<String> {
    let mut out = parts.to_vec();
    let i = which % out.len();
    let p = &out[i];
    out[i] = match how % 9 {
        0 => p.replace('\'', "''"),
        1 => p.replace("''", "'"),
        2 => p.replace("$a$", "$b$").replace("$$", "$x$"),
        3 => p.replace('\'', "\\'"),
        4 => p.replace('1', "7").replace('4', "9"),
        5 => p.replace(' ', "  ").replace('\n', " "),
        6 => p.replace('$', "'"),
        // Tokens that touched now apart, and apart ones touching.
        7 => p.trim_end().to_owned(),
        _ => format!("{p} "),
    };
    out
}

/// What must be equal between texts of one key: the analysis without number values and
/// positions (those differ with the numbers).
fn projection(infos: &[StatementInfo]) -> Vec<String> {
    infos
        .iter()
        .map(|i| {
            format!(
                "{:?}|{:?}|{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|{:?}|{}|{:?}",
                i.kind,
                i.class,
                i.label,
                i.class_label,
                i.tag,
                i.keywords,
                i.unbounded_write,
                i.functions,
                i.tables,
                i.parsed,
                i.reading,
                i.executes,
                i.unverifiable.is_some(),
                i.copy
                    .as_ref()
                    .map(|c| (&c.format, c.direction, c.endpoint, &c.relation)),
            )
        })
        .collect()
}

/// Tokens as (kind, source bytes unless a number, spacing before): compared structurally, not
/// through the key's encoding.
fn tokens(sql: &str) -> Option<Vec<(i32, Option<String>, bool)>> {
    let lexed = super::sql::lex_for_tests(sql)?;
    Some(lexed)
}

fn policies() -> Vec<Policy> {
    ["read-only", "no-ddl", "no-unbounded-writes", "no-admin"]
        .iter()
        .map(|name| Policy::compile(&[name.to_string()], &[], &[], &[], &[]).unwrap())
        .collect()
}

fn key(sql: &str) -> Option<(Vec<u8>, sql::CacheKey)> {
    let mut out = Vec::new();
    let facts = sql::cache_key(sql, &mut out)?;
    Some((out, facts))
}

fn check_pair(a: &str, b: &str) {
    let (Some((ka, fa)), Some((kb, _))) = (key(a), key(b)) else {
        return;
    };
    let (ta, tb) = (tokens(a).unwrap(), tokens(b).unwrap());
    if ka != kb {
        assert_ne!(ta, tb, "different keys for one token stream: {a:?} / {b:?}");
        return;
    }
    assert_eq!(ta, tb, "one key for two token streams: {a:?} / {b:?}");
    let (ia, ib) = (sql::analyze(a), sql::analyze(b));
    let numbers_matter = ia.iter().chain(&ib).any(|i| i.numbers_matter);
    if !numbers_matter {
        assert_eq!(projection(&ia), projection(&ib), "{a:?} / {b:?}");
    }
    // Whatever the analysis: a policy that judged `a` first gives `b` its fresh verdict.
    for (cached, fresh) in policies().into_iter().zip(policies()) {
        let _ = cached.check_sql(a, &|_| None);
        let via_cache = cached.check_sql(b, &|_| None).0;
        let alone = fresh.check_sql(b, &|_| None).0;
        assert_eq!(
            matches!(via_cache, Verdict::Allow),
            matches!(alone, Verdict::Allow),
            "{a:?} then {b:?}: {via_cache:?} / {alone:?} (facts {fa:?})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn equal_keys_mean_equal_tokens_and_verdicts(parts in text(), which in 0usize..32, how in 0u8..9) {
        let a: String = parts.concat();
        let b: String = edit(&parts, which, how).concat();
        check_pair(&a, &b);
    }

    #[test]
    fn numbers_changed_share_a_key(parts in text(), n in 0u32..100_000) {
        let a: String = parts.concat();
        let b = a.replace("42", &n.to_string());
        check_pair(&a, &b);
    }
}

#[test]
fn the_reported_collision_pair_is_judged_apart() {
    let allowed = "select 'a'' ; delete from t where id = ''3'' ; select ''b', 1";
    let attack = "select 'a' ; delete from t where id = '3' ; select 'b', 1";
    check_pair(allowed, attack);
    let p = Policy::compile(&["read-only".into()], &[], &[], &[], &[]).unwrap();
    assert_eq!(p.check_sql(allowed, &|_| None).0, Verdict::Allow);
    assert!(matches!(
        p.check_sql(attack, &|_| None).0,
        Verdict::Block { .. }
    ));
}
