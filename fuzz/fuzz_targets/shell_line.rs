//! Arbitrary text through the SSH command judge: the built-in deny set, an allow-list, the
//! scp-transfer test. Nothing may abort (the parser recurses, so deep nesting must be refused
//! before it runs out of stack; a panic inside the parser is a refusal, see HOOK), judging is
//! deterministic, a line keeps its verdict when wrapped in `sh -c '...'`, and a line the
//! scp-transfer test accepts is one an allow-list of `scp` admits.
#![no_main]

use std::sync::LazyLock;

use hoop_server::policy::Verdict;
use hoop_server::policy::shell::{ShellGuardrailConfig, ShellGuardrails, is_scp_transfer};
use libfuzzer_sys::fuzz_target;

fn allow(name: &str, programs: &[&str]) -> ShellGuardrails {
    let set = ShellGuardrailConfig {
        name: name.into(),
        allow: Some(programs.iter().map(|p| p.to_string()).collect()),
        ..ShellGuardrailConfig::default()
    };
    ShellGuardrails::resolve(&[name.into()], &[set]).expect("allow-list compiles")
}

static BUILTIN: LazyLock<ShellGuardrails> = LazyLock::new(|| {
    ShellGuardrails::resolve(&["no-destructive".into()], &[]).expect("built-in set compiles")
});
static READONLY: LazyLock<ShellGuardrails> = LazyLock::new(|| allow("ro", &["ls", "cat", "grep"]));
static SCP: LazyLock<ShellGuardrails> = LazyLock::new(|| allow("scp", &["scp"]));

fn blocked(v: &Verdict) -> bool {
    matches!(v, Verdict::Block { .. })
}

fn reason(v: &Verdict) -> &str {
    match v {
        Verdict::Block { reason, .. } => reason,
        _ => "",
    }
}

/// hoopd unwinds on panic, and the judge turns a panic in the parser's thread into a refusal.
/// libFuzzer's hook aborts on any panic; this one keeps aborting for every other thread, so a
/// parser panic is judged as in the gateway (and counted in the log) rather than ending the run.
static HOOK: LazyLock<()> = LazyLock::new(|| {
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("hoop-shell-judge") {
            eprintln!("parser panic contained: {info}");
            return;
        }
        abort_hook(info);
    }));
});

fuzz_target!(|data: &[u8]| {
    LazyLock::force(&HOOK);
    // Exec commands are bytes; the gateway judges their lossy UTF-8 text.
    if data.len() > 4096 {
        return;
    }
    let line = String::from_utf8_lossy(data);
    let _ = BUILTIN.check(&line);
    let v = READONLY.check(&line);
    assert_eq!(v, READONLY.check(&line), "judging is not deterministic");

    // The same line as a code string: same verdict, unless the extra level or the quoting
    // hits a limit.
    if !line.trim().is_empty() {
        let wrapped = format!("sh -c '{}'", line.replace('\'', r"'\''"));
        let w = READONLY.check(&wrapped);
        let limit = ["nested more than", "longer than", "nests more than"]
            .iter()
            .any(|l| reason(&w).contains(l));
        assert!(
            blocked(&v) == blocked(&w) || limit,
            "{line:?}: {v:?} but sh -c gives {w:?}"
        );
    }

    if is_scp_transfer(&line) {
        assert_eq!(SCP.check(&line), Verdict::Allow, "{line:?} is a transfer scp may not run");
    }
});
