//! The storage service: keeps documents encrypted, asks permissions before every read, archives and tombstones (P01, P02, P07).
//!
//! Reading order: [`api`] — the gRPC face, the enforcement point of every read →
//! [`documents`] — sealed documents, archive and tombstones, erasure of a scope's
//! documents with its key → [`find`] — the find index (hashed words, sealed postings,
//! ranking, compaction) → [`imports`] — what ingest streams in, written in batches →
//! [`listing`] — a page of a listing or find as a reader may
//! see it → [`access`] — the questions storage asks the permissions
//! service → [`events`] — the deletion cascades and the events storage publishes →
//! [`subject`] — export and restriction → [`store`] — the queries, one module per table
//! group (documents, tombstones, erasures, the index), and the schema.

#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod documents;
pub mod events;
pub mod find;
pub mod imports;
pub mod listing;
pub mod store;
pub mod subject;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::module::{ServiceModule, Started};
use mindmesh_kit::tenants::{AskPermissions, Tenants};
use mindmesh_kit::{Result, Service};
use mindmesh_proto::mindmesh::storage::v1::storage_service_server::{self, StorageServiceServer};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tonic::service::RoutesBuilder;

pub use store::migration::Migrator;

/// The storage service, as the binary runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Storage;

#[async_trait::async_trait]
impl ServiceModule for Storage {
    fn service(&self) -> Service {
        Service::Storage
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[storage_service_server::SERVICE_NAME]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<()> {
        Ok(Migrator::up(db, None).await?)
    }

    /// Seals what an older version kept in the clear (see
    /// [`documents::Documents::seal_legacy`]).
    async fn prepare(&self, ctx: &ServiceContext) -> Result<()> {
        let sealed = documents::Documents::new(ctx.db.clone(), ctx.keystore.clone())
            .seal_legacy()
            .await?;
        if sealed > 0 {
            tracing::info!(rows = sealed, "source ids of an older version sealed");
        }
        Ok(())
    }

    /// Starts the outbox relay, the event consumer and the purge of archived documents;
    /// what the service does for data-subject rights comes back.
    fn start(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
        start(ctx, routes)
    }
}

fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
    let gate = access::Gate::new(ctx.clone())?;
    let tenants = Tenants::new(ctx.db.clone(), Arc::new(AskPermissions::new(ctx.clone())?));
    ctx.spawn_relay();
    let documents = documents::Documents::new(ctx.db.clone(), ctx.keystore.clone());
    let consumer = ctx.spawn_consumer(Arc::new(events::StorageEvents::new(
        ctx.clone(),
        documents.clone(),
        gate.clone(),
        tenants.clone(),
    )));
    spawn_purge(ctx, documents.clone());
    routes.add_service(api_service!(
        StorageServiceServer::new(api::StorageApi::new(
            ctx.clone(),
            documents.clone(),
            gate.clone(),
            tenants,
            Integrations::new(ctx.db.clone(), ctx.service),
            ctx.analytics()?,
        )),
        ctx
    ));
    Ok(Started {
        subject: Some(Arc::new(subject::StorageSubject::new(
            ctx.clone(),
            documents,
            gate,
        ))),
        consumer: Some(consumer),
    })
}

/// Purges archived documents once their restore window (the tenant's retention policy,
/// else `storage.archive_purge_after_days`) has passed and no legal hold keeps them,
/// every `storage.purge_interval_secs`, until shutdown.
fn spawn_purge(ctx: &ServiceContext, documents: documents::Documents) {
    let interval = std::time::Duration::from_secs(ctx.config.storage.purge_interval_secs);
    let keep = chrono::Duration::days(i64::from(ctx.config.storage.archive_purge_after_days));
    let shutdown = ctx.shutdown.clone();
    ctx.tasks.spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match documents.purge_archived(chrono::Utc::now(), keep).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "archived documents purged"),
                Err(e) => {
                    tracing::warn!(error = %e, "purging archived documents failed; will retry")
                }
            }
        }
    });
}
