//! A real OpenID Connect provider for the tests: `tests/fixtures/oidc-provider/server.js`
//! (npm `oidc-provider` 9) run with `node`, plus a driver for its device-login pages.
//!
//! Provider facts (see the fixture's `server.js`):
//! * issuer `http://127.0.0.1:PORT` (plain HTTP), endpoints: discovery
//!   `/.well-known/openid-configuration`, device authorization `/device/auth`, user code
//!   page `/device`, token `/token`, JWKS `/jwks`, userinfo `/me`, introspection
//!   `/token/introspection`, revocation `/token/revocation`.
//! * clients: public `hoop-cli` (device code + refresh token, scopes
//!   `openid profile email groups offline_access`), confidential `hoop-ci` / `ci-secret`
//!   (client credentials, `client_secret_basic` or `client_secret_post`).
//! * access tokens are RS256 JWTs (`typ: at+jwt`, `kid: test-rsa-1`) with `aud: "hoop"`,
//!   `iss`, `sub`, `client_id`, `scope`, `groups` and for users `preferred_username` and
//!   `email`. Client-credentials tokens for `hoop-ci` carry `sub: "hoop-ci"` and
//!   `groups: ["deploy"]`.
//! * the device authorization response carries no `interval` (clients default to 5 s).
//! * refresh tokens of the public client rotate: each refresh returns a new one, and
//!   reusing an old one fails with `invalid_grant`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use crate::jwt::{self, Signer};
use crate::proc::ChildGuard;

/// One of the provider's fixed users.
#[derive(Clone, Copy, Debug)]
pub struct TestUser {
    pub username: &'static str,
    pub password: &'static str,
    pub groups: &'static [&'static str],
}

impl TestUser {
    pub fn email(&self) -> String {
        format!("{}@example.test", self.username)
    }
}

/// The provider's users (mirrors `USERS` in `server.js`).
pub const USERS: &[TestUser] = &[
    TestUser {
        username: "alice",
        password: "alice-pw",
        groups: &["engineering"],
    },
    TestUser {
        username: "bob",
        password: "bob-pw",
        groups: &["dba", "engineering"],
    },
    TestUser {
        username: "carol",
        password: "carol-pw",
        groups: &["sales"],
    },
];

/// Look up a fixed user by name.
pub fn user(username: &str) -> Result<TestUser> {
    USERS
        .iter()
        .find(|u| u.username == username)
        .copied()
        .with_context(|| format!("no test user {username:?}"))
}

/// The public device-flow client.
pub const CLI_CLIENT_ID: &str = "hoop-cli";
/// The confidential client-credentials client and its secret.
pub const CI_CLIENT_ID: &str = "hoop-ci";
pub const CI_CLIENT_SECRET: &str = "ci-secret";
/// Groups in `hoop-ci`'s client-credentials tokens.
pub const CI_GROUPS: &[&str] = &["deploy"];
/// Audience of every access token.
pub const AUDIENCE: &str = "hoop";
/// Scopes the CLI client asks for.
pub const CLI_SCOPES: &str = "openid profile email groups offline_access";

/// Provider settings.
#[derive(Clone, Debug, Default)]
pub struct OidcOptions {
    /// Access-token (and client-credentials token) lifetime; default 300 s.
    pub access_ttl: Option<Duration>,
    /// Refresh-token lifetime; default 1 day.
    pub refresh_ttl: Option<Duration>,
    /// Device-code lifetime; default 600 s.
    pub device_ttl: Option<Duration>,
    /// Access-token audience; default `hoop`.
    pub audience: Option<String>,
}

/// A running provider; stopped on drop.
#[derive(Debug)]
pub struct OidcProvider {
    /// `http://127.0.0.1:PORT` (no trailing slash): the `iss` of its tokens.
    pub issuer: String,
    pub port: u16,
    audience: String,
    child: ChildGuard,
    http: reqwest::Client,
    // Dropped after `child` (fields drop in declaration order): holds the log files.
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Start `node server.js` from the fixture directory and wait until it serves its
    /// discovery document.
    pub async fn start(opts: OidcOptions) -> Result<Self> {
        let fixture = jwt::oidc_fixture_dir();
        if !fixture.join("node_modules").join("oidc-provider").is_dir() {
            bail!(
                "{}/node_modules is missing: run `npm ci --prefix tests/fixtures/oidc-provider` first",
                fixture.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("hoop-oidc-")
            .tempdir()
            .context("create temp dir for the OIDC provider")?;
        let mut cmd = Command::new("node");
        cmd.arg("server.js").arg("0").current_dir(&fixture);
        cmd.env("NODE_ENV", "test");
        if let Some(t) = opts.access_ttl {
            cmd.env("ACCESS_TTL", t.as_secs().max(1).to_string());
        }
        if let Some(t) = opts.refresh_ttl {
            cmd.env("REFRESH_TTL", t.as_secs().max(1).to_string());
        }
        if let Some(t) = opts.device_ttl {
            cmd.env("DEVICE_TTL", t.as_secs().max(1).to_string());
        }
        let audience = opts.audience.clone().unwrap_or_else(|| AUDIENCE.to_owned());
        cmd.env("AUDIENCE", &audience);
        let mut child = ChildGuard::spawn("oidc-provider", &mut cmd, dir.path())
            .context("start `node server.js` (is node installed?)")?;

        // The server binds port 0 itself and reports it: no port race.
        let line = child
            .wait_for_output("oidc-provider listening on ", Duration::from_secs(30))
            .await?;
        let (port, issuer) = parse_listening_line(&line)
            .with_context(|| format!("unexpected readiness line {line:?}\n{}", child.logs()))?;

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .context("build HTTP client")?;
        let provider = Self {
            issuer,
            port,
            audience,
            child,
            http,
            _dir: dir,
        };
        let discovery = provider
            .discovery()
            .await
            .with_context(|| provider.child.logs())?;
        if discovery.get("issuer").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
            bail!("discovery issuer mismatch: {discovery}");
        }
        Ok(provider)
    }

    /// Base URL joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }
    pub fn device_authorization_endpoint(&self) -> String {
        self.url("/device/auth")
    }
    pub fn token_endpoint(&self) -> String {
        self.url("/token")
    }
    pub fn jwks_uri(&self) -> String {
        self.url("/jwks")
    }
    pub fn userinfo_endpoint(&self) -> String {
        self.url("/me")
    }
    pub fn introspection_endpoint(&self) -> String {
        self.url("/token/introspection")
    }
    pub fn revocation_endpoint(&self) -> String {
        self.url("/token/revocation")
    }

    /// The access-token audience (`hoop` unless overridden).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The provider's logs so far (for error messages).
    pub fn logs(&self) -> String {
        self.child.logs()
    }

    /// Fetch the discovery document.
    pub async fn discovery(&self) -> Result<Value> {
        let resp = self
            .http
            .get(self.discovery_url())
            .send()
            .await
            .context("GET discovery document")?;
        let status = resp.status();
        if !status.is_success() {
            bail!("discovery document: HTTP {status}");
        }
        resp.json().await.context("parse discovery document")
    }

    /// PEM (PKCS#8) of the key that signs this provider's tokens.
    pub fn signing_key_pem(&self) -> PathBuf {
        jwt::signing_key_pem_path()
    }

    /// PEM (SPKI) of the provider's public key.
    pub fn public_key_pem(&self) -> PathBuf {
        jwt::public_key_pem_path()
    }

    /// `kid` of the signing key.
    pub fn kid(&self) -> &str {
        jwt::KID
    }

    /// Claims of a valid access token for `username` (one of [`USERS`]) as this provider
    /// would issue it, valid from now for `ttl` seconds (negative: already expired).
    pub fn user_claims(&self, username: &str, ttl: i64) -> Result<Value> {
        let u = user(username)?;
        let now = jwt::now();
        Ok(json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": u.username,
            "preferred_username": u.username,
            "email": u.email(),
            "groups": u.groups,
            "client_id": CLI_CLIENT_ID,
            "scope": CLI_SCOPES,
            "jti": format!("minted-{}-{now}", u.username),
            "iat": now,
            "exp": now + ttl,
        }))
    }

    /// Claims of a valid `hoop-ci` client-credentials token, valid for `ttl` seconds.
    pub fn ci_claims(&self, ttl: i64) -> Value {
        let now = jwt::now();
        json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": CI_CLIENT_ID,
            "client_id": CI_CLIENT_ID,
            "groups": CI_GROUPS,
            "jti": format!("minted-ci-{now}"),
            "iat": now,
            "exp": now + ttl,
        })
    }

    /// A token with the provider's header (`RS256`, `at+jwt`, its `kid`) and key.
    pub fn mint(&self, claims: &Value) -> Result<String> {
        jwt::mint(&jwt::default_header(), claims, &Signer::Provider)
    }

    /// A token with the given header, claims and signer (see [`crate::jwt`]).
    pub fn mint_with(&self, header: &Value, claims: &Value, signer: &Signer) -> Result<String> {
        jwt::mint(header, claims, signer)
    }

    /// POST a token request; returns status and JSON body. `basic` authenticates the
    /// client with HTTP Basic.
    pub async fn token_request(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.http.post(self.token_endpoint()).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.context("POST token endpoint")?;
        let status = resp.status();
        let text = resp.text().await.context("read token response")?;
        let body = serde_json::from_str(&text)
            .with_context(|| format!("token response (HTTP {status}) is not JSON: {text}"))?;
        Ok((status, body))
    }

    /// Client-credentials access token for a confidential client (e.g. `hoop-ci`, `ci-secret`).
    pub async fn client_credentials_token(&self, client_id: &str, secret: &str) -> Result<String> {
        let (status, body) = self
            .token_request(
                &[("grant_type", "client_credentials")],
                Some((client_id, secret)),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("client_credentials for {client_id}: HTTP {status}: {body}");
        }
        body.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no access_token in {body}"))
    }

    /// Start a device authorization for `hoop-cli` (what the CLI does first). Returns the
    /// provider's JSON response (`device_code`, `user_code`, `verification_uri`,
    /// `verification_uri_complete`, `expires_in`).
    pub async fn device_authorization(&self, scope: &str) -> Result<Value> {
        let resp = self
            .http
            .post(self.device_authorization_endpoint())
            .form(&[("client_id", CLI_CLIENT_ID), ("scope", scope)])
            .send()
            .await
            .context("POST device authorization endpoint")?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .context("parse device authorization response")?;
        if status != StatusCode::OK {
            bail!("device authorization: HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// Act as the user's browser: open `verification_uri` (or `verification_uri_complete`),
    /// enter and confirm `user_code`, sign in with `username`/`password`, approve the
    /// consent page, and check the provider reports success.
    ///
    /// A wrong password fails with an error containing "invalid username or password";
    /// an unknown or expired user code with one containing "user code rejected".
    pub async fn complete_device_login(
        &self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
        password: &str,
    ) -> Result<()> {
        self.drive_device_login(verification_uri, user_code, username, password, true)
            .await
    }

    /// Like [`OidcProvider::complete_device_login`], but the user presses "Deny" on the
    /// consent page; the device code then fails with `access_denied`.
    pub async fn deny_device_login(
        &self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
        password: &str,
    ) -> Result<()> {
        self.drive_device_login(verification_uri, user_code, username, password, false)
            .await
    }

    async fn drive_device_login(
        &self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
        password: &str,
        approve: bool,
    ) -> Result<()> {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .context("build browser HTTP client")?;
        let mut url = Url::parse(verification_uri)
            .with_context(|| format!("verification_uri {verification_uri:?}"))?;
        let mut pending: Option<Vec<(String, String)>> = None; // form to POST to `url`
        let mut logged_in = false;
        let mut trail: Vec<String> = Vec::new();

        for _step in 0..24 {
            let resp = match pending.take() {
                Some(form) => {
                    trail.push(format!("POST {url}"));
                    browser.post(url.clone()).form(&form).send().await
                }
                None => {
                    trail.push(format!("GET {url}"));
                    browser.get(url.clone()).send().await
                }
            }
            .with_context(|| format!("device login request to {url}"))?;
            let status = resp.status();

            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .with_context(|| format!("HTTP {status} without Location from {url}"))?
                    .to_owned();
                url = url
                    .join(&location)
                    .with_context(|| format!("bad Location {location:?}"))?;
                continue;
            }

            let html = resp.text().await.context("read device login page")?;
            let page_url = url.clone();
            let page_err = |what: &str| {
                anyhow!(
                    "device login: {what} (HTTP {status} at {page_url})\nsteps: {}\npage:\n{}",
                    trail.join(" -> "),
                    crate::proc::tail(&html, 3000)
                )
            };

            if html.contains("Sign-in Success") {
                if approve {
                    return Ok(());
                }
                return Err(page_err(
                    "provider reported success although consent was denied",
                ));
            }
            if html.contains("Invalid username or password") {
                return Err(page_err("invalid username or password"));
            }
            if html.contains("The code you entered is incorrect") {
                return Err(page_err("user code rejected"));
            }
            if html.contains("The Sign-in request was interrupted")
                || html.contains("access_denied")
            {
                if approve {
                    return Err(page_err("sign-in was aborted"));
                }
                return Ok(());
            }
            if !status.is_success() {
                return Err(page_err("unexpected HTTP status"));
            }

            if html.contains("<title>Submitting Callback</title>") {
                // Auto-submitting page (JavaScript in a browser): post its hidden inputs.
                let start = html
                    .find("<form")
                    .ok_or_else(|| page_err("callback form not found"))?;
                let end = html
                    .get(start..)
                    .and_then(|r| r.find("</form>"))
                    .ok_or_else(|| page_err("callback form not closed"))?
                    + start;
                let form = html
                    .get(start..end)
                    .ok_or_else(|| page_err("callback form"))?;
                url = form_action(&page_url, form).map_err(|e| page_err(&e.to_string()))?;
                pending = Some(hidden_inputs(form));
            } else if html.contains(r#"id="op.deviceConfirmForm""#) {
                let form = form_html(&html, "op.deviceConfirmForm")
                    .ok_or_else(|| page_err("confirm form not found"))?;
                url = form_action(&page_url, form).map_err(|e| page_err(&e.to_string()))?;
                let xsrf = input_value(form, "xsrf").ok_or_else(|| page_err("no xsrf token"))?;
                let code = input_value(form, "user_code").unwrap_or_else(|| user_code.to_owned());
                pending = Some(vec![
                    ("xsrf".into(), xsrf),
                    ("user_code".into(), code),
                    ("confirm".into(), "yes".into()),
                ]);
            } else if html.contains(r#"id="op.deviceInputForm""#) {
                let form = form_html(&html, "op.deviceInputForm")
                    .ok_or_else(|| page_err("user code form not found"))?;
                url = form_action(&page_url, form).map_err(|e| page_err(&e.to_string()))?;
                let xsrf = input_value(form, "xsrf").ok_or_else(|| page_err("no xsrf token"))?;
                pending = Some(vec![
                    ("xsrf".into(), xsrf),
                    ("user_code".into(), user_code.into()),
                ]);
            } else if html.contains(r#"id="login""#) {
                if logged_in {
                    return Err(page_err("login page shown again after signing in"));
                }
                logged_in = true;
                let form =
                    form_html(&html, "login").ok_or_else(|| page_err("login form not found"))?;
                url = form_action(&page_url, form).map_err(|e| page_err(&e.to_string()))?;
                pending = Some(vec![
                    ("username".into(), username.into()),
                    ("password".into(), password.into()),
                ]);
            } else if html.contains(r#"id="consent""#) {
                let form = form_html(&html, "consent")
                    .ok_or_else(|| page_err("consent form not found"))?;
                let action = form_action(&page_url, form).map_err(|e| page_err(&e.to_string()))?;
                url = if approve {
                    action
                } else {
                    // The deny form posts to .../abort next to .../confirm.
                    let s = action.as_str().replace("/confirm", "/abort");
                    Url::parse(&s).context("abort URL")?
                };
                pending = Some(Vec::new());
            } else {
                return Err(page_err("unrecognised page"));
            }
        }
        bail!(
            "device login did not finish after 24 requests: {}",
            trail.join(" -> ")
        )
    }
}

fn parse_listening_line(line: &str) -> Option<(u16, String)> {
    // "oidc-provider listening on http://127.0.0.1:PORT issuer=ISSUER"
    let rest = line.split("listening on http://127.0.0.1:").nth(1)?;
    let (port, rest) = rest.split_once(' ')?;
    let port: u16 = port.trim().parse().ok()?;
    let issuer = rest.trim().strip_prefix("issuer=")?.trim().to_owned();
    Some((port, issuer))
}

/// The HTML of the `<form id="ID" ...>...</form>` element.
fn form_html<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let marker = format!(r#"id="{id}""#);
    let at = html.find(&marker)?;
    let start = html.get(..at)?.rfind("<form")?;
    let end = html.get(start..)?.find("</form>")? + start;
    html.get(start..end)
}

/// Resolve the form's `action` against the page URL.
fn form_action(page: &Url, form: &str) -> Result<Url> {
    let action = attr(form, "action").context("form has no action")?;
    page.join(&html_unescape(&action))
        .with_context(|| format!("bad form action {action:?}"))
}

/// The `value` of `<input ... name="NAME" ... value="...">` in `html`.
fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}""#);
    let mut rest = html;
    while let Some(at) = rest.find(&marker) {
        let start = rest.get(..at)?.rfind('<')?;
        let end = rest.get(at..)?.find('>')? + at;
        let tag = rest.get(start..end)?;
        if tag.starts_with("<input") {
            return attr(tag, "value").map(|v| html_unescape(&v));
        }
        rest = rest.get(end..)?;
    }
    None
}

/// `(name, value)` of every `<input type="hidden" ...>` in `html`.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<input") {
        let Some(len) = rest.get(start..).and_then(|r| r.find('>')) else {
            break;
        };
        let tag = rest.get(start..start + len).unwrap_or_default();
        if tag.contains(r#"type="hidden""#)
            && let (Some(name), Some(value)) = (attr(tag, "name"), attr(tag, "value"))
        {
            out.push((html_unescape(&name), html_unescape(&value)));
        }
        rest = rest.get(start + len..).unwrap_or_default();
    }
    out
}

/// Value of the first `NAME="..."` attribute in `tag`.
fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(r#" {name}=""#);
    let at = tag.find(&marker)? + marker.len();
    let len = tag.get(at..)?.find('"')?;
    tag.get(at..at + len).map(str::to_owned)
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Path of the provider fixture directory.
pub fn fixture_dir() -> PathBuf {
    jwt::oidc_fixture_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let html = r#"<p>x</p><form id="op.deviceConfirmForm" method="post" action="http://127.0.0.1:1/device">
<input type="hidden" name="xsrf" value="abc"/>
<input type="hidden" name="user_code" value="AB-CD"/>
</form>"#;
        let form = form_html(html, "op.deviceConfirmForm").unwrap();
        assert_eq!(input_value(form, "xsrf").as_deref(), Some("abc"));
        assert_eq!(input_value(form, "user_code").as_deref(), Some("AB-CD"));
        let page = Url::parse("http://127.0.0.1:1/device?user_code=x").unwrap();
        assert_eq!(
            form_action(&page, form).unwrap().as_str(),
            "http://127.0.0.1:1/device"
        );
    }

    #[test]
    fn parses_listening_line() {
        assert_eq!(
            parse_listening_line(
                "oidc-provider listening on http://127.0.0.1:4321 issuer=http://127.0.0.1:4321"
            ),
            Some((4321, "http://127.0.0.1:4321".to_owned()))
        );
    }
}
