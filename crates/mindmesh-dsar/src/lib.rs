//! The dsar service: data-subject requests, exports, consents, communication preferences, processor switches and breach notices (P12–P15).
//!
//! Not built yet beyond its database, outbox relay and gRPC surface: every RPC answers
//! UNIMPLEMENTED until its issue is done.

#![forbid(unsafe_code)]

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_proto::mindmesh::dsar::v1::{
    dsar_service_server::{DsarService, DsarServiceServer},
    privacy_settings_service_server::{PrivacySettingsService, PrivacySettingsServiceServer},
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tonic::service::RoutesBuilder;

/// The gRPC services this service serves.
pub const GRPC_SERVICES: &[&str] = &[
    "mindmesh.dsar.v1.DsarService",
    "mindmesh.dsar.v1.PrivacySettingsService",
];

/// Migrator of the dsar database: so far only the kit's tables (outbox, inbox, audit).
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        mindmesh_kit::migrations::service_common()
    }
}

/// Starts the service's background tasks and adds its gRPC services to `routes`.
pub fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> mindmesh_kit::Result<()> {
    ctx.spawn_relay();
    routes.add_service(api_service!(DsarServiceServer::new(DsarServiceApi), ctx));
    routes.add_service(api_service!(
        PrivacySettingsServiceServer::new(PrivacySettingsServiceApi),
        ctx
    ));
    Ok(())
}

/// `DsarService`: not built yet; every RPC answers UNIMPLEMENTED (never a fake success).
#[derive(Clone, Copy, Debug, Default)]
pub struct DsarServiceApi;

#[tonic::async_trait]
impl DsarService for DsarServiceApi {}

/// `PrivacySettingsService`: not built yet; every RPC answers UNIMPLEMENTED (never a fake success).
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivacySettingsServiceApi;

#[tonic::async_trait]
impl PrivacySettingsService for PrivacySettingsServiceApi {}
