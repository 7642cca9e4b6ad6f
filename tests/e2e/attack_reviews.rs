//! Statement reviews against an authorised user who speaks the PostgreSQL protocol by hand
//! (and through tokio-postgres) to get more past a review than the reviewer saw: hidden second
//! statements, re-executions, renamed statements, huge and endless batches, Flush without Sync,
//! SQL PREPARE/EXECUTE, cancels and disconnects around a decision. Every case says what it
//! tries and checks the target directly (a separate superuser connection), never only what the
//! gateway answered. Reviews are decided by a second identity with `hoop approve`/`hoop reject`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hoop_tests::gateway::{code, stderr, stdout};
use hoop_tests::wire::{Answers, Wire};
use serde_json::Value;

use crate::postgres::{Env, TARGET_PASSWORD, setup};

type Outcome = anyhow::Result<()>;
type CaseFn = for<'a> fn(&'a Ctx) -> Pin<Box<dyn Future<Output = Outcome> + 'a>>;

/// One attack: what it tries, what must hold, and the run that checks it.
struct Case {
    attack: &'static str,
    holds: &'static str,
    run: CaseFn,
}

macro_rules! case {
    ($attack:expr, $holds:expr, $f:ident) => {
        Case {
            attack: $attack,
            holds: $holds,
            run: |c| Box::pin($f(c)),
        }
    };
}

const INSERT: &str = "insert into ledger values ($1, $2)";

struct Ctx {
    env: Env,
    approver: String,
    target: tokio_postgres::Client,
}

async fn context() -> Ctx {
    let env = setup(
        "guardrails = [\"no-ddl\"]\nmasking = [\"pii\"]\nreview = { statements = [\"write\"], approvers = [\"dba\"], statement_timeout = \"30s\" }",
        r#"
[[connections]]
name = "shop_fast"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = { file = "$PWFILE" }
allow = ["engineering"]
review = { statements = ["write"], approvers = ["dba"], statement_timeout = "3s" }
"#,
    )
    .await;
    env.pg
        .psql_as(
            "app",
            TARGET_PASSWORD,
            "shop",
            "create table ledger (k text, v text);",
        )
        .await
        .unwrap();
    let out = env
        .gw
        .hoopd(
            &["api-keys", "create", "--name", "dba1", "--groups", "dba"],
            None,
        )
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let approver = stdout(&out).trim().to_string();
    let (target, conn) = tokio_postgres::connect(&env.pg.url("shop"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    Ctx {
        env,
        approver,
        target,
    }
}

impl Ctx {
    async fn wire(&self) -> anyhow::Result<Wire> {
        Wire::connect(self.env.tunnel.port, &self.env.tunnel.password, "shop").await
    }

    /// Rows of the ledger with key `k`, read on the target itself.
    async fn count(&self, k: &str) -> anyhow::Result<i64> {
        let row = self
            .target
            .query_one("select count(*) from ledger where k = $1", &[&k])
            .await?;
        Ok(row.get(0))
    }

    /// Runs `hoop <args>` as the approver.
    async fn hoop(&self, args: Vec<String>) -> std::process::Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.env.cli.command(&args).unwrap();
        cmd.env("HOOP_TOKEN", &self.approver);
        tokio::task::spawn_blocking(move || {
            hoop_tests::gateway::run_with_stdin(&mut cmd, None).unwrap()
        })
        .await
        .unwrap()
    }

    /// The approver approves review `id`.
    async fn approve(&self, id: i64) -> anyhow::Result<()> {
        let out = self.hoop(vec!["approve".into(), id.to_string()]).await;
        anyhow::ensure!(code(&out) == 0, "approve {id}: {}", stderr(&out));
        Ok(())
    }

    /// The approver rejects review `id`.
    async fn reject(&self, id: i64) -> anyhow::Result<()> {
        let out = self
            .hoop(vec![
                "reject".into(),
                id.to_string(),
                "--reason".into(),
                "no".into(),
            ])
            .await;
        anyhow::ensure!(code(&out) == 0, "reject {id}: {}", stderr(&out));
        Ok(())
    }

    /// Review `id` as `hoop reviews show -o json` prints it for the approver.
    async fn review(&self, id: i64) -> anyhow::Result<Value> {
        let out = self
            .hoop(vec![
                "reviews".into(),
                "show".into(),
                id.to_string(),
                "-o".into(),
                "json".into(),
            ])
            .await;
        anyhow::ensure!(code(&out) == 0, "show {id}: {}", stderr(&out));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Ids of the reviews waiting for the approver.
    async fn pending(&self) -> anyhow::Result<Vec<i64>> {
        let out = self
            .hoop(vec![
                "reviews".into(),
                "--to-approve".into(),
                "-o".into(),
                "json".into(),
            ])
            .await;
        anyhow::ensure!(code(&out) == 0, "list: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout)?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_i64()).collect())
            .unwrap_or_default())
    }
}

/// The texts and parameters a review shows.
fn shown(review: &Value) -> Vec<(String, Vec<Value>)> {
    review["statements"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["text"].as_str().unwrap_or_default().to_string(),
                        s["params"].as_array().cloned().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn no_errors(a: &Answers) -> Outcome {
    anyhow::ensure!(a.errors().is_empty(), "errors: {:?}", a.errors());
    Ok(())
}

fn refused_with(a: &Answers, words: &str) -> Outcome {
    anyhow::ensure!(
        a.errors().iter().any(|e| e.contains(words)),
        "expected an error with {words:?}, got {:?} ({})",
        a.errors(),
        a.tags()
    );
    anyhow::ensure!(a.tags().ends_with('Z'), "no ReadyForQuery: {}", a.tags());
    Ok(())
}

async fn run_table(ctx: &Ctx, cases: &[Case]) {
    let mut failed = Vec::new();
    for c in cases {
        let r = tokio::time::timeout(Duration::from_secs(120), (c.run)(ctx)).await;
        let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
        if let Err(e) = r {
            failed.push(format!(
                "{}\n    must hold: {}\n    {e:#}",
                c.attack, c.holds
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}\n--- gateway log ---\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n"),
        ctx.env.gw.logs()
    );
}

// ---- the extended protocol ----

async fn two_writes_one_sync(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("a", INSERT)
        .parse("b", INSERT)
        .bind("", "a", &[Some("two"), Some("first")])
        .execute("", 0)
        .bind("", "b", &[Some("two"), Some("second")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    let seen = shown(&c.review(id).await?);
    anyhow::ensure!(seen.len() == 2, "the review shows {seen:?}");
    let values = format!("{seen:?}");
    anyhow::ensure!(
        values.contains("first") && values.contains("second"),
        "both values shown: {values}"
    );
    c.reject(id).await?;
    refused_with(
        &w.until_ready(Duration::from_secs(30)).await?,
        "not approved",
    )?;
    anyhow::ensure!(c.count("two").await? == 0, "a rejected batch ran");
    Ok(())
}

async fn write_hidden_as_third_parse(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("s1", "select 1")
        .parse("s2", "select $1::text")
        .parse("s3", INSERT)
        .bind("", "s1", &[])
        .execute("", 0)
        .bind("", "s2", &[Some("x")])
        .execute("", 0)
        .bind("", "s3", &[Some("third"), Some("v")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    let seen = shown(&c.review(id).await?);
    anyhow::ensure!(
        seen.len() == 1 && seen[0].0.contains("insert") && format!("{seen:?}").contains("third"),
        "the review shows the insert and its values: {seen:?}"
    );
    anyhow::ensure!(c.count("third").await? == 0, "ran before approval");
    c.approve(id).await?;
    no_errors(&w.until_ready(Duration::from_secs(30)).await?)?;
    anyhow::ensure!(c.count("third").await? == 1, "the approved batch ran once");
    let state = c.review(id).await?["state"].clone();
    anyhow::ensure!(state == "executed", "state {state}");
    Ok(())
}

async fn execute_twice_then_again(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("d", INSERT)
        .bind("", "d", &[Some("twice"), Some("v")])
        .execute("", 0)
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    c.approve(id).await?;
    let a = w.until_ready(Duration::from_secs(30)).await?;
    // PostgreSQL runs a portal once: the second Execute fails ("cannot be run"), which rolls
    // the batch back. One approval never gives two rows.
    anyhow::ensure!(c.count("twice").await? <= 1, "one approval, two rows");
    anyhow::ensure!(
        !a.errors().is_empty(),
        "the second Execute ran: {}",
        a.tags()
    );
    // The same named statement again, in a later batch: a new review.
    w.bind("", "d", &[Some("twice"), Some("again")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let again = w.review_notice().await?;
    anyhow::ensure!(again != id, "the re-execution reused review {id}");
    c.reject(again).await?;
    refused_with(
        &w.until_ready(Duration::from_secs(30)).await?,
        "not approved",
    )?;
    anyhow::ensure!(c.count("twice").await? == 0, "the re-execution ran");
    Ok(())
}

async fn bind_from_earlier_batch(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    // Preparing (and describing) runs nothing: no review.
    let a = w
        .parse("f", INSERT)
        .describe_statement("f")
        .sync()
        .run()
        .await?;
    no_errors(&a)?;
    anyhow::ensure!(
        a.review_id().is_none(),
        "a Parse was reviewed: {:?}",
        a.notices()
    );
    w.bind("", "f", &[Some("earlier"), Some("bound-later")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    anyhow::ensure!(
        format!("{:?}", shown(&c.review(id).await?)).contains("bound-later"),
        "the value is shown"
    );
    c.reject(id).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    anyhow::ensure!(c.count("earlier").await? == 0, "ran");
    Ok(())
}

async fn unnamed_then_named(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("", INSERT)
        .parse("n1", INSERT)
        .bind("", "", &[Some("un-named"), Some("u")])
        .bind("p1", "n1", &[Some("un-named"), Some("n")])
        .execute("", 0)
        .execute("p1", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    let seen = shown(&c.review(id).await?);
    anyhow::ensure!(seen.len() == 2, "both executions shown: {seen:?}");
    c.approve(id).await?;
    no_errors(&w.until_ready(Duration::from_secs(30)).await?)?;
    anyhow::ensure!(c.count("un-named").await? == 2, "each ran once");
    Ok(())
}

async fn close_and_reparse_after_approval(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("h", INSERT)
        .bind("", "h", &[Some("reparse"), Some("v")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    c.approve(id).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    w.close_statement("h")
        .parse("h", "delete from ledger where k = $1")
        .bind("", "h", &[Some("reparse")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let again = w.review_notice().await?;
    let seen = shown(&c.review(again).await?);
    anyhow::ensure!(
        seen.len() == 1 && seen[0].0.contains("delete"),
        "the new text is shown: {seen:?}"
    );
    c.reject(again).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    anyhow::ensure!(c.count("reparse").await? == 1, "the delete ran");
    Ok(())
}

async fn redefinitions_that_fail_or_are_skipped(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    // j holds a SELECT on the target; a Parse of j as an INSERT would fail there ("already
    // exists"), but the gateway must never then let a Bind of j run unreviewed.
    no_errors(&w.parse("j", "select 1").sync().run().await?)?;
    w.parse("j", "insert into ledger values ('redef', 'x')")
        .sync()
        .run()
        .await?;
    w.bind("", "j", &[]).execute("", 0).sync().send().await?;
    let a = w
        .until(|m| m.tag == b'Z' || m.tag == b'N', Duration::from_secs(30))
        .await?;
    if let Some(id) = a.review_id() {
        c.reject(id).await?;
        w.until_ready(Duration::from_secs(30)).await?;
    }
    // A reviewed statement, then a Close and re-Parse that PostgreSQL skips (an error earlier
    // in the same batch): the target keeps the insert, the gateway must not forget it.
    w.parse("j2", "insert into ledger values ('redef', 'y')")
        .sync()
        .run()
        .await?;
    let a = w
        .execute("no such portal", 0)
        .close_statement("j2")
        .parse("j2", "select 2")
        .sync()
        .run()
        .await?;
    anyhow::ensure!(
        !a.errors().is_empty(),
        "the batch should fail on the target"
    );
    w.bind("", "j2", &[]).execute("", 0).sync().send().await?;
    let a = w
        .until(|m| m.tag == b'Z' || m.tag == b'N', Duration::from_secs(30))
        .await?;
    if let Some(id) = a.review_id() {
        c.reject(id).await?;
        w.until_ready(Duration::from_secs(30)).await?;
    }
    anyhow::ensure!(c.count("redef").await? == 0, "an insert ran unreviewed");
    Ok(())
}

async fn portal_reexecution_with_row_limits(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    no_errors(&w.query("begin").run().await?)?;
    w.parse(
        "k",
        "insert into ledger select $1, g::text from generate_series(1, 3) g returning v",
    )
    .bind("pk", "k", &[Some("rowlimit")])
    .execute("pk", 1)
    .sync()
    .send()
    .await?;
    let id = w.review_notice().await?;
    c.approve(id).await?;
    let first = w.until_ready(Duration::from_secs(30)).await?;
    no_errors(&first)?;
    anyhow::ensure!(
        first.tags().contains('s'),
        "portal suspended: {}",
        first.tags()
    );
    // Fetching the rest continues the approved run: no second review, no second insert.
    let rest = w.execute("pk", 0).sync().run().await?;
    no_errors(&rest)?;
    anyhow::ensure!(rest.review_id().is_none(), "a fetch was reviewed again");
    anyhow::ensure!(rest.firsts().len() == 2, "rows: {:?}", rest.firsts());
    no_errors(&w.query("commit").run().await?)?;
    anyhow::ensure!(c.count("rowlimit").await? == 3, "the insert ran once");
    Ok(())
}

async fn hidden_names_and_describe_tricks(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    let a = w
        .parse("l", "insert into ledger values ('hidden', $1)")
        .describe_statement("l")
        .sync()
        .run()
        .await?;
    no_errors(&a)?;
    anyhow::ensure!(a.tags().contains('t'), "described: {}", a.tags());
    // The client learns the gateway's name for it on the target...
    let names = w
        .query("select name from pg_prepared_statements where name like '\\_\\_hoop%'")
        .run()
        .await?
        .firsts();
    let Some(Some(hidden)) = names.into_iter().next() else {
        anyhow::bail!("no hidden statement on the target");
    };
    // ...and tries to describe, bind or close it directly.
    let a = w.describe_statement(&hidden).sync().run().await?;
    refused_with(&a, "keeps for its own")?;
    let a = w
        .bind("", &hidden, &[Some("direct")])
        .execute("", 0)
        .sync()
        .run()
        .await?;
    refused_with(&a, "keeps for its own")?;
    // EXECUTE of it through SQL is reviewed as what it runs.
    w.query(format!("execute {hidden}('sql')")).send().await?;
    let id = w.review_notice().await?;
    let r = c.review(id).await?;
    anyhow::ensure!(
        r.to_string().contains("insert into ledger"),
        "the note names what runs: {r}"
    );
    c.reject(id).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    anyhow::ensure!(c.count("hidden").await? == 0, "ran");
    Ok(())
}

async fn flush_without_sync_approved(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("m", INSERT)
        .bind("", "m", &[Some("flush-ok"), Some("v")])
        .execute("", 0)
        .flush()
        .send()
        .await?;
    let id = w.review_notice().await?;
    anyhow::ensure!(c.count("flush-ok").await? == 0, "ran before approval");
    c.approve(id).await?;
    let a = w
        .until(|m| m.tag == b'C' || m.tag == b'E', Duration::from_secs(30))
        .await?;
    no_errors(&a)?;
    no_errors(&w.sync().run().await?)?;
    anyhow::ensure!(c.count("flush-ok").await? == 1, "ran once");
    Ok(())
}

async fn flush_without_sync_rejected(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("n", INSERT)
        .bind("", "n", &[Some("flush-no"), Some("v")])
        .execute("", 0)
        .flush()
        .send()
        .await?;
    let id = w.review_notice().await?;
    c.reject(id).await?;
    let a = w.until(|m| m.tag == b'E', Duration::from_secs(30)).await?;
    anyhow::ensure!(a.errors()[0].contains("not approved"), "{:?}", a.errors());
    // Whatever follows until Sync is dropped, as PostgreSQL does after an error.
    let a = w
        .bind("", "n", &[Some("flush-no"), Some("after")])
        .execute("", 0)
        .sync()
        .run()
        .await?;
    anyhow::ensure!(a.review_id().is_none() && a.tags() == "Z", "{}", a.tags());
    anyhow::ensure!(c.count("flush-no").await? == 0, "ran");
    let a = w.query("select 1").run().await?;
    anyhow::ensure!(a.firsts() == [Some("1".to_string())], "the session goes on");
    Ok(())
}

async fn nine_mib_batch(c: &Ctx) -> Outcome {
    let before = c.pending().await?;
    let mut w = c.wire().await?;
    let big = "x".repeat(1 << 20);
    w.parse("o", INSERT);
    for _ in 0..9 {
        w.bind("", "o", &[Some("nine-mib"), Some(&big)])
            .execute("", 0);
    }
    let a = w.sync().run().await?;
    refused_with(&a, "8 MiB")?;
    anyhow::ensure!(a.sqlstates() == ["54000"], "{:?}", a.sqlstates());
    anyhow::ensure!(a.review_id().is_none(), "a review was filed");
    anyhow::ensure!(c.pending().await? == before, "a review was filed");
    anyhow::ensure!(c.count("nine-mib").await? == 0, "part of it ran");
    let a = w.query("select 1").run().await?;
    anyhow::ensure!(a.firsts() == [Some("1".to_string())], "the session goes on");
    Ok(())
}

async fn hundred_thousand_tiny_messages(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("q", INSERT)
        .bind("", "q", &[Some("tiny"), Some("v")])
        .execute("", 0);
    for _ in 0..100_000 {
        w.close_portal("x");
    }
    let a = w.sync().run().await?;
    refused_with(&a, "10000 messages")?;
    anyhow::ensure!(c.count("tiny").await? == 0, "ran");
    let a = w.query("select 1").run().await?;
    anyhow::ensure!(a.firsts() == [Some("1".to_string())], "the session goes on");
    Ok(())
}

async fn blocked_parse_then_a_flood(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("", INSERT)
        .bind("", "", &[Some("flood"), Some("before")])
        .execute("", 0)
        .parse("x", "drop table ledger");
    // Everything after the blocked Parse is dropped unread, however much of it comes.
    let big = "y".repeat(64 << 10);
    for _ in 0..400 {
        w.bind("", "", &[Some("flood"), Some(&big)]).execute("", 0);
    }
    let a = w.sync().run().await?;
    refused_with(&a, "blocked by guardrail")?;
    anyhow::ensure!(c.count("flood").await? == 0, "part of it ran");
    let exists = c
        .target
        .query_one("select to_regclass('ledger') is not null", &[])
        .await?;
    anyhow::ensure!(exists.get::<_, bool>(0), "the table was dropped");
    Ok(())
}

async fn a_query_slipped_into_a_refused_batch(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    // A blocked Parse, then a write as a simple Query before any Sync.
    w.parse("x", "drop table ledger")
        .query("insert into ledger values ('slipped', 'q')")
        .send()
        .await?;
    let a = w.until(|m| m.tag == b'E', Duration::from_secs(30)).await?;
    anyhow::ensure!(
        a.errors()[0].contains("blocked by guardrail"),
        "the refusal is answered at once: {:?}",
        a.errors()
    );
    let a = w.sync().run().await?;
    anyhow::ensure!(
        a.tags() == "Z",
        "the Query was dropped like the rest: {}",
        a.tags()
    );
    anyhow::ensure!(c.count("slipped").await? == 0, "the Query ran");
    let a = w.query("select 1").run().await?;
    anyhow::ensure!(a.firsts() == [Some("1".to_string())], "the session goes on");
    Ok(())
}

async fn sql_prepared_name_bound_through_the_protocol(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    let a = w
        .query("prepare ex(text) as insert into ledger values ('exposed', $1)")
        .run()
        .await?;
    no_errors(&a)?;
    anyhow::ensure!(a.review_id().is_none(), "PREPARE alone was reviewed");
    w.bind("", "ex", &[Some("via-bind")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    c.reject(id).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    anyhow::ensure!(c.count("exposed").await? == 0, "ran");
    Ok(())
}

async fn bind_of_an_unknown_statement(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    let a = w
        .bind("", "never_prepared", &[])
        .execute("", 0)
        .sync()
        .run()
        .await?;
    refused_with(&a, "has not seen prepared")
}

async fn binary_parameters_are_shown_masked(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    let card = 4_111_111_111_111_111i64.to_be_bytes();
    w.parse_typed("t", "insert into ledger values ($1, $2::text)", &[25, 20])
        .bind_formats("", "t", &[0, 1], &[Some(b"binary"), Some(&card)])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    let r = c.review(id).await?;
    let params = format!("{:?}", shown(&r));
    c.reject(id).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    anyhow::ensure!(
        params.contains("1111") && !params.contains("4111111111111111"),
        "the card is shown masked, as text: {params}"
    );
    anyhow::ensure!(
        !r.to_string().contains("4111111111111111"),
        "raw value in the review: {r}"
    );
    Ok(())
}

#[tokio::test]
async fn extended_protocol_batches_cannot_walk_past_a_review() {
    let ctx = context().await;
    let cases = [
        case!(
            "two write Parses before one Sync, hoping the review shows only the first",
            "one review shows both executions with their values; rejected, neither runs",
            two_writes_one_sync
        ),
        case!(
            "a write hidden as the third Parse behind two SELECTs",
            "the review shows the write with its values; nothing runs before approval; once approved it runs once",
            write_hidden_as_third_parse
        ),
        case!(
            "Execute twice after one approval, then Bind the named statement again later",
            "one row for the approval; the later execution files a new review",
            execute_twice_then_again
        ),
        case!(
            "Parse and Describe in one batch (no review), Bind it in a later batch",
            "the Bind's execution is reviewed with its value",
            bind_from_earlier_batch
        ),
        case!(
            "Parse unnamed then named, bind and execute both",
            "the review lists both; each runs once",
            unnamed_then_named
        ),
        case!(
            "Close and re-Parse the approved name with a DELETE",
            "the DELETE is a new review showing the new text",
            close_and_reparse_after_approval
        ),
        case!(
            "redefine a name so the target keeps the old text (a failed Parse, a skipped Close)",
            "no insert runs unreviewed",
            redefinitions_that_fail_or_are_skipped
        ),
        case!(
            "re-execute an approved portal with row limits inside a transaction",
            "the rest is fetched without a new review and the insert ran once",
            portal_reexecution_with_row_limits
        ),
        case!(
            "learn the gateway's hidden statement name and Describe, Bind or EXECUTE it",
            "Describe and Bind are refused; EXECUTE is reviewed as what it runs",
            hidden_names_and_describe_tricks
        ),
        case!(
            "Flush without Sync, approved",
            "nothing runs before approval; it runs once and commits at the Sync",
            flush_without_sync_approved
        ),
        case!(
            "Flush without Sync, rejected, then more before the Sync",
            "the error comes at the Flush; the rest until Sync is dropped; the session goes on",
            flush_without_sync_rejected
        ),
        case!(
            "a 9 MiB batch of writes before Sync",
            "refused whole with 54000 naming the bound, no review filed, nothing ran",
            nine_mib_batch
        ),
        case!(
            "a write followed by 100,000 tiny messages before Sync",
            "refused whole naming the message bound; nothing ran",
            hundred_thousand_tiny_messages
        ),
        case!(
            "a blocked Parse after a write, then 25 MiB more before Sync",
            "blocked; nothing ran; the table exists",
            blocked_parse_then_a_flood
        ),
        case!(
            "a simple Query slipped in after a blocked Parse, before Sync",
            "the block is answered at once; the Query is dropped as PostgreSQL would; the session goes on",
            a_query_slipped_into_a_refused_batch
        ),
        case!(
            "SQL PREPARE a write, then Bind that name through the protocol",
            "the Bind is reviewed; rejected, nothing runs",
            sql_prepared_name_bound_through_the_protocol
        ),
        case!(
            "Bind a statement name the gateway never saw prepared",
            "refused",
            bind_of_an_unknown_statement
        ),
        case!(
            "a card number bound as a binary int8",
            "the reviewer sees it as text, masked; the raw value is stored nowhere in the review",
            binary_parameters_are_shown_masked
        ),
    ];
    run_table(&ctx, &cases).await;
}

// ---- the simple protocol, SQL PREPARE/EXECUTE, and the review's lifecycle ----

async fn multi_statement_query(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.query("select 1; insert into ledger values ('multi', 'x'); select 2")
        .send()
        .await?;
    let id = w.review_notice().await?;
    let text = c.review(id).await?["statement"].to_string();
    anyhow::ensure!(
        text.contains("select 1") && text.contains("select 2"),
        "the whole text is shown: {text}"
    );
    c.reject(id).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    anyhow::ensure!(c.count("multi").await? == 0, "ran");
    Ok(())
}

async fn reads_with_effects_are_reviewed(c: &Ctx) -> Outcome {
    let objects = "select count(*) from pg_largeobject_metadata";
    let before: i64 = c.target.query_one(objects, &[]).await?.get(0);
    for sql in [
        "select lo_from_bytea(0, 'x')",
        "select pg_notify('reviewed', 'x')",
        "select pg_advisory_lock(42)",
        "select setval('ledger_seq', 1000)",
        "select txid_current()",
        "select my_unknown_function()",
    ] {
        let mut w = c.wire().await?;
        w.query(sql).send().await?;
        let id = w
            .review_notice()
            .await
            .map_err(|e| anyhow::anyhow!("{sql}: not held for review: {e:#}"))?;
        c.reject(id).await?;
        w.until_ready(Duration::from_secs(30)).await?;
    }
    let after: i64 = c.target.query_one(objects, &[]).await?.get(0);
    anyhow::ensure!(before == after, "a large object was created");
    let locks: i64 = c
        .target
        .query_one(
            "select count(*) from pg_locks where locktype = 'advisory'",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(locks == 0, "an advisory lock was taken");
    Ok(())
}

async fn sql_prepare_execute_with_parameters(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    let a = w
        .query("prepare ins(text, text) as insert into ledger values ($1, $2)")
        .run()
        .await?;
    no_errors(&a)?;
    anyhow::ensure!(a.review_id().is_none(), "PREPARE alone was reviewed");
    w.query("execute ins('sqlexec', 'a')").send().await?;
    let id = w.review_notice().await?;
    let r = c.review(id).await?;
    anyhow::ensure!(
        r.to_string().to_lowercase().contains("insert into ledger"),
        "the note names what EXECUTE runs: {r}"
    );
    c.approve(id).await?;
    no_errors(&w.until_ready(Duration::from_secs(30)).await?)?;
    anyhow::ensure!(c.count("sqlexec").await? == 1, "ran once");
    w.query("execute ins('sqlexec', 'b')").send().await?;
    let again = w.review_notice().await?;
    anyhow::ensure!(again != id, "the second EXECUTE reused the approval");
    c.reject(again).await?;
    w.until_ready(Duration::from_secs(30)).await?;
    anyhow::ensure!(c.count("sqlexec").await? == 1, "the second EXECUTE ran");
    Ok(())
}

async fn cancel_during_a_hold(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    w.parse("", INSERT)
        .bind("", "", &[Some("cancelled"), Some("v")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    w.cancel().await?;
    refused_with(&w.until_ready(Duration::from_secs(30)).await?, "canceled")?;
    let state = c.review(id).await?["state"].clone();
    anyhow::ensure!(state == "withdrawn", "state {state}");
    anyhow::ensure!(
        c.approve(id).await.is_err(),
        "a withdrawn review was approved"
    );
    anyhow::ensure!(c.count("cancelled").await? == 0, "ran");
    Ok(())
}

async fn approval_racing_a_disconnect(c: &Ctx) -> Outcome {
    for round in 0..3 {
        let k = format!("race-{round}");
        let mut w = c.wire().await?;
        w.parse("", INSERT)
            .bind("", "", &[Some(&k), Some("v")])
            .execute("", 0)
            .sync()
            .send()
            .await?;
        let id = w.review_notice().await?;
        let approve = c.approve(id);
        let leave = async move {
            tokio::time::sleep(Duration::from_millis(30 * round)).await;
            drop(w);
        };
        let (approved, ()) = tokio::join!(approve, leave);
        let _ = approved;
        // Whatever won, the record and the target agree: executed and ran once, or withdrawn
        // and never ran.
        let mut state = String::new();
        for _ in 0..50 {
            state = c.review(id).await?["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state == "executed" || state == "withdrawn" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rows = c.count(&k).await?;
        let consistent = matches!((state.as_str(), rows), ("executed", 1) | ("withdrawn", 0));
        anyhow::ensure!(consistent, "round {round}: review {state}, {rows} rows");
    }
    Ok(())
}

async fn unanswered_review_expires(c: &Ctx) -> Outcome {
    let tunnel = c
        .env
        .cli
        .connect("shop_fast", &[("HOOP_TOKEN", &c.env.key)])
        .await?;
    let mut w = Wire::connect(tunnel.port, &tunnel.password, "shop").await?;
    w.parse("", INSERT)
        .bind("", "", &[Some("expired"), Some("v")])
        .execute("", 0)
        .sync()
        .send()
        .await?;
    let id = w.review_notice().await?;
    refused_with(
        &w.until_ready(Duration::from_secs(30)).await?,
        "not approved within",
    )?;
    anyhow::ensure!(
        c.approve(id).await.is_err(),
        "an expired review was approved"
    );
    anyhow::ensure!(c.count("expired").await? == 0, "ran");
    Ok(())
}

async fn pipelined_tokio_postgres(c: &Ctx) -> Outcome {
    let (client, conn) =
        tokio_postgres::connect(&c.env.tunnel.driver_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let stmt = client.prepare(INSERT).await?;
    let a = client.execute(&stmt, &[&"pipelined", &"first"]);
    let b = client.execute(&stmt, &[&"pipelined", &"second"]);
    let decide = async {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let mut id = None;
            for _ in 0..100 {
                if let Some(found) = c.pending().await?.into_iter().find(|i| !seen.contains(i)) {
                    id = Some(found);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let id = id.ok_or_else(|| anyhow::anyhow!("no review appeared"))?;
            let values = format!("{:?}", shown(&c.review(id).await?));
            anyhow::ensure!(
                c.count("pipelined").await? <= seen.len() as i64,
                "ran early"
            );
            seen.push(id);
            // Each execution is its own review with its own value.
            anyhow::ensure!(
                values.contains(if seen.len() == 1 { "first" } else { "second" }),
                "{values}"
            );
            c.approve(id).await?;
        }
        anyhow::Ok(())
    };
    let (a, b, decided) = tokio::join!(a, b, decide);
    decided?;
    anyhow::ensure!(a? == 1 && b? == 1, "each inserted one row");
    anyhow::ensure!(c.count("pipelined").await? == 2, "two rows");
    Ok(())
}

async fn copy_from_stdin_waits_with_its_data(c: &Ctx) -> Outcome {
    let mut w = c.wire().await?;
    // The data is sent at once, behind the COPY that needs review.
    w.query("copy ledger from stdin")
        .raw(b"d\0\0\0\x12copy-in\trow-1\n")
        .raw(b"c\0\0\0\x04")
        .send()
        .await?;
    let id = w.review_notice().await?;
    anyhow::ensure!(c.count("copy-in").await? == 0, "ran before approval");
    c.reject(id).await?;
    refused_with(
        &w.until_ready(Duration::from_secs(30)).await?,
        "not approved",
    )?;
    // The data that followed the refused COPY reaches nothing.
    let a = w.query("select 1").run().await?;
    anyhow::ensure!(a.firsts() == [Some("1".to_string())], "{:?}", a.errors());
    anyhow::ensure!(c.count("copy-in").await? == 0, "rejected COPY ran");
    w.query("copy ledger from stdin")
        .raw(b"d\0\0\0\x12copy-in\trow-2\n")
        .raw(b"c\0\0\0\x04")
        .send()
        .await?;
    let id = w.review_notice().await?;
    c.approve(id).await?;
    no_errors(&w.until_ready(Duration::from_secs(30)).await?)?;
    anyhow::ensure!(c.count("copy-in").await? == 1, "approved COPY ran once");
    Ok(())
}

#[tokio::test]
async fn simple_queries_sql_execute_and_decisions_cannot_walk_past_a_review() {
    let ctx = context().await;
    let cases = [
        case!(
            "a write between two SELECTs in one simple Query",
            "the reviewer sees the whole text; rejected, nothing runs",
            multi_statement_query
        ),
        case!(
            "SQL PREPARE once, then EXECUTE with parameters again and again",
            "PREPARE is not reviewed; each EXECUTE is, showing what it runs; one approval runs one",
            sql_prepare_execute_with_parameters
        ),
        case!(
            "COPY FROM STDIN with its data sent right behind it",
            "nothing is copied before approval; rejected, the data reaches nothing; approved, once",
            copy_from_stdin_waits_with_its_data
        ),
        case!(
            "CancelRequest while the batch waits for review",
            "the review is withdrawn, cannot be approved, nothing runs",
            cancel_during_a_hold
        ),
        case!(
            "disconnect just as the approver approves",
            "executed and ran once, or withdrawn and never ran",
            approval_racing_a_disconnect
        ),
        case!(
            "nobody answers before statement_timeout",
            "the statement fails, the review expires and cannot be approved, nothing runs",
            unanswered_review_expires
        ),
        case!(
            "a SELECT of functions that write (large objects, pg_notify, advisory locks, a sequence) or of a function not known to be free of side effects",
            "each is held for review as a write; rejected, nothing changed on the target",
            reads_with_effects_are_reviewed
        ),
        case!(
            "tokio-postgres pipelines two executions of one prepared statement",
            "each is its own review with its own value; nothing runs before its approval",
            pipelined_tokio_postgres
        ),
    ];
    run_table(&ctx, &cases).await;
}
