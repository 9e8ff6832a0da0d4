//! A permissions service context for store-level tests: on SQLite (a fresh file) or on
//! the real PostgreSQL (fresh databases, dropped at the end), with the embedded bus.

#![allow(dead_code, clippy::unwrap_used)]

use mindmesh_kit::Service;
use mindmesh_kit::context::ServiceContext;
pub use mindmesh_kit::testing::Backend;
use mindmesh_kit::testing::{ContextGuard, service_context};
use mindmesh_permissions::Migrator;

/// The service context, and what must live as long as it.
pub struct Env {
    pub ctx: ServiceContext,
    _guard: ContextGuard,
}

pub async fn env(backend: Backend) -> Env {
    let (ctx, guard) = service_context::<Migrator>(Service::Permissions, backend)
        .await
        .unwrap();
    Env { ctx, _guard: guard }
}
