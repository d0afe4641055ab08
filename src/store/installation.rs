//! This installation's id: made once, the first time it is asked for, and kept in the database
//! (so a backup restored elsewhere is the same installation, and a second database is another).

use chrono::Utc;

use super::{Store, StoreError, on_db};

impl Store {
    /// The installation's id, made now if this database has none yet. Two processes asking at
    /// once get the same one (the first insert wins).
    pub async fn installation_id(&self) -> Result<String, StoreError> {
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        let id: String = on_db!(self, p => {
            sqlx::query(
                "INSERT INTO installation (singleton, id, created_at) VALUES (1, $1, $2) \
                 ON CONFLICT (singleton) DO NOTHING",
            )
            .bind(&fresh)
            .bind(Utc::now())
            .execute(p)
            .await?;
            sqlx::query_scalar("SELECT id FROM installation WHERE singleton = 1")
                .fetch_one(p)
                .await?
        });
        Ok(id)
    }
}
