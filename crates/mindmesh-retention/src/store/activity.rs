//! `account_activity`: when each account was last active (the P09 inactivity clock).

use chrono::{DateTime, Utc};
use mindmesh_kit::Result;
use mindmesh_kit::ids::{TenantId, UserId};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

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

/// Records `at` as `user`'s last activity unless a later one is recorded: one
/// statement, so that two reports at once (an event and an RPC) never collide.
pub async fn touch<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: UserId,
    at: DateTime<Utc>,
) -> Result<()> {
    use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
    row::Entity::insert(row::ActiveModel {
        tenant_id: Set(tenant.to_string()),
        user_id: Set(user.to_string()),
        last_active_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([row::Column::TenantId, row::Column::UserId])
            .update_column(row::Column::LastActiveAt)
            .action_and_where(Expr::col((row::Entity, row::Column::LastActiveAt)).lt(at))
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
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

/// Every tenant with recorded activity, and its latest (the tenant's inactivity clock).
pub async fn tenants_last_active<C: ConnectionTrait>(
    conn: &C,
) -> Result<Vec<(TenantId, DateTime<Utc>)>> {
    use sea_orm::QuerySelect;
    let rows: Vec<(String, DateTime<Utc>)> = row::Entity::find()
        .select_only()
        .column(row::Column::TenantId)
        .column_as(row::Column::LastActiveAt.max(), "last_active_at")
        .group_by(row::Column::TenantId)
        .into_tuple()
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|(tenant, at)| {
            let tenant = tenant.parse().map_err(|_| {
                mindmesh_kit::Error::Internal("account activity of an unreadable tenant id".into())
            })?;
            Ok((tenant, at))
        })
        .collect()
}
