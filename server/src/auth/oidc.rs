//! OpenID Connect discovery and userinfo for an external IdP, and group extraction from claims.
//!
//! Discovery is done once at start-up (and on reload): it yields the `jwks_uri` the token
//! verifier fetches keys from, so a wrong issuer here means every login fails later. The errors
//! therefore name the URL, what went wrong and which setting to check.

use std::time::Duration;

use serde_json::{Map, Value};

use super::jwt::{BodyError, error_chain, read_body_limited};

/// Discovery documents and userinfo responses are a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Per-request timeout: discovery runs at start-up and userinfo on a login path; neither should
/// hang on an unresponsive IdP.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of an OIDC discovery document hoop uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// The issuer, identical to the configured one.
    pub issuer: String,
    /// Where the IdP publishes its signing keys.
    pub jwks_uri: url::Url,
    /// The userinfo endpoint, if the IdP has one.
    pub userinfo_endpoint: Option<url::Url>,
    /// The token endpoint (used by the CLI's device flow and refresh).
    pub token_endpoint: Option<url::Url>,
    /// The device authorization endpoint (RFC 8628), if supported.
    pub device_authorization_endpoint: Option<url::Url>,
}

/// What went wrong talking to the IdP. Every message names the URL involved and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The configured issuer is not a usable URL.
    #[error("[auth].issuer {issuer:?} is not usable: {reason}")]
    InvalidIssuer {
        /// The configured issuer.
        issuer: String,
        /// Why it is not usable.
        reason: String,
    },
    /// A URL would be fetched (or handed out) over plain HTTP to a non-loopback host.
    #[error(
        "{what} {url} does not use https; tokens and keys must not travel in clear text \
         (plain http is accepted only for localhost/127.0.0.1/[::1])"
    )]
    InsecureUrl {
        /// Which URL this is (e.g. "the jwks_uri in the discovery document").
        what: String,
        /// The URL.
        url: String,
    },
    /// The request did not complete.
    #[error("{what} at {url} failed: {reason}; {hint}")]
    Request {
        /// "OIDC discovery" or "userinfo request".
        what: &'static str,
        /// The URL.
        url: String,
        /// The underlying error, with its causes.
        reason: String,
        /// What to check.
        hint: &'static str,
    },
    /// The IdP answered with a non-success status.
    #[error("{what} at {url} failed: HTTP {status}; {hint}")]
    Status {
        /// "OIDC discovery" or "userinfo request".
        what: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// What to check.
        hint: &'static str,
    },
    /// The response is not the expected JSON document.
    #[error("{what} at {url} returned an invalid document: {reason}; {hint}")]
    InvalidDocument {
        /// "OIDC discovery" or "userinfo request".
        what: &'static str,
        /// The URL.
        url: String,
        /// What was wrong with it.
        reason: String,
        /// What to check.
        hint: &'static str,
    },
    /// The discovery document names a different issuer than configured.
    #[error(
        "OIDC discovery at {url}: the IdP reports issuer {reported:?} but [auth].issuer is \
         {configured:?}; {hint}"
    )]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The configured issuer.
        configured: String,
        /// The issuer in the document.
        reported: String,
        /// What to change.
        hint: String,
    },
}

const DISCOVERY: &str = "OIDC discovery";
const USERINFO: &str = "userinfo request";
const DISCOVERY_HINT: &str = "check [auth].issuer (it must be the issuer URL exactly as the IdP \
                              reports it) and that hoopd can reach the IdP";

/// Fetch and check `{issuer}/.well-known/openid-configuration`.
///
/// The document's `issuer` must equal `issuer` exactly (OIDC Discovery §4.3): tokens carry that
/// string in `iss`, so a mismatch here would otherwise surface as every token being rejected.
pub async fn discover(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<ProviderMetadata, DiscoveryError> {
    let url = discovery_url(issuer)?;
    let url_text = crate::util::url_for_logs(url.as_str());
    let document = get_json(
        http.get(url)
            .header(reqwest::header::ACCEPT, "application/json"),
        DISCOVERY,
        &url_text,
        DISCOVERY_HINT,
    )
    .await?;

    let invalid = |reason: String| DiscoveryError::InvalidDocument {
        what: DISCOVERY,
        url: url_text.clone(),
        reason,
        hint: DISCOVERY_HINT,
    };

    let reported = match document.get("issuer") {
        Some(Value::String(reported)) => reported.clone(),
        _ => return Err(invalid("it has no \"issuer\" string".to_owned())),
    };
    if reported != issuer {
        let hint = if reported.trim_end_matches('/') == issuer.trim_end_matches('/') {
            format!(
                "they differ only in the trailing slash, which matters because tokens carry the \
                 exact string: set [auth].issuer = {reported:?}"
            )
        } else {
            "set [auth].issuer to the IdP's issuer exactly, or fix the IdP's issuer/base URL \
             setting"
                .to_owned()
        };
        return Err(DiscoveryError::IssuerMismatch {
            url: url_text,
            configured: issuer.to_owned(),
            reported,
            hint,
        });
    }

    let endpoint = |name: &str| -> Result<Option<url::Url>, DiscoveryError> {
        let Some(value) = document.get(name) else {
            return Ok(None);
        };
        let Some(text) = value.as_str() else {
            return Err(invalid(format!("{name:?} is not a string")));
        };
        let parsed = url::Url::parse(text)
            .map_err(|err| invalid(format!("{name:?} is not a URL ({err}): {text:?}")))?;
        require_secure(&parsed, &format!("the {name} in the discovery document"))?;
        Ok(Some(parsed))
    };

    let jwks_uri = endpoint("jwks_uri")?.ok_or_else(|| {
        invalid("it has no \"jwks_uri\" (required for token verification)".to_owned())
    })?;
    Ok(ProviderMetadata {
        issuer: reported,
        jwks_uri,
        userinfo_endpoint: endpoint("userinfo_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        device_authorization_endpoint: endpoint("device_authorization_endpoint")?,
    })
}

/// Fetch the userinfo claims for an access token.
///
/// The caller must check that the returned `sub` equals the token's subject (OIDC Core §5.3.2)
/// before merging claims. The bearer token is never logged or put into errors.
pub async fn userinfo(
    http: &reqwest::Client,
    endpoint: &url::Url,
    bearer: &str,
) -> Result<Map<String, Value>, DiscoveryError> {
    // The access token is about to be sent: never over clear text to a remote host.
    require_secure(endpoint, "the userinfo endpoint")?;
    get_json(
        http.get(endpoint.clone())
            .bearer_auth(bearer)
            .header(reqwest::header::ACCEPT, "application/json"),
        USERINFO,
        endpoint.as_str(),
        "check the userinfo_endpoint in the IdP's discovery document and that the access token \
         is current and was issued with the openid scope",
    )
    .await
}

/// Group names from `claim` in `claims`.
///
/// `claim` is first looked up as a literal name (namespaced claims such as
/// `https://example.com/groups` contain dots), then as a dotted path into nested objects
/// (`realm_access.roles`). The value may be an array of strings (non-strings are ignored) or one
/// string of names separated by spaces and/or commas. `None` means the claim is absent or of
/// another type; duplicates are removed, keeping the first occurrence.
pub fn groups_from_claims(claims: &Map<String, Value>, claim: &str) -> Option<Vec<String>> {
    let value = claims.get(claim).or_else(|| lookup_path(claims, claim))?;
    let names: Vec<&str> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::trim)
            .collect(),
        Value::String(text) => text.split([' ', ',', '\t', '\n']).collect(),
        _ => return None,
    };
    let mut groups: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !name.is_empty() && !groups.iter().any(|g| g == name) {
            groups.push(name.to_owned());
        }
    }
    Some(groups)
}

fn lookup_path<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let mut current = claims.get(segments.next()?)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

/// `{issuer}/.well-known/openid-configuration`, without doubling a trailing slash.
fn discovery_url(issuer: &str) -> Result<url::Url, DiscoveryError> {
    let invalid = |reason: String| DiscoveryError::InvalidIssuer {
        issuer: issuer.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(issuer).map_err(|err| invalid(format!("not a URL ({err})")))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("an issuer has no query or fragment".to_owned()));
    }
    require_secure(&parsed, "[auth].issuer")?;
    let joined = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    url::Url::parse(&joined)
        .map_err(|err| invalid(format!("cannot build the discovery URL ({err})")))
}

/// Only https, except plain http to loopback (development IdPs and tests).
fn require_secure(url: &url::Url, what: &str) -> Result<(), DiscoveryError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(DiscoveryError::InsecureUrl {
            what: what.to_owned(),
            url: crate::util::url_for_logs(url.as_str()),
        }),
    }
}

/// Send `request` and parse a JSON object from a size-limited success response.
async fn get_json(
    request: reqwest::RequestBuilder,
    what: &'static str,
    url: &str,
    hint: &'static str,
) -> Result<Map<String, Value>, DiscoveryError> {
    // Errors name the URL without credentials, and reqwest's own text without it at all.
    let url = &crate::util::url_for_logs(url);
    let response = request
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|err| DiscoveryError::Request {
            what,
            url: url.to_owned(),
            reason: error_chain(&err.without_url()),
            hint,
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(DiscoveryError::Status {
            what,
            url: url.to_owned(),
            status: status.as_u16(),
            hint,
        });
    }
    let invalid = |reason: String| DiscoveryError::InvalidDocument {
        what,
        url: url.to_owned(),
        reason,
        hint,
    };
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // A signed (or encrypted) userinfo response is a JWT, not JSON: say so instead of
    // reporting a JSON syntax error.
    if content_type.starts_with("application/jwt") {
        return Err(invalid(
            "it is a signed/encrypted JWT (application/jwt), which hoop does not support; \
             configure the IdP to return plain JSON"
                .to_owned(),
        ));
    }
    let body = read_body_limited(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge => invalid(format!("it is larger than {MAX_DOCUMENT_BYTES} bytes")),
            BodyError::Read(reason) => DiscoveryError::Request {
                what,
                url: url.to_owned(),
                reason,
                hint,
            },
        })?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("it is not a JSON object".to_owned())),
        Err(err) => Err(invalid(format!("it is not JSON ({err})"))),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// Whatever the fake IdP answers to every request, plus what it saw.
    struct Fake {
        status: u16,
        content_type: &'static str,
        body: String,
        seen_paths: Mutex<Vec<String>>,
        seen_authorization: Mutex<Option<String>>,
    }

    /// A fake IdP on 127.0.0.1:0 answering every path with `body` (where `{base}` is replaced
    /// by its own base URL, so documents can name their issuer).
    async fn fake_idp(status: u16, content_type: &'static str, body: &str) -> (Arc<Fake>, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(Fake {
            status,
            content_type,
            body: body.replace("{base}", &base),
            seen_paths: Mutex::new(Vec::new()),
            seen_authorization: Mutex::new(None),
        });
        let state = Arc::clone(&fake);
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let fake = Arc::clone(&state);
            async move {
                fake.seen_paths.lock().unwrap().push(uri.path().to_owned());
                *fake.seen_authorization.lock().unwrap() = headers
                    .get("authorization")
                    .map(|value| value.to_str().unwrap().to_owned());
                (
                    StatusCode::from_u16(fake.status).unwrap(),
                    [("content-type", fake.content_type)],
                    fake.body.clone(),
                )
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, base)
    }

    fn document(issuer: &str) -> String {
        json!({
            "issuer": issuer,
            "jwks_uri": "{base}/jwks",
            "userinfo_endpoint": "{base}/userinfo",
            "token_endpoint": "{base}/token",
            "device_authorization_endpoint": "{base}/device",
            "authorization_endpoint": "{base}/auth",
        })
        .to_string()
    }

    fn http() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn discovers_endpoints() {
        let (fake, base) = fake_idp(200, "application/json", &document("{base}")).await;
        let meta = discover(&http(), &base).await.unwrap();
        assert_eq!(meta.issuer, base);
        assert_eq!(meta.jwks_uri.as_str(), format!("{base}/jwks"));
        assert_eq!(
            meta.userinfo_endpoint.unwrap().as_str(),
            format!("{base}/userinfo")
        );
        assert_eq!(
            meta.token_endpoint.unwrap().as_str(),
            format!("{base}/token")
        );
        assert_eq!(
            meta.device_authorization_endpoint.unwrap().as_str(),
            format!("{base}/device")
        );
        assert_eq!(
            *fake.seen_paths.lock().unwrap(),
            ["/.well-known/openid-configuration"]
        );
    }

    #[tokio::test]
    async fn discovers_issuer_with_path_and_optional_endpoints() {
        let body = json!({"issuer": "{base}/realms/hoop/", "jwks_uri": "{base}/certs"}).to_string();
        let (fake, base) = fake_idp(200, "application/json", &body).await;
        let meta = discover(&http(), &format!("{base}/realms/hoop/"))
            .await
            .unwrap();
        assert_eq!(meta.issuer, format!("{base}/realms/hoop/"));
        assert_eq!(meta.userinfo_endpoint, None);
        assert_eq!(meta.device_authorization_endpoint, None);
        // No double slash even though the issuer ends with one.
        assert_eq!(
            *fake.seen_paths.lock().unwrap(),
            ["/realms/hoop/.well-known/openid-configuration"]
        );
    }

    #[tokio::test]
    async fn trailing_slash_mismatch_is_explained() {
        let (_fake, base) = fake_idp(200, "application/json", &document("{base}")).await;
        let err = discover(&http(), &format!("{base}/")).await.unwrap_err();
        assert!(
            matches!(err, DiscoveryError::IssuerMismatch { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("trailing slash"), "{message}");
        assert!(
            message.contains(&format!("[auth].issuer = \"{base}\"")),
            "{message}"
        );
    }

    #[tokio::test]
    async fn other_issuer_mismatch_is_an_error() {
        let (_fake, base) = fake_idp(
            200,
            "application/json",
            &document("https://elsewhere.example"),
        )
        .await;
        let err = discover(&http(), &base).await.unwrap_err().to_string();
        assert!(
            err.contains("https://elsewhere.example") && err.contains("[auth].issuer"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn http_error_names_url_status_and_setting() {
        let (_fake, base) = fake_idp(404, "text/plain", "not found").await;
        let err = discover(&http(), &base).await.unwrap_err();
        assert!(matches!(err, DiscoveryError::Status { status: 404, .. }));
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "OIDC discovery at {base}/.well-known/openid-configuration failed: HTTP 404"
            )),
            "{message}"
        );
        assert!(message.contains("check [auth].issuer"), "{message}");
    }

    #[tokio::test]
    async fn invalid_documents_are_rejected() {
        let cases = [
            ("<html>login</html>".to_owned(), "not JSON"),
            ("[1, 2]".to_owned(), "not a JSON object"),
            (json!({"issuer": "{base}"}).to_string(), "jwks_uri"),
            (
                json!({"issuer": "{base}", "jwks_uri": "not a url"}).to_string(),
                "not a URL",
            ),
            (
                json!({"issuer": "{base}", "jwks_uri": 7}).to_string(),
                "not a string",
            ),
            (
                json!({"jwks_uri": "{base}/jwks"}).to_string(),
                "no \"issuer\"",
            ),
        ];
        for (body, expected) in cases {
            let (_fake, base) = fake_idp(200, "application/json", &body).await;
            let err = discover(&http(), &base).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[tokio::test]
    async fn insecure_urls_are_refused() {
        let err = discover(&http(), "http://idp.example.com")
            .await
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::InsecureUrl { .. }), "{err:?}");
        assert!(err.to_string().contains("https"));

        let body =
            json!({"issuer": "{base}", "jwks_uri": "http://idp.example.com/jwks"}).to_string();
        let (_fake, base) = fake_idp(200, "application/json", &body).await;
        let err = discover(&http(), &base).await.unwrap_err();
        assert!(matches!(err, DiscoveryError::InsecureUrl { .. }), "{err:?}");

        let endpoint: url::Url = "http://idp.example.com/userinfo".parse().unwrap();
        let err = userinfo(&http(), &endpoint, "secret-token")
            .await
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::InsecureUrl { .. }));
    }

    #[tokio::test]
    async fn malformed_issuers_are_refused() {
        for issuer in ["", "idp.example.com", "https://idp.example.com?x=1"] {
            let err = discover(&http(), issuer).await.unwrap_err();
            assert!(
                matches!(err, DiscoveryError::InvalidIssuer { .. }),
                "{issuer}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn unreachable_idp_is_a_request_error() {
        // Bind and drop to get a port nobody listens on.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = discover(&http(), &format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::Request { .. }), "{err:?}");
        assert!(err.to_string().contains("check [auth].issuer"));
    }

    #[tokio::test]
    async fn userinfo_sends_bearer_and_returns_claims() {
        let body = json!({"sub": "alice", "groups": ["dba"]}).to_string();
        let (fake, base) = fake_idp(200, "application/json; charset=utf-8", &body).await;
        let endpoint: url::Url = format!("{base}/userinfo").parse().unwrap();
        let claims = userinfo(&http(), &endpoint, "access-token-123")
            .await
            .unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(
            fake.seen_authorization.lock().unwrap().as_deref(),
            Some("Bearer access-token-123")
        );
    }

    #[tokio::test]
    async fn userinfo_errors_explain_and_never_contain_the_token() {
        let (_fake, base) = fake_idp(401, "application/json", "{}").await;
        let endpoint: url::Url = format!("{base}/userinfo").parse().unwrap();
        let err = userinfo(&http(), &endpoint, "access-token-123")
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("HTTP 401") && message.contains("openid scope"),
            "{message}"
        );
        assert!(
            !message.contains("access-token-123")
                && !format!("{err:?}").contains("access-token-123")
        );

        let (_fake, base) = fake_idp(200, "application/jwt", "eyJ.eyJ.sig").await;
        let endpoint: url::Url = format!("{base}/userinfo").parse().unwrap();
        let err = userinfo(&http(), &endpoint, "access-token-123")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("application/jwt"), "{err}");
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn groups_from_array_and_strings() {
        let c = claims(json!({
            "groups": ["dba", 7, "ops", "dba", " "],
            "scp": "read write  admin",
            "roles_csv": "a, b,c",
            "empty": [],
            "flag": true,
        }));
        assert_eq!(groups_from_claims(&c, "groups").unwrap(), ["dba", "ops"]);
        assert_eq!(
            groups_from_claims(&c, "scp").unwrap(),
            ["read", "write", "admin"]
        );
        assert_eq!(
            groups_from_claims(&c, "roles_csv").unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(
            groups_from_claims(&c, "empty").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(groups_from_claims(&c, "flag"), None);
        assert_eq!(groups_from_claims(&c, "missing"), None);
    }

    #[test]
    fn groups_from_dotted_paths_and_namespaced_claims() {
        let c = claims(json!({
            "realm_access": {"roles": ["admin", "user"]},
            "https://hoop.example/groups": ["platform"],
            "resource_access": {"hoop": {"roles": "viewer"}},
        }));
        assert_eq!(
            groups_from_claims(&c, "realm_access.roles").unwrap(),
            ["admin", "user"]
        );
        assert_eq!(
            groups_from_claims(&c, "https://hoop.example/groups").unwrap(),
            ["platform"]
        );
        assert_eq!(
            groups_from_claims(&c, "resource_access.hoop.roles").unwrap(),
            ["viewer"]
        );
        assert_eq!(groups_from_claims(&c, "realm_access.missing"), None);
        assert_eq!(groups_from_claims(&c, "realm_access"), None);
        assert_eq!(groups_from_claims(&c, "realm_access.roles.deeper"), None);
    }
}
