//! The retention purge: statement logs of sessions ended longer ago than `[retention].recordings`
//! are deleted, and audit records older than `[retention].audit` become tombstones.
//!
//! Only records covered by a checkpoint signed before the cutoff are purged (checkpoints are
//! signed after their records were stamped, so every record up to one is older than it). The
//! purge records itself first (`retention.purged`, naming `audit_through_seq`), then removes
//! the bytes: a verifier accepts a tombstone only when a later purge record covers it, and a
//! crash between the two steps leaves a purge record with nothing purged, never the reverse.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{AuditLog, event};
use crate::config::RetentionConfig;
use crate::store::Store;

/// What one purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Statements deleted from session recordings.
    pub statements: u64,
    /// Audit records turned into tombstones.
    pub tombstones: u64,
    /// The last audit sequence number now purged, if any.
    pub audit_through_seq: Option<i64>,
}

fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Runs one purge as if the time were `now_ms` (the gateway passes the clock; `hoopd retention
/// purge --now` passes what it is told, so tests and dry reckonings can move time).
pub async fn purge(
    store: &dyn Store,
    audit: &AuditLog,
    cfg: &RetentionConfig,
    now_ms: i64,
    actor: &str,
) -> Result<PurgeReport, String> {
    let mut report = PurgeReport::default();
    let recordings_cutoff = cfg.recordings.map(|d| now_ms.saturating_sub(ms_of(d)));
    let audit_cutoff = cfg.audit.map(|d| now_ms.saturating_sub(ms_of(d)));
    if let Some(cut) = recordings_cutoff {
        report.statements = store
            .recordings_purge(cut)
            .await
            .map_err(|e| format!("cannot purge recordings: {e}"))?;
    }
    let mut through = None;
    if let Some(cut) = audit_cutoff {
        let cp = store
            .audit_checkpoint_before(Some(cut))
            .await
            .map_err(|e| format!("cannot read audit checkpoints: {e}"))?;
        if let Some(cp) = cp {
            let done = store
                .audit_get(cp.seq)
                .await
                .map_err(|e| e.to_string())?
                .is_some_and(|r| r.purged);
            if !done {
                through = Some(cp.seq);
            }
        }
    }
    if report.statements == 0 && through.is_none() {
        return Ok(report);
    }
    audit
        .record(event(
            hoop_shared::audit::PURGE_KIND,
            Some(actor),
            None,
            "success",
            json!({
                "now": rfc3339_ms(now_ms),
                "recordings_cutoff": recordings_cutoff.map(rfc3339_ms),
                "statements_deleted": report.statements,
                "audit_cutoff": audit_cutoff.map(rfc3339_ms),
                "audit_through_seq": through,
            }),
        ))
        .await
        .map_err(|e| {
            format!("cannot audit the purge, so nothing was purged from the audit log: {e}")
        })?;
    if let Some(t) = through {
        report.tombstones = store
            .audit_tombstone(t)
            .await
            .map_err(|e| format!("cannot purge audit records: {e}"))?;
        report.audit_through_seq = Some(t);
    }
    tracing::info!(
        statements = report.statements,
        tombstones = report.tombstones,
        "retention purge done"
    );
    Ok(report)
}

/// Runs the purge every `cfg.interval` while the gateway runs (first run one interval after
/// start, so a restart loop cannot hammer the store).
pub fn start(store: Arc<dyn Store>, audit: AuditLog, cfg: RetentionConfig) {
    if cfg.recordings.is_none() && cfg.audit.is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now =
                i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(i64::MAX);
            if let Err(e) = purge(store.as_ref(), &audit, &cfg, now, "hoopd:retention").await {
                tracing::error!(error = %e, "retention purge failed");
            }
        }
    });
}
