//! The ingest database: integrations, their sealed credentials, what each has imported
//! (source id → storage document id, for deletions), and items skipped with a reason.
//!
//! Credentials are sealed under the integration's data key, bound to tenant, table,
//! column and row (P01); shredding the key on disconnect makes every copy unreadable.
//!
//! This file holds the types, integrations and their credentials; the rest of [`Store`]
//! is split by concern: `schedule` (leases, requests, what is due), `items` (what each
//! sync imported, skipped and swept), `lifecycle` (disconnect, a tenant's erasure) and
//! `legacy` (rows of an older version, sealed at start).

mod items;
mod legacy;
mod lifecycle;
pub mod migration;
mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::crypto::{MacKey, SecretKey};
use mindmesh_kit::db::FreshStats;
use mindmesh_kit::db::now;
use mindmesh_kit::ids::{CascadeId, DocumentId, IntegrationId, KeyId, TenantId};
use mindmesh_kit::keys::{KeyScope, field_aad};
use mindmesh_kit::{Error, Result, outbox};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, TransactionTrait};

use crate::connector::{Credentials, SourceUser};

/// Rows written per statement.
const CHUNK: usize = 500;
/// The tables an erasure deletes from.
pub const ERASED_TABLES: [&str; 5] = [
    "credentials",
    "items",
    "skipped_items",
    "outside_users",
    "integrations",
];
/// What an integration's disconnect deletes (its row stays, marked disconnected).
const INTEGRATION_TABLES: [&str; 4] = ["credentials", "items", "skipped_items", "outside_users"];

/// Where an integration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Connected; syncs on schedule.
    Active,
    /// The last sync failed; see `last_error`.
    Failing,
    /// Disconnected; its data is being or has been erased.
    Disconnected,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Failing => "failing",
            Status::Disconnected => "disconnected",
        }
    }

    fn parse(value: &str) -> Result<Self> {
        match value {
            "active" => Ok(Status::Active),
            "failing" => Ok(Status::Failing),
            "disconnected" => Ok(Status::Disconnected),
            other => Err(Error::Internal(format!(
                "unknown integration status {other:?}"
            ))),
        }
    }
}

/// A connected source tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integration {
    /// Its id.
    pub id: IntegrationId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Connector kind.
    pub kind: String,
    /// Name chosen at connect time.
    pub display_name: String,
    /// Non-secret settings.
    pub settings: BTreeMap<String, String>,
    /// Where it stands.
    pub status: Status,
    /// When it was connected.
    pub connected_at: DateTime<Utc>,
    /// When its last sync finished.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// The last sync's error, without secrets; empty after a success.
    pub last_error: String,
}

/// Where a sync resumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The connector's cursor; `None` starts a full listing.
    pub cursor: Option<String>,
    /// The current full listing's generation.
    pub generation: i64,
}

/// An imported item as ingest remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Storage's document id.
    pub document: DocumentId,
    /// The source version last stored.
    pub version: String,
    /// The full listing that last saw it.
    pub generation: i64,
    /// The connector's reference it was last stored with (see
    /// `SourceDocument::content_ref`); `None` for items recorded before references were.
    pub reference: Option<String>,
}

/// An item stored or seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemRecord {
    /// The source's id.
    pub external_id: String,
    /// The group the source may report unchanged as a whole (empty: none).
    pub group: String,
    /// Storage's document id.
    pub document: DocumentId,
    /// The source version stored.
    pub version: String,
    /// The connector's reference to the item (sealed at rest).
    pub reference: String,
}

/// What one applied page changes in the ingest database, with the cursor after it.
#[derive(Debug, Default)]
pub struct PageRecord {
    /// Items stored or seen.
    pub items: Vec<ItemRecord>,
    /// External ids removed from Mindmesh.
    pub removed: Vec<String>,
    /// Items skipped: external id → reason.
    pub skipped: Vec<(String, String)>,
    /// Groups whose items the source reported unchanged: seen.
    pub unchanged: Vec<String>,
    /// The cursor after the page (`None`: a full listing next time).
    pub cursor: Option<String>,
    /// The generation the items were seen in.
    pub generation: i64,
    /// Set by the page that completes a full listing: that listing's sweep is due.
    pub sweep_due: Option<i64>,
    /// People outside the source's directory whom the page's grants name, to keep as
    /// principals of the integration.
    pub outsiders: Vec<SourceUser>,
}

/// The ingest database.
#[derive(Clone)]
pub struct Store {
    ctx: ServiceContext,
    /// Planner statistics of `items`, refreshed as syncs fill it.
    item_stats: Arc<FreshStats>,
}

const COLUMNS: [&str; 12] = [
    "id",
    "tenant_id",
    "kind",
    "display_name",
    "settings",
    "status",
    "connected_at",
    "last_synced_at",
    "last_error",
    "fields_key_id",
    "display_name_ct",
    "settings_ct",
];

/// The keys of one integration's records: its data key seals, a key derived from it
/// indexes. Shredding the data key on disconnect makes both useless.
struct RecordKeys {
    key_id: KeyId,
    seal: SecretKey,
    index: MacKey,
}

impl RecordKeys {
    fn new(key_id: KeyId, key: SecretKey) -> Result<Self> {
        Ok(RecordKeys {
            key_id,
            index: key.derive("ingest/source-ids")?.mac_key(),
            seal: key,
        })
    }

    /// An item's or skip record's index: the source's id, keyed.
    fn item(&self, external_id: &str) -> String {
        self.index.blind_index(&[b"item", external_id.as_bytes()])
    }

    /// A group's index.
    fn group(&self, group: &str) -> String {
        self.index.blind_index(&[b"group", group.as_bytes()])
    }
}

fn field(tenant: TenantId, id: IntegrationId, column: &str) -> Vec<u8> {
    field_aad(tenant, "integrations", column, &id.to_string())
}

/// An outside user is bound to its integration and index.
fn outsider_aad(tenant: TenantId, id: IntegrationId, index: &str) -> Vec<u8> {
    field_aad(tenant, "outside_users", "user", &format!("{id}/{index}"))
}

/// An item's reference is bound to its integration and index.
fn reference_aad(tenant: TenantId, id: IntegrationId, index: &str) -> Vec<u8> {
    field_aad(tenant, "items", "reference", &format!("{id}/{index}"))
}

fn skipped_aad(tenant: TenantId, id: IntegrationId, index: &str) -> Vec<u8> {
    field_aad(
        tenant,
        "skipped_items",
        "external_id",
        &format!("{id}/{index}"),
    )
}

impl Store {
    /// The store of the service behind `ctx`.
    pub fn new(ctx: ServiceContext) -> Self {
        Store {
            ctx,
            item_stats: Arc::new(FreshStats::new("items", 10_000)),
        }
    }

    /// The database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.ctx.db
    }

    /// Records a new integration with its sealed credentials and publishes
    /// `integration.connected`, in one transaction.
    pub async fn create(
        &self,
        tenant: TenantId,
        kind: &str,
        display_name: &str,
        settings: &BTreeMap<String, String>,
        credentials: &Credentials,
        audit: &AuditRecord,
    ) -> Result<Integration> {
        let id = IntegrationId::new();
        let connected_at = now();
        let sealed = self.seal(tenant, id, credentials).await?;
        let keys = self.record_keys(tenant, id).await?;
        let txn = self.ctx.db.begin().await?;
        txn.execute(
            &Query::insert()
                .into_table("integrations")
                .columns([
                    "id",
                    "tenant_id",
                    "kind",
                    "display_name",
                    "settings",
                    "fields_key_id",
                    "display_name_ct",
                    "settings_ct",
                    "status",
                    "connected_at",
                    "last_error",
                    "generation",
                    "sync_requested",
                ])
                .values_panic([
                    id.to_string().into(),
                    tenant.to_string().into(),
                    kind.into(),
                    "".into(),
                    "{}".into(),
                    keys.key_id.to_string().into(),
                    keys.seal
                        .seal(&field(tenant, id, "display_name"), display_name.as_bytes())?
                        .into(),
                    keys.seal
                        .seal(
                            &field(tenant, id, "settings"),
                            settings_json(settings)?.as_bytes(),
                        )?
                        .into(),
                    Status::Active.as_str().into(),
                    connected_at.into(),
                    "".into(),
                    0i64.into(),
                    true.into(),
                ])
                .to_owned(),
        )
        .await?;
        txn.execute(&credentials_upsert(tenant, id, sealed)).await?;
        let mut audit = audit.clone();
        audit.subject_id = id.to_string();
        self.ctx.audit.append(&txn, &audit).await?;
        outbox::enqueue(
            &txn,
            &crate::events::integration_connected(self.ctx.service, tenant, id, kind),
        )
        .await?;
        txn.commit().await?;
        self.ctx.relay.wake();
        Ok(Integration {
            id,
            tenant,
            kind: kind.to_owned(),
            display_name: display_name.to_owned(),
            settings: settings.clone(),
            status: Status::Active,
            connected_at,
            last_synced_at: None,
            last_error: String::new(),
        })
    }

    /// One integration of `tenant`.
    pub async fn get(&self, tenant: TenantId, id: IntegrationId) -> Result<Integration> {
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .columns(COLUMNS)
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("integration"))?;
        self.integration(&row).await
    }

    /// Up to `limit` integrations of `tenant` after the one with id `after`, oldest first.
    pub async fn list(
        &self,
        tenant: TenantId,
        after: Option<(DateTime<Utc>, IntegrationId)>,
        limit: u64,
    ) -> Result<Vec<Integration>> {
        let mut query = Query::select();
        query
            .columns(COLUMNS)
            .from("integrations")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .order_by("connected_at", Order::Asc)
            .order_by("id", Order::Asc)
            .limit(limit);
        if let Some((at, id)) = after {
            query.and_where(
                Expr::col("connected_at")
                    .gt(at)
                    .or(Expr::col("connected_at")
                        .eq(at)
                        .and(Expr::col("id").gt(id.to_string()))),
            );
        }
        let rows = self.ctx.db.query_all(&query).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.integration(row).await?);
        }
        Ok(out)
    }

    /// The keys of `id`'s records, made when it was connected. Never made here: a
    /// disconnected integration's keys are destroyed, and nothing seals under it again.
    async fn record_keys(&self, tenant: TenantId, id: IntegrationId) -> Result<RecordKeys> {
        let (key_id, key) = self
            .ctx
            .keystore
            .existing_data_key(tenant, &KeyScope::Integration(id.to_string()))
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(
                    "the integration is disconnected; its records are erased".into(),
                )
            })?;
        RecordKeys::new(key_id, key)
    }

    /// An integration as stored: its sealed display name and settings opened (empty once
    /// its keys are destroyed by a disconnect).
    async fn integration(&self, row: &QueryResult) -> Result<Integration> {
        let mut integration = integration(row)?;
        let key_id: Option<String> = row.try_get("", "fields_key_id")?;
        let Some(key_id) = key_id else {
            return Ok(integration); // written before sealing, and not sealed yet
        };
        let key = match self
            .ctx
            .keystore
            .key(integration.tenant, parse(&key_id)?)
            .await
        {
            Ok(key) => key,
            Err(Error::NotFound(_)) => return Ok(integration), // erased with its keys
            Err(e) => return Err(e),
        };
        let (tenant, id) = (integration.tenant, integration.id);
        let open = |column: &str| -> Result<Option<String>> {
            let sealed: Option<Vec<u8>> = row.try_get("", &format!("{column}_ct"))?;
            sealed
                .map(|ct| {
                    let plain = key.open(&field(tenant, id, column), &ct)?;
                    String::from_utf8(plain)
                        .map_err(|_| Error::Internal("sealed field is not UTF-8".into()))
                })
                .transpose()
        };
        if let Some(name) = open("display_name")? {
            integration.display_name = name;
        }
        if let Some(settings) = open("settings")? {
            integration.settings = serde_json::from_str(&settings)
                .map_err(|_| Error::Internal("stored settings do not decode".into()))?;
        }
        Ok(integration)
    }

    /// The integration's credentials, opened.
    pub async fn credentials(&self, tenant: TenantId, id: IntegrationId) -> Result<Credentials> {
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .columns(["key_id", "secret_ct"])
                    .from("credentials")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("credentials"))?;
        let key_id: String = row.try_get("", "key_id")?;
        let key_id = key_id
            .parse()
            .map_err(|_| Error::Internal("malformed credential key id".into()))?;
        let sealed: Vec<u8> = row.try_get("", "secret_ct")?;
        let key = self.ctx.keystore.key(tenant, key_id).await?;
        let plain = key.open(&credentials_aad(tenant, id), &sealed)?;
        serde_json::from_slice(&plain)
            .map_err(|_| Error::Internal("stored credentials do not decode".into()))
    }

    /// Replaces the integration's credentials (after a token refresh).
    pub async fn save_credentials(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        credentials: &Credentials,
    ) -> Result<()> {
        let sealed = self.seal(tenant, id, credentials).await?;
        // Only while the integration is connected: a refresh racing a disconnect must not
        // bring the credentials back.
        let txn = self.ctx.db.begin().await?;
        let status = self.status_in(&txn, id).await?;
        if status != Some(Status::Disconnected) {
            txn.execute(&credentials_upsert(tenant, id, sealed)).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    async fn seal(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        credentials: &Credentials,
    ) -> Result<(String, Vec<u8>)> {
        let (key_id, key) = self
            .ctx
            .keystore
            .data_key(tenant, &KeyScope::Integration(id.to_string()))
            .await?;
        let plain = serde_json::to_vec(credentials)
            .map_err(|_| Error::Internal("credentials do not encode".into()))?;
        Ok((
            key_id.to_string(),
            key.seal(&credentials_aad(tenant, id), &plain)?,
        ))
    }

    async fn status_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: IntegrationId,
    ) -> Result<Option<Status>> {
        let row = conn
            .query_one(
                &Query::select()
                    .column("status")
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?;
        row.map(|r| Status::parse(&r.try_get::<String>("", "status")?))
            .transpose()
    }
}

/// Deletes the rows of each of `tables` whose `column` is `value`; returns how many of
/// each (the counts a `deletion.completed` reports).
async fn delete_rows<C: ConnectionTrait>(
    txn: &C,
    tables: &[&'static str],
    column: &'static str,
    value: String,
) -> Result<HashMap<String, u64>> {
    let mut counts = HashMap::new();
    for table in tables {
        let result = txn
            .execute(
                &Query::delete()
                    .from_table(*table)
                    .and_where(Expr::col(column).eq(value.clone()))
                    .to_owned(),
            )
            .await?;
        counts.insert((*table).to_owned(), result.rows_affected());
    }
    Ok(counts)
}

fn credentials_aad(tenant: TenantId, id: IntegrationId) -> Vec<u8> {
    field_aad(tenant, "credentials", "secret_ct", &id.to_string())
}

fn credentials_upsert(
    tenant: TenantId,
    id: IntegrationId,
    (key_id, sealed): (String, Vec<u8>),
) -> sea_orm::sea_query::InsertStatement {
    Query::insert()
        .into_table("credentials")
        .columns(["integration_id", "tenant_id", "key_id", "secret_ct"])
        .values_panic([
            id.to_string().into(),
            tenant.to_string().into(),
            key_id.into(),
            sealed.into(),
        ])
        .on_conflict(
            OnConflict::column("integration_id")
                .update_columns(["key_id", "secret_ct"])
                .to_owned(),
        )
        .to_owned()
}

fn settings_json(settings: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(settings).map_err(|_| Error::Internal("settings do not encode".into()))
}

fn parse<T: std::str::FromStr>(value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Internal("malformed id in the ingest database".into()))
}

fn integration(row: &QueryResult) -> Result<Integration> {
    let id: String = row.try_get("", "id")?;
    let tenant: String = row.try_get("", "tenant_id")?;
    let settings: String = row.try_get("", "settings")?;
    let status: String = row.try_get("", "status")?;
    Ok(Integration {
        id: parse(&id)?,
        tenant: parse(&tenant)?,
        kind: row.try_get("", "kind")?,
        display_name: row.try_get("", "display_name")?,
        settings: serde_json::from_str(&settings)
            .map_err(|_| Error::Internal("stored settings do not decode".into()))?,
        status: Status::parse(&status)?,
        connected_at: row.try_get("", "connected_at")?,
        last_synced_at: row.try_get("", "last_synced_at")?,
        last_error: row.try_get("", "last_error")?,
    })
}

fn item(row: &QueryResult) -> Result<(String, Item)> {
    let document: String = row.try_get("", "document_id")?;
    Ok((
        row.try_get("", "source_index")?,
        Item {
            document: parse(&document)?,
            version: row.try_get("", "source_version")?,
            generation: row.try_get("", "generation")?,
            reference: None,
        },
    ))
}
