//! The ingest service: connects source tools (Google Drive, GitHub, local folders), imports their principals, documents and ACLs, and disconnects them (P03, P06).
//!
//! Not built yet beyond its database, outbox relay and gRPC surface: every RPC answers
//! UNIMPLEMENTED until its issue is done.

#![forbid(unsafe_code)]

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_proto::mindmesh::ingest::v1::ingest_service_server::{
    IngestService, IngestServiceServer,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tonic::service::RoutesBuilder;

/// The gRPC services this service serves.
pub const GRPC_SERVICES: &[&str] = &["mindmesh.ingest.v1.IngestService"];

/// Migrator of the ingest database: so far only the kit's tables (outbox, inbox, audit).
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
        IngestServiceServer::new(IngestServiceApi),
        ctx
    ));
    Ok(())
}

/// `IngestService`: not built yet; every RPC answers UNIMPLEMENTED (never a fake success).
#[derive(Clone, Copy, Debug, Default)]
pub struct IngestServiceApi;

#[tonic::async_trait]
impl IngestService for IngestServiceApi {}
