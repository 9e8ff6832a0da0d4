//! What the ingest service does for data-subject rights (P12). Ingest keeps, about a
//! person, only what an admin typed into a connector's settings — e.g. the Drive
//! connector's `admin_email`, the account a domain-wide crawl reads the directory as.
//! Export names every integration of the tenant whose settings hold the person's email,
//! and which settings; the erasure removes them (see [`crate::events`]). Ingest sends
//! nothing to processors, so a restriction changes nothing here.

use mindmesh_kit::Result;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::subject_api::{self, SubjectProvider, SubjectRecord};
use serde_json::json;

use crate::store::Store;

/// The ingest service's [`SubjectProvider`].
pub struct IngestSubject {
    ctx: ServiceContext,
    store: Store,
}

impl IngestSubject {
    /// A provider over the service's integrations.
    pub fn new(ctx: ServiceContext, store: Store) -> Self {
        IngestSubject { ctx, store }
    }
}

#[async_trait::async_trait]
impl SubjectProvider for IngestSubject {
    async fn export(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<SubjectRecord>> {
        let wanted = email.trim().to_lowercase();
        let mut records = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list(tenant, after, 500).await?;
            for integration in &page {
                let settings: Vec<&str> = integration
                    .settings
                    .iter()
                    .filter(|(_, value)| value.trim().to_lowercase() == wanted)
                    .map(|(name, _)| name.as_str())
                    .collect();
                if settings.is_empty() {
                    continue;
                }
                records.push(SubjectRecord {
                    kind: "integration_setting".into(),
                    id: integration.id.to_string(),
                    json: json!({
                        "integration_id": integration.id.to_string(),
                        "connector": integration.kind,
                        "display_name": integration.display_name,
                        "settings_holding_the_email": settings,
                        "purpose": "the account the connector reads the source tool as",
                    }),
                    updated_at: integration.connected_at,
                });
            }
            if page.len() < 500 {
                break;
            }
            after = page.last().map(|i| (i.connected_at, i.id));
        }
        self.ctx
            .audit
            .record(
                &AuditRecord::by(caller, "subject.export", Some(tenant), request_id)
                    .with_details(format!("{} records", records.len())),
            )
            .await?;
        Ok(records)
    }

    async fn restrict(
        &self,
        caller: &Caller,
        tenant: TenantId,
        _email: &str,
        request_id: &str,
        restricted: bool,
    ) -> Result<u64> {
        subject_api::nothing_to_change(
            &self.ctx.audit,
            caller,
            subject_api::restrict_action(restricted),
            tenant,
            request_id,
            "ingest sends nothing to processors or analytics",
        )
        .await
    }
}
