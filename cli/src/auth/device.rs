//! The OAuth 2.0 device authorization grant (RFC 8628) through the `openidconnect` crate. One
//! code path for the gateway's built-in issuer and any external IdP: the device endpoint comes
//! from the issuer's discovery document.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, DeviceAuthorizationUrl, DeviceCodeErrorResponseType,
    HttpRequest, HttpResponse, IssuerUrl, OAuth2TokenResponse, ProviderMetadata, RequestTokenError,
    RevocationUrl, Scope,
};
use serde::{Deserialize, Serialize};

use crate::exit::{CliError, CliResult, Exit};

/// Discovery fields `CoreProviderMetadata` lacks.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DeviceMetadata {
    /// RFC 8628 endpoint.
    #[serde(default)]
    pub device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    /// RFC 7009 endpoint, used by `hoop logout`.
    #[serde(default)]
    pub revocation_endpoint: Option<RevocationUrl>,
}
impl AdditionalProviderMetadata for DeviceMetadata {}

type DeviceProviderMetadata = ProviderMetadata<
    DeviceMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A transport failure, for openidconnect's HTTP client trait.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

type HttpFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

/// Adapts reqwest 0.13 to openidconnect's async HTTP client: openidconnect's own adapter is
/// for reqwest 0.12, and we keep one reqwest in the graph.
pub fn http_adapter(client: reqwest::Client) -> impl Fn(HttpRequest) -> HttpFuture {
    move |req: HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(crate::trust::error_chain(&e)))?;
            let mut out = http::Response::builder().status(resp.status());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            let bytes = resp.bytes().await.map_err(|e| HttpError(e.to_string()))?;
            out.body(bytes.to_vec())
                .map_err(|e| HttpError(e.to_string()))
        })
    }
}

/// What the user must do in a browser.
pub struct Prompt {
    /// Where to go.
    pub verification_uri: String,
    /// Same, with the code filled in, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// The code to type.
    pub user_code: String,
    /// How long the user has.
    pub expires_in: Duration,
}

/// Tokens from a completed login.
pub struct LoginTokens {
    /// Access token.
    pub access_token: String,
    /// Refresh token, if the provider issued one.
    pub refresh_token: Option<String>,
    /// Raw ID token.
    pub id_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: Option<Duration>,
    /// Where to refresh.
    pub token_endpoint: String,
    /// Where to revoke, if the provider supports it.
    pub revocation_endpoint: Option<String>,
}

/// Parameters of one login.
pub struct DeviceLogin<'a> {
    /// Issuer URL (from the gateway's `/api/v1/auth/config`).
    pub issuer: &'a str,
    /// Public client id.
    pub client_id: &'a str,
    /// Scopes to request (`openid` is always added).
    pub scopes: &'a [String],
    /// Audience the gateway expects; sent as `audience` for IdPs that use it (Auth0).
    pub audience: &'a str,
}

fn idp_error(issuer: &str, what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Unreachable, format!("{what} at {issuer} failed: {e}"))
}

/// Runs the device flow. `on_prompt` shows the code; `sleep` waits between polls (injected so
/// tests and the spinner control time).
pub async fn login<S, SF>(
    http: reqwest::Client,
    params: DeviceLogin<'_>,
    on_prompt: impl FnOnce(&Prompt),
    sleep: S,
) -> CliResult<LoginTokens>
where
    S: Fn(Duration) -> SF + 'static,
    SF: Future<Output = ()> + 'static,
{
    let adapter = http_adapter(http);
    let issuer_url = IssuerUrl::new(params.issuer.to_string()).map_err(|e| {
        CliError::new(
            Exit::Internal,
            format!("the gateway announced an invalid issuer URL: {e}"),
        )
    })?;
    let meta = DeviceProviderMetadata::discover_async(issuer_url, &adapter)
        .await
        .map_err(|e| {
            idp_error(
                params.issuer,
                "OIDC discovery",
                crate::trust::error_chain(&e),
            )
        })?;
    let extra = meta.additional_metadata().clone();
    let device_url = extra.device_authorization_endpoint.clone().ok_or_else(|| {
        CliError::new(
            Exit::Internal,
            format!("the identity provider {} does not offer the device flow (no device_authorization_endpoint)", params.issuer),
        )
    })?;
    let token_endpoint = meta
        .token_endpoint()
        .map(|u| u.url().to_string())
        .ok_or_else(|| {
            CliError::new(
                Exit::Internal,
                format!(
                    "the identity provider {} has no token endpoint",
                    params.issuer
                ),
            )
        })?;
    let client =
        CoreClient::from_provider_metadata(meta, ClientId::new(params.client_id.to_string()), None)
            .set_device_authorization_url(device_url);

    let mut req = client.exchange_device_code();
    for s in params.scopes.iter().filter(|s| s.as_str() != "openid") {
        req = req.add_scope(Scope::new(s.clone()));
    }
    if !params.audience.is_empty() {
        req = req.add_extra_param("audience", params.audience.to_string());
    }
    let details: CoreDeviceAuthorizationResponse = req
        .request_async(&adapter)
        .await
        .map_err(|e| idp_error(params.issuer, "starting the device login", describe(&e)))?;
    on_prompt(&Prompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details
            .verification_uri_complete()
            .map(|u| u.secret().to_string()),
        user_code: details.user_code().secret().to_string(),
        expires_in: details.expires_in(),
    });
    let token = client
        .exchange_device_access_token(&details)
        .map_err(|e| CliError::new(Exit::Internal, format!("device login misconfigured: {e}")))?
        .request_async(&adapter, sleep, None)
        .await
        .map_err(|e| match &e {
            RequestTokenError::ServerResponse(r) => match r.error() {
                DeviceCodeErrorResponseType::AccessDenied => CliError::new(
                    Exit::NotAuthenticated,
                    "the login was denied in the browser",
                ),
                DeviceCodeErrorResponseType::ExpiredToken => CliError::new(
                    Exit::NotAuthenticated,
                    "the login code expired before it was used; run `hoop login` again",
                ),
                _ => idp_error(params.issuer, "the device login", describe(&e)),
            },
            _ => idp_error(params.issuer, "the device login", describe(&e)),
        })?;
    Ok(LoginTokens {
        access_token: token.access_token().secret().to_string(),
        refresh_token: token.refresh_token().map(|t| t.secret().to_string()),
        id_token: token.extra_fields().id_token().map(|t| t.to_string()),
        expires_in: token.expires_in(),
        token_endpoint,
        revocation_endpoint: extra.revocation_endpoint.map(|u| u.url().to_string()),
    })
}

fn describe<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: &RequestTokenError<RE, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => r.to_string(),
        RequestTokenError::Request(r) => r.to_string(),
        RequestTokenError::Parse(p, _) => format!("unreadable response: {p}"),
        RequestTokenError::Other(o) => o.clone(),
    }
}
