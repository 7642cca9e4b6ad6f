//! `hoop audit export`: stream the signed audit log to stdout (admins and auditors);
//! `hoop audit verify <file> --key <file>`: check an export offline, with only the gateway's
//! public key; `hoop audit key`: print that key.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use hoop_shared::audit::{ExportVerifier, PublicKey};
use serde_json::json;
use time::OffsetDateTime;

use crate::Ctx;
use crate::auth::{credential, open_store};
use crate::commands::sessions::parse_when;
use crate::exit::{CliError, CliResult, Exit, internal, usage};
use crate::ui::{OutputFormat, note, out, out_json};

/// `hoop audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Stream the audit log (records, signed checkpoints, a signed end line) as JSON lines to
    /// stdout: `hoop audit export > audit.jsonl`.
    Export(ExportArgs),
    /// Verify an export offline: every hash link, every checkpoint signature, and that nothing
    /// was cut off. Names the first bad record by sequence number.
    Verify(VerifyArgs),
    /// Print the gateway's public audit key (save it as `gateway.pub`).
    Key {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// `hoop audit export` flags.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Records since: a time span ago (`7d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Records before: a time span ago or an RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
}

/// `hoop audit verify` flags.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The export (`-` for stdin).
    pub file: PathBuf,
    /// The gateway's public key file (`hoopd keys show`, `hoop audit key`).
    #[arg(long)]
    pub key: PathBuf,
    /// Output format of the summary.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Runs the subcommands that talk to the gateway.
pub async fn run(ctx: &Ctx, cmd: AuditCommand) -> CliResult<()> {
    match cmd {
        AuditCommand::Export(a) => export(ctx, a).await,
        AuditCommand::Key { output } => key(ctx, output).await,
        AuditCommand::Verify(a) => verify(&a),
    }
}

async fn key(ctx: &Ctx, output: OutputFormat) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let v: serde_json::Value = gw.get_public("/api/v1/audit/key").await?;
    match output {
        OutputFormat::Json => out_json(&v),
        OutputFormat::Table => {
            let k = v
                .get("public_key")
                .and_then(|k| k.as_str())
                .ok_or_else(|| internal("the gateway sent no public_key"))?;
            out(&format!("{k}\n"))
        }
    }
}

async fn export(ctx: &Ctx, a: ExportArgs) -> CliResult<()> {
    let now = OffsetDateTime::now_utc();
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = &a.since {
        q.append_pair("since", &parse_when("since", s, now)?);
    }
    if let Some(s) = &a.until {
        q.append_pair("until", &parse_when("until", s, now)?);
    }
    let path = format!("/api/v1/audit/export?{}", q.finish());
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let cred = credential(&gw, &store, ctx.token.as_deref()).await?;
    let resp = gw
        .client
        .http
        .get(format!("{}{path}", gw.url))
        .bearer_auth(cred.bearer())
        .send()
        .await
        .map_err(|e| gw.client.explain(&gw.url, &e))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<hoop_shared::api::ApiError>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        return Err(match status.as_u16() {
            401 => CliError::new(
                Exit::NotAuthenticated,
                format!("{message} (run `hoop login`)"),
            ),
            403 => CliError::new(Exit::AccessDenied, message),
            400 => usage(message),
            _ => CliError::new(Exit::Internal, format!("the gateway failed: {message}")),
        });
    }
    let bar = if std::io::stderr().is_terminal() {
        let pb = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} exporting: {msg} ({elapsed})")
        {
            pb.set_style(style);
        }
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(pb)
    } else {
        None
    };
    let mut stdout = std::io::stdout().lock();
    let mut resp = resp;
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = resp.chunk().await.transpose() {
        let chunk = chunk.map_err(|e| {
            internal(format!(
                "the export was cut off after {lines} lines: {e} (the partial file will not verify)"
            ))
        })?;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
        match stdout.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(internal(format!("cannot write to stdout: {e}"))),
        }
        if let Some(pb) = &bar {
            pb.set_message(format!("{lines} lines, {} KiB", bytes / 1024));
        }
    }
    stdout
        .flush()
        .map_err(|e| internal(format!("cannot write to stdout: {e}")))?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    note(format!("exported {lines} lines"));
    Ok(())
}

/// Offline verification: reads the key and the export, never the network.
pub fn verify(a: &VerifyArgs) -> CliResult<()> {
    let key_text = std::fs::read_to_string(&a.key)
        .map_err(|e| usage(format!("cannot read the key file {}: {e}", a.key.display())))?;
    let key =
        PublicKey::parse(&key_text).map_err(|e| usage(format!("{}: {e}", a.key.display())))?;
    let reader: Box<dyn BufRead> = if a.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&a.file)
            .map_err(|e| usage(format!("cannot open {}: {e}", a.file.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut v = ExportVerifier::new(key);
    let mut reader = reader;
    let mut line = Vec::new();
    let fail = |e: hoop_shared::audit::ExportError| {
        CliError::new(
            Exit::VerifyFailed,
            format!("audit export does NOT verify: {e}"),
        )
    };
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| internal(format!("cannot read {}: {e}", a.file.display())))?;
        if n == 0 {
            break;
        }
        v.line(&line).map_err(fail)?;
    }
    let s = v.finish().map_err(fail)?;
    match a.output {
        OutputFormat::Json => out_json(&json!({
            "ok": true,
            "first_seq": s.first_seq,
            "last_seq": s.last_seq,
            "records": s.records,
            "tombstones": s.tombstones,
            "checkpoints": s.checkpoints,
            "head": s.head,
            "exported_at": s.exported_at,
        })),
        OutputFormat::Table => out(&format!(
            "audit export OK: records {}..={} ({} with content, {} tombstones), {} signed checkpoints, head {}, signed at {}\n",
            s.first_seq, s.last_seq, s.records, s.tombstones, s.checkpoints, s.head, s.exported_at
        )),
    }
}
