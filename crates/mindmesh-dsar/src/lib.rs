//! The dsar service: data-subject requests, exports, consents, communication preferences, processor switches and breach notices (P12–P15).
//!
//! Not built yet beyond its database, outbox relay, gRPC surface and its part in deletion
//! cascades ([`events`]): every RPC answers UNIMPLEMENTED until its issue is done.

#![forbid(unsafe_code)]

pub mod events;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::module::{ServiceModule, Started};
use mindmesh_kit::{Result, Service};
use mindmesh_proto::mindmesh::dsar::v1::{
    dsar_service_server::{self, DsarService, DsarServiceServer},
    privacy_settings_service_server::{self, PrivacySettingsService, PrivacySettingsServiceServer},
};
use sea_orm::DatabaseConnection;
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tonic::service::RoutesBuilder;

/// The dsar service, as the binary runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dsar;

#[async_trait::async_trait]
impl ServiceModule for Dsar {
    fn service(&self) -> Service {
        Service::Dsar
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[
            dsar_service_server::SERVICE_NAME,
            privacy_settings_service_server::SERVICE_NAME,
        ]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<()> {
        Ok(Migrator::up(db, None).await?)
    }

    /// Starts the outbox relay and the event consumer.
    fn start(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
        start(ctx, routes)
    }
}

/// Migrator of the dsar database: so far only the kit's tables (outbox, inbox, audit).
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        mindmesh_kit::migrations::service_common()
    }
}

fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
    ctx.spawn_relay();
    let consumer = ctx.spawn_consumer(Arc::new(events::DsarEvents::new(ctx.clone())));
    routes.add_service(api_service!(DsarServiceServer::new(DsarServiceApi), ctx));
    routes.add_service(api_service!(
        PrivacySettingsServiceServer::new(PrivacySettingsServiceApi),
        ctx
    ));
    Ok(Started {
        subject: None,
        consumer: Some(consumer),
    })
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
