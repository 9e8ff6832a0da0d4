//! Erasing what an integration, a tenant or a subject brought: principals, grants and
//! identities, each in one revision.

use super::*;

impl Policy {
    /// Deletes everything `integration` brought: its principals, memberships and grants,
    /// and destroys its data key. Runs in `txn` (the caller commits), bumping the revision.
    pub async fn delete_integration(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
        integration: IntegrationId,
    ) -> Result<(Removed, u64)> {
        let of_integration = || scope::integration(tenant, integration);
        let removed = Removed {
            principals: scope::delete(txn, "principals", of_integration()).await?,
            memberships: scope::delete(txn, "memberships", of_integration()).await?,
            grants: scope::delete(txn, "grants", of_integration()).await?,
            destroyed_keys: Vec::new(),
        };
        for table in ["principal_syncs", "legacy_principal_ids"] {
            scope::delete(txn, table, of_integration()).await?;
        }
        self.forget_synced(tenant);
        let revision = revision::bump(txn, tenant).await?;
        Ok((removed, revision))
    }

    /// Deletes everything of `tenant` this policy holds (principals, memberships, grants,
    /// revision). Runs in `txn`.
    pub async fn delete_tenant(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
    ) -> Result<Removed> {
        let removed = Removed {
            principals: scope::delete(txn, "principals", scope::tenant(tenant)).await?,
            memberships: scope::delete(txn, "memberships", scope::tenant(tenant)).await?,
            grants: scope::delete(txn, "grants", scope::tenant(tenant)).await?,
            destroyed_keys: Vec::new(),
        };
        for table in [
            "tenant_revisions",
            "principal_syncs",
            "legacy_principal_ids",
        ] {
            scope::delete(txn, table, scope::tenant(tenant)).await?;
        }
        mindmesh_kit::integrations::Integrations::forget_tenant(txn, tenant).await?;
        self.forget_synced(tenant);
        Ok(removed)
    }

    /// Deletes the principals whose email is `email` (a data subject's erasure), and the
    /// memberships naming them. Runs in `txn`, bumping the revision.
    pub async fn delete_subject(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
        email: &str,
    ) -> Result<Removed> {
        let index = self.blind.keys(tenant).await?.email(email);
        let mut removed = Removed::default();
        for identity in identities::with_email(txn, tenant, index.clone()).await? {
            removed.memberships += graph::delete_memberships_of_member(
                txn,
                tenant,
                &identity.integration_id,
                &identity.external_id,
                identity.kind == "group",
            )
            .await?;
        }
        removed.principals = graph::delete_principals_with_email(txn, tenant, &index).await?;
        // Every replica's copy of these principal sets is now stale.
        principal_syncs::invalidate_tenant(txn, tenant).await?;
        self.forget_synced(tenant);
        revision::bump(txn, tenant).await?;
        Ok(removed)
    }
}
