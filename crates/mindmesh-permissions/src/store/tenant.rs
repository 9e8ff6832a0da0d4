//! `tenants`: customer organisations, and the queries over them.

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::TenantId;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveModelTrait, Set};

use crate::error::Result;

/// A tenant row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    /// Tenant id (UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Display name as an older version stored it, in the clear; empty once sealed.
    pub name: String,
    /// Display name of the organisation, sealed under the tenant's records key.
    pub name_ct: Option<Vec<u8>>,
    /// Creation time.
    pub created_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Inserts a tenant whose name is sealed as `name_ct`.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    id: TenantId,
    name_ct: Vec<u8>,
    created_at: DateTime<Utc>,
) -> Result<()> {
    ActiveModel {
        id: Set(id.to_string()),
        name: Set(String::new()),
        name_ct: Set(Some(name_ct)),
        created_at: Set(created_at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// The tenant `id`, if it exists.
pub async fn get<C: ConnectionTrait>(conn: &C, id: TenantId) -> Result<Option<Model>> {
    Ok(Entity::find_by_id(id.to_string()).one(conn).await?)
}

/// True when the tenant `id` exists.
pub async fn exists<C: ConnectionTrait>(conn: &C, id: TenantId) -> Result<bool> {
    Ok(get(conn, id).await?.is_some())
}

/// Deletes the tenant `id`'s row.
pub async fn delete<C: ConnectionTrait>(conn: &C, id: TenantId) -> Result<()> {
    Entity::delete_by_id(id.to_string()).exec(conn).await?;
    Ok(())
}
