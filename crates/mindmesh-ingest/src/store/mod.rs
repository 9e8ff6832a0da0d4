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
use mindmesh_kit::db::FreshStats;
use mindmesh_kit::db::now;
use mindmesh_kit::ids::{CascadeId, DocumentId, IntegrationId, TenantId};
use mindmesh_kit::keys::{KeyScope, field_aad};
use mindmesh_kit::{Error, Result, events, outbox};
use mindmesh_proto::mindmesh::events::v1 as ev;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, TransactionTrait};

use crate::connector::Credentials;

/// Rows written per statement.
const CHUNK: usize = 500;

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
}

/// What one applied page changes in the ingest database, with the cursor after it.
#[derive(Debug, Default)]
pub struct PageRecord {
    /// Items stored or seen: external id → (document, version).
    pub items: Vec<(String, DocumentId, String)>,
    /// External ids removed from Mindmesh.
    pub removed: Vec<String>,
    /// Items skipped: external id → reason.
    pub skipped: Vec<(String, String)>,
    /// External-id prefixes whose items the source reported unchanged: seen.
    pub unchanged: Vec<String>,
    /// The cursor after the page (`None`: a full listing next time).
    pub cursor: Option<String>,
    /// The generation the items were seen in.
    pub generation: i64,
    /// Set by the page that completes a full listing: that listing's sweep is due.
    pub sweep_due: Option<i64>,
}

/// The ingest database.
#[derive(Clone)]
pub struct Store {
    ctx: ServiceContext,
    /// Planner statistics of `items`, refreshed as syncs fill it.
    item_stats: Arc<FreshStats>,
}

const COLUMNS: [&str; 9] = [
    "id",
    "tenant_id",
    "kind",
    "display_name",
    "settings",
    "status",
    "connected_at",
    "last_synced_at",
    "last_error",
];

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
                    display_name.into(),
                    settings_json(settings)?.into(),
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
            &events::envelope(
                self.ctx.service,
                Some(tenant),
                ev::envelope::Payload::IntegrationConnected(ev::IntegrationConnected {
                    integration_id: id.to_string(),
                    kind: kind.to_owned(),
                }),
            ),
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
        integration(&row)
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
        self.ctx
            .db
            .query_all(&query)
            .await?
            .iter()
            .map(integration)
            .collect()
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
    pub async fn position(&self, id: IntegrationId, full: bool) -> Result<Position> {
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .columns(["cursor", "generation"])
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("integration"))?;
        let cursor: Option<String> = row.try_get("", "cursor")?;
        let generation: i64 = row.try_get("", "generation")?;
        Ok(Position {
            cursor: if full { None } else { cursor },
            generation,
        })
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
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    /// What ingest remembers of `external_ids`.
    pub async fn items(
        &self,
        id: IntegrationId,
        external_ids: &[String],
    ) -> Result<HashMap<String, Item>> {
        let mut out = HashMap::with_capacity(external_ids.len());
        for chunk in external_ids.chunks(CHUNK) {
            let rows = self
                .ctx
                .db
                .query_all(
                    &Query::select()
                        .columns(["external_id", "document_id", "source_version", "generation"])
                        .from("items")
                        .and_where(Expr::col("integration_id").eq(id.to_string()))
                        .and_where(Expr::col("external_id").is_in(chunk.iter().cloned()))
                        .to_owned(),
                )
                .await?;
            for row in rows {
                let (external_id, item) = item(&row)?;
                out.insert(external_id, item);
            }
        }
        Ok(out)
    }

    /// Up to `limit` items that the full listing `generation` did not see.
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
                    .columns(["external_id", "document_id", "source_version", "generation"])
                    .from("items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("generation").lt(generation))
                    .order_by("external_id", Order::Asc)
                    .limit(limit)
                    .to_owned(),
            )
            .await?
            .iter()
            .map(item)
            .collect()
    }

    /// Records an applied page and the cursor after it, in one transaction: a sync
    /// stopped after this resumes at the next page.
    pub async fn commit_page(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        page: &PageRecord,
    ) -> Result<()> {
        let txn = self.ctx.db.begin().await?;
        if self.status_in(&txn, id).await? == Some(Status::Disconnected) {
            // Disconnected while the page was in flight: remember nothing of it.
            return Ok(());
        }
        for chunk in page.items.chunks(CHUNK) {
            let mut insert = Query::insert();
            insert
                .into_table("items")
                .columns([
                    "integration_id",
                    "external_id",
                    "tenant_id",
                    "document_id",
                    "source_version",
                    "generation",
                ])
                .on_conflict(
                    OnConflict::columns(["integration_id", "external_id"])
                        .update_columns(["document_id", "source_version", "generation"])
                        .to_owned(),
                );
            for (external_id, document, version) in chunk {
                insert.values_panic([
                    id.to_string().into(),
                    external_id.clone().into(),
                    tenant.to_string().into(),
                    document.to_string().into(),
                    version.clone().into(),
                    page.generation.into(),
                ]);
            }
            txn.execute(&insert).await?;
        }
        let gone: Vec<&String> = page
            .removed
            .iter()
            .chain(page.items.iter().map(|(e, _, _)| e))
            .collect();
        for chunk in page.removed.chunks(CHUNK) {
            txn.execute(
                &Query::delete()
                    .from_table("items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("external_id").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?;
        }
        for prefix in &page.unchanged {
            let escaped = prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            txn.execute(
                &Query::update()
                    .table("items")
                    .value("generation", page.generation)
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(
                        Expr::col("external_id")
                            .like(LikeExpr::new(format!("{escaped}%")).escape('\\')),
                    )
                    .to_owned(),
            )
            .await?;
        }
        // An item stored or removed is no longer skipped.
        for chunk in gone.chunks(CHUNK) {
            txn.execute(
                &Query::delete()
                    .from_table("skipped_items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .and_where(Expr::col("external_id").is_in(chunk.iter().map(|e| (*e).clone())))
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
                    "external_id",
                    "tenant_id",
                    "reason",
                    "recorded_at",
                ])
                .on_conflict(
                    OnConflict::columns(["integration_id", "external_id"])
                        .update_columns(["reason", "recorded_at"])
                        .to_owned(),
                );
            for (external_id, reason) in chunk {
                insert.values_panic([
                    id.to_string().into(),
                    external_id.clone().into(),
                    tenant.to_string().into(),
                    reason.clone().into(),
                    now().into(),
                ]);
            }
            txn.execute(&insert).await?;
        }
        let mut position = Query::update();
        position
            .table("integrations")
            .value("cursor", page.cursor.clone())
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

    /// Forgets items removed from Mindmesh (a full listing's sweep).
    pub async fn forget_items(&self, id: IntegrationId, external_ids: &[String]) -> Result<()> {
        for chunk in external_ids.chunks(CHUNK) {
            self.ctx
                .db
                .execute(
                    &Query::delete()
                        .from_table("items")
                        .and_where(Expr::col("integration_id").eq(id.to_string()))
                        .and_where(Expr::col("external_id").is_in(chunk.iter().cloned()))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    /// Items skipped in `id`, with their reasons.
    pub async fn skipped(&self, id: IntegrationId) -> Result<Vec<(String, String)>> {
        self.ctx
            .db
            .query_all(
                &Query::select()
                    .columns(["external_id", "reason"])
                    .from("skipped_items")
                    .and_where(Expr::col("integration_id").eq(id.to_string()))
                    .order_by("external_id", Order::Asc)
                    .to_owned(),
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get("", "external_id")?, r.try_get("", "reason")?)))
            .collect()
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
        let counts = delete_rows(
            &txn,
            &["credentials", "items", "skipped_items"],
            "integration_id",
            id.to_string(),
        )
        .await?;
        outbox::enqueue(
            &txn,
            &events::envelope(
                self.ctx.service,
                Some(tenant),
                ev::envelope::Payload::IntegrationDisconnected(ev::IntegrationDisconnected {
                    integration_id: id.to_string(),
                    cascade_id: cascade.to_string(),
                }),
            ),
        )
        .await?;
        self.ctx
            .attest(&txn, Some(tenant), &cascade.to_string(), counts, &destroyed)
            .await?;
        self.ctx.audit.append(&txn, audit).await?;
        txn.commit().await?;
        self.ctx.relay.wake();
        Ok(())
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
        delete_rows(
            txn,
            &["credentials", "items", "skipped_items", "integrations"],
            "tenant_id",
            tenant.to_string(),
        )
        .await
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
        row.try_get("", "external_id")?,
        Item {
            document: parse(&document)?,
            version: row.try_get("", "source_version")?,
            generation: row.try_get("", "generation")?,
        },
    ))
}
