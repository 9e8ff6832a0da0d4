//! The permissions service: the policy decision point for every read in Mindmesh.
//!
//! It owns accounts (tenants and users, P04), the principals and grants imported from
//! source tools, identity links by email (P05), and staff access under consent (P11).
//!
//! Reading order: [`api`] (the gRPC face) → [`policy`] (the per-tenant index host,
//! revisions, writes) → [`engine`] (the pure index: checks, listing, explanations) →
//! [`accounts`] (tenants and users: validation, sealing, events, audit) → [`events`]
//! (what it consumes) → [`blind`] (blind indexes) → [`store`] (schema).
//! [`staff`] holds the consent grants that admit staff roles (P11); [`records`] seals
//! what describes a tenant (its name, staff-access reasons).

#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod blind;
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

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::subject_api::SubjectProvider;
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::permissions::v1::{
    account_service_server::AccountServiceServer,
    permissions_service_server::PermissionsServiceServer,
    staff_access_service_server::StaffAccessServiceServer,
};
use tonic::service::RoutesBuilder;

pub use error::{Error, Result};
pub use store::migration::Migrator;

/// The gRPC services this service serves.
pub const GRPC_SERVICES: &[&str] = &[
    "mindmesh.permissions.v1.AccountService",
    "mindmesh.permissions.v1.PermissionsService",
    "mindmesh.permissions.v1.StaffAccessService",
];

/// Readies the service's database before it serves: seals what an older version kept
/// in the clear (see [`records::seal_legacy`], [`policy::Policy::pseudonymize_legacy`]).
pub async fn prepare(ctx: &ServiceContext) -> Result<()> {
    let sealed = records::seal_legacy(ctx).await?
        + policy::Policy::new(ctx.clone())
            .pseudonymize_legacy()
            .await?;
    if sealed > 0 {
        tracing::info!(rows = sealed, "records of an older version sealed");
    }
    Ok(())
}

/// Starts the service's background tasks and adds its gRPC services to `routes`.
/// Returns what the service does for data-subject rights.
pub fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Arc<dyn SubjectProvider>> {
    ctx.spawn_relay();
    let policy = Arc::new(policy::Policy::new(ctx.clone()));
    ctx.spawn_consumer(Arc::new(events::PermissionEvents::new(
        ctx.clone(),
        policy.clone(),
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
    let accounts = accounts::Accounts::new(ctx.clone(), policy.clone());
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
        AccountServiceServer::new(api::AccountApi::new(accounts, tenants.clone())),
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
    Ok(subject)
}
