//! Arbitrary text through SQL analysis in both readings and the guardrails. No input may
//! panic, every statement's span lies in the text, and a statement the gateway cannot vouch for
//! is blocked by every rule set that can deny something.
#![no_main]

use std::sync::LazyLock;

use hoop_server::policy::Verdict;
use hoop_server::policy::guardrails::Guardrails;
use hoop_server::policy::sql::{self, Reading, StatementKind};
use libfuzzer_sys::fuzz_target;

static RULES: LazyLock<Vec<Guardrails>> = LazyLock::new(|| {
    ["read-only", "no-ddl", "no-unbounded-writes", "no-admin"]
        .iter()
        .map(|n| Guardrails::resolve(&[n.to_string()], &[]).expect("built-in rule set"))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for reading in [Reading::Standard, Reading::BackslashEscapes] {
        let infos = sql::analyze_with(text, reading);
        for info in &infos {
            assert!(info.span.start <= info.span.end && info.span.end <= text.len());
            assert!(info.parsed || info.unverifiable.is_some(), "{info:?}");
            if info.kind == StatementKind::TooLong {
                assert!(info.unverifiable.is_some());
            }
        }
        let unverifiable = infos.iter().any(|i| i.unverifiable.is_some());
        for rules in RULES.iter() {
            let verdict = rules.check_analyzed(&infos, &|_| None);
            if unverifiable {
                assert!(matches!(verdict, Verdict::Block { .. }), "{text:?}: {verdict:?}");
            }
        }
    }
});
