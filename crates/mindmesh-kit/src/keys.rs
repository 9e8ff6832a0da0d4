//! The keystore (DESIGN.md §6): master key → one key-encryption key per tenant → data
//! keys per scope (a person, an integration). Wrapped keys live in a database of their
//! own, apart from the data they protect, so a copy of a service's database never
//! carries the keys to read it. Destroying a scope's data key (crypto-shredding) makes
//! everything sealed under it unreadable at once, in the live database and in every copy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
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
    /// The tenant's blind indexes and pseudonyms (keyed HMACs). A data key like any
    /// other, so that rotating the tenant's key re-wraps it and every index stays valid.
    Index,
    /// The tenant's own records that describe it or its people's choices (its name,
    /// the reasons given for staff access).
    Records,
}

impl KeyScope {
    fn kind(&self) -> &'static str {
        match self {
            KeyScope::Person(_) => "person",
            KeyScope::Integration(_) => "integration",
            KeyScope::Index => "index",
            KeyScope::Records => "records",
        }
    }

    fn id(&self) -> &str {
        match self {
            KeyScope::Person(id) | KeyScope::Integration(id) => id,
            KeyScope::Index | KeyScope::Records => "tenant",
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

/// A short public fingerprint of a master key, recorded beside every tenant key it
/// wraps, so the keystore knows which master opens which row during a rotation.
pub fn master_id(master: &SecretKey) -> String {
    crate::crypto::hex(&master.mac(b"mindmesh/master-id/v1")[..8])
}

/// What one rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Tenants whose key got a new version.
    pub tenants: u64,
    /// Data keys re-wrapped under a new tenant key version.
    pub data_keys_rewrapped: u64,
    /// Tenant key versions re-wrapped under the current master key.
    pub tenant_keys_rewrapped: u64,
    /// Old tenant key versions destroyed because nothing used them any more.
    pub versions_retired: u64,
    /// Old tenant key versions still in use (a data key created during the rotation):
    /// run the rotation again to retire them.
    pub versions_in_use: u64,
    /// Tenant key versions still wrapped under a previous master key; 0 means the
    /// previous master keys can be removed from the configuration.
    pub under_previous_masters: u64,
}

/// The master keys: the current one wraps, previous ones (during a master rotation) only
/// unwrap.
struct Masters {
    current: (String, SecretKey),
    previous: Vec<(String, SecretKey)>,
}

impl Masters {
    fn get(&self, id: &str) -> Result<&SecretKey> {
        // Rows written before master ids were recorded carry none: the current master.
        if id.is_empty() || id == self.current.0 {
            return Ok(&self.current.1);
        }
        self.previous
            .iter()
            .find(|(pid, _)| pid == id)
            .map(|(_, k)| k)
            .ok_or_else(|| {
                Error::Config(format!(
                    "a tenant key is wrapped under master key {id}, which this process does not \
                     have: add it to keys.previous_master_key_files"
                ))
            })
    }
}

/// A service's keystore. Cheap to clone.
#[derive(Clone)]
pub struct Keystore {
    db: DatabaseConnection,
    masters: Arc<Masters>,
    cache: Arc<Mutex<HashMap<KeyId, SecretKey>>>,
}

/// One version of a tenant's key-encryption key, as stored.
struct KekRow {
    version: i32,
    key_id: KeyId,
    master_id: String,
    wrapped: Vec<u8>,
}

impl KekRow {
    /// A row of `tenant_keys` or `tenant_key_history` (`key_id`, `version`, `master_id`,
    /// `wrapped`).
    fn from_row(row: &sea_orm::QueryResult) -> Result<Self> {
        let key_id: String = row.try_get("", "key_id")?;
        Ok(KekRow {
            version: row.try_get("", "version")?,
            key_id: key_id
                .parse()
                .map_err(|_| Error::Internal("malformed tenant key id".into()))?,
            master_id: row.try_get("", "master_id")?,
            wrapped: row.try_get("", "wrapped")?,
        })
    }
}

impl Keystore {
    /// A keystore over its own database `db` (already migrated with [`KeystoreMigrator`]).
    pub fn new(db: DatabaseConnection, master: SecretKey) -> Self {
        Keystore {
            db,
            masters: Arc::new(Masters {
                current: (master_id(&master), master),
                previous: Vec::new(),
            }),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same keystore, also able to unwrap tenant keys wrapped under `previous`
    /// master keys (while a master key rotation is under way).
    pub fn with_previous_masters(self, previous: Vec<SecretKey>) -> Self {
        let current = self.masters.current.clone();
        Keystore {
            masters: Arc::new(Masters {
                current,
                previous: previous.into_iter().map(|k| (master_id(&k), k)).collect(),
            }),
            ..self
        }
    }

    /// The keystore's database (tests inspect it).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The tenant's key-encryption key, created on first use.
    pub async fn tenant_key(&self, tenant: TenantId) -> Result<SecretKey> {
        Ok(self.current_kek(tenant).await?.1)
    }

    /// The tenant's current key version and key, created on first use.
    async fn current_kek(&self, tenant: TenantId) -> Result<(i32, SecretKey)> {
        if let Some(found) = self.load_current_kek(tenant).await? {
            return Ok(found);
        }
        let key_id = KeyId::new();
        let key = SecretKey::generate()?;
        let (master_id, master) = &self.masters.current;
        let wrapped = master.seal(&kek_aad(tenant, key_id), key.expose())?;
        self.db
            .execute(
                &Query::insert()
                    .into_table("tenant_keys")
                    .columns([
                        "tenant_id",
                        "key_id",
                        "version",
                        "master_id",
                        "wrapped",
                        "created_at",
                    ])
                    .values_panic([
                        tenant.to_string().into(),
                        key_id.to_string().into(),
                        1i32.into(),
                        master_id.clone().into(),
                        wrapped.into(),
                        chrono::Utc::now().into(),
                    ])
                    .on_conflict(OnConflict::column("tenant_id").do_nothing().to_owned())
                    .to_owned(),
            )
            .await?;
        // Whoever won a concurrent creation, everybody uses the stored key.
        self.load_current_kek(tenant)
            .await?
            .ok_or_else(|| Error::Internal("tenant key vanished after creation".into()))
    }

    async fn kek_row<C: ConnectionTrait>(
        conn: &C,
        table: &'static str,
        tenant: TenantId,
        version: Option<i32>,
    ) -> Result<Option<KekRow>> {
        let mut query = Query::select();
        query
            .columns(["key_id", "version", "master_id", "wrapped"])
            .from(table)
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()));
        if let Some(version) = version {
            query.and_where(Expr::col("version").eq(version));
        }
        let Some(row) = conn.query_one(&query).await? else {
            return Ok(None);
        };
        KekRow::from_row(&row).map(Some)
    }

    fn open_kek(&self, tenant: TenantId, row: &KekRow) -> Result<SecretKey> {
        if let Some(key) = self.cached(row.key_id) {
            return Ok(key);
        }
        let master = self.masters.get(&row.master_id)?;
        let key = SecretKey::from_slice(&master.open(&kek_aad(tenant, row.key_id), &row.wrapped)?)?;
        self.cache_put(row.key_id, key.clone());
        Ok(key)
    }

    async fn load_current_kek(&self, tenant: TenantId) -> Result<Option<(i32, SecretKey)>> {
        match Self::kek_row(&self.db, "tenant_keys", tenant, None).await? {
            Some(row) => Ok(Some((row.version, self.open_kek(tenant, &row)?))),
            None => Ok(None),
        }
    }

    /// Version `version` of the tenant's key: the current one or an older one that data
    /// keys still use (during a rotation).
    async fn kek(&self, tenant: TenantId, version: i32) -> Result<SecretKey> {
        if let Some(row) = Self::kek_row(&self.db, "tenant_keys", tenant, Some(version)).await? {
            return self.open_kek(tenant, &row);
        }
        let row = Self::kek_row(&self.db, "tenant_key_history", tenant, Some(version))
            .await?
            .ok_or(Error::NotFound("tenant key"))?;
        self.open_kek(tenant, &row)
    }

    /// The data key of `scope`, created on first use.
    pub async fn data_key(&self, tenant: TenantId, scope: &KeyScope) -> Result<(KeyId, SecretKey)> {
        if let Some(found) = self.find_data_key(tenant, scope).await? {
            return Ok(found);
        }
        let (version, kek) = self.current_kek(tenant).await?;
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
                        "kek_version",
                        "wrapped",
                        "created_at",
                    ])
                    .values_panic([
                        key_id.to_string().into(),
                        tenant.to_string().into(),
                        scope.kind().into(),
                        scope.id().into(),
                        1i32.into(),
                        version.into(),
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

    /// The tenant's index key (blind indexes, pseudonyms), created on first use. Callers
    /// derive one key per purpose from it.
    pub async fn index_key(&self, tenant: TenantId) -> Result<SecretKey> {
        Ok(self.data_key(tenant, &KeyScope::Index).await?.1)
    }

    /// The data key of `scope` if it exists; never creates one (for writers that must not
    /// bring back a key a deletion destroyed).
    pub async fn existing_data_key(
        &self,
        tenant: TenantId,
        scope: &KeyScope,
    ) -> Result<Option<(KeyId, SecretKey)>> {
        self.find_data_key(tenant, scope).await
    }

    /// The tenant's index key if it exists; never creates one (for readers, which must
    /// not leave keys behind for tenants they merely asked about).
    pub async fn existing_index_key(&self, tenant: TenantId) -> Result<Option<SecretKey>> {
        Ok(self
            .find_data_key(tenant, &KeyScope::Index)
            .await?
            .map(|(_, k)| k))
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
        // A rotation may re-wrap the key and retire the version it was under between
        // reading the row and reading that version: then the row is read again.
        let mut attempts = 0;
        loop {
            let row = self
                .db
                .query_one(
                    &Query::select()
                        .columns(["wrapped", "kek_version"])
                        .from("data_keys")
                        .and_where(Expr::col("key_id").eq(key_id.to_string()))
                        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                        .to_owned(),
                )
                .await?
                .ok_or(Error::NotFound("data key"))?;
            let wrapped: Vec<u8> = row.try_get("", "wrapped")?;
            let kek = match self.kek(tenant, row.try_get("", "kek_version")?).await {
                Ok(kek) => kek,
                Err(Error::NotFound(_)) if attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let key = SecretKey::from_slice(&kek.open(&dek_aad(tenant, key_id), &wrapped)?)?;
            self.cache_put(key_id, key.clone());
            return Ok(key);
        }
    }

    /// Rotates keys without re-encrypting any content, while the services keep serving
    /// (DESIGN.md §6): each tenant (or only `tenant`) gets a new key version, every data
    /// key is re-wrapped under it, tenant keys wrapped under a previous master key are
    /// re-wrapped under the current one, and old versions nothing uses any more are
    /// destroyed. Data keys themselves do not change, so every sealed field and every
    /// blind index stays valid.
    pub async fn rotate(&self, tenant: Option<TenantId>) -> Result<Rotation> {
        let tenants: Vec<TenantId> = match tenant {
            Some(t) => vec![t],
            None => self
                .db
                .query_all(
                    &Query::select()
                        .column("tenant_id")
                        .from("tenant_keys")
                        .to_owned(),
                )
                .await?
                .iter()
                .map(|r| {
                    r.try_get::<String>("", "tenant_id")?
                        .parse()
                        .map_err(|_| Error::Internal("malformed tenant id in keystore".into()))
                })
                .collect::<Result<_>>()?,
        };
        let mut report = Rotation::default();
        for tenant in tenants {
            if self.new_kek_version(tenant).await?.is_none() {
                continue;
            }
            report.tenants += 1;
            // A data key created concurrently under the old version is caught by the
            // next pass; three passes leave it for the next rotation at worst.
            for _ in 0..3 {
                let moved = self.rewrap_data_keys(tenant).await?;
                report.data_keys_rewrapped += moved;
                report.versions_retired += self.retire_unused(tenant).await?;
                if moved == 0 {
                    break;
                }
            }
            report.tenant_keys_rewrapped += self.rewrap_history(tenant).await?;
        }
        let in_use = self
            .db
            .query_all(
                &Query::select()
                    .column("tenant_id")
                    .from("tenant_key_history")
                    .to_owned(),
            )
            .await?;
        report.versions_in_use = in_use.len() as u64;
        let current = &self.masters.current.0;
        for table in ["tenant_keys", "tenant_key_history"] {
            let rows = self
                .db
                .query_all(
                    &Query::select()
                        .column("tenant_id")
                        .from(table)
                        .and_where(Expr::col("master_id").ne(current.clone()))
                        .to_owned(),
                )
                .await?;
            report.under_previous_masters += rows.len() as u64;
        }
        Ok(report)
    }

    /// Makes a new version of the tenant's key current, keeping the old one in the
    /// history until no data key uses it. Returns the new version (`None`: no key yet).
    async fn new_kek_version(&self, tenant: TenantId) -> Result<Option<i32>> {
        let txn = self.db.begin().await?;
        let Some(old) = Self::kek_row(&txn, "tenant_keys", tenant, None).await? else {
            return Ok(None);
        };
        // The old version moves to the history re-wrapped under the current master.
        let old_key = self.open_kek(tenant, &old)?;
        let (master_id, master) = &self.masters.current;
        txn.execute(
            &Query::insert()
                .into_table("tenant_key_history")
                .columns([
                    "tenant_id",
                    "version",
                    "key_id",
                    "master_id",
                    "wrapped",
                    "created_at",
                ])
                .values_panic([
                    tenant.to_string().into(),
                    old.version.into(),
                    old.key_id.to_string().into(),
                    master_id.clone().into(),
                    master
                        .seal(&kek_aad(tenant, old.key_id), old_key.expose())?
                        .into(),
                    chrono::Utc::now().into(),
                ])
                .to_owned(),
        )
        .await?;
        let key_id = KeyId::new();
        let key = SecretKey::generate()?;
        let version = old.version + 1;
        let changed = txn
            .execute(
                &Query::update()
                    .table("tenant_keys")
                    .value("key_id", key_id.to_string())
                    .value("version", version)
                    .value("master_id", master_id.clone())
                    .value(
                        "wrapped",
                        master.seal(&kek_aad(tenant, key_id), key.expose())?,
                    )
                    .value("created_at", chrono::Utc::now())
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("version").eq(old.version))
                    .to_owned(),
            )
            .await?
            .rows_affected();
        if changed != 1 {
            // Another rotation got there first; the transaction rolls back.
            return Err(Error::Unavailable(
                "another key rotation of this tenant is running; retry".into(),
            ));
        }
        txn.commit().await?;
        Ok(Some(version))
    }

    /// Re-wraps every data key of `tenant` that is not under the current key version.
    async fn rewrap_data_keys(&self, tenant: TenantId) -> Result<u64> {
        let Some(current) = Self::kek_row(&self.db, "tenant_keys", tenant, None).await? else {
            return Ok(0);
        };
        let kek = self.open_kek(tenant, &current)?;
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(["key_id", "kek_version"])
                    .from("data_keys")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("kek_version").ne(current.version))
                    .to_owned(),
            )
            .await?;
        let mut moved = 0;
        for row in rows {
            let id: String = row.try_get("", "key_id")?;
            let key_id: KeyId = id
                .parse()
                .map_err(|_| Error::Internal("malformed data key id".into()))?;
            let old_version: i32 = row.try_get("", "kek_version")?;
            let key = match self.key(tenant, key_id).await {
                Ok(key) => key,
                // Shredded meanwhile: nothing to re-wrap.
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            moved += self
                .db
                .execute(
                    &Query::update()
                        .table("data_keys")
                        .value("wrapped", kek.seal(&dek_aad(tenant, key_id), key.expose())?)
                        .value("kek_version", current.version)
                        .and_where(Expr::col("key_id").eq(id))
                        .and_where(Expr::col("kek_version").eq(old_version))
                        .to_owned(),
                )
                .await?
                .rows_affected();
        }
        Ok(moved)
    }

    /// Destroys old versions of the tenant's key that no data key uses any more.
    async fn retire_unused(&self, tenant: TenantId) -> Result<u64> {
        let used: Vec<i32> = self
            .db
            .query_all(
                &Query::select()
                    .distinct()
                    .column("kek_version")
                    .from("data_keys")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .iter()
            .map(|r| r.try_get::<i32>("", "kek_version"))
            .collect::<std::result::Result<_, _>>()?;
        let mut delete = Query::delete();
        delete
            .from_table("tenant_key_history")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()));
        if !used.is_empty() {
            delete.and_where(Expr::col("version").is_not_in(used));
        }
        Ok(self.db.execute(&delete).await?.rows_affected())
    }

    /// Re-wraps the history versions still kept for `tenant` under the current master.
    async fn rewrap_history(&self, tenant: TenantId) -> Result<u64> {
        let (master_id, master) = &self.masters.current;
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(["key_id", "version", "master_id", "wrapped"])
                    .from("tenant_key_history")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("master_id").ne(master_id.clone()))
                    .to_owned(),
            )
            .await?;
        let mut moved = 0;
        for row in rows {
            let kek = KekRow::from_row(&row)?;
            let key = self.open_kek(tenant, &kek)?;
            moved += self
                .db
                .execute(
                    &Query::update()
                        .table("tenant_key_history")
                        .value("master_id", master_id.clone())
                        .value(
                            "wrapped",
                            master.seal(&kek_aad(tenant, kek.key_id), key.expose())?,
                        )
                        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                        .and_where(Expr::col("version").eq(kek.version))
                        .to_owned(),
                )
                .await?
                .rows_affected();
        }
        Ok(moved)
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

    /// Destroys every key of `tenant`, its key-encryption keys (every version) last.
    pub async fn shred_tenant(&self, tenant: TenantId) -> Result<Vec<KeyId>> {
        let ids = self
            .key_ids(Expr::col("tenant_id").eq(tenant.to_string()))
            .await?;
        for table in ["data_keys", "tenant_key_history", "tenant_keys"] {
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

    /// The ids of every data key of `tenant` (before shredding them, to report them).
    pub async fn tenant_data_key_ids(&self, tenant: TenantId) -> Result<Vec<KeyId>> {
        self.key_ids(Expr::col("tenant_id").eq(tenant.to_string()))
            .await
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
        vec![Box::new(KeyTables), Box::new(KeyVersions)]
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

/// Versioned keys for rotation: which master wrapped each tenant key, which tenant key
/// version wrapped each data key, and the old tenant key versions still in use.
struct KeyVersions;

impl MigrationName for KeyVersions {
    fn name(&self) -> &str {
        "m20261129_000002_keystore_versions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for KeyVersions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("tenant_keys")
                    .add_column(string("master_id").default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("data_keys")
                    .add_column(integer("kek_version").default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("tenant_key_history")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(integer("version"))
                    .col(string("key_id"))
                    .col(string("master_id"))
                    .col(blob("wrapped"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("tenant_id").col("version"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("tenant_key_history")
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("data_keys")
                    .drop_column("kek_version")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("tenant_keys")
                    .drop_column("master_id")
                    .to_owned(),
            )
            .await
    }
}
