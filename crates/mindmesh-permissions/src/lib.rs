//! The permissions service: the policy decision point for every read in Mindmesh.
//!
//! It owns accounts (tenants and users, P04), the principals and grants imported from
//! source tools, identity links by email (P05), and staff access under consent (P11).
//!
//! Reading order: [`api`] (the gRPC face) → [`accounts`] (tenants and users: validation,
//! sealing, events, audit) → [`store`] (entities and migrations).
//! Built so far: `AccountService`. `PermissionsService` and `StaffAccessService` answer
//! UNIMPLEMENTED until they are built.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod engine;
pub mod error;
pub mod store;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
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

/// Starts the service's background tasks and adds its gRPC services to `routes`.
pub fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<()> {
    ctx.spawn_relay();
    let accounts = accounts::Accounts::new(ctx.clone());
    routes.add_service(api_service!(
        AccountServiceServer::new(api::AccountApi::new(accounts)),
        ctx
    ));
    routes.add_service(api_service!(
        PermissionsServiceServer::new(api::PermissionsApi),
        ctx
    ));
    routes.add_service(api_service!(
        StaffAccessServiceServer::new(api::StaffAccessApi),
        ctx
    ));
    Ok(())
}
