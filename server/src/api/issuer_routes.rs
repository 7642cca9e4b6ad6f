//! HTTP face of the built-in issuer: discovery, JWKS, device authorization, token, revocation and
//! the verification page.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use serde_json::json;

use super::{AppState, ClientAddr};
use crate::audit::event;
use crate::auth::issuer::{BuiltinIssuer, TokenError, VerifyOutcome};
use crate::util::html_escape;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/device/code", post(device_code))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/authorize", get(authorize))
        .route("/device", get(device_page).post(device_submit))
}

fn issuer(s: &AppState) -> Result<&BuiltinIssuer, Box<Response>> {
    s.auth
        .builtin_issuer()
        .map(|i| i.as_ref())
        .ok_or_else(|| Box::new((StatusCode::NOT_FOUND, "no built-in issuer").into_response()))
}

fn oauth_error(e: &TokenError) -> Response {
    let status = match e {
        TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
        TokenError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut r = (
        status,
        Json(json!({"error": e.code(), "error_description": e.description()})),
    )
        .into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

async fn discovery(State(s): State<AppState>) -> Response {
    match issuer(&s) {
        Ok(i) => {
            let mut d = i.discovery();
            if let Some(obj) = d.as_object_mut() {
                obj.insert(
                    "revocation_endpoint".into(),
                    json!(format!("{}/oauth/revoke", i.issuer_url())),
                );
            }
            Json(d).into_response()
        }
        Err(r) => *r,
    }
}

async fn jwks(State(s): State<AppState>) -> Response {
    match issuer(&s) {
        Ok(i) => Json(i.jwks()).into_response(),
        Err(r) => *r,
    }
}

async fn authorize() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "unsupported_response_type", "error_description": "this issuer only serves the device flow: run `hoop login`"})),
    )
        .into_response()
}

async fn device_code(
    State(s): State<AppState>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let i = match issuer(&s) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let client_id = f.get("client_id").map(String::as_str).unwrap_or_default();
    match i.device_authorize(client_id, f.get("scope").map(String::as_str)) {
        Ok(a) => Json(a).into_response(),
        Err(e) => oauth_error(&e),
    }
}

async fn token(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let i = match issuer(&s) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let source = addr.map(|a| a.0.0.to_string());
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let client_id = get("client_id");
    let result = match get("grant_type") {
        "urn:ietf:params:oauth:grant-type:device_code" => i
            .redeem_device_code(get("device_code"), client_id)
            .await
            .map(|(t, who)| (t, who, "auth.login")),
        "refresh_token" => i
            .redeem_refresh_token(get("refresh_token"), client_id)
            .await
            .map(|(t, who)| (t, who, "auth.token_refreshed")),
        "" => Err(TokenError::InvalidRequest("grant_type is required".into())),
        _ => Err(TokenError::UnsupportedGrantType),
    };
    match result {
        Ok((tok, who, kind)) => {
            let ev = event(
                kind,
                Some(&who),
                source,
                "success",
                json!({"method": "builtin", "client_id": client_id}),
            );
            // Fail closed: a login that cannot be audited does not happen.
            if let Err(e) = s.audit.record(ev).await {
                tracing::error!(error = %e, "cannot audit a login; refusing it");
                return oauth_error(&TokenError::ServerError);
            }
            let mut r = Json(tok).into_response();
            r.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => {
            if matches!(e, TokenError::InvalidGrant(_) | TokenError::InvalidClient) {
                let ev = event(
                    "auth.token_refused",
                    None,
                    source,
                    "denied",
                    json!({"reason": e.code(), "grant_type": get("grant_type")}),
                );
                let _ = s.audit.record_nowait(ev).await;
            }
            oauth_error(&e)
        }
    }
}

async fn revoke(State(s): State<AppState>, Form(f): Form<HashMap<String, String>>) -> Response {
    if let Some(t) = f.get("token") {
        // RFC 7009: revoking an unknown token is not an error. Access tokens are short-lived and
        // not revocable here; refresh tokens are deleted.
        let hash = crate::util::sha256_hex(t.as_bytes());
        match s.store.refresh_take(&hash).await {
            Ok(Some(rec)) => {
                let ev = event(
                    "auth.logout",
                    Some(&rec.subject),
                    None,
                    "success",
                    json!({"method": "builtin"}),
                );
                let _ = s.audit.record(ev).await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "refresh token revocation failed"),
        }
    }
    StatusCode::OK.into_response()
}

const PAGE_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}\
label{display:block;margin-top:1rem}input{width:100%;padding:.4rem;font-size:1rem}\
button{margin-top:1.2rem;padding:.5rem 1rem;font-size:1rem}.err{color:#b00}.ok{color:#070}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>{PAGE_STYLE}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = html_escape(title)
    ))
}

fn form(user_code: &str, error: Option<&str>) -> Html<String> {
    let err = error
        .map(|e| format!("<p class=\"err\" id=\"error\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    page(
        "Sign in to hoop",
        &format!(
            "<p>Confirm the code shown by <code>hoop login</code> and sign in.</p>{err}\
             <form method=\"post\" action=\"/device\">\
             <label>Code <input name=\"user_code\" value=\"{code}\" autocomplete=\"off\" required></label>\
             <label>User name <input name=\"username\" autocomplete=\"username\"></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
             <button type=\"submit\" name=\"action\" value=\"approve\">Sign in</button> \
             <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
            code = html_escape(user_code)
        ),
    )
}

async fn device_page(Query(q): Query<HashMap<String, String>>) -> Html<String> {
    form(
        q.get("user_code").map(String::as_str).unwrap_or_default(),
        None,
    )
}

async fn device_submit(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let i = match issuer(&s) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let (code, user) = (get("user_code"), get("username"));
    let deny = get("action") == "deny";
    let source = addr.map(|a| a.0.0.to_string());
    match i.verify_user(code, user, get("password"), deny).await {
        VerifyOutcome::Approved(who) => {
            let ev = event(
                "auth.device_approved",
                Some(&who),
                source,
                "success",
                json!({"method": "builtin"}),
            );
            let _ = s.audit.record_nowait(ev).await;
            page(
                "Signed in",
                "<p class=\"ok\" id=\"result\">You are signed in. Return to your terminal; you can close this page.</p>",
            )
            .into_response()
        }
        VerifyOutcome::Denied => page(
            "Request denied",
            "<p id=\"result\">The login request was denied.</p>",
        )
        .into_response(),
        VerifyOutcome::BadCode => (
            StatusCode::BAD_REQUEST,
            form(
                code,
                Some("That code is unknown, used or expired. Run `hoop login` again."),
            ),
        )
            .into_response(),
        VerifyOutcome::BadCredentials => {
            let ev = event(
                "auth.login_failed",
                None,
                source,
                "denied",
                json!({"reason": "bad_credentials", "username": user}),
            );
            let _ = s.audit.record_nowait(ev).await;
            (
                StatusCode::UNAUTHORIZED,
                form(code, Some("Wrong user name or password.")),
            )
                .into_response()
        }
        VerifyOutcome::Throttled => (
            StatusCode::TOO_MANY_REQUESTS,
            form(code, Some("Too many failed attempts; wait a minute.")),
        )
            .into_response(),
    }
}
