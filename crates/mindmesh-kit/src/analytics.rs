//! The usage-analytics exporter (P14): product events — searches run, documents
//! opened, syncs started — batched and posted to the analytics processor configured in
//! `analytics.endpoint`. Off unless that is set.
//!
//! Every event passes the processor gate ([`crate::processing`]) before it is queued:
//! nothing of a tenant that switched analytics off, of a restricted person, or of one
//! who withdrew their consent to analytics, is ever sent. What is sent is pseudonymized:
//! the tenant and the person are keyed HMACs (a key derived from the master key, so
//! the processor cannot link them back), the event is one of a fixed set of kinds, and
//! the time is cut to the minute. No name, email, title, query or content is ever in
//! a payload — the type of [`UsageEvent`] has nowhere to put one.
//!
//! Delivery is best effort: a batch the processor refuses is tried again a few times,
//! then dropped and counted in the log; a full queue drops new events the same way.
//! Analytics never slows or fails the call that produced them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::AnalyticsConfig;
use crate::crypto::{MacKey, SecretKey};
use crate::error::{Error, Result};
use crate::ids::{TenantId, UserId};
use crate::processing::{self, Processor};

/// Events queued at most before new ones are dropped.
const QUEUE: usize = 10_000;
/// Tries of one batch before it is dropped.
const ATTEMPTS: u32 = 3;
const KEY_PURPOSE: &str = "mindmesh/analytics-pseudonyms/v1";

/// What happened, as the processor may know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Usage {
    /// A search was run.
    SearchRun,
    /// A document was opened.
    DocumentOpened,
    /// A sync of an integration was started.
    SyncStarted,
}

/// One event as the processor receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageEvent {
    /// What happened.
    pub kind: Usage,
    /// The tenant's pseudonym (hex HMAC).
    pub tenant: String,
    /// The person's pseudonym (hex HMAC); empty for work no person did.
    pub actor: String,
    /// The minute it happened (RFC 3339, UTC).
    pub minute: String,
}

/// The body of one `POST` to the processor.
#[derive(Debug, Serialize)]
struct Batch<'a> {
    events: &'a [UsageEvent],
}

/// Records product events for the analytics processor; a no-op when none is
/// configured. Cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    db: DatabaseConnection,
    key: MacKey,
    queue: mpsc::Sender<UsageEvent>,
}

impl Analytics {
    /// An exporter that sends nothing.
    pub fn off() -> Self {
        Analytics { inner: None }
    }

    /// The exporter of `config` for the service whose database (and gate) is `db`,
    /// pseudonymizing with a key derived from `master`; its sender runs on `tasks` until
    /// `shutdown` (then sends what is queued). Off when no endpoint is configured.
    pub fn start(
        config: &AnalyticsConfig,
        db: DatabaseConnection,
        master: &SecretKey,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let Some(endpoint) = &config.endpoint else {
            return Ok(Analytics::off());
        };
        let endpoint = url::Url::parse(endpoint)
            .map_err(|e| Error::Config(format!("analytics.endpoint is not a URL: {e}")))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::Config(format!("building the analytics HTTP client failed: {e}"))
            })?;
        let (queue, received) = mpsc::channel(QUEUE);
        tasks.spawn(send_batches(
            client,
            endpoint,
            received,
            config.batch_size.max(1),
            Duration::from_millis(config.flush_interval_ms.max(1)),
            shutdown,
        ));
        Ok(Analytics {
            inner: Some(Arc::new(Inner {
                db,
                key: master.derive(KEY_PURPOSE)?.mac_key(),
                queue,
            })),
        })
    }

    /// Whether events are sent anywhere.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// `user` (none for work no person did) of `tenant` did `kind` at `at`: queued for
    /// the processor if the gate lets it through. Never fails the caller: a gate that
    /// cannot be read drops the event, and says so in the log.
    pub async fn record(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
        kind: Usage,
        at: DateTime<Utc>,
    ) {
        let Some(inner) = &self.inner else {
            return;
        };
        match processing::denial(&inner.db, tenant, Processor::Analytics, user).await {
            Ok(None) => {}
            Ok(Some(denial)) => {
                tracing::debug!(tenant_id = %tenant, %denial, "usage event not sent to analytics");
                return;
            }
            Err(e) => {
                tracing::warn!(tenant_id = %tenant, error = %e, "analytics gate unreadable: usage event dropped");
                return;
            }
        }
        let event = inner.pseudonymize(tenant, user, kind, at);
        if inner.queue.try_send(event).is_err() {
            tracing::warn!("analytics queue full or closed: usage event dropped");
        }
    }
}

impl Inner {
    fn pseudonymize(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
        kind: Usage,
        at: DateTime<Utc>,
    ) -> UsageEvent {
        let tenant_id = tenant.to_string();
        let actor = match user {
            Some(user) => {
                self.key
                    .blind_index(&[b"actor", tenant_id.as_bytes(), user.to_string().as_bytes()])
            }
            None => String::new(),
        };
        let minute = at
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(at)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        UsageEvent {
            kind,
            tenant: self.key.blind_index(&[b"tenant", tenant_id.as_bytes()]),
            actor,
            minute,
        }
    }
}

async fn send_batches(
    client: reqwest::Client,
    endpoint: url::Url,
    mut received: mpsc::Receiver<UsageEvent>,
    batch_size: usize,
    flush_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        let deadline = tokio::time::sleep(flush_interval);
        tokio::pin!(deadline);
        let closing = loop {
            tokio::select! {
                event = received.recv() => match event {
                    Some(event) => {
                        batch.push(event);
                        if batch.len() >= batch_size {
                            break false;
                        }
                    }
                    None => break true,
                },
                _ = &mut deadline => break false,
                _ = shutdown.cancelled() => {
                    while let Ok(event) = received.try_recv() {
                        batch.push(event);
                    }
                    break true;
                }
            }
        };
        for chunk in batch.chunks(batch_size) {
            post(&client, &endpoint, chunk).await;
        }
        batch.clear();
        if closing {
            return;
        }
    }
}

async fn post(client: &reqwest::Client, endpoint: &url::Url, events: &[UsageEvent]) {
    if events.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        match client
            .post(endpoint.clone())
            .json(&Batch { events })
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(status = %response.status(), attempt, "the analytics processor refused a batch")
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), attempt, "the analytics processor could not be reached")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::warn!(
        events = events.len(),
        "usage events dropped after {ATTEMPTS} tries"
    );
}
