//! `GET /api/v1/audit/export`: the chain as export lines (format in `hoop_shared::audit`),
//! streamed page by page with back-pressure, never held in memory whole.
//!
//! The range is contiguous: from the first record at or after `since` to the last one before
//! `until` (by the time inside each record), capped at the chain head when the export began. The
//! checkpoints the writer signed inside the range follow their records, and a freshly signed
//! `end` line closes the export, so a verifier detects truncation at any point.

use std::sync::Arc;

use bytes::Bytes;
use hoop_shared::audit::{AuditEvent, ExportLine, GENESIS, SecretKey, export_end};
use tokio::sync::mpsc;

use crate::store::{Store, StoreError};

/// Records read per store query.
const PAGE: i64 = 1000;
/// Bytes gathered before a chunk is handed to the HTTP body.
const CHUNK: usize = 64 * 1024;

/// Which records to export (unix milliseconds; `None`: unbounded).
#[derive(Debug, Clone, Copy, Default)]
pub struct Range {
    /// Records at or after this time.
    pub since_ms: Option<i64>,
    /// Records before this time.
    pub until_ms: Option<i64>,
}

/// The time inside a record's bytes (unix milliseconds), if it has one.
pub fn record_time_ms(bytes: &[u8]) -> Option<i64> {
    let ev: AuditEvent = serde_json::from_slice(bytes).ok()?;
    let t = time::OffsetDateTime::parse(&ev.time, &time::format_description::well_known::Rfc3339)
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Starts writing the export of `range`; chunks arrive on the receiver, an error ends it early
/// (the client then holds a file without its end line, which verification reports as truncated).
pub fn start(
    store: Arc<dyn Store>,
    key: Arc<SecretKey>,
    range: Range,
) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        if let Err(e) = write(store.as_ref(), &key, range, &tx).await {
            tracing::error!(error = %e, "audit export failed");
            let _ = tx
                .send(Err(std::io::Error::other(
                    "the audit export failed; see the gateway's log",
                )))
                .await;
        }
    });
    rx
}

#[derive(Debug, thiserror::Error)]
enum ExportFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the client went away")]
    Closed,
}

async fn write(
    store: &dyn Store,
    key: &SecretKey,
    range: Range,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), ExportFailure> {
    let head = store.audit_head().await?.map_or(0, |h| h.0);
    // Checkpoints are signed after their records were stamped, so every record up to a
    // checkpoint signed before `since` is older than `since`: skip straight past it.
    let mut after = match range.since_ms {
        Some(t) => store
            .audit_checkpoint_before(Some(t))
            .await?
            .map_or(0, |c| c.seq),
        None => 0,
    };
    let mut buf = String::new();
    let mut first: Option<(i64, [u8; 32])> = None;
    let mut last: Option<(i64, [u8; 32])> = None;
    let mut records = 0u64;
    let mut checkpoints = 0u64;
    'pages: while after < head {
        let page = store.audit_range(after, PAGE.min(head - after)).await?;
        let (Some(p_first), Some(p_last)) = (page.first(), page.last()) else {
            break;
        };
        let cps = store.audit_checkpoints(p_first.seq - 1, p_last.seq).await?;
        let mut cps = cps.iter().peekable();
        for r in &page {
            let t = if r.purged {
                None
            } else {
                record_time_ms(&r.bytes)
            };
            if first.is_none() {
                let before = match (range.since_ms, t) {
                    (Some(since), Some(t)) => t < since,
                    // A tombstone's time is gone; it is older than any record kept after it.
                    (Some(_), None) => r.purged,
                    (None, _) => false,
                };
                if before {
                    after = r.seq;
                    continue;
                }
            }
            if let (Some(until), Some(t)) = (range.until_ms, t)
                && t >= until
            {
                break 'pages;
            }
            after = r.seq;
            if first.is_none() {
                first = Some((r.seq, r.prev_hash));
            }
            last = Some((r.seq, r.hash));
            records += 1;
            buf.push_str(&ExportLine::from_record(r).to_line());
            // Every stored checkpoint goes out, even one naming another hash: a verifier must see
            // that the stored chain no longer matches what the gateway signed.
            while let Some(c) = cps.next_if(|c| c.seq <= r.seq) {
                if c.seq == r.seq {
                    buf.push_str(&ExportLine::from_checkpoint(c).to_line());
                    checkpoints += 1;
                }
            }
            if buf.len() >= CHUNK {
                send(tx, std::mem::take(&mut buf)).await?;
            }
        }
    }
    let (first_seq, prev_hash, last_seq, hash) = match (first, last) {
        (Some((f, p)), Some((l, h))) => (f, p, l, h),
        _ => {
            // Nothing in range: an empty export positioned after record `after`, still signed.
            let h = store.audit_get(after).await?.map_or(GENESIS, |r| r.hash);
            (after + 1, h, after, h)
        }
    };
    let mut end = export_end(
        first_seq,
        &prev_hash,
        last_seq,
        &hash,
        records,
        checkpoints,
        &crate::util::now_rfc3339(),
    );
    key.sign_end(&mut end);
    buf.push_str(&ExportLine::End(end).to_line());
    send(tx, buf).await
}

async fn send(
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    text: String,
) -> Result<(), ExportFailure> {
    tx.send(Ok(Bytes::from(text)))
        .await
        .map_err(|_| ExportFailure::Closed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use hoop_shared::audit::{ExportError, verify_export};
    use serde_json::json;

    use super::*;
    use crate::audit::{AuditLog, WriterOptions, event};
    use crate::config::RetentionConfig;
    use crate::store::SqliteStore;

    async fn collect(mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = rx.recv().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    async fn wait_signed_head(store: &dyn Store) {
        for _ in 0..200 {
            let head = store.audit_head().await.unwrap().map(|h| h.0);
            let signed = store
                .audit_checkpoint_before(None)
                .await
                .unwrap()
                .map(|c| c.seq);
            if head.is_some() && head == signed {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the writer never signed the head");
    }

    /// A store with `n` events written by a signing writer, once the head is signed.
    async fn signed_log(n: usize) -> (tempfile::TempDir, Arc<dyn Store>, Arc<SecretKey>, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let key = Arc::new(SecretKey::from_seed(&[3u8; 32]));
        let audit = AuditLog::start_with(
            store.clone(),
            WriterOptions {
                key: Some(key.clone()),
                ..Default::default()
            },
        );
        for i in 0..n {
            audit
                .record(event(
                    "test.event",
                    None,
                    None,
                    "success",
                    json!({ "i": i }),
                ))
                .await
                .unwrap();
        }
        wait_signed_head(store.as_ref()).await;
        (dir, store, key, audit)
    }

    fn with_time(kind: &str, time: &str) -> hoop_shared::audit::AuditEvent {
        let mut e = event(kind, Some("ada"), None, "success", json!({}));
        e.time = time.to_string();
        e
    }

    #[tokio::test]
    async fn the_writer_signs_the_head_and_the_export_verifies() {
        let (_dir, store, key, _audit) = signed_log(20).await;
        let data = collect(start(store.clone(), key.clone(), Range::default())).await;
        let s = verify_export(&data, &key.public()).unwrap();
        assert_eq!((s.first_seq, s.last_seq, s.records), (1, 20, 20));
        assert!(s.checkpoints >= 1);
        // Another key refuses it.
        let other = SecretKey::from_seed(&[4u8; 32]).public();
        assert!(verify_export(&data, &other).is_err());
    }

    #[tokio::test]
    async fn a_time_range_exports_a_contiguous_verifiable_slice() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let key = Arc::new(SecretKey::from_seed(&[3u8; 32]));
        let audit = AuditLog::start(store.clone());
        for day in 1..=9 {
            audit
                .record(with_time("test.day", &format!("2026-03-0{day}T12:00:00Z")))
                .await
                .unwrap();
        }
        let ms = |s: &str| {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .unwrap();
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
        };
        let range = Range {
            since_ms: Some(ms("2026-03-03T00:00:00Z")),
            until_ms: Some(ms("2026-03-06T00:00:00Z")),
        };
        let data = collect(start(store.clone(), key.clone(), range)).await;
        let s = verify_export(&data, &key.public()).unwrap();
        assert_eq!((s.first_seq, s.last_seq, s.records), (3, 5, 3));
        // An empty range is a signed empty export.
        let range = Range {
            since_ms: Some(ms("2027-01-01T00:00:00Z")),
            until_ms: None,
        };
        let data = collect(start(store.clone(), key.clone(), range)).await;
        let s = verify_export(&data, &key.public()).unwrap();
        assert_eq!(s.records, 0);
    }

    #[tokio::test]
    async fn the_purge_leaves_tombstones_that_still_verify() {
        let (_dir, store, key, audit) = signed_log(5).await;
        let cfg = RetentionConfig {
            recordings: None,
            audit: Some(std::time::Duration::from_secs(86_400)),
            interval: std::time::Duration::from_secs(3600),
        };
        let now = crate::util::now_unix() * 1000;
        // Today: nothing is a day old.
        let r = crate::audit::retention::purge(store.as_ref(), &audit, &cfg, now, "test")
            .await
            .unwrap();
        assert_eq!(r.tombstones, 0);
        // Two days on: the five records become tombstones; the purge record itself stays.
        let r = crate::audit::retention::purge(
            store.as_ref(),
            &audit,
            &cfg,
            now + 2 * 86_400_000,
            "test",
        )
        .await
        .unwrap();
        assert_eq!(r.tombstones, 5);
        let r = crate::audit::verify_store(store.as_ref(), Some(&key.public()))
            .await
            .unwrap();
        assert!(r.checkpoints >= 1);
        wait_signed_head(store.as_ref()).await;
        let data = collect(start(store.clone(), key.clone(), Range::default())).await;
        let s = verify_export(&data, &key.public()).unwrap();
        assert_eq!((s.tombstones, s.records), (5, 1));
        // Without the purge record, the tombstones are unaccounted for.
        let text = String::from_utf8(data).unwrap();
        let kept: Vec<&str> = text.lines().collect();
        let purge_line = kept
            .iter()
            .position(|l| l.contains("\"type\":\"record\""))
            .unwrap();
        let mut cut: Vec<&str> = kept.clone();
        cut.truncate(purge_line);
        let cut = cut.join("\n") + "\n";
        assert!(matches!(
            verify_export(cut.as_bytes(), &key.public()),
            Err(ExportError::Truncated { .. })
        ));
        // Run again on the same clock: the first purge record is itself old by then; the new
        // purge record covers it, and the chain still verifies.
        let r = crate::audit::retention::purge(
            store.as_ref(),
            &audit,
            &cfg,
            now + 2 * 86_400_000,
            "test",
        )
        .await
        .unwrap();
        assert_eq!(r.tombstones, 1);
        wait_signed_head(store.as_ref()).await;
        let data = collect(start(store.clone(), key.clone(), Range::default())).await;
        let s = verify_export(&data, &key.public()).unwrap();
        assert_eq!((s.tombstones, s.records), (6, 1));
    }
}
