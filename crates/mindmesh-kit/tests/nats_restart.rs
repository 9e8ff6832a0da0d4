//! Fault test: the NATS server dies and comes back while events flow through the outbox
//! relay and a consumer. Nothing is lost and nothing is applied twice.
//!
//! The test runs its own `nats-server` (JetStream, a temporary store, a free port) so
//! that it can kill it without touching the shared server other tests use.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mindmesh_kit::bus::EventBus;
use mindmesh_kit::bus::consume::{ConsumerStats, EventHandler, run_consumer};
use mindmesh_kit::bus::nats::NatsBus;
use mindmesh_kit::config::BusConfig;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::outbox::{self, OutboxRelay};
use mindmesh_kit::{Service, events, inbox};
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{AccountActivity, Envelope};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        mindmesh_kit::migrations::service_common()
    }
}

/// A nats-server of this test's own.
struct OwnNats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

fn nats_binary() -> &'static str {
    for candidate in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if std::path::Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("nats-server is not installed (make test installs it)");
}

impl OwnNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = OwnNats {
            child: None,
            port,
            store: tempfile::tempdir().unwrap(),
        };
        nats.spawn();
        nats
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Effects(DatabaseConnection);

#[async_trait::async_trait]
impl EventHandler for Effects {
    async fn handle(&self, envelope: &Envelope) -> mindmesh_kit::Result<()> {
        let txn = self.0.begin().await?;
        if inbox::claim(&txn, "restart", &envelope.id).await? {
            txn.execute_raw(sea_orm::Statement::from_string(
                txn.get_database_backend(),
                format!("INSERT INTO effects (event_id) VALUES ('{}')", envelope.id),
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

async fn enqueue(db: &DatabaseConnection, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let envelope = events::envelope(
            Service::Permissions,
            Some(TenantId::new()),
            Payload::AccountActivity(AccountActivity {
                user_id: format!("u{i}"),
                kind: "created".into(),
            }),
        );
        let txn = db.begin().await.unwrap();
        outbox::enqueue(&txn, &envelope).await.unwrap();
        txn.commit().await.unwrap();
        ids.push(envelope.id);
    }
    ids
}

async fn effects(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT event_id FROM effects ORDER BY event_id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "event_id").unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_loses_nothing_and_applies_nothing_twice() {
    let mut nats = OwnNats::start();
    let config = BusConfig {
        nats_url: format!("nats://127.0.0.1:{}", nats.port),
        ack_wait_ms: 1000,
        ..BusConfig::default()
    };
    let bus: Arc<dyn EventBus> = Arc::new(NatsBus::connect(&config).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let db = mindmesh_kit::db::open_and_migrate::<Migrator>(
        &mindmesh_kit::db::sqlite_url(&dir.path().join("svc.db")),
        1,
    )
    .await
    .unwrap();
    db.execute_unprepared("CREATE TABLE effects (event_id TEXT NOT NULL)")
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let stats = Arc::new(ConsumerStats::default());
    let relay = OutboxRelay::new(db.clone(), bus.clone(), Duration::from_millis(100));
    let relay_task = tokio::spawn(relay.clone().run(shutdown.clone()));
    let consumer = tokio::spawn(run_consumer(
        bus.clone(),
        "restart".into(),
        Arc::new(Effects(db.clone())),
        10,
        stats.clone(),
        shutdown.clone(),
    ));

    let mut expected = enqueue(&db, 20).await;
    relay.wake();
    let wait_for = |n: usize| {
        let db = db.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let seen = effects(&db).await.len();
                if seen >= n || tokio::time::Instant::now() > deadline {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(wait_for(20).await, 20, "events flow before the failure");

    // The server dies; events keep being written, and wait in the outbox.
    nats.kill();
    expected.extend(enqueue(&db, 20).await);
    relay.wake();
    // An observation window, not a wait for readiness: during it nothing may arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        effects(&db).await.len(),
        20,
        "nothing is applied while the bus is down"
    );

    // It comes back with its store: the relay and the consumer carry on.
    nats.spawn();
    expected.extend(enqueue(&db, 10).await);
    relay.wake();
    assert_eq!(
        wait_for(50).await,
        50,
        "every event arrives after the restart"
    );
    // Another observation window: a redelivered duplicate would show up here.
    tokio::time::sleep(Duration::from_millis(500)).await;

    shutdown.cancel();
    relay_task.await.unwrap();
    consumer.await.unwrap();
    expected.sort();
    assert_eq!(
        effects(&db).await,
        expected,
        "each event applied exactly once"
    );
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
}
