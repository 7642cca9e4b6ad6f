//! The gateway's configuration file (`hoopd.toml`).
//!
//! Every struct denies unknown keys, and errors name the dotted path of the offending key, so a
//! typo fails loudly at start-up (or in `hoopd check`) instead of silently disabling a control.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[path = "config_evidence.rs"]
mod evidence;
pub use evidence::{AuditSinkConfig, RetentionConfig, WebhookConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Network and storage settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Who may log in and how tokens are checked.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Targets users reach through the gateway.
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    /// Named guardrail rule sets, attached to connections by name.
    #[serde(default)]
    pub guardrails: Vec<crate::policy::guardrails::GuardrailConfig>,
    /// Named masking rule sets, attached to connections by name.
    #[serde(default)]
    pub masking: Vec<crate::policy::masking::MaskingConfig>,
    /// Named shell-command rule sets for `ssh` connections (exec commands, scp), attached by
    /// name through a connection's `guardrails`.
    #[serde(default)]
    pub shell_guardrails: Vec<crate::policy::shell::ShellGuardrailConfig>,
    /// How long recordings and audit payloads are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Audit events pushed to SIEMs.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Audit sinks besides the store.
    #[serde(default)]
    pub audit: AuditSinkConfig,
    /// Session recording.
    #[serde(default)]
    pub recording: RecordingConfig,
}

/// `[recording]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// What a session does when its records cannot be written: `end-session` (default: fail
    /// closed, nothing runs unrecorded) or `continue` (fail open: sessions go on, the gap is
    /// logged and the session's end reason says its recording is incomplete).
    #[serde(default)]
    pub on_failure: OnRecordingFailure,
}

/// `[recording] on_failure`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRecordingFailure {
    /// Refuse new sessions and end live ones.
    #[default]
    EndSession,
    /// Keep sessions running unrecorded.
    Continue,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the one HTTPS port (API, built-in issuer and tunnels).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL clients use to reach this gateway. It is the built-in issuer's `iss`. Default:
    /// `https://<listen>` (with `localhost` when listening on an unspecified address).
    #[serde(default)]
    pub public_url: Option<String>,
    /// SQLite database, keys, recordings, and the self-signed certificate when none is given.
    /// Relative paths are resolved against the config file's directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// PEM certificate chain. Absent: a self-signed certificate is created in the data dir.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            data_dir: default_data_dir(),
            tls_cert: None,
            tls_key: None,
            log_format: default_log_format(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_log_format() -> String {
    "text".into()
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// External OIDC issuer URL. Absent: the gateway is its own issuer (local users).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The audience tokens must carry.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Further accepted audiences (for example the client id, when the IdP puts it in `aud`).
    #[serde(default)]
    pub extra_audiences: Vec<String>,
    /// The public client id the CLI uses in the device flow.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Scopes the CLI requests.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Claim holding the user's groups; a dotted path reaches into objects (`realm_access.roles`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Members of these groups are gateway administrators.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Members read all sessions and the audit log; they change nothing.
    #[serde(default)]
    pub auditors: Vec<String>,
    /// Accepted JWS algorithms. `none` and HMAC algorithms are refused whatever is listed.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`.
    #[serde(default = "default_leeway", deserialize_with = "de_duration")]
    pub leeway: Duration,
    /// The JWKS is fetched again on an unknown `kid` at most this often.
    #[serde(default = "default_jwks_refetch", deserialize_with = "de_duration")]
    pub jwks_refetch_interval: Duration,
    /// PEM bundle trusted for the IdP's HTTPS (in addition to the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Lifetime of access tokens minted by the built-in issuer.
    #[serde(default = "default_access_ttl", deserialize_with = "de_duration")]
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens minted by the built-in issuer.
    #[serde(default = "default_refresh_ttl", deserialize_with = "de_duration")]
    pub refresh_token_ttl: Duration,
    /// How often the CLI may poll the built-in issuer during a device login.
    #[serde(default = "default_poll_interval", deserialize_with = "de_duration")]
    pub device_poll_interval: Duration,
    /// External issuers trusted for machines (`[[auth.workload]]`): a CI provider's OIDC token
    /// is accepted as is, so a job needs no stored secret.
    #[serde(default)]
    pub workload: Vec<WorkloadIssuer>,
}

/// `[[auth.workload]]`: an issuer whose tokens identify machines (a CI provider's OIDC tokens).
/// Its tokens are verified like user tokens (discovery, JWKS, algorithm allow-list, `iss`,
/// `aud`, `exp`, `nbf`); the groups come only from `rules`, never from the token's own claims.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuer {
    /// Short name; identities are `workload:<name>:<sub>`.
    pub name: String,
    /// The issuer URL (`iss`), exactly as in its tokens. Must differ from `[auth].issuer`.
    pub issuer: String,
    /// The audience its tokens must carry.
    pub audience: String,
    /// Claim → groups rules; a token matching none is refused.
    pub rules: Vec<WorkloadRule>,
}

/// One `[[auth.workload.rules]]` entry: when `claim` (default `sub`) equals `value` — or starts
/// with it, when `value` ends in `*` — the token's identity gets `groups`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRule {
    /// The claim compared (a string claim; dotted paths reach into objects).
    #[serde(default = "default_workload_claim")]
    pub claim: String,
    /// The value it must have; a trailing `*` matches any suffix.
    pub value: String,
    /// Groups given to a matching token.
    pub groups: Vec<String>,
}

fn default_workload_claim() -> String {
    "sub".into()
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: default_audience(),
            extra_audiences: Vec::new(),
            client_id: default_client_id(),
            scopes: default_scopes(),
            groups_claim: default_groups_claim(),
            admins: Vec::new(),
            auditors: Vec::new(),
            algorithms: None,
            leeway: default_leeway(),
            jwks_refetch_interval: default_jwks_refetch(),
            ca_file: None,
            access_token_ttl: default_access_ttl(),
            refresh_token_ttl: default_refresh_ttl(),
            device_poll_interval: default_poll_interval(),
            workload: Vec::new(),
        }
    }
}

fn default_audience() -> String {
    "hoop".into()
}
fn default_client_id() -> String {
    "hoop-cli".into()
}
fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "groups", "offline_access"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_refetch() -> Duration {
    Duration::from_secs(30)
}
fn default_access_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_refresh_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// `[[connections]]`: a target reached through the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The name users type.
    pub name: String,
    /// Protocol: `postgres` or `ssh`.
    #[serde(rename = "type")]
    pub kind: ConnectionKind,
    /// Free text shown in `hoop connections`.
    #[serde(default)]
    pub description: Option<String>,
    /// `host:port` of the target.
    pub address: String,
    /// Database (PostgreSQL).
    #[serde(default)]
    pub database: Option<String>,
    /// User the gateway logs in as on the target.
    #[serde(default)]
    pub user: Option<String>,
    /// The target's password, from the environment or a file; never echoed.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Groups allowed to use this connection.
    #[serde(default)]
    pub allow: Vec<String>,
    /// TLS to the target: `disable` (default), `require` (encrypted, identity not checked, like
    /// libpq's sslmode=require) or `verify-full` (checked against `tls_ca_file` and the host).
    #[serde(default)]
    pub tls: UpstreamTls,
    /// CA bundle for `tls = "verify-full"`.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Guardrail rule sets applied to every statement (names from `[[guardrails]]` or the
    /// built-ins `no-ddl`, `no-unbounded-writes`, `read-only`).
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// Masking rule sets applied to results (names from `[[masking]]` or the built-in `pii`).
    #[serde(default)]
    pub masking: Vec<String>,
    /// Just-in-time reviews: access windows and statements that need a second person.
    #[serde(default)]
    pub review: Option<ReviewConfig>,
    /// SSH: the private key the gateway logs in with (OpenSSH or PEM format), from a file or
    /// the environment; never echoed. Give this or `password`.
    #[serde(default)]
    pub private_key: Option<SecretRef>,
    /// SSH: the target's host key, pinned: a known_hosts line (`host ssh-ed25519 AAAA...`), a
    /// bare public key (`ssh-ed25519 AAAA...`) or a fingerprint (`SHA256:...`). Required: the
    /// gateway refuses a target whose key is not pinned or differs from the pin.
    #[serde(default)]
    pub host_key: Option<String>,
    /// SSH: environment variables a client may set (`env` requests); a trailing `*` matches a
    /// prefix. Default `LANG`, `LC_*`.
    #[serde(default)]
    pub env_allow: Option<Vec<String>>,
    /// SSH: allow local port forwarding (`ssh -L`, direct-tcpip channels). Default off.
    #[serde(default)]
    pub allow_port_forwarding: bool,
    /// SSH: also record terminal input (keystrokes) in the asciicast recording. Default off,
    /// since passwords typed at prompts would be stored.
    #[serde(default)]
    pub record_input: bool,
}

/// `review = { ... }` on a connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// Connecting needs an approved access grant (for at most `max_duration`).
    #[serde(default)]
    pub access: bool,
    /// Statements held for approval: classes `write`, `ddl`, `all`, or guardrail rule names
    /// whose blocks become reviews.
    #[serde(default)]
    pub statements: Vec<String>,
    /// Groups whose members may approve. Nobody approves their own request.
    pub approvers: Vec<String>,
    /// Approvals needed.
    #[serde(default = "default_min_approvals")]
    pub min_approvals: u32,
    /// Longest access window a request may ask for.
    #[serde(default = "default_max_duration", deserialize_with = "de_duration")]
    pub max_duration: Duration,
    /// A pending request expires after this.
    #[serde(default = "default_pending_expiry", deserialize_with = "de_duration")]
    pub pending_expiry: Duration,
    /// How long a held statement waits for a decision before it fails.
    #[serde(default = "default_statement_wait", deserialize_with = "de_duration")]
    pub statement_timeout: Duration,
}

fn default_min_approvals() -> u32 {
    1
}
fn default_max_duration() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_pending_expiry() -> Duration {
    Duration::from_secs(3600)
}
fn default_statement_wait() -> Duration {
    Duration::from_secs(300)
}

/// TLS from the gateway to a target.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// Encrypted; the certificate is not checked.
    Require,
    /// Encrypted and verified against `tls_ca_file` and the host name.
    VerifyFull,
}

/// Supported target protocols.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    /// PostgreSQL wire protocol.
    Postgres,
    /// SSH.
    Ssh,
}

impl ConnectionKind {
    /// The name used in the API and config.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Postgres => "postgres",
            ConnectionKind::Ssh => "ssh",
        }
    }
}

/// Where a secret comes from: `{ env = "VAR" }` or `{ file = "path" }`. Inline secrets are not
/// accepted, so a config file can be shared and committed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// File holding the secret (trailing newline trimmed).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// A secret's value. `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it to the target.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl SecretRef {
    /// Reads the secret. The error names the source, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(v) => Ok(Secret(v.trim_end_matches(['\r', '\n']).to_string())),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
            (Some(_), Some(_)) => Err("give either `env` or `file`, not both".into()),
            (None, None) => Err("give `env = \"VAR\"` or `file = \"path\"`".into()),
        }
    }
}

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or a key is unknown or has the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde or the TOML parser said, with the dotted key path.
        message: String,
    },
    /// The file parsed but is not usable.
    #[error("{path}: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, each naming its key.
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads and parses a config file. Relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses TOML text. The error names the dotted path of the bad key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // toml's own message carries a source excerpt; the first line is the sentence.
            let msg = inner
                .message()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            if path.is_empty() || path == "." {
                msg
            } else {
                format!("at `{path}`: {msg}")
            }
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.server.data_dir);
        if let Some(p) = self.server.tls_cert.as_mut() {
            abs(p);
        }
        if let Some(p) = self.server.tls_key.as_mut() {
            abs(p);
        }
        if let Some(p) = self.auth.ca_file.as_mut() {
            abs(p);
        }
        for c in &mut self.connections {
            if let Some(p) = c.tls_ca_file.as_mut() {
                abs(p);
            }
        }
        for c in &mut self.connections {
            if let Some(SecretRef { file: Some(p), .. }) = c.password.as_mut() {
                abs(p);
            }
            if let Some(SecretRef { file: Some(p), .. }) = c.private_key.as_mut() {
                abs(p);
            }
        }
        for w in &mut self.webhooks {
            if let Some(p) = w.secret.file.as_mut() {
                abs(p);
            }
        }
        if let Some(p) = self.audit.jsonl_file.as_mut() {
            abs(p);
        }
    }

    /// Checks what parsing cannot: duplicates, missing fields per kind, unreadable secrets.
    /// Returns every problem, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        evidence::validate(&self.webhooks, &self.retention, &mut problems);
        let mut seen = std::collections::HashSet::new();
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            problems.push("`server.tls_cert` and `server.tls_key` go together".to_string());
        }
        if let Some(url) = &self.server.public_url
            && !url.starts_with("https://")
        {
            {
                problems.push(format!(
                    "`server.public_url` must be an https URL, got {url:?}"
                ));
            }
        }
        if let Some(iss) = &self.auth.issuer {
            match url::Url::parse(iss) {
                Err(_) => problems.push(format!("`auth.issuer` is not a URL: {iss:?}")),
                // Not echoed: the issuer is logged and audited, a password in it would be too.
                Ok(u) if !u.username().is_empty() || u.password().is_some() => problems.push(
                    "`auth.issuer` must not contain a user name or password; it is the issuer as the IdP's tokens name it".into(),
                ),
                Ok(_) => {}
            }
        }
        let mut workload_names = std::collections::HashSet::new();
        for (i, w) in self.auth.workload.iter().enumerate() {
            let at = format!("`auth.workload[{i}]`");
            if w.name.trim().is_empty() || !workload_names.insert(w.name.as_str()) {
                problems.push(format!("{at}: `name` must be non-empty and unique"));
            }
            match url::Url::parse(&w.issuer) {
                Err(_) => problems.push(format!("{at}: `issuer` is not a URL: {:?}", w.issuer)),
                Ok(u) if !u.username().is_empty() || u.password().is_some() => problems.push(
                    format!("{at}: `issuer` must not contain a user name or password"),
                ),
                Ok(_) => {}
            }
            if self.auth.issuer.as_deref() == Some(w.issuer.as_str()) {
                problems.push(format!(
                    "{at}: `issuer` is `auth.issuer` too; a workload issuer must be another issuer"
                ));
            }
            if w.audience.trim().is_empty() {
                problems.push(format!("{at}: `audience` is required"));
            }
            if w.rules.is_empty() {
                problems.push(format!(
                    "{at}: give at least one `rules` entry (claim, value, groups); without one no token is accepted"
                ));
            }
            for (j, r) in w.rules.iter().enumerate() {
                if r.value.is_empty() || r.value == "*" {
                    problems.push(format!(
                        "{at}.rules[{j}]: `value` must name a value (a bare `*` would accept every token of the issuer)"
                    ));
                }
                if r.groups.is_empty() {
                    problems.push(format!("{at}.rules[{j}]: `groups` is empty"));
                }
            }
        }
        if let Some(algs) = &self.auth.algorithms {
            for (i, a) in algs.iter().enumerate() {
                if crate::auth::parse_algorithm(a).is_none() {
                    problems.push(format!(
                        "`auth.algorithms[{i}]`: {a:?} is not an accepted signature algorithm \
                         (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                    ));
                }
            }
        }
        for (i, c) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}]");
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
            {
                problems.push(format!(
                    "`{at}.name` {:?}: use letters, digits, `-`, `_` and `.`",
                    c.name
                ));
            }
            if !seen.insert(c.name.clone()) {
                problems.push(format!("`{at}.name`: {:?} is declared twice", c.name));
            }
            if c.allow.is_empty() {
                problems.push(format!(
                    "`{at}.allow`: no group may use {:?}; list the groups that may",
                    c.name
                ));
            }
            if c.kind == ConnectionKind::Postgres && c.database.is_none() {
                problems.push(format!(
                    "`{at}.database` is required for a postgres connection"
                ));
            }
            if c.user.is_none() {
                problems.push(format!("`{at}.user` is required"));
            }
            // Not echoed: a URL with a user and password in it is a credential.
            if c.address.contains('@') || c.address.contains("://") {
                problems.push(format!(
                    "`{at}.address` must be host:port, not a URL or user@host; the gateway's login goes in `user` and `password`"
                ));
            }
            if let Some(r) = &c.review {
                if r.approvers.is_empty() {
                    problems.push(format!(
                        "`{at}.review.approvers`: name the groups that may approve"
                    ));
                }
                if r.min_approvals == 0 {
                    problems.push(format!("`{at}.review.min_approvals` must be at least 1"));
                }
                for st in &r.statements {
                    if c.kind == ConnectionKind::Ssh {
                        // Shell commands have no write/ddl classes.
                        if st != "all" && !c.guardrails.contains(st) {
                            problems.push(format!(
                                "`{at}.review.statements`: {st:?} is neither `all` nor one of this connection's shell guardrails (on ssh connections, `write` and `ddl` do not apply)"
                            ));
                        }
                        continue;
                    }
                    let known_class = matches!(st.as_str(), "write" | "ddl" | "all");
                    if !known_class && !c.guardrails.contains(st) {
                        problems.push(format!(
                            "`{at}.review.statements`: {st:?} is neither a class (write, ddl, all) nor one of this connection's guardrails"
                        ));
                    }
                }
            }
            if let Some(secret) = &c.password
                && let Err(e) = secret.resolve()
            {
                {
                    problems.push(format!("`{at}.password`: {e}"));
                }
            }
            if c.kind == ConnectionKind::Ssh {
                problems.extend(crate::proxy::ssh::validate_connection(c, &at));
            } else {
                for (key, set) in [
                    ("private_key", c.private_key.is_some()),
                    ("host_key", c.host_key.is_some()),
                    ("env_allow", c.env_allow.is_some()),
                    ("allow_port_forwarding", c.allow_port_forwarding),
                    ("record_input", c.record_input),
                ] {
                    if set {
                        problems.push(format!("`{at}.{key}` applies only to ssh connections"));
                    }
                }
            }
        }
        if let Err(e) = crate::policy::compile_all(self) {
            problems.push(e);
        }
        problems
    }

    /// The URL clients reach the gateway at, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let addr = self.server.listen;
                if addr.ip().is_unspecified() {
                    format!("https://localhost:{}", addr.port())
                } else {
                    format!("https://{addr}")
                }
            }
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration like \"30s\" or \"15m\": {e}"
        ))
    })
}

/// The starter configuration `hoopd dev` writes: every key commented.
pub const STARTER: &str = include_str!("starter.toml");

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_dotted_path() {
        let err = Config::parse(
            "[[connections]]\nname='a'\ntype='postgres'\naddress='x:1'\npasword={env='X'}\n",
        )
        .unwrap_err();
        assert!(err.contains("connections[0]"), "{err}");
        assert!(err.contains("pasword"), "{err}");
        let err = Config::parse("[auth]\nisuer='x'\n").unwrap_err();
        assert!(err.contains("auth"), "{err}");
        assert!(err.contains("isuer"), "{err}");
    }

    #[test]
    fn workload_issuers_are_checked() {
        let ok = Config::parse(
            "[[auth.workload]]\nname='gh'\nissuer='https://ci.example.com'\naudience='hoop'\nrules=[{value='repo:acme/*', groups=['ci']}]\n",
        )
        .unwrap();
        assert!(ok.validate().is_empty(), "{:?}", ok.validate());
        assert_eq!(ok.auth.workload[0].rules[0].claim, "sub");
        let bad = Config::parse(
            "[auth]\nissuer='https://idp.example.com'\n[[auth.workload]]\nname='gh'\nissuer='https://idp.example.com'\naudience=''\nrules=[{value='*', groups=[]}]\n[[auth.workload]]\nname='gh'\nissuer='nope'\naudience='a'\nrules=[]\n",
        )
        .unwrap();
        let p = bad.validate().join("\n");
        for needle in [
            "is `auth.issuer` too",
            "`audience` is required",
            "a bare `*`",
            "`groups` is empty",
            "unique",
            "is not a URL",
            "at least one `rules` entry",
        ] {
            assert!(p.contains(needle), "{needle}: {p}");
        }
        let err = Config::parse(
            "[[auth.workload]]\nname='gh'\nissuer='https://x'\naudience='a'\nrules=[{value='v', groups=['g'], grups=[]}]\n",
        )
        .unwrap_err();
        assert!(err.contains("grups"), "{err}");
    }

    #[test]
    fn starter_config_parses_and_validates() {
        let c = Config::parse(STARTER).unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn missing_secret_is_named() {
        let c = Config::parse(
            "[[connections]]\nname='db'\ntype='postgres'\naddress='x:1'\ndatabase='d'\nuser='u'\nallow=['a']\npassword={env='HOOP_TEST_SURELY_UNSET_VAR'}\n",
        )
        .unwrap();
        let p = c.validate();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("connections[0].password"));
        assert!(p[0].contains("HOOP_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn an_address_with_credentials_is_refused_without_echoing_them() {
        for (kind, address) in [
            ("postgres", "postgres://app:hunter2@db:5432/shop"),
            ("ssh", "deploy:hunter2@web-1:22"),
        ] {
            let c = Config::parse(&format!(
                "[[connections]]\nname='x'\ntype='{kind}'\naddress='{address}'\ndatabase='d'\nuser='u'\nallow=['a']\n"
            ))
            .unwrap();
            let p = c.validate();
            assert!(
                p.iter().any(|p| p.contains("connections[0].address")),
                "{p:?}"
            );
            assert!(!p.iter().any(|p| p.contains("hunter2")), "{p:?}");
        }
    }

    #[test]
    fn bad_duration_is_explained() {
        let err = Config::parse("[auth]\nleeway='soon'\n").unwrap_err();
        assert!(err.contains("auth.leeway"), "{err}");
    }

    fn ssh(extra: &str) -> Vec<String> {
        Config::parse(&format!(
            "[[connections]]\nname='web'\ntype='ssh'\naddress='127.0.0.1:22'\nuser='deploy'\nallow=['eng']\n{extra}\n"
        ))
        .unwrap()
        .validate()
    }

    #[test]
    fn ssh_reviews_take_all_or_shell_rule_sets() {
        let base = "password={env='PATH'}\nhost_key='SHA256:abc'\nguardrails=['no-destructive']\n";
        let p = ssh(&format!(
            "{base}review={{statements=['all','no-destructive'],approvers=['sre']}}"
        ));
        assert!(p.is_empty(), "{p:?}");
        let p = ssh(&format!(
            "{base}review={{statements=['write'],approvers=['sre']}}"
        ));
        assert!(
            p.iter().any(|m| m.contains(
                "\"write\" is neither `all` nor one of this connection's shell guardrails"
            )),
            "{p:?}"
        );
    }

    #[test]
    fn ssh_connections_need_a_credential_and_a_pinned_host_key() {
        let p = ssh("");
        assert!(p.iter().any(|m| m.contains("private_key")), "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("connections[0].host_key` is required")),
            "{p:?}"
        );
        let p = ssh("password={env='HOOP_TEST_SSH_PW'}\nhost_key='SHA256:abc+/def'");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("HOOP_TEST_SSH_PW"), "{p:?}");
        let p = ssh("password={env='PATH'}\nhost_key='not a key'");
        assert!(
            p.iter()
                .any(|m| m.contains("host_key`: not a known_hosts line")),
            "{p:?}"
        );
        let p = ssh(
            "password={env='PATH'}\nhost_key='[web]:22,10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'",
        );
        assert!(p.is_empty(), "{p:?}");
        let p = ssh("password={env='PATH'}\nhost_key='SHA256:abc'\nprivate_key={env='PATH'}");
        assert!(p.iter().any(|m| m.contains("not both")), "{p:?}");
        let p = ssh("private_key={env='PATH'}\nhost_key='SHA256:abc'");
        assert!(
            p.iter().any(|m| m.contains("private_key`: not a usable")),
            "{p:?}"
        );
        // ssh-only keys on a postgres connection are named.
        let c = Config::parse(
            "[[connections]]\nname='db'\ntype='postgres'\naddress='x:1'\ndatabase='d'\nuser='u'\nallow=['a']\nhost_key='SHA256:x'\n",
        )
        .unwrap();
        let p = c.validate();
        assert!(
            p.iter()
                .any(|m| m.contains("host_key` applies only to ssh")),
            "{p:?}"
        );
    }
}
