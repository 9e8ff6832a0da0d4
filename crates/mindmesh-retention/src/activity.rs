//! The inactivity clock: the latest activity of every account (P09).

use chrono::{DateTime, Utc};
use mindmesh_kit::Result;
use mindmesh_kit::ids::{TenantId, UserId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};

use crate::store::account_activity as row;

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
        let at = mindmesh_kit::db::micros(at);
        let existing = row::Entity::find_by_id((tenant.to_string(), user.to_string()))
            .one(conn)
            .await?;
        match existing {
            None => {
                row::ActiveModel {
                    tenant_id: Set(tenant.to_string()),
                    user_id: Set(user.to_string()),
                    last_active_at: Set(at),
                }
                .insert(conn)
                .await?;
            }
            Some(current) if current.last_active_at < at => {
                let mut active: row::ActiveModel = current.into();
                active.last_active_at = Set(at);
                active.update(conn).await?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Forgets a user's activity, or a whole tenant's when `user` is `None`.
    pub async fn forget<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
        user: Option<UserId>,
    ) -> Result<u64> {
        let mut delete =
            row::Entity::delete_many().filter(row::Column::TenantId.eq(tenant.to_string()));
        if let Some(user) = user {
            delete = delete.filter(row::Column::UserId.eq(user.to_string()));
        }
        Ok(delete.exec(conn).await?.rows_affected)
    }

    /// When `user` was last active, if ever.
    pub async fn last_active(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<DateTime<Utc>>> {
        Ok(
            row::Entity::find_by_id((tenant.to_string(), user.to_string()))
                .one(&self.db)
                .await?
                .map(|r| r.last_active_at),
        )
    }
}
