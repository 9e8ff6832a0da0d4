//! The event bus: one trait, two implementations.
//!
//! - [`nats::NatsBus`]: NATS JetStream (distributed mode). Stream `MINDMESH_EVENTS`,
//!   subjects `mindmesh.events.<type>`, one durable pull consumer per service, explicit
//!   acks, `Nats-Msg-Id` de-duplication.
//! - [`embedded::EmbeddedBus`]: a durable log in a SQLite file (single-process mode),
//!   with the same semantics: at-least-once, redelivery after `ack_wait`, de-duplication
//!   by event id, consumers that resume where they left off after a restart.
//!
//! Services never publish directly: they write to their outbox in the transaction of
//! the change ([`crate::outbox`]) and a relay publishes. Consumers run through
//! [`consume::run_consumer`], which records nothing itself: handlers claim the event id in
//! their inbox ([`crate::inbox`]) in the transaction that applies the effect.

pub mod consume;
pub mod embedded;
pub mod nats;

use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;
use crate::ids::EventId;

/// One event on the bus, as the bus sees it: an id, a type and opaque bytes (an encoded
/// `mindmesh.events.v1.Envelope`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    /// The event id; publishing the same id twice has one effect.
    pub id: EventId,
    /// The event type, e.g. `account.activity`; the subject's last part.
    pub event_type: String,
    /// The encoded envelope.
    pub payload: Bytes,
    /// W3C traceparent of the operation that caused the event.
    pub traceparent: Option<String>,
}

/// What the bus said about a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// True when the bus already had an event with this id (nothing new was stored).
    pub duplicate: bool,
}

/// A bus that stores events durably and delivers them to named consumers.
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `message` and waits until the bus has stored it.
    async fn publish(&self, message: &BusMessage) -> Result<Published>;

    /// Opens (creating if needed) the durable consumer `consumer`. A consumer sees every
    /// event published on the bus, from the first one it has not yet acknowledged.
    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>>;

    /// Stores `message` on `consumer`'s dead-letter subject with the reason it failed.
    async fn dead_letter(&self, consumer: &str, message: &BusMessage, reason: &str) -> Result<()>;

    /// Messages on `consumer`'s dead-letter subject, oldest first (operators, tests).
    async fn dead_letters(&self, consumer: &str) -> Result<Vec<BusMessage>>;
}

/// An open consumer.
#[async_trait::async_trait]
pub trait Subscription: Send {
    /// The next delivery, or `None` if none arrived within `wait`.
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>>;
}

/// Acknowledges or rejects one delivery.
#[async_trait::async_trait]
pub trait Acker: Send + Sync {
    /// The event was handled; never deliver it to this consumer again.
    async fn ack(&self) -> Result<()>;
    /// The event was not handled; deliver it again after `delay`.
    async fn nak(&self, delay: Duration) -> Result<()>;
}

/// One delivery of one event to one consumer.
pub struct Delivery {
    /// The event.
    pub message: BusMessage,
    /// 1 for the first delivery, 2 for the first redelivery, and so on.
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl Delivery {
    /// A delivery acknowledged through `acker`.
    pub fn new(message: BusMessage, attempt: u32, acker: Box<dyn Acker>) -> Self {
        Delivery {
            message,
            attempt,
            acker,
        }
    }

    /// Acknowledges the delivery (after the effect is committed).
    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(self, delay: Duration) -> Result<()> {
        self.acker.nak(delay).await
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.message.id)
            .field("event_type", &self.message.event_type)
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// A subject token must not contain NATS wildcards, separators' neighbours or spaces.
pub(crate) fn check_token(kind: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !value.starts_with('.')
        && !value.ends_with('.')
        && !value.contains("..");
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::invalid(
            kind,
            "must be letters, digits, '_', '-' or inner '.'",
        ))
    }
}
