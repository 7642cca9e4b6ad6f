//! The built-in OIDC issuer: what `hoopd dev` and small teams use instead of an external IdP.
//!
//! It serves discovery, JWKS, the device authorization endpoint (RFC 8628), the token endpoint
//! (device_code and refresh_token grants) and a plain HTML verification page where a local user
//! enters the user code with their name and password. Tokens are EdDSA JWTs signed with a key
//! kept in the data dir, and are checked by the same verifier as external tokens.
//!
//! Pending device authorizations live in memory: a gateway restart makes users start `hoop
//! login` again. Refresh tokens are stored (hashed, single use).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{RefreshRecord, Store, StoreError, UserRecord};
use crate::util::{now_unix, random_chars, random_token, sha256_hex};

/// RFC 8628 user codes: no vowels (no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// How long a device code may be redeemed.
const DEVICE_CODE_TTL: Duration = Duration::from_secs(600);
/// Wrong user codes or passwords tolerated per minute before the page slows everyone down.
const FAILED_LOGINS_PER_MINUTE: u32 = 20;

/// The signing key and its public JWKS.
struct Keys {
    encoding: EncodingKey,
    kid: String,
    jwks: JwkSet,
}

impl Keys {
    /// Loads `issuer-ed25519.pem` from the data dir, creating it (0600) on first start.
    fn load_or_create(data_dir: &Path) -> Result<Keys, String> {
        let path = data_dir.join("issuer-ed25519.pem");
        let kp = if path.exists() {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read issuer key {}: {e}", path.display()))?;
            rcgen::KeyPair::from_pem(&pem)
                .map_err(|e| format!("issuer key {} is not a valid PEM key: {e}", path.display()))?
        } else {
            let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .map_err(|e| format!("cannot generate the issuer key: {e}"))?;
            crate::tls::write_private(&path, kp.serialize_pem().as_bytes())?;
            kp
        };
        let public = kp.public_key_raw();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(public))
            .chars()
            .take(16)
            .collect::<String>();
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({
            "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}]
        }))
        .map_err(|e| format!("cannot build the JWKS: {e}"))?;
        Ok(Keys {
            encoding: EncodingKey::from_ed_der(&kp.serialize_der()),
            kid,
            jwks,
        })
    }
}

#[derive(Debug, Clone)]
enum DeviceState {
    Pending,
    Approved { subject: String },
    Denied,
}

#[derive(Debug, Clone)]
struct DeviceGrant {
    user_code: String,
    client_id: String,
    scope: String,
    expires: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
    state: DeviceState,
}

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    /// Secret the client polls with.
    pub device_code: String,
    /// What the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// Same, with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds the codes stay valid.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// Token endpoint success (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The bearer token for the gateway.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    /// Single-use refresh token.
    pub refresh_token: String,
    /// An ID token with the same identity claims, audience = client id.
    pub id_token: String,
    /// Granted scope.
    pub scope: String,
}

/// Token endpoint error codes (RFC 6749 §5.2, RFC 8628 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The user has not finished yet.
    AuthorizationPending,
    /// The client polls too fast.
    SlowDown,
    /// The device code expired.
    ExpiredToken,
    /// The user refused.
    AccessDenied,
    /// Unknown or used grant.
    InvalidGrant(String),
    /// Wrong client.
    InvalidClient,
    /// Missing or malformed parameter.
    InvalidRequest(String),
    /// Not a grant we support.
    UnsupportedGrantType,
    /// Store or signing failed.
    ServerError,
}

impl TokenError {
    /// The `error` value on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::AuthorizationPending => "authorization_pending",
            TokenError::SlowDown => "slow_down",
            TokenError::ExpiredToken => "expired_token",
            TokenError::AccessDenied => "access_denied",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidClient => "invalid_client",
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::ServerError => "server_error",
        }
    }

    /// `error_description`.
    pub fn description(&self) -> String {
        match self {
            TokenError::AuthorizationPending => "the user has not approved yet".into(),
            TokenError::SlowDown => "polling too fast".into(),
            TokenError::ExpiredToken => "the device code expired; start `hoop login` again".into(),
            TokenError::AccessDenied => "the user denied the request".into(),
            TokenError::InvalidGrant(m) | TokenError::InvalidRequest(m) => m.clone(),
            TokenError::InvalidClient => "unknown client_id".into(),
            TokenError::UnsupportedGrantType => {
                "supported grants: urn:ietf:params:oauth:grant-type:device_code, refresh_token"
                    .into()
            }
            TokenError::ServerError => "the gateway could not issue a token".into(),
        }
    }
}

/// Outcome of the verification page's form.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The device is logged in as this user.
    Approved(String),
    /// The user pressed deny.
    Denied,
    /// Unknown, used or expired user code.
    BadCode,
    /// Wrong user name or password.
    BadCredentials,
    /// Too many failures recently; try again in a minute.
    Throttled,
}

/// Settings the issuer needs from the config.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// `iss`, and the base of every endpoint URL.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// The one public client.
    pub client_id: String,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Device flow polling interval.
    pub poll_interval: Duration,
}

/// The built-in issuer's state.
pub struct BuiltinIssuer {
    settings: IssuerSettings,
    keys: Keys,
    store: Arc<dyn Store>,
    grants: Mutex<HashMap<String, DeviceGrant>>,
    failures: Mutex<(Instant, u32)>,
}

impl BuiltinIssuer {
    /// Loads or creates the signing key in `data_dir`.
    pub fn new(
        settings: IssuerSettings,
        data_dir: &Path,
        store: Arc<dyn Store>,
    ) -> Result<Self, String> {
        Ok(Self {
            settings,
            keys: Keys::load_or_create(data_dir)?,
            store,
            grants: Mutex::new(HashMap::new()),
            failures: Mutex::new((Instant::now(), 0)),
        })
    }

    /// `iss`.
    pub fn issuer_url(&self) -> &str {
        &self.settings.issuer
    }

    /// The public keys.
    pub fn jwks(&self) -> JwkSet {
        self.keys.jwks.clone()
    }

    /// The OpenID discovery document.
    pub fn discovery(&self) -> serde_json::Value {
        let base = &self.settings.issuer;
        serde_json::json!({
            "issuer": base,
            // Only the device flow is served; the endpoint exists because discovery requires it.
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "device_authorization_endpoint": format!("{base}/oauth/device/code"),
            "token_endpoint": format!("{base}/oauth/token"),
            "jwks_uri": format!("{base}/oauth/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "profile", "groups", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "preferred_username", "groups"],
        })
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<String, DeviceGrant>> {
        // A poisoned lock only means another request panicked mid-update; the map is still usable.
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a device authorization.
    pub fn device_authorize(
        &self,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<DeviceAuthorization, TokenError> {
        if client_id != self.settings.client_id {
            return Err(TokenError::InvalidClient);
        }
        let device_code = random_token(32);
        let raw = random_chars(USER_CODE_ALPHABET, 8);
        let user_code = format!(
            "{}-{}",
            raw.get(..4).unwrap_or_default(),
            raw.get(4..).unwrap_or_default()
        );
        let now = Instant::now();
        let mut grants = self.grants();
        grants.retain(|_, g| g.expires > now);
        grants.insert(
            sha256_hex(device_code.as_bytes()),
            DeviceGrant {
                user_code: user_code.clone(),
                client_id: client_id.to_string(),
                scope: scope.unwrap_or("openid").to_string(),
                expires: now + DEVICE_CODE_TTL,
                interval: self.settings.poll_interval,
                last_poll: None,
                state: DeviceState::Pending,
            },
        );
        let base = &self.settings.issuer;
        Ok(DeviceAuthorization {
            device_code,
            verification_uri: format!("{base}/device"),
            verification_uri_complete: format!("{base}/device?user_code={user_code}"),
            user_code,
            expires_in: DEVICE_CODE_TTL.as_secs(),
            interval: self.settings.poll_interval.as_secs().max(1),
        })
    }

    /// Normalises what a person typed: case, spaces and the dash do not matter.
    fn normalise_user_code(code: &str) -> String {
        let c: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        match (c.get(..4), c.get(4..)) {
            (Some(a), Some(b)) if c.len() == 8 => format!("{a}-{b}"),
            _ => c,
        }
    }

    /// Whether a user code is pending (the page shows a friendly error early).
    pub fn user_code_pending(&self, code: &str) -> bool {
        let code = Self::normalise_user_code(code);
        let now = Instant::now();
        self.grants().values().any(|g| {
            g.user_code == code && g.expires > now && matches!(g.state, DeviceState::Pending)
        })
    }

    fn throttled(&self) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.0.elapsed() > Duration::from_secs(60) {
            *f = (Instant::now(), 0);
        }
        f.1 >= FAILED_LOGINS_PER_MINUTE
    }

    fn note_failure(&self) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.1 = f.1.saturating_add(1);
    }

    /// Handles the verification form: checks the code and the user's password.
    pub async fn verify_user(
        &self,
        user_code: &str,
        username: &str,
        password: &str,
        deny: bool,
    ) -> VerifyOutcome {
        if self.throttled() {
            return VerifyOutcome::Throttled;
        }
        let code = Self::normalise_user_code(user_code);
        if !self.user_code_pending(&code) {
            self.note_failure();
            return VerifyOutcome::BadCode;
        }
        if deny {
            self.set_state(&code, DeviceState::Denied);
            return VerifyOutcome::Denied;
        }
        let user = match self.store.user_get(username).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                None
            }
        };
        // Verify against a dummy hash when the user does not exist, so timing does not reveal
        // which user names exist.
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        let ok =
            crate::auth::password::verify_async(password.to_string(), phc).await && user.is_some();
        if !ok {
            self.note_failure();
            return VerifyOutcome::BadCredentials;
        }
        self.set_state(
            &code,
            DeviceState::Approved {
                subject: username.to_string(),
            },
        );
        VerifyOutcome::Approved(username.to_string())
    }

    fn set_state(&self, code: &str, state: DeviceState) {
        if let Some(g) = self.grants().values_mut().find(|g| g.user_code == code) {
            g.state = state;
        }
    }

    /// The device_code grant.
    pub async fn redeem_device_code(
        &self,
        device_code: &str,
        client_id: &str,
    ) -> Result<(TokenResponse, String), TokenError> {
        let key = sha256_hex(device_code.as_bytes());
        let grant = {
            let mut grants = self.grants();
            let g = grants.get_mut(&key).ok_or_else(|| {
                TokenError::InvalidGrant("unknown or already used device_code".into())
            })?;
            if g.client_id != client_id {
                return Err(TokenError::InvalidClient);
            }
            let now = Instant::now();
            if g.expires <= now {
                grants.remove(&key);
                return Err(TokenError::ExpiredToken);
            }
            match &g.state {
                DeviceState::Pending => {
                    // RFC 8628 §3.5: polling faster than the interval earns slow_down and a
                    // longer interval.
                    let too_fast = g.last_poll.is_some_and(|t| {
                        now.duration_since(t) + Duration::from_millis(200) < g.interval
                    });
                    g.last_poll = Some(now);
                    if too_fast {
                        g.interval += Duration::from_secs(5);
                        return Err(TokenError::SlowDown);
                    }
                    return Err(TokenError::AuthorizationPending);
                }
                DeviceState::Denied => {
                    grants.remove(&key);
                    return Err(TokenError::AccessDenied);
                }
                DeviceState::Approved { .. } => grants.remove(&key),
            }
        };
        let Some(DeviceGrant {
            state: DeviceState::Approved { subject },
            scope,
            ..
        }) = grant
        else {
            return Err(TokenError::ServerError);
        };
        let user = self.user(&subject).await?;
        Ok((self.mint(&user, &scope).await?, subject))
    }

    /// The refresh_token grant: single use, rotated on every refresh.
    pub async fn redeem_refresh_token(
        &self,
        refresh_token: &str,
        client_id: &str,
    ) -> Result<(TokenResponse, String), TokenError> {
        let rec = self
            .store
            .refresh_take(&sha256_hex(refresh_token.as_bytes()))
            .await
            .map_err(store_err)?
            .ok_or_else(|| {
                TokenError::InvalidGrant(
                    "unknown, used or revoked refresh token; run `hoop login`".into(),
                )
            })?;
        if rec.client_id != client_id {
            return Err(TokenError::InvalidClient);
        }
        if rec.expires_at <= now_unix() {
            return Err(TokenError::InvalidGrant(
                "refresh token expired; run `hoop login`".into(),
            ));
        }
        let user = self.user(&rec.subject).await?;
        Ok((self.mint(&user, &rec.scope).await?, rec.subject))
    }

    async fn user(&self, name: &str) -> Result<UserRecord, TokenError> {
        self.store
            .user_get(name)
            .await
            .map_err(store_err)?
            .ok_or_else(|| TokenError::InvalidGrant(format!("user {name:?} no longer exists")))
    }

    async fn mint(&self, user: &UserRecord, scope: &str) -> Result<TokenResponse, TokenError> {
        let now = now_unix();
        let s = &self.settings;
        let access_ttl = s.access_ttl.as_secs();
        let claims = |aud: &str| {
            serde_json::json!({
                "iss": s.issuer,
                "sub": user.name,
                "aud": aud,
                "iat": now,
                "nbf": now,
                "exp": now + access_ttl as i64,
                "jti": random_token(12),
                "preferred_username": user.name,
                "groups": user.groups,
                "scope": scope,
            })
        };
        let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.keys.kid.clone());
        let sign = |c: serde_json::Value| {
            jsonwebtoken::encode(&header, &c, &self.keys.encoding).map_err(|e| {
                tracing::error!(error = %e, "token signing failed");
                TokenError::ServerError
            })
        };
        let access_token = sign(claims(&s.audience))?;
        let id_token = sign(claims(&s.client_id))?;
        let refresh_token = random_token(32);
        self.store
            .refresh_put(&RefreshRecord {
                token_hash: sha256_hex(refresh_token.as_bytes()),
                subject: user.name.clone(),
                client_id: s.client_id.clone(),
                scope: scope.to_string(),
                expires_at: now + s.refresh_ttl.as_secs() as i64,
            })
            .await
            .map_err(store_err)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: access_ttl,
            refresh_token,
            id_token,
            scope: scope.to_string(),
        })
    }
}

fn store_err(e: StoreError) -> TokenError {
    tracing::error!(error = %e, "store failed in the token endpoint");
    TokenError::ServerError
}

/// An argon2id hash of a random string nobody knows, verified when a user name does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3sMS3d7MgmyHf5ssJmhvqJxbTT+ljCwoYgbv1rQnLP4";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    async fn issuer(dir: &Path) -> BuiltinIssuer {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir).await.unwrap());
        store
            .user_create(&UserRecord {
                name: "alice".into(),
                password_hash: crate::auth::password::hash("pw").unwrap(),
                groups: vec!["dba".into()],
                created_at: 0,
            })
            .await
            .unwrap();
        BuiltinIssuer::new(
            IssuerSettings {
                issuer: "https://gw.test".into(),
                audience: "hoop".into(),
                client_id: "hoop-cli".into(),
                access_ttl: Duration::from_secs(60),
                refresh_ttl: Duration::from_secs(600),
                poll_interval: Duration::from_secs(1),
            },
            dir,
            store,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn device_flow_then_refresh_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let iss = issuer(dir.path()).await;
        let auth = iss.device_authorize("hoop-cli", Some("openid")).unwrap();
        assert_eq!(
            iss.redeem_device_code(&auth.device_code, "hoop-cli")
                .await
                .err(),
            Some(TokenError::AuthorizationPending)
        );
        assert_eq!(
            iss.verify_user(&auth.user_code.to_lowercase(), "alice", "wrong", false)
                .await,
            VerifyOutcome::BadCredentials
        );
        assert_eq!(
            iss.verify_user(&auth.user_code, "alice", "pw", false).await,
            VerifyOutcome::Approved("alice".into())
        );
        let (tok, who) = iss
            .redeem_device_code(&auth.device_code, "hoop-cli")
            .await
            .unwrap();
        assert_eq!(who, "alice");
        // The device code is single use.
        assert!(matches!(
            iss.redeem_device_code(&auth.device_code, "hoop-cli").await,
            Err(TokenError::InvalidGrant(_))
        ));
        let (tok2, _) = iss
            .redeem_refresh_token(&tok.refresh_token, "hoop-cli")
            .await
            .unwrap();
        assert_ne!(tok2.access_token, tok.access_token);
        assert!(
            iss.redeem_refresh_token(&tok.refresh_token, "hoop-cli")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn fast_polling_slows_down_and_denial_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let iss = issuer(dir.path()).await;
        let auth = iss.device_authorize("hoop-cli", None).unwrap();
        let _ = iss.redeem_device_code(&auth.device_code, "hoop-cli").await;
        assert_eq!(
            iss.redeem_device_code(&auth.device_code, "hoop-cli")
                .await
                .err(),
            Some(TokenError::SlowDown)
        );
        assert_eq!(
            iss.verify_user(&auth.user_code, "", "", true).await,
            VerifyOutcome::Denied
        );
        assert_eq!(
            iss.redeem_device_code(&auth.device_code, "hoop-cli")
                .await
                .err(),
            Some(TokenError::AccessDenied)
        );
        assert!(iss.device_authorize("other", None).is_err());
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(!crate::auth::password::verify("x", DUMMY_HASH));
        assert!(argon2::password_hash::phc::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
