//! The deletion ledger (DESIGN.md §5): every cascade — an integration disconnected, a
//! user or tenant deleted, a person's data erased, a tenant expired for inactivity — and
//! each participating service's part in it, persisted.
//!
//! A cascade is opened by whichever of its events reaches retention first: the event
//! that requested it, or a service's `deletion.completed`, which may overtake it. A part
//! is recorded once: a repeated attestation changes nothing, and an attestation whose
//! signature does not verify is recorded as a failure, never as done (a valid one
//! later replaces it). A cascade is complete only when it has been opened and every
//! service its kind names is done. A service that keeps its part under a legal hold
//! reports it retained, with the hold as ground: the cascade is paused (no receipt, not
//! asked again as stalled) until the hold is released, when it is asked again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::{CascadeId, HoldId, TenantId};
use mindmesh_kit::{Error, Result, Service};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::receipts::{Notary, Receipt};
use crate::store::ledger as store;

/// Most cascades one page of a listing holds.
pub const MAX_PAGE: u64 = 1000;

/// What a cascade erases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CascadeKind {
    /// Everything one integration brought (a disconnect).
    Integration,
    /// One person's account.
    User,
    /// A whole tenant.
    Tenant,
    /// A data subject's data, found by email (an erasure request).
    Subject,
    /// A whole tenant, expired for inactivity (P09).
    Inactivity,
}

impl CascadeKind {
    /// The name stored and shown (`scope_kind` in the API).
    pub const fn as_str(self) -> &'static str {
        match self {
            CascadeKind::Integration => "integration",
            CascadeKind::User => "user",
            CascadeKind::Tenant => "tenant",
            CascadeKind::Subject => "subject",
            CascadeKind::Inactivity => "inactivity",
        }
    }

    /// The kind named `value`, if it is one.
    pub fn parse(value: &str) -> Option<Self> {
        [
            CascadeKind::Integration,
            CascadeKind::User,
            CascadeKind::Tenant,
            CascadeKind::Subject,
            CascadeKind::Inactivity,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }

    /// The services that must take part: a disconnect touches what an integration
    /// brought (ingest, permissions, storage); anything about people touches all five,
    /// so retention and dsar attest for what they hold too.
    pub const fn participants(self) -> &'static [Service] {
        match self {
            CascadeKind::Integration => &[Service::Ingest, Service::Permissions, Service::Storage],
            _ => &Service::ALL,
        }
    }
}

/// One service's state in a cascade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartState {
    /// Expected, not yet reported.
    Pending,
    /// Deleted everything in scope and attested it.
    Done,
    /// Keeps data in scope on a recorded ground (a legal hold, named in the reason):
    /// the cascade is paused until the hold is released.
    Retained,
    /// Reported a failure, or an attestation that does not verify.
    Failed,
}

impl PartState {
    /// The name stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            PartState::Pending => "pending",
            PartState::Done => "done",
            PartState::Retained => "retained",
            PartState::Failed => "failed",
        }
    }

    /// The state named `value`, if it is one.
    pub fn parse(value: &str) -> Option<Self> {
        [
            PartState::Pending,
            PartState::Done,
            PartState::Retained,
            PartState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    /// Whether the part lets the cascade complete: only a deletion done and attested.
    pub const fn settled(self) -> bool {
        matches!(self, PartState::Done)
    }
}

/// A cascade's state as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overall {
    /// Nobody has reported yet.
    Pending,
    /// Some services have reported, not all.
    Running,
    /// Every participant is done.
    Complete,
    /// A participant keeps its part under a legal hold; paused until the release.
    Held,
    /// A participant failed; it is not complete.
    Failed,
}

/// The event that requested a cascade, as the ledger records it.
#[derive(Clone, Debug)]
pub struct Opening {
    /// The cascade.
    pub cascade: CascadeId,
    /// Its tenant.
    pub tenant: TenantId,
    /// What it erases.
    pub kind: CascadeKind,
    /// The integration, user or tenant id it erases.
    pub scope_id: String,
    /// The person it concerns (an email), hashed before it is stored.
    pub subject: Option<String>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

/// A service's report of its part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The service.
    pub service: Service,
    /// Its state.
    pub state: PartState,
    /// Rows deleted, by kind.
    pub counts: BTreeMap<String, u64>,
    /// The data keys it destroyed.
    pub destroyed_key_ids: Vec<String>,
    /// Its signature over the attestation (base64), as it came.
    pub signature: String,
    /// Why it failed or retains; empty when done.
    pub reason: String,
    /// Since when it is in this state (pending: since the cascade was seen).
    pub since: DateTime<Utc>,
    /// When it reported, if it has.
    pub reported_at: Option<DateTime<Utc>>,
}

impl Part {
    /// A part not yet reported, expected since `since`.
    pub fn pending(service: Service, since: DateTime<Utc>) -> Self {
        Part {
            service,
            state: PartState::Pending,
            counts: BTreeMap::new(),
            destroyed_key_ids: Vec::new(),
            signature: String::new(),
            reason: String::new(),
            since,
            reported_at: None,
        }
    }
}

/// A cascade as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cascade {
    /// Its id.
    pub id: CascadeId,
    /// Its tenant.
    pub tenant: TenantId,
    /// What it erases; `None` until the event that requested it has arrived.
    pub kind: Option<CascadeKind>,
    /// The integration, user or tenant id it erases (empty until opened).
    pub scope_id: String,
    /// The keyed hash of the person it concerns (hex), empty when none.
    pub subject_hash: String,
    /// When it was requested (once opened).
    pub requested_at: Option<DateTime<Utc>>,
    /// When retention first heard of it.
    pub first_seen_at: DateTime<Utc>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Each service's part, in service order.
    pub parts: Vec<Part>,
}

impl Cascade {
    /// Whether every participant has settled (the opening event must have arrived:
    /// until then nobody knows who takes part).
    pub fn settled(&self) -> bool {
        let Some(kind) = self.kind else {
            return false;
        };
        kind.participants().iter().all(|service| {
            self.parts
                .iter()
                .any(|p| p.service == *service && p.state.settled())
        })
    }

    /// The state as a whole.
    pub fn overall(&self) -> Overall {
        if self.completed_at.is_some() {
            Overall::Complete
        } else if self.parts.iter().any(|p| p.state == PartState::Failed) {
            Overall::Failed
        } else if self.held_by().is_some() {
            Overall::Held
        } else if self.parts.iter().any(|p| p.state != PartState::Pending) {
            Overall::Running
        } else {
            Overall::Pending
        }
    }

    /// The legal hold a participant keeps its part under, if one does (the first).
    pub fn held_by(&self) -> Option<HoldId> {
        self.parts
            .iter()
            .filter(|p| p.state == PartState::Retained)
            .find_map(|p| mindmesh_kit::holds::hold_of_ground(&p.reason))
    }

    /// Since when the cascade waits for a participant: the oldest state among those not
    /// settled (pending since the cascade was seen, or failed since it reported);
    /// `None` once complete, or before it is opened.
    pub fn waiting_since(&self) -> Option<DateTime<Utc>> {
        if self.completed_at.is_some() {
            return None;
        }
        let waiting = self.waiting_for();
        self.parts
            .iter()
            .filter(|p| waiting.contains(&p.service))
            .map(|p| p.since)
            .min()
    }

    /// The participants that have not reported (or not settled), in service order.
    pub fn waiting_for(&self) -> Vec<Service> {
        let participants = self.kind.map(CascadeKind::participants).unwrap_or(&[]);
        participants
            .iter()
            .copied()
            .filter(|service| {
                !self
                    .parts
                    .iter()
                    .any(|p| p.service == *service && p.state.settled())
            })
            .collect()
    }
}

/// The cascade `id` of `tenant`, locked for the rest of `txn` (so that two reports
/// of one cascade are applied one after the other); a new entry seen first at `now` if
/// the ledger has none.
async fn locked(
    txn: &DatabaseTransaction,
    id: CascadeId,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<Cascade> {
    let cascade = match store::find(txn, id, true).await? {
        Some(c) => c,
        None => {
            let cascade = Cascade {
                id,
                tenant,
                kind: None,
                scope_id: String::new(),
                subject_hash: String::new(),
                requested_at: None,
                first_seen_at: now,
                completed_at: None,
                parts: Vec::new(),
            };
            store::insert(txn, &cascade).await?;
            cascade
        }
    };
    if cascade.tenant != tenant {
        return Err(Error::MalformedEvent(
            "a cascade's events name two tenants".into(),
        ));
    }
    Ok(cascade)
}

/// Where a listing goes on: after the cascade first seen at this time with this id.
pub type ListPosition = (DateTime<Utc>, CascadeId);

/// The ledger over the retention database.
#[derive(Clone)]
pub struct Ledger {
    db: DatabaseConnection,
    /// Keys the hash of a cascade's subject, so that the ledger and its receipts name
    /// no one (and an email cannot be confirmed by hashing guesses without it).
    subject_key: SecretKey,
    /// Seals the request of each open cascade (it may name a person), kept only to ask
    /// a silent participant again (DESIGN.md §5.4: identifiers stay until all confirmed).
    request_key: SecretKey,
    /// Issues the receipt of each cascade as it completes.
    notary: Notary,
    /// Where every step of every cascade is recorded (P18).
    audit: AuditLog,
}

/// An open cascade that has waited too long, with the request to send again.
#[derive(Clone, Debug)]
pub struct Stalled {
    /// The cascade.
    pub cascade: Cascade,
    /// The event that requested it, as it came (encoded).
    pub request: Vec<u8>,
    /// How often it was asked again before.
    pub times_asked: u32,
}

fn request_aad(id: CascadeId) -> Vec<u8> {
    format!("mindmesh/retention/cascade_requests/request_ct/{id}").into_bytes()
}

impl Ledger {
    /// The ledger in `db`, hashing subjects with a key derived from `master`, issuing
    /// receipts with `notary`, recording each step in `audit`.
    pub fn new(
        db: DatabaseConnection,
        master: &SecretKey,
        notary: Notary,
        audit: AuditLog,
    ) -> Result<Self> {
        Ok(Ledger {
            db,
            subject_key: master.derive("mindmesh/retention/subject-hash/v1")?,
            request_key: master.derive("mindmesh/retention/cascade-request/v1")?,
            notary,
            audit,
        })
    }

    /// Records `action` on `cascade` in the audit log, in `conn`'s transaction.
    async fn audit<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        cascade: &Cascade,
        action: &str,
        details: String,
    ) -> Result<()> {
        self.audit
            .append(
                conn,
                &AuditRecord::by_service(
                    Service::Retention,
                    action,
                    Some(cascade.tenant),
                    cascade.id.to_string(),
                )
                .with_details(details),
            )
            .await?;
        Ok(())
    }

    /// The notary of this ledger's receipts.
    pub fn notary(&self) -> &Notary {
        &self.notary
    }

    /// The database (to read receipts and the log with [`Ledger::notary`]).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The keyed hash of `subject` (an email) in `tenant`, hex.
    pub fn subject_hash(&self, tenant: TenantId, subject: &str) -> String {
        let data = format!("{tenant}\n{}", subject.trim().to_lowercase());
        mindmesh_kit::crypto::hex(&self.subject_key.mac(data.as_bytes()))
    }

    /// Records the request that opened a cascade (again: nothing changes), and expects
    /// a part from each service its kind names; keeps `request` (the event, encoded)
    /// sealed until the cascade completes, to ask again. Returns the cascade if this
    /// completed it (its parts had all come before).
    pub async fn open(&self, opening: &Opening, request: &[u8]) -> Result<Option<Cascade>> {
        let txn = self.db.begin().await?;
        let completed = self.open_in(&txn, opening, request).await?;
        txn.commit().await?;
        Ok(completed)
    }

    /// [`Ledger::open`] in the caller's transaction (retention starting a cascade
    /// itself opens it with the event that requests it).
    pub async fn open_in(
        &self,
        txn: &DatabaseTransaction,
        opening: &Opening,
        request: &[u8],
    ) -> Result<Option<Cascade>> {
        let now = mindmesh_kit::db::now();
        let subject_hash = opening
            .subject
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| self.subject_hash(opening.tenant, s))
            .unwrap_or_default();
        let mut cascade = locked(txn, opening.cascade, opening.tenant, now).await?;
        if cascade.kind.is_some() {
            return Ok(None);
        }
        cascade.kind = Some(opening.kind);
        cascade.scope_id = opening.scope_id.clone();
        cascade.subject_hash = subject_hash;
        cascade.requested_at = Some(mindmesh_kit::db::micros(opening.requested_at));
        store::set_opening(txn, &cascade).await?;
        let sealed = self.request_key.seal(&request_aad(cascade.id), request)?;
        store::put_request(txn, cascade.id, sealed, now).await?;
        let participants: Vec<&str> = opening
            .kind
            .participants()
            .iter()
            .map(|s| s.as_str())
            .collect();
        self.audit(
            txn,
            &cascade,
            "cascade.open",
            format!(
                "{} {}; participants {}",
                opening.kind.as_str(),
                cascade.scope_id,
                participants.join(",")
            ),
        )
        .await?;
        for service in opening.kind.participants() {
            if !cascade.parts.iter().any(|p| p.service == *service) {
                let part = Part::pending(*service, cascade.first_seen_at);
                store::put_part(txn, cascade.id, &part).await?;
                cascade.parts.push(part);
            }
        }
        let completed = self.complete_if_settled(txn, &mut cascade, now).await?;
        Ok(completed.then_some(cascade))
    }

    /// Records `part` of `cascade` in `tenant`, opening the cascade if this is the first
    /// word of it. A part already settled stays as it is (a repeated report changes
    /// nothing); a failed one is replaced by a later report. Returns the cascade if
    /// this completed it.
    pub async fn record(
        &self,
        cascade_id: CascadeId,
        tenant: TenantId,
        part: Part,
    ) -> Result<Option<Cascade>> {
        let now = mindmesh_kit::db::now();
        let txn = self.db.begin().await?;
        let mut cascade = locked(&txn, cascade_id, tenant, now).await?;
        let known = cascade.parts.iter().position(|p| p.service == part.service);
        // Done is final; a hold's retention gives way to a later outcome (the release),
        // and the same retention again changes nothing.
        let replace = match known.map(|i| &cascade.parts[i]) {
            None => true,
            Some(p) => match p.state {
                PartState::Pending | PartState::Failed => true,
                PartState::Retained => part.state != PartState::Retained || part.reason != p.reason,
                PartState::Done => false,
            },
        };
        if replace {
            store::put_part(&txn, cascade.id, &part).await?;
            self.audit(
                &txn,
                &cascade,
                "cascade.part",
                match mindmesh_kit::holds::hold_of_ground(&part.reason) {
                    Some(hold) if part.state == PartState::Retained => {
                        format!("{} retained under legal hold {hold}", part.service)
                    }
                    _ => format!("{} {}", part.service, part.state.as_str()),
                },
            )
            .await?;
            match known {
                Some(i) => cascade.parts[i] = part,
                None => cascade.parts.push(part),
            }
        }
        let completed = self.complete_if_settled(&txn, &mut cascade, now).await?;
        txn.commit().await?;
        Ok(completed.then_some(cascade))
    }

    /// Marks `cascade` complete at `now` if it is settled and was not complete yet, and
    /// issues its receipt in the same transaction: a complete cascade always has one.
    async fn complete_if_settled<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        cascade: &mut Cascade,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        if cascade.completed_at.is_some() || !cascade.settled() {
            return Ok(false);
        }
        cascade.completed_at = Some(now);
        store::set_completed(conn, cascade.id, now).await?;
        let receipt = self.notary.issue(conn, cascade).await?;
        // Kept (sealed) until the last backup that could hold the data is gone: a
        // restore erases it again (P10).
        store::keep_for_replay(conn, cascade.id, now, receipt.backups_expire_at).await?;
        self.audit(
            conn,
            cascade,
            "cascade.complete",
            format!("receipt at log index {}", receipt.log_index),
        )
        .await?;
        Ok(true)
    }

    /// The receipt of cascade `id` in `tenant` (any tenant's for `None`), once complete.
    pub async fn receipt(
        &self,
        tenant: Option<TenantId>,
        id: CascadeId,
    ) -> Result<Option<Receipt>> {
        Ok(self
            .notary
            .receipt(&self.db, id)
            .await?
            .filter(|r| tenant.is_none_or(|t| r.tenant_id == t.to_string())))
    }

    /// The cascade `id`, if it is in `tenant` (any tenant's for `None`).
    pub async fn get(&self, tenant: Option<TenantId>, id: CascadeId) -> Result<Option<Cascade>> {
        Ok(store::find(&self.db, id, false)
            .await?
            .filter(|c| tenant.is_none_or(|t| c.tenant == t)))
    }

    /// The cascades of `tenant` about the person with `email` (by the keyed hash of the
    /// email: the ledger keeps nothing else of them), oldest first.
    pub async fn about(&self, tenant: TenantId, email: &str) -> Result<Vec<Cascade>> {
        store::about_subject(&self.db, tenant, &self.subject_hash(tenant, email)).await
    }

    /// Up to `limit` cascades of `tenant` (every tenant's for `None`), newest first,
    /// after `after` — only those still open since before `stalled_before`, when given;
    /// and where the next page starts, if there is one.
    pub async fn list(
        &self,
        tenant: Option<TenantId>,
        limit: u64,
        after: Option<ListPosition>,
        stalled_before: Option<DateTime<Utc>>,
    ) -> Result<(Vec<Cascade>, Option<ListPosition>)> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut page = store::page(&self.db, tenant, limit + 1, after, stalled_before).await?;
        let next = if page.len() as u64 > limit {
            page.truncate(limit as usize);
            page.last().map(|c| (c.first_seen_at, c.id))
        } else {
            None
        };
        Ok((page, next))
    }

    /// Up to `limit` open cascades last asked before `before` (every tenant's), oldest
    /// first, with their requests to send again. A cascade paused by a legal hold in
    /// force is not one: its next asking moves on to `now` (it is asked when the hold
    /// is released — or here, if the release reached its participants too late).
    pub async fn stalled(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Stalled>> {
        let mut out = Vec::new();
        for (id, sealed, times_asked) in
            store::requests_asked_before(&self.db, before, limit).await?
        {
            let Some(cascade) = store::find(&self.db, id, false).await? else {
                continue;
            };
            if cascade.completed_at.is_some() {
                continue;
            }
            if let Some(hold) = cascade.held_by()
                && mindmesh_kit::holds::in_force(&self.db, hold).await?
            {
                store::postpone_request(&self.db, id, now).await?;
                continue;
            }
            let request = self.request_key.open(&request_aad(id), &sealed)?;
            out.push(Stalled {
                cascade,
                request,
                times_asked,
            });
        }
        Ok(out)
    }

    /// How many open cascades, not paused by a legal hold, have waited for a participant
    /// since before `before` (counted up to [`MAX_PAGE`]).
    pub async fn count_stalled(&self, before: DateTime<Utc>) -> Result<u64> {
        let (open, _) = self.list(None, MAX_PAGE, None, Some(before)).await?;
        Ok(open
            .iter()
            .filter(|c| c.overall() != Overall::Held)
            .filter(|c| c.waiting_since().is_some_and(|since| since < before))
            .count() as u64)
    }

    /// The open cascades paused by legal hold `hold`, with their requests to send again
    /// (it is being released), read in `conn`'s transaction.
    pub async fn held_by<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        hold: HoldId,
    ) -> Result<Vec<Stalled>> {
        let mut out = Vec::new();
        for id in store::retained_on(conn, &mindmesh_kit::holds::ground(hold)).await? {
            let Some(cascade) = store::find(conn, id, false).await? else {
                continue;
            };
            let Some((sealed, times_asked)) = store::request(conn, id).await? else {
                continue;
            };
            if cascade.completed_at.is_some() {
                continue;
            }
            out.push(Stalled {
                request: self.request_key.open(&request_aad(id), &sealed)?,
                cascade,
                times_asked,
            });
        }
        Ok(out)
    }

    /// The requests of the cascades completed after `since`, oldest first, to send again
    /// after a restore (each under a new id; every service erases what the restored copy
    /// brought back, as for a repeated cascade).
    pub async fn completed_since(&self, since: DateTime<Utc>) -> Result<Vec<(CascadeId, Vec<u8>)>> {
        store::replays_since(&self.db, since)
            .await?
            .into_iter()
            .map(|(id, sealed, _)| Ok((id, self.request_key.open(&request_aad(id), &sealed)?)))
            .collect()
    }

    /// Forgets the kept requests of cascades whose last backup is gone by `now`.
    pub async fn forget_replays(&self, now: DateTime<Utc>) -> Result<u64> {
        store::forget_replays(&self.db, now).await
    }

    /// Records, in `conn`'s transaction, that `cascade` was asked again at `at`.
    pub async fn asked_again<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        cascade: &Cascade,
        at: DateTime<Utc>,
    ) -> Result<()> {
        store::asked_again(conn, cascade.id, at).await?;
        let waiting: Vec<&str> = cascade.waiting_for().iter().map(|s| s.as_str()).collect();
        self.audit(
            conn,
            cascade,
            "cascade.ask_again",
            format!("waiting for {}", waiting.join(",")),
        )
        .await
    }
}
