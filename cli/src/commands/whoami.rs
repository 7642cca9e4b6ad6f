//! `hoop whoami`: the identity the gateway sees.

use hoop_shared::api::Me;
use serde_json::json;

use crate::Ctx;
use crate::auth::{authed_get, now_unix, open_store};
use crate::exit::CliResult;
use crate::ui::{OutputFormat, out, out_json};

/// Runs `hoop whoami`.
pub async fn run(ctx: &Ctx, output: OutputFormat) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let me: Me = authed_get(&gw, &store, ctx.token.as_deref(), "/api/v1/me").await?;
    match output {
        OutputFormat::Json => out_json(&json!({
            "gateway": gw.url,
            "subject": me.subject,
            "name": me.name,
            "groups": me.groups,
            "method": me.method,
            "admin": me.admin,
            "expires_at": me.expires_at,
        })),
        OutputFormat::Table => {
            let expires = match me.expires_at {
                Some(t) => {
                    let left = t - now_unix();
                    if left > 0 {
                        format!(
                            "in {}",
                            humantime::format_duration(std::time::Duration::from_secs(left as u64))
                        )
                    } else {
                        "expired".into()
                    }
                }
                None => "never".into(),
            };
            let method = serde_json::to_value(me.method)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            out(&format!(
                "Gateway:  {}\nSubject:  {}\nName:     {}\nGroups:   {}\nMethod:   {method}\nAdmin:    {}\nExpires:  {expires}\n",
                gw.url,
                me.subject,
                me.name,
                if me.groups.is_empty() {
                    "-".into()
                } else {
                    me.groups.join(", ")
                },
                if me.admin { "yes" } else { "no" },
            ))
        }
    }
}
