//! The embedded default store: one SQLite file in the data dir, WAL mode.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use hoop_shared::audit::{GENESIS, StoredRecord, chain_hash};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::{ApiKeyRecord, RefreshRecord, Store, StoreError, UserRecord};

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `hoop.db` in `data_dir` and runs migrations.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("hoop.db");
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the
            // last transactions, never corrupt the chain.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

fn groups_to_json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".into())
}

fn groups_from_json(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("groups: {e}")))
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn user_from_row(r: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        groups: groups_from_json(&r.try_get::<String, _>("groups_json")?)?,
        created_at: r.try_get("created_at")?,
    })
}

fn key_from_row(r: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        key_hash: r.try_get("key_hash")?,
        groups: groups_from_json(&r.try_get::<String, _>("groups_json")?)?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn record_from_row(r: &SqliteRow) -> Result<StoredRecord, StoreError> {
    Ok(StoredRecord {
        seq: r.try_get("seq")?,
        bytes: r.try_get("bytes")?,
        prev_hash: hash32(r.try_get("prev_hash")?, "prev_hash")?,
        hash: hash32(r.try_get("hash")?, "hash")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl Store for SqliteStore {
    async fn user_create(&self, u: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, groups_json, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(groups_to_json(&u.groups))
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("user {:?}", u.name))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn user_update(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE users SET password_hash = ?, groups_json = ? WHERE name = ?")
            .bind(&u.password_hash)
            .bind(groups_to_json(&u.groups))
            .bind(&u.name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn user_get(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_list(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn user_delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE subject = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn api_key_create(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, groups_json, created_at, created_by, expires_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.key_hash)
        .bind(groups_to_json(&k.groups))
        .bind(k.created_at)
        .bind(&k.created_by)
        .bind(k.expires_at)
        .bind(k.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("API key {:?}", k.name))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn api_key_revoke(&self, name_or_id: &str, at: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE (name = ? OR id = ?) AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(name_or_id)
        .bind(name_or_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn refresh_put(&self, t: &RefreshRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, subject, client_id, scope, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&t.token_hash)
        .bind(&t.subject)
        .bind(&t.client_id)
        .bind(&t.scope)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn refresh_take(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let rec = RefreshRecord {
            token_hash: row.try_get("token_hash")?,
            subject: row.try_get("subject")?,
            client_id: row.try_get("client_id")?,
            scope: row.try_get("scope")?,
            expires_at: row.try_get("expires_at")?,
        };
        let del = sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Two concurrent refreshes with one token: only the one that deleted the row wins.
        Ok((del.rows_affected() == 1).then_some(rec))
    }

    async fn refresh_revoke_subject(&self, subject: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM refresh_tokens WHERE subject = ?")
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn audit_append(&self, events: &[Vec<u8>]) -> Result<i64, StoreError> {
        // BEGIN IMMEDIATE takes the write lock before reading the head, so two writers (another
        // process running `hoopd users add`, say) cannot fork the chain.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
            let (mut seq, mut prev) = match head {
                Some(r) => (
                    r.try_get::<i64, _>("seq")?,
                    hash32(r.try_get("hash")?, "hash")?,
                ),
                None => (0, GENESIS),
            };
            let first = seq + 1;
            for bytes in events {
                seq += 1;
                let hash = chain_hash(&prev, bytes);
                sqlx::query(
                    "INSERT INTO audit_log (seq, bytes, prev_hash, hash) VALUES (?, ?, ?, ?)",
                )
                .bind(seq)
                .bind(bytes.as_slice())
                .bind(prev.as_slice())
                .bind(hash.as_slice())
                .execute(&mut *conn)
                .await?;
                prev = hash;
            }
            Ok::<_, StoreError>(first)
        }
        .await;
        match result {
            Ok(first) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(first)
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

    async fn audit_range(&self, after: i64, limit: i64) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, bytes, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use hoop_shared::audit::verify_chain;

    #[tokio::test]
    async fn audit_chain_appends_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .audit_append(&[b"a".to_vec(), b"b".to_vec()])
            .await
            .unwrap();
        store.audit_append(&[b"c".to_vec()]).await.unwrap();
        let recs = store.audit_range(0, 100).await.unwrap();
        assert_eq!(recs.len(), 3);
        verify_chain((0, GENESIS), &recs).unwrap();
    }

    #[tokio::test]
    async fn refresh_tokens_are_single_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let t = RefreshRecord {
            token_hash: "h".into(),
            subject: "alice".into(),
            client_id: "c".into(),
            scope: "openid".into(),
            expires_at: 10,
        };
        store.refresh_put(&t).await.unwrap();
        assert!(store.refresh_take("h").await.unwrap().is_some());
        assert!(store.refresh_take("h").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn duplicate_user_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let u = UserRecord {
            name: "a".into(),
            password_hash: "x".into(),
            groups: vec![],
            created_at: 0,
        };
        store.user_create(&u).await.unwrap();
        assert!(matches!(
            store.user_create(&u).await,
            Err(StoreError::Conflict(_))
        ));
    }
}
