//! Writing documents' grants (`SetDocumentAcls`): validated, then applied to the store
//! and the tenant's index in one revision.

use super::*;

pub(super) fn validate_acls(acls: &[DocumentAcl]) -> Result<()> {
    if acls.len() > MAX_ACLS_PER_CALL {
        return Err(too_many("acls", MAX_ACLS_PER_CALL));
    }
    for acl in acls {
        if acl.grants.len() > MAX_GRANTS_PER_DOCUMENT {
            return Err(Error::ResourceExhausted(format!(
                "acls.grants: at most {MAX_GRANTS_PER_DOCUMENT} per document"
            )));
        }
        for g in &acl.grants {
            match &g.grantee {
                Grantee::User(id) | Grantee::Group(id) => {
                    check_external_id("acls.grants.grantee", id)?
                }
                Grantee::Domain(d) => {
                    let ok = d.len() <= 253
                        && d.contains('.')
                        && d.split('.').all(|l| {
                            !l.is_empty()
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        });
                    if !ok {
                        return Err(Error::invalid(
                            "acls.grants.grantee",
                            "is not a domain name",
                        ));
                    }
                }
                Grantee::Anyone => {}
            }
        }
    }
    Ok(())
}

impl Policy {
    /// Replaces the grants of each listed document. Returns the new revision.
    pub async fn set_document_acls(&self, tenant: TenantId, acls: Vec<DocumentAcl>) -> Result<u64> {
        validate_acls(&acls)?;
        // Domain grants are matched by the tenant's blind index, and imported grants
        // name principals by their pseudonyms (see `blind`).
        let keys = self.blind.keys(tenant).await?;
        let acls: Vec<DocumentAcl> = acls
            .into_iter()
            .map(|mut acl| {
                if !acl.integration.is_native() {
                    for grant in &mut acl.grants {
                        if let Grantee::User(id) | Grantee::Group(id) = &mut grant.grantee {
                            *id = keys.principal(acl.integration, id);
                        }
                    }
                }
                acl
            })
            .collect();
        // A document listed twice: the last entry wins, as it would applied in order.
        let mut last: HashMap<DocumentId, usize> = HashMap::new();
        for (i, acl) in acls.iter().enumerate() {
            last.insert(acl.document, i);
        }
        let acls: Vec<DocumentAcl> = acls
            .into_iter()
            .enumerate()
            .filter(|(i, acl)| last.get(&acl.document) == Some(i))
            .map(|(_, acl)| acl)
            .collect();
        let slot = self.slot(tenant);
        let _writer = slot.writer.lock().await;
        let txn = self.ctx.db.begin().await?;
        let ids: Vec<String> = acls.iter().map(|a| a.document.to_string()).collect();
        grants::delete_of_documents(&txn, tenant, &ids).await?;
        let rows: Vec<GrantRow> = acls
            .iter()
            .flat_map(|acl| {
                acl.grants
                    .iter()
                    .map(|g| GrantRow::new(acl.document, acl.integration, g))
            })
            .collect();
        grants::insert(&txn, tenant, &rows).await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.grant_stats
            .wrote(&self.ctx.db, rows.len() as u64)
            .await?;
        let mut guard = slot.index.write().map_err(|_| poisoned())?;
        match guard.as_mut() {
            Some(index) if slot.patchable() && index.revision() + 1 == revision => {
                index.set_acls(acls, revision)
            }
            // Another replica wrote in between: reload on the next read.
            _ => *guard = None,
        }
        Ok(revision)
    }
}
