//! The inactivity clock: the latest activity of every account (P09).

use chrono::{DateTime, Utc};
use mindmesh_kit::Result;
use mindmesh_kit::ids::{TenantId, UserId};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::store::activity as store;

/// Account activity over the retention database.
#[derive(Clone)]
pub struct Activity {
    db: DatabaseConnection,
}

impl Activity {
    /// Activity in `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Activity { db }
    }

    /// The database (for callers that need a transaction around [`Activity::touch`]).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Records that `user` was active at `at`; an older time than the one known changes
    /// nothing, so events may arrive in any order.
    pub async fn touch<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<()> {
        store::touch(conn, tenant, user, mindmesh_kit::db::micros(at)).await
    }

    /// Forgets a user's activity, or a whole tenant's when `user` is `None`.
    pub async fn forget<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
        user: Option<UserId>,
    ) -> Result<u64> {
        store::delete(conn, tenant, user).await
    }

    /// When `user` was last active, if ever.
    pub async fn last_active(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<DateTime<Utc>>> {
        store::last_active(&self.db, tenant, user).await
    }
}
