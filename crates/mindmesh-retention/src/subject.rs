//! What the retention service does for data-subject rights (P12). It keeps, about a
//! person: when their account was last active (the inactivity clock, P09), and the
//! cascades that erased their data — found by the keyed hash of their email, the only
//! trace of them the ledger keeps. Export gives both. Retention holds no personal field,
//! so a rectification changes nothing here, and it sends nothing to processors or
//! analytics, so a restriction changes nothing either; both answer 0, audited.

use mindmesh_kit::Result;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::subject_api::{self, Rectification, SubjectProvider, SubjectRecord};
use mindmesh_kit::tenants::AskPermissions;
use serde_json::json;

use crate::activity::Activity;
use crate::ledger::{Ledger, Overall};

/// The retention service's [`SubjectProvider`].
pub struct RetentionSubject {
    ctx: ServiceContext,
    activity: Activity,
    ledger: Ledger,
    people: AskPermissions,
}

impl RetentionSubject {
    /// A provider over the service's activity and ledger, asking the permissions service
    /// through `people` who an email belongs to.
    pub fn new(
        ctx: ServiceContext,
        activity: Activity,
        ledger: Ledger,
        people: AskPermissions,
    ) -> Self {
        RetentionSubject {
            ctx,
            activity,
            ledger,
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

fn state(overall: Overall) -> &'static str {
    match overall {
        Overall::Pending => "pending",
        Overall::Running => "running",
        Overall::Complete => "complete",
        Overall::Held => "held",
        Overall::Failed => "failed",
    }
}

#[async_trait::async_trait]
impl SubjectProvider for RetentionSubject {
    async fn export(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<SubjectRecord>> {
        let mut records = Vec::new();
        if let Some(user) = self.people.user_by_email(tenant, email).await?
            && let Some(at) = self.activity.last_active(tenant, user).await?
        {
            records.push(SubjectRecord {
                kind: "account_activity".into(),
                id: user.to_string(),
                json: json!({
                    "user_id": user.to_string(),
                    "last_active_at": at.to_rfc3339(),
                    "purpose": "keeping the tenant from expiring for inactivity (P09)",
                }),
                updated_at: at,
            });
        }
        for cascade in self.ledger.about(tenant, email).await? {
            records.push(SubjectRecord {
                kind: "cascade".into(),
                id: cascade.id.to_string(),
                json: json!({
                    "cascade_id": cascade.id.to_string(),
                    "kind": cascade.kind.map(|k| k.as_str()).unwrap_or_default(),
                    "state": state(cascade.overall()),
                    "requested_at": cascade.requested_at.map(|t| t.to_rfc3339()),
                    "completed_at": cascade.completed_at.map(|t| t.to_rfc3339()),
                }),
                updated_at: cascade.completed_at.unwrap_or(cascade.first_seen_at),
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
            "retention holds no personal field",
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
            "retention sends nothing to processors or analytics",
        )
        .await
    }
}
