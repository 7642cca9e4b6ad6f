//! The audit log writer: events go to a bounded queue and one task appends them to the store's
//! hash chain in batches (group commit), so callers never wait on a disk write of their own.
//!
//! `record` waits until its event is durable (state-changing API calls); `record_nowait` only
//! waits for queue space (the data path). Both fail when the writer has died, and callers are
//! expected to fail closed on that error.

use std::sync::Arc;

use hoop_shared::audit::{AuditEvent, GENESIS, verify_chain};
use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError};

/// Events waiting beyond this make producers wait (back-pressure instead of unbounded memory).
const QUEUE: usize = 4096;
/// At most this many events per transaction.
const BATCH: usize = 512;

/// The audit log could not take the event; the caller must fail closed.
#[derive(Debug, thiserror::Error)]
#[error("the audit log is unavailable: {0}")]
pub struct AuditError(String);

struct Pending {
    bytes: Vec<u8>,
    done: Option<oneshot::Sender<Result<i64, String>>>,
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer task over `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, rx));
        Self { tx }
    }

    /// Appends an event and waits until it is committed. Returns its sequence number.
    pub async fn record(&self, event: AuditEvent) -> Result<i64, AuditError> {
        let bytes = encode(&event)?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
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
            .send(Pending { bytes, done: None })
            .await
            .map_err(|_| AuditError("writer stopped".into()))
    }
}

fn encode(event: &AuditEvent) -> Result<Vec<u8>, AuditError> {
    serde_json::to_vec(event).map_err(|e| AuditError(format!("cannot encode event: {e}")))
}

async fn writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let bytes: Vec<Vec<u8>> = batch
            .iter_mut()
            .map(|p| std::mem::take(&mut p.bytes))
            .collect();
        let result = append_with_retry(store.as_ref(), &bytes).await;
        match result {
            Ok(first) => {
                for (p, seq) in batch.drain(..).zip(first..) {
                    if let Some(done) = p.done {
                        let _ = done.send(Ok(seq));
                    }
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
}

async fn append_with_retry(store: &dyn Store, bytes: &[Vec<u8>]) -> Result<i64, StoreError> {
    // A busy database (another process holding the write lock) is worth a few retries.
    let mut delay = std::time::Duration::from_millis(20);
    for _ in 0..5 {
        match store.audit_append(bytes).await {
            Ok(r) => return Ok(r),
            Err(StoreError::Database(e)) if e.to_string().contains("locked") => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    store.audit_append(bytes).await
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
    /// Hash of the last record (hex), if any.
    pub head: Option<String>,
}

/// Re-hashes every stored record in order; the error names the first bad record.
pub async fn verify_store(store: &dyn Store) -> Result<VerifyReport, String> {
    let mut after = 0i64;
    let mut prev = (0i64, GENESIS);
    let mut total = 0u64;
    loop {
        let page = store
            .audit_range(after, 10_000)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let (n, head) = verify_chain(prev, &page).map_err(|e| e.to_string())?;
        total += n;
        prev = (after, head);
    }
    Ok(VerifyReport {
        records: total,
        head: (total > 0).then(|| hex::encode(prev.1)),
    })
}
