//! The embedded durable event log: a SQLite file, for the single-process mode.
//!
//! Tables: `bus_events` (the log, de-duplicated by event id), `bus_consumers` (how far
//! each consumer has been handed events), `bus_pending` (handed out, not yet
//! acknowledged, with the time of their next redelivery) and `bus_dead_letters`.
//! Everything survives a restart; an event handed to a consumer that vanished before
//! acknowledging it is handed out again once its `ack_wait` has passed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tokio::sync::Notify;

use super::{Acker, BusMessage, Delivery, EventBus, Published, Subscription, check_token};
use crate::error::{Error, Result};
use crate::ids::EventId;

/// The embedded bus. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    ack_wait: Duration,
    published: Notify,
}

impl EmbeddedBus {
    /// Opens (creating and migrating) the log at the SQLite `url`.
    pub async fn open(url: &str, ack_wait: Duration) -> Result<Self> {
        let db = crate::db::open_and_migrate::<schema::LogMigrator>(url, 1).await?;
        Ok(EmbeddedBus {
            inner: Arc::new(Inner {
                db,
                ack_wait,
                published: Notify::new(),
            }),
        })
    }

    /// Closes the database (the next `open` of the same file resumes from it).
    pub async fn close(self) -> Result<()> {
        self.inner.db.clone().close().await?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait::async_trait]
impl EventBus for EmbeddedBus {
    async fn publish(&self, message: &BusMessage) -> Result<Published> {
        check_token("event_type", &message.event_type)?;
        let result = self
            .inner
            .db
            .execute(
                &Query::insert()
                    .into_table("bus_events")
                    .columns([
                        "event_id",
                        "event_type",
                        "payload",
                        "traceparent",
                        "created_ms",
                    ])
                    .values_panic([
                        message.id.to_string().into(),
                        message.event_type.clone().into(),
                        message.payload.to_vec().into(),
                        message.traceparent.clone().into(),
                        now_ms().into(),
                    ])
                    .on_conflict(OnConflict::column("event_id").do_nothing().to_owned())
                    .to_owned(),
            )
            .await?;
        let duplicate = result.rows_affected() == 0;
        if !duplicate {
            self.inner.published.notify_waiters();
        }
        Ok(Published { duplicate })
    }

    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>> {
        check_token("consumer", consumer)?;
        self.inner
            .db
            .execute(
                &Query::insert()
                    .into_table("bus_consumers")
                    .columns(["name", "delivered_seq"])
                    .values_panic([consumer.into(), 0i64.into()])
                    .on_conflict(OnConflict::column("name").do_nothing().to_owned())
                    .to_owned(),
            )
            .await?;
        Ok(Box::new(EmbeddedSubscription {
            inner: self.inner.clone(),
            consumer: consumer.to_owned(),
        }))
    }

    async fn dead_letter(&self, consumer: &str, message: &BusMessage, reason: &str) -> Result<()> {
        self.inner
            .db
            .execute(
                &Query::insert()
                    .into_table("bus_dead_letters")
                    .columns([
                        "consumer",
                        "event_id",
                        "event_type",
                        "payload",
                        "traceparent",
                        "reason",
                        "created_ms",
                    ])
                    .values_panic([
                        consumer.into(),
                        message.id.to_string().into(),
                        message.event_type.clone().into(),
                        message.payload.to_vec().into(),
                        message.traceparent.clone().into(),
                        reason.into(),
                        now_ms().into(),
                    ])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn dead_letters(&self, consumer: &str) -> Result<Vec<BusMessage>> {
        let rows = self
            .inner
            .db
            .query_all(
                &Query::select()
                    .columns(["event_id", "event_type", "payload", "traceparent"])
                    .from("bus_dead_letters")
                    .and_where(Expr::col("consumer").eq(consumer))
                    .order_by("id", Order::Asc)
                    .to_owned(),
            )
            .await?;
        rows.iter().map(row_to_message).collect()
    }
}

fn row_to_message(row: &sea_orm::QueryResult) -> Result<BusMessage> {
    let id: String = row.try_get("", "event_id")?;
    let id = id
        .parse::<EventId>()
        .map_err(|_| Error::Internal("embedded bus holds a malformed event id".into()))?;
    let payload: Vec<u8> = row.try_get("", "payload")?;
    Ok(BusMessage {
        id,
        event_type: row.try_get("", "event_type")?,
        payload: Bytes::from(payload),
        traceparent: row.try_get("", "traceparent")?,
    })
}

struct EmbeddedSubscription {
    inner: Arc<Inner>,
    consumer: String,
}

impl EmbeddedSubscription {
    /// Hands out one event: first a pending one whose redelivery time has come, then
    /// the next new one. The whole step is one transaction.
    async fn try_fetch(&self) -> Result<Option<Delivery>> {
        let txn = self.inner.db.begin().await?;
        // Write first: the transaction takes SQLite's write lock before it reads, so two
        // handles on one log (two processes) wait for each other (busy timeout) instead
        // of failing with "database is locked" when a reader tries to become a writer.
        txn.execute(
            &Query::update()
                .table("bus_consumers")
                .value("delivered_seq", Expr::col("delivered_seq"))
                .and_where(Expr::col("name").eq(self.consumer.as_str()))
                .to_owned(),
        )
        .await?;
        let now = now_ms();
        let ack_wait = i64::try_from(self.inner.ack_wait.as_millis()).unwrap_or(i64::MAX);
        let due = txn
            .query_one(
                &Query::select()
                    .columns(["seq", "attempts"])
                    .from("bus_pending")
                    .and_where(Expr::col("consumer").eq(self.consumer.as_str()))
                    .and_where(Expr::col("redeliver_ms").lte(now))
                    .order_by("seq", Order::Asc)
                    .limit(1)
                    .to_owned(),
            )
            .await?;
        let (seq, attempt) = if let Some(row) = due {
            let seq: i64 = row.try_get("", "seq")?;
            let attempts: i64 = row.try_get("", "attempts")?;
            txn.execute(
                &Query::update()
                    .table("bus_pending")
                    .value("attempts", attempts + 1)
                    .value("redeliver_ms", now + ack_wait)
                    .and_where(Expr::col("consumer").eq(self.consumer.as_str()))
                    .and_where(Expr::col("seq").eq(seq))
                    .to_owned(),
            )
            .await?;
            (seq, attempts + 1)
        } else {
            let cursor = txn
                .query_one(
                    &Query::select()
                        .column("delivered_seq")
                        .from("bus_consumers")
                        .and_where(Expr::col("name").eq(self.consumer.as_str()))
                        .to_owned(),
                )
                .await?
                .ok_or_else(|| Error::Internal("embedded consumer row vanished".into()))?;
            let delivered: i64 = cursor.try_get("", "delivered_seq")?;
            let next = txn
                .query_one(
                    &Query::select()
                        .column("seq")
                        .from("bus_events")
                        .and_where(Expr::col("seq").gt(delivered))
                        .order_by("seq", Order::Asc)
                        .limit(1)
                        .to_owned(),
                )
                .await?;
            let Some(next) = next else {
                txn.commit().await?;
                return Ok(None);
            };
            let seq: i64 = next.try_get("", "seq")?;
            txn.execute(
                &Query::insert()
                    .into_table("bus_pending")
                    .columns(["consumer", "seq", "attempts", "redeliver_ms"])
                    .values_panic([
                        self.consumer.as_str().into(),
                        seq.into(),
                        1i64.into(),
                        (now + ack_wait).into(),
                    ])
                    .to_owned(),
            )
            .await?;
            txn.execute(
                &Query::update()
                    .table("bus_consumers")
                    .value("delivered_seq", seq)
                    .and_where(Expr::col("name").eq(self.consumer.as_str()))
                    .to_owned(),
            )
            .await?;
            (seq, 1)
        };
        let row = txn
            .query_one(
                &Query::select()
                    .columns(["event_id", "event_type", "payload", "traceparent"])
                    .from("bus_events")
                    .and_where(Expr::col("seq").eq(seq))
                    .to_owned(),
            )
            .await?
            .ok_or_else(|| Error::Internal("embedded bus lost an event".into()))?;
        let message = row_to_message(&row)?;
        txn.commit().await?;
        Ok(Some(Delivery::new(
            message,
            u32::try_from(attempt).unwrap_or(u32::MAX),
            Box::new(EmbeddedAcker {
                inner: self.inner.clone(),
                consumer: self.consumer.clone(),
                seq,
            }),
        )))
    }
}

#[async_trait::async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a publish in between is not missed.
            let notified = self.inner.published.notified();
            if let Some(delivery) = self.try_fetch().await? {
                return Ok(Some(delivery));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Wake for new events at once, and now and then for due redeliveries.
            let nap = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }
}

struct EmbeddedAcker {
    inner: Arc<Inner>,
    consumer: String,
    seq: i64,
}

#[async_trait::async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<()> {
        self.inner
            .db
            .execute(
                &Query::delete()
                    .from_table("bus_pending")
                    .and_where(Expr::col("consumer").eq(self.consumer.as_str()))
                    .and_where(Expr::col("seq").eq(self.seq))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<()> {
        let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        self.inner
            .db
            .execute(
                &Query::update()
                    .table("bus_pending")
                    .value("redeliver_ms", now_ms() + delay)
                    .and_where(Expr::col("consumer").eq(self.consumer.as_str()))
                    .and_where(Expr::col("seq").eq(self.seq))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

mod schema {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    /// Schema of the embedded log's own SQLite file.
    pub(super) struct LogMigrator;

    #[async_trait::async_trait]
    impl MigratorTrait for LogMigrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(LogTables)]
        }
    }

    struct LogTables;

    impl MigrationName for LogTables {
        fn name(&self) -> &str {
            "m20261129_000001_embedded_bus_log"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for LogTables {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("bus_events")
                        .if_not_exists()
                        .col(big_pk_auto("seq"))
                        .col(string_uniq("event_id"))
                        .col(string("event_type"))
                        .col(blob("payload"))
                        .col(string_null("traceparent"))
                        .col(big_integer("created_ms"))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("bus_consumers")
                        .if_not_exists()
                        .col(string("name").primary_key())
                        .col(big_integer("delivered_seq"))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("bus_pending")
                        .if_not_exists()
                        .col(string("consumer"))
                        .col(big_integer("seq"))
                        .col(big_integer("attempts"))
                        .col(big_integer("redeliver_ms"))
                        .primary_key(Index::create().col("consumer").col("seq"))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("bus_dead_letters")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(string("consumer"))
                        .col(string("event_id"))
                        .col(string("event_type"))
                        .col(blob("payload"))
                        .col(string_null("traceparent"))
                        .col(text("reason"))
                        .col(big_integer("created_ms"))
                        .to_owned(),
                )
                .await?;
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for table in [
                "bus_dead_letters",
                "bus_pending",
                "bus_consumers",
                "bus_events",
            ] {
                manager
                    .drop_table(Table::drop().table(table).if_exists().to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}
