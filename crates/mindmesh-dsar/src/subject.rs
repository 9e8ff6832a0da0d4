//! What the dsar service does for data-subject rights itself (P12): it keeps the
//! requests filed about a person — their kind, dates and status — and, for a person
//! with an account, their consents and mail preferences, and exports all of them.
//! It holds no personal field to rectify and sends nothing to processors, so rectify
//! and restrict answer 0, audited.

use mindmesh_kit::Result;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::subject_api::{self, Rectification, SubjectProvider, SubjectRecord};
use serde_json::json;

use mindmesh_kit::tenants::AskPermissions;

use crate::consents::Consents;
use crate::requests::Requests;
use crate::settings::Settings;

/// The dsar service's [`SubjectProvider`].
pub struct DsarSubject {
    ctx: ServiceContext,
    requests: Requests,
    consents: Consents,
    settings: Settings,
    /// Whose account an email is (consents and preferences are kept by account).
    people: AskPermissions,
}

impl DsarSubject {
    /// A provider over the service's requests, consents and preferences.
    pub fn new(
        ctx: ServiceContext,
        requests: Requests,
        consents: Consents,
        people: AskPermissions,
    ) -> Self {
        DsarSubject {
            settings: Settings::new(&ctx),
            ctx,
            requests,
            consents,
            people,
        }
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
        let mut records = records;
        if let Some(user) = self.people.user_by_email(tenant, email).await? {
            for c in self.consents.history(tenant, user).await? {
                records.push(SubjectRecord {
                    kind: "consent".into(),
                    id: c.id.clone(),
                    json: json!({
                        "id": c.id,
                        "purpose": c.purpose,
                        "granted": c.granted,
                        "recorded_at": c.recorded_at.to_rfc3339(),
                        "by_request": c.request_id,
                    }),
                    updated_at: c.recorded_at,
                });
            }
            // The mails sent (or meant) for them: what, when, and whether it went out.
            for n in crate::store::notifications::of_user(&self.ctx.db, tenant, &user.to_string())
                .await?
            {
                records.push(SubjectRecord {
                    kind: "notification".into(),
                    id: n.id.clone(),
                    json: json!({
                        "id": n.id,
                        "template": n.template,
                        "administrative": n.administrative,
                        "status": n.status,
                        "queued_at": n.created_at.to_rfc3339(),
                        "sent_at": n.sent_at.map(|t| t.to_rfc3339()),
                    }),
                    updated_at: n.sent_at.unwrap_or(n.created_at),
                });
            }
            records.push(SubjectRecord {
                kind: "communication_preferences".into(),
                id: user.to_string(),
                json: {
                    let p = self.settings.preferences(tenant, user).await?;
                    json!({
                        "marketing_mail": p.marketing,
                        "administrative_contact": p.admin_contact,
                    })
                },
                updated_at: chrono::Utc::now(),
            });
        }
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
