//! `tenants`: customer organisations.

use sea_orm::entity::prelude::*;

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
