//! The permissions service: the policy decision point for every read in Mindmesh.
//!
//! It owns accounts (tenants and users, P04), the principals and grants imported from
//! source tools, identity links by email (P05), and staff access under consent (P11).
//!
//! Reading order: [`api`] (the gRPC face) → [`policy`] (the per-tenant index host,
//! revisions, writes) → [`engine`] (the pure index: checks, listing, explanations) →
//! [`accounts`] (tenants and users: validation, sealing, events, audit) → [`events`]
//! (what it consumes and publishes) → [`blind`] (blind indexes) → [`store`] (the
//! queries, one module per table group — tenants, users, the identity graph, grants,
//! revisions, syncs, staff grants — scoped by `store::scope`, and the schema).
//! [`staff`] holds the consent grants that admit staff roles (P11); [`records`] seals
//! what describes a tenant (its name, staff-access reasons).

#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod blind;
#[cfg(feature = "dataset")]
pub mod dataset;
pub mod engine;
pub mod error;
pub mod events;
pub mod policy;
pub mod records;
pub mod staff;
pub mod store;
pub mod subject;
pub mod sync;

use std::sync::Arc;

use mindmesh_kit::Service;
use mindmesh_kit::activity::ActivityReporter;
use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::module::{ServiceModule, Started};
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::permissions::v1::{
    account_service_server::{self, AccountServiceServer},
    permissions_service_server::{self, PermissionsServiceServer},
    staff_access_service_server::{self, StaffAccessServiceServer},
};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tonic::service::RoutesBuilder;

pub use error::{Error, Result};
pub use store::migration::Migrator;

/// The permissions service, as the binary runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Permissions;

#[async_trait::async_trait]
impl ServiceModule for Permissions {
    fn service(&self) -> Service {
        Service::Permissions
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[
            account_service_server::SERVICE_NAME,
            permissions_service_server::SERVICE_NAME,
            staff_access_service_server::SERVICE_NAME,
        ]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> mindmesh_kit::Result<()> {
        Ok(Migrator::up(db, None).await?)
    }

    /// Seals what an older version kept in the clear (see [`records::seal_legacy`],
    /// [`policy::Policy::pseudonymize_legacy`]).
    async fn prepare(&self, ctx: &ServiceContext) -> mindmesh_kit::Result<()> {
        let sealed = records::seal_legacy(ctx).await?
            + policy::Policy::new(ctx.clone())
                .pseudonymize_legacy()
                .await?;
        if sealed > 0 {
            tracing::info!(rows = sealed, "records of an older version sealed");
        }
        Ok(())
    }

    /// Starts the outbox relay, the event consumer and the index warm-up; what the
    /// service does for data-subject rights comes back.
    fn start(
        &self,
        ctx: &ServiceContext,
        routes: &mut RoutesBuilder,
    ) -> mindmesh_kit::Result<Started> {
        start(ctx, routes)
    }
}

fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
    ctx.spawn_relay();
    let policy = Arc::new(policy::Policy::new(ctx.clone()));
    let accounts = accounts::Accounts::new(ctx.clone(), policy.clone());
    let consumer = ctx.spawn_consumer(Arc::new(events::PermissionEvents::new(
        ctx.clone(),
        policy.clone(),
        accounts.clone(),
    )));
    // Build every tenant's index in the background, so the first check does not pay.
    let warm = policy.clone();
    let shutdown = ctx.shutdown.clone();
    ctx.tasks.spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            result = warm.warm_up() => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "permission index warm-up failed; indexes load on first use");
                }
            }
        }
    });
    let staff = staff::StaffAccess::new(ctx.clone());
    let tenants = Tenants::new(
        ctx.db.clone(),
        Arc::new(accounts::TenantRecords::new(ctx.db.clone())),
    );
    let subject = Arc::new(subject::PermissionsSubject::new(
        ctx.clone(),
        accounts.clone(),
        policy.clone(),
    ));
    routes.add_service(api_service!(
        AccountServiceServer::new(api::AccountApi::new(
            accounts,
            tenants.clone(),
            ActivityReporter::new(ctx.service, ctx.db.clone(), ctx.relay.clone())
        )),
        ctx
    ));
    routes.add_service(api_service!(
        PermissionsServiceServer::new(api::PermissionsApi::new(
            policy,
            tenants.clone(),
            Integrations::new(ctx.db.clone(), ctx.service),
        )),
        ctx
    ));
    routes.add_service(api_service!(
        StaffAccessServiceServer::new(api::StaffAccessApi::new(staff, tenants)),
        ctx
    ));
    Ok(Started {
        subject: Some(subject),
        consumer: Some(consumer),
    })
}
