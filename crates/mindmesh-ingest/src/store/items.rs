//! What each sync imported: items (source id → storage document), the listing's
//! position and the pages committed, outside people met, sweeps of what the source no
//! longer lists, and items skipped with a reason.

use super::*;

impl Store {
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
}
