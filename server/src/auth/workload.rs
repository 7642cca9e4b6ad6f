//! Workload identity: tokens of external issuers trusted for machines (`[[auth.workload]]`),
//! for example a CI provider's OIDC token, so a job reaches the gateway with no stored secret.
//!
//! A bearer token is routed here when its (not yet verified) `iss` names a workload issuer; it is
//! then verified by the same [`TokenVerifier`] as user tokens (discovery on first use, JWKS with
//! `kid` refetch, algorithm allow-list, `iss`, `aud`, `exp`, `nbf`), and only afterwards are its
//! claims trusted. Groups come from the configured rules alone — never from a claim the issuer
//! lets its users shape — and a token that matches no rule is refused.

use base64::Engine;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::jwt::{JwksCache, JwtPolicy, KeySource, TokenVerifier};
use super::{AuthFailure, Identity};
use crate::config::{WorkloadIssuer, WorkloadRule};
use hoop_shared::api::AuthMethod;

/// One trusted workload issuer.
pub struct Workload {
    cfg: WorkloadIssuer,
    policy: JwtPolicy,
    verifier: OnceCell<TokenVerifier>,
}

impl Workload {
    /// From the config; `policy` carries the gateway's algorithm allow-list and leeway.
    pub fn new(cfg: WorkloadIssuer, mut policy: JwtPolicy) -> Self {
        policy.issuer = cfg.issuer.clone();
        policy.audiences = vec![cfg.audience.clone()];
        Self {
            cfg,
            policy,
            verifier: OnceCell::new(),
        }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    /// Verifies `bearer` (whose `iss` is this issuer) and maps it to an identity.
    pub async fn authenticate(
        &self,
        bearer: &str,
        http: &reqwest::Client,
        refetch: std::time::Duration,
    ) -> Result<Identity, AuthFailure> {
        let verifier = self
            .verifier
            .get_or_try_init(|| async {
                let meta = super::oidc::discover(http, &self.cfg.issuer)
                    .await
                    .map_err(|e| {
                        tracing::warn!(issuer = %self.cfg.issuer, error = %e, "workload issuer discovery failed");
                        AuthFailure::new(
                            "idp_unavailable",
                            format!("cannot reach the workload issuer {}: {e}", self.cfg.issuer),
                        )
                    })?;
                let jwks = JwksCache::new(http.clone(), meta.jwks_uri.clone(), refetch);
                Ok::<_, AuthFailure>(TokenVerifier::new(
                    self.policy.clone(),
                    KeySource::Remote(jwks),
                ))
            })
            .await?;
        let t = verifier.verify(bearer).await?;
        let groups = groups_for(&self.cfg.rules, &t.claims);
        if groups.is_empty() {
            return Err(AuthFailure::new(
                "workload_unmapped",
                format!(
                    "the token of workload issuer {:?} (subject {:?}) matches none of its rules",
                    self.cfg.name, t.subject
                ),
            ));
        }
        Ok(Identity {
            subject: format!("workload:{}:{}", self.cfg.name, t.subject),
            name: format!("{}:{}", self.cfg.name, t.subject),
            groups,
            method: AuthMethod::Workload,
            expires_at: t.expires_at,
        })
    }
}

/// The union of the groups of every rule the claims match, in rule order, without repeats.
pub fn groups_for(rules: &[WorkloadRule], claims: &Map<String, Value>) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for r in rules {
        let Some(v) = claim_str(claims, &r.claim) else {
            continue;
        };
        let hit = match r.value.strip_suffix('*') {
            Some(prefix) => v.starts_with(prefix),
            None => v == r.value,
        };
        if hit {
            for g in &r.groups {
                if !groups.contains(g) {
                    groups.push(g.clone());
                }
            }
        }
    }
    groups
}

fn claim_str<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    if let Some(v) = claims.get(path) {
        return v.as_str();
    }
    let mut segments = path.split('.');
    let mut current = claims.get(segments.next()?)?;
    for s in segments {
        current = current.as_object()?.get(s)?;
    }
    current.as_str()
}

/// The `iss` of a JWT, read without verifying anything: only to pick which verifier checks it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(claim: &str, value: &str, groups: &[&str]) -> WorkloadRule {
        WorkloadRule {
            claim: claim.into(),
            value: value.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn rules_map_claims_to_groups() {
        let rules = vec![
            rule("sub", "repo:acme/api:ref:refs/heads/main", &["deploy"]),
            rule("sub", "repo:acme/*", &["ci"]),
            rule("job.env", "prod", &["prod", "ci"]),
        ];
        let claims = json!({"sub": "repo:acme/api:ref:refs/heads/main", "job": {"env": "prod"}});
        let claims = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(groups_for(&rules, &claims), ["deploy", "ci", "prod"]);
        let other = json!({"sub": "repo:evil/api", "job": {"env": ["prod"]}});
        let other = other.as_object().cloned().unwrap_or_default();
        assert!(groups_for(&rules, &other).is_empty());
    }

    #[test]
    fn the_issuer_is_peeked_without_verification() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"iss":"https://ci.example.com","sub":"x"}"#);
        assert_eq!(
            unverified_issuer(&format!("e30.{payload}.sig")).as_deref(),
            Some("https://ci.example.com")
        );
        assert_eq!(unverified_issuer("hoopk_x_y"), None);
        assert_eq!(unverified_issuer("a.%%%.c"), None);
    }
}
