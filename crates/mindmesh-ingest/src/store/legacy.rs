//! Rows an older version wrote with source ids in the clear, sealed and hashed at
//! start.

use super::*;

impl Store {
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
}
