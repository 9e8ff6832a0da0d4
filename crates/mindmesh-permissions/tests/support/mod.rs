//! A permissions service context for store-level tests: on SQLite (a fresh file) or on
//! the real PostgreSQL (fresh databases, dropped at the end), with the embedded bus.

#![allow(dead_code, clippy::unwrap_used)]

use mindmesh_kit::Service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::testing::{ContextGuard, service_context};
use mindmesh_permissions::Migrator;

/// Which database the test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The service context, and what must live as long as it.
pub struct Env {
    pub ctx: ServiceContext,
    _guard: ContextGuard,
}

pub async fn env(backend: Backend) -> Env {
    let (ctx, guard) =
        service_context::<Migrator>(Service::Permissions, matches!(backend, Backend::Postgres))
            .await
            .unwrap();
    Env { ctx, _guard: guard }
}

/// Runs each named `async fn(Backend)` as two tests: `sqlite::…` and `postgres::…`.
#[allow(unused_macros)]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}
