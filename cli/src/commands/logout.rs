//! `hoop logout`: forget the cached tokens and revoke the refresh token where the provider
//! supports it.

use crate::Ctx;
use crate::auth::{idp_client, open_store};
use crate::exit::{CliError, CliResult, Exit};
use crate::gateway::{Gateway, gateway_url, trust_for};
use crate::ui::note;

/// Runs `hoop logout`.
pub async fn run(ctx: &Ctx) -> CliResult<()> {
    let url = gateway_url(ctx.gateway.as_deref(), &ctx.settings)?;
    let store = open_store(&ctx.paths.data_dir)?;
    let cached = store
        .load(&url)
        .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?;
    let Some(cached) = cached else {
        note(format!("Not logged in to {url}."));
        return Ok(());
    };
    if let (Some(rt), Some(endpoint)) = (&cached.refresh_token, &cached.revocation_endpoint) {
        let gw = Gateway::new(url.clone(), trust_for(&url, &ctx.settings, None, None)?)?;
        let http = if gw.same_origin(endpoint) {
            gw.client.http.clone()
        } else {
            idp_client()?
        };
        let client_id = cached.client_id.clone().unwrap_or_default();
        let r = http
            .post(endpoint)
            .form(&[
                ("token", rt.as_str()),
                ("token_type_hint", "refresh_token"),
                ("client_id", client_id.as_str()),
            ])
            .send()
            .await;
        if let Err(e) = r {
            // Logging out must work offline: the local tokens go regardless.
            tracing::debug!(error = %e, "refresh token revocation failed");
        }
    }
    store
        .delete(&url)
        .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?;
    note(format!("Logged out of {url}."));
    Ok(())
}
