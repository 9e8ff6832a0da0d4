//! The storage service: keeps documents encrypted, asks permissions before every read, archives and tombstones (P01, P02, P07).
//!
//! Built so far: [`documents`] — sealed documents, blind-index terms, archive and
//! tombstones, and erasure of an integration's documents with its key — tested on SQLite
//! and PostgreSQL; [`events`] — the `integration.disconnected` cascade handler. Not built
//! yet: the gRPC face (every RPC answers UNIMPLEMENTED), permission checks, key rotation,
//! the account and subject cascades (issue #4).

#![forbid(unsafe_code)]

pub mod documents;
pub mod events;
pub mod store;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_proto::mindmesh::storage::v1::storage_service_server::{
    StorageService, StorageServiceServer,
};
use tonic::service::RoutesBuilder;

/// The gRPC services this service serves.
pub const GRPC_SERVICES: &[&str] = &["mindmesh.storage.v1.StorageService"];

pub use store::migration::Migrator;

/// Starts the service's background tasks and adds its gRPC services to `routes`.
pub fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> mindmesh_kit::Result<()> {
    ctx.spawn_relay();
    let documents = documents::Documents::new(ctx.db.clone(), ctx.keystore.clone());
    ctx.spawn_consumer(std::sync::Arc::new(events::StorageEvents::new(
        ctx.clone(),
        documents,
    )));
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
