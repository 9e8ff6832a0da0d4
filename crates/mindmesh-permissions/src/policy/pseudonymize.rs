//! Principals written by an older version with plaintext emails and names, sealed and
//! blind-indexed in place.

use super::*;

impl Policy {
    /// Converts what an older version wrote with the source's ids in the clear (the
    /// pairs listed in `legacy_principal_ids`): principals get their pseudonyms (their
    /// sealed fields re-bound to them, the id sealed beside), memberships and grants
    /// refer to the pseudonyms. One transaction per integration; runs at start, before
    /// the service serves (every replica must run this version: an older one would go
    /// on writing ids in the clear). Returns the rows it converted.
    pub async fn pseudonymize_legacy(&self) -> Result<u64> {
        let mut converted = 0u64;
        for (tenant, integration) in legacy::pending_integrations(&self.ctx.db).await? {
            // A tenant without keys has nothing left to convert (it was deleted).
            let Some(keys) = self.blind.existing_keys(tenant).await? else {
                scope::delete(&self.ctx.db, "legacy_principal_ids", scope::tenant(tenant)).await?;
                continue;
            };
            let data_key = self
                .ctx
                .keystore
                .existing_data_key(tenant, &KeyScope::Integration(integration.to_string()))
                .await?
                .map(|(_, k)| k);
            let principals = graph::legacy_principals(&self.ctx.db, tenant, integration).await?;
            let memberships = graph::memberships(&self.ctx.db, tenant, integration).await?;
            let named = grants::naming_principals(&self.ctx.db, tenant, integration).await?;

            let txn = self.ctx.db.begin().await?;
            for table in ["principals", "memberships"] {
                scope::delete(&txn, table, scope::integration(tenant, integration)).await?;
            }
            scope::delete(
                &txn,
                "grants",
                grants::naming_principals_of(tenant, integration),
            )
            .await?;
            // Without its key the integration is being erased: its principals go.
            if let Some(key) = &data_key {
                let mut rows = Vec::with_capacity(principals.len());
                for row in principals {
                    let kind = sync::kind_name(&row.kind);
                    let pseudonym = keys.principal(integration, &row.source_id);
                    let reseal = |column: &str, sealed: Vec<u8>| -> Result<Vec<u8>> {
                        let plain = key.open(
                            &principal_aad(tenant, integration, kind, &row.source_id, column),
                            &sealed,
                        )?;
                        key.seal(
                            &principal_aad(tenant, integration, kind, &pseudonym, column),
                            &plain,
                        )
                    };
                    let email_ct = row
                        .email_ct
                        .clone()
                        .map(|ct| reseal("email", ct))
                        .transpose()?;
                    let name_ct = reseal("name", row.name_ct.clone())?;
                    let external_id_ct = key.seal(
                        &principal_aad(tenant, integration, kind, &pseudonym, "external_id"),
                        row.source_id.as_bytes(),
                    )?;
                    rows.push(graph::PrincipalRow {
                        kind,
                        external_id: pseudonym,
                        email_index: row.email_index,
                        email_ct,
                        name_ct,
                        external_id_ct,
                    });
                }
                converted += rows.len() as u64;
                graph::insert_principals(&txn, tenant, integration, rows).await?;
            }
            let edges: Vec<graph::Edge> = memberships
                .into_iter()
                .map(|(group, member, is_group)| {
                    (
                        keys.principal(integration, &group),
                        keys.principal(integration, &member),
                        is_group,
                    )
                })
                .collect();
            converted += graph::insert_memberships(&txn, tenant, integration, &edges).await?;
            let named: Vec<GrantRow> = named
                .into_iter()
                .map(|row| GrantRow {
                    grantee: keys.principal(integration, &row.grantee),
                    ..row
                })
                .collect();
            grants::insert(&txn, tenant, &named).await?;
            converted += named.len() as u64;
            // The stored sets a sync diffs against are of the old ids: forget them, and
            // the pair is converted.
            for table in ["principal_syncs", "legacy_principal_ids"] {
                scope::delete(&txn, table, scope::integration(tenant, integration)).await?;
            }
            revision::bump(&txn, tenant).await?;
            txn.commit().await?;
            self.forget_synced(tenant);
        }
        if converted > 0 {
            mindmesh_kit::db::scrub(&self.ctx.db).await?;
        }
        Ok(converted)
    }
}
