//! Talking to one gateway: where it is, how its certificate is trusted, and typed API calls
//! whose failures map onto the documented exit codes.

use serde::de::DeserializeOwned;

use crate::exit::{CliError, CliResult, Exit};
use crate::settings::{Settings, normalise_gateway};
use crate::trust::{Trust, TrustedClient, parse_fingerprint};

/// A gateway and a client that trusts it.
#[derive(Clone)]
pub struct Gateway {
    /// Normalised URL (`https://host:port`).
    pub url: String,
    /// The HTTP client.
    pub client: TrustedClient,
}

/// Picks the gateway URL: flag, then `HOOP_GATEWAY` (clap reads both into `flag`), then the
/// settings file.
pub fn gateway_url(flag: Option<&str>, settings: &Settings) -> CliResult<String> {
    match flag.or(settings.gateway.as_deref()) {
        Some(u) => normalise_gateway(u),
        None => Err(CliError::new(
            Exit::NotAuthenticated,
            "no gateway configured: run `hoop login --gateway https://<gateway>` (or set HOOP_GATEWAY)",
        )),
    }
}

/// The trust to apply: `--ca-file`, `--fingerprint`, then what the settings file remembers,
/// then the system roots.
pub fn trust_for(
    url: &str,
    settings: &Settings,
    ca_file: Option<&std::path::Path>,
    fingerprint: Option<&str>,
) -> CliResult<Trust> {
    if let Some(ca) = ca_file {
        return Ok(Trust::CaFile(ca.to_path_buf()));
    }
    if let Some(fp) = fingerprint {
        return Ok(Trust::Pin(parse_fingerprint(fp)?));
    }
    let g = settings.gateway(url);
    Ok(match (g.fingerprint, g.ca_file) {
        (Some(fp), _) => Trust::Pin(fp),
        (None, Some(ca)) => Trust::CaFile(ca),
        (None, None) => Trust::System,
    })
}

impl Gateway {
    /// A gateway with the given trust.
    pub fn new(url: String, trust: Trust) -> CliResult<Self> {
        Ok(Self {
            url,
            client: TrustedClient::new(trust)?,
        })
    }

    /// GET a public endpoint.
    pub async fn get_public<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.get(path, None).await
    }

    /// GET with a bearer token.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, bearer: Option<&str>) -> CliResult<T> {
        let mut req = self.client.http.get(format!("{}{path}", self.url));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.client.explain(&self.url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return resp.json::<T>().await.map_err(|e| {
                CliError::new(
                    Exit::Internal,
                    format!("the gateway sent an unexpected answer to {path}: {e}"),
                )
            });
        }
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<hoop_shared::api::ApiError>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(match status.as_u16() {
            401 => CliError::new(
                Exit::NotAuthenticated,
                format!("{message} (run `hoop login`)"),
            ),
            403 => CliError::new(Exit::AccessDenied, message),
            404 => CliError::new(Exit::NotFound, message),
            _ => CliError::new(Exit::Internal, format!("the gateway failed: {message}")),
        })
    }

    /// GET a text body (a terminal recording) with a bearer token; errors as for [`Self::get`].
    pub async fn get_text(&self, path: &str, bearer: &str) -> CliResult<String> {
        let resp = self
            .client
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(bearer)
            .send()
            .await
            .map_err(|e| self.client.explain(&self.url, &e))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_str::<hoop_shared::api::ApiError>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(match status.as_u16() {
            401 => CliError::new(
                Exit::NotAuthenticated,
                format!("{message} (run `hoop login`)"),
            ),
            403 => CliError::new(Exit::AccessDenied, message),
            404 => CliError::new(Exit::NotFound, message),
            _ => CliError::new(Exit::Internal, format!("the gateway failed: {message}")),
        })
    }

    /// True if `url` is served by this gateway (same origin), so the gateway's trust applies.
    pub fn same_origin(&self, url: &str) -> bool {
        url == self.url || url.starts_with(&format!("{}/", self.url))
    }
}
