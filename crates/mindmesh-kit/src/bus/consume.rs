//! Running a consumer: deliver, handle, ack after the handler committed; retry with
//! backoff on failure; after `max_deliver` attempts, or at once for an event that cannot
//! be decoded or that its handler finds malformed ([`Error::MalformedEvent`]), move it
//! to the dead-letter subject (counted, logged, never silently lost).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mindmesh_proto::mindmesh::events::v1::Envelope;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Delivery, EventBus};
use crate::error::{Error, Result};

/// Applies events. Implementations claim the event id in their inbox
/// ([`crate::inbox::claim`]) in the transaction that applies the effect, and ignore
/// event types they do not care about.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event. An error means "not applied": the event is delivered again,
    /// unless it is [`Error::MalformedEvent`] (it goes to the dead letters at once).
    async fn handle(&self, envelope: &Envelope) -> Result<()>;
}

/// Counters of one consumer, for metrics and tests.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Deliveries received.
    pub delivered: AtomicU64,
    /// Deliveries handled and acknowledged.
    pub handled: AtomicU64,
    /// Deliveries that failed and were scheduled for redelivery.
    pub retried: AtomicU64,
    /// Events moved to the dead-letter subject.
    pub dead_lettered: AtomicU64,
}

/// Delay before redelivering an event whose handler failed on `attempt`:
/// 100 ms doubling, capped at 30 s.
pub fn retry_delay(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(9);
    Duration::from_millis(100u64 << exp).min(Duration::from_secs(30))
}

/// Consumes `consumer` from `bus` until `shutdown`, feeding `handler`.
pub async fn run_consumer(
    bus: Arc<dyn EventBus>,
    consumer: String,
    handler: Arc<dyn EventHandler>,
    max_deliver: u32,
    stats: Arc<ConsumerStats>,
    shutdown: CancellationToken,
) {
    let mut subscription = loop {
        match bus.subscribe(&consumer).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(consumer = %consumer, error = %e, "cannot subscribe, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = subscription.next(Duration::from_secs(1)) => next,
        };
        match next {
            Ok(Some(delivery)) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                if let Err(e) =
                    process(&*bus, &consumer, &*handler, max_deliver, &stats, delivery).await
                {
                    tracing::warn!(consumer = %consumer, error = %e, "could not settle a delivery; it will be redelivered");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(consumer = %consumer, error = %e, "consumer error, resubscribing");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                if let Ok(s) = bus.subscribe(&consumer).await {
                    subscription = s;
                }
            }
        }
    }
}

async fn process(
    bus: &dyn EventBus,
    consumer: &str,
    handler: &dyn EventHandler,
    max_deliver: u32,
    stats: &ConsumerStats,
    delivery: Delivery,
) -> Result<()> {
    let envelope = match crate::events::decode(&delivery.message) {
        Ok(envelope) => envelope,
        Err(e) => {
            return dead_letter(bus, consumer, stats, delivery, &e.to_string()).await;
        }
    };
    let span = tracing::info_span!(
        "handle_event",
        consumer = %consumer,
        event_id = %envelope.id,
        event_type = %envelope.r#type,
        attempt = delivery.attempt,
    );
    crate::telemetry::set_parent_from_traceparent(&span, &envelope.traceparent);
    match handler.handle(&envelope).instrument(span).await {
        Ok(()) => {
            delivery.ack().await?;
            stats.handled.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e @ Error::MalformedEvent(_)) => {
            dead_letter(bus, consumer, stats, delivery, &e.to_string()).await
        }
        Err(e) if delivery.attempt >= max_deliver => {
            let reason = format!("failed {} times, last error: {e}", delivery.attempt);
            dead_letter(bus, consumer, stats, delivery, &reason).await
        }
        Err(e) => {
            tracing::warn!(consumer = %consumer, event_id = %envelope.id, attempt = delivery.attempt, error = %e, "event handler failed, will retry");
            stats.retried.fetch_add(1, Ordering::Relaxed);
            let delay = retry_delay(delivery.attempt);
            delivery.nak(delay).await
        }
    }
}

async fn dead_letter(
    bus: &dyn EventBus,
    consumer: &str,
    stats: &ConsumerStats,
    delivery: Delivery,
    reason: &str,
) -> Result<()> {
    tracing::error!(consumer = %consumer, event_id = %delivery.message.id, event_type = %delivery.message.event_type, reason = %reason, "event moved to dead letters");
    bus.dead_letter(consumer, &delivery.message, reason).await?;
    stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
    delivery.ack().await
}

#[cfg(test)]
mod tests {
    use super::retry_delay;
    use std::time::Duration;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(2), Duration::from_millis(200));
        assert_eq!(retry_delay(50), Duration::from_secs(30));
    }
}
