//! One relayed channel: two pumps (client → target, target → client) that forward every
//! message, apply the exec guardrails and the output masking on the way, and report what they
//! saw to the session task as [`Note`]s. Each direction has its own task so a full window on one
//! side never stalls the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::russh_glue::{
    BackReader, BackWriter, FromClient, FromTarget, FrontReader, FrontWriter, PendingChannel,
    Target,
};
use super::session::now_ms;
use super::sftp::SftpDecoder;
use crate::policy::shell::TypedLines;
use crate::policy::{Policy, Verdict, masking};
use crate::reviews::{Hold, NotRun, Withdrawn};
use crate::tunnel::{Answer, TunnelContext};

/// How long output may wait in the masker for the rest of a token before it is sent anyway
/// (an interactive echo must not lag).
const MASK_IDLE_FLUSH: Duration = Duration::from_millis(25);
/// What is kept of the client's messages while its command waits for review (sent on once it
/// is approved), counted by [`held_size`].
const HELD_INPUT_LIMIT: usize = 1 << 20;
/// How long the target may take to close a channel the client closed.
const TARGET_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What a channel reports to the session task.
pub(super) enum Note {
    /// An exec request and its verdict.
    Exec {
        channel: u32,
        text: String,
        verdict: Verdict,
        at_ms: i64,
    },
    /// The command's exit.
    Exit {
        channel: u32,
        status: Option<u32>,
        signal: Option<String>,
    },
    /// A held exec command that did not run: its review was rejected, expired, withdrawn or
    /// is still pending (`outcome`: `rejected` or `pending`).
    NotRun {
        channel: u32,
        outcome: &'static str,
        reason: String,
    },
    /// A line typed into an interactive shell (heuristic).
    Typed { text: String, at_ms: i64 },
    /// An SFTP operation.
    Sftp { text: String, at_ms: i64 },
    /// A terminal recording starts (pty size, or 80x24 without a pty).
    CastStart { channel: u32, cols: u32, rows: u32 },
    /// Output as the client saw it (masked), or input when `record_input` is on.
    Cast {
        channel: u32,
        input: bool,
        data: Bytes,
    },
    /// The terminal was resized.
    CastResize { channel: u32, cols: u32, rows: u32 },
    /// The channel closed: its totals.
    Closed {
        channel: u32,
        up: u64,
        down: u64,
        masked: masking::MaskCounts,
    },
}

/// What a channel needs from its session.
pub(super) struct ChannelEnv {
    pub number: u32,
    /// The recording's session id (reviews name it).
    pub session_id: String,
    pub ctx: Arc<TunnelContext>,
    pub policy: Arc<Policy>,
    pub notes: mpsc::Sender<Note>,
}

const MODE_NONE: u8 = 0;
const MODE_SHELL: u8 = 1;
const MODE_EXEC: u8 = 2;
const MODE_SFTP: u8 = 3;
/// scp's own protocol over exec (`scp -t`/`-f`): a file transfer, neither masked nor cast.
const MODE_SCP: u8 = 4;

/// State both pumps of one channel see.
struct Shared {
    /// The gateway answered the channel itself (a blocked exec): drop the target's close.
    answered: AtomicBool,
    mode: AtomicU8,
    /// The target's last output looked like a password prompt: the next typed line is not
    /// recorded.
    secret_prompt: AtomicBool,
    /// SFTP requests and replies, for the recording.
    sftp: std::sync::Mutex<SftpDecoder>,
    /// Bytes from the target.
    down: AtomicU64,
    /// Values masked in this channel's output.
    masked: std::sync::Mutex<masking::MaskCounts>,
}

impl Shared {
    fn sftp(&self) -> std::sync::MutexGuard<'_, SftpDecoder> {
        self.sftp.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn env_allowed(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// Relays one session channel.
pub(super) async fn session_channel(pending: PendingChannel, target: Arc<Target>, env: ChannelEnv) {
    let (back_r, back_w) = match target.open_session().await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a channel on the target");
            pending.reject().await;
            return;
        }
    };
    let (front_r, front_w) = pending.accept().await;
    let shared = Arc::new(Shared {
        answered: AtomicBool::new(false),
        mode: AtomicU8::new(MODE_NONE),
        secret_prompt: AtomicBool::new(false),
        sftp: std::sync::Mutex::new(SftpDecoder::new()),
        down: AtomicU64::new(0),
        masked: std::sync::Mutex::new(masking::MaskCounts::default()),
    });
    let front_w = Arc::new(front_w);
    let back_w = Arc::new(back_w);
    let env = Arc::new(env);
    let mut up = tokio::spawn(client_to_target(
        front_r,
        back_w.clone(),
        front_w.clone(),
        env.clone(),
        shared.clone(),
    ));
    let down = target_to_client(back_r, front_w, env.clone(), shared.clone());
    tokio::pin!(down);
    let up = tokio::select! {
        () = &mut down => up.await.unwrap_or(0),
        u = &mut up => {
            // The client closed the channel: the target gets a moment to close its side (none
            // when the gateway answered the channel itself).
            let grace = if shared.answered.load(Ordering::Relaxed) {
                Duration::from_millis(200)
            } else {
                TARGET_CLOSE_GRACE
            };
            if tokio::time::timeout(grace, &mut down).await.is_err() {
                tracing::debug!("the target did not close the channel; dropping it");
            }
            u.unwrap_or(0)
        }
    };
    let _ = back_w.close().await;
    let down = shared.down.load(Ordering::Relaxed);
    let masked = std::mem::take(&mut *shared.masked.lock().unwrap_or_else(|p| p.into_inner()));
    let _ = env
        .notes
        .send(Note::Closed {
            channel: env.number,
            up,
            down,
            masked,
        })
        .await;
}

async fn client_to_target(
    mut from: FrontReader,
    to: Arc<BackWriter>,
    front: Arc<FrontWriter>,
    env: Arc<ChannelEnv>,
    shared: Arc<Shared>,
) -> u64 {
    let mut bytes = 0u64;
    let mut typed = TypedLines::new();
    let env_allow: Vec<String> = env
        .ctx
        .connection
        .env_allow
        .clone()
        .unwrap_or_else(|| vec!["LANG".into(), "LC_*".into()]);
    let record_input = env.ctx.connection.record_input;
    let mut size = (80u32, 24u32);
    // What the client sent while its command waited for review: it goes the normal way now.
    let mut backlog = std::collections::VecDeque::new();
    loop {
        let msg = match backlog.pop_front() {
            Some(m) => m,
            None => match from.next().await {
                Some(m) => m,
                None => break,
            },
        };
        let r = match msg {
            FromClient::Data(data) => {
                bytes += data.len() as u64;
                if record_input && casting(&shared) {
                    let _ = env
                        .notes
                        .send(Note::Cast {
                            channel: env.number,
                            input: true,
                            data: data.clone(),
                        })
                        .await;
                }
                match shared.mode.load(Ordering::Relaxed) {
                    MODE_SHELL => {
                        for line in typed.push(&data) {
                            let hidden = shared.secret_prompt.swap(false, Ordering::Relaxed);
                            let text = if hidden {
                                "<input at a password prompt, not recorded>".to_string()
                            } else {
                                mask_line(&env.policy, &line)
                            };
                            let _ = env
                                .notes
                                .send(Note::Typed {
                                    text,
                                    at_ms: now_ms(),
                                })
                                .await;
                        }
                    }
                    MODE_SFTP => {
                        let ops = shared.sftp().push_request(&data);
                        for op in ops {
                            let _ = env
                                .notes
                                .send(Note::Sftp {
                                    text: op,
                                    at_ms: now_ms(),
                                })
                                .await;
                        }
                    }
                    _ => {}
                }
                if shared.answered.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    to.data(data).await
                }
            }
            FromClient::Eof => to.eof().await,
            FromClient::Close => {
                let _ = to.close().await;
                break;
            }
            FromClient::Pty(p) => {
                size = (p.cols, p.rows);
                to.pty(&p).await
            }
            FromClient::Shell => {
                // Interactive shells are judged only as a program (an allow-list must name a
                // shell); what is typed into them is recorded, not judged.
                let verdict = env.policy.check_shell_request();
                let record = verdict != Verdict::Allow;
                let start = Start::Shell;
                let text = "interactive shell".to_string();
                match judged(
                    &env, &shared, &front, &to, &mut from, size, start, text, verdict, record,
                )
                .await
                {
                    After::Done(r) => r,
                    After::Resume(early) => {
                        backlog = early;
                        continue;
                    }
                    After::Stop => break,
                }
            }
            FromClient::Exec(command) => {
                let text = String::from_utf8_lossy(&command).into_owned();
                let verdict = env.policy.check_command_bytes(&command);
                let start = Start::Exec(command);
                match judged(
                    &env, &shared, &front, &to, &mut from, size, start, text, verdict, true,
                )
                .await
                {
                    After::Done(r) => r,
                    After::Resume(early) => {
                        backlog = early;
                        continue;
                    }
                    After::Stop => break,
                }
            }
            FromClient::Subsystem(name) => {
                let verdict = env.policy.check_subsystem(&name);
                let text = format!("subsystem {name}");
                let start = Start::Subsystem(name);
                match judged(
                    &env, &shared, &front, &to, &mut from, size, start, text, verdict, true,
                )
                .await
                {
                    After::Done(r) => r,
                    After::Resume(early) => {
                        backlog = early;
                        continue;
                    }
                    After::Stop => break,
                }
            }
            FromClient::Env(name, value) => {
                if env_allowed(&env_allow, &name) && env.policy.env_request_allowed(&name) {
                    to.env(&name, &value).await
                } else {
                    tracing::debug!(variable = %name, "env request not on the allow-list; dropped");
                    Ok(())
                }
            }
            FromClient::WindowChange(c, r, pw, ph) => {
                size = (c, r);
                if casting(&shared) {
                    let _ = env
                        .notes
                        .send(Note::CastResize {
                            channel: env.number,
                            cols: c,
                            rows: r,
                        })
                        .await;
                }
                to.window_change(c, r, pw, ph).await
            }
            FromClient::Signal(s) => to.signal(s).await,
            FromClient::Unsupported(what) => {
                tracing::debug!(request = what, "refused an unsupported channel request");
                front.failure().await
            }
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "target channel gone");
            break;
        }
    }
    bytes
}

/// A request that starts what a channel runs: judged before the target sees it.
enum Start {
    Exec(Vec<u8>),
    Subsystem(String),
    Shell,
}

/// What the client pump does after a judged request.
enum After {
    /// The request was sent on or answered; this is the result of sending.
    Done(Result<(), String>),
    /// It was approved after a review: go on with what the client sent meanwhile.
    Resume(std::collections::VecDeque<FromClient>),
    /// The channel is gone.
    Stop,
}

/// Applies a verdict to a request that starts the channel's program: sends it on, holds it for
/// review, or answers it as the gateway (blocked, not approved). `record`: report it to the
/// session (exec commands, subsystems, refused shells).
#[allow(clippy::too_many_arguments)]
async fn judged(
    env: &ChannelEnv,
    shared: &Shared,
    front: &FrontWriter,
    to: &BackWriter,
    from: &mut FrontReader,
    size: (u32, u32),
    start: Start,
    text: String,
    verdict: Verdict,
    record: bool,
) -> After {
    if record {
        let _ = env
            .notes
            .send(Note::Exec {
                channel: env.number,
                text: text.clone(),
                verdict: verdict.clone(),
                at_ms: now_ms(),
            })
            .await;
    }
    match verdict {
        Verdict::Allow => After::Done(begin(env, shared, to, size, &text, start).await),
        Verdict::Block { rule, reason } => {
            shared.answered.store(true, Ordering::Relaxed);
            let answer = Answer::Blocked(format!(
                "{}{rule}: {reason}; the command was not run",
                super::BLOCKED_PREFIX
            ));
            answer_exec(env, front, to, answer, super::BLOCKED_STATUS).await;
            After::Done(Ok(()))
        }
        Verdict::Review { rule, reason } => {
            match hold(env, front, &text, &rule, &reason, from).await {
                Held::Approved { id, early } => {
                    env.ctx.tell(Answer::Approved);
                    if let Err(e) = begin(env, shared, to, size, &text, start).await {
                        tracing::debug!(error = %e, "target channel gone");
                        return After::Stop;
                    }
                    if let Some(id) = id {
                        env.ctx.state.reviews.mark_executed(id).await.ok();
                    }
                    After::Resume(early)
                }
                Held::NotRun(not_run) => {
                    let (outcome, status) = match &not_run {
                        NotRun::Refused(_) => ("rejected", super::NOT_APPROVED_STATUS),
                        NotRun::Pending(_) => ("pending", super::REVIEW_PENDING_STATUS),
                    };
                    let _ = env
                        .notes
                        .send(Note::NotRun {
                            channel: env.number,
                            outcome,
                            reason: not_run.why().to_string(),
                        })
                        .await;
                    shared.answered.store(true, Ordering::Relaxed);
                    let answer = match not_run {
                        NotRun::Refused(why) => Answer::NotApproved(format!(
                            "{}{why}; the command was not run",
                            super::NOT_APPROVED_PREFIX
                        )),
                        NotRun::Pending(why) => Answer::Pending(format!(
                            "{}{why}; the command was not run",
                            super::REVIEW_PENDING_PREFIX
                        )),
                    };
                    answer_exec(env, front, to, answer, status).await;
                    After::Done(Ok(()))
                }
                Held::Gone => {
                    // Recorded as a withdrawn review, not as a command that ran.
                    let _ = env
                        .notes
                        .send(Note::NotRun {
                            channel: env.number,
                            outcome: "rejected",
                            reason: "the client left; the review was withdrawn".into(),
                        })
                        .await;
                    let _ = to.close().await;
                    After::Stop
                }
            }
        }
    }
}

/// Sends an allowed (or approved) request on to the target. Only a real scp transfer, and
/// sftp, skip masking and the terminal recording: their bytes are files.
async fn begin(
    env: &ChannelEnv,
    shared: &Shared,
    to: &BackWriter,
    size: (u32, u32),
    text: &str,
    start: Start,
) -> Result<(), String> {
    match start {
        Start::Exec(command) => {
            if crate::policy::shell::is_scp_transfer(text) {
                shared.mode.store(MODE_SCP, Ordering::Relaxed);
            } else {
                shared.mode.store(MODE_EXEC, Ordering::Relaxed);
                cast_start(env, size).await;
            }
            to.exec(command).await
        }
        Start::Subsystem(name) => {
            // Only the sftp subsystem is decoded; any other allowed one is relayed as an
            // ordinary channel (masked, cast).
            if name == "sftp" {
                shared.mode.store(MODE_SFTP, Ordering::Relaxed);
            } else {
                shared.mode.store(MODE_EXEC, Ordering::Relaxed);
                cast_start(env, size).await;
            }
            to.subsystem(&name).await
        }
        Start::Shell => {
            shared.mode.store(MODE_SHELL, Ordering::Relaxed);
            cast_start(env, size).await;
            to.shell().await
        }
    }
}

/// The gateway answers an exec request itself (blocked, or not approved): one stderr line
/// (for `hoop exec`, the answer beside the protocol instead), an exit status, and the channel
/// closes; the target never sees the command.
async fn answer_exec(
    env: &ChannelEnv,
    front: &FrontWriter,
    to: &BackWriter,
    answer: Answer,
    status: u32,
) {
    let _ = front.success().await;
    let line = format!("hoop: {}\r\n", answer.message().unwrap_or_default());
    if !env.ctx.tell(answer) {
        let _ = front.stderr(1, Bytes::from(line)).await;
    }
    let _ = front.exit_status(status).await;
    let _ = front.eof().await;
    let _ = front.close().await;
    let _ = to.close().await;
}

/// How holding an exec command for review ended.
enum Held {
    /// Approved (`id` to mark executed once it is sent; None when `hoop exec --review`
    /// consumed an approved review). `early` is what the client sent meanwhile.
    Approved {
        id: Option<i64>,
        early: std::collections::VecDeque<FromClient>,
    },
    /// Not approved; the client is told.
    NotRun(NotRun),
    /// The client closed the channel while it waited (the review was withdrawn).
    Gone,
}

/// How much of [`HELD_INPUT_LIMIT`] one message kept for a held command takes: its data plus
/// a flat 64 bytes for the message itself, so neither many tiny messages nor any other kind
/// grows the held input without bound.
fn held_size(msg: &FromClient) -> usize {
    64 + match msg {
        FromClient::Data(d) => d.len(),
        FromClient::Exec(c) => c.len(),
        FromClient::Env(n, v) => n.len() + v.len(),
        _ => 0,
    }
}

/// Files a review for an exec command, tells the client (so `ssh host cmd` shows the review
/// id at once), and waits. The client's side is read all along: russh widens the client's
/// window as data arrives, so not reading would only fill the connection's queues and stall
/// its other channels. What it sends meanwhile (stdin, EOF, a resize, a signal, any other
/// request) is kept, up to [`HELD_INPUT_LIMIT`], and goes the normal way once the command is
/// approved (requests then reach the target, which answers them in order); past the limit the
/// review is withdrawn and the command refused, rather than input lost. A closed channel
/// withdraws the review.
async fn hold(
    env: &ChannelEnv,
    front: &FrontWriter,
    text: &str,
    rule: &str,
    reason: &str,
    from: &mut FrontReader,
) -> Held {
    let ctx = &env.ctx;
    let masked = mask_line(&env.policy, text);
    let h = Hold {
        connection: &ctx.connection,
        identity: &ctx.identity,
        mode: ctx.review_mode,
        masked: &masked,
        exact: text,
        session_id: &env.session_id,
        rule,
    };
    let filed = async |id: i64, waits: String| {
        let message = format!(
            "{} ({reason}): review {id}; approve with `hoop approve {id}`; {waits}",
            super::REVIEW_NOTICE_PREFIX
        );
        let line = format!("hoop: {message}\r\n");
        if ctx.tell(Answer::Review { id, message }) {
            return Ok(());
        }
        front.stderr(1, Bytes::from(line)).await
    };
    let mut early = std::collections::VecDeque::new();
    let mut gone = false;
    let watch = async {
        let mut kept = 0usize;
        loop {
            let msg = match from.next().await {
                None | Some(FromClient::Close) => {
                    gone = true;
                    return Withdrawn::Canceled;
                }
                Some(m) => m,
            };
            kept += held_size(&msg);
            if kept > HELD_INPUT_LIMIT {
                early.clear();
                return Withdrawn::TooMuchInput {
                    limit: HELD_INPUT_LIMIT,
                };
            }
            early.push_back(msg);
        }
    };
    let r = ctx.state.reviews.hold(h, filed, watch).await;
    match r {
        Ok(id) => Held::Approved { id, early },
        Err(_) if gone => Held::Gone,
        Err(not_run) => Held::NotRun(not_run),
    }
}

fn casting(shared: &Shared) -> bool {
    matches!(shared.mode.load(Ordering::Relaxed), MODE_SHELL | MODE_EXEC)
}

async fn cast_start(env: &ChannelEnv, (cols, rows): (u32, u32)) {
    let _ = env
        .notes
        .send(Note::CastStart {
            channel: env.number,
            cols,
            rows,
        })
        .await;
}

/// Sends output to the client (stdout, or the extended stream `ext`) and to the recording.
async fn emit(
    to: &FrontWriter,
    env: &ChannelEnv,
    shared: &Shared,
    ext: Option<u32>,
    data: Bytes,
) -> Result<(), String> {
    if data.is_empty() {
        return Ok(());
    }
    if casting(shared) {
        let _ = env
            .notes
            .send(Note::Cast {
                channel: env.number,
                input: false,
                data: data.clone(),
            })
            .await;
    }
    match ext {
        None => to.data(data).await,
        Some(e) => to.stderr(e, data).await,
    }
}

fn mask_line(policy: &Policy, line: &str) -> String {
    let mut out = Vec::new();
    let mut counts = masking::MaskCounts::default();
    if policy.mask_text(line.as_bytes(), &mut out, &mut counts) {
        String::from_utf8_lossy(&out).into_owned()
    } else {
        line.to_string()
    }
}

fn looks_like_secret_prompt(out: &[u8]) -> bool {
    let tail = out.get(out.len().saturating_sub(64)..).unwrap_or(out);
    let text = String::from_utf8_lossy(tail).to_ascii_lowercase();
    let t = text.trim_end();
    t.ends_with("password:")
        || t.ends_with("passphrase:")
        || t.ends_with("password for")
        || t.ends_with("pin:")
        || (t.contains("password") && t.ends_with(':'))
}

/// Masks one output stream; holds a token's tail between reads.
struct OutMask {
    stream: masking::StreamMasker,
}

impl OutMask {
    fn push(&mut self, policy: &Policy, data: &[u8], counts: &mut masking::MaskCounts) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        match policy.masker() {
            Some(m) => self.stream.push(m, data, &mut out, counts),
            None => out.extend_from_slice(data),
        }
        out
    }

    fn flush(&mut self, policy: &Policy, counts: &mut masking::MaskCounts) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(m) = policy.masker() {
            self.stream.finish(m, &mut out, counts);
        }
        out
    }

    fn held(&self) -> bool {
        self.stream.held() > 0
    }
}

async fn target_to_client(
    mut from: BackReader,
    to: Arc<FrontWriter>,
    env: Arc<ChannelEnv>,
    shared: Arc<Shared>,
) {
    let mut counts = masking::MaskCounts::default();
    let mut out_mask = OutMask {
        stream: masking::StreamMasker::new(),
    };
    let mut err_mask = OutMask {
        stream: masking::StreamMasker::new(),
    };
    let policy = env.policy.clone();
    let masking_on = policy.masker().is_some();
    let mut status: Option<u32> = None;
    let mut signal: Option<String> = None;
    loop {
        let pending = masking_on && (out_mask.held() || err_mask.held());
        let msg = if pending {
            match tokio::time::timeout(MASK_IDLE_FLUSH, from.next()).await {
                Ok(m) => m,
                Err(_) => {
                    let o = out_mask.flush(&policy, &mut counts);
                    let e = err_mask.flush(&policy, &mut counts);
                    if emit(&to, &env, &shared, None, Bytes::from(o))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    if emit(&to, &env, &shared, Some(1), Bytes::from(e))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
            }
        } else {
            from.next().await
        };
        let Some(msg) = msg else { break };
        let answered = shared.answered.load(Ordering::Relaxed);
        let r = match msg {
            FromTarget::Data(data) => {
                shared.down.fetch_add(data.len() as u64, Ordering::Relaxed);
                if shared.mode.load(Ordering::Relaxed) == MODE_SHELL {
                    shared
                        .secret_prompt
                        .store(looks_like_secret_prompt(&data), Ordering::Relaxed);
                }
                let mode = shared.mode.load(Ordering::Relaxed);
                if mode == MODE_SFTP {
                    shared.sftp().push_response(&data);
                }
                // File transfers (sftp, scp) are binary: masking would corrupt files.
                if mode == MODE_SFTP || mode == MODE_SCP {
                    to.data(data).await
                } else if !masking_on {
                    emit(&to, &env, &shared, None, data).await
                } else {
                    let o = out_mask.push(&policy, &data, &mut counts);
                    emit(&to, &env, &shared, None, Bytes::from(o)).await
                }
            }
            FromTarget::Stderr(ext, data) => {
                shared.down.fetch_add(data.len() as u64, Ordering::Relaxed);
                if !masking_on || shared.mode.load(Ordering::Relaxed) == MODE_SCP {
                    emit(&to, &env, &shared, Some(ext), data).await
                } else {
                    let e = err_mask.push(&policy, &data, &mut counts);
                    emit(&to, &env, &shared, Some(ext), Bytes::from(e)).await
                }
            }
            FromTarget::Eof => {
                let o = out_mask.flush(&policy, &mut counts);
                let e = err_mask.flush(&policy, &mut counts);
                let _ = emit(&to, &env, &shared, None, Bytes::from(o)).await;
                let _ = emit(&to, &env, &shared, Some(1), Bytes::from(e)).await;
                to.eof().await
            }
            FromTarget::Close => {
                if !answered {
                    let _ = to.close().await;
                }
                break;
            }
            FromTarget::ExitStatus(s) => {
                status = Some(s);
                to.exit_status(s).await
            }
            FromTarget::ExitSignal {
                signal: sig,
                core_dumped,
                message,
            } => {
                signal = Some(sig.name());
                to.exit_signal(sig, core_dumped, message).await
            }
            FromTarget::Success => to.success().await,
            FromTarget::Failure => to.failure().await,
        };
        if r.is_err() && !answered {
            tracing::debug!("client channel gone");
            break;
        }
    }
    let mode = shared.mode.load(Ordering::Relaxed);
    if matches!(mode, MODE_EXEC | MODE_SCP | MODE_SFTP) || status.is_some() || signal.is_some() {
        let _ = env
            .notes
            .send(Note::Exit {
                channel: env.number,
                status,
                signal,
            })
            .await;
    }
    shared
        .masked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .merge(&counts);
}

/// Relays a direct-tcpip channel (`ssh -L`), allowed by the connection's config.
pub(super) async fn direct_tcpip(
    pending: PendingChannel,
    target: Arc<Target>,
    host: String,
    port: u32,
    origin: String,
    origin_port: u32,
    notes: mpsc::Sender<Note>,
) {
    let (mut back_r, back_w) = match target
        .open_direct_tcpip(&host, port, &origin, origin_port)
        .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "direct-tcpip refused by the target");
            pending.reject().await;
            return;
        }
    };
    let (mut front_r, front_w) = pending.accept().await;
    let up = async {
        let mut n = 0u64;
        while let Some(m) = front_r.next().await {
            match m {
                FromClient::Data(d) => {
                    n += d.len() as u64;
                    if back_w.data(d).await.is_err() {
                        break;
                    }
                }
                FromClient::Eof => {
                    let _ = back_w.eof().await;
                }
                FromClient::Close => break,
                _ => {}
            }
        }
        let _ = back_w.close().await;
        n
    };
    let down = async {
        let mut n = 0u64;
        while let Some(m) = back_r.next().await {
            match m {
                FromTarget::Data(d) => {
                    n += d.len() as u64;
                    if front_w.data(d).await.is_err() {
                        break;
                    }
                }
                FromTarget::Eof => {
                    let _ = front_w.eof().await;
                }
                FromTarget::Close => break,
                _ => {}
            }
        }
        let _ = front_w.close().await;
        n
    };
    let (up, down) = tokio::join!(up, down);
    let _ = notes
        .send(Note::Closed {
            channel: 0,
            up,
            down,
            masked: masking::MaskCounts::default(),
        })
        .await;
}
