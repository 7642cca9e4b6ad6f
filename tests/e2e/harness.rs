//! Self-tests of the harness: the fixtures really work before hoop is put in front of them.

use std::time::Duration;

use hoop_tests::jwt::{self, Signer};
use hoop_tests::oidc::{CI_CLIENT_ID, CI_CLIENT_SECRET, CLI_CLIENT_ID, CLI_SCOPES};
use hoop_tests::{OidcOptions, OidcProvider, PasswordKind, Postgres};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn jwks(provider: &OidcProvider) -> JwkSet {
    reqwest::get(provider.jwks_uri())
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verify an access token strictly against the provider's published JWKS.
async fn verify(provider: &OidcProvider, token: &str) -> anyhow::Result<Value> {
    let header = jsonwebtoken::decode_header(token)?;
    let set = jwks(provider).await;
    let kid = header
        .kid
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no kid"))?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| anyhow::anyhow!("unknown kid {kid}"))?;
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    v.validate_nbf = true;
    v.set_audience(&["hoop"]);
    v.set_issuer(&[provider.issuer.as_str()]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &v)?;
    Ok(data.claims)
}

#[tokio::test]
async fn postgres_starts_and_authenticates_roles() {
    let pg = Postgres::start().await.unwrap();
    assert_eq!(pg.psql("postgres", "select 1").await.unwrap(), "1");
    assert!(pg.url("postgres").starts_with("postgres://postgres:"));

    pg.create_role("app_scram", "scram pw'1", PasswordKind::Scram)
        .await
        .unwrap();
    pg.create_role("app_md5", "md5-pw", PasswordKind::Md5)
        .await
        .unwrap();
    pg.create_database("appdb", "app_scram").await.unwrap();

    let who = pg
        .psql_as(
            "app_scram",
            "scram pw'1",
            "appdb",
            "select current_user, current_database()",
        )
        .await
        .unwrap();
    assert_eq!(who, "app_scram|appdb");
    assert_eq!(
        pg.psql_as("app_md5", "md5-pw", "postgres", "select current_user")
            .await
            .unwrap(),
        "app_md5"
    );
    let stored = pg
        .psql(
            "postgres",
            "select rolname, left(rolpassword, 6) from pg_authid where rolname like 'app_%' order by 1",
        )
        .await
        .unwrap();
    assert!(stored.contains("app_md5|md5"), "{stored}");
    assert!(stored.contains("app_scram|SCRAM-"), "{stored}");

    let err = pg
        .psql_as("app_scram", "wrong", "appdb", "select 1")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err:#}"
    );

    // Only our own postgres is stopped: after drop, the port is closed.
    let addr = pg.addr();
    drop(pg);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn oidc_device_flow_refresh_and_client_credentials() {
    let provider = OidcProvider::start(OidcOptions::default()).await.unwrap();
    let http = reqwest::Client::new();

    // Discovery has the endpoints the CLI needs.
    let disco = provider.discovery().await.unwrap();
    assert_eq!(disco["issuer"], json!(provider.issuer));
    assert_eq!(
        disco["device_authorization_endpoint"],
        json!(provider.device_authorization_endpoint())
    );
    assert_eq!(disco["token_endpoint"], json!(provider.token_endpoint()));
    assert_eq!(disco["jwks_uri"], json!(provider.jwks_uri()));

    // Device authorization, by hand.
    let da: Value = http
        .post(provider.device_authorization_endpoint())
        .form(&[("client_id", CLI_CLIENT_ID), ("scope", CLI_SCOPES)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = da["device_code"].as_str().unwrap();
    let user_code = da["user_code"].as_str().unwrap();
    let verification_uri = da["verification_uri"].as_str().unwrap();
    assert_eq!(verification_uri, provider.url("/device"));

    // Before the user signs in: authorization_pending.
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("device_code", device_code),
        ("client_id", CLI_CLIENT_ID),
    ];
    let resp = http
        .post(provider.token_endpoint())
        .form(&poll)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "authorization_pending");

    // A wrong password is rejected by the login page (on another device authorization:
    // a user code that reached the login page cannot be entered again).
    let other = provider.device_authorization(CLI_SCOPES).await.unwrap();
    let err = provider
        .complete_device_login(
            other["verification_uri"].as_str().unwrap(),
            other["user_code"].as_str().unwrap(),
            "alice",
            "not-alice-pw",
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid username or password"),
        "{err:#}"
    );

    // The browser part, then the token by hand.
    provider
        .complete_device_login(verification_uri, user_code, "alice", "alice-pw")
        .await
        .unwrap();
    let resp = http
        .post(provider.token_endpoint())
        .form(&poll)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens: Value = resp.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh token issued for device flow");
    assert!(tokens["id_token"].is_string());
    assert_eq!(tokens["token_type"], "Bearer");

    let (header, _) = jwt::decode_unverified(access).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], provider.kid());
    assert_eq!(header["typ"], "at+jwt");
    let claims = verify(&provider, access).await.unwrap();
    assert_eq!(claims["aud"], "hoop");
    assert_eq!(claims["iss"], json!(provider.issuer));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], json!(["engineering"]));
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["client_id"], CLI_CLIENT_ID);

    // Refresh: a new JWT access token and a rotated refresh token.
    let resp = http
        .post(provider.token_endpoint())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", CLI_CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let refreshed: Value = resp.json().await.unwrap();
    let access2 = refreshed["access_token"].as_str().unwrap();
    assert_ne!(access2, access);
    let claims2 = verify(&provider, access2).await.unwrap();
    assert_eq!(claims2["aud"], "hoop");
    assert_eq!(claims2["groups"], json!(["engineering"]));
    let refresh2 = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(refresh2, refresh);

    // The device code is single-use, and replaying it revokes the whole grant: the
    // current refresh token stops working too.
    let (status, body) = provider.token_request(&poll, None).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, body) = provider
        .token_request(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh2),
                ("client_id", CLI_CLIENT_ID),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // Client credentials for hoop-ci.
    let ci = provider
        .client_credentials_token(CI_CLIENT_ID, CI_CLIENT_SECRET)
        .await
        .unwrap();
    let ci_claims = verify(&provider, &ci).await.unwrap();
    assert_eq!(ci_claims["aud"], "hoop");
    assert_eq!(ci_claims["sub"], CI_CLIENT_ID);
    assert_eq!(ci_claims["groups"], json!(["deploy"]));
    let err = provider
        .client_credentials_token(CI_CLIENT_ID, "wrong")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_client"), "{err:#}");

    // Tokens minted by the harness verify against the provider's JWKS; tampered ones don't.
    let minted = provider
        .mint(&provider.user_claims("bob", 60).unwrap())
        .unwrap();
    let minted_claims = verify(&provider, &minted).await.unwrap();
    assert_eq!(minted_claims["groups"], json!(["dba", "engineering"]));
    assert!(
        verify(&provider, &jwt::tamper_signature(&minted))
            .await
            .is_err()
    );
    let other = provider
        .mint_with(
            &jwt::default_header(),
            &provider.user_claims("bob", 60).unwrap(),
            &Signer::OtherKey,
        )
        .unwrap();
    assert!(verify(&provider, &other).await.is_err());
    let expired = provider
        .mint(&provider.user_claims("bob", -10).unwrap())
        .unwrap();
    assert!(verify(&provider, &expired).await.is_err());
    let none = provider
        .mint_with(
            &json!({"alg": "none", "typ": "JWT"}),
            &provider.user_claims("bob", 60).unwrap(),
            &Signer::Unsigned,
        )
        .unwrap();
    assert!(none.ends_with('.'));
    assert!(verify(&provider, &none).await.is_err());
    let hs = provider
        .mint_with(
            &json!({"alg": "HS256", "typ": "JWT", "kid": provider.kid()}),
            &provider.user_claims("bob", 60).unwrap(),
            &Signer::Hmac(Algorithm::HS256, jwt::public_key_pem().unwrap()),
        )
        .unwrap();
    assert!(verify(&provider, &hs).await.is_err());
}

#[tokio::test]
async fn oidc_short_access_ttl_then_refresh_and_denied_consent() {
    let provider = OidcProvider::start(OidcOptions {
        access_ttl: Some(Duration::from_secs(2)),
        ..OidcOptions::default()
    })
    .await
    .unwrap();

    let da = provider.device_authorization(CLI_SCOPES).await.unwrap();
    provider
        .complete_device_login(
            da["verification_uri_complete"].as_str().unwrap(),
            da["user_code"].as_str().unwrap(),
            "bob",
            "bob-pw",
        )
        .await
        .unwrap();
    let (status, tokens) = provider
        .token_request(
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", da["device_code"].as_str().unwrap()),
                ("client_id", CLI_CLIENT_ID),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["expires_in"], 2);
    let access = tokens["access_token"].as_str().unwrap();
    let claims = verify(&provider, access).await.unwrap();
    assert_eq!(claims["groups"], json!(["dba", "engineering"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2
    );

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(
        verify(&provider, access).await.is_err(),
        "token should have expired"
    );
    let (status, refreshed) = provider
        .token_request(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ("client_id", CLI_CLIENT_ID),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    verify(&provider, refreshed["access_token"].as_str().unwrap())
        .await
        .unwrap();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap();

    // Refresh tokens rotate; presenting a rotated one again fails AND revokes the grant,
    // so the newest refresh token stops working too (reuse detection).
    let refresh_with = |rt: String| {
        let provider = &provider;
        async move {
            provider
                .token_request(
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &rt),
                        ("client_id", CLI_CLIENT_ID),
                    ],
                    None,
                )
                .await
                .unwrap()
        }
    };
    let (status, body) = refresh_with(tokens["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, body) = refresh_with(refresh2.to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // carol signs in but denies consent: the device code fails with access_denied.
    let da = provider.device_authorization(CLI_SCOPES).await.unwrap();
    provider
        .deny_device_login(
            da["verification_uri"].as_str().unwrap(),
            da["user_code"].as_str().unwrap(),
            "carol",
            "carol-pw",
        )
        .await
        .unwrap();
    let (status, body) = provider
        .token_request(
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", da["device_code"].as_str().unwrap()),
                ("client_id", CLI_CLIENT_ID),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "access_denied", "{body}");

    // An unknown user code is rejected.
    let err = provider
        .complete_device_login(&provider.url("/device"), "BCDF-GHJK", "alice", "alice-pw")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("user code rejected"), "{err:#}");
}
