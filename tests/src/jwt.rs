//! Minting JWTs with the OIDC fixture's committed test keys, for positive and negative
//! token-validation tests (expired, wrong `aud`/`iss`, `alg: none`, HS256 keyed with the
//! public key, bad signature, unknown `kid`, ...).
//!
//! The header is written exactly as given (its `alg` is *not* derived from the key), so
//! tests can produce algorithm-confusion tokens.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// `kid` of the provider's signing key (`signing-key.pem`, published in its JWKS).
pub const KID: &str = "test-rsa-1";

/// Directory of the OIDC provider fixture.
pub fn oidc_fixture_dir() -> PathBuf {
    crate::fixtures_dir().join("oidc-provider")
}

/// PKCS#8 PEM of the provider's RSA signing key.
pub fn signing_key_pem_path() -> PathBuf {
    oidc_fixture_dir().join("signing-key.pem")
}

/// SPKI PEM of the provider's RSA public key.
pub fn public_key_pem_path() -> PathBuf {
    oidc_fixture_dir().join("signing-key.pub.pem")
}

/// PKCS#8 PEM of an unrelated RSA key, not in the provider's JWKS.
pub fn other_key_pem_path() -> PathBuf {
    oidc_fixture_dir().join("other-key.pem")
}

/// How the signature segment is produced.
#[derive(Clone, Debug)]
pub enum Signer {
    /// RS256 with the provider's signing key: a valid signature.
    Provider,
    /// RSA with the provider's signing key and the given RSA algorithm (RS384, PS256, ...).
    ProviderAlg(Algorithm),
    /// RS256 with an unrelated RSA key: a well-formed but wrong signature.
    OtherKey,
    /// HMAC (HS256/384/512) with the given secret, e.g. the provider's public key PEM
    /// bytes (see [`public_key_pem`]) for the classic algorithm-confusion attack.
    Hmac(Algorithm, Vec<u8>),
    /// Empty signature segment (`header.payload.`), for `alg: none`.
    Unsigned,
    /// This literal (already base64url) signature segment.
    Raw(String),
}

/// The provider's public key PEM bytes (for [`Signer::Hmac`] confusion tokens).
pub fn public_key_pem() -> Result<Vec<u8>> {
    let path = public_key_pem_path();
    std::fs::read(&path).with_context(|| format!("read {}", path.display()))
}

/// The default access-token header the provider uses: `{"alg":"RS256","typ":"at+jwt","kid":KID}`.
pub fn default_header() -> Value {
    json!({ "alg": "RS256", "typ": "at+jwt", "kid": KID })
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn b64_json(v: &Value) -> Result<String> {
    if !v.is_object() {
        bail!("JWT header and claims must be JSON objects, got {v}");
    }
    let bytes = serde_json::to_vec(v).context("serialize JWT segment")?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Assemble `base64url(header).base64url(claims).signature`.
pub fn mint(header: &Value, claims: &Value, signer: &Signer) -> Result<String> {
    let message = format!("{}.{}", b64_json(header)?, b64_json(claims)?);
    let signature = match signer {
        Signer::Provider => rsa_sign(&message, &signing_key_pem_path(), Algorithm::RS256)?,
        Signer::ProviderAlg(alg) => rsa_sign(&message, &signing_key_pem_path(), *alg)?,
        Signer::OtherKey => rsa_sign(&message, &other_key_pem_path(), Algorithm::RS256)?,
        Signer::Hmac(alg, secret) => {
            jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), *alg)
                .context("HMAC-sign JWT")?
        }
        Signer::Unsigned => String::new(),
        Signer::Raw(sig) => sig.clone(),
    };
    Ok(format!("{message}.{signature}"))
}

fn rsa_sign(message: &str, pem_path: &std::path::Path, alg: Algorithm) -> Result<String> {
    let pem = std::fs::read(pem_path).with_context(|| format!("read {}", pem_path.display()))?;
    let key = EncodingKey::from_rsa_pem(&pem)
        .with_context(|| format!("parse RSA key {}", pem_path.display()))?;
    jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).context("RSA-sign JWT")
}

/// Flip one character of the signature segment (keeps it valid base64url).
pub fn tamper_signature(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return token.to_owned();
    };
    let (head, sig) = token.split_at(dot + 1);
    let mut sig: Vec<char> = sig.chars().collect();
    let mid = sig.len() / 2;
    if let Some(c) = sig.get_mut(mid) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    format!("{head}{}", sig.into_iter().collect::<String>())
}

/// Decode a JWT's header and claims without verifying anything (for assertions).
pub fn decode_unverified(token: &str) -> Result<(Value, Value)> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a three-segment JWS: {token}");
    };
    let seg = |s: &str| -> Result<Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .context("base64url-decode JWT segment")?;
        serde_json::from_slice(&bytes).context("parse JWT segment as JSON")
    };
    Ok((seg(h)?, seg(p)?))
}
