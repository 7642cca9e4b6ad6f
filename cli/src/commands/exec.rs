//! `hoop exec <name> "<input>"`: run input on a connection without a tunnel, for CI jobs,
//! scripts and agents. Never prompts; output streams as the gateway produces it (a result of a
//! million rows never sits in memory, except the first rows of a `table`, see [`TABLE_SAMPLE`]);
//! the exit code says what happened (see `exit.rs`); on an ssh connection it is the remote
//! command's own status, as with `hoop ssh`.
//!
//! Identity without a HOME: `HOOP_TOKEN` (or `--token-file`) and `HOOP_GATEWAY`, trust from
//! `--fingerprint`/`HOOP_FINGERPRINT` or `--ca-file`/`HOOP_CA_FILE`. No config file, keyring or
//! token cache is read when a token is given.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use hoop_shared::api::ApiError;
use hoop_shared::exec::{
    EXEC_CONTENT_TYPE, ExecColumn, ExecErrorKind, ExecEvent, ExecRequest, ExecReviewMode,
    ExecStream,
};
use serde_json::json;

use crate::Ctx;
use crate::auth::{credential, open_store};
use crate::exit::{CliError, CliResult, Exit, internal, usage};
use crate::gateway::{Gateway, gateway_url, trust_for};
use crate::ui::{note, stdin_is_tty};

/// Rows of a result set a `table` reads before it fixes its column widths; later rows are
/// printed as they arrive with those widths.
pub const TABLE_SAMPLE: usize = 1000;
/// Beyond `--timeout`, how long the CLI waits for the gateway's own timeout answer.
const TIMEOUT_SLACK: Duration = Duration::from_secs(15);

/// Output formats of `hoop exec`.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum, PartialEq, Eq)]
pub enum ExecFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// RFC 4180 CSV with a header line per result set.
    Csv,
    /// Tab-separated, with a header line per result set.
    Tsv,
    /// One JSON object per result set and line: `{columns, rows, command}`; on ssh connections
    /// one `{stdout, stderr, exit_status, signal, truncated}` (`--stream`: the NDJSON events).
    Json,
}

/// `hoop exec` flags.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The connection (see `hoop connections`).
    pub name: String,
    /// The input: SQL, or on an ssh connection a command line (its exit status is hoop's).
    /// Without it: `-f FILE`, or stdin when it is not a terminal.
    #[arg(conflicts_with = "file")]
    pub input: Option<String>,
    /// Read the input from FILE (`-` for stdin).
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ExecFormat,
    /// With `-o json`: print the gateway's events as NDJSON, one row per line.
    #[arg(long)]
    pub stream: bool,
    /// Cancel the statement after this long, like `30s` (exit 89).
    #[arg(long)]
    pub timeout: Option<humantime::Duration>,
    /// Why you need access (connections that need an approved access review).
    #[arg(long)]
    pub reason: Option<String>,
    /// How long the access window should last (connections with access reviews).
    #[arg(long, default_value = "1h")]
    pub duration: humantime::Duration,
    /// Wait at most this long for a review's approval (exit 89 if it is still pending).
    #[arg(long, conflicts_with = "no_wait")]
    pub wait: Option<humantime::Duration>,
    /// Do not wait for reviews: print the review id and exit 88 (pending).
    #[arg(long)]
    pub no_wait: bool,
    /// Run the statement of this approved review (it must be exactly the approved text).
    #[arg(long, value_name = "ID", conflicts_with_all = ["wait", "no_wait"],
          value_parser = clap::value_parser!(i64).range(1..))]
    pub review: Option<i64>,
    /// Read the token (API key or workload token) from FILE instead of `HOOP_TOKEN`.
    #[arg(long, value_name = "FILE", env = "HOOP_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Trust the gateway's certificate by this fingerprint (`SHA256:…`).
    #[arg(long, env = "HOOP_FINGERPRINT", conflicts_with = "ca_file")]
    pub fingerprint: Option<String>,
    /// Trust the gateway's certificate through this CA bundle (PEM).
    #[arg(long, value_name = "FILE", env = "HOOP_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// How the input failed, as the gateway reported it.
struct Failure {
    kind: ExecErrorKind,
    sqlstate: String,
    message: String,
}

/// Short names of exit codes for the JSON error object.
fn exit_name(e: Exit) -> &'static str {
    match e {
        Exit::Ok => "ok",
        Exit::Failed => "failed",
        Exit::Usage => "usage",
        Exit::NotAuthenticated => "unauthenticated",
        Exit::AccessDenied => "denied",
        Exit::Unreachable => "unreachable",
        Exit::Certificate => "certificate",
        Exit::NotFound => "not_found",
        Exit::Blocked => "blocked",
        Exit::ReviewRejected => "review_rejected",
        Exit::ReviewPending => "review_pending",
        Exit::Timeout => "timeout",
        Exit::Internal => "internal",
        Exit::VerifyFailed => "verify_failed",
    }
}

/// Runs `hoop exec`. With `-o json` an error is a JSON object on stderr (the returned error
/// then carries no message, so `main` prints nothing more).
pub async fn run(ctx: &Ctx, args: ExecArgs) -> CliResult<()> {
    let json = args.output == ExecFormat::Json;
    let mut review = None;
    let mut sqlstate = None;
    let result = exec(ctx, &args, &mut review, &mut sqlstate).await;
    match result {
        Err(e) if json && !e.message.is_empty() => {
            let obj = json!({
                "error": exit_name(e.exit),
                "exit": e.exit.code(),
                "message": e.message,
                "sqlstate": sqlstate,
                "review": review,
            });
            let _ = writeln!(std::io::stderr(), "{obj}");
            Err(CliError::new(e.exit, ""))
        }
        other => other,
    }
}

fn read_input(args: &ExecArgs) -> CliResult<String> {
    let from_stdin = || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| usage(format!("cannot read the input from stdin: {e}")))?;
        Ok(s)
    };
    let input = match (&args.input, &args.file) {
        (Some(i), _) => i.clone(),
        (None, Some(f)) if f.as_os_str() == "-" => from_stdin()?,
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| usage(format!("cannot read {}: {e}", f.display())))?,
        (None, None) if !stdin_is_tty() => from_stdin()?,
        (None, None) => {
            return Err(usage(
                "give the input: hoop exec <name> \"<statement>\", -f FILE, or pipe it on stdin",
            ));
        }
    };
    if input.trim().is_empty() {
        return Err(usage(
            "the input is empty: give a statement, -f FILE, or pipe it on stdin",
        ));
    }
    Ok(input)
}

async fn bearer(ctx: &Ctx, args: &ExecArgs, gw: &Gateway) -> CliResult<String> {
    if let Some(f) = &args.token_file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| usage(format!("cannot read the token file {}: {e}", f.display())))?;
        let t = t.trim();
        if t.is_empty() {
            return Err(usage(format!("the token file {} is empty", f.display())));
        }
        return Ok(t.to_string());
    }
    if let Some(t) = &ctx.token {
        return Ok(t.trim().to_string());
    }
    let store = open_store(&ctx.paths.data_dir)?;
    Ok(credential(gw, &store, None).await?.bearer().to_string())
}

async fn exec(
    ctx: &Ctx,
    args: &ExecArgs,
    review_id: &mut Option<i64>,
    sqlstate: &mut Option<String>,
) -> CliResult<()> {
    if args.stream && args.output != ExecFormat::Json {
        return Err(usage("--stream goes with -o json"));
    }
    let input = read_input(args)?;
    let url = gateway_url(ctx.gateway.as_deref(), &ctx.settings)?;
    let trust = trust_for(
        &url,
        &ctx.settings,
        args.ca_file.as_deref(),
        args.fingerprint.as_deref(),
    )?;
    let gw = Gateway::new(url, trust)?;
    let bearer = bearer(ctx, args, &gw).await?;
    let machine = args.token_file.is_some() || ctx.token.is_some();
    let review = match (args.review, args.no_wait, args.wait) {
        (Some(id), _, _) => ExecReviewMode::Approved { review: id },
        (None, true, _) => ExecReviewMode::Wait { secs: 0 },
        (None, false, Some(d)) => ExecReviewMode::Wait {
            secs: Duration::from(d).as_secs().max(1),
        },
        (None, false, None) => ExecReviewMode::Hold,
    };
    let req = ExecRequest {
        input,
        review,
        timeout_secs: args.timeout.map(|t| Duration::from(t).as_secs().max(1)),
    };
    let path = format!("/api/v1/connections/{}/exec", encode_segment(&args.name));
    let mut resp = match post(&gw, &bearer, &path, &req).await? {
        Ok(r) => r,
        Err((status, err)) if status == 403 && err.error == "review_required" => {
            // The connection needs an approved access window: request it (or reuse an open
            // one) the way `hoop connect` does, then run.
            let Some(reason) = args.reason.as_deref().filter(|r| !r.trim().is_empty()) else {
                return Err(usage(format!(
                    "{} needs an approved access review: give --reason \"...\" (and --duration, --wait or --no-wait)",
                    args.name
                )));
            };
            crate::commands::reviews::request_and_wait_access(
                &gw,
                &bearer,
                &args.name,
                reason,
                args.duration.into(),
                args.wait.map(Into::into),
                args.no_wait,
            )
            .await?;
            match post(&gw, &bearer, &path, &req).await? {
                Ok(r) => r,
                Err((status, err)) => return Err(api_error(status, err, machine)),
            }
        }
        Err((status, err)) => return Err(api_error(status, err, machine)),
    };
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !content_type.starts_with(EXEC_CONTENT_TYPE) {
        return Err(internal(format!(
            "the gateway answered exec with {content_type:?}, not {EXEC_CONTENT_TYPE}: is it an older version?"
        )));
    }
    let mut printer = Printer::new(args.output, args.stream);
    let mut remote: Option<(Option<u32>, Option<String>)> = None;
    let mut failure: Option<Failure> = None;
    let mut done = false;
    let mut pending: Vec<u8> = Vec::new();
    let deadline = req
        .timeout_secs
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s) + TIMEOUT_SLACK);
    'read: loop {
        let chunk = match deadline {
            Some(d) => match tokio::time::timeout_at(d, resp.chunk()).await {
                Ok(c) => c,
                Err(_) => {
                    return Err(CliError::new(
                        Exit::Timeout,
                        format!(
                            "the gateway did not finish within the --timeout of {}s",
                            req.timeout_secs.unwrap_or_default()
                        ),
                    ));
                }
            },
            None => resp.chunk().await,
        };
        let chunk = match chunk {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(gw.client.explain(&gw.url, &e)),
        };
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = pending
            .get(start..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
        {
            let line = pending.get(start..start + nl).unwrap_or_default();
            start += nl + 1;
            if line.is_empty() {
                continue;
            }
            let ev: ExecEvent = serde_json::from_slice(line)
                .map_err(|e| internal(format!("the gateway sent an unreadable exec event: {e}")))?;
            match &ev {
                ExecEvent::Notice { severity, message } => {
                    note(format!("{severity}:  {message}"));
                }
                ExecEvent::Review { id, message, .. } => {
                    *review_id = Some(*id);
                    note(format!("hoop: {message}"));
                }
                ExecEvent::Error {
                    kind,
                    sqlstate,
                    message,
                } => {
                    failure.get_or_insert(Failure {
                        kind: *kind,
                        sqlstate: sqlstate.clone(),
                        message: message.clone(),
                    });
                }
                ExecEvent::Done { .. } => {
                    done = true;
                }
                ExecEvent::Exit { status, signal } => remote = Some((*status, signal.clone())),
                _ => {}
            }
            match printer.event(&ev) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(internal(format!("cannot write to stdout: {e}"))),
            }
            if done {
                break 'read;
            }
        }
        pending.drain(..start);
    }
    match printer.finish() {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(internal(format!("cannot write to stdout: {e}"))),
    }
    if let Some(f) = failure {
        if !f.sqlstate.is_empty() {
            *sqlstate = Some(f.sqlstate.clone());
        }
        let with_state = |m: &str| {
            if f.sqlstate.is_empty() {
                m.to_string()
            } else {
                format!("ERROR {}: {m}", f.sqlstate)
            }
        };
        return Err(match f.kind {
            ExecErrorKind::Statement => CliError::new(Exit::Failed, with_state(&f.message)),
            ExecErrorKind::Blocked => CliError::new(Exit::Blocked, f.message),
            ExecErrorKind::ReviewRejected => CliError::new(Exit::ReviewRejected, f.message),
            ExecErrorKind::ReviewPending => {
                let id = review_id.map(|i| i.to_string()).unwrap_or_default();
                if args.output != ExecFormat::Json {
                    crate::ui::out(&format!("{id}\n"))?;
                }
                let exit = if args.no_wait {
                    Exit::ReviewPending
                } else {
                    Exit::Timeout
                };
                CliError::new(exit, f.message)
            }
            ExecErrorKind::Timeout => CliError::new(Exit::Timeout, with_state(&f.message)),
            ExecErrorKind::Session => CliError::new(Exit::Internal, with_state(&f.message)),
        });
    }
    if !done {
        return Err(internal(
            "the gateway's answer ended early (the connection was cut); the input may or may not have run",
        ));
    }
    match remote {
        Some((Some(0), _)) | None => Ok(()),
        // The remote command's status is hoop's, as with `hoop ssh` (and OpenSSH): 0–255,
        // which CliError cannot carry; a command killed by a signal gives 255.
        Some((status, signal)) => {
            if let (None, Some(sig)) = (status, &signal) {
                note(format!(
                    "hoop: the remote command was killed by signal {sig}"
                ));
            }
            let code = status.and_then(|s| i32::try_from(s).ok()).unwrap_or(255);
            std::process::exit(code)
        }
    }
}

/// One path segment, percent-encoded (connection names are plain, but never trust that).
fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

type Refused = (u16, ApiError);

/// POSTs the request; Ok(Err) carries a refusal the caller may act on.
async fn post(
    gw: &Gateway,
    bearer: &str,
    path: &str,
    req: &ExecRequest,
) -> CliResult<Result<reqwest::Response, Refused>> {
    let resp = gw
        .client
        .http
        .post(format!("{}{path}", gw.url))
        .bearer_auth(bearer)
        .json(req)
        .send()
        .await
        .map_err(|e| gw.client.explain(&gw.url, &e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(Ok(resp));
    }
    let body = resp.text().await.unwrap_or_default();
    let err = serde_json::from_str::<ApiError>(&body).unwrap_or(ApiError {
        error: String::new(),
        message: format!("HTTP {status}"),
    });
    Ok(Err((status.as_u16(), err)))
}

fn api_error(status: u16, err: ApiError, machine: bool) -> CliError {
    let message = err.message;
    match status {
        400 | 501 => CliError::new(Exit::Usage, message),
        401 if machine => CliError::new(
            Exit::NotAuthenticated,
            format!("{message} (the token from HOOP_TOKEN or --token-file was refused)"),
        ),
        401 => CliError::new(
            Exit::NotAuthenticated,
            format!("{message} (run `hoop login`)"),
        ),
        403 => CliError::new(Exit::AccessDenied, message),
        404 => CliError::new(Exit::NotFound, message),
        _ => CliError::new(Exit::Internal, format!("the gateway failed: {message}")),
    }
}

/// Formats events on stdout as they arrive.
struct Printer {
    format: ExecFormat,
    stream: bool,
    out: std::io::BufWriter<std::io::Stdout>,
    /// The current result set's columns.
    columns: Vec<ExecColumn>,
    /// `table`: rows read before the widths are fixed; `None` once they are.
    sample: Option<Vec<Vec<Option<String>>>>,
    widths: Vec<usize>,
    /// `json`: rows written in the current object.
    rows: u64,
    /// A result set is open (columns seen, no `complete` yet).
    open: bool,
    /// Result sets printed, for separators.
    sets: u64,
    /// A remote command's output (`-o json` on SSH connections) and exit.
    command: RemoteCommand,
}

/// What a remote command (SSH connection) printed and how it ended.
#[derive(Debug, Default)]
struct RemoteCommand {
    /// An `exit` event came.
    ran: bool,
    stdout: String,
    stderr: String,
    exit_status: Option<u32>,
    signal: Option<String>,
    /// Output past [`JSON_OUTPUT_LIMIT`] was dropped.
    truncated: bool,
}

/// `-o json` on an SSH connection keeps at most this much output (both streams) for its one
/// object; `--stream` has no limit.
const JSON_OUTPUT_LIMIT: usize = 64 << 20;

impl RemoteCommand {
    fn keep(&mut self, stream: ExecStream, data: &str) {
        self.keep_within(stream, data, JSON_OUTPUT_LIMIT);
    }

    fn keep_within(&mut self, stream: ExecStream, data: &str, limit: usize) {
        let room = limit.saturating_sub(self.stdout.len() + self.stderr.len());
        let take = if data.len() <= room {
            data
        } else {
            if !self.truncated {
                self.truncated = true;
                note(format!(
                    "hoop: the command printed more than {limit} bytes; the JSON object keeps the first {limit} (use --stream for all of it)"
                ));
            }
            let mut end = room;
            while !data.is_char_boundary(end) {
                end -= 1;
            }
            data.get(..end).unwrap_or_default()
        };
        match stream {
            ExecStream::Stdout => self.stdout.push_str(take),
            ExecStream::Stderr => self.stderr.push_str(take),
        }
    }
}

impl Printer {
    fn new(format: ExecFormat, stream: bool) -> Self {
        Self {
            format,
            stream,
            out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            columns: Vec::new(),
            sample: None,
            widths: Vec::new(),
            rows: 0,
            open: false,
            sets: 0,
            command: RemoteCommand::default(),
        }
    }

    fn event(&mut self, ev: &ExecEvent) -> std::io::Result<()> {
        if self.stream {
            if !matches!(ev, ExecEvent::Done { .. }) {
                serde_json::to_writer(&mut self.out, ev)?;
                self.out.write_all(b"\n")?;
            }
            return Ok(());
        }
        match ev {
            ExecEvent::Columns { columns } => {
                self.close_set(None)?;
                self.columns = columns.clone();
                self.open = true;
                self.rows = 0;
                self.begin_set()?;
            }
            ExecEvent::Row { values } => self.row(values)?,
            ExecEvent::Complete { command } => self.close_set(Some(command))?,
            ExecEvent::Done { .. } | ExecEvent::Error { .. } => self.close_set(None)?,
            ExecEvent::Notice { .. } | ExecEvent::Review { .. } => {}
            ExecEvent::Output { stream, data } => match (self.format, stream) {
                // `-o json` without --stream: one object once the command ends.
                (ExecFormat::Json, stream) => self.command.keep(*stream, data),
                // Otherwise the remote command's streams pass through, in order.
                (_, ExecStream::Stdout) => self.out.write_all(data.as_bytes())?,
                (_, ExecStream::Stderr) => {
                    self.out.flush()?;
                    let mut err = std::io::stderr().lock();
                    err.write_all(data.as_bytes())?;
                    err.flush()?;
                }
            },
            ExecEvent::Exit { status, signal } => {
                self.command.ran = true;
                self.command.exit_status = *status;
                self.command.signal = signal.clone();
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if !self.stream {
            self.close_set(None)?;
            // Also when it ended without an exit (a timeout, a cut connection): what it
            // printed is kept, with a null status.
            let c = &self.command;
            if self.format == ExecFormat::Json
                && (c.ran || !c.stdout.is_empty() || !c.stderr.is_empty())
            {
                let c = std::mem::take(&mut self.command);
                let obj = json!({
                    "stdout": c.stdout,
                    "stderr": c.stderr,
                    "exit_status": c.exit_status,
                    "signal": c.signal,
                    "truncated": c.truncated,
                });
                serde_json::to_writer(&mut self.out, &obj)?;
                self.out.write_all(b"\n")?;
            }
        }
        self.out.flush()
    }

    fn csv_writer(&mut self) -> csv::Writer<&mut std::io::BufWriter<std::io::Stdout>> {
        let delimiter = if self.format == ExecFormat::Tsv {
            b'\t'
        } else {
            b','
        };
        csv::WriterBuilder::new()
            .delimiter(delimiter)
            .from_writer(&mut self.out)
    }

    fn begin_set(&mut self) -> std::io::Result<()> {
        match self.format {
            ExecFormat::Table => {
                if self.sets > 0 {
                    self.out.write_all(b"\n")?;
                }
                self.sample = Some(Vec::new());
            }
            ExecFormat::Csv | ExecFormat::Tsv => {
                if self.sets > 0 {
                    self.out.write_all(b"\n")?;
                }
                let names: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
                let mut w = self.csv_writer();
                w.write_record(&names)?;
                w.flush()?;
            }
            ExecFormat::Json => {
                self.out.write_all(b"{\"columns\":")?;
                let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
                serde_json::to_writer(&mut self.out, &names)?;
                self.out.write_all(b",\"rows\":[")?;
            }
        }
        self.sets += 1;
        Ok(())
    }

    fn row(&mut self, values: &[Option<String>]) -> std::io::Result<()> {
        if !self.open {
            // Rows without a RowDescription do not happen; keep them anyway.
            self.columns.clear();
            self.open = true;
            self.begin_set()?;
        }
        match self.format {
            ExecFormat::Table => match &mut self.sample {
                Some(sample) if sample.len() < TABLE_SAMPLE => sample.push(values.to_vec()),
                Some(_) => {
                    self.flush_sample()?;
                    self.table_line(values)?;
                }
                None => self.table_line(values)?,
            },
            ExecFormat::Csv | ExecFormat::Tsv => {
                let mut w = self.csv_writer();
                w.write_record(values.iter().map(|v| v.as_deref().unwrap_or("")))?;
                w.flush()?;
            }
            ExecFormat::Json => {
                if self.rows > 0 {
                    self.out.write_all(b",")?;
                }
                serde_json::to_writer(&mut self.out, values)?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// `table`: fixes the widths from the sample and prints the header and the sample.
    fn flush_sample(&mut self) -> std::io::Result<()> {
        let Some(sample) = self.sample.take() else {
            return Ok(());
        };
        let mut widths: Vec<usize> = self.columns.iter().map(|c| width(&c.name)).collect();
        for r in &sample {
            for (i, v) in r.iter().enumerate() {
                let w = v.as_deref().map(width).unwrap_or(0);
                match widths.get_mut(i) {
                    Some(x) => *x = (*x).max(w),
                    None => widths.push(w),
                }
            }
        }
        self.widths = widths;
        let header: Vec<Option<String>> =
            self.columns.iter().map(|c| Some(c.name.clone())).collect();
        self.table_line(&header)?;
        let rule: Vec<Option<String>> = self.widths.iter().map(|w| Some("-".repeat(*w))).collect();
        self.table_line(&rule)?;
        for r in &sample {
            self.table_line(r)?;
        }
        Ok(())
    }

    fn table_line(&mut self, values: &[Option<String>]) -> std::io::Result<()> {
        let mut line = String::new();
        for (i, v) in values.iter().enumerate() {
            let v = v.as_deref().unwrap_or("");
            let v = clean_cell(v);
            if i + 1 == values.len() {
                line.push_str(&v);
            } else {
                let w = self.widths.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(width(&v));
                line.push_str(&v);
                line.push_str(&" ".repeat(pad));
                line.push_str(" | ");
            }
        }
        self.out.write_all(line.trim_end().as_bytes())?;
        self.out.write_all(b"\n")
    }

    fn close_set(&mut self, command: Option<&str>) -> std::io::Result<()> {
        if !self.open {
            // A statement without rows (INSERT, UPDATE...): only its tag.
            if let Some(command) = command {
                match self.format {
                    ExecFormat::Table => {
                        if self.sets > 0 {
                            self.out.write_all(b"\n")?;
                        }
                        writeln!(self.out, "{command}")?;
                    }
                    ExecFormat::Csv | ExecFormat::Tsv => {}
                    ExecFormat::Json => {
                        serde_json::to_writer(
                            &mut self.out,
                            &json!({"columns": [], "rows": [], "command": command}),
                        )?;
                        self.out.write_all(b"\n")?;
                    }
                }
                self.sets += 1;
            }
            return Ok(());
        }
        self.open = false;
        match self.format {
            ExecFormat::Table => {
                self.flush_sample()?;
                let n = self.rows;
                writeln!(self.out, "({n} row{})", if n == 1 { "" } else { "s" })?;
            }
            ExecFormat::Csv | ExecFormat::Tsv => {}
            ExecFormat::Json => {
                self.out.write_all(b"],\"command\":")?;
                serde_json::to_writer(&mut self.out, &command)?;
                self.out.write_all(b"}\n")?;
            }
        }
        self.out.flush()
    }
}

/// Display width, counted in characters (good enough for aligned output of typical data).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// A table cell on one line: control characters shown escaped, since the data chose them.
fn clean_cell(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\t' => "\\t".to_string(),
            '\r' => "\\r".to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_stay_on_one_line() {
        assert_eq!(clean_cell("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(clean_cell("plain"), "plain");
    }

    #[test]
    fn json_output_of_a_remote_command_is_bounded() {
        let mut c = RemoteCommand::default();
        c.keep_within(ExecStream::Stdout, "abc", 8);
        c.keep_within(ExecStream::Stderr, "dé", 8);
        assert!(!c.truncated);
        // 6 of 8 bytes used: "fg" fits, the rest is dropped, cut on a character boundary.
        c.keep_within(ExecStream::Stdout, "fgé", 8);
        assert_eq!((c.stdout.as_str(), c.stderr.as_str()), ("abcfg", "dé"));
        assert!(c.truncated);
        c.keep_within(ExecStream::Stderr, "more", 8);
        assert_eq!(c.stderr, "dé");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("prod-db"), "prod-db");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
