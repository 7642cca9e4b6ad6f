//! SQL analysis cost per statement, the way the PostgreSQL adapter asks for it
//! (`Policy::check_sql`), with the `no-ddl` and `no-unbounded-writes` rule sets `bench/pg.sh`
//! uses.
//!
//! - `scan/*`: PostgreSQL's scanner and the cache key only (what a cache hit by shape costs
//!   before the set lookup);
//! - `analyze/*`: a full analysis (parse, tree walk) of the same texts;
//! - `check_sql/*`: through the policy and its cache: `miss` is a new text every time (a string
//!   literal changes, so no shape matches; `tpcb` has one in each of its five statements but
//!   the last, `2k` in one place), `shape_hit` is pgbench's `-M simple` statement with
//!   a new number every time, `text_hit` is pgbench's `-M extended` Parse text, the same every
//!   time.
//!
//! Texts: `short` (pgbench's SELECT), `tpcb` (pgbench's default transaction, five statements
//! sent one by one), `2k` (a 2 KiB statement with joins, CASE, functions and a subquery).
//!
//! Run: `cargo bench -p hoop-server --bench guardrails`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hoop_server::policy::Policy;
use hoop_server::policy::sql;

const SHORT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";

const TPCB: &[&str] = &[
    "UPDATE pgbench_accounts SET abalance = abalance + -2139 WHERE aid = 48213;",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    "UPDATE pgbench_tellers SET tbalance = tbalance + -2139 WHERE tid = 7;",
    "UPDATE pgbench_branches SET bbalance = bbalance + -2139 WHERE bid = 1;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2139, CURRENT_TIMESTAMP);",
];

fn two_kib() -> String {
    let mut sql = String::from(
        "SELECT o.id, o.created_at, c.name, c.email, coalesce(sum(l.qty * l.price), 0) AS total, \
         CASE WHEN o.status = 'paid' THEN 'done' WHEN o.status = 'open' THEN 'pending' ELSE 'other' END AS state, \
         (SELECT count(*) FROM returns r WHERE r.order_id = o.id AND r.created_at > now() - interval '30 days') AS returns \
         FROM orders o JOIN customers c ON c.id = o.customer_id LEFT JOIN lines l ON l.order_id = o.id \
         WHERE o.created_at >= date_trunc('month', now()) AND c.country = ANY (ARRAY['DE', 'FR', 'NL']) ",
    );
    let mut i = 0;
    while sql.len() < 1900 {
        sql.push_str(&format!(
            "AND (o.note IS NULL OR lower(o.note) NOT LIKE '%test{i}%') "
        ));
        i += 1;
    }
    sql.push_str("GROUP BY o.id, c.name, c.email ORDER BY total DESC LIMIT 50;");
    sql
}

fn policy() -> Policy {
    let names = ["no-ddl".to_string(), "no-unbounded-writes".to_string()];
    Policy::compile(&names, &[], &[], &[], &[]).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let long = two_kib();
    let texts: [(&str, Vec<&str>); 3] = [
        ("short", vec![SHORT]),
        ("tpcb", TPCB.to_vec()),
        ("2k", vec![long.as_str()]),
    ];
    let mut g = c.benchmark_group("scan");
    let mut key = Vec::new();
    for (name, stmts) in &texts {
        g.bench_function(*name, |b| {
            b.iter(|| {
                for s in stmts {
                    black_box(sql::cache_key(black_box(s), &mut key));
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("analyze");
    for (name, stmts) in &texts {
        g.bench_function(*name, |b| {
            b.iter(|| {
                for s in stmts {
                    black_box(sql::analyze(black_box(s)));
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("check_sql");
    let p = policy();
    let mut n = 0u64;
    for (name, stmts) in &texts {
        g.bench_function(format!("miss/{name}"), |b| {
            b.iter(|| {
                for s in stmts {
                    n += 1;
                    // A new string literal: neither the text nor its shape was seen.
                    let text = s
                        .replace("48213", &format!("48213 + length('v{n}')"))
                        .replace("%test0%", &format!("%v{n}%"));
                    black_box(p.check_sql(&text, &|_| None));
                }
            })
        });
    }
    g.bench_function("shape_hit/short", |b| {
        b.iter(|| {
            n += 1;
            let text = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n};");
            black_box(p.check_sql(&text, &|_| None))
        })
    });
    g.bench_function("shape_hit/tpcb", |b| {
        b.iter(|| {
            n += 1;
            for s in TPCB {
                let text = s.replace("48213", &n.to_string());
                black_box(p.check_sql(&text, &|_| None));
            }
        })
    });
    let text = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
    g.bench_function("text_hit/short", |b| {
        b.iter(|| black_box(p.check_sql(black_box(text), &|_| None)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
