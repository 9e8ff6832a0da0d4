//! Documents written by an older version with plaintext columns, sealed in place.

use super::*;

impl Documents {
    /// Seals what a version before sealed source ids kept in the clear: imported
    /// documents' source ids (hashed into `source_index`, sealed into `external_id_ct`)
    /// and tombstones (hashed). Runs at start, before the service serves; a document whose
    /// key is gone is left for its erasure. Returns how many rows it sealed.
    pub async fn seal_legacy(&self) -> Result<u64> {
        let mut sealed = 0u64;
        let mut unopenable: BTreeSet<String> = BTreeSet::new();
        loop {
            let rows = store::legacy(&self.db, unopenable.iter().cloned()).await?;
            if rows.is_empty() {
                break;
            }
            let txn = self.db.begin().await?;
            for row in rows {
                let tenant: TenantId = parse_id(&row.tenant_id, "tenant id")?;
                let key_id: KeyId = parse_id(&row.key_id, "key id")?;
                let key = match self.keystore.key(tenant, key_id).await {
                    Ok(key) => key,
                    Err(Error::NotFound(_)) => {
                        unopenable.insert(row.id);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let index = source_index(
                    &self.source_index_key(tenant).await?,
                    &row.integration_id,
                    &row.external_id,
                );
                let ct = key.seal(
                    &field_aad(tenant, "documents", "external_id", &row.id),
                    row.external_id.as_bytes(),
                )?;
                let owner_ct = key.seal(
                    &field_aad(tenant, "documents", "owner", &row.id),
                    row.owner.as_bytes(),
                )?;
                store::seal_legacy(&txn, &row.id, index, ct, owner_ct).await?;
                sealed += 1;
            }
            txn.commit().await?;
        }
        loop {
            let rows = tombstones::legacy(&self.db).await?;
            if rows.is_empty() {
                break;
            }
            let txn = self.db.begin().await?;
            for (tenant, integration, plain) in rows {
                let keys = self
                    .source_index_key(parse_id(&tenant, "tenant id")?)
                    .await?;
                let index = source_index(&keys, &integration, &plain);
                tombstones::seal_legacy(&txn, (tenant, integration, plain), index).await?;
                sealed += 1;
            }
            txn.commit().await?;
        }
        if sealed > 0 {
            mindmesh_kit::db::scrub(&self.db).await?;
        }
        Ok(sealed)
    }
}
