//! Masking throughput, in result rows per second on one core, the way the PostgreSQL adapter
//! drives it: column rules decided once per result description, then every other text value
//! of every row through `Masker::mask_into` with one reused output buffer.
//!
//! A "typical row" has eight text columns: integer id, name, e-mail, a free-text note of about
//! 80 characters, a date, an amount, a status word, a city. Scenarios:
//! - `no_hits`: the e-mail column is under a column rule (`*.email`), nothing else matches;
//! - `ten_percent`: the same, with a card number or address in the note of one row in ten;
//! - `email_detected`: no column rule, so the e-mail cell of every row is found and masked by
//!   the detector (and one note in ten holds a card or address);
//! - `long_text`: a row of an id and a 2 KiB note dense with near-misses (digits, dates,
//!   dashes, capitals, underscores) and a few real matches: the worst case per byte;
//! - `hex_hash`: a row of an integer and 32 hex digits, the large result of `bench/pg.sh`
//!   (`select g, md5(g::text)`): hashes, uuids and hex ids, about every other byte a digit.
//!
//! The target is 2 million typical rows per second per core with every detector on.
//! Run: `cargo bench -p hoop-server --bench masking`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hoop_server::policy::masking::{MaskCounts, Masker, MaskingConfig};

const ROWS: usize = 10_000;
const COLUMNS: [&str; 8] = [
    "id", "name", "email", "note", "created", "amount", "status", "city",
];

/// A small deterministic generator, so every run measures the same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

const FIRST: &[&str] = &[
    "Alice", "Bob", "Carla", "Dmitri", "Emeka", "Fatima", "Günther", "Hana",
];
const LAST: &[&str] = &[
    "Johnson", "Okafor", "Silva", "Nguyen", "Müller", "Kowalski", "Tanaka",
];
const CITIES: &[&str] = &[
    "Lisbon",
    "São Paulo",
    "Springfield",
    "Osaka",
    "Lagos",
    "Kraków",
];
const STATUS: &[&str] = &["active", "pending", "shipped", "cancelled", "refunded"];
const NOTES: &[&str] = &[
    "Customer asked to change the delivery window to mornings; left at reception on ",
    "Order #A-2024-{n} split into two parcels, second one delayed by the carrier until ",
    "Refund of {n}.50 EUR approved by support after the damaged item was returned on ",
    "Called twice about invoice INV-{n}, no answer; will retry next week, see ticket ",
    "Loyal customer since 2019, prefers e-mail contact, upgraded to premium plan on ",
];
const HITS: &[&str] = &[
    " card 4111 1111 1111 1111 on file",
    " paid with 5555-5555-5555-4444",
    " reach me at jane.roe+orders@example.org",
    " old card 378282246310005 expired",
    " cc: billing@example.co.uk",
];

fn note(rng: &mut Rng, hit: bool) -> String {
    let n = 10_000 + rng.below(89_999);
    let mut s = rng.pick(NOTES).replace("{n}", &n.to_string());
    s.push_str(&format!(
        "2024-{:02}-{:02}",
        1 + rng.below(12),
        1 + rng.below(28)
    ));
    if hit {
        s.push_str(rng.pick(HITS));
    }
    s
}

/// Rows as the adapter sees them: one byte string per column.
fn typical_rows(seed: u64, hit_every: usize) -> Vec<Vec<Vec<u8>>> {
    let mut rng = Rng(seed);
    (0..ROWS)
        .map(|i| {
            let first = rng.pick(FIRST);
            let last = rng.pick(LAST);
            let hit = hit_every > 0 && i % hit_every == 0;
            vec![
                (100_000 + i).to_string(),
                format!("{first} {last}"),
                format!(
                    "{}.{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
                note(&mut rng, hit),
                format!("2024-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
                format!("{}.{:02}", rng.below(5000), rng.below(100)),
                rng.pick(STATUS).to_string(),
                rng.pick(CITIES).to_string(),
            ]
            .into_iter()
            .map(String::into_bytes)
            .collect()
        })
        .collect()
}

/// A 2 KiB note full of near-misses, with a real match now and then.
fn long_rows(seed: u64, rows: usize) -> Vec<Vec<Vec<u8>>> {
    let pieces: &[&str] = &[
        "Ticket ABC-1234 reopened 2024-03-15 10:30:00 by J. Smith",
        "ref 1234-5678-9012 (not a card), tel ext 4455",
        "AMOUNT 1,234,567.89 USD; ratio 0.30000000000000004",
        "build v1.2.3.4 on host db_primary-01, job_id 998877",
        "see https://example.com/path?q=1&x=2 and foo@bar (no tld)",
        "Order 20240315000123 ships with 3 items; SKU A1B2-C3D4",
        "User-Agent Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        "IP 192.168.100.254 port 5432 pid 31337 xid 4000000001",
    ];
    let hits: &[&str] = &[
        "card 4111-1111-1111-1111",
        "ssn 123-45-6789",
        "key AKIAIOSFODNN7EXAMPLE",
        "mail ops@example.net",
    ];
    let mut rng = Rng(seed);
    (0..rows)
        .map(|i| {
            let mut s = String::with_capacity(2200);
            while s.len() < 2048 {
                s.push_str(rng.pick(pieces));
                s.push_str(". ");
                if rng.below(16) == 0 {
                    s.push_str(rng.pick(hits));
                    s.push_str(". ");
                }
            }
            vec![(1000 + i).to_string().into_bytes(), s.into_bytes()]
        })
        .collect()
}

/// Rows of an integer and an md5-like hex string.
fn hex_rows(seed: u64) -> Vec<Vec<Vec<u8>>> {
    let mut rng = Rng(seed);
    (0..ROWS)
        .map(|i| {
            let hex: Vec<u8> = (0..32)
                .map(|_| {
                    b"0123456789abcdef"
                        .get(rng.below(16))
                        .copied()
                        .unwrap_or(b'0')
                })
                .collect();
            vec![(1 + i).to_string().into_bytes(), hex]
        })
        .collect()
}

fn masker(columns: &[&str]) -> Option<Masker> {
    Masker::compile(&[MaskingConfig {
        name: "pii".into(),
        detectors: ["credit_card", "email", "ssn", "phone", "iban", "secrets"]
            .map(String::from)
            .to_vec(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        replacement: None,
    }])
    .ok()
}

/// What the adapter does per result set: decide column rules once, then mask every row.
fn mask_rows(
    m: &Masker,
    plan: &[Option<&[u8]>],
    rows: &[Vec<Vec<u8>>],
    out: &mut Vec<u8>,
) -> usize {
    let mut counts = MaskCounts::default();
    let mut bytes = 0;
    for row in rows {
        for (cell, rule) in row.iter().zip(plan) {
            let sent: &[u8] = match rule {
                Some(replacement) => {
                    counts.record_column();
                    replacement
                }
                None if m.mask_into(cell, out, &mut counts) => out,
                None => cell,
            };
            bytes += black_box(sent).len();
        }
    }
    black_box(counts);
    bytes
}

fn bench(c: &mut Criterion) {
    let (Some(with_rule), Some(detectors_only)) = (masker(&["*.email"]), masker(&[])) else {
        return;
    };
    let plan = |m: &Masker, cols: &[&str]| -> Vec<Option<Vec<u8>>> {
        cols.iter()
            .map(|col| {
                m.column_replacement(Some("customers"), col)
                    .map(<[u8]>::to_vec)
            })
            .collect()
    };
    let ruled_plan = plan(&with_rule, &COLUMNS);
    let open_plan = plan(&detectors_only, &COLUMNS);
    let long_plan = plan(&detectors_only, &["id", "note"]);

    let clean = typical_rows(0x9e37_79b9_7f4a_7c15, 0);
    let tenth = typical_rows(0x2545_f491_4f6c_dd1d, 10);
    let long = long_rows(0x1234_5678_9abc_def1, 1000);
    let hex = hex_rows(0x0bad_5eed_f00d_cafe);
    let hex_plan = plan(&detectors_only, &["g", "md5"]);

    let mut g = c.benchmark_group("masking");
    let mut out = Vec::with_capacity(4096);
    for (name, m, p, rows) in [
        ("no_hits", &with_rule, &ruled_plan, &clean),
        ("ten_percent", &with_rule, &ruled_plan, &tenth),
        ("email_detected", &detectors_only, &open_plan, &tenth),
        ("long_text", &detectors_only, &long_plan, &long),
        ("hex_hash", &detectors_only, &hex_plan, &hex),
    ] {
        let p: Vec<Option<&[u8]>> = p.iter().map(|x| x.as_deref()).collect();
        g.throughput(Throughput::Elements(rows.len() as u64));
        g.bench_function(name, |b| b.iter(|| mask_rows(m, &p, rows, &mut out)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
