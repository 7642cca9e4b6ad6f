//! JWT verification for bearer tokens from the configured OIDC issuer (an external IdP or hoop's
//! built-in issuer) and for external workload tokens.
//!
//! `jsonwebtoken` does the signature maths; everything around it is done here because its
//! defaults are loose and it trusts more of the token than a gateway should:
//!
//! * The header is parsed by hand first, so `alg: none` (which `jsonwebtoken` cannot even
//!   represent) and unknown algorithms get a precise rejection, and the algorithm is checked
//!   against our allow-list before any key is chosen. HMAC algorithms are refused outright: a
//!   JWKS holds public keys, and accepting `HS256` is the classic "public key used as HMAC
//!   secret" forgery.
//! * The key is chosen by `kid`, and the key's type (and its `alg` member, when present) must fit
//!   the token's algorithm, so a token can never steer which verification method a key is used with.
//! * Leeway, `nbf`, required claims, issuer and audience are set explicitly, and `iat`, exact
//!   string `iss` and a non-empty `sub` are checked here (`jsonwebtoken` ignores `iat` and accepts
//!   an array `iss`).
//!
//! Remote key sets are cached; an unknown `kid` triggers a refetch (key rotation), rate-limited
//! so that a flood of junk `kid`s cannot turn the gateway into a load generator against the IdP.

use std::str::FromStr as _;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Algorithms accepted when the configuration does not narrow them: every asymmetric algorithm
/// `jsonwebtoken` implements. Never `none`, never `HS*`.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Default clock-skew allowance for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Upper bound on configured leeway. Larger values defeat expiry, and `jsonwebtoken` adds the
/// leeway to the current time without overflow checks.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Tokens larger than this are rejected before any parsing. Real access tokens with large group
/// lists stay well below it; the bound keeps base64/JSON work on hostile input small.
const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// A JWKS is a handful of public keys; anything this large is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Per-request timeout for JWKS fetches, so a hanging IdP cannot stall token verification.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// After a *failed* fetch, retry sooner than `min_refetch_interval`: otherwise one IdP blip at
/// start-up would lock everyone out for the whole interval. Still bounded, so junk `kid`s during
/// an outage cost at most one request per this period.
const FAILED_FETCH_RETRY: Duration = Duration::from_secs(5);

/// Longest attacker-controlled string (`alg`, `kid`) copied into a rejection, which ends up in
/// audit records and logs.
const MAX_ECHOED_CHARS: usize = 64;

/// What a token must satisfy to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicy {
    /// Expected `iss`, compared as an exact string (a trailing slash matters).
    pub issuer: String,
    /// Accepted audiences: the token's `aud` (string or array) must contain at least one of them.
    /// Empty means no token is accepted.
    pub audiences: Vec<String>,
    /// Allowed signature algorithms. `HS*` entries are ignored (see the module docs).
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`; capped at [`MAX_LEEWAY`].
    pub leeway: Duration,
}

impl JwtPolicy {
    /// A policy with the default algorithm allow-list and leeway.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: DEFAULT_LEEWAY,
        }
    }
}

/// Where verification keys come from.
// One per verifier, so the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum KeySource {
    /// A fixed key set, e.g. the built-in issuer's own public keys.
    Local(JwkSet),
    /// The IdP's `jwks_uri`, cached and refetched on key rotation.
    Remote(JwksCache),
}

/// Why fetching a JWKS failed. Messages name the URL and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The request did not complete (DNS, connect, TLS, timeout).
    #[error(
        "fetching the JWKS from {uri} failed: {reason}; check that hoopd can reach the IdP \
         (the jwks_uri comes from the discovery document of [auth].issuer)"
    )]
    Request {
        /// The JWKS URL.
        uri: String,
        /// The underlying error, with its causes.
        reason: String,
    },
    /// The IdP answered with a non-success status.
    #[error(
        "fetching the JWKS from {uri} failed: HTTP {status}; check [auth].issuer (the jwks_uri \
         comes from its discovery document) and the IdP's health"
    )]
    Status {
        /// The JWKS URL.
        uri: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The response was implausibly large.
    #[error("the JWKS at {uri} is larger than {limit} bytes; refusing it (is jwks_uri right?)")]
    TooLarge {
        /// The JWKS URL.
        uri: String,
        /// The size limit in bytes.
        limit: usize,
    },
    /// The body is not a JWK set.
    #[error(
        "the document at {uri} is not a JWK set: {reason}; check that jwks_uri points at the IdP's JWKS"
    )]
    Parse {
        /// The JWKS URL.
        uri: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The set parsed but none of its keys can verify signatures.
    #[error(
        "the JWKS at {uri} contains no usable signature keys (RSA, EC P-256/P-384 or Ed25519); \
         keeping the previous keys"
    )]
    NoUsableKeys {
        /// The JWKS URL.
        uri: String,
    },
}

/// Cached view of a remote JWKS, refetched on demand (unknown `kid`) at most once per
/// `min_refetch_interval`.
pub struct JwksCache {
    jwks_uri: url::Url,
    http: reqwest::Client,
    min_refetch_interval: Duration,
    /// Never held across an `.await`: readers clone the `Arc` and let go.
    state: RwLock<CacheState>,
    /// Serialises fetches so that many concurrent misses produce one request, not one each.
    fetch_gate: tokio::sync::Mutex<()>,
}

struct CacheState {
    keys: Arc<JwkSet>,
    /// Incremented on every completed fetch attempt; lets a waiter see that someone else fetched
    /// while it queued on the gate.
    attempts: u64,
    last_attempt: Option<Instant>,
    /// The error of the latest attempt, `None` if it succeeded (or none was made yet).
    last_error: Option<JwksError>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("JwksCache")
            .field("jwks_uri", &self.jwks_uri.as_str())
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("keys", &state.keys.keys.len())
            .field("last_error", &state.last_error)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache for `jwks_uri`, initially empty: the first verification (or an explicit
    /// [`JwksCache::refresh`] at start-up) fetches the keys.
    pub fn new(http: reqwest::Client, jwks_uri: url::Url, min_refetch_interval: Duration) -> Self {
        Self {
            jwks_uri,
            http,
            min_refetch_interval,
            state: RwLock::new(CacheState {
                keys: Arc::new(JwkSet { keys: Vec::new() }),
                attempts: 0,
                last_attempt: None,
                last_error: None,
            }),
            fetch_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The URL keys are fetched from.
    pub fn jwks_uri(&self) -> &url::Url {
        &self.jwks_uri
    }

    /// The currently cached keys.
    pub fn keys(&self) -> Arc<JwkSet> {
        Arc::clone(&self.read_state().keys)
    }

    /// Fetch the key set now, regardless of the rate limit (for start-up and periodic refresh,
    /// which also ages out keys the IdP has withdrawn). On failure the previous keys are kept.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let _gate = self.fetch_gate.lock().await;
        self.fetch_and_store().await
    }

    /// Refetch after a key lookup missed, unless the rate limit says no. `seen_attempts` is the
    /// attempt counter the caller observed with the keys it searched: if a fetch completed since
    /// then, the caller should just look again instead of fetching once more.
    async fn refetch_after_miss(&self, seen_attempts: u64) {
        let _gate = self.fetch_gate.lock().await;
        {
            let state = self.read_state();
            if state.attempts != seen_attempts {
                return;
            }
            if let Some(last) = state.last_attempt {
                let wait = if state.last_error.is_some() {
                    self.min_refetch_interval.min(FAILED_FETCH_RETRY)
                } else {
                    self.min_refetch_interval
                };
                if last.elapsed() < wait {
                    tracing::debug!(jwks_uri = %crate::util::url_for_logs(self.jwks_uri.as_str()), "unknown key; JWKS refetch rate-limited");
                    return;
                }
            }
        }
        // The outcome is recorded in the state; callers read it from there.
        let _ = self.fetch_and_store().await;
    }

    /// One fetch, recorded in the state. Callers hold `fetch_gate`.
    async fn fetch_and_store(&self) -> Result<(), JwksError> {
        let result = self.fetch().await;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.attempts = state.attempts.wrapping_add(1);
        state.last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                tracing::info!(jwks_uri = %crate::util::url_for_logs(self.jwks_uri.as_str()), keys = keys.keys.len(), "fetched JWKS");
                state.keys = Arc::new(keys);
                state.last_error = None;
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "JWKS fetch failed");
                state.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let uri = crate::util::url_for_logs(self.jwks_uri.as_str());
        let response = self
            .http
            .get(self.jwks_uri.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .timeout(JWKS_FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|err| JwksError::Request {
                uri: uri.clone(),
                reason: error_chain(&err.without_url()),
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status {
                uri,
                status: status.as_u16(),
            });
        }
        let body = match read_body_limited(response, MAX_JWKS_BYTES).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(JwksError::TooLarge {
                    uri,
                    limit: MAX_JWKS_BYTES,
                });
            }
            Err(BodyError::Read(reason)) => return Err(JwksError::Request { uri, reason }),
        };
        parse_jwks(&uri, &body)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, CacheState> {
        // Poisoning only means another thread panicked mid-update of plain data; the data is
        // still a consistent snapshot (every field is replaced whole), so keep serving.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Parse a JWKS leniently: keys this crate cannot represent (or that are not signature keys) are
/// skipped rather than failing the whole set, because IdPs publish encryption keys and newer key
/// types next to the signing keys.
fn parse_jwks(uri: &str, body: &[u8]) -> Result<JwkSet, JwksError> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(|err| JwksError::Parse {
        uri: uri.to_owned(),
        reason: err.to_string(),
    })?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    for value in raw.keys {
        match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) if is_signature_key(&jwk) => keys.push(jwk),
            Ok(jwk) => {
                tracing::debug!(kid = ?jwk.common.key_id, "skipping non-signature JWK");
            }
            Err(err) => tracing::debug!(error = %err, "skipping unparseable JWK"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys {
            uri: uri.to_owned(),
        });
    }
    Ok(JwkSet { keys })
}

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The `sub` claim (non-empty).
    pub subject: String,
    /// All claims, for group extraction and audit.
    pub claims: Map<String, Value>,
    /// The `exp` claim, seconds since the Unix epoch.
    pub expires_at: Option<i64>,
}

/// Why a token was rejected. [`TokenRejection::code`] gives a stable short reason for audit
/// records; the `Display` text is for operators and never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a well-formed JWS compact token, or a claim has the wrong type.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is not in the allow-list (includes `none` and every `HS*`).
    #[error("token algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// No key matches the token's `kid` (or, without a `kid`, no single key fits).
    #[error("{}", match .0 {
        Some(kid) => format!("no verification key with kid {kid:?}"),
        None => "token has no kid and the key set has no single matching key".to_owned(),
    })]
    UnknownKey(Option<String>),
    /// The key named by `kid` is of a different type than the token's algorithm needs, or its
    /// `alg`/`use`/`key_ops` members forbid this use.
    #[error("the key selected by kid does not fit the token's algorithm")]
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is missing or not exactly the configured issuer.
    #[error("token issuer does not match the configured issuer")]
    WrongIssuer,
    /// `aud` is missing or contains none of the configured audiences.
    #[error("token audience does not include this gateway")]
    WrongAudience,
    /// `sub` is missing, empty or not a string.
    #[error("token has no subject")]
    MissingSubject,
    /// Verification keys could not be obtained (IdP unreachable, bad JWKS).
    #[error("verification keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl TokenRejection {
    /// Short, stable, snake_case reason for audit records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::AlgorithmNotAllowed(_) => "alg_not_allowed",
            Self::UnknownKey(_) => "unknown_kid",
            Self::KeyAlgorithmMismatch => "key_alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingSubject => "missing_subject",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

/// Verifies bearer tokens against a policy and a key source.
#[derive(Debug)]
pub struct TokenVerifier {
    policy: JwtPolicy,
    keys: KeySource,
}

impl TokenVerifier {
    /// Build a verifier. `HS*` algorithms are dropped from the policy and the leeway is capped at
    /// [`MAX_LEEWAY`], each with a warning, rather than failing: both are fail-safe adjustments.
    pub fn new(mut policy: JwtPolicy, keys: KeySource) -> Self {
        if policy.algorithms.iter().any(|alg| is_hmac(*alg)) {
            tracing::warn!(
                "ignoring HS* algorithms in the JWT allow-list: tokens are verified with public keys only"
            );
            policy.algorithms.retain(|alg| !is_hmac(*alg));
        }
        if policy.leeway > MAX_LEEWAY {
            tracing::warn!(
                configured = ?policy.leeway,
                max = ?MAX_LEEWAY,
                "JWT leeway too large; capping it"
            );
            policy.leeway = MAX_LEEWAY;
        }
        Self { policy, keys }
    }

    /// The effective policy (after the adjustments made by [`TokenVerifier::new`]).
    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    /// Refetch a remote key set now, regardless of the rate limit (start-up, periodic refresh so
    /// that keys the IdP withdrew stop being accepted). A no-op for local keys.
    pub async fn refresh_keys(&self) -> Result<(), JwksError> {
        match &self.keys {
            KeySource::Local(_) => Ok(()),
            KeySource::Remote(cache) => cache.refresh().await,
        }
    }

    /// Verify a compact JWS token: header and algorithm, key selection, signature, then claims.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenRejection> {
        let header = parse_header(token, &self.policy.algorithms)?;
        let key = self.select_key(&header).await?;
        let claims = self.check_signature_and_claims(token, header.alg, &key)?;
        self.finish_claims(claims)
    }

    async fn select_key(&self, header: &ParsedHeader) -> Result<DecodingKey, TokenRejection> {
        let kid = header.kid.as_deref();
        let jwk = match &self.keys {
            KeySource::Local(set) => find_key(set, kid, header.alg)?.clone(),
            KeySource::Remote(cache) => {
                let (keys, attempts) = {
                    let state = cache.read_state();
                    (Arc::clone(&state.keys), state.attempts)
                };
                match find_key(&keys, kid, header.alg) {
                    Ok(jwk) => jwk.clone(),
                    // Only a miss can be cured by rotation; a type mismatch or an ambiguous
                    // kid-less token would look the same after a refetch.
                    Err(TokenRejection::UnknownKey(_)) if !is_ambiguous(&keys, kid, header.alg) => {
                        cache.refetch_after_miss(attempts).await;
                        let (keys, last_error) = {
                            let state = cache.read_state();
                            (Arc::clone(&state.keys), state.last_error.clone())
                        };
                        match find_key(&keys, kid, header.alg) {
                            Ok(jwk) => jwk.clone(),
                            // The key set may be stale because the IdP is failing: say so rather
                            // than blaming the token.
                            Err(TokenRejection::UnknownKey(_)) if last_error.is_some() => {
                                return Err(TokenRejection::KeysUnavailable(
                                    last_error.map(|e| e.to_string()).unwrap_or_default(),
                                ));
                            }
                            Err(rejection) => return Err(rejection),
                        }
                    }
                    Err(rejection) => return Err(rejection),
                }
            }
        };
        DecodingKey::from_jwk(&jwk).map_err(|err| {
            TokenRejection::KeysUnavailable(format!(
                "the JWK {} cannot be used: {err}",
                jwk.common.key_id.as_deref().map_or_else(
                    || "without kid".to_owned(),
                    |kid| format!("with kid {:?}", echo(kid))
                )
            ))
        })
    }

    fn check_signature_and_claims(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
    ) -> Result<Map<String, Value>, TokenRejection> {
        // Every knob is set: the defaults (60 s leeway, nbf off, only exp required) are too loose.
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = self.policy.leeway.as_secs();
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[self.policy.issuer.as_str()]);
        validation.set_audience(&self.policy.audiences);
        validation.sub = None;

        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|err| map_jwt_error(err.kind()))
    }

    fn finish_claims(&self, claims: Map<String, Value>) -> Result<VerifiedToken, TokenRejection> {
        // jsonwebtoken accepts an array `iss` if any element matches; an issuer is one string.
        if claims.get("iss").and_then(Value::as_str) != Some(self.policy.issuer.as_str()) {
            return Err(TokenRejection::WrongIssuer);
        }
        let subject = match claims.get("sub").and_then(Value::as_str) {
            Some(sub) if !sub.is_empty() => sub.to_owned(),
            _ => return Err(TokenRejection::MissingSubject),
        };
        // jsonwebtoken does not look at `iat`; a token "issued" in the future is a clock or
        // forgery problem either way.
        if let Some(iat) = claims.get("iat") {
            let iat = iat.as_f64().ok_or_else(|| {
                TokenRejection::Malformed("the iat claim is not a number".to_owned())
            })?;
            let limit = now_secs().saturating_add(self.policy.leeway.as_secs());
            #[allow(clippy::cast_precision_loss)] // timestamps are far below 2^53
            if iat > limit as f64 {
                return Err(TokenRejection::NotYetValid);
            }
        }
        let expires_at = claims.get("exp").and_then(|exp| {
            exp.as_i64()
                // jsonwebtoken accepts fractional `exp` and rounds it; report the same value.
                .or_else(|| exp.as_f64().map(|secs| secs.round() as i64))
        });
        Ok(VerifiedToken {
            subject,
            claims,
            expires_at,
        })
    }
}

struct ParsedHeader {
    alg: Algorithm,
    kid: Option<String>,
}

/// Decode and check the header without `jsonwebtoken`, which cannot parse `alg: none` and would
/// report every unknown algorithm as a generic JSON error.
fn parse_header(token: &str, allowed: &[Algorithm]) -> Result<ParsedHeader, TokenRejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenRejection::Malformed(format!(
            "token is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed(
            "expected three dot-separated parts (JWS compact serialization)".to_owned(),
        ));
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenRejection::Malformed("the header is not base64url".to_owned()))?;
    let header: Map<String, Value> = serde_json::from_slice(&header_json)
        .map_err(|_| TokenRejection::Malformed("the header is not a JSON object".to_owned()))?;

    let alg_name = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        Some(_) => {
            return Err(TokenRejection::Malformed(
                "the header alg is not a string".to_owned(),
            ));
        }
        None => {
            return Err(TokenRejection::Malformed(
                "the header has no alg".to_owned(),
            ));
        }
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(TokenRejection::AlgorithmNotAllowed("none".to_owned()));
    }
    let alg = match Algorithm::from_str(alg_name) {
        Ok(alg) if !is_hmac(alg) && allowed.contains(&alg) => alg,
        _ => return Err(TokenRejection::AlgorithmNotAllowed(echo(alg_name))),
    };
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood, and we understand none
    // (e.g. `b64: false` would change what the signature covers).
    if header.contains_key("crit") {
        return Err(TokenRejection::Malformed(
            "the header lists critical extensions (crit), which are not supported".to_owned(),
        ));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => {
            return Err(TokenRejection::Malformed(
                "the header kid is not a string".to_owned(),
            ));
        }
    };
    Ok(ParsedHeader { alg, kid })
}

/// Pick the key for a token: by `kid` when present, otherwise the one key that fits `alg`.
/// Returns `UnknownKey` for a miss (which a refetch may cure) and `KeyAlgorithmMismatch` when the
/// named key exists but may not be used with this algorithm.
fn find_key<'a>(
    set: &'a JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'a Jwk, TokenRejection> {
    match kid {
        Some(kid) => {
            let mut named = set
                .keys
                .iter()
                .filter(|jwk| jwk.common.key_id.as_deref() == Some(kid))
                .peekable();
            if named.peek().is_none() {
                return Err(TokenRejection::UnknownKey(Some(echo(kid))));
            }
            named
                .find(|jwk| key_fits(jwk, alg))
                .ok_or(TokenRejection::KeyAlgorithmMismatch)
        }
        None => {
            let mut fitting = set.keys.iter().filter(|jwk| key_fits(jwk, alg));
            match (fitting.next(), fitting.next()) {
                (Some(jwk), None) => Ok(jwk),
                _ => Err(TokenRejection::UnknownKey(None)),
            }
        }
    }
}

/// A kid-less token with several fitting keys: refetching cannot disambiguate it.
fn is_ambiguous(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> bool {
    kid.is_none() && set.keys.iter().filter(|jwk| key_fits(jwk, alg)).count() > 1
}

/// Whether `jwk` may verify a signature made with `alg`: the key type and curve must match the
/// algorithm family, and the optional `alg`, `use` and `key_ops` members must permit it.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if !is_signature_key(jwk) {
        return false;
    }
    if let Some(key_alg) = jwk.common.key_algorithm
        && key_alg_as_alg(key_alg) != Some(alg)
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

/// Keys that can verify signatures at all: asymmetric, not marked for encryption only.
fn is_signature_key(jwk: &Jwk) -> bool {
    let use_ok = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let ops_ok = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    let type_ok = matches!(
        jwk.algorithm,
        AlgorithmParameters::RSA(_)
            | AlgorithmParameters::EllipticCurve(_)
            | AlgorithmParameters::OctetKeyPair(_)
    );
    let alg_ok = jwk
        .common
        .key_algorithm
        .is_none_or(|key_alg| key_alg_as_alg(key_alg).is_some_and(|alg| !is_hmac(alg)));
    use_ok && ops_ok && type_ok && alg_ok
}

/// The JWK `alg` member as a signature algorithm (`None` for encryption or unknown algorithms).
fn key_alg_as_alg(key_alg: KeyAlgorithm) -> Option<Algorithm> {
    // KeyAlgorithm's Display is its JOSE name, which Algorithm parses.
    Algorithm::from_str(&key_alg.to_string()).ok()
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn map_jwt_error(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::InvalidSignature => TokenRejection::BadSignature,
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => TokenRejection::WrongIssuer,
            "aud" => TokenRejection::WrongAudience,
            "sub" => TokenRejection::MissingSubject,
            other => TokenRejection::Malformed(format!("the token has no {other} claim")),
        },
        ErrorKind::InvalidClaimFormat(claim) => {
            TokenRejection::Malformed(format!("the {claim} claim has the wrong type"))
        }
        // We pick the key to fit the algorithm, so this means the key material itself is bad.
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => TokenRejection::KeyAlgorithmMismatch,
        ErrorKind::Base64(_) => TokenRejection::Malformed("a part is not base64url".to_owned()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            TokenRejection::Malformed("the header or claims are not valid JSON".to_owned())
        }
        ErrorKind::InvalidToken => TokenRejection::Malformed("not a JWS compact token".to_owned()),
        other => TokenRejection::Malformed(format!("{other:?}")),
    }
}

/// Attacker-controlled header values are echoed in rejections (and so in audit records): keep
/// them short and printable.
fn echo(value: &str) -> String {
    value
        .chars()
        .take(MAX_ECHOED_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error and its causes on one line: reqwest's top-level message alone ("error sending
/// request") does not say whether DNS, TLS or the connection failed.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a size-limited body read failed.
pub(crate) enum BodyError {
    /// The body exceeded the limit.
    TooLarge,
    /// The connection failed mid-body.
    Read(String),
}

/// Read a response body, refusing to buffer more than `limit` bytes (IdP responses are small;
/// a misconfigured URL pointing at something huge should not exhaust memory).
pub(crate) async fn read_body_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| BodyError::Read(error_chain(&err.without_url())))?
    {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISSUER: &str = "https://idp.example.test";
    const AUDIENCE: &str = "hoop";

    struct TestKey {
        encoding: EncodingKey,
        jwk: Jwk,
        alg: Algorithm,
        /// The public key as PEM, for the HS256 key-confusion test.
        public_pem: String,
    }

    fn key(alg: Algorithm, kid: Option<&str>) -> TestKey {
        let (rcgen_alg, from_pem): (_, fn(&[u8]) -> _) = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
                (&rcgen::PKCS_RSA_SHA256, EncodingKey::from_rsa_pem)
            }
            Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, EncodingKey::from_ec_pem),
            Algorithm::ES384 => (&rcgen::PKCS_ECDSA_P384_SHA384, EncodingKey::from_ec_pem),
            Algorithm::EdDSA => (&rcgen::PKCS_ED25519, EncodingKey::from_ed_pem),
            other => panic!("no test key for {other:?}"),
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
        let encoding = from_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut jwk = if alg == Algorithm::EdDSA {
            // Jwk::from_encoding_key only accepts 48-byte PKCS#8 v1 Ed25519 keys; rcgen (aws-lc)
            // writes v2 (with the public key), so build the OKP JWK from the raw public key.
            serde_json::from_value(json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
            }))
            .unwrap()
        } else {
            Jwk::from_encoding_key(&encoding, alg).unwrap()
        };
        jwk.common.key_id = kid.map(str::to_owned);
        TestKey {
            encoding,
            jwk,
            alg,
            public_pem: pair.public_key_pem(),
        }
    }

    fn now() -> i64 {
        i64::try_from(now_secs()).unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now(),
            "exp": now() + 300,
            "groups": ["dba"],
        })
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    fn sign(key: &TestKey, claims: &Value) -> String {
        let mut header = Header::new(key.alg);
        header.kid = key.jwk.common.key_id.clone();
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    fn policy() -> JwtPolicy {
        JwtPolicy::new(ISSUER, vec![AUDIENCE.to_owned()])
    }

    fn local(keys: &[&TestKey]) -> TokenVerifier {
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        TokenVerifier::new(policy(), KeySource::Local(set))
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    async fn rejection(verifier: &TokenVerifier, token: &str) -> TokenRejection {
        verifier
            .verify(token)
            .await
            .expect_err("token should be rejected")
    }

    #[tokio::test]
    async fn accepts_valid_rs256_token() {
        let k = key(Algorithm::RS256, Some("rsa-1"));
        let exp = now() + 300;
        let token = sign(&k, &with(claims(), "exp", json!(exp)));
        let verified = local(&[&k]).verify(&token).await.unwrap();
        assert_eq!(verified.subject, "alice");
        assert_eq!(verified.expires_at, Some(exp));
        assert_eq!(verified.claims["groups"], json!(["dba"]));
    }

    #[tokio::test]
    async fn accepts_valid_eddsa_es256_es384_and_ps256_tokens() {
        for alg in [
            Algorithm::EdDSA,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::PS256,
        ] {
            let k = key(alg, Some("k"));
            let verified = local(&[&k]).verify(&sign(&k, &claims())).await;
            assert_eq!(
                verified.map(|v| v.subject),
                Ok("alice".to_owned()),
                "{alg:?}"
            );
        }
    }

    #[tokio::test]
    async fn accepts_audience_array_containing_ours() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let token = sign(&k, &with(claims(), "aud", json!(["other", AUDIENCE])));
        assert!(local(&[&k]).verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn rejects_expired_but_honours_leeway() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let v = local(&[&k]);
        let expired = sign(&k, &with(claims(), "exp", json!(now() - 120)));
        assert_eq!(rejection(&v, &expired).await.code(), "expired");
        let within_leeway = sign(&k, &with(claims(), "exp", json!(now() - 10)));
        assert!(v.verify(&within_leeway).await.is_ok());
        let missing = sign(&k, &without(claims(), "exp"));
        assert_eq!(rejection(&v, &missing).await.code(), "malformed");
    }

    #[tokio::test]
    async fn rejects_nbf_and_iat_in_the_future() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let v = local(&[&k]);
        let nbf = sign(&k, &with(claims(), "nbf", json!(now() + 120)));
        assert_eq!(rejection(&v, &nbf).await, TokenRejection::NotYetValid);
        let nbf_within_leeway = sign(&k, &with(claims(), "nbf", json!(now() + 10)));
        assert!(v.verify(&nbf_within_leeway).await.is_ok());
        let iat = sign(&k, &with(claims(), "iat", json!(now() + 120)));
        assert_eq!(rejection(&v, &iat).await.code(), "not_yet_valid");
    }

    #[tokio::test]
    async fn rejects_wrong_or_missing_issuer() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let v = local(&[&k]);
        for iss in [
            json!("https://evil.example.test"),
            json!(format!("{ISSUER}/")),
            json!([ISSUER]),
        ] {
            let token = sign(&k, &with(claims(), "iss", iss.clone()));
            assert_eq!(rejection(&v, &token).await.code(), "wrong_issuer", "{iss}");
        }
        let token = sign(&k, &without(claims(), "iss"));
        assert_eq!(rejection(&v, &token).await.code(), "wrong_issuer");
    }

    #[tokio::test]
    async fn rejects_wrong_or_missing_audience() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let v = local(&[&k]);
        for aud in [json!("other"), json!(["other", "another"]), json!([])] {
            let token = sign(&k, &with(claims(), "aud", aud.clone()));
            assert_eq!(
                rejection(&v, &token).await.code(),
                "wrong_audience",
                "{aud}"
            );
        }
        let token = sign(&k, &without(claims(), "aud"));
        assert_eq!(rejection(&v, &token).await.code(), "wrong_audience");
    }

    #[tokio::test]
    async fn rejects_missing_or_empty_subject() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let v = local(&[&k]);
        for token in [
            sign(&k, &without(claims(), "sub")),
            sign(&k, &with(claims(), "sub", json!(""))),
            sign(&k, &with(claims(), "sub", json!(42))),
        ] {
            assert_eq!(rejection(&v, &token).await.code(), "missing_subject");
        }
    }

    #[tokio::test]
    async fn rejects_alg_none() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let v = local(&[&k]);
        for header in [json!({"alg": "none", "kid": "k"}), json!({"alg": "NONE"})] {
            let token = format!("{}.{}.", b64(&header), b64(&claims()));
            assert_eq!(
                rejection(&v, &token).await,
                TokenRejection::AlgorithmNotAllowed("none".to_owned())
            );
        }
    }

    #[tokio::test]
    async fn rejects_hs256_signed_with_the_public_key_even_if_configured() {
        let k = key(Algorithm::RS256, Some("rsa-1"));
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        let forged = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(k.public_pem.as_bytes()),
        )
        .unwrap();
        let rejected = rejection(&local(&[&k]), &forged).await;
        assert_eq!(
            rejected,
            TokenRejection::AlgorithmNotAllowed("HS256".to_owned())
        );
        assert_eq!(rejected.code(), "alg_not_allowed");

        // A careless configuration listing HS256 must not re-open the hole.
        let mut lax = policy();
        lax.algorithms.push(Algorithm::HS256);
        let set = JwkSet {
            keys: vec![k.jwk.clone()],
        };
        let v = TokenVerifier::new(lax, KeySource::Local(set));
        assert_eq!(rejection(&v, &forged).await.code(), "alg_not_allowed");
    }

    #[tokio::test]
    async fn rejects_algorithms_outside_the_policy() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let mut narrow = policy();
        narrow.algorithms = vec![Algorithm::RS256];
        let v = TokenVerifier::new(
            narrow,
            KeySource::Local(JwkSet {
                keys: vec![k.jwk.clone()],
            }),
        );
        assert_eq!(
            rejection(&v, &sign(&k, &claims())).await,
            TokenRejection::AlgorithmNotAllowed("EdDSA".to_owned())
        );
        let unknown = format!("{}.{}.c2ln", b64(&json!({"alg": "ES512"})), b64(&claims()));
        assert_eq!(rejection(&v, &unknown).await.code(), "alg_not_allowed");
    }

    #[tokio::test]
    async fn rejects_tampered_signature_and_payload() {
        let k = key(Algorithm::RS256, Some("rsa-1"));
        let v = local(&[&k]);
        let token = sign(&k, &claims());
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        sig[10] ^= 0x01;
        let tampered_sig = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            rejection(&v, &tampered_sig).await,
            TokenRejection::BadSignature
        );

        let mut parts: Vec<&str> = token.split('.').collect();
        let evil_claims = b64(&with(claims(), "sub", json!("root")));
        parts[1] = &evil_claims;
        assert_eq!(
            rejection(&v, &parts.join(".")).await.code(),
            "bad_signature"
        );

        // Signed by a different key published under the same kid.
        let other = key(Algorithm::RS256, Some("rsa-1"));
        assert_eq!(
            rejection(&v, &sign(&other, &claims())).await.code(),
            "bad_signature"
        );
    }

    #[tokio::test]
    async fn rejects_malformed_tokens() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let v = local(&[&k]);
        let header = b64(&json!({"alg": "EdDSA", "kid": "k"}));
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c.d.e",
            "!!!.e30.c2ln",
            &format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("[1]")),
            &format!(
                "{}.e30.c2ln",
                b64(&json!({"alg": "EdDSA", "crit": ["b64"], "b64": false}))
            ),
            &huge,
        ] {
            let rejected = rejection(&v, token).await;
            assert_eq!(rejected.code(), "malformed", "{token:.40}: {rejected}");
        }

        // The signature is checked before the payload is looked at ...
        let unsigned_junk = format!("{header}.!!!.c2ln");
        assert_eq!(rejection(&v, &unsigned_junk).await.code(), "bad_signature");
        // ... and a correctly signed payload that is not a claims object is malformed.
        let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode("not json"));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &k.encoding, k.alg).unwrap();
        let signed_junk = format!("{message}.{signature}");
        assert_eq!(rejection(&v, &signed_junk).await.code(), "malformed");
        let string_exp = sign(&k, &with(claims(), "exp", json!("tomorrow")));
        assert_eq!(rejection(&v, &string_exp).await.code(), "malformed");
    }

    #[tokio::test]
    async fn key_type_and_jwk_alg_must_fit_the_token_alg() {
        let rsa = key(Algorithm::RS256, Some("rsa-1"));
        let ed = key(Algorithm::EdDSA, Some("ed-1"));
        // An RS256 token naming the Ed25519 key.
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("ed-1".to_owned());
        let token = jsonwebtoken::encode(&header, &claims(), &rsa.encoding).unwrap();
        let v = local(&[&rsa, &ed]);
        assert_eq!(
            rejection(&v, &token).await,
            TokenRejection::KeyAlgorithmMismatch
        );

        // An RSA key whose JWK says RS512, used for an RS256 token.
        let mut pinned = key(Algorithm::RS256, Some("rsa-pinned"));
        pinned.jwk.common.key_algorithm = Some(KeyAlgorithm::RS512);
        let token = sign(&pinned, &claims());
        assert_eq!(
            rejection(&local(&[&pinned]), &token).await.code(),
            "key_alg_mismatch"
        );

        // An encryption key is never used for signatures.
        let mut enc = key(Algorithm::RS256, Some("rsa-enc"));
        enc.jwk.common.public_key_use = Some(PublicKeyUse::Encryption);
        let token = sign(&enc, &claims());
        assert_eq!(
            rejection(&local(&[&enc]), &token).await.code(),
            "key_alg_mismatch"
        );
    }

    #[tokio::test]
    async fn kid_less_token_uses_the_single_fitting_key() {
        let rsa = key(Algorithm::RS256, None);
        let ed = key(Algorithm::EdDSA, Some("ed-1"));
        let token = sign(&rsa, &claims());
        assert!(local(&[&rsa, &ed]).verify(&token).await.is_ok());

        let rsa2 = key(Algorithm::RS256, Some("rsa-2"));
        assert_eq!(
            rejection(&local(&[&rsa, &rsa2]), &token).await,
            TokenRejection::UnknownKey(None)
        );
    }

    #[tokio::test]
    async fn unknown_kid_with_local_keys() {
        let k = key(Algorithm::EdDSA, Some("k"));
        let stranger = key(Algorithm::EdDSA, Some("stranger"));
        let rejected = rejection(&local(&[&k]), &sign(&stranger, &claims())).await;
        assert_eq!(
            rejected,
            TokenRejection::UnknownKey(Some("stranger".to_owned()))
        );
        assert_eq!(rejected.code(), "unknown_kid");
    }

    #[test]
    fn verifier_is_shareable_and_its_future_is_send() {
        // axum handlers need Send futures; a std lock guard held across an await would break that.
        fn assert_send<T: Send>(_: &T) {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenVerifier>();
        let v = TokenVerifier::new(policy(), KeySource::Local(JwkSet { keys: Vec::new() }));
        let future = v.verify("x.y.z");
        assert_send(&future);
    }

    #[test]
    fn rejection_codes_are_distinct() {
        let all = [
            TokenRejection::Malformed(String::new()),
            TokenRejection::AlgorithmNotAllowed(String::new()),
            TokenRejection::UnknownKey(None),
            TokenRejection::KeyAlgorithmMismatch,
            TokenRejection::BadSignature,
            TokenRejection::Expired,
            TokenRejection::NotYetValid,
            TokenRejection::WrongIssuer,
            TokenRejection::WrongAudience,
            TokenRejection::MissingSubject,
            TokenRejection::KeysUnavailable(String::new()),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(TokenRejection::code).collect();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn echo_truncates_and_neutralises_control_characters() {
        assert_eq!(echo("a\nb"), "a?b");
        assert_eq!(echo(&"x".repeat(500)).len(), MAX_ECHOED_CHARS);
    }

    /// A fake IdP JWKS endpoint that counts fetches and can be re-keyed or broken.
    struct FakeJwks {
        fetches: AtomicUsize,
        body: Mutex<Value>,
        status: Mutex<u16>,
    }

    async fn serve_jwks(keys: &[&TestKey]) -> (Arc<FakeJwks>, url::Url) {
        use axum::extract::State;
        use axum::http::StatusCode;
        let fake = Arc::new(FakeJwks {
            fetches: AtomicUsize::new(0),
            body: Mutex::new(jwks_json(keys)),
            status: Mutex::new(200),
        });
        let app = axum::Router::new()
            .route(
                "/jwks",
                axum::routing::get(|State(fake): State<Arc<FakeJwks>>| async move {
                    fake.fetches.fetch_add(1, Ordering::SeqCst);
                    let status = StatusCode::from_u16(*fake.status.lock().unwrap()).unwrap();
                    (status, axum::Json(fake.body.lock().unwrap().clone()))
                }),
            )
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, format!("http://{addr}/jwks").parse().unwrap())
    }

    fn jwks_json(keys: &[&TestKey]) -> Value {
        json!({ "keys": keys.iter().map(|k| serde_json::to_value(&k.jwk).unwrap()).collect::<Vec<_>>() })
    }

    fn remote(uri: url::Url, interval: Duration) -> TokenVerifier {
        let cache = JwksCache::new(reqwest::Client::new(), uri, interval);
        TokenVerifier::new(policy(), KeySource::Remote(cache))
    }

    const INTERVAL: Duration = Duration::from_millis(400);

    #[tokio::test]
    async fn unknown_kids_trigger_one_rate_limited_refetch() {
        let k = key(Algorithm::EdDSA, Some("k1"));
        let (fake, uri) = serve_jwks(&[&k]).await;
        let v = remote(uri, INTERVAL);
        let fetches = || fake.fetches.load(Ordering::SeqCst);

        // First use fetches the set.
        assert!(v.verify(&sign(&k, &claims())).await.is_ok());
        assert_eq!(fetches(), 1);
        // Known kids never fetch.
        assert!(v.verify(&sign(&k, &claims())).await.is_ok());
        assert_eq!(fetches(), 1);

        tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
        let junk1 = sign(&key(Algorithm::EdDSA, Some("junk-1")), &claims());
        let junk2 = sign(&key(Algorithm::EdDSA, Some("junk-2")), &claims());
        assert_eq!(rejection(&v, &junk1).await.code(), "unknown_kid");
        assert_eq!(rejection(&v, &junk2).await.code(), "unknown_kid");
        assert_eq!(
            fetches(),
            2,
            "two unknown kids within the interval cause one refetch"
        );

        // A burst of concurrent junk is coalesced and rate-limited too.
        tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
        let burst: Vec<_> = (0..20).map(|_| v.verify(&junk1)).collect();
        for result in futures_util::future::join_all(burst).await {
            assert_eq!(result.unwrap_err().code(), "unknown_kid");
        }
        assert_eq!(fetches(), 3);
    }

    #[tokio::test]
    async fn rotated_key_is_accepted_after_refetch() {
        let old = key(Algorithm::RS256, Some("2026-01"));
        let new = key(Algorithm::RS256, Some("2026-02"));
        let (fake, uri) = serve_jwks(&[&old]).await;
        let v = remote(uri, INTERVAL);
        assert!(v.verify(&sign(&old, &claims())).await.is_ok());

        *fake.body.lock().unwrap() = jwks_json(&[&old, &new]);
        tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
        let verified = v.verify(&sign(&new, &claims())).await.unwrap();
        assert_eq!(verified.subject, "alice");
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 2);
        // The old key is still there until the IdP drops it.
        assert!(v.verify(&sign(&old, &claims())).await.is_ok());
    }

    #[tokio::test]
    async fn idp_failures_report_keys_unavailable_and_keep_old_keys() {
        let k = key(Algorithm::EdDSA, Some("k1"));
        let (fake, uri) = serve_jwks(&[&k]).await;
        *fake.status.lock().unwrap() = 503;
        let v = remote(uri.clone(), INTERVAL);
        let rejected = rejection(&v, &sign(&k, &claims())).await;
        assert_eq!(rejected.code(), "keys_unavailable");
        assert!(rejected.to_string().contains("HTTP 503"), "{rejected}");

        *fake.status.lock().unwrap() = 200;
        v.refresh_keys().await.unwrap();
        assert!(v.verify(&sign(&k, &claims())).await.is_ok());

        // A broken refresh keeps the previous keys.
        *fake.body.lock().unwrap() = json!({"keys": []});
        let err = v.refresh_keys().await.unwrap_err();
        assert!(matches!(err, JwksError::NoUsableKeys { .. }), "{err}");
        *fake.body.lock().unwrap() = json!("not a jwks");
        assert!(matches!(
            v.refresh_keys().await,
            Err(JwksError::Parse { .. })
        ));
        assert!(v.verify(&sign(&k, &claims())).await.is_ok());
    }

    #[test]
    fn jwks_parsing_skips_keys_it_cannot_use() {
        let k = key(Algorithm::EdDSA, Some("k1"));
        let body = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
            {"kty": "weird", "kid": "weird"},
            "not even an object",
            serde_json::to_value(&k.jwk).unwrap(),
        ]});
        let set = parse_jwks("https://idp/jwks", &serde_json::to_vec(&body).unwrap()).unwrap();
        let kids: Vec<_> = set
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.as_deref())
            .collect();
        assert_eq!(kids, ["k1"]);
    }
}
