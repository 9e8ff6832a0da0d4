//! Transactional outbox: an event is written in the same transaction as the change that
//! caused it, and a relay publishes it afterwards. A crash between commit and publish
//! only delays the event; a crash between publish and delete republishes it with the
//! same id, which the bus de-duplicates.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mindmesh_proto::mindmesh::events::v1::Envelope;
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusMessage, EventBus};
use crate::error::{Error, Result};
use crate::ids::EventId;

/// How many outbox rows one relay pass publishes at most.
const BATCH: u64 = 256;

/// Writes `envelope` to the outbox of the database `conn` belongs to. Call it with the
/// transaction that makes the change the event reports.
pub async fn enqueue<C: ConnectionTrait>(conn: &C, envelope: &Envelope) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table("outbox")
            .columns(["event_id", "subject", "payload", "created_at"])
            .values_panic([
                envelope.id.clone().into(),
                envelope.r#type.clone().into(),
                envelope.encode_to_vec().into(),
                chrono::Utc::now().into(),
            ])
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Publishes outbox rows of one service database.
#[derive(Clone)]
pub struct OutboxRelay {
    db: DatabaseConnection,
    bus: Arc<dyn EventBus>,
    wake: Arc<Notify>,
    interval: Duration,
}

impl OutboxRelay {
    /// A relay from `db`'s outbox to `bus`, polling every `interval` when not woken.
    pub fn new(db: DatabaseConnection, bus: Arc<dyn EventBus>, interval: Duration) -> Self {
        OutboxRelay {
            db,
            bus,
            wake: Arc::new(Notify::new()),
            interval,
        }
    }

    /// Call after committing a transaction that enqueued events, to publish them now
    /// rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes everything in the outbox, oldest first; returns how many were published.
    /// Stops at the first publish that fails, leaving it and the rest for the next pass.
    pub async fn flush(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let rows = self
                .db
                .query_all(
                    &Query::select()
                        .columns(["seq", "event_id", "subject", "payload"])
                        .from("outbox")
                        .order_by("seq", Order::Asc)
                        .limit(BATCH)
                        .to_owned(),
                )
                .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            for row in &rows {
                let seq: i64 = row.try_get("", "seq")?;
                let id: String = row.try_get("", "event_id")?;
                let payload: Vec<u8> = row.try_get("", "payload")?;
                let traceparent = Envelope::decode(payload.as_slice())
                    .ok()
                    .map(|e| e.traceparent)
                    .filter(|t| !t.is_empty());
                let message = BusMessage {
                    id: id
                        .parse::<EventId>()
                        .map_err(|_| Error::Internal("outbox holds a malformed event id".into()))?,
                    event_type: row.try_get("", "subject")?,
                    payload: Bytes::from(payload),
                    traceparent,
                };
                self.bus.publish(&message).await?;
                self.db
                    .execute(
                        &Query::delete()
                            .from_table("outbox")
                            .and_where(Expr::col("seq").eq(seq))
                            .to_owned(),
                    )
                    .await?;
                total += 1;
            }
        }
    }

    /// Runs until `shutdown`, publishing when woken and every `interval`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "outbox relay pass failed, will retry");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        // One last pass so events of calls that finished during shutdown go out.
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "final outbox pass failed; events stay queued");
        }
    }
}
