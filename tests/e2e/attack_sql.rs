//! An authorised user tries to run more SQL than the connection's guardrails allow, through
//! `hoop connect` and psql (and a raw wire client where psql would not send the bytes). Every
//! case states the attack and what must hold; after each one the target is checked over a
//! direct connection (tables, rows, the sequence, roles), never through the gateway.
//!
//! One gateway in front of one PostgreSQL, five connections to the same database with
//! different rules; all cases run, failures are collected and reported together.

use std::process::Output;

use hoop_tests::gateway::{Tunnel, stderr, stdout};
use hoop_tests::postgres::pg_bin_dir;
use hoop_tests::wire::Wire;

use crate::postgres::{Env, TARGET_PASSWORD, setup};

/// Which connection a case goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// `guardrails = ["read-only"]`
    ReadOnly,
    /// `guardrails = ["no-ddl"]`
    NoDdl,
    /// `guardrails = ["no-unbounded-writes"]`
    NoUnbounded,
    /// `guardrails = ["no-admin"]`
    NoAdmin,
    /// `review = { statements = ["write"] }`, no guardrails
    Review,
}

/// What must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused by a guardrail, and the target unchanged.
    Blocked,
    /// Held for review (not run), and the target unchanged.
    Held,
    /// Runs, and the target unchanged (the reading the gateway must not refuse).
    Allowed,
}

struct Case {
    /// What the attacker tries, in words.
    attack: &'static str,
    on: Conn,
    /// Queries sent in one session, each as one simple Query message; the expectation is about
    /// the last, the ones before must run.
    sql: Vec<String>,
    expect: Expect,
}

fn case(attack: &'static str, on: Conn, sql: &str, expect: Expect) -> Case {
    Case {
        attack,
        on,
        sql: vec![sql.to_owned()],
        expect,
    }
}

fn after(attack: &'static str, on: Conn, first: &str, sql: &str, expect: Expect) -> Case {
    Case {
        attack,
        on,
        sql: vec![first.to_owned(), sql.to_owned()],
        expect,
    }
}

const CONNECTIONS: &str = r#"
[[connections]]
name = "shop_ddl"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = { file = "$PWFILE" }
allow = ["engineering"]
guardrails = ["no-ddl"]

[[connections]]
name = "shop_uw"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = { file = "$PWFILE" }
allow = ["engineering"]
guardrails = ["no-unbounded-writes"]

[[connections]]
name = "shop_admin"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = { file = "$PWFILE" }
allow = ["engineering"]
guardrails = ["no-admin"]

[[connections]]
name = "shop_rev"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = { file = "$PWFILE" }
allow = ["engineering"]
review = { statements = ["write"], approvers = ["dba"], statement_timeout = "1s" }
"#;

/// Objects the attacks aim at, made by the target's owner: a sequence, a user function that
/// writes, and the privileges that make file reads and backend kills work for `app` (so only
/// the gateway stands in the way).
const FIXTURES: &str = "
create sequence seq;
create function bump() returns int language sql as 'update items set qty = qty + 1; select 1';
create table orders (id int, total int);
insert into orders values (1, 10), (2, 20);
";

struct Lab {
    env: Env,
    tunnels: Vec<(Conn, Tunnel)>,
}

impl Lab {
    async fn start() -> Lab {
        let env = setup(r#"guardrails = ["read-only"]"#, CONNECTIONS).await;
        env.pg
            .psql_as("app", TARGET_PASSWORD, "shop", FIXTURES)
            .await
            .unwrap();
        env.pg
            .psql(
                "shop",
                "grant pg_read_server_files, pg_signal_backend to app;",
            )
            .await
            .unwrap();
        let mut tunnels = Vec::new();
        for (conn, name) in [
            (Conn::NoDdl, "shop_ddl"),
            (Conn::NoUnbounded, "shop_uw"),
            (Conn::NoAdmin, "shop_admin"),
            (Conn::Review, "shop_rev"),
        ] {
            let t = env
                .cli
                .connect(name, &[("HOOP_TOKEN", &env.key)])
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:#}\n{}", env.gw.logs()));
            tunnels.push((conn, t));
        }
        Lab { env, tunnels }
    }

    fn tunnel(&self, conn: Conn) -> &Tunnel {
        match conn {
            Conn::ReadOnly => &self.env.tunnel,
            other => self
                .tunnels
                .iter()
                .find(|(c, _)| *c == other)
                .map(|(_, t)| t)
                .unwrap(),
        }
    }

    /// The target's state, read directly: tables and their kinds, rows, the sequence, roles.
    async fn state(&self) -> String {
        self.env
            .pg
            .psql(
                "shop",
                "select (select string_agg(relname || ':' || relkind::text, ',' order by relname)
                         from pg_class where relnamespace = 'public'::regnamespace)
                  || '|' || (select count(*) || ':' || coalesce(sum(qty), 0) from items)
                  || '|' || (select count(*) from customers)
                  || '|' || (select last_value || ':' || is_called from seq)
                  || '|' || (select string_agg(rolname, ',' order by rolname) from pg_roles)
                  || '|' || (select count(*) from pg_db_role_setting);",
            )
            .await
            .unwrap()
    }

    /// Runs every query of a case in one psql session (`-c` per query: each is one simple
    /// Query message, so a multi-statement text reaches the gateway whole).
    fn psql(&self, conn: Conn, sql: &[String]) -> Output {
        let mut cmd = std::process::Command::new(pg_bin_dir().unwrap().join("psql"));
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .env("PGCONNECT_TIMEOUT", "10");
        for q in sql {
            cmd.arg("-c").arg(q);
        }
        cmd.arg(&self.tunnel(conn).url);
        hoop_tests::gateway::run_with_stdin(&mut cmd, None).unwrap()
    }

    async fn raw(&self, conn: Conn, extra: &[(&str, &str)]) -> Wire {
        let t = self.tunnel(conn);
        Wire::tcp(t.port, "hoop", &t.password, &t.database, extra)
            .await
            .unwrap()
    }
}

fn blocked_by_guardrail(text: &str) -> bool {
    text.contains("blocked by guardrail")
}

/// The cases. Order matters where a case relies on the cache holding an earlier text.
fn cases() -> Vec<Case> {
    use Conn::*;
    use Expect::*;
    vec![
        // Lexing: the gateway must split and read text as PostgreSQL does.
        case(
            "a dollar quote whose tag has bytes >= 0x80 hides a DROP from a naive lexer",
            ReadOnly,
            "select $€$ --$€$ ; drop table items",
            Blocked,
        ),
        case(
            "the same DROP on a no-ddl connection",
            NoDdl,
            "select $€$ --$€$ ; drop table items",
            Blocked,
        ),
        case(
            "dollar quote with an accented tag, two statements after it",
            ReadOnly,
            "select $é$ ; $é$, $ä$ ; $ä$ ; delete from items",
            Blocked,
        ),
        case(
            "dollar tag with digits and underscore",
            NoUnbounded,
            "select $a1_$ ; $a1_$ ; delete from items",
            Blocked,
        ),
        case(
            "a DELETE inside a nested comment is not a statement (no false block)",
            ReadOnly,
            "/* a /* b */ ; delete from items; */ select 1",
            Allowed,
        ),
        case(
            "a DELETE inside a dollar quote is a string",
            ReadOnly,
            "select $x$ ; delete from items; $x$",
            Allowed,
        ),
        case(
            "doubled quotes make one string (no false block)",
            ReadOnly,
            "select 'a'' ; delete from items where id = ''3'' ; select ''b', 1",
            Allowed,
        ),
        case(
            "after caching the doubled-quote text, the undoubled one is three statements",
            ReadOnly,
            "select 'a' ; delete from items where id = '3' ; select 'b', 1",
            Blocked,
        ),
        case(
            "E'' string: a backslash escapes the quote, so the DELETE is inside the string",
            ReadOnly,
            "select E'\\' ; delete from items; --'",
            Allowed,
        ),
        case(
            "plain string with a backslash: a DELETE in the reading with standard_conforming_strings off",
            ReadOnly,
            "select 'a\\' || '; delete from items; --'",
            Blocked,
        ),
        after(
            "standard_conforming_strings turned off first, then the backslash text",
            ReadOnly,
            "set standard_conforming_strings = off",
            "select 'a\\' || '; delete from items; --'",
            Blocked,
        ),
        after(
            "set_config turns standard_conforming_strings off, then the backslash text",
            NoUnbounded,
            "select set_config('standard_conforming_strings', 'off', false)",
            "select 'a\\' || '; delete from items; --'",
            Blocked,
        ),
        case(
            "U& identifier with UESCAPE spells pg_read_file",
            ReadOnly,
            "select U&\"pg!005fread_file\" UESCAPE '!' ('PG_VERSION')",
            Blocked,
        ),
        case(
            "U& identifier with the default escape",
            NoAdmin,
            "select U&\"pg\\005fread_file\"('PG_VERSION')",
            Blocked,
        ),
        case(
            "a text PostgreSQL's grammar rejects is refused, not guessed at",
            ReadOnly,
            "selec 1; delete from items",
            Blocked,
        ),
        case(
            "a keyword made of a Unicode look-alike is no keyword",
            NoUnbounded,
            "update items \u{17f}et qty = 0",
            Blocked,
        ),
        // The verdict cache must not be fooled.
        case(
            "cache: a text with numbers is allowed and cached by shape",
            NoUnbounded,
            "delete from items where 1 = 2",
            Allowed,
        ),
        case(
            "cache: the same shape with other numbers deletes every row",
            NoUnbounded,
            "delete from items where 1 = 1",
            Blocked,
        ),
        case(
            "cache: a statement with a comment is cached",
            ReadOnly,
            "select 1 /* ; */",
            Allowed,
        ),
        case(
            "cache: the same start followed by a second statement",
            ReadOnly,
            "select 1 ; delete from items",
            Blocked,
        ),
        case(
            "cache: a constant-true MERGE after a bounded one of the same shape",
            NoUnbounded,
            "merge into items using (select 1) s on 1 = 2 when matched then delete",
            Allowed,
        ),
        case(
            "cache: ... and the same shape ON 2 = 2",
            NoUnbounded,
            "merge into items using (select 1) s on 2 = 2 when matched then delete",
            Blocked,
        ),
        // Functions in every notation.
        case(
            "functional notation calls pg_read_file",
            ReadOnly,
            "select ('PG_VERSION'::text).pg_read_file",
            Blocked,
        ),
        case(
            "functional notation on a column kills backends",
            ReadOnly,
            "select (pid).pg_terminate_backend from pg_stat_activity where usename = 'nobody'",
            Blocked,
        ),
        case(
            "functional notation on a column, no-admin",
            NoAdmin,
            "select (pid).pg_terminate_backend from pg_stat_activity where usename = 'nobody'",
            Blocked,
        ),
        case(
            "functional notation advances a sequence",
            ReadOnly,
            "select ('seq').nextval",
            Blocked,
        ),
        case(
            "relation-qualified notation t.f",
            NoAdmin,
            "select t.pg_read_file from (select 'PG_VERSION'::text) t",
            Blocked,
        ),
        case(
            "schema-qualified dangerous function",
            ReadOnly,
            "select pg_catalog.pg_read_file('PG_VERSION')",
            Blocked,
        ),
        case(
            "quoted dangerous function name",
            NoAdmin,
            "select \"pg_read_file\"('PG_VERSION')",
            Blocked,
        ),
        case(
            "a user function that writes, called from a SELECT",
            ReadOnly,
            "select bump()",
            Blocked,
        ),
        case(
            "a user function that writes, in FROM",
            ReadOnly,
            "select * from bump()",
            Blocked,
        ),
        case(
            "a user function that writes, schema-qualified",
            ReadOnly,
            "select public.bump()",
            Blocked,
        ),
        case(
            "a dangerous function inside COPY (query)",
            NoAdmin,
            "copy (select pg_read_file('PG_VERSION')) to stdout",
            Blocked,
        ),
        case(
            "a dangerous function in an EXECUTE argument",
            NoAdmin,
            "prepare q(text) as select $1; execute q(pg_read_file('PG_VERSION'))",
            Blocked,
        ),
        case(
            "built-in side-effect-free functions are allowed under read-only",
            ReadOnly,
            "select lower('A'), count(*), now(), pg_relation_size('items') from items",
            Allowed,
        ),
        // Statement classes.
        case(
            "MERGE ON true deletes every row",
            NoUnbounded,
            "merge into items using (select 1) s on true when matched then delete",
            Blocked,
        ),
        case(
            "MERGE ON 1=1 updates every row",
            NoUnbounded,
            "merge into items using (select 1) s on 1=1 when matched then update set qty = 0",
            Blocked,
        ),
        case(
            "DELETE WHERE true",
            NoUnbounded,
            "delete from items where true",
            Blocked,
        ),
        case(
            "DELETE WHERE id = id",
            NoUnbounded,
            "delete from items where id = id",
            Blocked,
        ),
        case("TABLE is a read", ReadOnly, "table orders", Allowed),
        case(
            "PREPARE and EXECUTE of a DELETE in one text",
            ReadOnly,
            "prepare p as delete from items; execute p",
            Blocked,
        ),
        case(
            "PREPARE and EXECUTE of an unbounded DELETE in one text",
            NoUnbounded,
            "prepare p as delete from items; execute p",
            Blocked,
        ),
        case(
            "PREPARE and EXECUTE of a read in one text",
            ReadOnly,
            "prepare p as select 1; execute p",
            Allowed,
        ),
        case(
            "EXPLAIN ANALYZE runs the DELETE",
            ReadOnly,
            "explain analyze delete from items",
            Blocked,
        ),
        case(
            "plain EXPLAIN does not run it",
            ReadOnly,
            "explain delete from items",
            Allowed,
        ),
        case(
            "a data-modifying CTE under a SELECT",
            ReadOnly,
            "with d as (delete from items returning *) select count(*) from d",
            Blocked,
        ),
        case(
            "a data-modifying CTE under an INSERT",
            NoUnbounded,
            "with d as (delete from items returning *) insert into orders select id, qty from d",
            Blocked,
        ),
        case(
            "SELECT INTO creates a table",
            ReadOnly,
            "select * into stolen from items",
            Blocked,
        ),
        case(
            "CREATE TABLE AS",
            NoDdl,
            "create table stolen as select * from items",
            Blocked,
        ),
        case(
            "COPY of a DELETE ... RETURNING",
            ReadOnly,
            "copy (delete from items returning *) to stdout",
            Blocked,
        ),
        case("NOTIFY is a write", ReadOnly, "notify ch, 'x'", Blocked),
        case(
            "pg_notify is a write",
            ReadOnly,
            "select pg_notify('ch', 'x')",
            Blocked,
        ),
        case(
            "txid_current assigns a transaction ID (a WAL write)",
            ReadOnly,
            "select txid_current(), pg_current_xact_id()",
            Blocked,
        ),
        case("LISTEN is session state", ReadOnly, "listen ch", Allowed),
        case("LOCK TABLE", ReadOnly, "lock table items", Blocked),
        case(
            "SELECT ... FOR UPDATE takes row locks",
            ReadOnly,
            "select * from items for update",
            Blocked,
        ),
        case("SET ROLE", NoAdmin, "set role postgres", Blocked),
        case(
            "set_config('role')",
            ReadOnly,
            "select set_config('role', 'postgres', false)",
            Blocked,
        ),
        case(
            "SET SESSION AUTHORIZATION",
            NoAdmin,
            "set session authorization postgres",
            Blocked,
        ),
        case(
            "client_encoding changed so later text reads differently",
            ReadOnly,
            "set client_encoding = 'SJIS'",
            Blocked,
        ),
        case(
            "client_encoding through set_config",
            NoUnbounded,
            "select set_config('client_encoding', 'BIG5', false)",
            Blocked,
        ),
        case(
            "client_encoding quoted in upper case, which PostgreSQL looks up ignoring case",
            ReadOnly,
            r#"SET "CLIENT_ENCODING" TO 'SJIS'"#,
            Blocked,
        ),
        case(
            "client_encoding quoted in mixed case",
            NoDdl,
            r#"set "Client_Encoding" = 'SJIS'"#,
            Blocked,
        ),
        case(
            "client_encoding quoted, SET LOCAL",
            NoUnbounded,
            r#"set local "CLIENT_ENCODING" to 'BIG5'"#,
            Blocked,
        ),
        case(
            "client_encoding through set_config with an upper-case name",
            ReadOnly,
            "select set_config('CLIENT_ENCODING', 'SJIS', false)",
            Blocked,
        ),
        case(
            "client_encoding as the role's default, so later sessions start in SJIS",
            NoUnbounded,
            r#"alter role app set "CLIENT_ENCODING" = 'SJIS'"#,
            Blocked,
        ),
        case(
            "client_encoding as the database's default",
            NoAdmin,
            r#"alter database shop set "Client_Encoding" to 'SJIS'"#,
            Blocked,
        ),
        case(
            "a UTF-8 client_encoding quoted in upper case is harmless and runs",
            ReadOnly,
            r#"set "CLIENT_ENCODING" to 'UTF8'"#,
            Allowed,
        ),
        case(
            "transactions are session statements",
            ReadOnly,
            "begin; select 1; commit",
            Allowed,
        ),
        case(
            "DO block that deletes",
            ReadOnly,
            "do $$ begin delete from items; end $$",
            Blocked,
        ),
        case(
            "DO block with a constant EXECUTE of an unbounded DELETE",
            NoUnbounded,
            "do $$ begin execute 'delete from items'; end $$",
            Blocked,
        ),
        case(
            "DO block with SQL built at run time",
            NoUnbounded,
            "do $$ begin execute 'delete from ' || 'items'; end $$",
            Blocked,
        ),
        case(
            "DO block in another language",
            NoUnbounded,
            "do language plpgsql $$ begin perform 1; end $$; do language sql $$ delete from items $$",
            Blocked,
        ),
        case(
            "function whose PL/pgSQL body drops a table (no-ddl)",
            NoDdl,
            "create function f() returns int language plpgsql as $$ begin drop table items; return 1; end $$",
            Blocked,
        ),
        case(
            "ALTER SYSTEM",
            NoAdmin,
            "alter system set work_mem = '1GB'",
            Blocked,
        ),
        case("VACUUM", NoAdmin, "vacuum items", Blocked),
        case(
            "CREATE RULE",
            NoDdl,
            "create rule r as on insert to orders do instead delete from items",
            Blocked,
        ),
        case(
            "large object import",
            NoAdmin,
            "select lo_import('/etc/passwd')",
            Blocked,
        ),
        // Size and depth.
        case(
            "a moderately long concatenation is read",
            ReadOnly,
            &format!("select 'a'{}", " || 'a'".repeat(40)),
            Allowed,
        ),
        case(
            "an expression nested too deep to check",
            ReadOnly,
            &format!("select 1{}", " + 1".repeat(60)),
            Blocked,
        ),
        // Reviews.
        case(
            "lexing trick to skip a write review",
            Review,
            "select $€$ --$€$ ; delete from items",
            Held,
        ),
        case(
            "client_encoding change under review",
            Review,
            "set client_encoding = 'SJIS'",
            Held,
        ),
        case(
            "quoted upper-case client_encoding under review",
            Review,
            r#"SET "CLIENT_ENCODING" TO 'SJIS'"#,
            Held,
        ),
        case(
            "role default client_encoding under review",
            Review,
            r#"alter role app set "CLIENT_ENCODING" = 'SJIS'"#,
            Held,
        ),
        case(
            "a text that does not parse under review",
            Review,
            "selec 1; delete from items",
            Held,
        ),
        case(
            "a read under review runs",
            Review,
            "select count(*) from items",
            Allowed,
        ),
    ]
}

/// Every query text of the cases, for the differential oracle (`sql_oracle.rs`).
pub fn texts() -> Vec<String> {
    cases().into_iter().flat_map(|c| c.sql).collect()
}

/// Runs one case; `None` when everything held, else what went wrong.
async fn run(lab: &Lab, c: &Case) -> Option<String> {
    let before = lab.state().await;
    let outcome = if c.expect == Expect::Held {
        held(lab, c).await
    } else {
        let out = lab.psql(c.on, &c.sql);
        let (ok, err) = (out.status.success(), stderr(&out));
        match c.expect {
            Expect::Blocked if ok || !blocked_by_guardrail(&err) => Some(format!(
                "not blocked: exit {:?}\nstdout: {}\nstderr: {err}",
                out.status.code(),
                stdout(&out)
            )),
            Expect::Allowed if !ok => Some(format!("refused: {err}")),
            _ => None,
        }
    };
    let after = lab.state().await;
    let changed = (before != after).then(|| format!("target changed:\n  {before}\n  {after}"));
    match (outcome, changed) {
        (None, None) => None,
        (a, b) => Some([a, b].into_iter().flatten().collect::<Vec<_>>().join("\n")),
    }
}

/// A held statement: the gateway answers with a notice naming the review and, when nobody
/// decides within `statement_timeout`, an error; the statement never runs.
async fn held(lab: &Lab, c: &Case) -> Option<String> {
    let mut client = lab.raw(c.on, &[]).await;
    let (last, first) = c.sql.split_last().unwrap();
    for q in first {
        let a = client.simple_query(q).await.unwrap();
        if a.error.is_some() {
            return Some(format!("setup query failed: {a:?}"));
        }
    }
    let a = client.simple_query(last).await.unwrap();
    let noticed = a.notices.iter().any(|n| n.contains("needs approval"));
    (!noticed || a.error.is_none() || !a.tags.is_empty()).then(|| format!("not held: {a:?}"))
}

/// Every case in order; all failures listed at the end.
#[tokio::test]
async fn sql_attacks_through_hoop_connect_and_psql() {
    let lab = Lab::start().await;
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        if let Some(why) = run(&lab, c).await {
            failures.push(format!(
                "[{:?}] {}\n  sql: {:?}\n  {why}",
                c.on, c.attack, c.sql
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}\n\ngateway log:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n"),
        lab.env.gw.logs()
    );
}

/// Bytes psql would not send: pipelined messages, text that is not UTF-8, texts too large
/// for a command line.
#[tokio::test]
async fn sql_attacks_over_the_raw_wire() {
    let lab = Lab::start().await;
    let mut failures = Vec::new();
    let mut check = |attack: &str, ok: bool, detail: String| {
        if !ok {
            failures.push(format!("{attack}: {detail}"));
        }
    };
    let before = lab.state().await;

    // Two messages in one write: the gateway judges the second before the server has applied
    // the first, so it must judge both readings of the second.
    let mut c = lab.raw(Conn::ReadOnly, &[]).await;
    c.query("set standard_conforming_strings = off")
        .query("select 'a\\' || '; delete from items; --'")
        .send()
        .await
        .unwrap();
    let first = c.answer().await.unwrap();
    let second = c.answer().await.unwrap();
    check(
        "pipelined: standard_conforming_strings off, then a backslash text",
        first.error.is_none()
            && second
                .error
                .as_ref()
                .is_some_and(|(_, m)| blocked_by_guardrail(m)),
        format!("{first:?} / {second:?}"),
    );

    // The relay remembers the last Parse text the cache allowed: a text that differs from it
    // in one place must be judged afresh, and the remembered one is still allowed after it.
    let mut c = lab.raw(Conn::ReadOnly, &[]).await;
    let mut errors = Vec::new();
    for sql in [
        "select * from items where id = $1",
        "select * from items where id = $1",
        "delete from items where id = $1",
        "select * from items where id = $1",
    ] {
        let a = c
            .parse("", sql)
            .bind("", "", &[Some("1")])
            .execute("", 0)
            .sync()
            .run()
            .await
            .unwrap();
        errors.push(a.errors().len());
    }
    check(
        "the same unnamed Parse twice, then a DELETE in its place, then the first again",
        errors == [0, 0, 1, 0],
        format!("errors per batch: {errors:?}"),
    );

    // LATIN1 client: two different non-UTF-8 dollar tags reach the gateway as the same
    // replacement character; PostgreSQL keeps them apart and runs the DELETE.
    // The adapter refuses a LATIN1 startup; the text is sent in UTF-8 as well.
    let t = lab.tunnel(Conn::ReadOnly);
    let latin1 = Wire::tcp(
        t.port,
        "hoop",
        &t.password,
        &t.database,
        &[("client_encoding", "LATIN1")],
    )
    .await;
    check(
        "LATIN1 at startup",
        latin1
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("UTF-8 only")),
        format!("{:?}", latin1.as_ref().err()),
    );
    let mut c = lab.raw(Conn::ReadOnly, &[]).await;
    let a = c
        .simple_query(b"select $\xff$ ; $\xfe$ , $\xff$ ; delete from items ; -- $\xfe$".as_slice())
        .await
        .unwrap();
    check(
        "dollar tags of bytes that are not UTF-8",
        a.error.is_some(),
        format!("{a:?}"),
    );

    // Deep nesting and huge counts: refused with a clear reason, and the session goes on.
    let mut c = lab.raw(Conn::ReadOnly, &[]).await;
    for (attack, text) in [
        (
            "100,000 nested parentheses",
            format!("select {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        ),
        ("10,001 statements in one Query", "select 1;".repeat(10_001)),
        (
            "an IN list of 60,000 elements",
            format!("select 1 where 1 in ({})", vec!["1"; 60_000].join(",")),
        ),
        (
            "a DELETE behind 20,000 nested parentheses",
            format!(
                "delete from items where id = {}1{}",
                "(".repeat(20_000),
                ")".repeat(20_000)
            ),
        ),
    ] {
        let a = c.simple_query(&text).await.unwrap();
        check(
            attack,
            a.error
                .as_ref()
                .is_some_and(|(_, m)| blocked_by_guardrail(m)),
            format!("{:?}", a.error),
        );
        let alive = c.simple_query("select 1").await.unwrap();
        check(
            "the session goes on",
            alive.rows == vec![Some("1".to_string())],
            format!("{alive:?}"),
        );
    }
    let after = lab.state().await;
    check(
        "target unchanged",
        before == after,
        format!("{before}\n{after}"),
    );

    // The work the analysis did is visible in /metrics.
    let metrics = lab
        .env
        .gw
        .http()
        .unwrap()
        .get(format!("{}/metrics", lab.env.gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(-1.0)
    };
    check(
        "cache lookups and analysis time are in /metrics",
        value("hoop_sql_cache_lookups_total{result=\"miss\"}") >= 5.0
            && value("hoop_sql_cache_lookups_total{result=\"shape_hit\"}") >= 1.0
            && value("hoop_sql_analysis_seconds_count") >= 5.0
            && value("hoop_sql_analysis_seconds_sum") > 0.0,
        metrics
            .lines()
            .filter(|l| l.contains("sql_"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An attacker asks for a client-only encoding (SJIS, BIG5, GBK...) at startup. In such an
/// encoding a two-byte character can end in `\`, so `E'<lead byte>\' ; delete ...` is one
/// string to the gateway (reading UTF-8) and a string followed by a DELETE to the server. The
/// analysis refuses `SET client_encoding` to such an encoding; the PostgreSQL adapter refuses
/// the startup parameter. Must hold: the login is refused and the table keeps its rows.
#[tokio::test]
async fn client_only_encoding_at_startup_is_refused() {
    let lab = Lab::start().await;
    let before = lab.state().await;
    let refused = match Wire::tcp(
        lab.env.tunnel.port,
        "hoop",
        &lab.env.tunnel.password,
        &lab.env.tunnel.database,
        &[("client_encoding", "SJIS")],
    )
    .await
    {
        Err(e) => {
            let e = format!("{e:#}");
            assert!(e.contains("0A000") && e.contains("UTF-8 only"), "{e}");
            true
        }
        Ok(mut c) => {
            let a = c
                .simple_query(b"select E'\x95\\' ; delete from items ; -- '")
                .await
                .unwrap();
            a.error.is_some()
        }
    };
    assert!(refused);
    assert_eq!(before, lab.state().await);
}

/// The SJIS trick: with the server reading SJIS, `0x95 0x5c` is one character, so the quote
/// after it ends the string and the UPDATE and CREATE run; the gateway, reading UTF-8, sees one
/// SELECT.
const SJIS_TRICK: &[u8] =
    b"select E'\x95\\'; update items set qty = 0; create table pwn(x int); select 1 --'";

/// A function the target's owner made, whose body changes client_encoding where the gateway
/// cannot see it (the analysis knows nothing of user functions' bodies).
const ENCODING_SWITCH: &str = "create function enc_switch() returns text language sql
    as $$select set_config('client_encoding', 'SJIS', false)$$;";

/// Every way an attacker can get the server to read a client encoding other than UTF-8 after
/// login: a setting name spelled in another case, the role's or database's default (made by
/// someone else, or by the attacker where a connection allows it), and a function that
/// changes it mid-session. Must hold: the session stays in UTF-8 or ends, and the SJIS trick
/// changes nothing.
#[tokio::test]
async fn client_encoding_cannot_change_behind_the_gateway() {
    let lab = Lab::start().await;
    lab.env.pg.psql("shop", ENCODING_SWITCH).await.unwrap();
    let before = lab.state().await;
    let mut failures = Vec::new();

    struct Switch {
        attack: &'static str,
        on: Conn,
        /// Sent first, each must be refused (blocked or held).
        set: &'static str,
    }
    let switches = [
        Switch {
            attack: "quoted upper-case SET, then the SJIS trick (read-only)",
            on: Conn::ReadOnly,
            set: r#"SET "CLIENT_ENCODING" TO 'SJIS'"#,
        },
        Switch {
            attack: "quoted upper-case SET, then the SJIS trick (no-ddl)",
            on: Conn::NoDdl,
            set: r#"SET "CLIENT_ENCODING" TO 'SJIS'"#,
        },
        Switch {
            attack: "quoted upper-case SET, then the SJIS trick (review)",
            on: Conn::Review,
            set: r#"SET "CLIENT_ENCODING" TO 'SJIS'"#,
        },
        Switch {
            attack: "set_config('CLIENT_ENCODING'), then the SJIS trick",
            on: Conn::NoDdl,
            set: "select set_config('CLIENT_ENCODING', 'SJIS', false)",
        },
        Switch {
            attack: "UPDATE pg_settings sets client_encoding (set_config by a rule), then the SJIS trick",
            on: Conn::NoDdl,
            set: "update pg_settings set setting = 'SJIS' where name = 'client_encoding'",
        },
        Switch {
            attack: "SET NAMES, then the SJIS trick",
            on: Conn::NoUnbounded,
            set: "set names 'SJIS'",
        },
    ];
    for sw in &switches {
        let mut c = lab.raw(sw.on, &[]).await;
        let a = c.simple_query(sw.set).await.unwrap();
        if a.error.is_none() {
            failures.push(format!("{}: the SET ran: {a:?}", sw.attack));
        }
        let enc = c.simple_query("show client_encoding").await.unwrap();
        if enc.rows != vec![Some("UTF8".to_string())] {
            failures.push(format!("{}: client_encoding is {:?}", sw.attack, enc.rows));
        }
        let _ = c.simple_query(SJIS_TRICK).await;
    }

    // Defaults of the role and of the database, as an administrator (or an earlier attack on
    // another path) left them: a new session must still be UTF-8 to the server.
    for (attack, set, reset) in [
        (
            "the role's default client_encoding is SJIS, then a new session",
            r#"alter role app set "CLIENT_ENCODING" = 'SJIS'"#,
            "alter role app reset client_encoding",
        ),
        (
            "the database's default client_encoding is SJIS, then a new session",
            "alter database shop set client_encoding = 'SJIS'",
            "alter database shop reset client_encoding",
        ),
    ] {
        lab.env.pg.psql("shop", set).await.unwrap();
        for on in [Conn::ReadOnly, Conn::NoDdl] {
            match Wire::tcp(
                lab.tunnel(on).port,
                "hoop",
                &lab.tunnel(on).password,
                &lab.tunnel(on).database,
                &[],
            )
            .await
            {
                Ok(mut c) => {
                    let enc = c.simple_query("show client_encoding").await.unwrap();
                    if enc.rows != vec![Some("UTF8".to_string())]
                        || c.parameter("client_encoding") != Some("UTF8")
                    {
                        failures.push(format!(
                            "{attack} [{on:?}]: client_encoding {:?} / reported {:?}",
                            enc.rows,
                            c.parameter("client_encoding")
                        ));
                    }
                    let _ = c.simple_query(SJIS_TRICK).await;
                }
                Err(e) => failures.push(format!("{attack} [{on:?}]: login failed: {e:#}")),
            }
            // psql, which asks for the locale's encoding (or none).
            let out = lab.psql(on, &["show client_encoding".to_string()]);
            if stdout(&out).trim() != "UTF8" {
                failures.push(format!(
                    "{attack} [{on:?}] psql: {:?} {}",
                    stdout(&out),
                    stderr(&out)
                ));
            }
        }
        lab.env.pg.psql("shop", reset).await.unwrap();
    }

    // A function changes client_encoding mid-session: the target reports it in a
    // ParameterStatus, and the gateway ends the session before relaying anything further.
    let out = lab.psql(
        Conn::NoDdl,
        &[
            "select enc_switch()".to_string(),
            "update items set qty = 0".to_string(),
        ],
    );
    let err = stderr(&out);
    if out.status.success() || !err.contains("client_encoding to SJIS") {
        failures.push(format!(
            "a function switches client_encoding mid-session (psql): exit {:?}\n{}\n{err}",
            out.status.code(),
            stdout(&out)
        ));
    }
    let mut c = lab.raw(Conn::NoDdl, &[]).await;
    let first = c.simple_query("select enc_switch()").await;
    let second = c.simple_query(SJIS_TRICK).await;
    if second.is_ok() {
        failures.push(format!(
            "a function switches client_encoding, then the trick: the session went on: \
             {first:?} / {second:?}"
        ));
    }

    let after = lab.state().await;
    if before != after {
        failures.push(format!("target changed:\n  {before}\n  {after}"));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}\n\ngateway log:\n{}",
        failures.len(),
        failures.join("\n\n"),
        lab.env.gw.logs()
    );
}

/// The known gap: the server reports a client_encoding change only when the statement that
/// made it ends, so a query the client pipelined behind it (already in the server's buffer) is
/// read in the new encoding before the gateway sees the report and ends the session. Closing
/// it needs the adapter to hold messages behind a statement that calls a function whose body
/// it has not seen until that statement's ReadyForQuery.
#[tokio::test]
#[ignore = "known gap: a query pipelined behind a function that switches client_encoding"]
async fn client_encoding_switch_with_a_pipelined_query() {
    let lab = Lab::start().await;
    lab.env.pg.psql("shop", ENCODING_SWITCH).await.unwrap();
    let before = lab.state().await;
    let mut c = lab.raw(Conn::NoDdl, &[]).await;
    c.query(b"select enc_switch()")
        .query(SJIS_TRICK)
        .send()
        .await
        .unwrap();
    let first = c.answer().await;
    let second = c.answer().await;
    assert!(
        second.is_err(),
        "the session went on: {first:?} / {second:?}"
    );
    assert_eq!(before, lab.state().await);
}
