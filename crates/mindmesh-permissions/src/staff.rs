//! Staff access under consent (P11): a tenant's admin grants a staff role access to the
//! tenant's data for a reason and until an expiry; without an active grant a staff token
//! sees nothing of the tenant. Grants, revocations and every staff access are written to
//! the audit log, so the proof of consent — and of use — can be shown on request.

use chrono::{DateTime, Duration, Utc};
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use sea_orm::TransactionTrait;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::records;
use crate::store::staff_grants;

/// Longest a grant may last.
pub const MAX_GRANT_DAYS: i64 = 90;
/// Longest reason, in characters.
pub const MAX_REASON: usize = 500;

/// One recorded consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffGrant {
    /// Grant id (UUIDv7: newer grants sort after older ones).
    pub id: Uuid,
    /// The consenting tenant.
    pub tenant: TenantId,
    /// The staff role admitted.
    pub role: Role,
    /// Why.
    pub reason: String,
    /// The admin who granted it.
    pub granted_by: String,
    /// When.
    pub granted_at: DateTime<Utc>,
    /// Until when.
    pub expires_at: DateTime<Utc>,
    /// When revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl StaffGrant {
    /// Active at `now`: not revoked and not expired.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// What a staff caller may see of a tenant once admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaffView {
    /// Engineers: all data.
    Full,
    /// Support: everything but document contents.
    NoContent,
    /// Analysts: pseudonymized records only.
    Pseudonymized,
}

/// Staff access grants over the service's database.
#[derive(Clone)]
pub struct StaffAccess {
    ctx: ServiceContext,
}

impl StaffAccess {
    /// Staff access over `ctx`.
    pub fn new(ctx: ServiceContext) -> Self {
        StaffAccess { ctx }
    }

    /// Records a tenant admin's consent.
    pub async fn grant(
        &self,
        caller: &Caller,
        role: Role,
        reason: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<StaffGrant> {
        caller.require_any(&[Role::Admin])?;
        let tenant = caller.tenant()?;
        if !role.is_staff() {
            return Err(Error::invalid("role", "must be a staff role"));
        }
        let reason = crate::accounts::validate_text("reason", reason, MAX_REASON)?;
        let now = mindmesh_kit::db::now();
        if expires_at <= now {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        if expires_at > now + Duration::days(MAX_GRANT_DAYS) {
            return Err(Error::invalid(
                "expires_at",
                format!("must be at most {MAX_GRANT_DAYS} days away"),
            ));
        }
        let grant = StaffGrant {
            id: Uuid::now_v7(),
            tenant,
            role,
            reason,
            granted_by: caller.subject.clone(),
            granted_at: now,
            expires_at: mindmesh_kit::db::micros(expires_at),
            revoked_at: None,
        };
        let reason_ct = records::seal(
            &self.ctx,
            tenant,
            ("staff_grants", "reason", &grant.id.to_string()),
            &grant.reason,
        )
        .await?;
        let txn = self.ctx.db.begin().await?;
        staff_grants::insert(&txn, &grant, reason_ct).await?;
        self.ctx
            .audit
            .append(
                &txn,
                &AuditRecord::by(
                    caller,
                    "staff_access.grant",
                    Some(tenant),
                    grant.id.to_string(),
                )
                .with_details(format!(
                    "role {role}, until {}",
                    grant.expires_at.to_rfc3339()
                )),
            )
            .await?;
        txn.commit().await?;
        Ok(grant)
    }

    /// Ends a grant now.
    pub async fn revoke(&self, caller: &Caller, id: Uuid) -> Result<StaffGrant> {
        caller.require_any(&[Role::Admin])?;
        let tenant = caller.tenant()?;
        let mut grant = self
            .find(tenant, id)
            .await?
            .ok_or(Error::NotFound("staff access grant"))?;
        if grant.revoked_at.is_some() {
            return Ok(grant);
        }
        let now = mindmesh_kit::db::now();
        let txn = self.ctx.db.begin().await?;
        staff_grants::revoke(&txn, tenant, id, now).await?;
        self.ctx
            .audit
            .append(
                &txn,
                &AuditRecord::by(caller, "staff_access.revoke", Some(tenant), id.to_string()),
            )
            .await?;
        txn.commit().await?;
        grant.revoked_at = Some(now);
        Ok(grant)
    }

    /// The tenant's grants, newest first, older than `before` when given.
    pub async fn list(
        &self,
        caller: &Caller,
        include_inactive: bool,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<StaffGrant>> {
        // Services read the consent record to admit staff to their own data (storage).
        caller.require_any(&[Role::Admin, Role::Service])?;
        let tenant = caller.tenant()?;
        let now = Utc::now();
        let limit = Ord::max(limit, 1);
        let mut out = Vec::new();
        let mut cursor = before;
        // Inactive grants are filtered here, so read on until the page is full.
        loop {
            let batch = self.page(tenant, cursor, limit).await?;
            let exhausted = (batch.len() as u64) < limit;
            cursor = batch.last().map(|g| g.id);
            out.extend(
                batch
                    .into_iter()
                    .filter(|g| include_inactive || g.active_at(now)),
            );
            if exhausted || out.len() as u64 >= limit {
                break;
            }
        }
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }

    /// Admits `caller` to `tenant`'s data if they hold an actively granted staff role,
    /// and audits the access. Non-staff callers are not this function's business.
    pub async fn admit(
        &self,
        caller: &Caller,
        tenant: TenantId,
        action: &str,
        subject_id: &str,
    ) -> Result<StaffView> {
        let now = Utc::now();
        // Who may enter needs no reasons: they stay sealed.
        let grants: Vec<StaffGrant> = staff_grants::all_of(&self.ctx.db, tenant)
            .await?
            .into_iter()
            .map(|(grant, _)| grant)
            .collect();
        let active = |role: Role| {
            caller.has(role) && grants.iter().any(|g| g.role == role && g.active_at(now))
        };
        // The widest view the caller is admitted to.
        let view = if active(Role::StaffEngineer) {
            StaffView::Full
        } else if active(Role::StaffSupport) {
            StaffView::NoContent
        } else if active(Role::StaffAnalyst) {
            StaffView::Pseudonymized
        } else {
            return Err(Error::PermissionDenied(
                "staff access to this tenant needs an active consent grant from its admin".into(),
            ));
        };
        self.ctx
            .audit
            .record(
                &AuditRecord::by(caller, &format!("staff.{action}"), Some(tenant), subject_id)
                    .with_details(format!("view {view:?}")),
            )
            .await?;
        Ok(view)
    }

    async fn find(&self, tenant: TenantId, id: Uuid) -> Result<Option<StaffGrant>> {
        match staff_grants::find(&self.ctx.db, tenant, id).await? {
            Some(stored) => Ok(Some(self.with_reason(stored).await?)),
            None => Ok(None),
        }
    }

    /// The grant with its sealed reason opened.
    async fn with_reason(&self, (mut grant, sealed): staff_grants::Stored) -> Result<StaffGrant> {
        if let Some(sealed) = sealed {
            grant.reason = records::open(
                &self.ctx,
                grant.tenant,
                ("staff_grants", "reason", &grant.id.to_string()),
                &sealed,
            )
            .await?;
        }
        Ok(grant)
    }

    async fn page(
        &self,
        tenant: TenantId,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<StaffGrant>> {
        let stored = staff_grants::page(&self.ctx.db, tenant, before, limit).await?;
        let mut grants = Vec::with_capacity(stored.len());
        for grant in stored {
            grants.push(self.with_reason(grant).await?);
        }
        Ok(grants)
    }
}
