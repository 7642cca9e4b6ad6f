//! Configuration of the evidence features: `[retention]`, `[[webhooks]]` and `[audit]`.
//! Kept apart from `config.rs` so it reads as one idea.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::SecretRef;

/// `[retention]`: how long payloads are kept. Absent keys keep forever.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Statement logs of sessions that ended longer ago than this are deleted (the session
    /// rows, with their counters, stay).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub recordings: Option<Duration>,
    /// Audit records older than this become tombstones: their bytes are removed, their hashes
    /// stay, so the chain and old exports still verify.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub audit: Option<Duration>,
    /// How often the gateway runs the purge.
    #[serde(
        default = "default_purge_interval",
        deserialize_with = "super::de_duration"
    )]
    pub interval: Duration,
}

fn default_purge_interval() -> Duration {
    Duration::from_secs(3600)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    super::de_duration(d).map(Some)
}

/// `[[webhooks]]`: audit events pushed to a SIEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Stable name (the outbox keys deliveries by it; logs and `hoopd webhooks status` show
    /// it). Default: the URL's host and a short hash of the whole URL, never the URL itself.
    #[serde(default)]
    pub name: Option<String>,
    /// Where events are POSTed (https, or http to a loopback address). Treated as a secret:
    /// for chat webhooks (Slack, Teams) the URL is the credential, so logs and errors show
    /// only its scheme and host.
    pub url: String,
    /// HMAC-SHA256 key of the `X-Hoop-Signature` header; from `env` or `file`, never inline.
    pub secret: SecretRef,
    /// Event kinds to send: exact (`session.started`), `review.*`, `*`; empty sends everything.
    #[serde(default)]
    pub events: Vec<String>,
    /// Attempts before a delivery becomes a dead letter.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Time limit of one attempt.
    #[serde(
        default = "default_webhook_timeout",
        deserialize_with = "super::de_duration"
    )]
    pub timeout: Duration,
    /// First retry delay; doubled per attempt (with jitter) up to `max_backoff`.
    #[serde(default = "default_backoff", deserialize_with = "super::de_duration")]
    pub backoff: Duration,
    /// Longest retry delay.
    #[serde(
        default = "default_max_backoff",
        deserialize_with = "super::de_duration"
    )]
    pub max_backoff: Duration,
}

impl WebhookConfig {
    /// The name deliveries are stored under: `name`, else `<host[:port]>-<8 hex of SHA-256 of
    /// the URL>` (two webhooks to one host stay apart; 32 bits of a hash give nothing of a
    /// secret path away).
    pub fn name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => {
                let host = url::Url::parse(&self.url)
                    .ok()
                    .and_then(|u| {
                        let h = u.host_str()?.to_string();
                        Some(match u.port() {
                            Some(p) => format!("{h}:{p}"),
                            None => h,
                        })
                    })
                    .unwrap_or_else(|| "webhook".into());
                let digest = crate::util::sha256_hex(self.url.as_bytes());
                format!("{host}-{}", digest.get(..8).unwrap_or_default())
            }
        }
    }

    /// The URL as logs and errors show it: scheme and host only.
    pub fn shown_url(&self) -> String {
        crate::util::url_origin(&self.url)
    }
}

fn default_max_attempts() -> u32 {
    10
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(600)
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditSinkConfig {
    /// Every committed audit event is appended to this file as one JSON line (the webhook
    /// body), for log shippers. Relative to the config file.
    #[serde(default)]
    pub jsonl_file: Option<PathBuf>,
}

/// Problems of the evidence sections, each naming its key.
pub fn validate(
    webhooks: &[WebhookConfig],
    retention: &RetentionConfig,
    problems: &mut Vec<String>,
) {
    let mut names = std::collections::HashSet::new();
    for (i, w) in webhooks.iter().enumerate() {
        let at = format!("webhooks[{i}]");
        match url::Url::parse(&w.url) {
            Ok(u) => {
                let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
                    problems.push(format!(
                        "`{at}.url` must be https (plain http only to a loopback address), got {}",
                        w.shown_url()
                    ));
                }
            }
            // Not echoed: a webhook URL may be a credential.
            Err(e) => problems.push(format!("`{at}.url` is not a URL ({e})")),
        }
        if !names.insert(w.name()) {
            problems.push(format!(
                "`{at}.name`: two webhooks are named {:?}",
                w.name()
            ));
        }
        if let Err(e) = w.secret.resolve() {
            problems.push(format!("`{at}.secret`: {e}"));
        }
        if w.max_attempts == 0 {
            problems.push(format!("`{at}.max_attempts` must be at least 1"));
        }
    }
    for (key, d) in [
        ("recordings", retention.recordings),
        ("audit", retention.audit),
    ] {
        if d.is_some_and(|d| d < Duration::from_secs(3600)) {
            problems.push(format!(
                "`retention.{key}` must be at least 1h (it is a retention period, not a timeout)"
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::config::Config;

    #[test]
    fn retention_and_webhooks_parse() {
        let c = Config::parse(
            r#"
[retention]
recordings = "90d"
audit = "1y"

[audit]
jsonl_file = "/var/log/hoop/audit.jsonl"

[[webhooks]]
url = "https://siem.example.com/hoop"
secret = { env = "HOOP_TEST_WEBHOOK_SECRET_UNSET" }
events = ["session.*", "statement.blocked"]
"#,
        )
        .unwrap();
        assert_eq!(
            c.retention.recordings,
            Some(std::time::Duration::from_secs(90 * 86_400))
        );
        assert!(c.retention.audit.unwrap().as_secs() >= 365 * 86_400);
        // The default name shows the host and a hash, never the path.
        let name = c.webhooks[0].name();
        assert!(
            name.starts_with("siem.example.com-") && name.len() == "siem.example.com-".len() + 8,
            "{name}"
        );
        assert!(!name.contains("/hoop"));
        assert_eq!(c.webhooks[0].max_attempts, 10);
        // The secret's variable is not set: `check` says so, naming the key.
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.contains("webhooks[0].secret")),
            "{problems:?}"
        );
    }

    #[test]
    fn bad_evidence_settings_are_named() {
        let err = Config::parse("[retention]\nrecordings = \"90d\"\nkeep = true\n").unwrap_err();
        assert!(err.contains("retention"), "{err}");
        let err = Config::parse(
            "[[webhooks]]\nurl = \"https://x\"\nsecret = { env = \"X\" }\nretries = 3\n",
        )
        .unwrap_err();
        assert!(err.contains("webhooks"), "{err}");
        let c = Config::parse(
            "[retention]\naudit = \"5m\"\n[[webhooks]]\nurl = \"http://siem.example.com/x\"\nsecret = { env = \"PATH\" }\n",
        )
        .unwrap();
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.contains("retention.audit")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("webhooks[0].url") && p.contains("https")),
            "{problems:?}"
        );
    }
}
