//! The ingest service: connects source tools (Google Drive, GitHub, local folders), imports their principals, documents and ACLs, and disconnects them (P03, P06).
//!
//! A tour, top-down:
//! - [`connector`] — the contract every source provides: principals, pages of changed
//!   documents with their grants and of deletions behind an opaque cursor, lazy content;
//! - [`connectors`] — the connectors (and what each asks for, P03), how one is
//!   connected and opened;
//! - [`http`] and [`oauth`] — requests to the sources that respect their rate limits,
//!   and their tokens (code exchange, refresh, service-account assertions);
//! - [`sync`] — the engine: leases, schedule, pages applied and checkpointed;
//! - [`principals`] — the directory and the outside people grants name;
//! - [`sink`] — where a sync writes: storage and permissions over gRPC;
//! - [`store`] — integrations, sealed credentials, imported items;
//! - [`events`] — the deletion cascades ingest takes part in;
//! - [`api`] — `IngestService`, the gRPC face.

#![forbid(unsafe_code)]

pub mod api;
pub mod backoff;
pub mod connector;
pub mod connectors;
pub mod events;
pub mod http;
pub mod oauth;
pub mod principals;
pub mod sink;
pub mod store;
pub mod sync;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::tenants::{AskPermissions, Tenants};
use mindmesh_proto::mindmesh::ingest::v1::ingest_service_server::IngestServiceServer;
use tonic::service::RoutesBuilder;

/// The gRPC services this service serves.
pub const GRPC_SERVICES: &[&str] = &["mindmesh.ingest.v1.IngestService"];

pub use store::migration::Migrator;

/// Readies the service's database before it serves: seals what an older version kept
/// in the clear (see [`store::Store::seal_legacy`]).
pub async fn prepare(ctx: &ServiceContext) -> mindmesh_kit::Result<()> {
    let changed = store::Store::new(ctx.clone())
        .seal_legacy(connectors::group_of)
        .await?;
    if changed > 0 {
        tracing::info!(rows = changed, "records of an older version sealed");
    }
    Ok(())
}

/// Starts the service's background tasks (outbox relay, sync schedule) and adds its gRPC
/// services to `routes`.
pub fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> mindmesh_kit::Result<()> {
    let sink = sink::Sink::new(ctx.clone())?;
    let setup = connectors::Setup {
        config: ctx.config.clone(),
        http: http::Http::new(&ctx.config.ingest)?,
    };
    let store = store::Store::new(ctx.clone());
    let tenants = Tenants::new(ctx.db.clone(), Arc::new(AskPermissions::new(ctx.clone())?));
    let engine = sync::Engine::new(ctx.clone(), store.clone(), sink, setup.clone());
    ctx.spawn_relay();
    ctx.spawn_consumer(Arc::new(events::IngestEvents::new(
        ctx.clone(),
        store.clone(),
        engine.clone(),
        tenants.clone(),
    )));
    engine.spawn_scheduler();
    routes.add_service(api_service!(
        IngestServiceServer::new(api::IngestApi::new(
            ctx.clone(),
            store,
            engine,
            setup,
            tenants
        )),
        ctx
    ));
    Ok(())
}
