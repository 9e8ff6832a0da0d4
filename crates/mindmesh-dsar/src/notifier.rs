//! The notifier (P13, P15): every `notification.requested` event — retention's
//! inactivity warnings, DSAR updates, marketing — and every breach declared becomes one
//! queued notification per recipient, which a delivery loop renders as a plain-text
//! mail and hands to the [`Mailer`].
//!
//! - **Once.** A notification is queued in the same transaction as the event's inbox
//!   entry, keyed by (event, recipient): a redelivered event queues nothing twice. A
//!   replica takes a notification with a lease before it sends it, and records it sent
//!   after; only a crash between the two sends it again (at-least-once), with the same
//!   `Message-ID`.
//! - **Who.** The account named, or — when none is — the tenant's administrative
//!   contacts (admins who said so in their communication preferences).
//! - **Marketing or administrative.** Administrative mail is always sent. Marketing mail
//!   goes only to people who take it, and carries a signed one-click unsubscribe link
//!   ([`crate::unsubscribe`]) in its `List-Unsubscribe` header and its body.
//! - **Retries.** A failed send is retried with exponential backoff up to
//!   `dsar.notification_max_attempts` tries, then recorded as failed with the reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::tenants::AskPermissions;
use mindmesh_kit::{Error, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::mail::{Mail, Mailer};
use crate::store::notifications::{self as store, NotificationRow};
use crate::unsubscribe::Tokens;

/// Templates the notifier renders; any other is recorded as failed.
pub const TEMPLATES: [&str; 4] = [
    "inactivity_warning",
    "breach_notice",
    "dsar_update",
    "product_news",
];

/// How long a replica holds a notification it is sending.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// Notifications taken per round.
const BATCH: u64 = 50;
/// A round's pause when nothing wakes the loop.
const IDLE: Duration = Duration::from_millis(500);

/// Who the notifier mails: an account's address, asked of the permissions service.
#[async_trait::async_trait]
pub trait Addresses: Send + Sync + 'static {
    /// The email of account `user` of `tenant`, if the account exists.
    async fn email(&self, tenant: TenantId, user: UserId) -> Result<Option<String>>;
}

#[async_trait::async_trait]
impl Addresses for AskPermissions {
    async fn email(&self, tenant: TenantId, user: UserId) -> Result<Option<String>> {
        self.user_email(tenant, user).await
    }
}

/// What a delivery came to.
enum Delivery {
    Sent,
    Suppressed(&'static str),
    Failed(&'static str),
}

/// Queues and delivers notifications.
#[derive(Clone)]
pub struct Notifier {
    db: DatabaseConnection,
    mailer: Arc<dyn Mailer>,
    addresses: Arc<dyn Addresses>,
    tokens: Tokens,
    unsubscribe_base: String,
    breach_key: Arc<SecretKey>,
    max_attempts: u32,
    wake: Arc<Notify>,
}

/// What to tell whom (from a `notification.requested` event, or a breach declared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The account to tell; empty: the tenant's administrative contacts.
    pub user_id: String,
    /// One of [`TEMPLATES`].
    pub template: String,
    /// Administrative mail, which no opt-out stops.
    pub administrative: bool,
    /// The template's parameters (no secrets, no content).
    pub params: BTreeMap<String, String>,
}

/// Where a notification came from, for queueing.
pub struct Origin<'a> {
    /// The event (or, for a breach, `breach:<id>`).
    pub event_id: &'a str,
    /// Its tenant.
    pub tenant: TenantId,
    /// The breach it tells of, if any.
    pub breach_id: Option<&'a str>,
}

impl Notifier {
    /// A notifier over `db`, sending through `mailer` to the `addresses` of accounts,
    /// with unsubscribe links under `unsubscribe_base` sealed by `tokens`.
    pub fn new(
        db: DatabaseConnection,
        mailer: Arc<dyn Mailer>,
        addresses: Arc<dyn Addresses>,
        tokens: Tokens,
        unsubscribe_base: String,
        master: &SecretKey,
        max_attempts: u32,
    ) -> Result<Self> {
        Ok(Notifier {
            db,
            mailer,
            addresses,
            tokens,
            unsubscribe_base: unsubscribe_base.trim_end_matches('/').to_owned(),
            breach_key: Arc::new(crate::breach::description_key(master)?),
            max_attempts,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Starts a delivery round now (after a commit that queued notifications).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Queues `request` from `origin` on `conn` (the transaction of the event's inbox
    /// entry) at `now`; returns how many notifications were queued now (none for an
    /// event seen before).
    pub async fn queue<C: ConnectionTrait>(
        &self,
        conn: &C,
        origin: &Origin<'_>,
        request: &Notice,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let recipients = if request.user_id.is_empty() {
            crate::store::settings::admin_contacts(conn, origin.tenant).await?
        } else {
            let user: UserId = request
                .user_id
                .parse()
                .map_err(|_| Error::MalformedEvent("user_id is not a UUID".into()))?;
            vec![user.to_string()]
        };
        let known = TEMPLATES.contains(&request.template.as_str());
        let mut row = NotificationRow {
            id: String::new(),
            event_id: origin.event_id.to_owned(),
            tenant_id: origin.tenant.to_string(),
            user_id: String::new(),
            template: request.template.clone(),
            administrative: request.administrative,
            params: request.params.clone(),
            breach_id: origin.breach_id.map(str::to_owned),
            status: if known { store::QUEUED } else { store::FAILED }.to_owned(),
            attempts: 0,
            next_attempt_at: now,
            reason: if known {
                String::new()
            } else {
                "unknown template".to_owned()
            },
            created_at: now,
            sent_at: None,
        };
        if recipients.is_empty() {
            tracing::warn!(
                tenant = %origin.tenant,
                template = %request.template,
                "a tenant notice has nobody to go to: no admin is an administrative contact"
            );
            row.id = uuid::Uuid::now_v7().to_string();
            row.status = store::FAILED.to_owned();
            row.reason = "the tenant has no administrative contact".to_owned();
            return Ok(u64::from(store::queue(conn, &row).await?));
        }
        let mut queued = 0;
        for user in recipients {
            row.id = uuid::Uuid::now_v7().to_string();
            row.user_id = user;
            queued += u64::from(store::queue(conn, &row).await?);
        }
        Ok(queued)
    }

    /// Delivers notifications until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.deliver_due(Utc::now()).await {
                tracing::warn!(%error, "a delivery round failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }

    /// One delivery round at `now`: every due notification this replica can take;
    /// returns how many were tried.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> Result<usize> {
        let due = store::due(&self.db, now, BATCH).await?;
        let mut tried = 0;
        for notification in due {
            if !store::claim(&self.db, &notification.id, now, now + LEASE).await? {
                continue; // another replica has it
            }
            tried += 1;
            let attempts = u32::try_from(notification.attempts)
                .unwrap_or(u32::MAX)
                .saturating_add(1);
            let outcome = self.attempt(&notification, now).await;
            let now = Utc::now();
            match outcome {
                Ok(Delivery::Sent) => {
                    store::settle(&self.db, &notification.id, store::SENT, "", now).await?
                }
                Ok(Delivery::Suppressed(why)) => {
                    store::settle(&self.db, &notification.id, store::SUPPRESSED, why, now).await?
                }
                Ok(Delivery::Failed(why)) => {
                    tracing::warn!(notification = %notification.id, reason = why, "a notification cannot be delivered");
                    store::settle(&self.db, &notification.id, store::FAILED, why, now).await?
                }
                Err(error) if attempts >= self.max_attempts => {
                    tracing::warn!(notification = %notification.id, %error, attempts, "a notification is given up");
                    store::settle(
                        &self.db,
                        &notification.id,
                        store::FAILED,
                        &error.to_string(),
                        now,
                    )
                    .await?
                }
                Err(error) => {
                    tracing::info!(notification = %notification.id, %error, attempts, "a notification will be retried");
                    store::retry_at(
                        &self.db,
                        &notification.id,
                        now + backoff(attempts),
                        &error.to_string(),
                    )
                    .await?
                }
            }
        }
        Ok(tried)
    }

    /// Renders and sends `n`, unless its recipient is gone or opted out.
    async fn attempt(&self, n: &NotificationRow, now: DateTime<Utc>) -> Result<Delivery> {
        let tenant: TenantId = n
            .tenant_id
            .parse()
            .map_err(|_| Error::Internal("a notification with a malformed tenant".into()))?;
        let Ok(user) = n.user_id.parse::<UserId>() else {
            return Ok(Delivery::Failed("no recipient"));
        };
        if !n.administrative {
            let preferences = crate::settings::preferences_in(&self.db, tenant, user).await?;
            if !preferences.marketing {
                return Ok(Delivery::Suppressed(
                    "the person does not take marketing mail",
                ));
            }
        }
        let Some(email) = self.addresses.email(tenant, user).await? else {
            return Ok(Delivery::Failed("the account no longer exists"));
        };
        let unsubscribe_url = if n.administrative {
            None
        } else {
            let token = self.tokens.issue(tenant, user, now)?;
            Some(format!(
                "{}/unsubscribe?token={token}",
                self.unsubscribe_base
            ))
        };
        let (subject, mut body) = self.render(tenant, n).await?;
        if let Some(url) = &unsubscribe_url {
            body.push_str(&format!(
                "\n--\nYou receive this because you asked for product news. To stop it, \
                 open this link and confirm (no login needed):\n{url}\n"
            ));
        }
        let mail = Mail {
            id: n.id.clone(),
            to: email,
            subject,
            body,
            unsubscribe_url,
        };
        self.mailer.send(&mail).await?;
        Ok(Delivery::Sent)
    }

    /// The subject and body of `n`.
    async fn render(&self, tenant: TenantId, n: &NotificationRow) -> Result<(String, String)> {
        let param = |name: &str| n.params.get(name).cloned().unwrap_or_default();
        Ok(match n.template.as_str() {
            "inactivity_warning" => (
                "Your organisation's Mindmesh data will be deleted for inactivity".to_owned(),
                format!(
                    "Nobody in your organisation has used Mindmesh for a long time. Unless \
                     someone signs in, all of its data will be deleted in {} days ({}).\n",
                    param("days_before"),
                    param("expires_at")
                ),
            ),
            "dsar_update" => (
                "Your data request".to_owned(),
                format!(
                    "Your data protection request {} is now {}.\n",
                    param("request_id"),
                    param("status")
                ),
            ),
            "product_news" => (
                "Mindmesh product news".to_owned(),
                format!("{}\n", param("headline")),
            ),
            "breach_notice" => self.breach_notice(tenant, n).await?,
            _ => return Err(Error::Internal("unknown template".into())),
        })
    }

    async fn breach_notice(
        &self,
        tenant: TenantId,
        n: &NotificationRow,
    ) -> Result<(String, String)> {
        let id = n
            .breach_id
            .as_deref()
            .ok_or_else(|| Error::Internal("a breach notice without its breach".into()))?;
        let breach = store::breach(&self.db, tenant, id)
            .await?
            .ok_or_else(|| Error::Internal("a breach notice whose breach is gone".into()))?;
        let description = crate::breach::open_description(&self.breach_key, &breach)?;
        let admin = n.params.get("audience").is_some_and(|a| a == "admin");
        let opening = if admin {
            format!(
                "A personal data breach affecting {} people of your organisation was detected \
                 on {}.",
                n.params.get("affected").map_or("some", String::as_str),
                breach.detected_at.to_rfc2822()
            )
        } else {
            format!(
                "A personal data breach that affects your data was detected on {}.",
                breach.detected_at.to_rfc2822()
            )
        };
        Ok((
            "Important: a personal data breach".to_owned(),
            format!(
                "{opening}\n\nWhat happened:\n{description}\n\nReference: {id}\n\nThis is an \
                 administrative notice (GDPR Art. 34); it is sent whatever your mail \
                 preferences.\n"
            ),
        ))
    }
}

/// The pause before try `attempts + 1`: 2, 4, 8 … seconds, at most ten minutes.
fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds(2i64.saturating_pow(attempts.min(30)).min(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        assert_eq!(backoff(1).num_seconds(), 2);
        assert_eq!(backoff(3).num_seconds(), 8);
        assert_eq!(backoff(40).num_seconds(), 600);
    }
}
