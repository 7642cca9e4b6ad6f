//! Guardrail cost per statement, the way the PostgreSQL adapter asks for it
//! (`Policy::check_sql`), with the `no-ddl` and `no-unbounded-writes` rule sets `bench/pg.sh`
//! uses:
//! - `parse_every_time`: what a statement costs without the allow cache (`sql::analyze` plus
//!   the rule sets): every statement a new shape;
//! - `simple_protocol`: pgbench's `-M simple` statement with a new number each time: tokenized,
//!   then its shape is found in the cache;
//! - `extended_protocol`: pgbench's `-M extended` Parse text, the same each time: an exact-text
//!   hit, nothing tokenized.
//!
//! Run: `cargo bench -p hoop-server --bench guardrails`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hoop_server::policy::Policy;
use hoop_server::policy::guardrails::Guardrails;
use hoop_server::policy::sql;

fn bench(c: &mut Criterion) {
    let names = ["no-ddl".to_string(), "no-unbounded-writes".to_string()];
    let policy = Policy::compile(&names, &[], &[], &[], &[]).unwrap_or_default();
    let rules = Guardrails::resolve(&names, &[]).unwrap_or_default();
    let mut n = 0u64;
    let mut g = c.benchmark_group("guardrails");
    g.bench_function("parse_every_time", |b| {
        b.iter(|| {
            n += 1;
            let text = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n};");
            black_box(rules.check_analyzed(&sql::analyze(&text), &|_| None))
        })
    });
    g.bench_function("simple_protocol", |b| {
        b.iter(|| {
            n += 1;
            let text = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n};");
            black_box(policy.check_sql(&text, &|_| None))
        })
    });
    let text = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
    g.bench_function("extended_protocol", |b| {
        b.iter(|| black_box(policy.check_sql(black_box(text), &|_| None)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
