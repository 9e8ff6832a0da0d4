//! NATS JetStream implementation of the bus (distributed mode).

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures::StreamExt;

use super::{Acker, BusMessage, Delivery, EventBus, Published, Subscription, check_token};
use crate::config::BusConfig;
use crate::error::{Error, Result};
use crate::ids::EventId;

/// Header carrying the W3C trace context of the operation that caused an event.
const TRACEPARENT: &str = "traceparent";
/// JetStream's de-duplication header.
const MSG_ID: &str = "Nats-Msg-Id";
/// Header carrying the reason an event was dead-lettered.
const DEAD_LETTER_REASON: &str = "Mindmesh-Dead-Letter-Reason";

/// The JetStream bus.
#[derive(Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    config: BusConfig,
}

fn bus_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Bus(format!("{context}: {e}"))
}

impl NatsBus {
    /// Connects and makes sure the event and dead-letter streams exist.
    pub async fn connect(config: &BusConfig) -> Result<Self> {
        let mut options = async_nats::ConnectOptions::new()
            .name("mindmesh")
            .connection_timeout(Duration::from_secs(5));
        if let Some(ca) = &config.tls_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if let (Some(user), Some(password)) = (&config.user, config.password()?) {
            options = options.user_and_password(user.clone(), password);
        }
        // The error names the server, never the credentials.
        let client = options
            .connect(config.nats_url.as_str())
            .await
            .map_err(|e| {
                Error::Unavailable(format!("cannot reach NATS at {}: {e}", config.nats_url))
            })?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.events.>", config.subject_root)],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| bus_err("cannot create event stream", e))?;
        js.get_or_create_stream(stream::Config {
            name: config.dead_letter_stream(),
            subjects: vec![format!("{}.deadletter.>", config.subject_root)],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| bus_err("cannot create dead-letter stream", e))?;
        Ok(NatsBus {
            js,
            config: config.clone(),
        })
    }

    /// Deletes both streams (tests clean up their own streams with it).
    pub async fn delete_streams(&self) -> Result<()> {
        for name in [self.config.stream.clone(), self.config.dead_letter_stream()] {
            self.js
                .delete_stream(&name)
                .await
                .map_err(|e| bus_err("cannot delete stream", e))?;
        }
        Ok(())
    }

    fn publish_message(message: &BusMessage) -> PublishMessage {
        let mut publish = PublishMessage::build()
            .payload(message.payload.clone())
            .message_id(message.id.to_string());
        if let Some(tp) = &message.traceparent {
            publish = publish.header(TRACEPARENT, tp.as_str());
        }
        publish
    }
}

fn message_from_nats(msg: &async_nats::Message) -> Result<BusMessage> {
    let headers = msg
        .headers
        .as_ref()
        .ok_or_else(|| Error::Bus("event without headers".into()))?;
    let id = headers
        .get(MSG_ID)
        .and_then(|v| v.as_str().parse::<EventId>().ok())
        .ok_or_else(|| Error::Bus("event without a valid Nats-Msg-Id".into()))?;
    let event_type = msg
        .subject
        .as_str()
        .split_once(".events.")
        .map(|(_, t)| t.to_owned())
        .or_else(|| {
            headers
                .get("Mindmesh-Event-Type")
                .map(|v| v.as_str().to_owned())
        })
        .ok_or_else(|| Error::Bus("event on an unexpected subject".into()))?;
    Ok(BusMessage {
        id,
        event_type,
        payload: Bytes::copy_from_slice(&msg.payload),
        traceparent: headers.get(TRACEPARENT).map(|v| v.as_str().to_owned()),
    })
}

#[async_trait::async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, message: &BusMessage) -> Result<Published> {
        check_token("event_type", &message.event_type)?;
        let ack = self
            .js
            .send_publish(
                self.config.event_subject(&message.event_type),
                Self::publish_message(message),
            )
            .await
            .map_err(|e| Error::Unavailable(format!("publish failed: {e}")))?
            .await
            .map_err(|e| Error::Unavailable(format!("publish not acknowledged: {e}")))?;
        Ok(Published {
            duplicate: ack.duplicate,
        })
    }

    async fn subscribe(&self, name: &str) -> Result<Box<dyn Subscription>> {
        check_token("consumer", name)?;
        if name.contains('.') {
            return Err(Error::invalid("consumer", "must not contain '.'"));
        }
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| bus_err("cannot open event stream", e))?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                name,
                consumer::pull::Config {
                    durable_name: Some(name.to_owned()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait(),
                    // Dead-lettering is ours (run_consumer), so the server never drops.
                    max_deliver: -1,
                    filter_subject: format!("{}.events.>", self.config.subject_root),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| bus_err("cannot create consumer", e))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(16)
            .messages()
            .await
            .map_err(|e| bus_err("cannot start consumer", e))?;
        Ok(Box::new(NatsSubscription { messages }))
    }

    async fn dead_letter(&self, consumer: &str, message: &BusMessage, reason: &str) -> Result<()> {
        let publish = Self::publish_message(message)
            .header("Mindmesh-Event-Type", message.event_type.as_str())
            .header(DEAD_LETTER_REASON, reason);
        self.js
            .send_publish(self.config.dead_letter_subject(consumer), publish)
            .await
            .map_err(|e| bus_err("dead-letter publish failed", e))?
            .await
            .map_err(|e| bus_err("dead-letter publish not acknowledged", e))?;
        Ok(())
    }

    async fn dead_letters(&self, consumer: &str) -> Result<Vec<BusMessage>> {
        let stream = self
            .js
            .get_stream(self.config.dead_letter_stream())
            .await
            .map_err(|e| bus_err("cannot open dead-letter stream", e))?;
        let reader: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: self.config.dead_letter_subject(consumer),
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| bus_err("cannot read dead letters", e))?;
        let mut batch = reader
            .fetch()
            .max_messages(10_000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| bus_err("cannot read dead letters", e))?;
        let mut out = Vec::new();
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| bus_err("cannot read dead letter", e))?;
            out.push(message_from_nats(&msg.message)?);
        }
        Ok(out)
    }
}

struct NatsSubscription {
    messages: consumer::pull::Stream,
}

#[async_trait::async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>> {
        let next = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(Error::Unavailable("consumer stream ended".into())),
            Ok(Some(Err(e))) => return Err(Error::Unavailable(format!("consumer error: {e}"))),
            Ok(Some(Ok(msg))) => msg,
        };
        let attempt = next
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(1))
            .unwrap_or(1);
        let (msg, acker) = next.split();
        let acker = Box::new(NatsAcker { acker });
        match message_from_nats(&msg) {
            Ok(message) => Ok(Some(Delivery::new(message, attempt, acker))),
            Err(e) => {
                // Not one of ours: acknowledge so it does not loop, and say so.
                tracing::warn!(subject = %msg.subject, error = %e, "dropping malformed bus message");
                acker.ack().await?;
                Ok(None)
            }
        }
    }
}

struct NatsAcker {
    acker: jetstream::message::Acker,
}

#[async_trait::async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<()> {
        self.acker
            .double_ack()
            .await
            .map_err(|e| Error::Unavailable(format!("ack failed: {e}")))
    }

    async fn nak(&self, delay: Duration) -> Result<()> {
        self.acker
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| Error::Unavailable(format!("nak failed: {e}")))
    }
}
