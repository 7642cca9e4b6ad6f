//! What a line runs: every simple command parsed ([`super::syntax`]), resolved through its
//! wrappers and code strings ([`super::programs`]), with what only a running shell could
//! settle sorted into reasons to refuse.

use super::programs::{Extra, Invocation, Program, Resolver, find_starts};
use super::syntax::{Finding, Parsed};

/// What a line runs, as far as its text tells.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub invocations: Vec<Invocation>,
    /// Stage ids in the order data flows through them (see [`Parsed::flows`]).
    pub flows: Vec<Vec<usize>>,
    /// Why the gateway cannot tell what runs (refused by any rule set with rules).
    pub unresolved: Vec<String>,
    /// Constructs that can run code hidden in values (refused by allow-lists).
    pub hazards: Vec<String>,
}

/// Environment variables an allow-listed command may set: they change formatting, not which
/// code runs.
const HARMLESS_VARIABLES: &[&str] = &[
    "LANG", "LANGUAGE", "TZ", "TERM", "COLUMNS", "LINES", "NO_COLOR",
];

/// Is assigning `name` able to change which code runs? Every variable with that power (PATH,
/// LD_PRELOAD, BASH_ENV, IFS, PS4, PAGER, GIT_*, PYTHON*, ...) is upper case by convention;
/// lower-case names are the shell's own variables.
pub(crate) fn risky_assignment(name: &str) -> bool {
    name.chars().any(|c| c.is_ascii_uppercase())
        && !HARMLESS_VARIABLES.contains(&name)
        && !name.starts_with("LC_")
}

/// Analyses one command line.
pub(crate) fn analyze(line: &str) -> Analysis {
    let mut parsed = Parsed::default();
    if let Err(e) = parsed.parse(line, &[], 0) {
        parsed.unresolved(e);
    }
    let mut invocations = Vec::new();
    let mut i = 0;
    while let Some(s) = parsed.simples.get(i).cloned() {
        Resolver {
            parsed: &mut parsed,
            out: &mut invocations,
        }
        .simple(&s);
        i += 1;
    }
    resolve_inputs(&mut invocations, &parsed.flows);
    let mut a = Analysis {
        invocations,
        flows: std::mem::take(&mut parsed.flows),
        ..Analysis::default()
    };
    for name in &parsed.assignments {
        if risky_assignment(name) {
            a.hazards.push(format!(
                "the line sets {name}, which can change what programs run; only {} and LC_* may be set",
                HARMLESS_VARIABLES.join(", ")
            ));
        }
    }
    for f in parsed.findings {
        match f {
            Finding::Unresolved(w) => a.unresolved.push(w),
            Finding::Hazard(w) => a.hazards.push(w),
        }
    }
    a
}

/// Gives `xargs` what its input is known to hold: the paths `find` prints, or the words
/// `echo` prints; anything else stays unknown.
fn resolve_inputs(invocations: &mut [Invocation], flows: &[Vec<usize>]) {
    let producers_of = |inv: &Invocation| -> Vec<usize> {
        flows
            .iter()
            .filter_map(|flow| {
                let at = flow.iter().position(|s| inv.stages.contains(s))?;
                flow.get(at.checked_sub(1)?).copied()
            })
            .collect()
    };
    let mut answers = Vec::new();
    for (k, inv) in invocations.iter().enumerate() {
        if inv.extra != Extra::FromInput {
            continue;
        }
        let producers = producers_of(inv);
        let feeding: Vec<&Invocation> = invocations
            .iter()
            .filter(|p| p.stages.iter().any(|s| producers.contains(s)))
            .collect();
        answers.push((k, input_of(&feeding)));
    }
    for (k, extra) in answers {
        if let Some(inv) = invocations.get_mut(k) {
            inv.extra = extra;
        }
    }
}

fn input_of(feeding: &[&Invocation]) -> Extra {
    let named = |inv: &Invocation, n: &str| matches!(&inv.program, Program::Named { base, .. } if base == n);
    if feeding.is_empty() {
        return Extra::Unknown;
    }
    if feeding.iter().all(|p| named(p, "find")) {
        let mut starts = Vec::new();
        for p in feeding {
            let s = find_starts(&p.args);
            if s.is_empty() {
                starts.push(".".to_string());
            }
            for w in s {
                match w.literal() {
                    Some(t) if !t.starts_with('-') => starts.push(t.to_string()),
                    _ => return Extra::Unknown,
                }
            }
        }
        return Extra::Under(starts);
    }
    if let [echo] = feeding
        && named(echo, "echo")
    {
        let mut words = Vec::new();
        for a in &echo.args {
            match a.literal() {
                Some(t) => words.extend(t.split_whitespace().map(str::to_string)),
                None => return Extra::Unknown,
            }
        }
        return Extra::Words(words);
    }
    Extra::Unknown
}
