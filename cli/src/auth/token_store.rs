//! Where the CLI keeps the tokens it got from `hoop login`: the OS keyring when one works,
//! otherwise a JSON file readable only by its owner (design §4).
//!
//! Backend choice, made once per process in [`TokenStore::open`]:
//!
//! - `HOOP_CREDENTIAL_STORE=keyring`: the platform keyring (Secret Service over D-Bus on Linux)
//!   or an error; never a silent fallback, because whoever forced it wants to know.
//! - `HOOP_CREDENTIAL_STORE=file`: `<data dir>/credentials.json`.
//! - unset (or `auto`): the keyring if a probe *write and delete* of a throwaway item succeeds
//!   within a few seconds, else the file. A read would not do: a locked Secret Service
//!   collection answers reads with "no entry" and only fails on write, and with no D-Bus session
//!   (CI, SSH boxes, containers) even connecting fails.
//!
//! Limits, stated plainly:
//!
//! - The file store protects tokens from *other users* (mode 0600 in a 0700 directory). It does
//!   not protect them from other processes of the same user, from root, or from backups of the
//!   home directory: the tokens are stored unencrypted.
//! - Concurrent `hoop` processes: writes are atomic (temp file + rename), so readers never see
//!   a half-written file. Writers serialise on an advisory lock so one process's refresh does not
//!   erase another's; if the lock cannot be had within a couple of seconds the write proceeds
//!   anyway and the last writer wins.
//! - The probe costs one keyring write and delete per process. When it fails (say the keyring is
//!   locked today), tokens saved to the keyring on an earlier day are not visible and the user
//!   has to log in again; tokens are never copied between backends.
//! - The keyring calls are synchronous and may block on D-Bus; async callers should wrap them in
//!   `spawn_blocking`. Only the probe in `open` is bounded by a timeout.
//! - Unix only (file modes).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyring_core::{CredentialStore, Entry};
use serde::{Deserialize, Serialize};

/// Environment variable that forces the backend: `keyring`, `file`, or unset/`auto`.
pub const CREDENTIAL_STORE_ENV: &str = "HOOP_CREDENTIAL_STORE";

/// Keyring "service" under which every hoop entry lives; the "user" is the gateway URL.
const KEYRING_SERVICE: &str = "hoop";

/// Name of the token file inside the data dir.
const FILE_NAME: &str = "credentials.json";

/// Advisory lock taken around read-modify-write of the token file. A separate file, because
/// the token file itself is replaced by rename and a lock on the old inode would protect nothing.
const LOCK_FILE_NAME: &str = "credentials.json.lock";

/// In auto mode a keyring that has not answered by now is treated as unusable: a locked
/// collection can sit on an unlock prompt forever, and `hoop` must not hang on an SSH box.
const AUTO_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// When the user forced the keyring, give them time to answer an unlock prompt.
const FORCED_PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Writers normally hold the lock for milliseconds; a holder this slow is stuck (or stopped),
/// and waiting longer would only hang the user's command.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// What we cache per gateway. Never printed or logged: `Debug` redacts the tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct CachedTokens {
    /// Bearer token sent to the gateway.
    pub access_token: String,
    /// Used to get a new access token without a new device flow.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// OIDC ID token, kept for display of who is logged in.
    #[serde(default)]
    pub id_token: Option<String>,
    /// When the access token expires, in unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Where to send the refresh request, so refresh needs no discovery round trip.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The OAuth client the tokens were issued to (needed to refresh them).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Where `hoop logout` revokes the refresh token, when the provider supports it.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

impl fmt::Debug for CachedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens end up in logs and panic messages through Debug; show only whether they exist.
        f.debug_struct("CachedTokens")
            .field("access_token", &Redacted)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| Redacted),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| Redacted))
            .field("expires_at", &self.expires_at)
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("revocation_endpoint", &self.revocation_endpoint)
            .finish()
    }
}

/// Stands in for a secret in Debug output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which backend a [`TokenStore`] ended up using.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The OS keyring (Secret Service on Linux).
    Keyring,
    /// `<data dir>/credentials.json`, mode 0600.
    File,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Keyring => "keyring",
            StoreKind::File => "file",
        })
    }
}

/// Why a token store operation failed. Messages name the failure and the fix and never contain
/// token values (keyring and JSON errors are reduced to their kind and position).
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    /// `HOOP_CREDENTIAL_STORE` holds something we do not understand.
    #[error(
        "{CREDENTIAL_STORE_ENV}={value:?} is not understood: use \"keyring\", \"file\", or leave it unset to choose automatically"
    )]
    InvalidSetting {
        /// The value found in the environment.
        value: String,
    },
    /// The keyring was forced but does not work here.
    #[error(
        "{CREDENTIAL_STORE_ENV}=keyring, but the OS keyring is not usable: {reason}. Start or unlock your keyring (Secret Service), or set {CREDENTIAL_STORE_ENV}=file to keep tokens in a file readable only by you"
    )]
    KeyringUnavailable {
        /// What the probe ran into.
        reason: String,
    },
    /// A keyring operation failed after the keyring had been chosen.
    #[error(
        "could not {action} the tokens for {gateway} in the OS keyring: {reason}. Unlock your keyring and retry, or set {CREDENTIAL_STORE_ENV}=file"
    )]
    Keyring {
        /// What we were doing: "read", "save" or "delete".
        action: &'static str,
        /// The gateway the tokens belong to.
        gateway: String,
        /// The keyring's error, without any secret data.
        reason: String,
    },
    /// The keyring item exists but is not hoop's JSON.
    #[error(
        "the keyring item for {gateway} (service \"hoop\") does not hold valid hoop tokens ({reason}); run `hoop login --gateway {gateway}` to replace it"
    )]
    CorruptEntry {
        /// The gateway the item belongs to.
        gateway: String,
        /// Kind and position of the JSON error.
        reason: String,
    },
    /// The token file exists but cannot be parsed.
    #[error(
        "the credentials file {} is damaged ({reason}); run `hoop login` to replace it, or delete the file and log in again", path.display()
    )]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// Kind and position of the JSON error.
        reason: String,
    },
    /// Reading or writing the token file or its directory failed.
    #[error(
        "could not {action} {}: {cause}. Check that the directory exists and that you own it, or set {CREDENTIAL_STORE_ENV}=keyring", path.display()
    )]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// The tokens could not be turned into JSON (should not happen with plain strings).
    #[error("could not encode the tokens for storage: {reason}")]
    Encode {
        /// Kind of the serialisation error.
        reason: String,
    },
    /// The gateway key is empty after normalisation.
    #[error("the gateway URL is empty; pass --gateway https://your-gateway")]
    EmptyGateway,
}

/// The backend choice read from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preference {
    Auto,
    Keyring,
    File,
}

impl Preference {
    fn parse(value: Option<&str>) -> Result<Self, TokenStoreError> {
        let Some(value) = value else {
            return Ok(Preference::Auto);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Preference::Auto),
            "keyring" => Ok(Preference::Keyring),
            "file" => Ok(Preference::File),
            _ => Err(TokenStoreError::InvalidSetting {
                value: value.to_owned(),
            }),
        }
    }

    fn from_env() -> Result<Self, TokenStoreError> {
        match std::env::var_os(CREDENTIAL_STORE_ENV) {
            None => Self::parse(None),
            Some(raw) => match raw.to_str() {
                Some(value) => Self::parse(Some(value)),
                None => Err(TokenStoreError::InvalidSetting {
                    value: raw.to_string_lossy().into_owned(),
                }),
            },
        }
    }
}

/// Per-gateway token cache backed by the OS keyring or a private file.
#[derive(Debug)]
pub struct TokenStore {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Keyring(Arc<CredentialStore>),
    File(FileStore),
}

impl TokenStore {
    /// Chooses the backend from `HOOP_CREDENTIAL_STORE` ("keyring", "file", or unset for auto).
    ///
    /// Auto tries the platform keyring with a bounded write-and-delete probe and falls back to
    /// `<data_dir>/credentials.json`, logging the reason at debug level. `data_dir` is the CLI's
    /// data directory (from `directories`); it is created 0700 only if the file store is used.
    pub fn open(data_dir: &Path) -> Result<Self, TokenStoreError> {
        let preference = Preference::from_env()?;
        let timeout = match preference {
            Preference::Keyring => FORCED_PROBE_TIMEOUT,
            Preference::Auto | Preference::File => AUTO_PROBE_TIMEOUT,
        };
        Self::open_with(data_dir, preference, platform_store, timeout)
    }

    /// `open` with the environment, the keyring and the timeout injected, for tests.
    fn open_with<F>(
        data_dir: &Path,
        preference: Preference,
        make_store: F,
        probe_timeout: Duration,
    ) -> Result<Self, TokenStoreError>
    where
        F: FnOnce() -> Result<Arc<CredentialStore>, String> + Send + 'static,
    {
        let backend = match preference {
            Preference::File => Backend::File(FileStore::open(data_dir)?),
            Preference::Keyring => match probe_keyring(make_store, probe_timeout) {
                Ok(store) => Backend::Keyring(store),
                Err(reason) => return Err(TokenStoreError::KeyringUnavailable { reason }),
            },
            Preference::Auto => match probe_keyring(make_store, probe_timeout) {
                Ok(store) => Backend::Keyring(store),
                Err(reason) => {
                    let file = FileStore::open(data_dir)?;
                    tracing::debug!(
                        %reason,
                        path = %file.path.display(),
                        "OS keyring not usable; keeping tokens in a file (set {CREDENTIAL_STORE_ENV} to choose)"
                    );
                    Backend::File(file)
                }
            },
        };
        Ok(Self { backend })
    }

    /// Which backend was chosen.
    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Keyring(_) => StoreKind::Keyring,
            Backend::File(_) => StoreKind::File,
        }
    }

    /// The token file, when the file backend is in use (for messages such as "tokens saved to").
    pub fn file_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Keyring(_) => None,
            Backend::File(file) => Some(&file.path),
        }
    }

    /// The cached tokens for `gateway`, or `None` if there are none.
    pub fn load(&self, gateway: &str) -> Result<Option<CachedTokens>, TokenStoreError> {
        let gateway = normalize_gateway(gateway)?;
        match &self.backend {
            Backend::Keyring(store) => keyring_load(store.as_ref(), &gateway),
            Backend::File(file) => file.load(&gateway),
        }
    }

    /// Stores `tokens` for `gateway`, replacing what was there.
    pub fn save(&self, gateway: &str, tokens: &CachedTokens) -> Result<(), TokenStoreError> {
        let gateway = normalize_gateway(gateway)?;
        match &self.backend {
            Backend::Keyring(store) => keyring_save(store.as_ref(), &gateway, tokens),
            Backend::File(file) => file.save(&gateway, tokens),
        }
    }

    /// Forgets the tokens for `gateway`; `true` if something was removed.
    pub fn delete(&self, gateway: &str) -> Result<bool, TokenStoreError> {
        let gateway = normalize_gateway(gateway)?;
        match &self.backend {
            Backend::Keyring(store) => keyring_delete(store.as_ref(), &gateway),
            Backend::File(file) => file.delete(&gateway),
        }
    }
}

/// One key per gateway however the user typed it: `https://GW.example.com/` and
/// `https://gw.example.com` must find the same tokens.
fn normalize_gateway(gateway: &str) -> Result<String, TokenStoreError> {
    let trimmed = gateway.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(TokenStoreError::EmptyGateway);
    }
    // Scheme and host are case-insensitive; the path is not, so only the prefix is lowered.
    let authority_end = match trimmed.find("://") {
        Some(scheme_end) => {
            let after = scheme_end + 3;
            trimmed
                .get(after..)
                .and_then(|rest| rest.find(['/', '?', '#']))
                .map_or(trimmed.len(), |offset| after + offset)
        }
        None => trimmed.len(),
    };
    let (prefix, rest) = trimmed
        .split_at_checked(authority_end)
        .unwrap_or((trimmed, ""));
    Ok(format!("{}{rest}", prefix.to_ascii_lowercase()))
}

// ---------------------------------------------------------------------------------------------
// Keyring backend

/// The platform's keyring. Other platforms' stores (macOS, Windows) would be chosen here.
fn platform_store() -> Result<Arc<CredentialStore>, String> {
    let store = zbus_secret_service_keyring_store::Store::new().map_err(|err| {
        format!(
            "cannot reach the Secret Service: {}",
            describe_keyring_error(&err)
        )
    })?;
    Ok(store)
}

/// Creates the store and proves it can write and delete, on a separate thread so a D-Bus call
/// stuck on an unlock prompt cannot hang `hoop`. On timeout the thread is left behind; it ends
/// with the process, or finishes its harmless probe if the user unlocks the keyring meanwhile.
fn probe_keyring<F>(make_store: F, timeout: Duration) -> Result<Arc<CredentialStore>, String>
where
    F: FnOnce() -> Result<Arc<CredentialStore>, String> + Send + 'static,
{
    let (sender, receiver) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("hoop-keyring-probe".to_owned())
        .spawn(move || {
            let outcome =
                make_store().and_then(|store| probe_store(store.as_ref()).map(|()| store));
            // The receiver is gone if we timed out; nobody is left to tell.
            let _ = sender.send(outcome);
        })
        .map_err(|err| format!("could not start the keyring probe: {err}"))?;
    match receiver.recv_timeout(timeout) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "no answer from the keyring within {} s (a locked collection waiting for an unlock prompt, or an unresponsive Secret Service)",
            timeout.as_secs_f32()
        )),
        Err(RecvTimeoutError::Disconnected) => Err("the keyring probe crashed".to_owned()),
    }
}

/// Write then delete a throwaway item: reads prove nothing on a locked collection.
fn probe_store(store: &CredentialStore) -> Result<(), String> {
    // Per process, so concurrent `hoop`s do not delete each other's probe. Never a URL, so it
    // cannot collide with a gateway entry.
    let user = format!("hoop-probe-{}", std::process::id());
    let entry = store.build(KEYRING_SERVICE, &user, None).map_err(|err| {
        format!(
            "cannot address a keyring item: {}",
            describe_keyring_error(&err)
        )
    })?;
    entry
        .set_password("probe")
        .map_err(|err| format!("test write failed: {}", describe_keyring_error(&err)))?;
    entry.delete_credential().map_err(|err| {
        format!(
            "test write worked but deleting it failed: {} (an item \"{user}\" under service \"{KEYRING_SERVICE}\" may be left behind)",
            describe_keyring_error(&err)
        )
    })
}

fn keyring_entry(
    store: &CredentialStore,
    gateway: &str,
    action: &'static str,
) -> Result<Entry, TokenStoreError> {
    store
        .build(KEYRING_SERVICE, gateway, None)
        .map_err(|err| keyring_error(action, gateway, &err))
}

fn keyring_load(
    store: &CredentialStore,
    gateway: &str,
) -> Result<Option<CachedTokens>, TokenStoreError> {
    let entry = keyring_entry(store, gateway, "read")?;
    match entry.get_password() {
        Ok(json) => {
            serde_json::from_str(&json)
                .map(Some)
                .map_err(|err| TokenStoreError::CorruptEntry {
                    gateway: gateway.to_owned(),
                    reason: describe_json_error(&err),
                })
        }
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(err) => Err(keyring_error("read", gateway, &err)),
    }
}

fn keyring_save(
    store: &CredentialStore,
    gateway: &str,
    tokens: &CachedTokens,
) -> Result<(), TokenStoreError> {
    let json = serde_json::to_string(tokens).map_err(|err| TokenStoreError::Encode {
        reason: describe_json_error(&err),
    })?;
    keyring_entry(store, gateway, "save")?
        .set_password(&json)
        .map_err(|err| keyring_error("save", gateway, &err))
}

fn keyring_delete(store: &CredentialStore, gateway: &str) -> Result<bool, TokenStoreError> {
    match keyring_entry(store, gateway, "delete")?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring_core::Error::NoEntry) => Ok(false),
        Err(err) => Err(keyring_error("delete", gateway, &err)),
    }
}

fn keyring_error(
    action: &'static str,
    gateway: &str,
    err: &keyring_core::Error,
) -> TokenStoreError {
    TokenStoreError::Keyring {
        action,
        gateway: gateway.to_owned(),
        reason: describe_keyring_error(err),
    }
}

/// keyring-core errors can carry the stored bytes (`BadEncoding`, `BadDataFormat`), which would
/// be our tokens; keep only what kind of failure it was. The error is not kept as a `source`
/// for the same reason: someone would `{:?}` it.
fn describe_keyring_error(err: &keyring_core::Error) -> String {
    use keyring_core::Error as K;
    match err {
        K::PlatformFailure(inner) => format!("platform failure: {inner}"),
        K::NoStorageAccess(inner) => format!("access denied (is the keyring locked?): {inner}"),
        K::NoEntry => "no such item".to_owned(),
        K::BadEncoding(_) | K::BadDataFormat(..) => {
            "the stored value is not in the expected format".to_owned()
        }
        K::BadStoreFormat(why) => format!("the keyring's own data is malformed: {why}"),
        K::Ambiguous(items) => format!(
            "{} keyring items match; remove the duplicates with your keyring manager (e.g. Seahorse)",
            items.len()
        ),
        // TooLong, Invalid, NoDefaultStore, NotSupportedByStore and future variants carry only
        // names and limits, never stored data.
        other => other.to_string(),
    }
}

/// serde_json's messages can quote the offending value (which may be a token); keep only the
/// kind and position.
fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match err.classify() {
        Category::Io => "read error",
        Category::Syntax => "not valid JSON",
        Category::Data => "unexpected content",
        Category::Eof => "cut short",
    };
    format!("{kind} at line {} column {}", err.line(), err.column())
}

// ---------------------------------------------------------------------------------------------
// File backend

#[derive(Debug)]
struct FileStore {
    dir: PathBuf,
    path: PathBuf,
}

type TokenMap = BTreeMap<String, CachedTokens>;

impl FileStore {
    fn open(data_dir: &Path) -> Result<Self, TokenStoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|cause| io_error("create the directory", data_dir, cause))?;
        let store = Self {
            dir: data_dir.to_path_buf(),
            path: data_dir.join(FILE_NAME),
        };
        store.tighten_permissions()?;
        Ok(store)
    }

    /// A file left readable by others (copied in, restored from backup, older tool) is fixed
    /// rather than refused: refusing would leave the secrets exposed and the user stuck.
    fn tighten_permissions(&self) -> Result<(), TokenStoreError> {
        let metadata = match fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(cause) => return Err(io_error("inspect", &self.path, cause)),
        };
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&self.path, fs::Permissions::from_mode(0o600))
                .map_err(|cause| io_error("restrict the permissions of", &self.path, cause))?;
            tracing::warn!(
                path = %self.path.display(),
                "credentials file was accessible to other users (mode {mode:04o}); changed it to 0600. \
                 If others could read it, log out and in again to replace the tokens"
            );
        }
        Ok(())
    }

    /// `Ok(None)` when the file does not exist yet.
    fn read_all(&self) -> Result<Option<TokenMap>, TokenStoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(io_error("read", &self.path, cause)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| TokenStoreError::CorruptFile {
                path: self.path.clone(),
                reason: describe_json_error(&err),
            })
    }

    fn load(&self, gateway: &str) -> Result<Option<CachedTokens>, TokenStoreError> {
        Ok(self.read_all()?.and_then(|mut map| map.remove(gateway)))
    }

    fn save(&self, gateway: &str, tokens: &CachedTokens) -> Result<(), TokenStoreError> {
        let _lock = self.lock();
        let mut map = match self.read_all() {
            Ok(map) => map.unwrap_or_default(),
            // Refusing would make `hoop login` unable to ever fix a damaged file; what it held
            // is unreadable anyway.
            Err(TokenStoreError::CorruptFile { path, reason }) => {
                tracing::warn!(
                    path = %path.display(),
                    %reason,
                    "replacing a damaged credentials file; other gateways will need `hoop login` again"
                );
                TokenMap::new()
            }
            Err(err) => return Err(err),
        };
        map.insert(gateway.to_owned(), tokens.clone());
        self.write_all(&map)
    }

    fn delete(&self, gateway: &str) -> Result<bool, TokenStoreError> {
        let _lock = self.lock();
        let Some(mut map) = self.read_all()? else {
            return Ok(false);
        };
        if map.remove(gateway).is_none() {
            return Ok(false);
        }
        self.write_all(&map)?;
        Ok(true)
    }

    /// Serialises read-modify-write across processes so one process's save does not drop
    /// another's (a lost refresh token can mean a forced re-login). Best effort: on any failure,
    /// or a holder that does not let go, we write anyway; the rename keeps the file whole.
    fn lock(&self) -> Option<File> {
        let lock_path = self.dir.join(LOCK_FILE_NAME);
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
        {
            Ok(file) => file,
            Err(err) => {
                tracing::debug!(path = %lock_path.display(), %err, "cannot open lock file; writing unlocked");
                return None;
            }
        };
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Some(file),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    tracing::warn!(
                        path = %lock_path.display(),
                        "another hoop process has held the credentials lock for {} s; writing anyway",
                        LOCK_WAIT.as_secs()
                    );
                    return None;
                }
                Err(fs::TryLockError::Error(err)) => {
                    tracing::debug!(path = %lock_path.display(), %err, "file locking unsupported; writing unlocked");
                    return None;
                }
            }
        }
    }

    /// Temp file created 0600 from the first byte (never chmod after the fact, which leaves a
    /// window), flushed to disk, then renamed over the old file: a crash leaves the old file or
    /// the new one, never a mix, and never a world-readable copy.
    fn write_all(&self, map: &TokenMap) -> Result<(), TokenStoreError> {
        let json = serde_json::to_vec_pretty(map).map_err(|err| TokenStoreError::Encode {
            reason: describe_json_error(&err),
        })?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let temp_path = self
            .dir
            .join(format!(".{FILE_NAME}.{}.{nanos}.tmp", std::process::id()));
        let written = write_new_private_file(&temp_path, &json)
            .and_then(|()| fs::rename(&temp_path, &self.path));
        if let Err(cause) = written {
            // Best effort: a stray temp file is 0600, so leaving one behind leaks nothing.
            let _ = fs::remove_file(&temp_path);
            return Err(io_error("write", &self.path, cause));
        }
        // Persist the rename itself; without it a power cut can bring the old file back.
        // Best effort: some filesystems refuse to sync directories.
        if let Err(err) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
            tracing::debug!(dir = %self.dir.display(), %err, "could not sync the data directory");
        }
        Ok(())
    }
}

/// `create_new` also refuses to follow a symlink planted at the temp path.
fn write_new_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn io_error(action: &'static str, path: &Path, cause: io::Error) -> TokenStoreError {
    TokenStoreError::Io {
        action,
        path: path.to_path_buf(),
        cause,
    }
}

#[cfg(test)]
// A failed unwrap is how a test reports; the no-panic rule is for the shipped code.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use keyring_core::api::CredentialStoreApi;
    use keyring_core::mock;
    use std::process::Command;

    const SECRET_ACCESS: &str = "SECRET-access-6f1c";
    const SECRET_REFRESH: &str = "SECRET-refresh-93ab";
    const SECRET_ID: &str = "SECRET-id-0d2e";

    fn tokens(n: i64) -> CachedTokens {
        CachedTokens {
            access_token: format!("{SECRET_ACCESS}-{n}"),
            refresh_token: Some(SECRET_REFRESH.to_owned()),
            id_token: Some(SECRET_ID.to_owned()),
            expires_at: Some(1_700_000_000 + n),
            token_endpoint: Some("https://idp.example.com/token".to_owned()),
            client_id: Some("hoop-cli".to_owned()),
            revocation_endpoint: None,
        }
    }

    fn file_store(dir: &Path) -> TokenStore {
        TokenStore::open_with(dir, Preference::File, failing_store, AUTO_PROBE_TIMEOUT).unwrap()
    }

    fn failing_store() -> Result<Arc<CredentialStore>, String> {
        Err("no keyring in this test".to_owned())
    }

    fn mock_store() -> Arc<mock::Store> {
        mock::Store::new().unwrap()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Whether this process could reach a D-Bus session bus at all.
    fn session_bus_configured() -> bool {
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            || std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|dir| Path::new(&dir).join("bus").exists())
    }

    #[test]
    fn file_store_round_trips_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        assert_eq!(store.kind(), StoreKind::File);
        assert_eq!(
            store.file_path(),
            Some(dir.path().join(FILE_NAME).as_path())
        );
        assert!(store.load("https://gw.example.com").unwrap().is_none());

        store.save("https://gw.example.com", &tokens(1)).unwrap();
        let back = store.load("https://gw.example.com").unwrap().unwrap();
        assert_eq!(back.access_token, tokens(1).access_token);
        assert_eq!(back.refresh_token.as_deref(), Some(SECRET_REFRESH));
        assert_eq!(back.id_token.as_deref(), Some(SECRET_ID));
        assert_eq!(back.expires_at, Some(1_700_000_001));
        assert_eq!(
            back.token_endpoint.as_deref(),
            Some("https://idp.example.com/token")
        );

        // A second process sees it too.
        let again = file_store(dir.path());
        assert!(again.load("https://gw.example.com").unwrap().is_some());

        // Overwrite replaces.
        store.save("https://gw.example.com", &tokens(2)).unwrap();
        assert_eq!(
            store
                .load("https://gw.example.com")
                .unwrap()
                .unwrap()
                .access_token,
            tokens(2).access_token
        );
    }

    #[test]
    fn file_is_0600_in_a_0700_directory_created_on_demand() {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("nested").join("hoop");
        let store = file_store(&data_dir);
        assert_eq!(mode_of(&data_dir), 0o700);
        store.save("https://gw.example.com", &tokens(1)).unwrap();
        assert_eq!(mode_of(&data_dir.join(FILE_NAME)), 0o600);
        assert_eq!(mode_of(&data_dir.join(LOCK_FILE_NAME)), 0o600);
        store.save("https://gw2.example.com", &tokens(2)).unwrap();
        assert_eq!(mode_of(&data_dir.join(FILE_NAME)), 0o600);
        // No temp files left behind.
        let names: Vec<String> = fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn loose_permissions_are_tightened_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let store = file_store(dir.path());
        assert_eq!(mode_of(&path), 0o600);
        assert!(store.load("https://gw.example.com").unwrap().is_none());
    }

    #[test]
    fn delete_removes_only_that_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        assert!(
            !store.delete("https://gw.example.com").unwrap(),
            "nothing to delete yet"
        );
        store.save("https://a.example.com", &tokens(1)).unwrap();
        store.save("https://b.example.com", &tokens(2)).unwrap();
        assert!(store.delete("https://a.example.com").unwrap());
        assert!(!store.delete("https://a.example.com").unwrap());
        assert!(store.load("https://a.example.com").unwrap().is_none());
        assert!(store.load("https://b.example.com").unwrap().is_some());
        assert_eq!(mode_of(&dir.path().join(FILE_NAME)), 0o600);
    }

    #[test]
    fn gateways_are_independent_and_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        store.save("https://a.example.com", &tokens(1)).unwrap();
        store
            .save("https://b.example.com:8443", &tokens(2))
            .unwrap();
        store
            .save("https://a.example.com/tenant", &tokens(3))
            .unwrap();
        let a = store.load("HTTPS://A.Example.com/").unwrap().unwrap();
        let b = store
            .load("  https://b.example.com:8443// ")
            .unwrap()
            .unwrap();
        let t = store
            .load("https://a.example.com/tenant/")
            .unwrap()
            .unwrap();
        assert_eq!(a.expires_at, Some(1_700_000_001));
        assert_eq!(b.expires_at, Some(1_700_000_002));
        assert_eq!(t.expires_at, Some(1_700_000_003));
        // The path keeps its case.
        assert!(
            store
                .load("https://a.example.com/TENANT")
                .unwrap()
                .is_none()
        );

        let raw: TokenMap =
            serde_json::from_slice(&fs::read(dir.path().join(FILE_NAME)).unwrap()).unwrap();
        let keys: Vec<&str> = raw.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "https://a.example.com",
                "https://a.example.com/tenant",
                "https://b.example.com:8443"
            ]
        );

        assert!(matches!(
            store.load(" / "),
            Err(TokenStoreError::EmptyGateway)
        ));
    }

    #[test]
    fn corrupt_file_gives_a_clear_error_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let store = file_store(dir.path());

        fs::write(
            &path,
            "{\"https://gw.example.com\": {\"access_token\": \"SECRET-abc\"",
        )
        .unwrap();
        let err = store.load("https://gw.example.com").unwrap_err();
        assert!(
            matches!(err, TokenStoreError::CorruptFile { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("hoop login"), "{msg}");
        assert!(!msg.contains("SECRET"), "{msg}");

        // Wrong types: serde_json would quote the value; we must not.
        fs::write(
            &path,
            r#"{"https://gw.example.com":{"access_token":"SECRET-abc","expires_at":"SECRET-xyz"}}"#,
        )
        .unwrap();
        let err = store.load("https://gw.example.com").unwrap_err();
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("unexpected content"), "{shown}");

        // Deleting from a damaged file refuses rather than guessing.
        assert!(matches!(
            store.delete("https://gw.example.com"),
            Err(TokenStoreError::CorruptFile { .. })
        ));

        // Logging in again repairs it.
        store.save("https://gw.example.com", &tokens(1)).unwrap();
        assert!(store.load("https://gw.example.com").unwrap().is_some());
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn debug_redacts_tokens() {
        let shown = format!("{:?}", tokens(7));
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.starts_with("CachedTokens { access_token: <redacted>, "),
            "{shown}"
        );
        assert!(shown.contains("refresh_token: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("1700000007"), "{shown}");
        let mut bare = tokens(1);
        bare.refresh_token = None;
        assert!(format!("{bare:?}").contains("refresh_token: None"));
        // Pretty form too.
        assert!(!format!("{:#?}", tokens(7)).contains("SECRET"));
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.path().to_path_buf();
                thread::spawn(move || {
                    // A store per thread: separate file descriptions, like separate processes.
                    let store = file_store(&dir);
                    for round in 0..5 {
                        store
                            .save(&format!("https://gw{i}.example.com"), &tokens(round))
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let store = file_store(dir.path());
        for i in 0..8 {
            let got = store
                .load(&format!("https://gw{i}.example.com"))
                .unwrap()
                .unwrap();
            assert_eq!(got.expires_at, Some(1_700_000_004));
        }
    }

    #[test]
    fn env_values_parse() {
        assert_eq!(Preference::parse(None).unwrap(), Preference::Auto);
        assert_eq!(Preference::parse(Some("")).unwrap(), Preference::Auto);
        assert_eq!(Preference::parse(Some("auto")).unwrap(), Preference::Auto);
        assert_eq!(Preference::parse(Some(" File ")).unwrap(), Preference::File);
        assert_eq!(
            Preference::parse(Some("KEYRING")).unwrap(),
            Preference::Keyring
        );
        let err = Preference::parse(Some("vault")).unwrap_err();
        assert!(
            err.to_string().contains("HOOP_CREDENTIAL_STORE=\"vault\""),
            "{err}"
        );
    }

    /// Name of a test in this module as the test harness knows it (no crate prefix), so the
    /// re-exec below works whatever module this file is mounted under.
    fn test_name(name: &str) -> String {
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        format!("{module}::{name}")
    }

    /// Edition 2024 makes `set_var` unsafe (and unsafe is forbidden), so the real `open()` is
    /// exercised with the variable set by re-running this test binary as a child process.
    fn run_child(expect: &str, setting: &str, data_dir: &Path) {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &test_name("env_child"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CREDENTIAL_STORE_ENV, setting)
            .env("HOOP_TOKEN_STORE_TEST_EXPECT", expect)
            .env("HOOP_TOKEN_STORE_TEST_DIR", data_dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("env_child ran"),
            "child did not run its checks:\n{stdout}"
        );
    }

    /// Does nothing unless started by `run_child`.
    #[test]
    fn env_child() {
        let (Some(expect), Some(dir)) = (
            std::env::var_os("HOOP_TOKEN_STORE_TEST_EXPECT"),
            std::env::var_os("HOOP_TOKEN_STORE_TEST_DIR"),
        ) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let started = Instant::now();
        let result = TokenStore::open(&dir);
        match expect.to_str().unwrap() {
            "file" => {
                let store = result.unwrap();
                assert_eq!(store.kind(), StoreKind::File);
                store.save("https://gw.example.com", &tokens(1)).unwrap();
            }
            "invalid" => {
                assert!(matches!(
                    result,
                    Err(TokenStoreError::InvalidSetting { .. })
                ));
            }
            "keyring-error" => {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, TokenStoreError::KeyringUnavailable { .. }),
                    "{err:?}"
                );
                assert!(
                    err.to_string().contains("HOOP_CREDENTIAL_STORE=file"),
                    "{err}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{:?}",
                    started.elapsed()
                );
            }
            other => panic!("unknown expectation {other}"),
        }
        #[allow(clippy::print_stdout)]
        {
            println!("env_child ran");
        }
    }

    #[test]
    fn env_override_file_is_honoured_by_open() {
        let dir = tempfile::tempdir().unwrap();
        run_child("file", "file", dir.path());
        // The child's save landed in the file.
        assert!(
            file_store(dir.path())
                .load("https://gw.example.com")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn env_override_rejects_unknown_values() {
        let dir = tempfile::tempdir().unwrap();
        run_child("invalid", "vault", dir.path());
    }

    #[test]
    fn forced_keyring_without_a_session_bus_fails_fast_and_says_what_to_do() {
        if session_bus_configured() {
            return; // A desktop might really have a keyring; nothing to assert here.
        }
        let dir = tempfile::tempdir().unwrap();
        run_child("keyring-error", "keyring", dir.path());
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn auto_mode_on_this_machine_ends_as_file_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let store = TokenStore::open_with(
            dir.path(),
            Preference::Auto,
            platform_store,
            AUTO_PROBE_TIMEOUT,
        )
        .unwrap();
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(2),
            "auto probe took {elapsed:?}"
        );
        if !session_bus_configured() {
            assert_eq!(store.kind(), StoreKind::File);
        }
    }

    #[test]
    fn auto_mode_bounds_a_hanging_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let hanging = || -> Result<Arc<CredentialStore>, String> {
            thread::sleep(Duration::from_secs(30));
            Err("never reached".to_owned())
        };
        let store = TokenStore::open_with(
            dir.path(),
            Preference::Auto,
            hanging,
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(store.kind(), StoreKind::File);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        let err = TokenStore::open_with(
            dir.path(),
            Preference::Keyring,
            hanging,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no answer from the keyring"),
            "{err}"
        );
    }

    #[test]
    fn keyring_backend_round_trip_with_mock_store() {
        let dir = tempfile::tempdir().unwrap();
        let mock = mock_store();
        let handle = mock.clone();
        let store = TokenStore::open_with(
            dir.path(),
            Preference::Auto,
            move || Ok(handle as Arc<CredentialStore>),
            AUTO_PROBE_TIMEOUT,
        )
        .unwrap();
        assert_eq!(store.kind(), StoreKind::Keyring);
        assert!(store.file_path().is_none());
        assert!(
            !dir.path().join(FILE_NAME).exists(),
            "keyring mode must not write the file"
        );

        assert!(store.load("https://gw.example.com").unwrap().is_none());
        store.save("https://gw.example.com/", &tokens(1)).unwrap();
        store.save("https://other.example.com", &tokens(2)).unwrap();

        // Stored under service "hoop", user = normalised URL, value = JSON.
        let raw = mock
            .build("hoop", "https://gw.example.com", None)
            .unwrap()
            .get_password()
            .unwrap();
        let parsed: CachedTokens = serde_json::from_str(&raw).unwrap();
        assert_eq!(parsed.access_token, tokens(1).access_token);

        let back = store.load("https://GW.example.com").unwrap().unwrap();
        assert_eq!(back.expires_at, Some(1_700_000_001));
        assert!(store.delete("https://gw.example.com").unwrap());
        assert!(!store.delete("https://gw.example.com").unwrap());
        assert!(store.load("https://gw.example.com").unwrap().is_none());
        assert!(store.load("https://other.example.com").unwrap().is_some());

        // The probe item was cleaned up.
        let probe = mock
            .build("hoop", &format!("hoop-probe-{}", std::process::id()), None)
            .unwrap();
        assert!(matches!(
            probe.get_password(),
            Err(keyring_core::Error::NoEntry)
        ));
    }

    #[test]
    fn keyring_errors_are_clear_and_hold_no_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let mock = mock_store();
        let handle = mock.clone();
        let store = TokenStore::open_with(
            dir.path(),
            Preference::Keyring,
            move || Ok(handle as Arc<CredentialStore>),
            AUTO_PROBE_TIMEOUT,
        )
        .unwrap();

        // A value that is not our JSON.
        let entry = mock.build("hoop", "https://gw.example.com", None).unwrap();
        entry.set_password("SECRET-not-json").unwrap();
        let err = store.load("https://gw.example.com").unwrap_err();
        assert!(
            matches!(err, TokenStoreError::CorruptEntry { .. }),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("SECRET"));

        // Bytes in a store error must not leak either.
        let cred: &mock::Cred = entry.as_any().downcast_ref().unwrap();
        cred.set_error(keyring_core::Error::BadEncoding(b"SECRET-bytes".to_vec()));
        let err = store.load("https://gw.example.com").unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("83, 69, 67"),
            "{shown}"
        );
        assert!(
            shown.contains("could not read the tokens for https://gw.example.com"),
            "{shown}"
        );
        assert!(shown.contains("HOOP_CREDENTIAL_STORE=file"), "{shown}");

        // A locked keyring on save.
        cred.set_error(keyring_core::Error::NoStorageAccess(
            "collection is locked".into(),
        ));
        let err = store
            .save("https://gw.example.com", &tokens(1))
            .unwrap_err();
        assert!(err.to_string().contains("is the keyring locked?"), "{err}");
    }

    #[test]
    fn failing_probe_write_falls_back_in_auto_and_errors_when_forced() {
        let dir = tempfile::tempdir().unwrap();
        for preference in [Preference::Auto, Preference::Keyring] {
            let mock = mock_store();
            // The locked-collection case: the write is what fails.
            let probe = mock
                .build("hoop", &format!("hoop-probe-{}", std::process::id()), None)
                .unwrap();
            let cred: &mock::Cred = probe.as_any().downcast_ref().unwrap();
            cred.set_error(keyring_core::Error::NoStorageAccess(
                "collection is locked".into(),
            ));
            let result = TokenStore::open_with(
                dir.path(),
                preference,
                move || Ok(mock as Arc<CredentialStore>),
                AUTO_PROBE_TIMEOUT,
            );
            match preference {
                Preference::Auto => assert_eq!(result.unwrap().kind(), StoreKind::File),
                _ => {
                    let err = result.unwrap_err();
                    let msg = err.to_string();
                    assert!(msg.contains("test write failed"), "{msg}");
                    assert!(msg.contains("locked"), "{msg}");
                    assert!(msg.contains("set HOOP_CREDENTIAL_STORE=file"), "{msg}");
                }
            }
        }
    }
}
