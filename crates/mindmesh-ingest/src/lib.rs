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
//! - [`disconnect`] — disconnecting an integration: syncs stopped, token revoked,
//!   credentials destroyed, the cascade published;
//! - [`events`] — the deletion cascades ingest takes part in;
//! - [`api`] — `IngestService`, the gRPC face.

#![forbid(unsafe_code)]

pub mod api;
pub mod backoff;
pub mod connector;
pub mod connectors;
pub mod disconnect;
pub mod events;
pub mod http;
pub mod oauth;
pub mod principals;
pub mod sink;
pub mod store;
pub mod subject;
pub mod sync;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::module::{ServiceModule, Started};
use mindmesh_kit::tenants::{AskPermissions, Tenants};
use mindmesh_kit::{Result, Service};
use mindmesh_proto::mindmesh::ingest::v1::ingest_service_server::{self, IngestServiceServer};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tonic::service::RoutesBuilder;

pub use store::migration::Migrator;

/// The ingest service, as the binary runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ingest;

#[async_trait::async_trait]
impl ServiceModule for Ingest {
    fn service(&self) -> Service {
        Service::Ingest
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[ingest_service_server::SERVICE_NAME]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<()> {
        Ok(Migrator::up(db, None).await?)
    }

    /// Seals what an older version kept in the clear (see [`store::Store::seal_legacy`]).
    async fn prepare(&self, ctx: &ServiceContext) -> Result<()> {
        let changed = store::Store::new(ctx.clone())
            .seal_legacy(connectors::group_of)
            .await?;
        if changed > 0 {
            tracing::info!(rows = changed, "records of an older version sealed");
        }
        Ok(())
    }

    /// Starts the outbox relay, the event consumer and the sync schedule.
    fn start(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
        start(ctx, routes)
    }
}

fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
    let sink = sink::Sink::new(ctx.clone())?;
    let setup = connectors::Setup {
        config: ctx.config.clone(),
        http: http::Http::new(&ctx.config.ingest)?,
    };
    let store = store::Store::new(ctx.clone());
    let tenants = Tenants::new(ctx.db.clone(), Arc::new(AskPermissions::new(ctx.clone())?));
    let engine = sync::Engine::new(ctx.clone(), store.clone(), sink, setup.clone());
    ctx.spawn_relay();
    let consumer = ctx.spawn_consumer(Arc::new(events::IngestEvents::new(
        ctx.clone(),
        store.clone(),
        engine.clone(),
        tenants.clone(),
    )));
    engine.spawn_scheduler();
    let subject = subject::IngestSubject::new(ctx.clone(), store.clone());
    routes.add_service(api_service!(
        IngestServiceServer::new(api::IngestApi::new(
            ctx.clone(),
            store,
            engine,
            setup,
            tenants,
            ctx.analytics()?
        )),
        ctx
    ));
    Ok(Started {
        subject: Some(Arc::new(subject)),
        consumer: Some(consumer),
    })
}
