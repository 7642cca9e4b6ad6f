#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;

fn one(sql: &str) -> StatementInfo {
    let infos = analyze(sql);
    assert_eq!(infos.len(), 1, "{sql}: {infos:#?}");
    infos.into_iter().next().unwrap()
}

fn calls(info: &StatementInfo, name: &str) -> bool {
    info.functions.iter().any(|f| f.name == name)
}

#[test]
fn plain_select_is_a_read() {
    let i = one("SELECT a, b FROM t WHERE id = $1");
    assert_eq!(i.kind, StatementKind::Select);
    assert_eq!(i.class, StatementClass::Read);
    assert_eq!(i.tag, "SELECT");
    assert!(i.parsed && i.keywords.is_empty() && i.unbounded_write.is_none());
    assert!(i.unverifiable.is_none());
    assert_eq!(i.tables, vec!["t"]);
    assert_eq!(i.text, "SELECT a, b FROM t WHERE id = $1");
}

#[test]
fn classes_of_common_statements() {
    let cases = [
        ("insert into t values (1)", StatementClass::Write),
        ("update t set a = 1 where id = 2", StatementClass::Write),
        ("delete from t where id = 2", StatementClass::Write),
        ("create table x (a int)", StatementClass::Ddl),
        ("drop table x", StatementClass::Ddl),
        ("alter table x add column b int", StatementClass::Ddl),
        ("grant select on t to bob", StatementClass::Admin),
        ("set search_path = public", StatementClass::Session),
        ("begin", StatementClass::Session),
        ("commit", StatementClass::Session),
        ("show search_path", StatementClass::Read),
        ("explain select 1", StatementClass::Read),
        ("explain delete from t", StatementClass::Read),
        ("explain analyze delete from t", StatementClass::Write),
        ("set role postgres", StatementClass::Admin),
        ("copy t to stdout", StatementClass::Read),
        ("copy t from stdin", StatementClass::Write),
        ("table orders", StatementClass::Read),
        ("values (1), (2)", StatementClass::Read),
    ];
    for (sql, class) in cases {
        assert_eq!(one(sql).class, class, "{sql}");
    }
}

/// Each statement type with the command tag PostgreSQL reports, its class and a deny kind it
/// must match (empty: none).
#[test]
fn corpus_of_statement_types() {
    use StatementClass as C;
    let cases: &[(&str, &str, C, &str)] = &[
        ("select 1", "SELECT", C::Read, ""),
        ("table orders", "SELECT", C::Read, ""),
        ("select * from t for update", "SELECT", C::Read, "lock"),
        ("select * from t for key share", "SELECT", C::Read, "lock"),
        ("select * into newt from t", "SELECT INTO", C::Ddl, "create"),
        (
            "create table x as select 1",
            "CREATE TABLE AS",
            C::Ddl,
            "write",
        ),
        (
            "create materialized view v as select 1",
            "CREATE MATERIALIZED VIEW",
            C::Ddl,
            "create",
        ),
        ("insert into t values (1)", "INSERT", C::Write, "insert"),
        (
            "update t set a = 1 where b = 2",
            "UPDATE",
            C::Write,
            "update",
        ),
        ("delete from t where b = 2", "DELETE", C::Write, "delete"),
        (
            "merge into t using s on t.id = s.id when matched then delete",
            "MERGE",
            C::Write,
            "delete",
        ),
        ("truncate t", "TRUNCATE TABLE", C::Write, "truncate"),
        ("copy t to stdout", "COPY", C::Read, "copy"),
        ("copy t from stdin", "COPY", C::Write, "write"),
        ("copy t to '/tmp/x'", "COPY", C::Admin, "copy_file"),
        (
            "copy t from program 'cat'",
            "COPY",
            C::Admin,
            "copy_program",
        ),
        ("call p()", "CALL", C::Write, "call"),
        ("do $$ begin null; end $$", "DO", C::Admin, "do"),
        ("explain select 1", "EXPLAIN", C::Read, ""),
        (
            "explain analyze delete from t where a = 1",
            "EXPLAIN",
            C::Write,
            "delete",
        ),
        ("prepare p as select 1", "PREPARE", C::Read, ""),
        ("execute p", "EXECUTE", C::Read, ""),
        ("deallocate p", "DEALLOCATE", C::Session, ""),
        ("deallocate all", "DEALLOCATE ALL", C::Session, ""),
        ("begin", "BEGIN", C::Session, ""),
        (
            "start transaction read write",
            "START TRANSACTION",
            C::Session,
            "",
        ),
        ("commit", "COMMIT", C::Session, ""),
        ("rollback", "ROLLBACK", C::Session, ""),
        ("savepoint a", "SAVEPOINT", C::Session, ""),
        ("rollback to savepoint a", "ROLLBACK", C::Session, ""),
        ("release savepoint a", "RELEASE", C::Session, ""),
        (
            "prepare transaction 'x'",
            "PREPARE TRANSACTION",
            C::Admin,
            "admin",
        ),
        ("commit prepared 'x'", "COMMIT PREPARED", C::Admin, "admin"),
        ("set work_mem = '1MB'", "SET", C::Session, "set"),
        ("reset all", "RESET", C::Session, "set"),
        (
            "set transaction isolation level serializable",
            "SET",
            C::Session,
            "",
        ),
        ("set role postgres", "SET", C::Admin, "set_role"),
        ("set local role none", "SET", C::Admin, "set_role"),
        (
            "set session authorization postgres",
            "SET",
            C::Admin,
            "set_role",
        ),
        (
            "set session authorization default",
            "SET",
            C::Admin,
            "set_role",
        ),
        ("reset role", "RESET", C::Admin, "set_role"),
        ("reset session authorization", "RESET", C::Admin, "set_role"),
        ("set role = 'postgres'", "SET", C::Admin, "set_role"),
        (
            "select set_config('role', 'postgres', false)",
            "SELECT",
            C::Admin,
            "set_role",
        ),
        ("show all", "SHOW", C::Read, ""),
        ("discard all", "DISCARD ALL", C::Session, ""),
        ("discard plans", "DISCARD PLANS", C::Session, ""),
        ("listen ch", "LISTEN", C::Session, ""),
        ("unlisten *", "UNLISTEN", C::Session, ""),
        ("notify ch, 'x'", "NOTIFY", C::Write, "notify"),
        ("select pg_notify('ch', 'x')", "SELECT", C::Read, "notify"),
        (
            "declare c cursor for select 1",
            "DECLARE CURSOR",
            C::Read,
            "",
        ),
        ("fetch 5 from c", "FETCH", C::Read, ""),
        ("move 5 in c", "MOVE", C::Read, ""),
        ("close c", "CLOSE CURSOR", C::Session, ""),
        ("close all", "CLOSE CURSOR ALL", C::Session, ""),
        (
            "lock table t in access exclusive mode",
            "LOCK TABLE",
            C::Admin,
            "lock",
        ),
        ("vacuum (full) t", "VACUUM", C::Admin, "vacuum"),
        ("analyze t", "ANALYZE", C::Admin, "maintenance"),
        ("cluster t using i", "CLUSTER", C::Admin, "maintenance"),
        ("reindex table t", "REINDEX", C::Admin, "maintenance"),
        ("checkpoint", "CHECKPOINT", C::Admin, "maintenance"),
        (
            "refresh materialized view v",
            "REFRESH MATERIALIZED VIEW",
            C::Admin,
            "maintenance",
        ),
        ("load '/tmp/x.so'", "LOAD", C::Admin, "load"),
        (
            "alter system set work_mem = '1GB'",
            "ALTER SYSTEM",
            C::Admin,
            "alter_system",
        ),
        (
            "create rule r as on insert to t do instead nothing",
            "CREATE RULE",
            C::Ddl,
            "create",
        ),
        (
            "import foreign schema s from server x into y",
            "IMPORT FOREIGN SCHEMA",
            C::Ddl,
            "create",
        ),
        (
            "security label for selinux on table t is 'x'",
            "SECURITY LABEL",
            C::Ddl,
            "ddl",
        ),
        ("comment on table t is 'x'", "COMMENT", C::Ddl, "comment"),
        ("grant select on t to bob", "GRANT", C::Admin, "grant"),
        ("revoke select on t from bob", "REVOKE", C::Admin, "revoke"),
        ("grant r to bob", "GRANT ROLE", C::Admin, "grant"),
        ("create role r", "CREATE ROLE", C::Admin, "admin"),
        ("alter role r superuser", "ALTER ROLE", C::Admin, "admin"),
        (
            "alter role r set role = 'postgres'",
            "ALTER ROLE",
            C::Admin,
            "set_role",
        ),
        ("drop role r", "DROP ROLE", C::Admin, "admin"),
        ("drop owned by bob", "DROP OWNED", C::Admin, "drop"),
        (
            "reassign owned by a to b",
            "REASSIGN OWNED",
            C::Admin,
            "admin",
        ),
        (
            "create extension dblink",
            "CREATE EXTENSION",
            C::Ddl,
            "extension",
        ),
        (
            "alter extension dblink update",
            "ALTER EXTENSION",
            C::Ddl,
            "extension",
        ),
        (
            "drop extension dblink",
            "DROP EXTENSION",
            C::Ddl,
            "extension",
        ),
        ("create index i on t (a)", "CREATE INDEX", C::Ddl, "create"),
        ("drop index i", "DROP INDEX", C::Ddl, "drop"),
        (
            "alter table t rename column a to b",
            "ALTER TABLE",
            C::Ddl,
            "alter",
        ),
        ("alter view v rename to w", "ALTER VIEW", C::Ddl, "alter"),
        ("alter table t owner to bob", "ALTER TABLE", C::Ddl, "alter"),
        (
            "create function f() returns int language sql as 'select 1'",
            "CREATE FUNCTION",
            C::Ddl,
            "create",
        ),
        (
            "create procedure p() language sql as 'select 1'",
            "CREATE PROCEDURE",
            C::Ddl,
            "create",
        ),
        ("create view v as select 1", "CREATE VIEW", C::Ddl, "create"),
        ("create schema s", "CREATE SCHEMA", C::Ddl, "create"),
        ("create type ty as (a int)", "CREATE TYPE", C::Ddl, "create"),
        ("create sequence s", "CREATE SEQUENCE", C::Ddl, "create"),
        (
            "alter sequence s restart",
            "ALTER SEQUENCE",
            C::Ddl,
            "alter",
        ),
        (
            "create trigger tr after insert on t execute function f()",
            "CREATE TRIGGER",
            C::Ddl,
            "create",
        ),
        (
            "create policy p on t using (true)",
            "CREATE POLICY",
            C::Ddl,
            "create",
        ),
        (
            "create tablespace ts location '/tmp'",
            "CREATE TABLESPACE",
            C::Admin,
            "admin",
        ),
        ("create database d", "CREATE DATABASE", C::Ddl, "create"),
        ("drop database d", "DROP DATABASE", C::Ddl, "drop"),
        (
            "set constraints all deferred",
            "SET CONSTRAINTS",
            C::Session,
            "",
        ),
        (
            "alter large object 1 owner to bob",
            "ALTER LARGE OBJECT",
            C::Ddl,
            "alter",
        ),
        (
            "create aggregate a (int) (sfunc = int4pl, stype = int)",
            "CREATE AGGREGATE",
            C::Ddl,
            "create",
        ),
    ];
    for (sql, tag, class, kind) in cases {
        let i = one(sql);
        assert_eq!((i.tag.as_str(), i.class), (*tag, *class), "{sql}: {i:#?}");
        assert!(i.parsed && i.unverifiable.is_none(), "{sql}: {i:#?}");
        if !kind.is_empty() {
            assert!(
                i.keyword(kind).is_some(),
                "{sql}: no {kind} in {:?}",
                i.keywords
            );
        }
        for k in &i.keywords {
            assert!(is_deny_kind(k.kind), "{sql}: unknown kind {}", k.kind);
        }
    }
}

#[test]
fn data_modifying_cte_is_an_unbounded_write() {
    let i = one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d");
    assert_eq!(i.kind, StatementKind::Select);
    assert_eq!(i.class, StatementClass::Write);
    assert_eq!(i.class_label, "DELETE");
    assert_eq!(i.unbounded_write.as_deref(), Some("DELETE without WHERE"));
    assert_eq!(i.tables, vec!["t"]);
    // Anywhere: in an INSERT, an UPDATE, a COPY query.
    for sql in [
        "with d as (delete from t returning *) insert into u select * from d",
        "with d as (update t set a = 1 returning *) update u set b = 2 where c = 3",
        "copy (delete from t returning *) to stdout",
    ] {
        let i = one(sql);
        assert!(i.unbounded_write.is_some(), "{sql}: {i:#?}");
        assert!(i.class >= StatementClass::Write, "{sql}");
    }
}

#[test]
fn explain_analyze_and_prepare_are_seen_through() {
    let i = one("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t");
    assert_eq!(i.kind, StatementKind::Delete);
    assert_eq!(i.tag, "EXPLAIN");
    assert!(i.unbounded_write.is_some());
    let i = one("EXPLAIN (ANALYZE false) DELETE FROM t");
    assert_eq!(i.kind, StatementKind::Delete, "any ANALYZE option counts");
    let p = one("PREPARE p AS DELETE FROM t");
    assert_eq!(p.kind, StatementKind::Delete);
    let def = p.prepare.unwrap();
    assert_eq!(
        (def.name.as_str(), def.text.as_str()),
        ("p", "DELETE FROM t")
    );
    let e = one("EXECUTE P(1)");
    assert_eq!(e.execute_name(), Some("p"));
    let plain = one("EXPLAIN DELETE FROM t");
    assert_eq!(plain.kind, StatementKind::Explain);
    assert!(plain.keywords.is_empty() && plain.unbounded_write.is_none());
    // Statements that run a prepared statement name it too.
    for sql in ["explain analyze execute p", "create table x as execute p"] {
        assert_eq!(one(sql).execute_name(), Some("p"), "{sql}");
    }
    assert_eq!(one("explain execute p").execute_name(), None);
    // The prepared text reads the same whatever standard_conforming_strings is (each reading
    // prepares its own text).
    let p = analyze(r"prepare q as select 'a\b'");
    assert_eq!(
        p[0].prepare.as_ref().unwrap().text,
        r"PREPARE q AS SELECT E'a\\b'".replace("PREPARE q AS ", "")
    );
}

#[test]
fn splitting_respects_strings_comments_and_dollar_quotes() {
    let infos = analyze("select ';' ; select $$;$$; /* ; */ select \";\" -- ;\n; select 1");
    assert_eq!(infos.len(), 4, "{infos:#?}");
    assert!(
        infos
            .iter()
            .all(|i| i.parsed && i.class == StatementClass::Read)
    );
    assert!(analyze("  -- only a comment\n /* and this */ ;;").is_empty());
}

/// The lexer disagreement that let a DROP through: PostgreSQL reads a dollar quote whose tag
/// holds bytes >= 0x80, and a second statement.
#[test]
fn dollar_quote_tags_of_any_bytes() {
    let infos = analyze("select $€$ --$€$ ; drop table t");
    assert_eq!(infos.len(), 2, "{infos:#?}");
    assert_eq!(infos[1].tag, "DROP TABLE");
    let infos = analyze("select $€$ ; $€$, $é$ ; $é$ ; delete from t");
    assert_eq!(infos.len(), 2, "{infos:#?}");
    assert_eq!(infos[1].kind, StatementKind::Delete);
    // A tag of bytes that were not UTF-8 (replaced by U+FFFD before the gateway saw them)
    // cannot be told apart from another such tag: not checked.
    let i = one("select $\u{fffd}$ x $\u{fffd}$");
    assert!(i.unverifiable.is_some());
}

/// The cache collision pair: one string, or three statements.
#[test]
fn doubled_quotes_and_single_quotes_are_different_texts() {
    let allowed = one("select 'a'' ; delete from t where id = ''3'' ; select ''b', 1");
    assert_eq!(allowed.kind, StatementKind::Select);
    let attack = analyze("select 'a' ; delete from t where id = '3' ; select 'b', 1");
    assert_eq!(attack.len(), 3);
    assert_eq!(attack[1].kind, StatementKind::Delete);
}

#[test]
fn a_text_the_grammar_rejects_is_one_unverifiable_statement() {
    for sql in [
        "selec * from t",
        "select 1; selec 2; drop table t",
        "drop table t; select 'unterminated",
        "DrOp/**/TaBlE x ;;; (",
        "update t \u{17f}et a = 1",
    ] {
        let i = one(sql);
        assert_eq!(i.kind, StatementKind::Unparsed, "{sql}");
        assert!(!i.parsed && i.unverifiable.is_some(), "{sql}");
        assert_eq!(i.class, StatementClass::Other);
        // Never a keyword of what it might have been.
        assert!(i.keywords.is_empty(), "{sql}");
    }
    let i = one("DrOp/**/TaBlE x");
    assert_eq!(
        (i.label.as_str(), i.text.as_str()),
        ("DROP TABLE", "DrOp TaBlE x")
    );
    // The reason never quotes the text (it may hold a secret).
    let i = one("select 'card 4111 1111 1111 1111");
    assert!(!i.unverifiable.unwrap().contains("4111"));
}

#[test]
fn do_body_is_analyzed() {
    let i = one("DO $$ BEGIN EXECUTE 'drop table t'; END $$");
    assert_eq!(i.kind, StatementKind::Other("do".into()));
    assert_eq!(
        i.keyword("drop").unwrap().label,
        "DROP TABLE inside a DO block"
    );
    assert!(i.unverifiable.is_none(), "{i:#?}");
}

#[test]
fn function_body_is_analyzed() {
    let i = one("create function f() returns void language sql as $$ delete from t $$");
    assert_eq!(i.kind, StatementKind::Ddl("create_function".into()));
    assert_eq!(
        i.keyword("delete").unwrap().label,
        "DELETE inside a function body"
    );
    assert!(i.unbounded_write.is_some());
}

/// Every SQL piece of a PL/pgSQL body is analyzed as SQL.
#[test]
fn plpgsql_bodies_are_read_with_plpgsql_grammar() {
    let cases: &[(&str, &str)] = &[
        (
            "do $$ begin perform pg_read_file('x'); end $$",
            "dangerous_functions",
        ),
        (
            "do $$ declare x int; begin x := nextval('s'); end $$",
            "write",
        ),
        (
            "do $$ begin if (select count(*) from pg_ls_dir('.')) > 0 then null; end if; end $$",
            "dangerous_functions",
        ),
        ("do $$ begin delete from t; end $$", "delete"),
        (
            "do $$ declare r record; begin for r in delete from t returning * loop end loop; end $$",
            "delete",
        ),
        (
            "do $$ declare c cursor for select pg_read_file('x'); begin null; end $$",
            "dangerous_functions",
        ),
        (
            "do $$ declare x text := pg_read_file('x'); begin null; end $$",
            "dangerous_functions",
        ),
        ("do $$ begin execute 'drop table t'; end $$", "drop"),
        ("do $$ begin execute $q$ truncate t $q$; end $$", "truncate"),
        (
            "do $x$ begin execute $y$ do $z$ begin drop table t; end $z$ $y$; end $x$",
            "drop",
        ),
        (
            "create function f() returns setof int language plpgsql as $$ begin return query select 1 from t for update; end $$",
            "lock",
        ),
        (
            "create function f() returns trigger language plpgsql as $$ begin delete from t where id = old.id; return new; end $$",
            "delete",
        ),
        (
            "create function f() returns event_trigger language plpgsql as $$ begin drop table t; end $$",
            "drop",
        ),
        (
            "create procedure p() language plpgsql as $$ begin insert into t values (1); commit; end $$",
            "insert",
        ),
        (
            "create function f() returns int language sql begin atomic delete from t; select 1; end",
            "delete",
        ),
        (
            "create function f() returns int language sql return nextval('s')",
            "write",
        ),
        (
            "create function f(a int) returns int language plpgsql as 'begin return a + (select pg_terminate_backend(1))::int; end'",
            "dangerous_functions",
        ),
    ];
    for (sql, kind) in cases {
        let i = one(sql);
        let found = i.keyword(kind).is_some()
            || (*kind == "write"
                && i.functions
                    .iter()
                    .any(|f| WRITE_FUNCTIONS.contains(&f.name.as_str())));
        assert!(found, "{sql}: no {kind}: {i:#?}");
        assert!(i.unverifiable.is_none(), "{sql}: {:?}", i.unverifiable);
    }
}

#[test]
fn what_bodies_cannot_show_is_unverifiable() {
    for sql in [
        "do $$ begin execute 'drop ' || 'table t'; end $$",
        "do $$ declare q text := 'x'; begin execute q; end $$",
        "do $$ declare c refcursor; begin open c for execute 'sel' || 'ect 1'; end $$",
        "do $$ begin return query execute format('select %s', 1); end $$",
        "do language plpython3u $$ plpy.execute('drop table t') $$",
        "create function f() returns int language plperl as $$ 1 $$",
        "do $$ begin garbage here; end $$",
        // A backslash in a plain string: the body reads differently with
        // standard_conforming_strings off, which the PL/pgSQL parser cannot read.
        r"do $$ begin perform 'a\'; end $$",
    ] {
        let i = one(sql);
        assert!(i.unverifiable.is_some(), "{sql}: {i:#?}");
    }
    // E'' strings read the same both ways.
    assert!(
        one(r"do $$ begin perform E'a\\b'; end $$")
            .unverifiable
            .is_none()
    );
    // C functions are native code.
    let c = one("create function f() returns int as 'lib', 'sym' language c");
    assert!(c.keyword("load").is_some() && c.keyword("admin").is_some());
}

#[test]
fn functions_are_found_anywhere() {
    for sql in [
        "SELECT pg_read_file('/etc/passwd')",
        "select * from pg_read_file('/etc/passwd')",
        "select pg_catalog.PG_READ_FILE('/etc/passwd')",
        "select \"pg_read_file\"('/etc/passwd')",
        "select U&\"pg\\005fread_file\"('/etc/passwd')",
        "select U&\"pg!005fread_file\" UESCAPE '!' ('/etc/passwd')",
        "select 1 where exists (select pg_read_file('x'))",
        "insert into t values ((select pg_read_file('x')))",
        "create table x (a text default pg_read_file('x'))",
        "create table x (a text check (pg_read_file(a) is not null))",
        "create index i on t ((pg_read_file(a)))",
        "create view v as select pg_read_file('x')",
        "create policy p on t using (pg_read_file('x') is not null)",
        "copy (select pg_read_file('x')) to stdout",
        "call pg_read_file('x')",
        "alter table t alter column a set default pg_read_file('x')",
        "select * from t where a in (select pg_read_file('x'))",
        "select ('PG_VERSION'::text).pg_read_file",
        "select (a).pg_read_file from t",
        "select t.pg_read_file from t",
        "select s.t.pg_read_file from s.t",
        "select (a).x.pg_read_file from t",
        "update t set a = (b).pg_read_file",
        "execute p(pg_read_file('x'))",
        "create trigger tr after insert on t execute function pg_read_file()",
    ] {
        let i = one(sql);
        assert!(calls(&i, "pg_read_file"), "{sql}: {i:#?}");
        assert!(i.keyword("dangerous_functions").is_some(), "{sql}");
    }
    // Quoted with another case is another (nonexistent) function.
    assert!(
        one("select \"PG_READ_FILE\"('x')")
            .keyword("dangerous_functions")
            .is_none()
    );
    // Qualified names keep their schema.
    let i = one("select pg_catalog.now(), public.f(1)");
    let f = i.functions.iter().find(|f| f.name == "f").unwrap();
    assert_eq!(
        (f.schema.as_deref(), f.qualified().as_str()),
        (Some("public"), "public.f")
    );
}

#[test]
fn functional_notation_is_a_field() {
    let i = one("select (pid).pg_terminate_backend from pg_stat_activity");
    let f = i
        .functions
        .iter()
        .find(|f| f.name == "pg_terminate_backend")
        .unwrap();
    assert_eq!(f.notation, Notation::Field);
    let i = one("select ('s').nextval");
    assert!(
        i.functions
            .iter()
            .any(|f| f.name == "nextval" && f.notation == Notation::Field)
    );
    // A plain column is not a call.
    assert!(one("select a from t").functions.is_empty());
}

#[test]
fn unbounded_writes() {
    for (sql, unbounded) in [
        ("delete from t", true),
        ("delete from t where true", true),
        ("delete from t where 1 = 1", true),
        ("delete from t where 't'", true),
        ("delete from t where id = id", true),
        ("update t set a = 1 where not false", true),
        ("truncate t", true),
        (
            "merge into t using s on true when matched then delete",
            true,
        ),
        (
            "merge into t using s on 1 = 1 when matched then update set a = 1",
            true,
        ),
        (
            "merge into t using s on true when matched and true then delete",
            true,
        ),
        (
            "merge into t using s on t.id = s.id when matched then delete",
            false,
        ),
        (
            "merge into t using s on true when matched and t.a = 1 then delete",
            false,
        ),
        (
            "merge into t using s on true when not matched then insert values (1)",
            false,
        ),
        (
            "merge into t using s on false when not matched by source then delete",
            true,
        ),
        ("delete from t where id = 1", false),
        ("delete from t where 1 = 2", false),
        ("update t set a = 1 where id > -1", false),
    ] {
        let i = one(sql);
        assert_eq!(i.unbounded_write.is_some(), unbounded, "{sql}: {i:#?}");
    }
    // Number values decided these: texts of the same shape may differ.
    assert!(one("delete from t where 1 = 2").numbers_matter);
    assert!(!one("delete from t where id = 2").numbers_matter);
}

#[test]
fn copy_says_what_it_moves() {
    let i = one("copy public.t (a, b) to stdout (format binary)");
    let c = i.copy.unwrap();
    assert_eq!(c.format, CopyFormat::Binary);
    assert_eq!(c.relation.as_deref(), Some("public.t"));
    assert_eq!(c.columns, vec!["a", "b"]);
    assert_eq!(
        (c.direction, c.endpoint),
        (CopyDirection::To, CopyEndpoint::Client)
    );
    assert_eq!(
        one("copy t to stdout binary").copy.unwrap().format,
        CopyFormat::Binary
    );
    assert_eq!(
        one("copy binary t to stdout").copy.unwrap().format,
        CopyFormat::Binary
    );
    assert_eq!(
        one("copy t to stdout with csv").copy.unwrap().format,
        CopyFormat::Csv
    );
    assert_eq!(
        one("copy t to stdout").copy.unwrap().format,
        CopyFormat::Text
    );
    let q = one("copy (select a from t) to stdout").copy.unwrap();
    assert_eq!(q.query.as_deref(), Some("SELECT a FROM t"));
    assert!(q.relation.is_none());
    let f = one("copy t from '/tmp/x' (format 'binary')").copy.unwrap();
    assert_eq!(
        (f.direction, f.endpoint, f.format),
        (CopyDirection::From, CopyEndpoint::File, CopyFormat::Binary)
    );
}

#[test]
fn client_encoding_changes_are_unverifiable() {
    for sql in [
        "set client_encoding = 'SJIS'",
        "set client_encoding to latin1",
        "set names 'big5'",
        "select set_config('client_encoding', 'GBK', false)",
        "select set_config(name, 'x', false) from settings",
    ] {
        assert!(one(sql).unverifiable.is_some(), "{sql}");
    }
    for sql in [
        "set client_encoding = 'UTF8'",
        "set names 'utf-8'",
        "reset client_encoding",
    ] {
        assert!(one(sql).unverifiable.is_none(), "{sql}");
    }
}

/// `UPDATE pg_settings` is `set_config` for every row it touches.
#[test]
fn updating_pg_settings_is_unverifiable() {
    for sql in [
        "update pg_settings set setting = 'SJIS' where name = 'client_encoding'",
        "update pg_catalog.pg_settings set setting = 'x' where name = 'my.x'",
        "with u as (update pg_settings set setting = 'x' where name = 'role' returning 1) select 1",
    ] {
        assert!(
            analyze(sql).iter().any(|i| i.unverifiable.is_some()),
            "{sql}"
        );
    }
    assert!(
        one("update settings set setting = 'x' where name = 'a'")
            .unverifiable
            .is_none()
    );
}

/// PostgreSQL looks setting names up ignoring case; a quoted name keeps its case in the tree.
#[test]
fn setting_names_are_compared_ignoring_case() {
    for sql in [
        r#"set "CLIENT_ENCODING" to 'SJIS'"#,
        r#"SET "Client_Encoding" = 'SJIS'"#,
        r#"set local "CLIENT_ENCODING" to 'BIG5'"#,
        r#"set session "client_ENCODING" = gbk"#,
        r#"SET CLIENT_ENCODING TO 'SJIS'"#,
        "select set_config('CLIENT_ENCODING', 'SJIS', false)",
        "select set_config('Client_Encoding', 'SJIS', true)",
        r#"alter role app set "CLIENT_ENCODING" = 'SJIS'"#,
        r#"alter role app in database d set "Client_Encoding" to 'SJIS'"#,
        r#"alter role all set "CLIENT_ENCODING" = 'SJIS'"#,
        r#"alter database d set "CLIENT_ENCODING" = 'SJIS'"#,
        "alter database d set client_encoding = 'SJIS'",
        r#"alter system set "CLIENT_ENCODING" = 'SJIS'"#,
        r#"create function f() returns int language sql set "CLIENT_ENCODING" = 'SJIS' as 'select 1'"#,
        r#"alter function f() set "Client_Encoding" = 'SJIS'"#,
    ] {
        assert!(one(sql).unverifiable.is_some(), "{sql}");
    }
    for sql in [
        r#"set "CLIENT_ENCODING" to 'UTF8'"#,
        r#"alter role app set "CLIENT_ENCODING" = 'utf-8'"#,
        r#"reset "CLIENT_ENCODING""#,
    ] {
        assert!(one(sql).unverifiable.is_none(), "{sql}");
    }
    for (sql, label) in [
        (r#"set "ROLE" to postgres"#, "SET ROLE"),
        (r#"SET "Role" = postgres"#, "SET ROLE"),
        (r#"reset "ROLE""#, "RESET ROLE"),
        (
            r#"set "SESSION_AUTHORIZATION" = postgres"#,
            "SET SESSION AUTHORIZATION",
        ),
        (
            r#"set local "Session_Authorization" to postgres"#,
            "SET SESSION AUTHORIZATION",
        ),
        ("select set_config('ROLE', 'postgres', false)", "set_config"),
        (
            "select set_config('Session_Authorization', 'postgres', false)",
            "set_config",
        ),
    ] {
        let i = one(sql);
        assert_eq!(i.class, StatementClass::Admin, "{sql}: {i:#?}");
        let k = i.keyword("set_role");
        assert!(
            k.is_some_and(|k| k.label.starts_with(label)),
            "{sql}: {i:#?}"
        );
    }
}

#[test]
fn backslash_reading_is_added_when_it_differs() {
    let infos = analyze("select 'a\\'' ; drop table t; -- '");
    assert!(
        infos
            .iter()
            .any(|i| i.reading == Reading::BackslashEscapes && i.keyword("drop").is_some()),
        "{infos:#?}"
    );
    // An ordinary backslash that reads the same adds nothing.
    let plain = analyze("select 'C:\\temp'");
    assert_eq!(plain.len(), 1);
    assert!(plain.iter().all(|i| i.keywords.is_empty()));
    // Seen from a session known to have standard_conforming_strings off, the escape reading
    // comes first and the standard one is added.
    let infos = analyze_with(
        "select 'a\\'' ; drop table t; -- '",
        Reading::BackslashEscapes,
    );
    assert_eq!(infos[0].reading, Reading::BackslashEscapes);
    assert!(infos.iter().any(|i| i.keyword("drop").is_some()));
    // Only one reading parses: the statements of the one that does.
    let infos = analyze_with("select 'it\\'s'", Reading::BackslashEscapes);
    assert_eq!(infos.len(), 1, "{infos:#?}");
    assert!(infos[0].parsed);
}

#[test]
fn deep_nesting_fails_closed_without_overflow() {
    for sql in [
        format!("select {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!(
            "update t set a = {}1{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        ),
        format!("select 1{}", " + 1".repeat(10_000)),
        format!("select {}1{}", "f(".repeat(5_000), ")".repeat(5_000)),
    ] {
        let infos = analyze(&sql);
        assert!(
            infos.iter().all(|i| i.unverifiable.is_some()),
            "{}",
            &sql[..40]
        );
    }
    // Moderately deep expressions parse.
    let i = one(&format!("select 1{}", " || 'a'".repeat(40)));
    assert!(i.parsed && i.unverifiable.is_none());
}

#[test]
fn too_long_is_not_analyzed() {
    let sql = format!("select '{}'", "x".repeat(MAX_SQL_BYTES));
    assert_eq!(one(&sql).kind, StatementKind::TooLong);
    let many = "select 1;".repeat(MAX_STATEMENTS + 1);
    assert_eq!(one(&many).kind, StatementKind::TooLong);
    let tokens = format!(
        "select 1 where a in ({})",
        vec!["1"; MAX_TOKENS / 2 + 1].join(",")
    );
    assert_eq!(one(&tokens).kind, StatementKind::TooLong);
    // Bodies share the budget.
    let body = format!(
        "do $$ begin perform 1{}; end $$",
        ", 1".repeat(MAX_TOKENS / 2)
    );
    let i = one(&body);
    assert!(i.unverifiable.is_some() || i.kind == StatementKind::TooLong);
}

#[test]
fn upsert_and_merge_name_their_actions() {
    let i = one("insert into t values (1) on conflict (id) do update set a = 2");
    assert_eq!(
        i.keyword("update").unwrap().label,
        "INSERT ... ON CONFLICT DO UPDATE"
    );
    let m = one("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE");
    assert_eq!(m.keyword("delete").unwrap().label, "MERGE ... DELETE");
    assert_eq!(m.class, StatementClass::Write);
}

#[test]
fn select_into_and_ctas_create_tables() {
    let i = one("select * into newt from t");
    assert_eq!(i.kind, StatementKind::SelectInto);
    assert_eq!(i.class, StatementClass::Ddl);
    let c = one("create table x as select 1");
    assert_eq!(c.kind, StatementKind::Ddl("create_table_as".into()));
    assert!(c.keyword("write").is_some());
}

#[test]
fn deny_kinds_table_covers_every_kind_used() {
    for sql in [
        "drop table t",
        "copy t to program 'x'",
        "set role x",
        "vacuum t",
        "lock table t",
        "select pg_read_file('x')",
        "create extension x",
        "grant all on t to public",
        "revoke all on t from public",
        "call p()",
        "comment on table t is 'x'",
        "ALTER SYSTEM SET x = 1",
        "DO $$ begin end $$",
        "copy t from '/tmp/x'",
        "notify x",
    ] {
        for info in analyze(sql) {
            for k in &info.keywords {
                assert!(is_deny_kind(k.kind), "{sql}: unknown kind {}", k.kind);
            }
        }
    }
}

/// The generated walk reaches every node. The tree's serialized form has one JSON object per
/// struct, plus one per value of its two `oneof`s (the `Node` wrapper's variant and
/// `A_Const`'s value); so the structs the walk must visit are all objects but the parse result,
/// the raw statements, the `Node` wrappers with their variant objects and the constant values
/// with theirs (and `Node` wrappers holding nothing). A field the walk missed would leave
/// objects uncounted.
#[test]
fn the_generated_walk_reaches_every_node() {
    #[derive(Default, Debug)]
    struct Count {
        objects: usize,
        wrappers: usize,
        empty_wrappers: usize,
        values: usize,
        raw: usize,
    }
    fn count(v: &serde_json::Value, c: &mut Count) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| count(x, c)),
            serde_json::Value::Object(m) => {
                c.objects += 1;
                if m.len() == 1 && m.get("node").is_some_and(|n| n.is_object()) {
                    c.wrappers += 1;
                }
                // A `Node` holding nothing (a NULL in a list).
                if m.len() == 1 && m.get("node").is_some_and(|n| n.is_null()) {
                    c.empty_wrappers += 1;
                }
                if m.contains_key("isnull") && m.get("val").is_some_and(|n| n.is_object()) {
                    c.values += 1;
                }
                if m.contains_key("stmt_location") {
                    c.raw += 1;
                }
                m.values().for_each(|x| count(x, c));
            }
            _ => {}
        }
    }
    for sql in [
        "select 1 from t for update",
        "select max(a) over (partition by b order by c rows between 1 preceding and current row) from t",
        "select 1 from u tablesample system (1)",
        "with recursive c(n) as (select 1) select 1",
        "select 1 from c join lateral f(c.n) on true",
        "select 1 order by 1 limit 2",
        "with recursive c(n) as (select 1 union all select n + 1 from c where n < 3) select n, (select max(a) over (partition by b order by c rows between 1 preceding and current row) from t) from c join lateral f(c.n) on true where exists (select 1 from u tablesample system (1)) order by 1 limit 2 for update",
        "insert into t (a, b) select x, y from s on conflict (a) do update set b = excluded.b where t.b is distinct from excluded.b returning *",
        "merge into t using (values (1)) s(a) on t.a = s.a when matched and t.b > 0 then update set b = 0 when not matched then insert values (s.a)",
        "create table x (a int default nextval('s') check (a > 0), b text collate \"C\" generated always as (upper(c)) stored, c text, primary key (a) include (b)) partition by range (a)",
        "create function f(a int default 1, out b int) returns setof record language sql stable begin atomic select a + 1; end",
        "alter table t add constraint c check (a in (1, 2)), alter column b set default now(), add column d int generated always as identity",
        "select json_object('a': 1), json_arrayagg(a order by b), xmlelement(name x, xmlattributes(a as b)), a is json object, case when a then b else c end, (array[1,2])[1:2], row(1,2)::t, coalesce(a, b), greatest(a, b), nullif(a, b), a between 1 and 2, a like 'x%' escape '!', extract(year from now()), substring('x' from 1 for 2), current_user, a at time zone 'utc', grouping(a) from t group by rollup(a, b)",
        "select * from json_table('[]', '$' columns (a int path '$.a')) jt, xmltable('/x' passing '<x/>' columns a int path 'a') xt, rows from (f(1), g(2)) with ordinality",
        "create trigger tr before update of a on t for each row when (old.a is distinct from new.a) execute function f('x')",
        "create rule r as on update to t where old.a = 1 do also (insert into log values (old.*); notify ch)",
        "copy (select a from t where b = any(array[1])) to stdout with (format csv, force_quote (a))",
        "create policy p on t for select to bob using (a = current_user) with check (b > 0)",
        "explain (analyze, verbose) with d as (delete from t returning *) select * from d; grant select (a) on t to bob; alter default privileges grant all on tables to bob",
        "create event trigger e on ddl_command_start execute function f(); alter role bob in database d set search_path = a, b; create cast (int as text) with function f(int)",
    ] {
        let tree = pg::parse(sql, pg::Mode::Statements, true).unwrap();
        let mut c = Count::default();
        count(&serde_json::to_value(&tree).unwrap(), &mut c);
        let mut visited = 0;
        for raw in &tree.stmts {
            let node = raw.stmt.as_deref().unwrap().node.as_ref().unwrap();
            let mut stack = vec![node.to_ref()];
            while let Some(n) = stack.pop() {
                visited += 1;
                walk::for_each_child(n, &mut |child| stack.push(child));
            }
        }
        assert_eq!(
            visited + 1 + c.raw + 2 * c.wrappers + c.empty_wrappers + 2 * c.values,
            c.objects,
            "{sql}: {c:?}, walked {visited}"
        );
    }
}
