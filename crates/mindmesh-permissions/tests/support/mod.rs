//! A permissions service context for store-level tests: on SQLite (a fresh file) or on
//! the real PostgreSQL (fresh databases, dropped at the end), with the embedded bus.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use mindmesh_kit::Service;
use mindmesh_kit::bus::embedded::EmbeddedBus;
use mindmesh_kit::config::Config;
use mindmesh_kit::context::{ServiceContext, Shared};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::testing::TestPostgres;
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
    _dir: tempfile::TempDir,
    _pg: Option<TestPostgres>,
}

pub async fn env(backend: Backend) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let pg = TestPostgres::new();
            config.database.url = Some(pg.template());
            Some(pg)
        }
    };
    let keys = KeyMaterial::load(&config, mindmesh_kit::config::Mode::Embedded).unwrap();
    let bus = EmbeddedBus::open(
        &mindmesh_kit::db::sqlite_url(&dir.path().join("events.db")),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let shared = Shared::new(Arc::new(config), Arc::new(bus), Arc::new(keys));
    let ctx = ServiceContext::open::<Migrator>(Service::Permissions, &shared)
        .await
        .unwrap();
    Env {
        ctx,
        _dir: dir,
        _pg: pg,
    }
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
