//! The ingest database: integrations, their sealed credentials, what each has imported
//! (source id → storage document id, for deletions), and items skipped with a reason.
//!
//! Credentials are sealed under the integration's data key, bound to tenant, table,
//! column and row (P01); shredding the key on disconnect makes every copy unreadable.

pub mod migration;

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

    /// Takes the sync lease of an integration for `owner` until `until`, if nobody else
    /// holds it and the integration is still connected. True when taken (or renewed).
    pub async fn claim(
        &self,
        id: IntegrationId,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let now = now();
        let result = self
            .ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("lease_owner", owner)
                    .value("lease_until", until)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("status").ne(Status::Disconnected.as_str()))
                    .and_where(Expr::col("cascade_id").is_null())
                    .and_where(
                        Expr::col("lease_until")
                            .is_null()
                            .or(Expr::col("lease_until").lt(now))
                            .or(Expr::col("lease_owner").eq(owner)),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Gives the lease back.
    pub async fn release(&self, id: IntegrationId, owner: &str) -> Result<()> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("lease_owner", Option::<String>::None)
                    .value("lease_until", Option::<DateTime<Utc>>::None)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("lease_owner").eq(owner))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    /// Where the next sync of `id` starts; `full` forgets the cursor and starts a new
    /// full listing.
    pub async fn position(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        full: bool,
    ) -> Result<Position> {
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .columns(["cursor", "cursor_ct", "generation"])
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("integration"))?;
        let generation: i64 = row.try_get("", "generation")?;
        if full {
            return Ok(Position {
                cursor: None,
                generation,
            });
        }
        let sealed: Option<Vec<u8>> = row.try_get("", "cursor_ct")?;
        let cursor = match sealed {
            Some(ct) => {
                let keys = self.record_keys(tenant, id).await?;
                let plain = keys.seal.open(&field(tenant, id, "cursor"), &ct)?;
                Some(
                    String::from_utf8(plain)
                        .map_err(|_| Error::Internal("sealed cursor is not UTF-8".into()))?,
                )
            }
            // Written before sealing, and not sealed yet.
            None => row.try_get("", "cursor")?,
        };
        Ok(Position { cursor, generation })
    }

    /// Starts a new full listing: bumps the generation and forgets the cursor.
    pub async fn start_listing(&self, id: IntegrationId, generation: i64) -> Result<()> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("generation", generation)
                    .value("cursor", Option::<String>::None)
                    .value("cursor_ct", Option::<Vec<u8>>::None)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    /// What ingest remembers of `external_ids`, by external id.
    pub async fn items(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        external_ids: &[String],
    ) -> Result<HashMap<String, Item>> {
        let keys = self.record_keys(tenant, id).await?;
        let by_index: HashMap<String, &String> =
            external_ids.iter().map(|e| (keys.item(e), e)).collect();
        let indexes: Vec<&String> = by_index.keys().collect();
        let mut out = HashMap::with_capacity(external_ids.len());
        for chunk in indexes.chunks(CHUNK) {
            let rows = self
                .ctx
                .db
                .query_all(
                    &Query::select()
                        .columns([
                            "source_index",
                            "document_id",
                            "source_version",
                            "generation",
                            "reference_ct",
                        ])
                        .from("items")
                        .and_where(Expr::col("integration_id").eq(id.to_string()))
                        .and_where(
                            Expr::col("source_index").is_in(chunk.iter().map(|i| (*i).clone())),
                        )
                        .to_owned(),
                )
                .await?;
            for row in rows {
                let (index, mut item) = item(&row)?;
                let sealed: Option<Vec<u8>> = row.try_get("", "reference_ct")?;
                if let Some(sealed) = sealed {
                    let plain = keys
                        .seal
                        .open(&reference_aad(tenant, id, &index), &sealed)?;
                    item.reference = Some(String::from_utf8(plain).map_err(|_| {
                        Error::Internal("a stored item reference is not text".into())
                    })?);
                }
                if let Some(external_id) = by_index.get(&index) {
                    out.insert((*external_id).clone(), item);
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` items that the full listing `generation` did not see, by their
    /// source index (for [`Store::forget_items`]).
    pub async fn unseen(
        &self,
        id: IntegrationId,
        generation: i64,
        limit: u64,
    ) -> Result<Vec<(String, Item)>> {
        self.ctx
            .db
            .query_all(
                &Query::select()
                    .columns([
                        "source_index",
                        "document_id",
                        "source_version",
                        "generation",
                    ])
                    .from("items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("generation").lt(generation))
                    .order_by("source_index", Order::Asc)
                    .limit(limit)
                    .to_owned(),
            )
            .await?
            .iter()
            .map(item)
            .collect()
    }

    /// Records an applied page and the cursor after it, in one transaction: a sync
    /// stopped after this resumes at the next page. Source ids are stored only as keyed
    /// indexes (a skipped item's id sealed besides, to be shown), the cursor sealed.
    pub async fn commit_page(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        page: &PageRecord,
    ) -> Result<()> {
        let keys = match self.record_keys(tenant, id).await {
            Ok(keys) => keys,
            // Disconnected while the page was in flight: remember nothing of it.
            Err(Error::FailedPrecondition(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let txn = self.ctx.db.begin().await?;
        if self.status_in(&txn, id).await? == Some(Status::Disconnected) {
            return Ok(());
        }
        for chunk in page.items.chunks(CHUNK) {
            let mut insert = Query::insert();
            insert
                .into_table("items")
                .columns([
                    "integration_id",
                    "source_index",
                    "group_index",
                    "tenant_id",
                    "document_id",
                    "source_version",
                    "generation",
                    "legacy",
                    "reference_ct",
                ])
                .on_conflict(
                    OnConflict::columns(["integration_id", "source_index"])
                        .update_columns([
                            "group_index",
                            "document_id",
                            "source_version",
                            "generation",
                            "reference_ct",
                        ])
                        .to_owned(),
                );
            for item in chunk {
                let group = (!item.group.is_empty()).then(|| keys.group(&item.group));
                let index = keys.item(&item.external_id);
                let reference = keys.seal.seal(
                    &reference_aad(tenant, id, &index),
                    item.reference.as_bytes(),
                )?;
                insert.values_panic([
                    id.to_string().into(),
                    index.into(),
                    group.into(),
                    tenant.to_string().into(),
                    item.document.to_string().into(),
                    item.version.clone().into(),
                    page.generation.into(),
                    false.into(),
                    reference.into(),
                ]);
            }
            txn.execute(&insert).await?;
        }
        let removed: Vec<String> = page.removed.iter().map(|e| keys.item(e)).collect();
        for chunk in removed.chunks(CHUNK) {
            txn.execute(
                &Query::delete()
                    .from_table("items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("source_index").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?;
        }
        let unchanged: Vec<String> = page.unchanged.iter().map(|g| keys.group(g)).collect();
        for chunk in unchanged.chunks(CHUNK) {
            txn.execute(
                &Query::update()
                    .table("items")
                    .value("generation", page.generation)
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("group_index").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?;
        }
        // An item stored or removed is no longer skipped.
        let gone: Vec<String> = removed
            .iter()
            .cloned()
            .chain(page.items.iter().map(|i| keys.item(&i.external_id)))
            .collect();
        for chunk in gone.chunks(CHUNK) {
            txn.execute(
                &Query::delete()
                    .from_table("skipped_items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("source_index").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?;
        }
        for chunk in page.skipped.chunks(CHUNK) {
            let mut insert = Query::insert();
            insert
                .into_table("skipped_items")
                .columns([
                    "integration_id",
                    "source_index",
                    "external_id_ct",
                    "tenant_id",
                    "reason",
                    "recorded_at",
                    "legacy",
                ])
                .on_conflict(
                    OnConflict::columns(["integration_id", "source_index"])
                        .update_columns(["external_id_ct", "reason", "recorded_at"])
                        .to_owned(),
                );
            for (external_id, reason) in chunk {
                let index = keys.item(external_id);
                let sealed = keys
                    .seal
                    .seal(&skipped_aad(tenant, id, &index), external_id.as_bytes())?;
                insert.values_panic([
                    id.to_string().into(),
                    index.into(),
                    sealed.into(),
                    tenant.to_string().into(),
                    reason.clone().into(),
                    now().into(),
                    false.into(),
                ]);
            }
            txn.execute(&insert).await?;
        }
        for chunk in page.outsiders.chunks(CHUNK) {
            let mut insert = Query::insert();
            insert
                .into_table("outside_users")
                .columns(["integration_id", "user_index", "tenant_id", "user_ct"])
                .on_conflict(
                    OnConflict::columns(["integration_id", "user_index"])
                        .do_nothing()
                        .to_owned(),
                );
            for user in chunk {
                let index = keys
                    .index
                    .blind_index(&[b"outside user", user.external_id.as_bytes()]);
                let plain = serde_json::to_vec(&(&user.external_id, &user.email))
                    .map_err(|_| Error::Internal("an outside user does not encode".into()))?;
                let sealed = keys.seal.seal(&outsider_aad(tenant, id, &index), &plain)?;
                insert.values_panic([
                    id.to_string().into(),
                    index.into(),
                    tenant.to_string().into(),
                    sealed.into(),
                ]);
            }
            txn.execute(&insert).await?;
        }
        let cursor = page
            .cursor
            .as_ref()
            .map(|c| keys.seal.seal(&field(tenant, id, "cursor"), c.as_bytes()))
            .transpose()?;
        let mut position = Query::update();
        position
            .table("integrations")
            .value("cursor", Option::<String>::None)
            .value("cursor_ct", cursor)
            .and_where(Expr::col("id").eq(id.to_string()));
        if let Some(generation) = page.sweep_due {
            position.value("sweep_generation", generation);
        }
        txn.execute(&position).await?;
        txn.commit().await?;
        self.item_stats
            .wrote(&self.ctx.db, page.items.len() as u64)
            .await?;
        Ok(())
    }

    /// The people outside the source's directory that grants of `id` have named.
    pub async fn outsiders(&self, tenant: TenantId, id: IntegrationId) -> Result<Vec<SourceUser>> {
        let keys = self.record_keys(tenant, id).await?;
        let rows = self
            .ctx
            .db
            .query_all(
                &Query::select()
                    .columns(["user_index", "user_ct"])
                    .from("outside_users")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .order_by("user_index", Order::Asc)
                    .to_owned(),
            )
            .await?;
        rows.iter()
            .map(|row| {
                let index: String = row.try_get("", "user_index")?;
                let sealed: Vec<u8> = row.try_get("", "user_ct")?;
                let plain = keys.seal.open(&outsider_aad(tenant, id, &index), &sealed)?;
                let (external_id, email): (String, String) = serde_json::from_slice(&plain)
                    .map_err(|_| Error::Internal("a stored outside user does not decode".into()))?;
                Ok(SourceUser {
                    external_id,
                    email,
                    display_name: String::new(),
                })
            })
            .collect()
    }

    /// The completed full listing whose sweep has not run yet, if any.
    pub async fn sweep_due(&self, id: IntegrationId) -> Result<Option<i64>> {
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .column("sweep_generation")
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("integration"))?;
        Ok(row.try_get("", "sweep_generation")?)
    }

    /// Records that the sweep of `generation` is done (unless a later one is due).
    pub async fn swept(&self, id: IntegrationId, generation: i64) -> Result<()> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("sweep_generation", Option::<i64>::None)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("sweep_generation").eq(generation))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    /// Forgets items removed from Mindmesh (a full listing's sweep), by the source
    /// indexes [`Store::unseen`] gave.
    pub async fn forget_items(&self, id: IntegrationId, indexes: &[String]) -> Result<()> {
        for chunk in indexes.chunks(CHUNK) {
            self.ctx
                .db
                .execute(
                    &Query::delete()
                        .from_table("items")
                        .and_where(Expr::col("integration_id").eq(id.to_string()))
                        .and_where(Expr::col("source_index").is_in(chunk.iter().cloned()))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    /// Up to `limit` items skipped in `id`, with their reasons, in source-id order.
    pub async fn skipped(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let rows = self
            .ctx
            .db
            .query_all(
                &Query::select()
                    .columns(["source_index", "external_id_ct", "reason"])
                    .from("skipped_items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys = match self.record_keys(tenant, id).await {
            Ok(keys) => keys,
            Err(Error::FailedPrecondition(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let index: String = row.try_get("", "source_index")?;
            let sealed: Option<Vec<u8>> = row.try_get("", "external_id_ct")?;
            let external_id = match sealed {
                Some(ct) => {
                    String::from_utf8_lossy(&keys.seal.open(&skipped_aad(tenant, id, &index), &ct)?)
                        .into_owned()
                }
                None => index, // written before sealing, and not sealed yet
            };
            out.push((external_id, row.try_get("", "reason")?));
        }
        out.sort();
        out.truncate(limit);
        Ok(out)
    }

    /// Records how a sync ended: `error` empty for a success.
    pub async fn finish(&self, id: IntegrationId, error: &str) -> Result<()> {
        let mut update = Query::update();
        update
            .table("integrations")
            .value("last_error", error)
            .value("last_attempt_at", now())
            .and_where(Expr::col("id").eq(id.to_string()))
            .and_where(Expr::col("status").ne(Status::Disconnected.as_str()));
        if error.is_empty() {
            update
                .value("status", Status::Active.as_str())
                .value("last_synced_at", now());
        } else {
            update.value("status", Status::Failing.as_str());
        }
        self.ctx.db.execute(&update).await?;
        Ok(())
    }

    /// Asks for a sync of `id` soon; false when one was already asked for.
    pub async fn request_sync(&self, tenant: TenantId, id: IntegrationId) -> Result<bool> {
        let result = self
            .ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("sync_requested", true)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("status").ne(Status::Disconnected.as_str()))
                    .and_where(Expr::col("sync_requested").eq(false))
                    .to_owned(),
            )
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Clears the request of a sync that is starting.
    pub async fn clear_request(&self, id: IntegrationId) -> Result<()> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("sync_requested", false)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    /// Connected integrations whose sync is due: asked for, never tried, or last tried
    /// before `attempted_before`.
    pub async fn due(
        &self,
        attempted_before: DateTime<Utc>,
    ) -> Result<Vec<(TenantId, IntegrationId)>> {
        self.ctx
            .db
            .query_all(
                &Query::select()
                    .columns(["tenant_id", "id"])
                    .from("integrations")
                    .and_where(Expr::col("status").ne(Status::Disconnected.as_str()))
                    .and_where(
                        Expr::col("sync_requested")
                            .eq(true)
                            .or(Expr::col("last_attempt_at").is_null())
                            .or(Expr::col("last_attempt_at").lt(attempted_before)),
                    )
                    .order_by("connected_at", Order::Asc)
                    .to_owned(),
            )
            .await?
            .iter()
            .map(|r| {
                let tenant: String = r.try_get("", "tenant_id")?;
                let id: String = r.try_get("", "id")?;
                Ok((parse(&tenant)?, parse(&id)?))
            })
            .collect()
    }

    /// The first step of a disconnect: records its cascade id, which stops every sync of
    /// the integration at its next page (no lease is granted or renewed from here).
    /// Returns the integration as it was and the cascade id; a second call returns the
    /// same cascade.
    pub async fn begin_disconnect(
        &self,
        tenant: TenantId,
        id: IntegrationId,
    ) -> Result<(Integration, CascadeId)> {
        let current = self.get(tenant, id).await?;
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("cascade_id", CascadeId::new().to_string())
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("cascade_id").is_null())
                    .to_owned(),
            )
            .await?;
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .column("cascade_id")
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("integration"))?;
        let cascade: Option<String> = row.try_get("", "cascade_id")?;
        Ok((current, parse(&cascade.unwrap_or_default())?))
    }

    /// True while a sync holds the integration's lease.
    pub async fn leased(&self, id: IntegrationId) -> Result<bool> {
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .column("id")
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("lease_until").gt(now()))
                    .to_owned(),
            )
            .await?;
        Ok(row.is_some())
    }

    /// The last step of a disconnect: destroys the credentials' key, then, in one
    /// transaction, marks the integration disconnected, deletes its credentials, items
    /// and skip records, publishes `integration.disconnected` for the other services and
    /// attests ingest's own part of the cascade.
    pub async fn finish_disconnect(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        cascade: CascadeId,
        audit: &AuditRecord,
    ) -> Result<()> {
        // Keys first (DESIGN.md §5): from here the sealed credentials open nowhere.
        let destroyed = self
            .ctx
            .keystore
            .shred(tenant, &KeyScope::Integration(id.to_string()))
            .await?;
        let txn = self.ctx.db.begin().await?;
        let marked = txn
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("status", Status::Disconnected.as_str())
                    .value("cursor", Option::<String>::None)
                    .value("cursor_ct", Option::<Vec<u8>>::None)
                    .value("sync_requested", false)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("status").ne(Status::Disconnected.as_str()))
                    .to_owned(),
            )
            .await?;
        if marked.rows_affected() == 0 {
            // Another call finished it meanwhile.
            return Ok(());
        }
        let counts =
            delete_rows(&txn, &INTEGRATION_TABLES, "integration_id", id.to_string()).await?;
        outbox::enqueue(
            &txn,
            &crate::events::integration_disconnected(self.ctx.service, tenant, id, cascade),
        )
        .await?;
        let rows = counts.values().sum();
        self.ctx
            .attest(&txn, Some(tenant), cascade, counts, &destroyed)
            .await?;
        self.ctx.audit.append(&txn, audit).await?;
        txn.commit().await?;
        self.ctx.settle_erasure(&ERASED_TABLES, rows).await?;
        self.ctx.relay.wake();
        Ok(())
    }

    /// Seals what a version before sealed records kept in the clear: integrations'
    /// display names, settings and cursors; items' and skip records' source ids (items
    /// also get the index of their group, `group_of(kind, external_id)`). A disconnected
    /// integration's values are erased instead, its keys being gone. Runs at start,
    /// before the service serves, then scrubs the database. Returns the rows it changed.
    pub async fn seal_legacy(&self, group_of: impl Fn(&str, &str) -> String) -> Result<u64> {
        let mut changed = 0u64;
        let rows = self
            .ctx
            .db
            .query_all(
                &Query::select()
                    .columns([
                        "id",
                        "tenant_id",
                        "kind",
                        "display_name",
                        "settings",
                        "cursor",
                        "status",
                    ])
                    .column("fields_key_id")
                    .from("integrations")
                    .to_owned(),
            )
            .await?;
        for row in rows {
            let id: IntegrationId = parse(&row.try_get::<String>("", "id")?)?;
            let tenant: TenantId = parse(&row.try_get::<String>("", "tenant_id")?)?;
            let kind: String = row.try_get("", "kind")?;
            let keys = match self.record_keys(tenant, id).await {
                Ok(keys) => Some(keys),
                Err(Error::FailedPrecondition(_)) => None,
                Err(e) => return Err(e),
            };
            let sealed_before: Option<String> = row.try_get("", "fields_key_id")?;
            let name: String = row.try_get("", "display_name")?;
            let settings: String = row.try_get("", "settings")?;
            let cursor: Option<String> = row.try_get("", "cursor")?;
            let in_the_clear = !name.is_empty() || settings != "{}" || cursor.is_some();
            if sealed_before.is_none() && in_the_clear {
                let mut update = Query::update();
                update
                    .table("integrations")
                    .value("display_name", "")
                    .value("settings", "{}")
                    .value("cursor", Option::<String>::None)
                    .and_where(Expr::col("id").eq(id.to_string()));
                if let Some(keys) = &keys {
                    let seal = |column: &str, value: &str| {
                        keys.seal.seal(&field(tenant, id, column), value.as_bytes())
                    };
                    update
                        .value("fields_key_id", keys.key_id.to_string())
                        .value("display_name_ct", seal("display_name", &name)?)
                        .value("settings_ct", seal("settings", &settings)?)
                        .value("cursor_ct", cursor.map(|c| seal("cursor", &c)).transpose()?);
                }
                self.ctx.db.execute(&update).await?;
                changed += 1;
            }
            let Some(keys) = keys else { continue };
            changed += self
                .seal_legacy_items(id, &keys, |e| group_of(&kind, e))
                .await?;
            changed += self.seal_legacy_skipped(tenant, id, &keys).await?;
        }
        if changed > 0 {
            mindmesh_kit::db::scrub(&self.ctx.db).await?;
        }
        Ok(changed)
    }

    async fn seal_legacy_items(
        &self,
        id: IntegrationId,
        keys: &RecordKeys,
        group_of: impl Fn(&str) -> String,
    ) -> Result<u64> {
        self.convert_legacy("items", id, |plain| {
            let group = group_of(plain);
            Ok(vec![
                ("source_index", keys.item(plain).into()),
                (
                    "group_index",
                    (!group.is_empty()).then(|| keys.group(&group)).into(),
                ),
            ])
        })
        .await
    }

    async fn seal_legacy_skipped(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        keys: &RecordKeys,
    ) -> Result<u64> {
        self.convert_legacy("skipped_items", id, |plain| {
            let index = keys.item(plain);
            let sealed = keys
                .seal
                .seal(&skipped_aad(tenant, id, &index), plain.as_bytes())?;
            Ok(vec![
                ("source_index", index.into()),
                ("external_id_ct", sealed.into()),
            ])
        })
        .await
    }

    /// Rewrites the rows of `table` (items or skip records) of `id` that an older version
    /// wrote with the source's id in the clear in `source_index`: each gets the `values`
    /// computed from that id, and is no longer `legacy`. Returns how many.
    async fn convert_legacy(
        &self,
        table: &'static str,
        id: IntegrationId,
        values: impl Fn(&str) -> Result<Vec<(&'static str, sea_orm::sea_query::SimpleExpr)>>,
    ) -> Result<u64> {
        let mut changed = 0;
        loop {
            let rows = self
                .ctx
                .db
                .query_all(
                    &Query::select()
                        .column("source_index")
                        .from(table)
                        .and_where(Expr::col("integration_id").eq(id.to_string()))
                        .and_where(Expr::col("legacy").eq(true))
                        .limit(CHUNK as u64)
                        .to_owned(),
                )
                .await?;
            if rows.is_empty() {
                return Ok(changed);
            }
            let txn = self.ctx.db.begin().await?;
            for row in rows {
                let plain: String = row.try_get("", "source_index")?;
                let mut update = Query::update();
                update.table(table).value("legacy", false);
                for (column, value) in values(&plain)? {
                    update.value(column, value);
                }
                update
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("source_index").eq(plain));
                txn.execute(&update).await?;
                changed += 1;
            }
            txn.commit().await?;
        }
    }

    /// Marks every integration of `tenant` as being erased (no lease is granted from
    /// here) and returns their ids.
    pub async fn forbid_syncs(&self, tenant: TenantId) -> Result<Vec<IntegrationId>> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("cascade_id", CascadeId::new().to_string())
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("cascade_id").is_null())
                    .to_owned(),
            )
            .await?;
        self.ctx
            .db
            .query_all(
                &Query::select()
                    .column("id")
                    .from("integrations")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .iter()
            .map(|r| parse(&r.try_get::<String>("", "id")?))
            .collect()
    }

    /// Deletes everything of `tenant` in `txn`; returns how many rows of each table.
    pub async fn erase_tenant<C: ConnectionTrait>(
        txn: &C,
        tenant: TenantId,
    ) -> Result<HashMap<String, u64>> {
        delete_rows(txn, &ERASED_TABLES, "tenant_id", tenant.to_string()).await
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
