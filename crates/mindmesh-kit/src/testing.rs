//! Test support: each test gets its own PostgreSQL databases and its own NATS streams,
//! removed again when the guard drops (also when the test panics), because CI and later
//! sessions share these servers.
//!
//! The servers default to 127.0.0.1; `MINDMESH_TEST_POSTGRES` (a URL without database)
//! and `MINDMESH_TEST_NATS` override them. Nothing here sets environment variables.

use std::time::Duration;

use crate::config::{BusConfig, BusKind};
use crate::error::{Error, Result};

/// Server URL of the test PostgreSQL (no database part).
pub fn postgres_server() -> String {
    std::env::var("MINDMESH_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// URL of the test NATS server.
pub fn nats_server() -> String {
    std::env::var("MINDMESH_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn unique_token() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..12].to_owned()
}

/// A family of PostgreSQL databases named `mmt_<random>_…`, dropped on drop.
#[derive(Debug)]
pub struct TestPostgres {
    prefix: String,
}

impl TestPostgres {
    /// A fresh prefix; databases are created lazily by whoever connects (see
    /// [`crate::db::open_and_migrate`]).
    pub fn new() -> Self {
        TestPostgres {
            prefix: format!("mmt_{}", unique_token()),
        }
    }

    /// URL of the database `<prefix>_<name>`. TLS is off: the test server is on loopback.
    pub fn url(&self, name: &str) -> String {
        format!(
            "{}/{}_{name}?sslmode=disable",
            postgres_server(),
            self.prefix
        )
    }

    /// A `database.url` template giving every service its own database.
    pub fn template(&self) -> String {
        self.url("{service}")
    }

    /// Drops every database of this family.
    pub async fn drop_all(&self) -> Result<()> {
        drop_databases(&self.prefix).await
    }
}

async fn drop_databases(prefix: &str) -> Result<()> {
    let admin_url = format!("{}/postgres?sslmode=disable", postgres_server());
    let admin = crate::db::connect(&admin_url, 1).await?;
    use sea_orm::ConnectionTrait;
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{}\\_%'",
                prefix
            ),
        ))
        .await?;
    for row in rows {
        let name: String = row.try_get("", "datname")?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    admin.close().await?;
    Ok(())
}

impl Default for TestPostgres {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        run_cleanup("postgres databases", move || async move {
            drop_databases(&prefix).await
        });
    }
}

/// A NATS stream pair (events and dead letters) of its own, deleted on drop.
#[derive(Debug)]
pub struct TestNats {
    /// Bus settings pointing at this test's streams.
    pub config: BusConfig,
}

impl TestNats {
    /// Fresh stream names and subject root; `ack_wait` short so redelivery tests are quick.
    pub fn new(ack_wait: Duration) -> Self {
        let token = unique_token();
        TestNats {
            config: BusConfig {
                kind: BusKind::Nats,
                nats_url: nats_server(),
                stream: format!("MMT_{token}"),
                subject_root: format!("mmt_{token}"),
                ack_wait_ms: u64::try_from(ack_wait.as_millis()).unwrap_or(u64::MAX),
                ..BusConfig::default()
            },
        }
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let config = self.config.clone();
        run_cleanup("nats streams", move || async move {
            let client = async_nats::connect(config.nats_url.as_str())
                .await
                .map_err(|e| Error::Bus(e.to_string()))?;
            let js = async_nats::jetstream::new(client);
            for name in [config.stream.clone(), config.dead_letter_stream()] {
                // A stream the test never created is fine.
                let _ = js.delete_stream(&name).await;
            }
            Ok(())
        });
    }
}

/// Runs async cleanup from `Drop`, on a thread with its own runtime (the test's runtime
/// may be shutting down or may be the current thread).
fn run_cleanup<F, Fut>(what: &'static str, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        runtime.block_on(f())
    });
    match handle.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("test cleanup of {what} failed: {e}"),
        Err(_) => eprintln!("test cleanup of {what} panicked"),
    }
}

/// A service's context on a throwaway database of `backend` (a fresh SQLite file, or
/// fresh PostgreSQL databases) with the embedded bus and generated keys. Keep the
/// returned guard alive as long as the context.
pub async fn service_context<M: sea_orm_migration::MigratorTrait>(
    service: crate::Service,
    backend: Backend,
) -> Result<(crate::context::ServiceContext, ContextGuard)> {
    use std::sync::Arc;
    let dir = tempfile_dir()?;
    let mut config = crate::config::Config {
        data_dir: dir.path().join("data"),
        ..crate::config::Config::default()
    };
    let pg = backend.is_postgres().then(TestPostgres::new);
    if let Some(pg) = &pg {
        config.database.url = Some(pg.template());
    }
    let keys = crate::keyfiles::KeyMaterial::load(&config, crate::config::Mode::Embedded)?;
    let bus = crate::bus::embedded::EmbeddedBus::open(
        &crate::db::sqlite_url(&dir.path().join("events.db")),
        Duration::from_secs(30),
    )
    .await?;
    let shared = crate::context::Shared::new(Arc::new(config), Arc::new(bus), Arc::new(keys));
    let ctx = crate::context::ServiceContext::open::<M>(service, &shared).await?;
    Ok((ctx, ContextGuard { dir, _pg: pg }))
}

/// Keeps a test context's files and databases until dropped.
#[derive(Debug)]
pub struct ContextGuard {
    /// The directory holding the SQLite files and keys.
    pub dir: TempDir,
    _pg: Option<TestPostgres>,
}

/// A temporary directory, removed on drop.
pub type TempDir = tempfile::TempDir;

fn tempfile_dir() -> Result<TempDir> {
    tempfile::tempdir()
        .map_err(|e| Error::Internal(format!("cannot create a temporary directory: {e}")))
}

/// Which database a store-level test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// Fresh databases on the tests' PostgreSQL, dropped at the end.
    Postgres,
}

impl Backend {
    /// Whether this is PostgreSQL.
    pub fn is_postgres(self) -> bool {
        self == Backend::Postgres
    }
}

/// Runs each named `async fn(Backend)` of the calling module as two tests,
/// `sqlite::…` and `postgres::…` (the module imports [`Backend`]).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::testing::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::testing::Backend::Postgres).await })*
        }
    };
}
