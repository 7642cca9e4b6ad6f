//! The audit log writer: events go to a bounded queue and one task appends them to the store's
//! hash chain in batches (group commit), so callers never wait on a disk write of their own.
//!
//! `record` waits until its event is durable (state-changing API calls); `record_nowait` only
//! waits for queue space (the data path). Both fail when the writer has died, and callers are
//! expected to fail closed on that error.
//!
//! After a commit the writer signs the chain head (a checkpoint) at most once per
//! [`CHECKPOINT_INTERVAL`], and once more when events stop flowing, so the newest records are
//! signed within about a second. In the same transaction as each batch it queues the webhook
//! deliveries the batch's events match (the outbox), and after the commit it appends them to
//! the JSON-lines file sink, if one is configured.

pub mod export;
pub mod keys;
pub mod retention;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hoop_shared::audit::{AuditEvent, GENESIS, SecretKey, verify_chain};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::store::{Store, StoreError};

/// The chain head is signed at most this often while events flow.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Which events go to which webhook.
#[derive(Debug, Clone)]
pub struct Route {
    /// The webhook's name.
    pub webhook: String,
    /// Event filter: exact kinds, `prefix.*`, or `*` (empty: everything).
    pub events: Vec<String>,
}

impl Route {
    /// True when an event of `kind` goes to this webhook.
    pub fn matches(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|f| filter_matches(f, kind))
    }
}

/// One filter entry against an event kind. `login.failed` also names the audit kinds of failed
/// logins (`auth.login_failed`, `auth.rejected`), as SIEM rules tend to call them that.
pub fn filter_matches(filter: &str, kind: &str) -> bool {
    if filter == "*" || filter == kind {
        return true;
    }
    if filter == "login.failed" {
        return matches!(
            kind,
            "auth.login_failed" | "auth.rejected" | "auth.token_refused"
        );
    }
    filter
        .strip_suffix(".*")
        .is_some_and(|p| kind.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
}

/// What the writer does besides appending.
#[derive(Default)]
pub struct WriterOptions {
    /// Signs checkpoints when set.
    pub key: Option<Arc<SecretKey>>,
    /// Webhook routes (their deliveries go to the outbox).
    pub routes: Vec<Route>,
    /// JSON-lines file every committed event is appended to.
    pub file_sink: Option<PathBuf>,
}

/// Events waiting beyond this make producers wait (back-pressure instead of unbounded memory).
const QUEUE: usize = 4096;
/// At most this many events per transaction.
const BATCH: usize = 512;

/// The audit log could not take the event; the caller must fail closed.
#[derive(Debug, thiserror::Error)]
#[error("the audit log is unavailable: {0}")]
pub struct AuditError(String);

struct Pending {
    kind: String,
    bytes: Vec<u8>,
    done: Option<oneshot::Sender<Result<i64, String>>>,
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer task over `store` (no signing, no sinks: admin commands, tests).
    pub fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, WriterOptions::default())
    }

    /// Starts the writer task with checkpoint signing and sinks.
    pub fn start_with(store: Arc<dyn Store>, options: WriterOptions) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, rx, options));
        Self { tx }
    }

    /// Appends an event and waits until it is committed. Returns its sequence number.
    pub async fn record(&self, event: AuditEvent) -> Result<i64, AuditError> {
        let bytes = encode(&event)?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
                kind: event.kind.clone(),
                bytes,
                done: Some(done),
            })
            .await
            .map_err(|_| AuditError("writer stopped".into()))?;
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(AuditError(e)),
            Err(_) => Err(AuditError("writer stopped".into())),
        }
    }

    /// Queues an event without waiting for the commit.
    pub async fn record_nowait(&self, event: AuditEvent) -> Result<(), AuditError> {
        let bytes = encode(&event)?;
        self.tx
            .send(Pending {
                kind: event.kind.clone(),
                bytes,
                done: None,
            })
            .await
            .map_err(|_| AuditError("writer stopped".into()))
    }
}

fn encode(event: &AuditEvent) -> Result<Vec<u8>, AuditError> {
    serde_json::to_vec(event).map_err(|e| AuditError(format!("cannot encode event: {e}")))
}

async fn writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Pending>, options: WriterOptions) {
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    // Committed records not yet covered by a checkpoint, and when the last one was signed.
    let mut unsigned = false;
    let mut last_signed: Option<Instant> = None;
    loop {
        let received = if unsigned && options.key.is_some() {
            let due = last_signed.map_or_else(Instant::now, |t| t + CHECKPOINT_INTERVAL);
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => n,
                () = tokio::time::sleep_until(due) => {
                    sign_head(store.as_ref(), options.key.as_deref()).await;
                    unsigned = false;
                    last_signed = Some(Instant::now());
                    continue;
                }
            }
        } else {
            rx.recv_many(&mut batch, BATCH).await
        };
        if received == 0 {
            break;
        }
        let bytes: Vec<Vec<u8>> = batch
            .iter_mut()
            .map(|p| std::mem::take(&mut p.bytes))
            .collect();
        let routes: Vec<(usize, String)> = batch
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                options
                    .routes
                    .iter()
                    .filter(|r| r.matches(&p.kind))
                    .map(move |r| (i, r.webhook.clone()))
            })
            .collect();
        let result = append_with_retry(store.as_ref(), &bytes, &routes).await;
        match result {
            Ok(first) => {
                unsigned = true;
                // Signed before the waiters hear back, so a short-lived admin command's records
                // are covered before it exits.
                if last_signed.is_none_or(|t| t.elapsed() >= CHECKPOINT_INTERVAL)
                    && options.key.is_some()
                {
                    sign_head(store.as_ref(), options.key.as_deref()).await;
                    unsigned = false;
                    last_signed = Some(Instant::now());
                }
                for (p, seq) in batch.drain(..).zip(first..) {
                    if let Some(done) = p.done {
                        let _ = done.send(Ok(seq));
                    }
                }
                if let Some(path) = &options.file_sink {
                    file_sink(path, first, &bytes).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "audit log write failed");
                let msg = e.to_string();
                for p in batch.drain(..) {
                    if let Some(done) = p.done {
                        let _ = done.send(Err(msg.clone()));
                    }
                }
            }
        }
    }
    if unsigned {
        sign_head(store.as_ref(), options.key.as_deref()).await;
    }
}

/// Signs the current chain head and stores the checkpoint. A failure is logged, not fatal: the
/// records are committed and the next checkpoint covers them.
async fn sign_head(store: &dyn Store, key: Option<&SecretKey>) {
    let Some(key) = key else { return };
    match store.audit_head().await {
        Ok(Some((seq, hash))) => {
            let now = time::OffsetDateTime::now_utc();
            let time = now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let at_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
            let c = key.checkpoint(seq, hash, &time);
            if let Err(e) = store.audit_checkpoint_put(&c, at_ms).await {
                tracing::warn!(error = %e, seq, "cannot store an audit checkpoint");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the audit chain head to sign it"),
    }
}

/// Appends committed events to the JSON-lines file: one [`crate::webhooks::Envelope`] per line.
async fn file_sink(path: &std::path::Path, first: i64, bytes: &[Vec<u8>]) {
    let mut text = Vec::new();
    for (seq, b) in (first..).zip(bytes) {
        if let Some(line) = crate::webhooks::envelope_json(seq, b) {
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
    }
    let r = async {
        // 0600 when created: events name people and hosts.
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await?;
        f.write_all(&text).await?;
        f.flush().await
    }
    .await;
    if let Err(e) = r {
        tracing::error!(error = %e, path = %path.display(), "cannot append to the audit file sink");
    }
}

async fn append_with_retry(
    store: &dyn Store,
    bytes: &[Vec<u8>],
    routes: &[(usize, String)],
) -> Result<i64, StoreError> {
    // A busy database (another process holding the write lock) is worth a few retries.
    let mut delay = std::time::Duration::from_millis(20);
    for _ in 0..5 {
        match store.audit_append_routed(bytes, routes).await {
            Ok(r) => return Ok(r),
            Err(StoreError::Database(e)) if e.to_string().contains("locked") => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    store.audit_append_routed(bytes, routes).await
}

/// Builds an event stamped with the current time.
pub fn event(
    kind: &str,
    actor: Option<&str>,
    source: Option<String>,
    outcome: &str,
    details: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        time: crate::util::now_rfc3339(),
        kind: kind.to_string(),
        actor: actor.map(str::to_string),
        source,
        outcome: outcome.to_string(),
        details,
    }
}

/// Result of checking the whole stored chain.
#[derive(Debug)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Checkpoints whose hash and signature were checked.
    pub checkpoints: u64,
    /// Hash of the last record (hex), if any.
    pub head: Option<String>,
}

/// Re-hashes every stored record in order; with `key`, also checks every stored checkpoint
/// names its record's hash and carries a valid signature. The error names the first bad record.
pub async fn verify_store(
    store: &dyn Store,
    key: Option<&hoop_shared::audit::PublicKey>,
) -> Result<VerifyReport, String> {
    let mut after = 0i64;
    let mut prev = (0i64, GENESIS);
    let mut total = 0u64;
    let mut checkpoints = 0u64;
    loop {
        let page = store
            .audit_range(after, 10_000)
            .await
            .map_err(|e| e.to_string())?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            break;
        };
        let (first_seq, last_seq) = (first.seq, last.seq);
        let (n, head) = verify_chain(prev, &page).map_err(|e| e.to_string())?;
        if let Some(key) = key {
            let cps = store
                .audit_checkpoints(first_seq - 1, last_seq)
                .await
                .map_err(|e| e.to_string())?;
            for c in &cps {
                let hash = usize::try_from(c.seq - first_seq)
                    .ok()
                    .and_then(|i| page.get(i))
                    .map(|r| r.hash);
                if hash != Some(c.hash) {
                    return Err(format!(
                        "record {}: the signed checkpoint names another hash (a record up to {} was altered)",
                        c.seq, c.seq
                    ));
                }
                if !key.verify_checkpoint(c) {
                    return Err(format!(
                        "record {}: the checkpoint's signature is not valid for this gateway's key",
                        c.seq
                    ));
                }
                checkpoints += 1;
            }
        }
        total += n;
        after = last_seq;
        prev = (after, head);
    }
    Ok(VerifyReport {
        records: total,
        checkpoints,
        head: (total > 0).then(|| hex::encode(prev.1)),
    })
}
