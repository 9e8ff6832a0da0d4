//! The storage service: keeps documents encrypted, asks permissions before every read, archives and tombstones (P01, P02, P07).
//!
//! Not built yet beyond its database, outbox relay and gRPC surface: every RPC answers
//! UNIMPLEMENTED until its issue is done.

#![forbid(unsafe_code)]

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_proto::mindmesh::storage::v1::storage_service_server::{
    StorageService, StorageServiceServer,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tonic::service::RoutesBuilder;

/// The gRPC services this service serves.
pub const GRPC_SERVICES: &[&str] = &["mindmesh.storage.v1.StorageService"];

/// Migrator of the storage database: so far only the kit's tables (outbox, inbox, audit).
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        mindmesh_kit::migrations::service_common()
    }
}

/// Starts the service's background tasks and adds its gRPC services to `routes`.
pub fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> mindmesh_kit::Result<()> {
    ctx.spawn_relay();
    routes.add_service(api_service!(
        StorageServiceServer::new(StorageServiceApi),
        ctx
    ));
    Ok(())
}

/// `StorageService`: not built yet; every RPC answers UNIMPLEMENTED (never a fake success).
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageServiceApi;

#[tonic::async_trait]
impl StorageService for StorageServiceApi {}
