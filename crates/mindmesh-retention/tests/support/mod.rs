//! What the retention crate's tests share: a ledger as the service builds it, and a
//! tenant authority for which every tenant exists.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use mindmesh_kit::Result;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::tenants::{TenantAuthority, Tenants};
use mindmesh_retention::attesters::Attesters;
use mindmesh_retention::ledger::Ledger;
use mindmesh_retention::receipt_log::LogName;
use mindmesh_retention::receipts::Notary;

/// Every tenant exists (the ledger and the sweep do not ask).
pub struct Everyone;

#[async_trait::async_trait]
impl TenantAuthority for Everyone {
    async fn exists(&self, _: TenantId) -> Result<bool> {
        Ok(true)
    }
}

/// The tenants of `ctx`'s service, all existing.
pub fn tenants(ctx: &ServiceContext) -> Tenants {
    Tenants::new(ctx.db.clone(), Arc::new(Everyone))
}

/// The attesters and the ledger over `ctx`, as the service builds them.
pub fn ledger(ctx: &ServiceContext) -> (Attesters, Ledger) {
    let attesters = Attesters::new(&ctx.config.retention, ctx.keys.signing.public_key()).unwrap();
    let notary = Notary::new(
        ctx.keys.clone(),
        LogName::new("mindmesh-receipts").unwrap(),
        attesters.clone(),
        7,
    );
    let ledger = Ledger::new(ctx.db.clone(), &ctx.keys.master, notary, ctx.audit.clone()).unwrap();
    (attesters, ledger)
}

/// The legal holds over `ctx` and `ledger`, as the service builds them.
pub fn holds(ctx: &ServiceContext, ledger: &Ledger) -> mindmesh_retention::holds::LegalHolds {
    mindmesh_retention::holds::LegalHolds::new(
        ctx.db.clone(),
        ledger.clone(),
        ctx.audit.clone(),
        ctx.relay.clone(),
        &ctx.keys.master,
    )
    .unwrap()
}

/// The event handler over `ctx`, as the service builds it.
pub fn events(
    ctx: &ServiceContext,
    attesters: Attesters,
    ledger: &Ledger,
    holds: mindmesh_retention::holds::LegalHolds,
) -> mindmesh_retention::events::RetentionEvents {
    mindmesh_retention::events::RetentionEvents::new(
        ctx.clone(),
        mindmesh_retention::activity::Activity::new(ctx.db.clone()),
        ledger.clone(),
        holds,
        attesters,
        tenants(ctx),
    )
}
