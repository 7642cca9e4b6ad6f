//! Differential oracle: the gateway's reading of SQL held against PostgreSQL's own.
//!
//! Every guardrail verdict rests on two facts the gateway derives from a text: which statements
//! it holds, and what each one is. The server reports both for a simple Query: one
//! CommandComplete tag per statement it ran, in order, or an error. So each text here is run
//! directly on a scratch database (over the cluster's unix socket, as an unprivileged role, in
//! a transaction that is rolled back) with `standard_conforming_strings` on and off, and
//! compared with `sql::analyze_with` for that setting:
//!
//! - when the gateway says the text does not parse, the server must have run nothing;
//! - when the server rejects the text as a syntax error before running anything, the gateway
//!   must say it does not parse (it would block it);
//! - when the server ran statements, the gateway read the whole text, and its first statements'
//!   command tags are the server's, in order; when the server ran them all, the counts match.
//!
//! Tags are compared before row counts; a few commands report another tag on the wire than
//! they are (`SELECT INTO` and `CREATE TABLE AS` report `SELECT n`, `EXECUTE` reports what it
//! ran, `COMMIT` of a failed transaction reports `ROLLBACK`).
//!
//! Texts: the adversarial suite's, the unit tests' corpus, and 400 generated ones (fixed seed)
//! with odd lexing: dollar quotes with tags of bytes >= 0x80, nested comments, `E''` with
//! backslash escapes, `U&` escapes, doubled quotes, backslashes in plain strings, semicolons
//! inside every kind of quote.

use hoop_server::policy::sql::{self, Reading, StatementInfo};
use hoop_tests::Postgres;
use hoop_tests::wire::{Answer, Wire};

/// Texts of the unit tests (server/src/policy/sql/tests.rs and guardrails.rs).
const UNIT_CORPUS: &[&str] = &[
    "SELECT a, b FROM t WHERE id = $1",
    "insert into t values (1)",
    "update t set a = 1 where id = 2",
    "delete from t where id = 2",
    "create table x (a int)",
    "drop table x",
    "alter table x add column b int",
    "grant select on t to bob",
    "set search_path = public",
    "begin",
    "commit",
    "show search_path",
    "explain select 1",
    "explain delete from t",
    "explain analyze delete from t",
    "set role postgres",
    "copy t to stdout",
    "table orders",
    "values (1), (2)",
    "select * from t for update",
    "select * into newt from t",
    "create table x as select 1",
    "create materialized view v as select 1",
    "merge into t using s on t.id = s.id when matched then delete",
    "truncate t",
    "do $$ begin null; end $$",
    "explain analyze delete from t where a = 1",
    "prepare p as select 1",
    "deallocate all",
    "start transaction read write",
    "savepoint a",
    "rollback to savepoint a",
    "release savepoint a",
    "set work_mem = '1MB'",
    "reset all",
    "set transaction isolation level serializable",
    "set local role none",
    "reset role",
    "select set_config('role', 'postgres', false)",
    "show all",
    "discard plans",
    "listen ch",
    "unlisten *",
    "notify ch, 'x'",
    "select pg_notify('ch', 'x')",
    "declare c cursor for select 1",
    "close all",
    "lock table t in access exclusive mode",
    "analyze t",
    "checkpoint",
    "comment on table t is 'x'",
    "create index i on t (a)",
    "alter table t rename column a to b",
    "create function f() returns int language sql as 'select 1'",
    "create view v as select 1",
    "create schema s",
    "create type ty as (a int)",
    "create sequence s",
    "create policy p on t using (true)",
    "set constraints all deferred",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "with d as (delete from t returning *) insert into u select * from d",
    "copy (delete from t returning *) to stdout",
    "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t",
    "PREPARE p AS DELETE FROM t",
    "select ';' ; select $$;$$; /* ; */ select \";\" -- ;\n; select 1",
    "  -- only a comment\n /* and this */ ;;",
    "select $€$ --$€$ ; drop table t",
    "select $€$ ; $€$, $é$ ; $é$ ; delete from t",
    "select 'a'' ; delete from t where id = ''3'' ; select ''b', 1",
    "select 'a' ; delete from t where id = '3' ; select 'b', 1",
    "selec * from t",
    "select 1; selec 2; drop table t",
    "drop table t; select 'unterminated",
    "DrOp/**/TaBlE x ;;; (",
    "DrOp/**/TaBlE x",
    "DO $$ BEGIN EXECUTE 'drop table t'; END $$",
    "create function f() returns void language sql as $$ delete from t $$",
    "SELECT pg_read_file('/etc/passwd')",
    "select U&\"pg\\005fread_file\"('/etc/passwd')",
    "select U&\"pg!005fread_file\" UESCAPE '!' ('/etc/passwd')",
    "select ('PG_VERSION'::text).pg_read_file",
    "select (a).pg_read_file from t",
    "select t.pg_read_file from t",
    "delete from t where true",
    "delete from t where 1 = 1",
    "delete from t where 't'",
    "update t set a = 1 where not false",
    "merge into t using s on true when matched then delete",
    "merge into t using s on 1 = 1 when matched then update set a = 1",
    "copy t to stdout binary",
    "copy t to stdout with csv",
    "set client_encoding = 'SJIS'",
    "select 'a\\'' ; drop table t; -- '",
    "select 'C:\\temp'",
    "select 'it\\'s'",
    "insert into t values (1) on conflict (id) do update set a = 2",
    "drop tabel x ;;; (",
    "select 'drop table x'",
    "select * from \"drop\"",
    "select 1 -- drop table x",
    "/* drop table x */ select 1",
    "insert into t values (1) on conflict (id) do nothing",
    "select role from t",
    "begin; select 1; commit",
    "select count(*) from t join u on t.id = u.id group by 1 order by 1 limit 5",
    "",
    "-- nothing",
    "update t set a=1 where true",
    "delete from t where 1=1",
    "prepare p as select 1; execute p",
    "prepare p as delete from t where id = 1; execute p",
    "select U&'d\\0061t', E'x\\'y', b'01', x'1F', \"Q\"\"q\", n'nat' /* a /* nested */ b */ -- tail",
];

/// A small fixed-seed generator (xorshift64*), so the stream is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Text inside a quote: semicolons, comment openers, dollars, quotes, backslashes.
const CONTENT: &[&str] = &[
    "a", "b c", ";", " ; ", "--", "/*", "*/", "$", "$$", "€", "é", "\\", "''", "x1", " drop ",
];

fn content(r: &mut Rng) -> String {
    (0..r.below(5)).map(|_| r.pick(CONTENT)).collect()
}

fn literal(r: &mut Rng) -> String {
    match r.below(8) {
        0 | 1 => format!("'{}'", content(r)),
        2 => {
            let esc = ["\\'", "\\\\", "\\n", "\\x41", "\\u0041", "''", ";", "a"];
            let s: String = (0..r.below(4)).map(|_| r.pick(&esc)).collect();
            format!("E'{s}'")
        }
        3 | 4 => {
            let tag = r.pick(&["", "a", "x1", "€", "é_9", "tag", "ü"]);
            let delim = format!("${tag}$");
            let mut body = content(r);
            if body.contains(&delim) || body.ends_with('$') {
                body = "q".into();
            }
            format!("{delim}{body}{delim}")
        }
        5 => {
            if r.below(2) == 0 {
                format!("U&'a\\0041{}'", r.pick(&["", ";", "b"]))
            } else {
                "U&'!0041' UESCAPE '!'".into()
            }
        }
        6 => r.pick(&["1", "42", "3.14", "1e3", "0"]).into(),
        _ => format!("'{}'", r.pick(&["x", "it''s", "a;b"])),
    }
}

fn expr(r: &mut Rng) -> String {
    match r.below(5) {
        0 => format!("{} || {}", literal(r), literal(r)),
        1 => format!("({})", literal(r)),
        2 => format!("length({})", literal(r)),
        _ => literal(r),
    }
}

fn statement(r: &mut Rng) -> String {
    match r.below(9) {
        0 => "show search_path".into(),
        1 => "set work_mem = '4MB'".into(),
        2 => format!("values ({})", expr(r)),
        3 => format!("insert into t (a) values ({})", literal(r)),
        4 => format!(
            "select {} as {}",
            expr(r),
            r.pick(&["a", "\"a;b\"", "\"x\"\"y\"", "U&\"\\0061b\""])
        ),
        5 => format!("select a from t where a = {}", literal(r)),
        _ => {
            let n = 1 + r.below(3);
            let items: Vec<String> = (0..n).map(|_| expr(r)).collect();
            format!("select {}", items.join(", "))
        }
    }
}

fn generated(count: usize) -> Vec<String> {
    let mut r = Rng(0x5eed_5a1f_0dd1_e5e1);
    (0..count)
        .map(|_| {
            let n = 1 + r.below(4);
            let mut text = String::new();
            for i in 0..n {
                if i > 0 {
                    text.push_str(r.pick(&[
                        ";",
                        "; ",
                        ";\n",
                        " ; -- c\n",
                        "; /* c */ ",
                        ";/* a /* b */ c */",
                    ]));
                }
                text.push_str(&statement(&mut r));
            }
            text.push_str(r.pick(&["", ";", " -- tail", " /* tail */", "; -- ; '"]));
            text
        })
        .collect()
}

/// The tag before its counts: `INSERT 0 1` is `INSERT`.
fn wire_tag(tag: &str) -> String {
    tag.split(' ')
        .take_while(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn same_tag(ours: &str, theirs: &str) -> bool {
    ours == theirs
        || (theirs == "SELECT"
            && matches!(
                ours,
                "SELECT INTO" | "CREATE TABLE AS" | "CREATE MATERIALIZED VIEW"
            ))
        || ours == "EXECUTE"
        || (ours == "COMMIT" && theirs == "ROLLBACK")
}

/// What is wrong with the gateway's reading of `text` against the server's answer, if anything.
fn compare(
    text: &str,
    reading: Reading,
    ours: &[StatementInfo],
    server: &Answer,
) -> Option<String> {
    let primary: Vec<&StatementInfo> = ours.iter().filter(|i| i.reading == reading).collect();
    let unparsed = primary.iter().any(|i| !i.parsed);
    // A known limit, on purpose: expressions nested deeper than the gateway decodes are
    // refused although the server runs them (fail closed).
    let too_deep = primary.iter().any(|i| {
        i.unverifiable
            .as_deref()
            .is_some_and(|w| w.contains("nested more deeply"))
    });
    if too_deep {
        return None;
    }
    let theirs: Vec<String> = server.tags.iter().map(|t| wire_tag(t)).collect();
    // Errors of PostgreSQL's scanner and grammar (not of the analysis that follows, which
    // shares SQLSTATE 42601 for some messages).
    let syntax_error = server.tags.is_empty()
        && server.error.as_ref().is_some_and(|(code, message)| {
            code == "42601"
                && [
                    "syntax error",
                    "unterminated",
                    "zero-length",
                    "trailing junk",
                    "invalid Unicode",
                    "Unicode escape",
                    "UESCAPE",
                    "invalid hexadecimal",
                    "invalid octal",
                    "invalid binary",
                ]
                .iter()
                .any(|p| message.starts_with(p))
        });
    let describe = || {
        format!(
            "text {text:?} ({reading:?}):\n  gateway: {:?}\n  server: {theirs:?} {:?}",
            primary
                .iter()
                .map(|i| (i.tag.as_str(), i.parsed))
                .collect::<Vec<_>>(),
            server.error
        )
    };
    if unparsed && (!server.tags.is_empty() || server.error.is_none()) {
        return Some(format!(
            "the gateway cannot parse what the server ran: {}",
            describe()
        ));
    }
    if syntax_error && !unparsed {
        return Some(format!(
            "the server rejects what the gateway parsed: {}",
            describe()
        ));
    }
    if unparsed {
        return None;
    }
    if theirs.len() > primary.len() {
        return Some(format!("the server ran more statements: {}", describe()));
    }
    if server.error.is_none() && !server.empty && theirs.len() != primary.len() {
        return Some(format!("statement counts differ: {}", describe()));
    }
    for (ours, theirs) in primary.iter().zip(&theirs) {
        if !same_tag(&ours.tag, theirs) {
            return Some(format!(
                "tags differ ({} / {theirs}): {}",
                ours.tag,
                describe()
            ));
        }
    }
    None
}

#[tokio::test]
async fn the_gateway_reads_sql_as_postgresql_does() {
    let pg = Postgres::start().await.unwrap();
    pg.psql(
        "postgres",
        "create role oracle login; create database scratch owner oracle;",
    )
    .await
    .unwrap();
    pg.psql(
        "scratch",
        "create table t (id int primary key, a text, b int); create table u (id int, b int);
         create table s (id int); create table orders (id int); create table x0 (a int);
         grant all on t, u, s, orders to oracle;
         alter role oracle set statement_timeout = '2s';",
    )
    .await
    .unwrap();
    let mut c = Wire::unix(pg.socket_dir(), pg.port, "oracle", "scratch")
        .await
        .unwrap();
    let mut texts: Vec<String> = UNIT_CORPUS.iter().map(|s| s.to_string()).collect();
    for case in crate::attack_sql::texts() {
        texts.push(case);
    }
    texts.extend(generated(400));
    let mut failures = Vec::new();
    let mut compared = 0;
    // How much of the ground the texts covered: several statements run, rejected by the
    // grammar, read differently with standard_conforming_strings off.
    let (mut multi, mut rejected, mut differ) = (0, 0, 0);
    for text in &texts {
        for (setting, reading) in [
            ("on", Reading::Standard),
            ("off", Reading::BackslashEscapes),
        ] {
            c.simple_query(format!("set standard_conforming_strings = {setting}"))
                .await
                .unwrap();
            c.simple_query("begin").await.unwrap();
            let server = c.simple_query(text).await.unwrap();
            c.simple_query("rollback").await.unwrap();
            c.simple_query("deallocate all").await.unwrap();
            c.simple_query("close all").await.unwrap();
            let ours = sql::analyze_with(text, reading);
            compared += 1;
            multi += usize::from(server.tags.len() > 1);
            rejected += usize::from(server.tags.is_empty() && server.error.is_some());
            differ += usize::from(ours.iter().any(|i| i.reading != reading));
            if let Some(why) = compare(text, reading, &ours, &server) {
                failures.push(why);
            }
        }
    }
    assert!(compared >= 1000, "{compared} comparisons");
    assert!(
        multi >= 200 && rejected >= 50 && differ >= 20,
        "too little covered: {multi} multi-statement runs, {rejected} rejections, {differ} \
         texts read two ways"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} readings differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
