//! Who is calling: bearer tokens from an external OIDC provider or the built-in issuer, and
//! machine API keys. Every rejection carries a short reason code for the audit log.

pub mod apikey;
pub mod issuer;
pub mod jwt;
pub mod oidc;
pub mod password;
pub mod workload;

use std::sync::Arc;

use hoop_shared::api::AuthMethod;
use jsonwebtoken::Algorithm;
use tokio::sync::OnceCell;

use crate::config::AuthConfig;
use crate::store::Store;
use jwt::{JwksCache, JwtPolicy, KeySource, TokenRejection, TokenVerifier};

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Stable subject: `sub`, local user name, or `apikey:<name>`.
    pub subject: String,
    /// Display name.
    pub name: String,
    /// Groups for authorisation.
    pub groups: Vec<String>,
    /// How they authenticated.
    pub method: AuthMethod,
    /// When the credential expires (unix seconds).
    pub expires_at: Option<i64>,
}

impl Identity {
    /// True if the caller is in any of `groups`.
    pub fn in_any(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// Why a credential was refused. `code` goes to the audit log and the API error; `message` to
/// the caller. Neither ever contains the credential.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    /// Short stable reason (`expired`, `wrong_audience`, `api_key_revoked`, ...).
    pub code: &'static str,
    /// A sentence for the caller.
    pub message: String,
}

impl AuthFailure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<TokenRejection> for AuthFailure {
    fn from(r: TokenRejection) -> Self {
        AuthFailure::new(r.code(), format!("token rejected: {r}"))
    }
}

/// Parses an algorithm name from the config; HMAC and `none` are never accepted.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

fn default_algorithms() -> Vec<Algorithm> {
    use Algorithm::*;
    vec![
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
}

/// How often discovery is retried while the IdP is unreachable.
const DISCOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

// One value per gateway: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Mode {
    Builtin {
        issuer: Arc<issuer::BuiltinIssuer>,
        verifier: TokenVerifier,
    },
    External {
        issuer: String,
        policy: JwtPolicy,
        discovered: OnceCell<External>,
        // When discovery last failed: retried at most every DISCOVERY_RETRY, so an IdP outage
        // does not turn every request into an outbound call.
        last_failure: std::sync::Mutex<Option<std::time::Instant>>,
    },
}

struct External {
    verifier: TokenVerifier,
    userinfo: Option<url::Url>,
}

/// Turns a bearer credential into an [`Identity`].
pub struct Authenticator {
    mode: Mode,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    groups_claim: String,
    refetch: std::time::Duration,
    /// `[[auth.workload]]`: issuers trusted for machines.
    workload: Vec<workload::Workload>,
}

/// The trusted workload issuers of `cfg`, with the gateway's algorithm allow-list and leeway.
fn workloads(cfg: &AuthConfig) -> Vec<workload::Workload> {
    cfg.workload
        .iter()
        .map(|w| {
            let policy = JwtPolicy {
                issuer: w.issuer.clone(),
                audiences: vec![w.audience.clone()],
                algorithms: cfg
                    .algorithms
                    .as_ref()
                    .map(|a| a.iter().filter_map(|n| parse_algorithm(n)).collect())
                    .unwrap_or_else(default_algorithms),
                leeway: cfg.leeway,
            };
            workload::Workload::new(w.clone(), policy)
        })
        .collect()
}

impl Authenticator {
    /// Authentication against an external OIDC issuer. Discovery happens on first use, so the
    /// gateway starts even while the IdP is down (tokens are refused until it answers).
    pub fn external(
        cfg: &AuthConfig,
        issuer: &str,
        store: Arc<dyn Store>,
        http: reqwest::Client,
    ) -> Self {
        let policy = JwtPolicy {
            issuer: issuer.to_string(),
            audiences: audiences(cfg),
            algorithms: cfg
                .algorithms
                .as_ref()
                .map(|a| a.iter().filter_map(|n| parse_algorithm(n)).collect())
                .unwrap_or_else(default_algorithms),
            leeway: cfg.leeway,
        };
        Self {
            mode: Mode::External {
                issuer: issuer.to_string(),
                policy,
                discovered: OnceCell::new(),
                last_failure: std::sync::Mutex::new(None),
            },
            store,
            http,
            groups_claim: cfg.groups_claim.clone(),
            refetch: cfg.jwks_refetch_interval,
            workload: workloads(cfg),
        }
    }

    /// Authentication against the gateway's own issuer.
    pub fn builtin(
        cfg: &AuthConfig,
        issuer: Arc<issuer::BuiltinIssuer>,
        store: Arc<dyn Store>,
        http: reqwest::Client,
    ) -> Self {
        let policy = JwtPolicy {
            issuer: issuer.issuer_url().to_string(),
            audiences: audiences(cfg),
            algorithms: vec![Algorithm::EdDSA],
            leeway: cfg.leeway,
        };
        let verifier = TokenVerifier::new(policy, KeySource::Local(issuer.jwks()));
        Self {
            mode: Mode::Builtin { issuer, verifier },
            store,
            http,
            groups_claim: cfg.groups_claim.clone(),
            refetch: cfg.jwks_refetch_interval,
            workload: workloads(cfg),
        }
    }

    /// The built-in issuer, when the gateway is its own IdP.
    pub fn builtin_issuer(&self) -> Option<&Arc<issuer::BuiltinIssuer>> {
        match &self.mode {
            Mode::Builtin { issuer, .. } => Some(issuer),
            Mode::External { .. } => None,
        }
    }

    /// The issuer URL clients log in with.
    pub fn issuer_url(&self) -> String {
        match &self.mode {
            Mode::Builtin { issuer, .. } => issuer.issuer_url().to_string(),
            Mode::External { issuer, .. } => issuer.clone(),
        }
    }

    /// Verifies a bearer credential.
    pub async fn authenticate(&self, bearer: &str) -> Result<Identity, AuthFailure> {
        if bearer.starts_with(apikey::PREFIX) {
            return self.api_key(bearer).await;
        }
        // A workload issuer's token is checked only by that issuer's verifier.
        if !self.workload.is_empty()
            && let Some(iss) = workload::unverified_issuer(bearer)
            && let Some(w) = self.workload.iter().find(|w| w.issuer() == iss)
        {
            return w.authenticate(bearer, &self.http, self.refetch).await;
        }
        match &self.mode {
            Mode::Builtin { verifier, .. } => {
                let t = verifier.verify(bearer).await?;
                let groups =
                    oidc::groups_from_claims(&t.claims, &self.groups_claim).unwrap_or_default();
                Ok(Identity {
                    name: t.subject.clone(),
                    subject: t.subject,
                    groups,
                    method: AuthMethod::Builtin,
                    expires_at: t.expires_at,
                })
            }
            Mode::External {
                issuer,
                policy,
                discovered,
                last_failure,
            } => {
                let recently_failed = last_failure
                    .lock()
                    .ok()
                    .and_then(|g| *g)
                    .is_some_and(|t| t.elapsed() < DISCOVERY_RETRY);
                if discovered.get().is_none() && recently_failed {
                    return Err(AuthFailure::new(
                        "idp_unavailable",
                        "the identity provider's discovery document is unavailable; try again shortly",
                    ));
                }
                let ext = discovered
                    .get_or_try_init(|| async {
                        let meta = oidc::discover(&self.http, issuer).await.map_err(|e| {
                            tracing::warn!(error = %e, "OIDC discovery failed");
                            if let Ok(mut g) = last_failure.lock() {
                                *g = Some(std::time::Instant::now());
                            }
                            AuthFailure::new(
                                "idp_unavailable",
                                format!("cannot reach the identity provider: {e}"),
                            )
                        })?;
                        let jwks =
                            JwksCache::new(self.http.clone(), meta.jwks_uri.clone(), self.refetch);
                        Ok::<_, AuthFailure>(External {
                            verifier: TokenVerifier::new(policy.clone(), KeySource::Remote(jwks)),
                            userinfo: meta.userinfo_endpoint,
                        })
                    })
                    .await?;
                let t = ext.verifier.verify(bearer).await?;
                let mut groups = oidc::groups_from_claims(&t.claims, &self.groups_claim);
                if groups.is_none() {
                    // Some IdPs keep groups out of tokens; ask userinfo with the same token.
                    if let Some(ep) = &ext.userinfo {
                        match oidc::userinfo(&self.http, ep, bearer).await {
                            // OIDC Core §5.3.2: userinfo claims count only for the same subject.
                            Ok(info)
                                if info.get("sub").and_then(|v| v.as_str())
                                    == Some(t.subject.as_str()) =>
                            {
                                groups = oidc::groups_from_claims(&info, &self.groups_claim)
                            }
                            Ok(_) => {
                                tracing::warn!("userinfo answered for another subject; ignored")
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "userinfo lookup for groups failed")
                            }
                        }
                    }
                }
                let name = ["preferred_username", "email", "name"]
                    .iter()
                    .find_map(|k| t.claims.get(*k).and_then(|v| v.as_str()))
                    .unwrap_or(&t.subject)
                    .to_string();
                Ok(Identity {
                    subject: t.subject,
                    name,
                    groups: groups.unwrap_or_default(),
                    method: AuthMethod::Oidc,
                    expires_at: t.expires_at,
                })
            }
        }
    }

    async fn api_key(&self, presented: &str) -> Result<Identity, AuthFailure> {
        let rec = self
            .store
            .api_key_by_hash(&apikey::hash(presented))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "API key lookup failed");
                AuthFailure::new(
                    "store_unavailable",
                    "the gateway cannot check API keys right now",
                )
            })?
            .ok_or_else(|| AuthFailure::new("api_key_unknown", "unknown API key"))?;
        if rec.revoked_at.is_some() {
            return Err(AuthFailure::new(
                "api_key_revoked",
                format!("API key {:?} was revoked", rec.name),
            ));
        }
        if rec.expires_at.is_some_and(|e| e <= crate::util::now_unix()) {
            return Err(AuthFailure::new(
                "api_key_expired",
                format!("API key {:?} has expired", rec.name),
            ));
        }
        Ok(Identity {
            subject: format!("apikey:{}", rec.name),
            name: rec.name,
            groups: rec.groups,
            method: AuthMethod::ApiKey,
            expires_at: rec.expires_at,
        })
    }
}

fn audiences(cfg: &AuthConfig) -> Vec<String> {
    let mut v = vec![cfg.audience.clone()];
    v.extend(cfg.extra_audiences.iter().cloned());
    v
}
