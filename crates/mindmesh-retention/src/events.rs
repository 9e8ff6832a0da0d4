//! What retention consumes:
//!
//! - the events that request a cascade — `integration.disconnected`,
//!   `account.deletion_requested` (a user, or the whole tenant) and
//!   `subject.erasure_requested` — open its ledger entry ([`crate::ledger`]);
//! - `deletion.completed`, each service's signed attestation of its part, is checked
//!   against that service's key ([`crate::attesters`]) and recorded; one that does not
//!   verify is recorded as a failure;
//! - `legal_hold.applied`: a service's confirmation of a hold placed or released
//!   ([`crate::holds`]);
//! - `account.activity` moves the inactivity clock; `account.deletion_requested` also
//!   forgets the activity it concerns, and retention attests its own part. Retention
//!   keeps nothing keyed to an email, so it attests a subject erasure with nothing
//!   deleted (an account's activity goes with the account).
//!
//! The ledger is idempotent by itself (an opening or a part recorded twice changes
//! nothing); the activity effects commit with the event id in the inbox.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::holds::{self, HeldScope};
use mindmesh_kit::ids::{CascadeId, EventId, TenantId, UserId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result, Service, events, inbox, outbox};
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{
    AccountDeletionRequested, DeletionCompleted, Envelope, NotificationRequested,
    RetentionPolicySet,
};
use prost::Message;
use sea_orm::TransactionTrait;

use crate::activity::Activity;
use crate::attesters::Attesters;
use crate::holds::LegalHolds;
use crate::ledger::{Cascade, CascadeKind, Ledger, Opening, Part, PartState, Stalled};

/// The retention service's consumer name (its durable consumer on the bus).
pub const CONSUMER: &str = "retention";

/// Applies cascades, attestations and account activity.
pub struct RetentionEvents {
    ctx: ServiceContext,
    activity: Activity,
    ledger: Ledger,
    holds: LegalHolds,
    attesters: Attesters,
    tenants: Tenants,
}

impl RetentionEvents {
    /// A handler writing to `activity` and `ledger`, counting the services' confirmations
    /// of `holds`, checking attestations against `attesters`, recording erased
    /// `tenants`, attesting with `ctx`'s key.
    pub fn new(
        ctx: ServiceContext,
        activity: Activity,
        ledger: Ledger,
        holds: LegalHolds,
        attesters: Attesters,
        tenants: Tenants,
    ) -> Self {
        RetentionEvents {
            ctx,
            activity,
            ledger,
            holds,
            attesters,
            tenants,
        }
    }

    /// Opens the cascade `envelope` requests, if it requests one.
    async fn open(&self, envelope: &Envelope, tenant: TenantId) -> Result<()> {
        let requested_at = occurred_at(envelope)?;
        let (cascade, kind, scope_id, subject) = match &envelope.payload {
            Some(Payload::IntegrationDisconnected(d)) => (
                &d.cascade_id,
                CascadeKind::Integration,
                d.integration_id.clone(),
                None,
            ),
            Some(Payload::AccountDeletionRequested(d)) if d.user_id.is_empty() => {
                (&d.cascade_id, CascadeKind::Tenant, tenant.to_string(), None)
            }
            Some(Payload::AccountDeletionRequested(d)) => (
                &d.cascade_id,
                CascadeKind::User,
                user_id(&d.user_id)?.to_string(),
                Some(self.ctx.event_seal.open_email(tenant, &d.sealed_email)?),
            ),
            Some(Payload::SubjectErasureRequested(e)) => (
                &e.cascade_id,
                CascadeKind::Subject,
                e.request_id.clone(),
                Some(self.ctx.event_seal.open_email(tenant, &e.sealed_email)?),
            ),
            _ => return Ok(()),
        };
        let opening = Opening {
            cascade: CascadeId::parse_event_field("cascade_id", cascade)?,
            tenant,
            kind,
            scope_id,
            subject,
            requested_at,
        };
        if let Some(done) = self
            .ledger
            .open(&opening, &envelope.encode_to_vec())
            .await?
        {
            completed(&done);
        }
        Ok(())
    }

    /// Records a service's attestation of its part.
    async fn record(
        &self,
        envelope: &Envelope,
        tenant: TenantId,
        c: &DeletionCompleted,
    ) -> Result<()> {
        let cascade = CascadeId::parse_event_field("cascade_id", &c.cascade_id)?;
        let service = Service::from_proto(c.service)
            .ok_or_else(|| Error::MalformedEvent("deletion.completed without a service".into()))?;
        // As stored and signed in receipts: to the microsecond.
        let reported_at = mindmesh_kit::db::micros(occurred_at(envelope)?);
        let verified = mindmesh_kit::events::verify_completion(self.attesters.key(service), c);
        let (state, reason) = if !verified {
            tracing::warn!(cascade_id = %cascade, service = %service, "deletion attestation does not verify");
            (
                PartState::Failed,
                format!("the attestation does not verify against the {service} service's key"),
            )
        } else {
            match CascadeState::try_from(c.state) {
                Ok(CascadeState::Done) => (PartState::Done, String::new()),
                // The ground is kept as it came: a legal hold's names the hold.
                Ok(CascadeState::RetainedWithGround) if !c.ground.is_empty() => {
                    (PartState::Retained, c.ground.clone())
                }
                Ok(CascadeState::RetainedWithGround) => (
                    PartState::Failed,
                    "the service retains data without naming a ground".into(),
                ),
                Ok(CascadeState::Failed) => {
                    (PartState::Failed, "the service reported a failure".into())
                }
                // Progress, not an outcome: the part stays as it is.
                Ok(CascadeState::Pending) | Ok(CascadeState::Running) => return Ok(()),
                Ok(CascadeState::Unspecified) | Err(_) => (
                    PartState::Failed,
                    format!("the service reported an unknown state ({})", c.state),
                ),
            }
        };
        let part = Part {
            service,
            state,
            counts: c.counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            destroyed_key_ids: c.destroyed_key_ids.clone(),
            signature: c.signature.clone(),
            reason,
            since: reported_at,
            reported_at: Some(reported_at),
        };
        if let Some(done) = self.ledger.record(cascade, tenant, part).await? {
            completed(&done);
        }
        Ok(())
    }

    /// The activity effects of `envelope`, with retention's own attestation of an
    /// account deletion or a subject erasure, committed with the inbox entry.
    async fn apply(&self, envelope: &Envelope, tenant: TenantId) -> Result<()> {
        // Read before the transaction: SQLite has one connection, which it holds.
        let erased = self.tenants.is_erased(tenant).await?;
        let txn = self.activity.db().begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        match &envelope.payload {
            // A late event of an erased tenant starts no clock again.
            Some(Payload::AccountActivity(a)) if !erased => {
                self.activity
                    .touch(&txn, tenant, user_id(&a.user_id)?, occurred_at(envelope)?)
                    .await?;
            }
            Some(Payload::AccountDeletionRequested(d)) => {
                let cascade = CascadeId::parse_event_field("cascade_id", &d.cascade_id)?;
                let scope = if d.user_id.is_empty() {
                    HeldScope::Tenant
                } else {
                    HeldScope::User(user_id(&d.user_id)?)
                };
                // Under a legal hold the activity and the policy stay, and so does the
                // tenant (no erasure begins): the part is retained until the release.
                if let Some(hold) = holds::keeping(&txn, tenant, &scope).await? {
                    self.ctx
                        .attest_retained(&txn, tenant, cascade, hold)
                        .await?;
                    txn.commit().await?;
                    self.ctx.relay.wake();
                    return Ok(());
                }
                let mut counts = HashMap::new();
                let user = if d.user_id.is_empty() {
                    // The whole tenant: no activity of it is recorded again, and its
                    // policy and countdown go.
                    self.tenants.mark_erased(&txn, tenant, cascade).await?;
                    counts.insert(
                        "policy".to_owned(),
                        crate::policy::forget(&txn, tenant).await?,
                    );
                    counts.insert(
                        "legal_holds".to_owned(),
                        crate::holds::forget(&txn, tenant).await?,
                    );
                    None
                } else {
                    Some(user_id(&d.user_id)?)
                };
                let removed = self.activity.forget(&txn, tenant, user).await?;
                counts.insert("activity".to_owned(), removed);
                self.ctx
                    .attest(&txn, Some(tenant), cascade, counts, &[])
                    .await?;
                tracing::info!(tenant_id = %tenant, cascade_id = %cascade, removed, "account activity forgotten");
            }
            // The person's days of activity, when they have an account.
            Some(Payload::SubjectErasureRequested(e)) => {
                let cascade = CascadeId::parse_event_field("cascade_id", &e.cascade_id)?;
                let mut counts = HashMap::new();
                if !e.user_id.is_empty() {
                    let removed = self
                        .activity
                        .forget(&txn, tenant, Some(user_id(&e.user_id)?))
                        .await?;
                    counts.insert("activity".to_owned(), removed);
                }
                self.ctx
                    .attest(&txn, Some(tenant), cascade, counts, &[])
                    .await?;
            }
            _ => {}
        }
        txn.commit().await?;
        self.ctx.relay.wake();
        Ok(())
    }
}

/// Asks the participants of stalled cascades again: the event that requested each is
/// published again under a new id (so that every service's inbox takes it), and every
/// service treats it as the same cascade (its part again, with the same counts or
/// zeros). A cascade is asked again each time it has waited `stall_after` more.
pub struct Reasker {
    ctx: ServiceContext,
    ledger: Ledger,
    stall_after: chrono::Duration,
    /// `mindmesh.retention.cascades_stalled`: the open cascades, not paused by a hold,
    /// waiting longer than `stall_after` (as of each round).
    stalled_gauge: opentelemetry::metrics::Gauge<u64>,
}

impl Reasker {
    /// Asks through `ctx`'s outbox for the open cascades of `ledger`.
    pub fn new(ctx: ServiceContext, ledger: Ledger, stall_after: chrono::Duration) -> Self {
        Reasker {
            ctx,
            ledger,
            stall_after,
            stalled_gauge: mindmesh_kit::telemetry::meter()
                .u64_gauge("mindmesh.retention.cascades_stalled")
                .with_description(
                    "Open cascades waiting for a participant longer than \
                     retention.cascade_stall_after_secs (not those paused by a legal hold)",
                )
                .build(),
        }
    }

    /// Asks again for every cascade that has waited `stall_after` by `now`; returns how
    /// many were asked.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<usize> {
        let stalled = self
            .ledger
            .stalled(now - self.stall_after, now, 100)
            .await?;
        for s in &stalled {
            let txn = self.ledger.db().begin().await?;
            ask_again(&txn, &self.ledger, s, now).await?;
            txn.commit().await?;
            let waiting: Vec<&str> = s.cascade.waiting_for().iter().map(|w| w.as_str()).collect();
            tracing::warn!(
                tenant_id = %s.cascade.tenant,
                cascade_id = %s.cascade.id,
                waiting_for = %waiting.join(","),
                times_asked = s.times_asked + 1,
                "cascade stalled: its request is sent again"
            );
        }
        if !stalled.is_empty() {
            self.ctx.relay.wake();
        }
        let waiting = self.ledger.count_stalled(now - self.stall_after).await?;
        self.stalled_gauge.record(waiting, &[]);
        Ok(stalled.len())
    }

    /// Runs [`Reasker::run_once`] every quarter of `stall_after` (at most every minute)
    /// until `shutdown`.
    pub async fn run(self, shutdown: tokio_util::sync::CancellationToken) {
        let every = (self.stall_after / 4).to_std().unwrap_or_default().clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.run_once(Utc::now()).await {
                tracing::warn!(error = %e, "asking stalled cascades again failed; retrying later");
            }
        }
    }
}

/// Publishes the request of `stalled` again, in `txn`, under a new id (so that every
/// service's inbox takes it), and records the asking at `now`.
pub async fn ask_again(
    txn: &sea_orm::DatabaseTransaction,
    ledger: &Ledger,
    stalled: &Stalled,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut envelope = Envelope::decode(stalled.request.as_slice())
        .map_err(|_| Error::Internal("a kept cascade request does not decode".into()))?;
    envelope.id = EventId::new().to_string();
    outbox::enqueue(txn, &envelope).await?;
    ledger.asked_again(txn, &stalled.cascade, now).await
}

/// A completed cascade's request, sent again after a restore.
#[derive(Clone, Debug)]
pub struct Replayed {
    /// The cascade.
    pub cascade: CascadeId,
    /// The id the request went out under this time.
    pub event_id: String,
    /// The services that erase for it (each takes it as a repeated cascade).
    pub participants: &'static [Service],
}

/// Sends again, through retention's outbox, the request of every cascade of `ledger`
/// completed after `since` (a backup's time), oldest first, each under a new id and
/// from retention (so that the service that first requested it erases too): every
/// service erases what a restored copy brought back — shreds first, then rows — and
/// attests again (the ledger keeps its first attestation). Each is audited in `audit`.
pub async fn replay_since(
    ledger: &Ledger,
    audit: &mindmesh_kit::audit::AuditLog,
    since: DateTime<Utc>,
) -> Result<Vec<Replayed>> {
    let mut out = Vec::new();
    for (cascade, request) in ledger.completed_since(since).await? {
        let mut envelope = Envelope::decode(request.as_slice())
            .map_err(|_| Error::Internal("a kept cascade request does not decode".into()))?;
        envelope.id = EventId::new().to_string();
        envelope.source = Service::Retention.to_proto() as i32;
        envelope.traceparent = String::new();
        let participants = match envelope.payload {
            Some(Payload::IntegrationDisconnected(_)) => CascadeKind::Integration.participants(),
            _ => &Service::ALL,
        };
        let tenant = events::tenant(&envelope)?;
        let txn = ledger.db().begin().await?;
        outbox::enqueue(&txn, &envelope).await?;
        audit
            .append(
                &txn,
                &mindmesh_kit::audit::AuditRecord::by_service(
                    Service::Retention,
                    "cascade.replay",
                    tenant,
                    cascade.to_string(),
                )
                .with_details(format!(
                    "after a restore of a backup taken {}",
                    since.to_rfc3339()
                )),
            )
            .await?;
        txn.commit().await?;
        out.push(Replayed {
            cascade,
            event_id: envelope.id,
            participants,
        });
    }
    Ok(out)
}

/// `notification.requested` to `tenant`'s administrators (no user named: the notifier
/// mails the tenant's admins): the tenant expires for inactivity at `expires_at`, in
/// `days_before` days. Administrative, so that no marketing opt-out suppresses it.
pub fn inactivity_warning(
    tenant: TenantId,
    days_before: u32,
    expires_at: DateTime<Utc>,
) -> Envelope {
    events::envelope(
        Service::Retention,
        Some(tenant),
        Payload::NotificationRequested(NotificationRequested {
            user_id: String::new(),
            template: "inactivity_warning".to_owned(),
            administrative: true,
            params: [
                ("days_before".to_owned(), days_before.to_string()),
                ("expires_at".to_owned(), expires_at.to_rfc3339()),
            ]
            .into(),
        }),
    )
}

/// `retention.policy_set`: `tenant` keeps archived documents `archive_purge_days` days
/// (storage purges by it).
pub fn policy_set(tenant: TenantId, archive_purge_days: u32) -> Envelope {
    events::envelope(
        Service::Retention,
        Some(tenant),
        Payload::RetentionPolicySet(RetentionPolicySet { archive_purge_days }),
    )
}

/// `account.deletion_requested` for the whole of `tenant`, expired for inactivity: the
/// cascade `cascade` every service erases it by.
pub fn tenant_expired(tenant: TenantId, cascade: CascadeId) -> Envelope {
    events::envelope(
        Service::Retention,
        Some(tenant),
        Payload::AccountDeletionRequested(AccountDeletionRequested {
            cascade_id: cascade.to_string(),
            user_id: String::new(),
            sealed_email: Vec::new(),
        }),
    )
}

/// `envelope` encoded, as the ledger keeps a cascade's request.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    envelope.encode_to_vec()
}

fn user_id(value: &str) -> Result<UserId> {
    value
        .parse()
        .map_err(|_| Error::MalformedEvent("event user_id is not a UUID".into()))
}

/// When the event happened; a time that cannot be one is a malformed event (not
/// worth retrying).
fn occurred_at(envelope: &Envelope) -> Result<DateTime<Utc>> {
    match &envelope.occurred_at {
        Some(t) => mindmesh_kit::grpc::from_timestamp("occurred_at", t)
            .map_err(|_| Error::MalformedEvent("occurred_at is not a time".into())),
        None => Ok(Utc::now()),
    }
}

fn completed(cascade: &Cascade) {
    tracing::info!(
        tenant_id = %cascade.tenant,
        cascade_id = %cascade.id,
        kind = cascade.kind.map(CascadeKind::as_str).unwrap_or_default(),
        "cascade complete"
    );
}

#[async_trait::async_trait]
impl EventHandler for RetentionEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        if let Some(Payload::LegalHoldApplied(a)) = &envelope.payload {
            let hold = a
                .hold_id
                .parse()
                .map_err(|_| Error::MalformedEvent("hold_id is not a UUID".into()))?;
            let service = Service::from_proto(envelope.source).ok_or_else(|| {
                Error::MalformedEvent("legal_hold.applied without a source service".into())
            })?;
            self.holds.applied(hold, service, a.released).await?;
            return Ok(());
        }
        let relevant = matches!(
            envelope.payload,
            Some(Payload::AccountActivity(_))
                | Some(Payload::AccountDeletionRequested(_))
                | Some(Payload::IntegrationDisconnected(_))
                | Some(Payload::SubjectErasureRequested(_))
                | Some(Payload::DeletionCompleted(_))
        );
        if !relevant {
            return Ok(());
        }
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent(format!("{} without tenant", envelope.r#type)))?;
        match &envelope.payload {
            Some(Payload::DeletionCompleted(c)) => self.record(envelope, tenant, c).await,
            Some(Payload::IntegrationDisconnected(_)) => self.open(envelope, tenant).await,
            Some(Payload::AccountDeletionRequested(_))
            | Some(Payload::SubjectErasureRequested(_)) => {
                self.open(envelope, tenant).await?;
                self.apply(envelope, tenant).await
            }
            _ => self.apply(envelope, tenant).await,
        }
    }
}
