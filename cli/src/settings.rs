//! The CLI's own settings file (`~/.config/hoop/config.toml`): the default gateway and, per
//! gateway, how its TLS certificate is trusted. Precedence: this file < environment < flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::{CliResult, internal};

/// Per-gateway trust settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Pinned `SHA256:<hex>` of the gateway's certificate (self-signed gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// PEM bundle of CAs to trust for this gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// The settings file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Gateway used when neither `--gateway` nor `HOOP_GATEWAY` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Keyed by normalised gateway URL.
    #[serde(default)]
    pub gateways: BTreeMap<String, GatewaySettings>,
}

/// Where hoop keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `config.toml` lives here.
    pub config_dir: PathBuf,
    /// Cached credentials (when no keyring) live here.
    pub data_dir: PathBuf,
}

impl Paths {
    /// The platform directories (`$XDG_CONFIG_HOME/hoop`, `$XDG_DATA_HOME/hoop` on Linux);
    /// `HOOP_CONFIG_DIR` and `HOOP_DATA_DIR` override them.
    pub fn discover() -> CliResult<Paths> {
        let dirs = directories::ProjectDirs::from("dev", "hoop", "hoop");
        let config_dir = std::env::var_os("HOOP_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs.as_ref().map(|d| d.config_dir().to_path_buf()));
        let data_dir = std::env::var_os("HOOP_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs.as_ref().map(|d| d.data_dir().to_path_buf()));
        match (config_dir, data_dir) {
            (Some(config_dir), Some(data_dir)) => Ok(Paths {
                config_dir,
                data_dir,
            }),
            _ => Err(internal(
                "cannot find a home directory: set HOME, or HOOP_CONFIG_DIR and HOOP_DATA_DIR",
            )),
        }
    }

    /// The settings file.
    pub fn settings_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }
}

/// Normalises a gateway URL: scheme and host lower-case, no trailing slash, https only.
pub fn normalise_gateway(url: &str) -> CliResult<String> {
    // Not echoed: `https://user:password@gw` would put a password on the screen and in logs.
    if url.contains('@') {
        return Err(crate::exit::usage(
            "the gateway URL must not contain a user name or password (`hoop login` signs you in); give https://HOST[:PORT]",
        ));
    }
    let parsed = url::Url::parse(url.trim()).map_err(|e| {
        crate::exit::usage(format!(
            "gateway {url:?} is not a URL ({e}); give one like https://gw.example.com"
        ))
    })?;
    if parsed.scheme() != "https" {
        return Err(crate::exit::usage(format!(
            "gateway {url:?} must use https:// (tokens never travel in clear text)"
        )));
    }
    if parsed.host_str().is_none() {
        return Err(crate::exit::usage(format!("gateway {url:?} has no host")));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

impl Settings {
    /// Loads the file; a missing file is empty settings.
    pub fn load(path: &Path) -> CliResult<Settings> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| internal(format!("{}: {}", path.display(), e.message()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(internal(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes the file (atomically: temp file and rename).
    pub fn save(&self, path: &Path) -> CliResult<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        let text = toml::to_string_pretty(self)
            .map_err(|e| internal(format!("cannot encode settings: {e}")))?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, format!("# Written by hoop; safe to edit.\n{text}"))
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| internal(format!("cannot write {}: {e}", path.display())))
    }

    /// Trust settings of a gateway.
    pub fn gateway(&self, url: &str) -> GatewaySettings {
        self.gateways.get(url).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_are_normalised_and_https_only() {
        assert_eq!(
            normalise_gateway("https://GW.example.com/").unwrap(),
            "https://gw.example.com"
        );
        assert_eq!(
            normalise_gateway("https://127.0.0.1:8443").unwrap(),
            "https://127.0.0.1:8443"
        );
        assert!(normalise_gateway("http://gw").is_err());
        assert!(normalise_gateway("gw.example.com").is_err());
        let e = normalise_gateway("http://alice:hunter2@gw.example.com").unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[test]
    fn settings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let mut s = Settings {
            gateway: Some("https://a".into()),
            ..Default::default()
        };
        s.gateways.insert(
            "https://a".into(),
            GatewaySettings {
                fingerprint: Some("SHA256:00".into()),
                ca_file: None,
            },
        );
        s.save(&path).unwrap();
        let back = Settings::load(&path).unwrap();
        assert_eq!(back.gateway.as_deref(), Some("https://a"));
        assert_eq!(
            back.gateway("https://a").fingerprint.as_deref(),
            Some("SHA256:00")
        );
    }
}
