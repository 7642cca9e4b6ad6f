//! Durable state behind one trait, so the embedded SQLite default and a shared PostgreSQL (for
//! several gateway replicas) run the same code above it.

mod sqlite;

use async_trait::async_trait;
use hoop_shared::audit::StoredRecord;

pub use sqlite::SqliteStore;

/// A store failure. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row already exists (a user or key name taken).
    #[error("{0} already exists")]
    Conflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// A local user of the built-in issuer.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Login name, also the token subject.
    pub name: String,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A machine API key. Only the SHA-256 of the key is stored.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// Short public id (also embedded in the key, so logs can name a key without its secret).
    pub id: String,
    /// Unique name given at creation.
    pub name: String,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    /// Groups the key acts with.
    pub groups: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Unix seconds, if it expires.
    pub expires_at: Option<i64>,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<i64>,
}

/// A refresh token of the built-in issuer (stored hashed, single use).
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The user.
    pub subject: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Granted scope.
    pub scope: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The gateway's durable state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user; `Conflict` if the name is taken.
    async fn user_create(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Replaces a user's password hash and groups; false if no such user.
    async fn user_update(&self, user: &UserRecord) -> Result<bool, StoreError>;
    /// Looks a user up by name.
    async fn user_get(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// All users, by name.
    async fn user_list(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes a user and their refresh tokens; false if no such user.
    async fn user_delete(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores a new key; `Conflict` if the name is taken.
    async fn api_key_create(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Finds a key by the hash of the presented secret.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// All keys, revoked ones included.
    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes by name or id; false if none matched or it was already revoked.
    async fn api_key_revoke(&self, name_or_id: &str, at: i64) -> Result<bool, StoreError>;

    /// Stores a refresh token.
    async fn refresh_put(&self, token: &RefreshRecord) -> Result<(), StoreError>;
    /// Removes and returns a refresh token (tokens are single use: rotation).
    async fn refresh_take(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError>;
    /// Removes every refresh token of a subject (logout everywhere, user deleted).
    async fn refresh_revoke_subject(&self, subject: &str) -> Result<u64, StoreError>;

    /// Appends events to the hash chain in one transaction; returns the first new sequence number
    /// (the events get consecutive numbers from there).
    async fn audit_append(&self, events: &[Vec<u8>]) -> Result<i64, StoreError>;
    /// Records with `seq > after`, at most `limit`, in order.
    async fn audit_range(&self, after: i64, limit: i64) -> Result<Vec<StoredRecord>, StoreError>;
}
