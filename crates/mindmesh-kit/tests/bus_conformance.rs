//! One bus conformance suite, run against the embedded log (with a SQLite service
//! database) and against the real NATS JetStream server (with a real PostgreSQL service
//! database). Each test has its own streams and databases, removed when it ends.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mindmesh_kit::bus::consume::{ConsumerStats, EventHandler, run_consumer};
use mindmesh_kit::bus::embedded::EmbeddedBus;
use mindmesh_kit::bus::nats::NatsBus;
use mindmesh_kit::bus::{BusMessage, EventBus};
use mindmesh_kit::events;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::outbox::{self, OutboxRelay};
use mindmesh_kit::testing::{TestNats, TestPostgres};
use mindmesh_kit::{Service, inbox};
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{AccountActivity, Envelope};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Nats,
}

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        mindmesh_kit::migrations::service_common()
    }
}

/// A bus plus a service database with the kit's tables and an `effects` table.
struct Harness {
    bus: Arc<dyn EventBus>,
    db: DatabaseConnection,
    embedded_url: Option<String>,
    _dir: tempfile::TempDir,
    _pg: Option<TestPostgres>,
    _nats: Option<TestNats>,
}

const ACK_WAIT: Duration = Duration::from_millis(1000);

async fn harness(backend: Backend) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Embedded => {
            let bus_url = mindmesh_kit::db::sqlite_url(&dir.path().join("events.db"));
            let bus = EmbeddedBus::open(&bus_url, ACK_WAIT).await.unwrap();
            let db_url = mindmesh_kit::db::sqlite_url(&dir.path().join("svc.db"));
            let db = mindmesh_kit::db::open_and_migrate::<Migrator>(&db_url, 4)
                .await
                .unwrap();
            db.execute_unprepared("CREATE TABLE effects (event_id TEXT NOT NULL)")
                .await
                .unwrap();
            Harness {
                bus: Arc::new(bus),
                db,
                embedded_url: Some(bus_url),
                _dir: dir,
                _pg: None,
                _nats: None,
            }
        }
        Backend::Nats => {
            let nats = TestNats::new(ACK_WAIT);
            let bus = NatsBus::connect(&nats.config).await.unwrap();
            let pg = TestPostgres::new();
            let db = mindmesh_kit::db::open_and_migrate::<Migrator>(&pg.url("svc"), 4)
                .await
                .unwrap();
            db.execute_unprepared("CREATE TABLE effects (event_id TEXT NOT NULL)")
                .await
                .unwrap();
            Harness {
                bus: Arc::new(bus),
                db,
                embedded_url: None,
                _dir: dir,
                _pg: Some(pg),
                _nats: Some(nats),
            }
        }
    }
}

fn activity(user: &str) -> Envelope {
    events::envelope(
        Service::Permissions,
        Some(TenantId::new()),
        Payload::AccountActivity(AccountActivity {
            user_id: user.to_owned(),
            kind: "created".to_owned(),
        }),
    )
}

fn user_of(envelope: &Envelope) -> String {
    match &envelope.payload {
        Some(Payload::AccountActivity(a)) => a.user_id.clone(),
        other => panic!("unexpected payload {other:?}"),
    }
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

/// Applies an event exactly once: inbox claim and effect in one transaction.
async fn apply_once(db: &DatabaseConnection, consumer: &str, envelope: &Envelope) -> bool {
    let txn = db.begin().await.unwrap();
    let fresh = inbox::claim(&txn, consumer, &envelope.id).await.unwrap();
    if fresh {
        txn.execute_raw(sea_orm::Statement::from_string(
            txn.get_database_backend(),
            format!("INSERT INTO effects (event_id) VALUES ('{}')", envelope.id),
        ))
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    fresh
}

const WAIT: Duration = Duration::from_secs(10);

async fn publish_via_outbox_then_consume_and_ack(backend: Backend) {
    let h = harness(backend).await;
    let mut envelope = activity("u1");
    // The trace context travels with the event (a NATS header; a column in the log).
    envelope.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into();
    let txn = h.db.begin().await.unwrap();
    outbox::enqueue(&txn, &envelope).await.unwrap();
    txn.commit().await.unwrap();

    let relay = OutboxRelay::new(h.db.clone(), h.bus.clone(), Duration::from_secs(60));
    assert_eq!(relay.flush().await.unwrap(), 1);
    assert_eq!(
        relay.flush().await.unwrap(),
        0,
        "outbox is empty after the relay pass"
    );

    let mut sub = h.bus.subscribe("conformance").await.unwrap();
    let delivery = sub.next(WAIT).await.unwrap().expect("the event arrives");
    assert_eq!(delivery.attempt, 1);
    assert_eq!(
        delivery.message.traceparent.as_deref(),
        Some(envelope.traceparent.as_str())
    );
    let received = events::decode(&delivery.message).unwrap();
    assert_eq!(received, envelope, "the envelope arrives intact");
    delivery.ack().await.unwrap();
    assert!(
        sub.next(Duration::from_millis(1500))
            .await
            .unwrap()
            .is_none(),
        "acked events are not redelivered"
    );
}

async fn rolled_back_transaction_publishes_nothing(backend: Backend) {
    let h = harness(backend).await;
    let txn = h.db.begin().await.unwrap();
    outbox::enqueue(&txn, &activity("u1")).await.unwrap();
    txn.rollback().await.unwrap();
    let relay = OutboxRelay::new(h.db.clone(), h.bus.clone(), Duration::from_secs(60));
    assert_eq!(relay.flush().await.unwrap(), 0);
    let mut sub = h.bus.subscribe("conformance").await.unwrap();
    assert!(
        sub.next(Duration::from_millis(500))
            .await
            .unwrap()
            .is_none()
    );
}

async fn redelivery_after_consumer_dropped_before_ack(backend: Backend) {
    let h = harness(backend).await;
    let envelope = activity("u1");
    h.bus
        .publish(&events::to_bus_message(&envelope).unwrap())
        .await
        .unwrap();
    {
        let mut sub = h.bus.subscribe("conformance").await.unwrap();
        let first = sub.next(WAIT).await.unwrap().expect("first delivery");
        assert_eq!(first.attempt, 1);
        // Dropped without ack: the consumer "crashed".
    }
    let mut sub = h.bus.subscribe("conformance").await.unwrap();
    let again = sub
        .next(WAIT)
        .await
        .unwrap()
        .expect("redelivered after ack_wait");
    assert_eq!(again.message.id.to_string(), envelope.id);
    assert!(
        again.attempt >= 2,
        "attempt counts redeliveries, got {}",
        again.attempt
    );
    again.ack().await.unwrap();
}

async fn duplicate_publish_with_same_id_has_one_effect(backend: Backend) {
    let h = harness(backend).await;
    let envelope = activity("u1");
    let message = events::to_bus_message(&envelope).unwrap();
    assert!(!h.bus.publish(&message).await.unwrap().duplicate);
    assert!(
        h.bus.publish(&message).await.unwrap().duplicate,
        "the bus recognises the id"
    );

    let mut sub = h.bus.subscribe("conformance").await.unwrap();
    let delivery = sub.next(WAIT).await.unwrap().expect("delivered once");
    assert!(
        apply_once(
            &h.db,
            "conformance",
            &events::decode(&delivery.message).unwrap()
        )
        .await
    );
    // Simulate a crash after commit, before ack: the event comes again.
    delivery.nak(Duration::from_millis(10)).await.unwrap();
    let again = sub
        .next(WAIT)
        .await
        .unwrap()
        .expect("redelivered after nak");
    assert!(
        !apply_once(
            &h.db,
            "conformance",
            &events::decode(&again.message).unwrap()
        )
        .await,
        "inbox stops the second effect"
    );
    again.ack().await.unwrap();
    assert!(
        sub.next(Duration::from_millis(1500))
            .await
            .unwrap()
            .is_none(),
        "no second copy of the duplicate publish"
    );
    assert_eq!(effects(&h.db).await, vec![envelope.id.clone()]);
}

async fn consumer_restart_resumes_where_it_left(backend: Backend) {
    let h = harness(backend).await;
    let published: Vec<Envelope> = (1..=3).map(|i| activity(&format!("u{i}"))).collect();
    for e in &published {
        h.bus
            .publish(&events::to_bus_message(e).unwrap())
            .await
            .unwrap();
    }
    {
        let mut sub = h.bus.subscribe("conformance").await.unwrap();
        let first = sub.next(WAIT).await.unwrap().expect("first event");
        assert_eq!(user_of(&events::decode(&first.message).unwrap()), "u1");
        first.ack().await.unwrap();
    }
    let later = activity("u4");
    h.bus
        .publish(&events::to_bus_message(&later).unwrap())
        .await
        .unwrap();

    let mut sub = h.bus.subscribe("conformance").await.unwrap();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < 3 && tokio::time::Instant::now() < deadline {
        if let Some(d) = sub.next(Duration::from_millis(500)).await.unwrap() {
            let user = user_of(&events::decode(&d.message).unwrap());
            assert_ne!(user, "u1", "an acknowledged event came back");
            seen.insert(user);
            d.ack().await.unwrap();
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from(["u2".to_owned(), "u3".to_owned(), "u4".to_owned()])
    );
    // A second consumer name starts from the beginning: consumers are independent.
    let mut other = h.bus.subscribe("other").await.unwrap();
    let first = other
        .next(WAIT)
        .await
        .unwrap()
        .expect("independent consumer");
    assert_eq!(user_of(&events::decode(&first.message).unwrap()), "u1");
}

struct FailingHandler;

#[async_trait::async_trait]
impl EventHandler for FailingHandler {
    async fn handle(&self, _: &Envelope) -> mindmesh_kit::Result<()> {
        Err(mindmesh_kit::Error::Unavailable(
            "downstream is down".into(),
        ))
    }
}

struct CountingHandler(DatabaseConnection);

#[async_trait::async_trait]
impl EventHandler for CountingHandler {
    async fn handle(&self, envelope: &Envelope) -> mindmesh_kit::Result<()> {
        apply_once(&self.0, "runner", envelope).await;
        Ok(())
    }
}

async fn poison_events_go_to_dead_letters_after_bounded_retries(backend: Backend) {
    let h = harness(backend).await;
    let envelope = activity("u1");
    h.bus
        .publish(&events::to_bus_message(&envelope).unwrap())
        .await
        .unwrap();
    // An undecodable event goes to dead letters at once.
    let garbage = BusMessage {
        id: mindmesh_kit::ids::EventId::new(),
        event_type: "account.activity".into(),
        payload: bytes::Bytes::from_static(b"\x08\x96\x01garbage"),
        traceparent: None,
    };
    h.bus.publish(&garbage).await.unwrap();

    let stats = Arc::new(ConsumerStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        h.bus.clone(),
        "runner".into(),
        Arc::new(FailingHandler),
        3,
        stats.clone(),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.dead_lettered.load(Ordering::Relaxed) < 2 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 2);
    assert_eq!(
        stats.retried.load(Ordering::Relaxed),
        2,
        "two retries, then the third failure dead-letters"
    );
    let dead: BTreeSet<String> = h
        .bus
        .dead_letters("runner")
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(
        dead,
        BTreeSet::from([envelope.id.clone(), garbage.id.to_string()])
    );
}

/// Finds every event malformed, as a handler does with an id that is not a UUID.
struct RefusingHandler;

#[async_trait::async_trait]
impl EventHandler for RefusingHandler {
    async fn handle(&self, _: &Envelope) -> mindmesh_kit::Result<()> {
        Err(mindmesh_kit::Error::MalformedEvent(
            "user_id is not a UUID".into(),
        ))
    }
}

async fn malformed_events_go_to_dead_letters_at_once(backend: Backend) {
    let h = harness(backend).await;
    let envelope = activity("u1");
    h.bus
        .publish(&events::to_bus_message(&envelope).unwrap())
        .await
        .unwrap();
    let stats = Arc::new(ConsumerStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        h.bus.clone(),
        "runner".into(),
        Arc::new(RefusingHandler),
        5,
        stats.clone(),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.dead_lettered.load(Ordering::Relaxed) < 1 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.retried.load(Ordering::Relaxed),
        0,
        "delivering a malformed event again cannot help"
    );
    let dead = h.bus.dead_letters("runner").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id.to_string(), envelope.id);
}

async fn runner_applies_each_event_once(backend: Backend) {
    let h = harness(backend).await;
    let envelopes: Vec<Envelope> = (0..20).map(|i| activity(&format!("u{i}"))).collect();
    for e in &envelopes {
        let m = events::to_bus_message(e).unwrap();
        h.bus.publish(&m).await.unwrap();
        h.bus.publish(&m).await.unwrap();
    }
    let stats = Arc::new(ConsumerStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        h.bus.clone(),
        "runner".into(),
        Arc::new(CountingHandler(h.db.clone())),
        3,
        stats.clone(),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.handled.load(Ordering::Relaxed) < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    let mut expected: Vec<String> = envelopes.iter().map(|e| e.id.clone()).collect();
    expected.sort();
    assert_eq!(effects(&h.db).await, expected);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Embedded).await })*
        }
        mod nats {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Nats).await })*
        }
    };
}

conformance!(
    publish_via_outbox_then_consume_and_ack,
    rolled_back_transaction_publishes_nothing,
    redelivery_after_consumer_dropped_before_ack,
    duplicate_publish_with_same_id_has_one_effect,
    consumer_restart_resumes_where_it_left,
    poison_events_go_to_dead_letters_after_bounded_retries,
    malformed_events_go_to_dead_letters_at_once,
    runner_applies_each_event_once,
);

#[tokio::test]
async fn embedded_log_survives_a_restart() {
    let h = harness(Backend::Embedded).await;
    let url = h.embedded_url.clone().unwrap();
    let envelope = activity("u1");
    h.bus
        .publish(&events::to_bus_message(&envelope).unwrap())
        .await
        .unwrap();
    {
        let mut sub = h.bus.subscribe("conformance").await.unwrap();
        let _unacked = sub
            .next(WAIT)
            .await
            .unwrap()
            .expect("delivered before the restart");
    }
    drop(h.bus);
    let reopened = EmbeddedBus::open(&url, ACK_WAIT).await.unwrap();
    let mut sub = reopened.subscribe("conformance").await.unwrap();
    let again = sub
        .next(WAIT)
        .await
        .unwrap()
        .expect("the unacknowledged event survives the restart");
    assert_eq!(again.message.id.to_string(), envelope.id);
    again.ack().await.unwrap();
}
