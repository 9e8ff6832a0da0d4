//! Answering from a tenant's index: check, batch check, filter, list and explain, and
//! the source ids behind a principal.

use super::*;

impl Policy {
    /// May `user` read `document`?
    pub async fn check(
        &self,
        tenant: TenantId,
        user: UserId,
        document: DocumentId,
        at_least: u64,
    ) -> Result<(bool, u64)> {
        self.read(tenant, at_least, |i| i.check(user, document))
            .await
    }

    /// One answer per (user, document) pair.
    pub async fn batch_check(
        &self,
        tenant: TenantId,
        items: &[(UserId, DocumentId)],
        at_least: u64,
    ) -> Result<(Vec<bool>, u64)> {
        self.read(tenant, at_least, |i| {
            items.iter().map(|(u, d)| i.check(*u, *d)).collect()
        })
        .await
    }

    /// The readable subset of `documents`.
    pub async fn filter_readable(
        &self,
        tenant: TenantId,
        user: UserId,
        documents: &[DocumentId],
        at_least: u64,
    ) -> Result<(Vec<DocumentId>, u64)> {
        self.read(tenant, at_least, |i| i.filter_readable(user, documents))
            .await
    }

    /// A page of readable documents after `after`.
    pub async fn list_readable(
        &self,
        tenant: TenantId,
        user: UserId,
        after: Option<DocumentId>,
        limit: usize,
        at_least: u64,
    ) -> Result<(Vec<DocumentId>, u64)> {
        self.read(tenant, at_least, |i| i.list_readable(user, after, limit))
            .await
    }

    /// Why `user` may read `document`, if they may.
    pub async fn explain(
        &self,
        tenant: TenantId,
        user: UserId,
        document: DocumentId,
        at_least: u64,
    ) -> Result<(Option<Explanation>, u64)> {
        let (found, revision) = self
            .read(tenant, at_least, |i| i.explain(user, document))
            .await?;
        let Some(mut explanation) = found else {
            return Ok((None, revision));
        };
        // The index knows principals by pseudonym; the caller is shown the source's ids.
        if let Some(principal) = &explanation.principal
            && !principal.integration.is_native()
        {
            let integration = principal.integration;
            let mut wanted = vec![principal.external_id.clone()];
            wanted.extend(explanation.group_path.iter().cloned());
            if let Grantee::User(id) | Grantee::Group(id) = &explanation.grant.grantee {
                wanted.push(id.clone());
            }
            let ids = self.source_ids(tenant, integration, &wanted).await?;
            let reveal = |pseudonym: &mut String| {
                if let Some(id) = ids.get(pseudonym.as_str()) {
                    pseudonym.clone_from(id);
                }
            };
            if let Some(principal) = &mut explanation.principal {
                reveal(&mut principal.external_id);
            }
            explanation.group_path.iter_mut().for_each(reveal);
            if let Grantee::User(id) | Grantee::Group(id) = &mut explanation.grant.grantee {
                reveal(id);
            }
        }
        Ok((Some(explanation), revision))
    }

    /// The source's ids of principals of `integration`, by their pseudonyms, opened from
    /// where each is sealed beside its principal. Pseudonyms not found are left out.
    pub async fn source_ids(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        pseudonyms: &[String],
    ) -> Result<FxHashMap<String, String>> {
        let mut out = FxHashMap::default();
        let Some((_, key)) = self
            .ctx
            .keystore
            .existing_data_key(tenant, &KeyScope::Integration(integration.to_string()))
            .await?
        else {
            return Ok(out);
        };
        for (kind, pseudonym, sealed) in
            graph::sealed_source_ids(&self.ctx.db, tenant, integration, pseudonyms).await?
        {
            let Some(sealed) = sealed else {
                continue;
            };
            let plain = key.open(
                &principal_aad(
                    tenant,
                    integration,
                    sync::kind_name(&kind),
                    &pseudonym,
                    "external_id",
                ),
                &sealed,
            )?;
            out.insert(pseudonym, String::from_utf8_lossy(&plain).into_owned());
        }
        Ok(out)
    }
}
