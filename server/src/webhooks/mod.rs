//! Audit events pushed to SIEMs: one delivery task per `[[webhooks]]` entry drains that
//! webhook's rows of the durable outbox (filled by the audit writer in the same transaction as
//! the events), so delivery is at least once and never on the data path.
//!
//! Each POST carries `X-Hoop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`;
//! receivers recompute it and refuse a `t` far from their clock (replay protection). A failed
//! attempt is retried after an exponential backoff with jitter; after `max_attempts` the delivery
//! is a dead letter (`hoopd webhooks status`).
//!
//! A webhook's URL is treated as a secret (a Slack or Teams incoming webhook is a bearer
//! credential in full): logs, stored delivery errors and `hoopd webhooks status` name the
//! webhook and show at most the URL's scheme and host. reqwest puts the URL in its errors, so
//! they are stripped of it (`without_url`) before anything is recorded.

use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use hoop_shared::audit::AuditEvent;
use rand::Rng;
use serde_json::json;

use crate::config::{Secret, WebhookConfig};
use crate::store::{OutboxItem, Store};

/// The body's `schema`.
pub const SCHEMA: &str = "hoop.event/1";
/// How often an idle delivery task looks for due rows.
const POLL: Duration = Duration::from_millis(250);
/// Rows taken per look.
const TAKE: u32 = 100;

/// The JSON body of one event (also one line of the JSON-lines file sink). `None` when the
/// bytes are not an event (never for records this gateway wrote).
pub fn envelope_json(seq: i64, bytes: &[u8]) -> Option<Vec<u8>> {
    let ev: AuditEvent = serde_json::from_slice(bytes).ok()?;
    serde_json::to_vec(&json!({
        "schema": SCHEMA,
        "seq": seq,
        "kind": ev.kind,
        "time": ev.time,
        "event": ev,
    }))
    .ok()
}

/// `t=<t>,v1=<hex>` for `body` sent at unix second `t`.
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(hmac_sha256(secret, t, body)))
}

fn hmac_sha256(secret: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Delay before attempt `attempts + 1`: `backoff * 2^attempts`, capped, times a random factor
/// in [0.5, 1.5) so many failed deliveries do not retry in lockstep.
pub fn retry_delay(cfg: &WebhookConfig, attempts: u32, jitter: f64) -> Duration {
    let exp = cfg
        .backoff
        .saturating_mul(2u32.saturating_pow(attempts.min(30)))
        .min(cfg.max_backoff);
    exp.mul_f64(jitter.clamp(0.5, 1.5))
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// Starts one delivery task per webhook. Fails when a secret cannot be read or a client built.
pub fn start(store: Arc<dyn Store>, webhooks: &[WebhookConfig]) -> anyhow::Result<()> {
    for cfg in webhooks {
        let secret = cfg
            .secret
            .resolve()
            .map_err(|e| anyhow::anyhow!("webhook {}: secret: {e}", cfg.name()))?;
        if cfg.name.is_none() {
            tracing::info!(webhook = %cfg.name(), url = %cfg.shown_url(), "webhook without a name: named by its host and a hash of its URL");
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .user_agent(concat!("hoopd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                anyhow::anyhow!("webhook {}: cannot build the HTTP client: {e}", cfg.name())
            })?;
        tokio::spawn(deliver_loop(store.clone(), cfg.clone(), secret, http));
    }
    Ok(())
}

async fn deliver_loop(
    store: Arc<dyn Store>,
    cfg: WebhookConfig,
    secret: Secret,
    http: reqwest::Client,
) {
    let name = cfg.name();
    if cfg.name.is_none() {
        // Deliveries queued by an older hoopd are stored under the URL itself.
        match store.outbox_rename(&cfg.url, &name).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(webhook = %name, moved = n, "deliveries stored under the webhook's URL now use its name")
            }
            Err(e) => {
                tracing::warn!(webhook = %name, error = %e, "cannot rename the webhook's stored deliveries")
            }
        }
    }
    loop {
        let due = match store.outbox_due(&name, now_ms(), TAKE).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(webhook = %name, error = %e, "cannot read the webhook outbox");
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
        };
        if due.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        for item in due {
            let outcome = attempt(store.as_ref(), &cfg, &secret, &http, &item).await;
            let now = now_ms();
            let r = match outcome {
                Ok(()) => store.outbox_delivered(item.id, now).await,
                Err(why) => {
                    let attempts = item.attempts.saturating_add(1);
                    let dead = attempts >= cfg.max_attempts;
                    let jitter = rand::rng().random_range(0.5..1.5);
                    let delay = retry_delay(&cfg, item.attempts, jitter);
                    let next =
                        now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    if dead {
                        tracing::error!(webhook = %name, seq = item.audit_seq, attempts, error = %why, "webhook delivery is a dead letter");
                    } else {
                        tracing::info!(webhook = %name, seq = item.audit_seq, attempts, error = %why, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed; will retry");
                    }
                    store.outbox_failed(item.id, &why, next, dead, now).await
                }
            };
            if let Err(e) = r {
                tracing::warn!(webhook = %name, error = %e, "cannot update the webhook outbox");
            }
        }
    }
}

/// One POST. The error is a short reason for the outbox (never the secret).
async fn attempt(
    store: &dyn Store,
    cfg: &WebhookConfig,
    secret: &Secret,
    http: &reqwest::Client,
    item: &OutboxItem,
) -> Result<(), String> {
    let rec = store
        .audit_get(item.audit_seq)
        .await
        .map_err(|e| format!("cannot read audit record {}: {e}", item.audit_seq))?
        .ok_or_else(|| format!("audit record {} does not exist", item.audit_seq))?;
    if rec.purged {
        return Err(format!(
            "audit record {} was purged by retention before delivery",
            item.audit_seq
        ));
    }
    let body = envelope_json(rec.seq, &rec.bytes)
        .ok_or_else(|| format!("audit record {} is not an event", rec.seq))?;
    let kind = serde_json::from_slice::<AuditEvent>(&rec.bytes)
        .map(|e| e.kind)
        .unwrap_or_default();
    let t = crate::util::now_unix();
    let resp = http
        .post(&cfg.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            "X-Hoop-Signature",
            signature_header(secret.expose().as_bytes(), t, &body),
        )
        .header("X-Hoop-Event", kind)
        .header("X-Hoop-Delivery", format!("{}:{}", cfg.name(), rec.seq))
        .body(body)
        .send()
        .await
        // reqwest's errors name the URL, which may be the webhook's credential.
        .map_err(|e| {
            format!(
                "request to {} failed: {}",
                cfg.shown_url(),
                crate::auth::jwt::error_chain(&e.without_url())
            )
        })?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg() -> WebhookConfig {
        crate::config::Config::parse(
            "[[webhooks]]\nurl = \"http://127.0.0.1:9/x\"\nsecret = { env = \"X\" }\nbackoff = \"1s\"\nmax_backoff = \"60s\"\n",
        )
        .unwrap()
        .webhooks
        .remove(0)
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = cfg();
        assert_eq!(retry_delay(&c, 0, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(&c, 3, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(&c, 20, 1.0), Duration::from_secs(60));
        assert_eq!(retry_delay(&c, 3, 0.5), Duration::from_secs(4));
    }

    #[test]
    fn signature_is_hmac_over_timestamp_and_body() {
        // RFC 4231 style check against an independent computation.
        let h = signature_header(b"key", 1700000000, b"{}");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"1700000000.{}");
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(h, format!("t=1700000000,v1={want}"));
    }

    #[test]
    fn filters() {
        use crate::audit::filter_matches;
        assert!(filter_matches("review.*", "review.approved"));
        assert!(!filter_matches("review.*", "reviewx.approved"));
        assert!(filter_matches("login.failed", "auth.login_failed"));
        assert!(filter_matches("*", "anything"));
        assert!(!filter_matches("session.started", "session.ended"));
    }
}
