//! Just-in-time reviews from the terminal: `hoop reviews` (list, `show <id>`), `hoop approve`,
//! `hoop reject`, `hoop revoke`, `hoop withdraw`, and [`request_and_wait_access`], which
//! `hoop connect` uses to file an access request and wait for its decision.
//!
//! The wait is pushed: the gateway holds a long poll (`/reviews/{id}/wait`) open until the
//! review is decided, so a decision reaches the waiting terminal within a round trip.

use std::time::Duration;

use hoop_shared::api::{AccessRequest, ApiError, ApproveRequest, RejectRequest, ReviewInfo};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Ctx;
use crate::auth::{Credential, bearer_of, credential, open_store, refresh};
use crate::commands::sessions::{clean, when};
use crate::exit::{CliError, CliResult, Exit, internal, usage};
use crate::gateway::Gateway;
use crate::ui::{
    OutputFormat, note, out, out_json, out_table, spinner, stderr_is_tty, stdin_is_tty,
};

/// One long poll asks the gateway to hold the request this long (it caps it at 60 s).
const POLL: Duration = Duration::from_secs(25);
/// Beyond the poll itself, how long an answer may take before the request counts as lost.
const POLL_SLACK: Duration = Duration::from_secs(15);
/// Network failures in a row that end a wait (each retried after a short pause).
const MAX_POLL_FAILURES: u32 = 5;
/// Characters of a reason or statement shown in the listing.
const SUMMARY_WIDTH: usize = 60;

/// `hoop reviews` flags; without a subcommand it lists.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReviewsArgs {
    /// `show <id>`.
    #[command(subcommand)]
    pub command: Option<ReviewsCommand>,
    /// Listing flags.
    #[command(flatten)]
    pub list: ListArgs,
}

/// `hoop reviews` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ReviewsCommand {
    /// Show one review: who asked, why, the statement, the approvals.
    Show {
        /// The review id (first column of `hoop reviews`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// Which reviews to list.
#[derive(Debug, clap::Args)]
#[group(id = "scope", multiple = false)]
pub struct ScopeArgs {
    /// Reviews you asked for (the default).
    #[arg(long)]
    pub mine: bool,
    /// Pending reviews you may approve.
    #[arg(long)]
    pub to_approve: bool,
    /// Every review (admins and auditors).
    #[arg(long)]
    pub all: bool,
}

/// Flags of the listing.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Whose reviews.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// At most this many reviews, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// `hoop approve` flags.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The review id. Without it, on a terminal, pick from the reviews you may approve.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub id: Option<i64>,
    /// A note kept with your approval.
    #[arg(long)]
    pub comment: Option<String>,
}

/// `hoop reject` flags.
#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    /// The review id.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
    /// Why (the requester sees it).
    #[arg(long)]
    pub reason: String,
}

/// `hoop revoke` and `hoop withdraw` take one review id.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The review id.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
}

/// Runs `hoop reviews`.
pub async fn run(ctx: &Ctx, args: ReviewsArgs) -> CliResult<()> {
    match args.command {
        Some(ReviewsCommand::Show { id, output }) => show(ctx, id, output).await,
        None => list(ctx, args.list).await,
    }
}

/// An API request: the method and, for POST, its JSON body.
enum Req<'a> {
    Get(&'a str),
    Post(&'a str, Value),
}

/// Sends one request with `bearer`; maps failures onto exit codes like `Gateway::get`, plus
/// 400 → usage error and 409 → 87 when the review ended (rejected, expired, withdrawn), else 1.
async fn call<T: DeserializeOwned>(
    gw: &Gateway,
    bearer: &str,
    req: &Req<'_>,
    timeout: Option<Duration>,
) -> CliResult<T> {
    let (mut builder, path) = match req {
        Req::Get(path) => (gw.client.http.get(format!("{}{path}", gw.url)), *path),
        Req::Post(path, body) => (
            gw.client.http.post(format!("{}{path}", gw.url)).json(body),
            *path,
        ),
    };
    builder = builder.bearer_auth(bearer);
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    let resp = builder
        .send()
        .await
        .map_err(|e| gw.client.explain(&gw.url, &e))?;
    let status = resp.status();
    if status.is_success() {
        return resp.json::<T>().await.map_err(|e| {
            if e.is_timeout() {
                return gw.client.explain(&gw.url, &e);
            }
            internal(format!(
                "the gateway sent an unexpected answer to {path}: {e}"
            ))
        });
    }
    let body = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ApiError>(&body) {
        Ok(e) => (e.error, e.message),
        Err(_) => (String::new(), format!("HTTP {status}")),
    };
    Err(match status.as_u16() {
        400 => CliError::new(Exit::Usage, message),
        401 => CliError::new(
            Exit::NotAuthenticated,
            format!("{message} (run `hoop login`)"),
        ),
        403 => CliError::new(Exit::AccessDenied, message),
        404 => CliError::new(Exit::NotFound, message),
        409 if ended_code(&code) => CliError::new(Exit::ReviewRejected, message),
        409 => CliError::new(Exit::Failed, message),
        _ => CliError::new(Exit::Internal, format!("the gateway failed: {message}")),
    })
}

/// A 409 code saying the review is over without having been approved.
fn ended_code(code: &str) -> bool {
    matches!(
        code,
        "already_rejected" | "already_expired" | "already_withdrawn"
    )
}

/// Sends a request with the user's credential; on a 401 with a refreshable cached session,
/// refreshes once and retries (a refused request was not carried out, so a retry is safe).
async fn authed<T: DeserializeOwned>(ctx: &Ctx, gw: &Gateway, req: &Req<'_>) -> CliResult<T> {
    let store = open_store(&ctx.paths.data_dir)?;
    let cred = credential(gw, &store, ctx.token.as_deref()).await?;
    match call(gw, cred.bearer(), req, None).await {
        Err(e) if e.exit == Exit::NotAuthenticated => match cred {
            Credential::Cached(t) if t.refresh_token.is_some() => {
                let t = refresh(gw, &store, t).await?;
                call(gw, bearer_of(&t), req, None).await
            }
            Credential::Env(_) => Err(CliError::new(
                Exit::NotAuthenticated,
                format!(
                    "{} (the token in HOOP_TOKEN was refused)",
                    e.message.trim_end_matches(" (run `hoop login`)")
                ),
            )),
            Credential::Cached(_) => Err(e),
        },
        other => other,
    }
}

fn list_path(a: &ListArgs) -> String {
    let scope = if a.scope.to_approve {
        "to-approve"
    } else if a.scope.all {
        "all"
    } else {
        "mine"
    };
    format!("/api/v1/reviews?scope={scope}&limit={}", a.limit)
}

async fn list(ctx: &Ctx, args: ListArgs) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let list: Vec<ReviewInfo> = authed(ctx, &gw, &Req::Get(&list_path(&args))).await?;
    match args.output {
        OutputFormat::Json => out_json(&list),
        OutputFormat::Table => {
            if list.is_empty() && stderr_is_tty() {
                note(if args.scope.to_approve {
                    "hoop: nothing is waiting for your approval"
                } else {
                    "hoop: no reviews"
                });
                return Ok(());
            }
            let now = OffsetDateTime::now_utc();
            let rows: Vec<Vec<String>> = list.iter().map(|r| list_row(r, now)).collect();
            out_table(
                &[
                    "ID",
                    "KIND",
                    "CONNECTION",
                    "REQUESTER",
                    "STATE",
                    "AGE",
                    "REASON/STATEMENT",
                ],
                &rows,
            )
        }
    }
}

fn list_row(r: &ReviewInfo, now: OffsetDateTime) -> Vec<String> {
    vec![
        r.id.to_string(),
        clean(&r.kind),
        clean(&r.connection),
        clean(&r.requester_name),
        state_summary(r),
        age(&r.created_at, now),
        summary(r, SUMMARY_WIDTH),
    ]
}

/// What a review is about, in at most `width` characters: its first statement (and how many
/// more it covers, which is never cut off), or the reason of an access request.
fn summary(r: &ReviewInfo, width: usize) -> String {
    let (what, more) = match (r.statements.first(), &r.statement, &r.reason) {
        (Some(first), _, _) => (first.text.as_str(), r.statements.len() - 1),
        (None, Some(st), _) => (st.as_str(), 0),
        (None, None, Some(reason)) => (reason.as_str(), 0),
        (None, None, None) => ("", 0),
    };
    if more == 0 {
        return truncate(&clean(what), width);
    }
    let tail = format!(" (+{more} more)");
    let room = width.saturating_sub(tail.chars().count()).max(10);
    format!("{}{tail}", truncate(&clean(what), room))
}

/// `pending (1/2)`, `approved`, ...: the approvals count while it matters.
fn state_summary(r: &ReviewInfo) -> String {
    if r.state == "pending" && r.min_approvals > 1 {
        format!("pending ({}/{})", r.approvals, r.min_approvals)
    } else {
        clean(&r.state)
    }
}

/// `45s`, `12m`, `3h`, `2d`: how long ago an RFC 3339 time was.
fn age(rfc3339: &str, now: OffsetDateTime) -> String {
    let Ok(t) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return "-".into();
    };
    let secs = (now - t).whole_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

async fn show(ctx: &Ctx, id: i64, output: OutputFormat) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let r: ReviewInfo = authed(ctx, &gw, &Req::Get(&format!("/api/v1/reviews/{id}"))).await?;
    match output {
        OutputFormat::Json => out_json(&r),
        OutputFormat::Table => out(&details(&r)),
    }
}

/// The `show` text.
fn details(r: &ReviewInfo) -> String {
    let who = if r.requester_name == r.requester {
        clean(&r.requester_name)
    } else {
        format!(
            "{} (subject {})",
            clean(&r.requester_name),
            clean(&r.requester)
        )
    };
    let mut t = format!(
        "Review:      {} ({})\nConnection:  {}\nRequester:   {who}\nFiled:       {}\n",
        r.id,
        clean(&r.kind),
        clean(&r.connection),
        when(&r.created_at)
    );
    if r.kind == "statement" {
        if let Some(rule) = &r.reason {
            t.push_str(&format!("Asked by:    {}\n", clean(rule)));
        }
        if let Some(s) = &r.session_id {
            t.push_str(&format!("Session:     {}\n", clean(s)));
        }
        match r.statements.as_slice() {
            [] => {
                if let Some(st) = &r.statement {
                    t.push_str(&format!("Statement:   {}\n", clean(st)));
                }
            }
            [one] if one.params.is_empty() && one.note.is_none() => {
                t.push_str(&format!("Statement:   {}\n", clean(&one.text)));
            }
            all => {
                t.push_str(&format!(
                    "Statements:  {} (approving runs each once, with these values)\n",
                    all.len()
                ));
                for (i, st) in all.iter().enumerate() {
                    t.push_str(&format!("  {:>3}. {}\n", i + 1, clean(&st.text)));
                    for (j, p) in st.params.iter().enumerate() {
                        let v = match p {
                            Some(v) => format!("'{}'", clean(v)),
                            None => "NULL".to_string(),
                        };
                        t.push_str(&format!("         ${} = {v}\n", j + 1));
                    }
                    if let Some(note) = &st.note {
                        t.push_str(&format!("         ({})\n", clean(note)));
                    }
                }
            }
        }
    } else {
        if let Some(reason) = &r.reason {
            t.push_str(&format!("Reason:      {}\n", clean(reason)));
        }
        if let Some(secs) = r.duration_secs {
            let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            t.push_str(&format!("Duration:    {}\n", humantime::format_duration(d)));
        }
    }
    let state = match (r.state.as_str(), &r.window_ends_at) {
        ("pending", _) => format!(
            "pending: {} of {} approvals, expires {}",
            r.approvals,
            r.min_approvals,
            when(&r.expires_at)
        ),
        ("approved", Some(end)) => format!("approved: access until {}", when(end)),
        (s, _) => format!("{} ({})", clean(s), when(&r.updated_at)),
    };
    t.push_str(&format!(
        "State:       {state}\nApprovers:   {} ({} approval{} needed)\n",
        clean(&r.approvers.join(", ")),
        r.min_approvals,
        if r.min_approvals == 1 { "" } else { "s" }
    ));
    if !r.decisions.is_empty() {
        t.push_str("Decisions:\n");
        for d in &r.decisions {
            let verb = if d.decision == "reject" {
                "rejected"
            } else {
                "approved"
            };
            t.push_str(&format!("  {}  {} {verb}", when(&d.at), clean(&d.name)));
            if let Some(c) = &d.comment {
                t.push_str(&format!(": {}", clean(c)));
            }
            t.push('\n');
        }
    }
    if r.state == "pending" {
        t.push_str(&format!(
            "\nApprove with `hoop approve {}`, or reject with `hoop reject {} --reason \"...\"`.\n",
            r.id, r.id
        ));
    }
    t
}

/// Runs `hoop approve`.
pub async fn approve(ctx: &Ctx, args: ApproveArgs) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let id = match args.id {
        Some(id) => id,
        None => match pick(ctx, &gw).await? {
            Some(id) => id,
            None => return Ok(()),
        },
    };
    let body = serde_json::to_value(ApproveRequest {
        comment: args.comment,
    })
    .map_err(|e| internal(e.to_string()))?;
    let path = format!("/api/v1/reviews/{id}/approve");
    let r: ReviewInfo = authed(ctx, &gw, &Req::Post(&path, body)).await?;
    note(approved_note(&r));
    Ok(())
}

fn approved_note(r: &ReviewInfo) -> String {
    let whose = format!(
        "{}'s {} on {}",
        clean(&r.requester_name),
        if r.kind == "statement" {
            "statement"
        } else {
            "access"
        },
        clean(&r.connection)
    );
    match (r.state.as_str(), &r.window_ends_at) {
        ("pending", _) => format!(
            "hoop: approved review {} ({whose}): {} of {} approvals; it waits for {} more",
            r.id,
            r.approvals,
            r.min_approvals,
            r.min_approvals.saturating_sub(r.approvals)
        ),
        ("approved", Some(end)) => format!(
            "hoop: approved review {} ({whose}): access is open until {}",
            r.id,
            when(end)
        ),
        _ => format!("hoop: approved review {} ({whose})", r.id),
    }
}

/// The picker of `hoop approve` without an id: only on a terminal.
async fn pick(ctx: &Ctx, gw: &Gateway) -> CliResult<Option<i64>> {
    if !(stdin_is_tty() && stderr_is_tty()) {
        return Err(usage(
            "give the review id: `hoop approve <id>` (`hoop reviews --to-approve` lists them)",
        ));
    }
    let list: Vec<ReviewInfo> = authed(
        ctx,
        gw,
        &Req::Get("/api/v1/reviews?scope=to-approve&limit=100"),
    )
    .await?;
    if list.is_empty() {
        note("hoop: nothing is waiting for your approval");
        return Ok(None);
    }
    let items: Vec<String> = list.iter().map(pick_item).collect();
    let chosen = dialoguer::Select::new()
        .with_prompt("Approve which review? (Esc to cancel)")
        .items(&items)
        .default(0)
        .interact_opt()
        .map_err(|e| usage(format!("no review chosen ({e})")))?;
    Ok(chosen.and_then(|i| list.get(i)).map(|r| r.id))
}

fn pick_item(r: &ReviewInfo) -> String {
    format!(
        "{}  {} {} by {}: {}",
        r.id,
        clean(&r.kind),
        clean(&r.connection),
        clean(&r.requester_name),
        summary(r, SUMMARY_WIDTH)
    )
}

/// Runs `hoop reject`.
pub async fn reject(ctx: &Ctx, args: RejectArgs) -> CliResult<()> {
    if args.reason.trim().is_empty() {
        return Err(usage(
            "give --reason \"...\": the requester sees why it was rejected",
        ));
    }
    let gw = ctx.gateway()?;
    let body = serde_json::to_value(RejectRequest {
        reason: args.reason,
    })
    .map_err(|e| internal(e.to_string()))?;
    let path = format!("/api/v1/reviews/{}/reject", args.id);
    let r: ReviewInfo = authed(ctx, &gw, &Req::Post(&path, body)).await?;
    note(format!(
        "hoop: rejected review {} ({}'s {} on {})",
        r.id,
        clean(&r.requester_name),
        clean(&r.kind),
        clean(&r.connection)
    ));
    Ok(())
}

/// Runs `hoop revoke`: ends an access grant early.
pub async fn revoke(ctx: &Ctx, args: IdArgs) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let path = format!("/api/v1/reviews/{}/revoke", args.id);
    let r: ReviewInfo = authed(ctx, &gw, &Req::Post(&path, json!({}))).await?;
    note(format!(
        "hoop: revoked review {}: {}'s access to {} has ended, and live sessions under it are closed",
        r.id,
        clean(&r.requester_name),
        clean(&r.connection)
    ));
    Ok(())
}

/// Runs `hoop withdraw`: gives up a pending request of your own.
pub async fn withdraw(ctx: &Ctx, args: IdArgs) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let path = format!("/api/v1/reviews/{}/withdraw", args.id);
    let r: ReviewInfo = authed(ctx, &gw, &Req::Post(&path, json!({}))).await?;
    note(format!("hoop: withdrew review {}", r.id));
    Ok(())
}

/// Why a review that will not be approved ended, as the error `hoop connect` exits with (87).
fn not_approved(r: &ReviewInfo) -> CliError {
    let id = r.id;
    let message = match r.state.as_str() {
        "rejected" => match r.decisions.iter().rev().find(|d| d.decision == "reject") {
            Some(d) => format!(
                "review {id} was rejected by {}: {}",
                clean(&d.name),
                clean(d.comment.as_deref().unwrap_or("no reason given"))
            ),
            None => format!("review {id} was rejected"),
        },
        "expired" => format!("review {id} expired: nobody approved it in time"),
        "withdrawn" => format!("review {id} was withdrawn"),
        "revoked" => format!("review {id} was revoked"),
        other => format!("review {id} is {}", clean(other)),
    };
    CliError::new(Exit::ReviewRejected, message)
}

/// Files an access request for `connection` and waits for its decision; `hoop connect` calls
/// this when the connection needs review.
///
/// An open grant or a pending request of the caller is reused (the gateway returns it), so
/// running the same command again resumes the wait. Prints on stderr the review id, the
/// approvers and the command that approves it, with a spinner on a terminal. Ctrl-C withdraws
/// the request (exit 87). `wait` bounds the wait (exit 89, the request stays pending; `None`
/// waits until it is decided); `no_wait` prints the id on stdout and exits 88 at once.
/// Rejected or expired: exit 87 with the reason.
pub async fn request_and_wait_access(
    gw: &Gateway,
    bearer: &str,
    connection: &str,
    reason: &str,
    duration: Duration,
    wait: Option<Duration>,
    no_wait: bool,
) -> CliResult<ReviewInfo> {
    let fixed = || std::future::ready(Ok(bearer.to_string()));
    request_and_wait_access_with(gw, &fixed, connection, reason, duration, wait, no_wait).await
}

/// [`request_and_wait_access`] with a bearer asked for before every request, so a wait longer
/// than the token's lifetime goes on with a refreshed token.
pub async fn request_and_wait_access_with<F, Fut>(
    gw: &Gateway,
    bearer: &F,
    connection: &str,
    reason: &str,
    duration: Duration,
    wait: Option<Duration>,
    no_wait: bool,
) -> CliResult<ReviewInfo>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = CliResult<String>>,
{
    // Whole seconds, rounded up: a window is never shorter than asked for.
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    let body = serde_json::to_value(AccessRequest {
        connection: connection.to_string(),
        reason: reason.to_string(),
        duration_secs: secs,
    })
    .map_err(|e| internal(e.to_string()))?;
    let review: ReviewInfo = call(
        gw,
        &bearer().await?,
        &Req::Post("/api/v1/reviews", body),
        None,
    )
    .await?;
    let id = review.id;
    match review.state.as_str() {
        "approved" => {
            note(format!(
                "hoop: using your approved access to {} (review {id}{})",
                clean(connection),
                review
                    .window_ends_at
                    .as_deref()
                    .map(|t| format!(", until {}", when(t)))
                    .unwrap_or_default()
            ));
            return Ok(review);
        }
        "pending" => {}
        _ => return Err(not_approved(&review)),
    }
    note(pending_note(&review));
    if no_wait {
        out(&format!("{id}\n"))?;
        return Err(CliError::new(
            Exit::ReviewPending,
            format!(
                "review {id} is pending; once it is approved, run the same command again (`hoop reviews show {id}` shows where it stands)"
            ),
        ));
    }
    let bar = spinner(format!("waiting for approval of review {id}"));
    let decided = tokio::select! {
        r = wait_decided(gw, bearer, &review, wait) => r,
        _ = tokio::signal::ctrl_c() => {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Err(match bearer().await {
                Ok(b) => withdraw_on_interrupt(gw, &b, id).await,
                Err(e) => e,
            });
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let r = decided?;
    let by: Vec<String> = r
        .decisions
        .iter()
        .filter(|d| d.decision == "approve")
        .map(|d| clean(&d.name))
        .collect();
    note(format!(
        "hoop: review {id} approved by {}{}",
        by.join(", "),
        r.window_ends_at
            .as_deref()
            .map(|t| format!("; access to {} until {}", clean(connection), when(t)))
            .unwrap_or_default()
    ));
    Ok(r)
}

/// What the requester is told while the request waits: the id, who may approve, the command.
fn pending_note(r: &ReviewInfo) -> String {
    let needed = r.min_approvals.saturating_sub(r.approvals).max(1);
    let approvals = if needed == 1 {
        "an approval".to_string()
    } else {
        format!("{needed} approvals")
    };
    format!(
        "hoop: access to {} needs review {}: it waits for {approvals} from a member of {}.\nhoop: ask one of them to run: hoop approve {}",
        clean(&r.connection),
        r.id,
        clean(&r.approvers.join(", ")),
        r.id
    )
}

/// Long-polls until the review is decided or `wait` has passed.
async fn wait_decided<F, Fut>(
    gw: &Gateway,
    bearer: &F,
    review: &ReviewInfo,
    wait: Option<Duration>,
) -> CliResult<ReviewInfo>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = CliResult<String>>,
{
    let id = review.id;
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    let mut failures = 0u32;
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            let waited = wait.map(humantime::format_duration);
            return Err(CliError::new(
                Exit::Timeout,
                format!(
                    "review {id} is still pending after {}; it stays pending: once it is approved, run the same command again",
                    waited.map(|w| w.to_string()).unwrap_or_default()
                ),
            ));
        }
        let poll = left.map_or(POLL, |l| l.min(POLL));
        // The gateway takes whole seconds; at least one, so a short remainder still waits.
        let secs = poll.as_secs().max(1);
        let path = format!("/api/v1/reviews/{id}/wait?timeout={secs}");
        // Asked each time: a cached login is refreshed before it expires.
        let answer: CliResult<ReviewInfo> = match bearer().await {
            Ok(b) => call(gw, &b, &Req::Get(&path), Some(poll + POLL_SLACK)).await,
            Err(e) => Err(e),
        };
        let r = match answer {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(e) if matches!(e.exit, Exit::Unreachable | Exit::Timeout) => {
                failures += 1;
                if failures >= MAX_POLL_FAILURES {
                    return Err(CliError::new(
                        e.exit,
                        format!(
                            "{}; review {id} stays pending: run the same command again to keep waiting",
                            e.message
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) if e.exit == Exit::NotAuthenticated => {
                return Err(CliError::new(
                    e.exit,
                    format!(
                        "{}; review {id} stays pending: log in again and run the same command to keep waiting",
                        e.message
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        match r.state.as_str() {
            "pending" => continue,
            "approved" => return Ok(r),
            _ => return Err(not_approved(&r)),
        }
    }
}

/// Ctrl-C while waiting: withdraw the request so nobody approves access nobody waits for.
async fn withdraw_on_interrupt(gw: &Gateway, bearer: &str, id: i64) -> CliError {
    let path = format!("/api/v1/reviews/{id}/withdraw");
    let req = Req::Post(&path, json!({}));
    let done = call::<ReviewInfo>(gw, bearer, &req, Some(Duration::from_secs(5))).await;
    match done {
        Ok(_) => CliError::new(
            Exit::ReviewRejected,
            format!("request withdrawn (review {id})"),
        ),
        Err(e) => CliError::new(
            Exit::ReviewRejected,
            format!(
                "interrupted; review {id} could not be withdrawn ({}): `hoop reviews show {id}` shows where it stands",
                e.message
            ),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use clap::Parser;
    use hoop_shared::api::ReviewDecisionInfo;

    use super::*;
    use crate::{Cli, Command};

    fn info() -> ReviewInfo {
        ReviewInfo {
            id: 42,
            kind: "access".into(),
            connection: "prod".into(),
            requester: "u-1".into(),
            requester_name: "alice".into(),
            reason: Some("INC-123\tfix orders".into()),
            statement: None,
            statements: Vec::new(),
            session_id: None,
            state: "pending".into(),
            created_at: "2025-01-31T09:00:00Z".into(),
            expires_at: "2025-01-31T10:00:00Z".into(),
            updated_at: "2025-01-31T09:00:00Z".into(),
            duration_secs: Some(1800),
            window_ends_at: None,
            min_approvals: 2,
            approvals: 1,
            approvers: vec!["dba".into(), "sre".into()],
            decisions: vec![ReviewDecisionInfo {
                by: "bob".into(),
                name: "bob".into(),
                at: "2025-01-31T09:05:00Z".into(),
                decision: "approve".into(),
                comment: Some("ok".into()),
            }],
        }
    }

    #[test]
    fn parses_the_commands() {
        let c = Cli::try_parse_from(["hoop", "reviews", "--to-approve", "-o", "json"]).unwrap();
        let Command::Reviews(a) = c.command else {
            unreachable!()
        };
        assert!(a.list.scope.to_approve && !a.list.scope.mine);
        assert_eq!(
            list_path(&a.list),
            "/api/v1/reviews?scope=to-approve&limit=50"
        );
        assert!(Cli::try_parse_from(["hoop", "reviews", "--mine", "--all"]).is_err());
        let c = Cli::try_parse_from(["hoop", "reviews"]).unwrap();
        let Command::Reviews(a) = c.command else {
            unreachable!()
        };
        assert_eq!(list_path(&a.list), "/api/v1/reviews?scope=mine&limit=50");
        let c = Cli::try_parse_from(["hoop", "reviews", "show", "7"]).unwrap();
        let Command::Reviews(a) = c.command else {
            unreachable!()
        };
        assert!(matches!(
            a.command,
            Some(ReviewsCommand::Show { id: 7, .. })
        ));
        let c = Cli::try_parse_from(["hoop", "approve"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Approve(ApproveArgs { id: None, .. })
        ));
        let c = Cli::try_parse_from(["hoop", "approve", "42", "--comment", "ok"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Approve(ApproveArgs { id: Some(42), .. })
        ));
        assert!(Cli::try_parse_from(["hoop", "approve", "x"]).is_err());
        assert!(
            Cli::try_parse_from(["hoop", "reject", "42"]).is_err(),
            "--reason is required"
        );
        assert!(Cli::try_parse_from(["hoop", "reject", "42", "--reason", "no"]).is_ok());
        assert!(Cli::try_parse_from(["hoop", "revoke", "42"]).is_ok());
        assert!(Cli::try_parse_from(["hoop", "withdraw", "42"]).is_ok());
    }

    #[test]
    fn listing_rows() {
        let now = OffsetDateTime::parse("2025-01-31T09:12:30Z", &Rfc3339).unwrap();
        assert_eq!(
            list_row(&info(), now),
            [
                "42",
                "access",
                "prod",
                "alice",
                "pending (1/2)",
                "12m",
                "INC-123 fix orders"
            ]
        );
        let long = "x".repeat(100);
        let t = truncate(&long, 10);
        assert_eq!(t.chars().count(), 10);
        assert!(t.ends_with('…'));
        assert_eq!(age("2025-01-29T09:00:00Z", now), "2d");
        assert_eq!(age("garbage", now), "-");
    }

    #[test]
    fn details_and_notes_name_the_command() {
        let d = details(&info());
        assert!(d.contains("Requester:   alice (subject u-1)"), "{d}");
        assert!(d.contains("Duration:    30m"), "{d}");
        assert!(d.contains("pending: 1 of 2 approvals"), "{d}");
        assert!(d.contains("bob approved: ok"), "{d}");
        assert!(d.contains("hoop approve 42"), "{d}");
        let n = pending_note(&info());
        assert!(n.contains("review 42") && n.contains("dba, sre"), "{n}");
        assert!(n.contains("hoop approve 42"), "{n}");
        let a = approved_note(&info());
        assert!(a.contains("waits for 1 more"), "{a}");
        let open = ReviewInfo {
            state: "approved".into(),
            window_ends_at: Some("2025-01-31T09:40:00Z".into()),
            ..info()
        };
        assert!(approved_note(&open).contains("until 2025-01-31 09:40:00Z"));
    }

    #[test]
    fn a_batch_review_shows_every_statement_and_value() {
        use hoop_shared::api::ReviewStatementInfo;
        let long = format!(
            "UPDATE items SET note = $1 WHERE id = $2 {}",
            "-- x".repeat(40)
        );
        let r = ReviewInfo {
            kind: "statement".into(),
            reason: Some("write".into()),
            statements: vec![
                ReviewStatementInfo {
                    text: long.clone(),
                    params: vec![Some("it's\u{1b}[31m".into()), None],
                    note: None,
                },
                ReviewStatementInfo {
                    text: "EXECUTE p(5)".into(),
                    params: vec![],
                    note: Some("p is: DELETE FROM items WHERE id = $1".into()),
                },
            ],
            ..info()
        };
        let d = details(&r);
        assert!(d.contains("Statements:  2"), "{d}");
        assert!(d.contains("  1. UPDATE items"), "{d}");
        assert!(d.contains("$1 = 'it's\\u{1b}[31m'"), "{d}");
        assert!(d.contains("$2 = NULL"), "{d}");
        assert!(d.contains("(p is: DELETE FROM items WHERE id = $1)"), "{d}");
        // Listings and the picker stay one short line and say how many statements there are.
        for line in [summary(&r, SUMMARY_WIDTH), pick_item(&r)] {
            assert!(line.ends_with(" (+1 more)"), "{line}");
            assert!(!line.contains('\n'));
        }
        assert_eq!(summary(&r, SUMMARY_WIDTH).chars().count(), SUMMARY_WIDTH);
    }

    #[test]
    fn ended_reviews_exit_87_with_the_reason() {
        let rejected = ReviewInfo {
            state: "rejected".into(),
            decisions: vec![ReviewDecisionInfo {
                by: "bob".into(),
                name: "bob".into(),
                at: "2025-01-31T09:05:00Z".into(),
                decision: "reject".into(),
                comment: Some("not during the freeze".into()),
            }],
            ..info()
        };
        let e = not_approved(&rejected);
        assert_eq!(e.exit, Exit::ReviewRejected);
        assert_eq!(
            e.message,
            "review 42 was rejected by bob: not during the freeze"
        );
        let expired = ReviewInfo {
            state: "expired".into(),
            ..info()
        };
        assert!(not_approved(&expired).message.contains("expired"));
        assert!(ended_code("already_expired"));
        assert!(!ended_code("already_approved"));
    }
}
