//! The retention service: policies, account activity and inactivity sweeps (P09), the
//! deletion ledger and its signed receipts (P06, P08), legal holds, and backups (P10).
//!
//! Reading order: [`api`] (the gRPC face) → [`events`] (what it consumes) →
//! [`ledger`] (every cascade and each service's part) → [`holds`] (legal holds, which
//! pause cascades) → [`attesters`] (whose key an attestation must verify against) →
//! [`receipts`] (the signed proof a cascade completed) → [`receipt_log`] (the Merkle log
//! of receipts, its checkpoints and proofs) → [`policy`] and [`sweep`] (inactivity,
//! P09) → [`activity`] (last activity per account) → [`backups`] (sealed copies and
//! restores, P10) → [`subject`] (data-subject rights) → [`store`] (schema and every
//! query).
//!
//! Every RPC is built; `RestoreBackup` answers FAILED_PRECONDITION, since a restore
//! needs the server stopped (`mindmesh backup restore`).

#![forbid(unsafe_code)]

pub mod activity;
pub mod api;
pub mod attesters;
pub mod backups;
pub mod events;
pub mod holds;
pub mod ledger;
pub mod policy;
pub mod receipt_log;
pub mod receipts;
pub mod store;
pub mod subject;
pub mod sweep;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::module::{ServiceModule, Started};
use mindmesh_kit::tenants::{AskPermissions, Tenants};
use mindmesh_kit::{Result, Service};
use mindmesh_proto::mindmesh::retention::v1::retention_service_server::{
    self, RetentionServiceServer,
};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tonic::service::RoutesBuilder;

pub use store::Migrator;

/// The retention service, as the binary runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retention;

#[async_trait::async_trait]
impl ServiceModule for Retention {
    fn service(&self) -> Service {
        Service::Retention
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[retention_service_server::SERVICE_NAME]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<()> {
        Ok(Migrator::up(db, None).await?)
    }

    /// Starts the outbox relay, the event consumer and the asking again of stalled
    /// cascades.
    fn start(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
        start(ctx, routes)
    }
}

/// The attesters and the deletion ledger of the retention service of `ctx`, as it runs
/// them (also for `mindmesh backup`, which asks completed cascades again).
pub fn ledger_for(ctx: &ServiceContext) -> Result<(attesters::Attesters, ledger::Ledger)> {
    let attesters =
        attesters::Attesters::new(&ctx.config.retention, ctx.keys.signing.public_key())?;
    let notary = receipts::Notary::new(
        ctx.keys.clone(),
        receipt_log::LogName::new(&ctx.config.retention.log_name)?,
        attesters.clone(),
        ctx.config.retention.backup_retention_days,
    );
    let ledger = ledger::Ledger::new(ctx.db.clone(), &ctx.keys.master, notary, ctx.audit.clone())?;
    Ok((attesters, ledger))
}

fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
    let tenants = Tenants::new(ctx.db.clone(), Arc::new(AskPermissions::new(ctx.clone())?));
    ctx.spawn_relay();
    let activity = activity::Activity::new(ctx.db.clone());
    let (attesters, ledger) = ledger_for(ctx)?;
    let stall_after = chrono::Duration::seconds(
        i64::try_from(ctx.config.retention.cascade_stall_after_secs).unwrap_or(i64::MAX / 1000),
    );
    ctx.tasks.spawn(
        events::Reasker::new(ctx.clone(), ledger.clone(), stall_after).run(ctx.shutdown.clone()),
    );
    let holds = holds::LegalHolds::new(
        ctx.db.clone(),
        ledger.clone(),
        ctx.audit.clone(),
        ctx.relay.clone(),
        &ctx.keys.master,
    )?;
    let policies = policy::Policies::new(ctx.db.clone(), ctx.audit.clone(), ctx.relay.clone());
    let backups = backups::Backups::new(
        ctx.config.clone(),
        ctx.db.clone(),
        &ctx.keys.master,
        ctx.audit.clone(),
    )?;
    ctx.tasks.spawn(backups::run_schedule(
        backups.clone(),
        ledger.clone(),
        ctx.shutdown.clone(),
    ));
    let sweeper = sweep::Sweeper::new(
        ctx.clone(),
        ledger.clone(),
        policies.clone(),
        tenants.clone(),
    );
    ctx.tasks.spawn(sweeper.clone().run(
        std::time::Duration::from_secs(ctx.config.retention.sweep_interval_secs),
        ctx.shutdown.clone(),
    ));
    let consumer = ctx.spawn_consumer(Arc::new(events::RetentionEvents::new(
        ctx.clone(),
        activity.clone(),
        ledger.clone(),
        holds.clone(),
        attesters,
        tenants.clone(),
    )));
    let subject = subject::RetentionSubject::new(
        ctx.clone(),
        activity.clone(),
        ledger.clone(),
        AskPermissions::new(ctx.clone())?,
    );
    routes.add_service(api_service!(
        RetentionServiceServer::new(api::RetentionApi {
            activity,
            ledger,
            holds,
            backups,
            policies,
            sweeper,
            stall_after,
            tenants,
        }),
        ctx
    ));
    Ok(Started {
        subject: Some(Arc::new(subject)),
        consumer: Some(consumer),
    })
}
