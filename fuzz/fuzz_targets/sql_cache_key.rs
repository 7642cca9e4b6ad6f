//! Two texts (the input split at its first 0xff byte) through the verdict cache key. No input
//! may panic; when the keys are equal, a policy that judged the first text first must give the
//! second the verdict it gives it fresh, under every built-in rule set.
#![no_main]

use hoop_server::policy::{Policy, Verdict};
use hoop_server::policy::sql;
use libfuzzer_sys::fuzz_target;

fn policy(name: &str) -> Policy {
    Policy::compile(&[name.to_string()], &[], &[], &[], &[]).expect("built-in rule set")
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|&c| c == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else {
        return;
    };
    let (mut ka, mut kb) = (Vec::new(), Vec::new());
    let (Some(_), Some(_)) = (sql::cache_key(a, &mut ka), sql::cache_key(b, &mut kb)) else {
        return;
    };
    if ka != kb {
        return;
    }
    for name in ["read-only", "no-ddl", "no-unbounded-writes", "no-admin"] {
        let cached = policy(name);
        let _ = cached.check_sql(a, &|_| None);
        let via_cache = cached.check_sql(b, &|_| None).0;
        let alone = policy(name).check_sql(b, &|_| None).0;
        assert_eq!(
            matches!(via_cache, Verdict::Allow),
            matches!(alone, Verdict::Allow),
            "{name}: {a:?} then {b:?}"
        );
    }
});
