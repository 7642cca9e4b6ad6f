//! `hoop connections` (`hoop ls`): what the caller may connect to.

use hoop_shared::api::ConnectionInfo;

use crate::Ctx;
use crate::auth::{authed_get, open_store};
use crate::exit::CliResult;
use crate::ui::{OutputFormat, out_json, out_table};

/// Runs `hoop connections`.
pub async fn run(ctx: &Ctx, output: OutputFormat) -> CliResult<()> {
    let gw = ctx.gateway()?;
    let store = open_store(&ctx.paths.data_dir)?;
    let list: Vec<ConnectionInfo> =
        authed_get(&gw, &store, ctx.token.as_deref(), "/api/v1/connections").await?;
    match output {
        OutputFormat::Json => out_json(&list),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.kind.clone(),
                        c.database.clone().unwrap_or_else(|| "-".into()),
                        c.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            out_table(&["NAME", "TYPE", "DATABASE", "DESCRIPTION"], &rows)
        }
    }
}
