//! What the dsar service does for data-subject rights itself (P12): it keeps the
//! requests filed about a person — their kind, dates and status — and exports them.
//! It holds no personal field to rectify and sends nothing to processors, so rectify
//! and restrict answer 0, audited.

use mindmesh_kit::Result;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::subject_api::{self, Rectification, SubjectProvider, SubjectRecord};
use serde_json::json;

use crate::requests::Requests;

/// The dsar service's [`SubjectProvider`].
pub struct DsarSubject {
    ctx: ServiceContext,
    requests: Requests,
}

impl DsarSubject {
    /// A provider over the service's requests.
    pub fn new(ctx: ServiceContext, requests: Requests) -> Self {
        DsarSubject { ctx, requests }
    }

    async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        tenant: TenantId,
        request_id: &str,
        details: String,
    ) -> Result<()> {
        self.ctx
            .audit
            .record(
                &AuditRecord::by(caller, action, Some(tenant), request_id).with_details(details),
            )
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl SubjectProvider for DsarSubject {
    async fn export(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<SubjectRecord>> {
        let records: Vec<SubjectRecord> = self
            .requests
            .about(tenant, email)
            .await?
            .into_iter()
            .map(|r| SubjectRecord {
                kind: "data_subject_request".into(),
                id: r.id.clone(),
                json: json!({
                    "id": r.id,
                    "kind": r.kind.as_str(),
                    "status": r.status.as_str(),
                    "submitted_at": r.submitted_at.to_rfc3339(),
                    "due_at": r.due_at.to_rfc3339(),
                    "completed_at": r.completed_at.map(|t| t.to_rfc3339()),
                    "rejection_reason": r.rejection_reason,
                }),
                updated_at: r.completed_at.unwrap_or(r.submitted_at),
            })
            .collect();
        self.audit(
            caller,
            "subject.export",
            tenant,
            request_id,
            format!("{} records", records.len()),
        )
        .await?;
        Ok(records)
    }

    async fn rectify(
        &self,
        caller: &Caller,
        tenant: TenantId,
        _email: &str,
        request_id: &str,
        _changes: Rectification,
    ) -> Result<u64> {
        subject_api::nothing_to_change(
            &self.ctx.audit,
            caller,
            "subject.rectify",
            tenant,
            request_id,
            "dsar holds no personal field to correct",
        )
        .await
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
            "dsar sends nothing to processors or analytics",
        )
        .await
    }
}
