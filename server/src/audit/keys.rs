//! The gateway's audit signing key: an Ed25519 seed in the data dir, created on first start
//! (mode 0600, never logged), and its public half for verifiers.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use hoop_shared::audit::SecretKey;
use rand::RngCore;

/// File name of the seed in the data dir.
pub const KEY_FILE: &str = "audit-signing.key";
const SEED_PREFIX: &str = "ed25519-seed:";

/// The key file of a data dir.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// A key file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or creating the file failed.
    #[error("audit signing key {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a key this gateway wrote.
    #[error(
        "audit signing key {0} is damaged (expected one line `ed25519-seed:<base64 of 32 bytes>`); restore it from backup: a new key cannot vouch for old checkpoints"
    )]
    Damaged(String),
}

/// Loads the key, creating it when the file does not exist.
pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, KeyFileError> {
    let path = key_path(data_dir);
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).ok_or_else(|| KeyFileError::Damaged(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let text = format!(
                "{SEED_PREFIX}{}\n",
                base64::engine::general_purpose::STANDARD.encode(seed)
            );
            // create_new: two processes starting at once cannot both write a key.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(text.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    tracing::info!(path = %path.display(), "created the audit signing key");
                    Ok(SecretKey::from_seed(&seed))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).map_err(io)?;
                    parse(&text).ok_or_else(|| KeyFileError::Damaged(path.display().to_string()))
                }
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

fn parse(text: &str) -> Option<SecretKey> {
    let b64 = text.trim().strip_prefix(SEED_PREFIX)?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let seed: [u8; 32] = raw.try_into().ok()?;
    Some(SecretKey::from_seed(&seed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap().public();
        let b = load_or_create(dir.path()).unwrap().public();
        assert_eq!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(key_path(dir.path()), "nonsense").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyFileError::Damaged(_))
        ));
    }
}
