//! `users`: accounts, with every personal field sealed under the person's data key.

use sea_orm::entity::prelude::*;

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
