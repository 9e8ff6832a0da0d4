//! The keystore (DESIGN.md §6): master key → one key-encryption key per tenant → data
//! keys per scope (a person, an integration). Wrapped keys live in a database of their
//! own, apart from the data they protect, so a copy of a service's database never
//! carries the keys to read it. Destroying a scope's data key (crypto-shredding) makes
//! everything sealed under it unreadable at once, in the live database and in every copy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::ids::{KeyId, TenantId};

/// What a data key protects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// One person's personal fields and native content.
    Person(String),
    /// Everything imported through one integration.
    Integration(String),
}

impl KeyScope {
    fn kind(&self) -> &'static str {
        match self {
            KeyScope::Person(_) => "person",
            KeyScope::Integration(_) => "integration",
        }
    }

    fn id(&self) -> &str {
        match self {
            KeyScope::Person(id) | KeyScope::Integration(id) => id,
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

/// The associated data that binds a sealed field to its tenant, table, column and row.
pub fn field_aad(tenant: TenantId, table: &str, column: &str, row_id: &str) -> Vec<u8> {
    format!("mindmesh/field/v1|{tenant}|{table}|{column}|{row_id}").into_bytes()
}

/// A service's keystore. Cheap to clone.
#[derive(Clone)]
pub struct Keystore {
    db: DatabaseConnection,
    master: SecretKey,
    cache: Arc<Mutex<HashMap<KeyId, SecretKey>>>,
}

impl Keystore {
    /// A keystore over its own database `db` (already migrated with [`KeystoreMigrator`]).
    pub fn new(db: DatabaseConnection, master: SecretKey) -> Self {
        Keystore {
            db,
            master,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The keystore's database (tests inspect it).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The tenant's key-encryption key, created on first use.
    pub async fn tenant_key(&self, tenant: TenantId) -> Result<SecretKey> {
        if let Some(key) = self.load_tenant_key(tenant).await? {
            return Ok(key);
        }
        let key_id = KeyId::new();
        let key = SecretKey::generate()?;
        let wrapped = self.master.seal(&kek_aad(tenant, key_id), key.expose())?;
        self.db
            .execute(
                &Query::insert()
                    .into_table("tenant_keys")
                    .columns(["tenant_id", "key_id", "version", "wrapped", "created_at"])
                    .values_panic([
                        tenant.to_string().into(),
                        key_id.to_string().into(),
                        1i32.into(),
                        wrapped.into(),
                        chrono::Utc::now().into(),
                    ])
                    .on_conflict(OnConflict::column("tenant_id").do_nothing().to_owned())
                    .to_owned(),
            )
            .await?;
        // Whoever won a concurrent creation, everybody uses the stored key.
        self.load_tenant_key(tenant)
            .await?
            .ok_or_else(|| Error::Internal("tenant key vanished after creation".into()))
    }

    /// The tenant's key-encryption key if it exists; never creates one (for readers,
    /// which must not leave keys behind for tenants they merely asked about).
    pub async fn existing_tenant_key(&self, tenant: TenantId) -> Result<Option<SecretKey>> {
        self.load_tenant_key(tenant).await
    }

    async fn load_tenant_key(&self, tenant: TenantId) -> Result<Option<SecretKey>> {
        let row = self
            .db
            .query_one(
                &Query::select()
                    .columns(["key_id", "wrapped"])
                    .from("tenant_keys")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let key_id: String = row.try_get("", "key_id")?;
        let key_id: KeyId = key_id
            .parse()
            .map_err(|_| Error::Internal("malformed tenant key id".into()))?;
        if let Some(key) = self.cached(key_id) {
            return Ok(Some(key));
        }
        let wrapped: Vec<u8> = row.try_get("", "wrapped")?;
        let key = SecretKey::from_slice(&self.master.open(&kek_aad(tenant, key_id), &wrapped)?)?;
        self.cache_put(key_id, key.clone());
        Ok(Some(key))
    }

    /// The data key of `scope`, created on first use.
    pub async fn data_key(&self, tenant: TenantId, scope: &KeyScope) -> Result<(KeyId, SecretKey)> {
        if let Some(found) = self.find_data_key(tenant, scope).await? {
            return Ok(found);
        }
        let kek = self.tenant_key(tenant).await?;
        let key_id = KeyId::new();
        let key = SecretKey::generate()?;
        let wrapped = kek.seal(&dek_aad(tenant, key_id), key.expose())?;
        self.db
            .execute(
                &Query::insert()
                    .into_table("data_keys")
                    .columns([
                        "key_id",
                        "tenant_id",
                        "scope_kind",
                        "scope_id",
                        "version",
                        "wrapped",
                        "created_at",
                    ])
                    .values_panic([
                        key_id.to_string().into(),
                        tenant.to_string().into(),
                        scope.kind().into(),
                        scope.id().into(),
                        1i32.into(),
                        wrapped.into(),
                        chrono::Utc::now().into(),
                    ])
                    .on_conflict(
                        OnConflict::columns(["tenant_id", "scope_kind", "scope_id"])
                            .do_nothing()
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        self.find_data_key(tenant, scope)
            .await?
            .ok_or_else(|| Error::Internal("data key vanished after creation".into()))
    }

    async fn find_data_key(
        &self,
        tenant: TenantId,
        scope: &KeyScope,
    ) -> Result<Option<(KeyId, SecretKey)>> {
        let row = self
            .db
            .query_one(
                &Query::select()
                    .column("key_id")
                    .from("data_keys")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("scope_kind").eq(scope.kind()))
                    .and_where(Expr::col("scope_id").eq(scope.id()))
                    .to_owned(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let key_id: String = row.try_get("", "key_id")?;
        let key_id: KeyId = key_id
            .parse()
            .map_err(|_| Error::Internal("malformed data key id".into()))?;
        Ok(Some((key_id, self.key(tenant, key_id).await?)))
    }

    /// The data key `key_id`. A shredded key is NOT_FOUND: what it sealed is gone.
    pub async fn key(&self, tenant: TenantId, key_id: KeyId) -> Result<SecretKey> {
        if let Some(key) = self.cached(key_id) {
            return Ok(key);
        }
        let row = self
            .db
            .query_one(
                &Query::select()
                    .column("wrapped")
                    .from("data_keys")
                    .and_where(Expr::col("key_id").eq(key_id.to_string()))
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("data key"))?;
        let wrapped: Vec<u8> = row.try_get("", "wrapped")?;
        let kek = self.tenant_key(tenant).await?;
        let key = SecretKey::from_slice(&kek.open(&dek_aad(tenant, key_id), &wrapped)?)?;
        self.cache_put(key_id, key.clone());
        Ok(key)
    }

    /// Destroys the data key of `scope`; returns the ids destroyed (empty if none).
    pub async fn shred(&self, tenant: TenantId, scope: &KeyScope) -> Result<Vec<KeyId>> {
        let ids = self
            .key_ids(
                Expr::col("tenant_id")
                    .eq(tenant.to_string())
                    .and(Expr::col("scope_kind").eq(scope.kind()))
                    .and(Expr::col("scope_id").eq(scope.id())),
            )
            .await?;
        self.db
            .execute(
                &Query::delete()
                    .from_table("data_keys")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("scope_kind").eq(scope.kind()))
                    .and_where(Expr::col("scope_id").eq(scope.id()))
                    .to_owned(),
            )
            .await?;
        self.forget(&ids);
        Ok(ids)
    }

    /// Destroys every key of `tenant`, its key-encryption key last.
    pub async fn shred_tenant(&self, tenant: TenantId) -> Result<Vec<KeyId>> {
        let ids = self
            .key_ids(Expr::col("tenant_id").eq(tenant.to_string()))
            .await?;
        for table in ["data_keys", "tenant_keys"] {
            self.db
                .execute(
                    &Query::delete()
                        .from_table(table)
                        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                        .to_owned(),
                )
                .await?;
        }
        self.forget(&ids);
        self.cache
            .lock()
            .map_err(|_| Error::Internal("key cache poisoned".into()))?
            .clear();
        Ok(ids)
    }

    /// The ids of the data keys of `scope` (before shredding them, to report them).
    pub async fn scope_key_ids(&self, tenant: TenantId, scope: &KeyScope) -> Result<Vec<KeyId>> {
        self.key_ids(
            Expr::col("tenant_id")
                .eq(tenant.to_string())
                .and(Expr::col("scope_kind").eq(scope.kind()))
                .and(Expr::col("scope_id").eq(scope.id())),
        )
        .await
    }

    async fn key_ids(&self, filter: sea_orm::sea_query::SimpleExpr) -> Result<Vec<KeyId>> {
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .column("key_id")
                    .from("data_keys")
                    .and_where(filter)
                    .to_owned(),
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("", "key_id")?;
                id.parse::<KeyId>()
                    .map_err(|_| Error::Internal("malformed data key id".into()))
            })
            .collect()
    }

    fn cached(&self, id: KeyId) -> Option<SecretKey> {
        self.cache.lock().ok()?.get(&id).cloned()
    }

    fn cache_put(&self, id: KeyId, key: SecretKey) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id, key);
        }
    }

    fn forget(&self, ids: &[KeyId]) {
        if let Ok(mut cache) = self.cache.lock() {
            for id in ids {
                cache.remove(id);
            }
        }
    }
}

fn kek_aad(tenant: TenantId, key_id: KeyId) -> Vec<u8> {
    format!("mindmesh/kek/v1|{tenant}|{key_id}").into_bytes()
}

fn dek_aad(tenant: TenantId, key_id: KeyId) -> Vec<u8> {
    format!("mindmesh/dek/v1|{tenant}|{key_id}").into_bytes()
}

/// Schema of a keystore database.
pub struct KeystoreMigrator;

#[async_trait::async_trait]
impl MigratorTrait for KeystoreMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(KeyTables)]
    }
}

struct KeyTables;

impl MigrationName for KeyTables {
    fn name(&self) -> &str {
        "m20261129_000001_keystore"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for KeyTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("tenant_keys")
                    .if_not_exists()
                    .col(string("tenant_id").primary_key())
                    .col(string_uniq("key_id"))
                    .col(integer("version"))
                    .col(blob("wrapped"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("data_keys")
                    .if_not_exists()
                    .col(string("key_id").primary_key())
                    .col(string("tenant_id"))
                    .col(string("scope_kind"))
                    .col(string("scope_id"))
                    .col(integer("version"))
                    .col(blob("wrapped"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("data_keys_scope")
                    .table("data_keys")
                    .col("tenant_id")
                    .col("scope_kind")
                    .col("scope_id")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["data_keys", "tenant_keys"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
