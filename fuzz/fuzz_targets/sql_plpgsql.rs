//! Arbitrary text as the body of a DO block, a PL/pgSQL function, a trigger function and a SQL
//! function, through analysis (PostgreSQL's PL/pgSQL parser, then every SQL piece). No input
//! may panic, and a body that cannot be read is marked unverifiable, never silently passed.
#![no_main]

use hoop_server::policy::sql;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if body.contains("$fz$") {
        return;
    }
    for text in [
        format!("DO $fz${body}$fz$"),
        format!("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fz${body}$fz$"),
        format!("CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $fz${body}$fz$"),
        format!("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $fz${body}$fz$"),
    ] {
        for info in sql::analyze(&text) {
            // The wrapper always parses: a body that does not is unverifiable.
            assert!(info.parsed || info.unverifiable.is_some(), "{text:?}");
        }
    }
});
