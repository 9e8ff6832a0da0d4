//! The retention service: policies, account activity and inactivity sweeps (P09), the
//! deletion ledger and its signed receipts (P06, P08), legal holds, and backups (P10).
//!
//! Reading order: [`api`] (the gRPC face) → [`events`] (what it consumes) →
//! [`activity`] (last activity per account) → [`store`] (schema).
//! Built so far: account activity, fed by `account.activity` events and
//! `RecordActivity`, and forgotten on `account.deletion_requested`. Every other RPC
//! answers UNIMPLEMENTED until it is built.

#![forbid(unsafe_code)]

pub mod activity;
pub mod api;
pub mod events;
pub mod store;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::bus::consume::ConsumerStats;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::tenants::{AskPermissions, Tenants};
use mindmesh_proto::mindmesh::retention::v1::retention_service_server::RetentionServiceServer;
use tonic::service::RoutesBuilder;

pub use store::Migrator;

/// The gRPC services this service serves.
pub const GRPC_SERVICES: &[&str] = &["mindmesh.retention.v1.RetentionService"];

/// Starts the service's relay and consumer and adds its gRPC services to `routes`.
/// Returns the consumer's counters.
pub fn start(
    ctx: &ServiceContext,
    routes: &mut RoutesBuilder,
) -> mindmesh_kit::Result<Arc<ConsumerStats>> {
    let tenants = Tenants::new(ctx.db.clone(), Arc::new(AskPermissions::new(ctx.clone())?));
    ctx.spawn_relay();
    let activity = activity::Activity::new(ctx.db.clone());
    let stats = ctx.spawn_consumer(Arc::new(events::RetentionEvents::new(
        activity.clone(),
        tenants.clone(),
    )));
    routes.add_service(api_service!(
        RetentionServiceServer::new(api::RetentionApi::new(activity, tenants)),
        ctx
    ));
    Ok(stats)
}
