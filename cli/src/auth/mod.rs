//! The CLI's credentials: `HOOP_TOKEN` for machines, otherwise the cached tokens from `hoop
//! login`, refreshed silently with the refresh token when they are about to expire.

pub mod device;
pub mod token_store;

use std::path::Path;

use serde::Deserialize;

use crate::exit::{CliError, CliResult, Exit};
use crate::gateway::Gateway;
use token_store::{CachedTokens, TokenStore};

/// Refresh this long before the access token expires, so a request never races the expiry.
const REFRESH_MARGIN_SECS: i64 = 60;

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Which token to present to the gateway: the access token when it is a JWT (the audience is
/// then the gateway), else the ID token (IdPs with opaque access tokens).
pub fn bearer_of(t: &CachedTokens) -> &str {
    if t.access_token.split('.').count() == 3 {
        &t.access_token
    } else {
        t.id_token.as_deref().unwrap_or(&t.access_token)
    }
}

/// Where a credential came from.
pub enum Credential {
    /// `HOOP_TOKEN`: used as is, never refreshed or cached.
    Env(String),
    /// The token cache.
    Cached(CachedTokens),
}

impl Credential {
    /// The bearer string.
    pub fn bearer(&self) -> &str {
        match self {
            Credential::Env(t) => t,
            Credential::Cached(t) => bearer_of(t),
        }
    }
}

/// Opens the token store under `data_dir`, mapping errors.
pub fn open_store(data_dir: &Path) -> CliResult<TokenStore> {
    TokenStore::open(data_dir).map_err(|e| CliError::new(Exit::Internal, e.to_string()))
}

#[derive(Deserialize)]
struct RefreshResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

fn not_logged_in(gateway: &str, why: &str) -> CliError {
    CliError::new(
        Exit::NotAuthenticated,
        format!("{why}: run `hoop login --gateway {gateway}`"),
    )
}

/// A credential for `gw`: `HOOP_TOKEN` if set, else the cache (refreshed when needed).
pub async fn credential(
    gw: &Gateway,
    store: &TokenStore,
    env_token: Option<&str>,
) -> CliResult<Credential> {
    if let Some(t) = env_token.filter(|t| !t.trim().is_empty()) {
        return Ok(Credential::Env(t.trim().to_string()));
    }
    let cached = store
        .load(&gw.url)
        .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?
        .ok_or_else(|| not_logged_in(&gw.url, "not logged in"))?;
    let fresh = cached
        .expires_at
        .is_none_or(|e| e - REFRESH_MARGIN_SECS > now_unix());
    if fresh {
        return Ok(Credential::Cached(cached));
    }
    refresh(gw, store, cached).await.map(Credential::Cached)
}

/// Uses the refresh token; saves and returns the new tokens.
pub async fn refresh(
    gw: &Gateway,
    store: &TokenStore,
    cached: CachedTokens,
) -> CliResult<CachedTokens> {
    let (Some(rt), Some(endpoint)) = (cached.refresh_token.clone(), cached.token_endpoint.clone())
    else {
        return Err(not_logged_in(&gw.url, "your session expired"));
    };
    let client_id = cached
        .client_id
        .clone()
        .unwrap_or_else(|| "hoop-cli".into());
    let http = if gw.same_origin(&endpoint) {
        gw.client.http.clone()
    } else {
        idp_client()?
    };
    let resp = http
        .post(&endpoint)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .map_err(|e| gw.client.explain(&endpoint, &e))?;
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let why = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| {
                format!(
                    "{}{}",
                    e.error,
                    e.error_description
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|_| format!("HTTP {status}"));
        // The refresh token is dead: forget it so the next command says "not logged in" at once.
        let _ = store.delete(&gw.url);
        return Err(not_logged_in(
            &gw.url,
            &format!("your session expired and could not be renewed ({why})"),
        ));
    }
    let r: RefreshResponse = serde_json::from_slice(&body).map_err(|e| {
        CliError::new(
            Exit::Internal,
            format!("the identity provider sent an unreadable token response: {e}"),
        )
    })?;
    let tokens = CachedTokens {
        access_token: r.access_token,
        // Providers that do not rotate refresh tokens send none back: keep the old one.
        refresh_token: r.refresh_token.or(cached.refresh_token),
        id_token: r.id_token.or(cached.id_token),
        expires_at: r.expires_in.map(|s| now_unix() + s),
        token_endpoint: cached.token_endpoint,
        client_id: cached.client_id,
        revocation_endpoint: cached.revocation_endpoint,
    };
    store
        .save(&gw.url, &tokens)
        .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?;
    tracing::debug!("access token refreshed");
    Ok(tokens)
}

/// A client for an external IdP: system roots, no redirects.
pub fn idp_client() -> CliResult<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::new(Exit::Internal, format!("cannot build the HTTP client: {e}")))
}

/// GET an authenticated endpoint; on a 401 with a cached, refreshable session, refresh once and
/// retry (the gateway may have seen the token expire before our clock did).
pub async fn authed_get<T: serde::de::DeserializeOwned>(
    gw: &Gateway,
    store: &TokenStore,
    env_token: Option<&str>,
    path: &str,
) -> CliResult<T> {
    let cred = credential(gw, store, env_token).await?;
    match gw.get(path, Some(cred.bearer())).await {
        Err(e) if e.exit == Exit::NotAuthenticated => match cred {
            Credential::Cached(t) if t.refresh_token.is_some() => {
                let t = refresh(gw, store, t).await?;
                gw.get(path, Some(bearer_of(&t))).await
            }
            Credential::Env(_) => Err(CliError::new(
                Exit::NotAuthenticated,
                format!(
                    "{} (the token in HOOP_TOKEN was refused)",
                    e.message.trim_end_matches(" (run `hoop login`)")
                ),
            )),
            Credential::Cached(_) => Err(e),
        },
        other => other,
    }
}
