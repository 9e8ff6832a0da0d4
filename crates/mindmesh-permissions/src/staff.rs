//! Staff access under consent (P11): a tenant's admin grants a staff role access to the
//! tenant's data for a reason and until an expiry; without an active grant a staff token
//! sees nothing of the tenant. Grants, revocations and every staff access are written to
//! the audit log, so the proof of consent — and of use — can be shown on request.

use chrono::{DateTime, Duration, Utc};
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::records;

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
        txn.execute(
            &Query::insert()
                .into_table("staff_grants")
                .columns([
                    "id",
                    "tenant_id",
                    "role",
                    "reason",
                    "reason_ct",
                    "granted_by",
                    "granted_at",
                    "expires_at",
                    "revoked_at",
                ])
                .values_panic([
                    grant.id.to_string().into(),
                    tenant.to_string().into(),
                    role.as_str().into(),
                    "".into(),
                    reason_ct.into(),
                    grant.granted_by.clone().into(),
                    grant.granted_at.into(),
                    grant.expires_at.into(),
                    Option::<DateTime<Utc>>::None.into(),
                ])
                .to_owned(),
        )
        .await?;
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
        txn.execute(
            &Query::update()
                .table("staff_grants")
                .value("revoked_at", now)
                .and_where(Expr::col("id").eq(id.to_string()))
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .to_owned(),
        )
        .await?;
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
        let rows = self
            .ctx
            .db
            .query_all(
                &select()
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?;
        // Who may enter needs no reasons: they stay sealed.
        let grants: Vec<StaffGrant> = rows
            .iter()
            .map(|r| row_to_grant(r).map(|(g, _)| g))
            .collect::<Result<_>>()?;
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
        let row = self
            .ctx
            .db
            .query_one(
                &select()
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?;
        match row {
            Some(row) => Ok(Some(self.with_reason(row_to_grant(&row)?).await?)),
            None => Ok(None),
        }
    }

    /// The grant with its sealed reason opened.
    async fn with_reason(
        &self,
        (mut grant, sealed): (StaffGrant, Option<Vec<u8>>),
    ) -> Result<StaffGrant> {
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
        let mut query = select();
        query
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .order_by("id", Order::Desc)
            .limit(limit);
        if let Some(before) = before {
            query.and_where(Expr::col("id").lt(before.to_string()));
        }
        let rows = self.ctx.db.query_all(&query).await?;
        let mut grants = Vec::with_capacity(rows.len());
        for row in &rows {
            grants.push(self.with_reason(row_to_grant(row)?).await?);
        }
        Ok(grants)
    }
}

fn select() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .columns([
            "id",
            "tenant_id",
            "role",
            "reason",
            "reason_ct",
            "granted_by",
            "granted_at",
            "expires_at",
            "revoked_at",
        ])
        .from("staff_grants")
        .to_owned()
}

/// A grant as stored, with its reason still sealed (the reason of a row an older
/// version wrote is in the clear, and no sealed one).
fn row_to_grant(row: &sea_orm::QueryResult) -> Result<(StaffGrant, Option<Vec<u8>>)> {
    let bad = || mindmesh_kit::Error::Internal("malformed staff grant in store".into());
    let id: String = row.try_get("", "id")?;
    let tenant: String = row.try_get("", "tenant_id")?;
    let role: String = row.try_get("", "role")?;
    let grant = StaffGrant {
        id: id.parse().map_err(|_| bad())?,
        tenant: tenant.parse().map_err(|_| bad())?,
        role: role.parse().map_err(|_| bad())?,
        reason: row.try_get("", "reason")?,
        granted_by: row.try_get("", "granted_by")?,
        granted_at: row.try_get("", "granted_at")?,
        expires_at: row.try_get("", "expires_at")?,
        revoked_at: row.try_get("", "revoked_at")?,
    };
    Ok((grant, row.try_get("", "reason_ct")?))
}
