//! `account_activity`: when each account was last active (the P09 inactivity clock).

use chrono::{DateTime, Utc};
use mindmesh_kit::Result;
use mindmesh_kit::ids::{TenantId, UserId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
};

mod row {
    use sea_orm::entity::prelude::*;

    /// One account's last activity.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "account_activity")]
    pub struct Model {
        /// Tenant.
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        /// User.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Latest activity seen.
        pub last_active_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// When `user` of `tenant` was last active, if ever.
pub async fn last_active<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<DateTime<Utc>>> {
    Ok(
        row::Entity::find_by_id((tenant.to_string(), user.to_string()))
            .one(conn)
            .await?
            .map(|r| r.last_active_at),
    )
}

/// Records `at` as `user`'s last activity, whatever was recorded before.
pub async fn set_last_active<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: UserId,
    at: DateTime<Utc>,
) -> Result<()> {
    let key = (tenant.to_string(), user.to_string());
    match row::Entity::find_by_id(key).one(conn).await? {
        None => {
            row::ActiveModel {
                tenant_id: Set(tenant.to_string()),
                user_id: Set(user.to_string()),
                last_active_at: Set(at),
            }
            .insert(conn)
            .await?;
        }
        Some(current) => {
            let mut active = current.into_active_model();
            active.last_active_at = Set(at);
            active.update(conn).await?;
        }
    }
    Ok(())
}

/// Deletes a user's activity, or a whole tenant's when `user` is `None`; returns the
/// rows deleted.
pub async fn delete<C: ConnectionTrait>(
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
