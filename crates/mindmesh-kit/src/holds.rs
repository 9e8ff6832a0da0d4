//! Legal holds as the services that keep data in scope know them: retention places and
//! releases holds (`legal_hold.placed`, `legal_hold.released`), and each service that
//! erases data people may need as evidence (permissions, storage, retention itself)
//! mirrors them into its own `legal_holds` table (see [`crate::migrations::legal_holds`]),
//! read in the transaction that would erase.
//!
//! Each service confirms what it applied with `legal_hold.applied`, so that retention
//! answers `PlaceLegalHold` once the hold is in force everywhere, and resumes the paused
//! cascades once every service has let go.
//!
//! A hold on a tenant keeps everything of it; a hold on one user or one integration
//! keeps that part — and so also keeps the tenant that contains it. A service whose part
//! of a cascade meets a hold erases nothing and attests its part as retained, with the
//! hold as ground ([`ground`]); retention asks again when the hold is released.

use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{
    Envelope, LegalHoldApplied, LegalHoldPlaced, LegalHoldReleased,
};
use sea_orm::sea_query::{Cond, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::error::{Error, Result};
use crate::ids::{HoldId, IntegrationId, TenantId, UserId};
use crate::service::Service;

const TABLE: &str = "legal_holds";
const GROUND_PREFIX: &str = "legal_hold:";

/// What a hold keeps, or what a cascade would erase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeldScope {
    /// The whole tenant.
    Tenant,
    /// One person's account and what it owns.
    User(UserId),
    /// What one integration brought.
    Integration(IntegrationId),
}

impl HeldScope {
    /// The kind's name, as the API and the events carry it.
    pub const fn kind(&self) -> &'static str {
        match self {
            HeldScope::Tenant => "tenant",
            HeldScope::User(_) => "user",
            HeldScope::Integration(_) => "integration",
        }
    }

    /// The held id (the tenant's own id for a tenant).
    pub fn id(&self, tenant: TenantId) -> String {
        match self {
            HeldScope::Tenant => tenant.to_string(),
            HeldScope::User(u) => u.to_string(),
            HeldScope::Integration(i) => i.to_string(),
        }
    }

    /// The scope of `kind` and `id` in `tenant`; `None` when the kind is not one, or the
    /// id is not a UUID (or, for a tenant, not `tenant`).
    pub fn parse(tenant: TenantId, kind: &str, id: &str) -> Option<HeldScope> {
        match kind {
            "tenant" => (id.parse::<TenantId>().ok()? == tenant).then_some(HeldScope::Tenant),
            "user" => id.parse().ok().map(HeldScope::User),
            "integration" => id.parse().ok().map(HeldScope::Integration),
            _ => None,
        }
    }
}

/// A hold in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The hold.
    pub id: HoldId,
    /// Its tenant.
    pub tenant: TenantId,
    /// What it keeps.
    pub scope: HeldScope,
}

impl Hold {
    /// Whether this hold keeps (part of) `scope` of `tenant`: a hold on the tenant keeps
    /// every scope of it; a hold on a part keeps that part and the whole tenant.
    pub fn keeps(&self, tenant: TenantId, scope: &HeldScope) -> bool {
        self.tenant == tenant
            && (self.scope == HeldScope::Tenant
                || *scope == HeldScope::Tenant
                || self.scope == *scope)
    }
}

/// The ground a retained part names: `legal_hold:<hold id>`.
pub fn ground(hold: HoldId) -> String {
    format!("{GROUND_PREFIX}{hold}")
}

/// The hold a ground names, if it names one.
pub fn hold_of_ground(ground: &str) -> Option<HoldId> {
    ground.strip_prefix(GROUND_PREFIX)?.parse().ok()
}

/// `legal_hold.placed` from retention: `hold` keeps `scope` of `tenant`.
pub fn placed_event(tenant: TenantId, hold: HoldId, scope: &HeldScope) -> Envelope {
    crate::events::envelope(
        Service::Retention,
        Some(tenant),
        Payload::LegalHoldPlaced(LegalHoldPlaced {
            hold_id: hold.to_string(),
            scope_kind: scope.kind().to_owned(),
            scope_id: scope.id(tenant),
        }),
    )
}

/// `legal_hold.released` from retention.
pub fn released_event(tenant: TenantId, hold: HoldId) -> Envelope {
    crate::events::envelope(
        Service::Retention,
        Some(tenant),
        Payload::LegalHoldReleased(LegalHoldReleased {
            hold_id: hold.to_string(),
        }),
    )
}

/// Records that `hold` keeps `scope` of `tenant` (again: nothing changes).
pub async fn place<C: ConnectionTrait>(conn: &C, hold: &Hold) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(TABLE)
            .columns([
                "hold_id",
                "tenant_id",
                "scope_kind",
                "scope_id",
                "placed_at",
            ])
            .values_panic([
                hold.id.to_string().into(),
                hold.tenant.to_string().into(),
                hold.scope.kind().into(),
                hold.scope.id(hold.tenant).into(),
                crate::db::now().into(),
            ])
            .on_conflict(OnConflict::column("hold_id").do_nothing().to_owned())
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Forgets `hold` (a release; again: nothing changes).
pub async fn release<C: ConnectionTrait>(conn: &C, hold: HoldId) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table(TABLE)
            .and_where(Expr::col("hold_id").eq(hold.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The hold that keeps `scope` of `tenant`, if one does (the oldest).
pub async fn keeping<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    scope: &HeldScope,
) -> Result<Option<HoldId>> {
    let mut query = Query::select();
    query
        .column("hold_id")
        .from(TABLE)
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
        .order_by("placed_at", sea_orm::Order::Asc)
        .order_by("hold_id", sea_orm::Order::Asc)
        .limit(1);
    if *scope != HeldScope::Tenant {
        query.cond_where(
            Cond::any().add(Expr::col("scope_kind").eq("tenant")).add(
                Cond::all()
                    .add(Expr::col("scope_kind").eq(scope.kind()))
                    .add(Expr::col("scope_id").eq(scope.id(tenant))),
            ),
        );
    }
    let Some(row) = conn.query_one(&query).await? else {
        return Ok(None);
    };
    let id: String = row.try_get("", "hold_id")?;
    id.parse()
        .map(Some)
        .map_err(|_| Error::Internal("malformed hold id in legal_holds".into()))
}

/// Fails with FAILED_PRECONDITION, naming the hold, when one keeps `scope` of `tenant`
/// (a deletion asked for directly is refused rather than paused: the caller can
/// release the hold and ask again).
pub async fn require_not_kept<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    scope: &HeldScope,
) -> Result<()> {
    match keeping(conn, tenant, scope).await? {
        None => Ok(()),
        Some(hold) => Err(Error::FailedPrecondition(format!(
            "the {} is kept by legal hold {hold}: nothing of it is deleted until the hold is \
             released",
            scope.kind()
        ))),
    }
}

/// The hold on the whole of `tenant`, if there is one (not a hold on a part of it).
pub async fn tenant_hold<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<Option<HoldId>> {
    let row = conn
        .query_one(
            &Query::select()
                .column("hold_id")
                .from(TABLE)
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("scope_kind").eq("tenant"))
                .order_by("placed_at", sea_orm::Order::Asc)
                .limit(1)
                .to_owned(),
        )
        .await?;
    row.map(|r| {
        let id: String = r.try_get("", "hold_id")?;
        id.parse()
            .map_err(|_| Error::Internal("malformed hold id in legal_holds".into()))
    })
    .transpose()
}

/// Whether `hold` is in force (placed, not released).
pub async fn in_force<C: ConnectionTrait>(conn: &C, hold: HoldId) -> Result<bool> {
    Ok(conn
        .query_one(
            &Query::select()
                .column("hold_id")
                .from(TABLE)
                .and_where(Expr::col("hold_id").eq(hold.to_string()))
                .to_owned(),
        )
        .await?
        .is_some())
}

/// Every hold in force, in every tenant (holds are few; a purge filters by them).
pub async fn all<C: ConnectionTrait>(conn: &C) -> Result<Vec<Hold>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns(["hold_id", "tenant_id", "scope_kind", "scope_id"])
                .from(TABLE)
                .to_owned(),
        )
        .await?;
    let malformed = || Error::Internal("malformed row in legal_holds".into());
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("", "hold_id")?;
            let tenant: String = r.try_get("", "tenant_id")?;
            let kind: String = r.try_get("", "scope_kind")?;
            let scope_id: String = r.try_get("", "scope_id")?;
            let tenant: TenantId = tenant.parse().map_err(|_| malformed())?;
            Ok(Hold {
                id: id.parse().map_err(|_| malformed())?,
                tenant,
                scope: HeldScope::parse(tenant, &kind, &scope_id).ok_or_else(malformed)?,
            })
        })
        .collect()
}

/// Applies `envelope` if it is `legal_hold.placed` or `legal_hold.released`, once
/// (claimed in `consumer`'s inbox in the same transaction), and confirms it to retention
/// with `legal_hold.applied` from `ctx`'s service; returns whether it was one.
pub async fn apply_event(
    ctx: &crate::context::ServiceContext,
    consumer: &str,
    envelope: &Envelope,
) -> Result<bool> {
    let placed = match &envelope.payload {
        Some(Payload::LegalHoldPlaced(p)) => {
            let tenant = crate::events::tenant(envelope)?
                .ok_or_else(|| Error::MalformedEvent("legal_hold.placed without tenant".into()))?;
            let scope = HeldScope::parse(tenant, &p.scope_kind, &p.scope_id).ok_or_else(|| {
                Error::MalformedEvent("legal_hold.placed with a scope that is not one".into())
            })?;
            Ok(Hold {
                id: hold_id(&p.hold_id)?,
                tenant,
                scope,
            })
        }
        Some(Payload::LegalHoldReleased(r)) => Err(hold_id(&r.hold_id)?),
        _ => return Ok(false),
    };
    let tenant = crate::events::tenant(envelope)?;
    let txn = ctx.db.begin().await?;
    if crate::inbox::claim(&txn, consumer, &envelope.id).await? {
        let (hold, released) = match &placed {
            Ok(hold) => {
                place(&txn, hold).await?;
                (hold.id, false)
            }
            Err(released) => {
                release(&txn, *released).await?;
                (*released, true)
            }
        };
        crate::outbox::enqueue(&txn, &applied_event(ctx.service, tenant, hold, released)).await?;
    }
    txn.commit().await?;
    ctx.relay.wake();
    Ok(true)
}

/// `legal_hold.applied` from `service`: it has applied the placing (or the release) of
/// `hold`.
pub fn applied_event(
    service: Service,
    tenant: Option<TenantId>,
    hold: HoldId,
    released: bool,
) -> Envelope {
    crate::events::envelope(
        service,
        tenant,
        Payload::LegalHoldApplied(LegalHoldApplied {
            hold_id: hold.to_string(),
            released,
        }),
    )
}

/// The services that erase data a hold may keep, and so confirm each hold: those that
/// mirror holds (permissions, storage) — retention applies its own at once.
pub const KEEPERS: [Service; 2] = [Service::Permissions, Service::Storage];

fn hold_id(value: &str) -> Result<HoldId> {
    value
        .parse()
        .map_err(|_| Error::MalformedEvent("hold_id is not a UUID".into()))
}
