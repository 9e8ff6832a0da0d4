//! `users`: accounts, with every personal field sealed under the person's data key, and
//! the queries over them (always within one tenant).

use mindmesh_kit::ids::{TenantId, UserId};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, QueryOrder, QuerySelect};

use crate::error::Result;

/// A user row. The `*_ct` columns are AES-256-GCM ciphertexts bound to this row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// User id (UUIDv7).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Keystore id of the person's data key that seals the fields below.
    pub key_id: String,
    /// Keyed HMAC of the lowercased email (tenant-scoped blind index): finds a person by
    /// email and keeps emails unique without storing them in the clear.
    pub email_index: String,
    /// Keyed HMAC of the lowercased email domain: matches domain grants (P02).
    pub email_domain_index: String,
    /// Sealed first name.
    pub first_name_ct: Vec<u8>,
    /// Sealed last name.
    pub last_name_ct: Vec<u8>,
    /// Sealed email.
    pub email_ct: Vec<u8>,
    /// Sealed picture URL (sealed empty string when none).
    pub picture_url_ct: Vec<u8>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

fn of_tenant(tenant: TenantId) -> sea_orm::Select<Entity> {
    Entity::find().filter(Column::TenantId.eq(tenant.to_string()))
}

/// Inserts `row`. The database's error is returned as it is, so that the caller can tell
/// an email already taken (a unique violation) from a failure.
pub async fn insert<C: ConnectionTrait>(conn: &C, row: Model) -> std::result::Result<(), DbErr> {
    ActiveModel::from(row).insert(conn).await?;
    Ok(())
}

/// The sealed fields, blind indexes and change time of `row` written over the stored
/// ones (the database's error returned as it is, as for [`insert`]).
pub async fn update<C: ConnectionTrait>(conn: &C, row: Model) -> std::result::Result<(), DbErr> {
    let mut active = ActiveModel::from(row);
    for column in [
        Column::EmailIndex,
        Column::EmailDomainIndex,
        Column::FirstNameCt,
        Column::LastNameCt,
        Column::EmailCt,
        Column::PictureUrlCt,
        Column::UpdatedAt,
    ] {
        active.reset(column);
    }
    active.update(conn).await?;
    Ok(())
}

/// The user `id` of `tenant`, if there is one.
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<Model>> {
    Ok(of_tenant(tenant)
        .filter(Column::Id.eq(id.to_string()))
        .one(conn)
        .await?)
}

/// The user of `tenant` whose email has the blind index `index`, if there is one.
pub async fn with_email_index<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    index: &str,
) -> Result<Option<Model>> {
    Ok(of_tenant(tenant)
        .filter(Column::EmailIndex.eq(index))
        .one(conn)
        .await?)
}

/// Up to `limit` users of `tenant` after `after` (exclusive), in id order (oldest
/// first: ids are UUIDv7).
pub async fn page<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    after: Option<UserId>,
    limit: u64,
) -> Result<Vec<Model>> {
    let mut query = of_tenant(tenant).order_by_asc(Column::Id).limit(limit);
    if let Some(after) = after {
        query = query.filter(Expr::col(Column::Id).gt(after.to_string()));
    }
    Ok(query.all(conn).await?)
}

/// Deletes the user `id` of `tenant`.
pub async fn delete<C: ConnectionTrait>(conn: &C, tenant: TenantId, id: UserId) -> Result<u64> {
    Ok(Entity::delete_many()
        .filter(Column::Id.eq(id.to_string()))
        .filter(Column::TenantId.eq(tenant.to_string()))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Deletes every user of `tenant`; returns how many.
pub async fn delete_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    Ok(Entity::delete_many()
        .filter(Column::TenantId.eq(tenant.to_string()))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Every account of `tenant` as the permission index needs it: its id and the blind
/// indexes of its email and email domain.
pub async fn accounts<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
) -> Result<Vec<crate::engine::Account>> {
    let rows = of_tenant(tenant)
        .select_only()
        .columns([Column::Id, Column::EmailIndex, Column::EmailDomainIndex])
        .into_tuple::<(String, String, String)>()
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|(id, email_index, domain_index)| {
            Ok(crate::engine::Account {
                user: id.parse().map_err(|_| {
                    mindmesh_kit::Error::Internal("malformed user id in store".into())
                })?,
                email_index,
                domain_index,
            })
        })
        .collect()
}
