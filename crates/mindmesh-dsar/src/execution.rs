//! Carrying a verified request out across the five services, one part per service
//! that takes part, each persisted as it answers:
//!
//! - access and portability: every service's `SubjectData.Export`, assembled into one
//!   sealed archive ([`crate::archive`]) once every part is in;
//! - rectification: `SubjectData.Rectify` on the service that owns the fields
//!   (permissions keeps the account; every other service reads it from there);
//! - restriction (and its lifting): `subject.restricted` (`subject.unrestricted`) is
//!   published, for every service's processor gate, and every service's
//!   `SubjectData.Restrict` is asked;
//! - erasure: `subject.erasure_requested` is published; retention's ledger tracks the
//!   cascade, whose parts the request shows, and the request completes with the
//!   cascade's receipt;
//! - withdrawal of consent: the consent records are updated and `consent.withdrawn`
//!   published ([`crate::consents`]).
//!
//! A service that fails or is down is asked again with backoff, and the request names
//! it meanwhile; an error is never taken for "no data", and a request is never
//! completed while a part is missing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::events::EventSeal;
use mindmesh_kit::ids::{CascadeId, TenantId, UserId};
use mindmesh_kit::outbox::OutboxRelay;
use mindmesh_kit::subject_api::Rectification;
use mindmesh_kit::{Error, Result, Service, outbox};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::consents::Consents;
use crate::requests::{Kind, Request, Requests, Scope, Status};
use crate::store::erasures;
use crate::store::execution::{self as store, PartRow};

/// The longest wait before a failed part is asked again.
const MAX_BACKOFF_SECS: i64 = 300;

/// One record a service holds about a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedRecord {
    /// Its kind (`account`, `document`, …).
    pub kind: String,
    /// Its id in its service.
    pub id: String,
    /// The record, decrypted.
    pub json: serde_json::Value,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Where a deletion cascade stands, as retention's ledger shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CascadeProgress {
    /// Each service's part (`pending`, `done`, `retained` or `failed`, and why).
    pub parts: Vec<Part>,
    /// The signed receipt (encoded), once the cascade completed.
    pub receipt: Option<Vec<u8>>,
}

/// What dsar asks the other services. Each method but `export` defaults to
/// UNIMPLEMENTED, so that a test double states what it does not do.
#[async_trait::async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Every record `service` holds about the person with `email` in `tenant`.
    async fn export(
        &self,
        service: Service,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<ExportedRecord>>;

    /// Has `service` apply `changes` to the person's fields; how many records changed.
    async fn rectify(
        &self,
        service: Service,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        changes: &Rectification,
    ) -> Result<u64> {
        let _ = (service, tenant, email, request_id, changes);
        Err(Error::Unimplemented("rectification through these peers"))
    }

    /// Has `service` restrict (or stop restricting) processing of the person's data.
    async fn restrict(
        &self,
        service: Service,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        restricted: bool,
    ) -> Result<u64> {
        let _ = (service, tenant, email, request_id, restricted);
        Err(Error::Unimplemented("restriction through these peers"))
    }

    /// The account of `tenant` with `email`, if there is one.
    async fn account(&self, tenant: TenantId, email: &str) -> Result<Option<UserId>> {
        let _ = (tenant, email);
        Err(Error::Unimplemented("account lookup through these peers"))
    }

    /// Where `cascade` stands; `None` while retention has not seen its first event.
    async fn cascade(
        &self,
        tenant: TenantId,
        cascade: CascadeId,
    ) -> Result<Option<CascadeProgress>> {
        let _ = (tenant, cascade);
        Err(Error::Unimplemented("cascade progress through these peers"))
    }
}

/// One service's part, as a request shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The service.
    pub service: Service,
    /// `pending`, `done`, `retained` (an erasure kept under a legal hold) or `failed`.
    pub state: String,
    /// Why it failed, or on what ground it is retained.
    pub error: String,
    /// Tries so far.
    pub attempts: u32,
}

/// What one part asks of its service.
enum Ask<'a> {
    Export,
    Rectify(&'a Rectification),
    Restrict(bool),
}

/// Carries verified requests out.
#[derive(Clone)]
pub struct Executor {
    db: DatabaseConnection,
    requests: Requests,
    consents: Consents,
    peers: Arc<dyn Peers>,
    audit: AuditLog,
    seal: EventSeal,
    relay: OutboxRelay,
    /// Seals the services' answers and the archives.
    key: SecretKey,
    export_ttl: chrono::Duration,
    wake: Arc<Notify>,
    /// Tells the subject, when they have an account, that their request was carried out.
    notifier: Option<crate::notifier::Notifier>,
}

fn aad(id: &str, what: &str) -> Vec<u8> {
    format!("mindmesh/dsar/{what}/{id}").into_bytes()
}

fn service_of(part: &PartRow) -> Result<Service> {
    part.service
        .parse()
        .map_err(|_| Error::Internal("a part names no service".into()))
}

/// The corrections of a rectification request.
fn corrections(request: &Request) -> Result<Rectification> {
    let fields = request
        .rectification
        .as_ref()
        .and_then(|v| v.as_object())
        .ok_or_else(|| Error::Internal("a rectification without its corrections".into()))?;
    let field = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Rectification {
        first_name: field("first_name"),
        last_name: field("last_name"),
        email: field("email"),
        picture_url: field("picture_url"),
    })
}

impl Executor {
    /// An executor over `ctx`'s database, filing in `requests` and `consents`, asking
    /// the services through `peers`; archives kept `export_ttl`.
    pub fn new(
        ctx: &ServiceContext,
        requests: Requests,
        consents: Consents,
        peers: Arc<dyn Peers>,
        export_ttl: chrono::Duration,
    ) -> Result<Self> {
        Ok(Executor {
            db: ctx.db.clone(),
            requests,
            consents,
            peers,
            audit: ctx.audit.clone(),
            seal: ctx.event_seal.clone(),
            relay: ctx.relay.clone(),
            key: ctx.keys.master.derive("mindmesh/dsar/exports/v1")?,
            export_ttl,
            wake: Arc::new(Notify::new()),
            notifier: None,
        })
    }

    /// The executor, telling subjects through `notifier` when their request is done.
    pub fn with_notifier(mut self, notifier: crate::notifier::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Has the executor look at once (a request was verified).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The parts of request `id` so far.
    pub async fn parts(&self, id: &str) -> Result<Vec<Part>> {
        store::parts(&self.db, id)
            .await?
            .into_iter()
            .map(|p| {
                Ok(Part {
                    service: service_of(&p)?,
                    state: p.state,
                    error: p.error,
                    attempts: p.attempts,
                })
            })
            .collect()
    }

    /// The cascade carrying erasure request `id` out, and its receipt once issued.
    pub async fn erasure(&self, id: &str) -> Result<Option<(String, Option<Vec<u8>>)>> {
        Ok(erasures::get(&self.db, id)
            .await?
            .map(|e| (e.cascade_id, e.receipt)))
    }

    /// One round at `now`: every request in progress gets its due parts asked, and
    /// those with every part in are completed; expired archives go. Returns how many
    /// requests completed.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut completed = 0;
        for id in store::with_status(&self.db, Status::InProgress.as_str()).await? {
            let request = self.requests.get(&Scope::All, &id).await?;
            let done = match request.kind {
                Kind::Access | Kind::Portability => self.export(&request, now).await?,
                Kind::Rectification => {
                    let changes = corrections(&request)?;
                    self.fan_out(
                        &request,
                        &[Service::Permissions],
                        Ask::Rectify(&changes),
                        now,
                    )
                    .await?
                }
                Kind::Restriction => {
                    self.fan_out(&request, &Service::ALL, Ask::Restrict(!request.lift), now)
                        .await?
                }
                Kind::Erasure => self.erase(&request, now).await?,
                Kind::WithdrawConsent => self.withdraw_consent(&request, now).await?,
            };
            if done {
                completed += 1;
            }
        }
        store::delete_expired_exports(&self.db, now).await?;
        Ok(completed)
    }

    /// The parts of `request` for `services`, created pending (with what starting it
    /// publishes) on its first round.
    async fn parts_of(
        &self,
        request: &Request,
        services: &[Service],
        now: DateTime<Utc>,
    ) -> Result<Vec<PartRow>> {
        let parts = store::parts(&self.db, &request.id).await?;
        if !parts.is_empty() {
            return Ok(parts);
        }
        // A restriction tells every service's processor gate as it starts.
        let started = match request.kind {
            Kind::Restriction => {
                let user = self
                    .peers
                    .account(request.tenant, &request.subject_email)
                    .await?;
                Some(crate::events::restriction_changed(
                    &self.seal,
                    request.tenant,
                    &request.id,
                    &request.subject_email,
                    user,
                    request.lift,
                )?)
            }
            _ => None,
        };
        let txn = self.db.begin().await?;
        let mut parts = Vec::new();
        for service in services {
            let part = PartRow {
                service: service.as_str().to_owned(),
                state: "pending".into(),
                result_ct: None,
                error: String::new(),
                attempts: 0,
                next_try_at: now,
            };
            store::put_part(&txn, &request.id, &part, now).await?;
            parts.push(part);
        }
        if let Some(envelope) = &started {
            outbox::enqueue(&txn, envelope).await?;
        }
        txn.commit().await?;
        if started.is_some() {
            self.relay.wake();
        }
        Ok(parts)
    }

    /// Asks `ask` of each due part of `services`; what a part answers is sealed into it
    /// when it is an export's. Returns the parts, and whether every one is done.
    async fn ask_parts(
        &self,
        request: &Request,
        services: &[Service],
        ask: &Ask<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<PartRow>, bool)> {
        let mut parts = self.parts_of(request, services, now).await?;
        let (tenant, email, id) = (request.tenant, request.subject_email.as_str(), &request.id);
        for part in parts
            .iter_mut()
            .filter(|p| p.state != "done" && p.next_try_at <= now)
        {
            let service = service_of(part)?;
            part.attempts += 1;
            let answer = match ask {
                Ask::Export => match self.peers.export(service, tenant, email, id).await {
                    Ok(records) => serde_json::to_vec(&records)
                        .map_err(|e| Error::Internal(e.to_string()))
                        .and_then(|json| {
                            self.key
                                .seal(&aad(&format!("{id}/{}", part.service), "part"), &json)
                        })
                        .map(Some),
                    Err(e) => Err(e),
                },
                Ask::Rectify(changes) => self
                    .peers
                    .rectify(service, tenant, email, id, changes)
                    .await
                    .map(|_| None),
                Ask::Restrict(restricted) => self
                    .peers
                    .restrict(service, tenant, email, id, *restricted)
                    .await
                    .map(|_| None),
            };
            match answer {
                Ok(result) => {
                    part.result_ct = result;
                    part.state = "done".into();
                    part.error.clear();
                }
                Err(e) => {
                    part.state = "failed".into();
                    part.error = e.to_string();
                    let wait = 2i64
                        .saturating_pow(part.attempts.min(12))
                        .min(MAX_BACKOFF_SECS);
                    part.next_try_at = now + chrono::Duration::seconds(wait);
                    tracing::warn!(request_id = %id, service = %service, attempts = part.attempts, error = %e, "a service's part of a data-subject request failed; asking again later");
                }
            }
            store::put_part(&self.db, id, part, now).await?;
        }
        let all_done = parts.iter().all(|p| p.state == "done");
        Ok((parts, all_done))
    }

    /// Rectification and restriction: every part asked; completed once all are done.
    async fn fan_out(
        &self,
        request: &Request,
        services: &[Service],
        ask: Ask<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (parts, done) = self.ask_parts(request, services, &ask, now).await?;
        if !done {
            return Ok(false);
        }
        let details = match ask {
            Ask::Rectify(_) => "corrected by the service that owns the fields".to_owned(),
            Ask::Restrict(true) => format!("processing restricted in {} services", parts.len()),
            Ask::Restrict(false) => format!("restriction lifted in {} services", parts.len()),
            Ask::Export => String::new(),
        };
        let txn = self.db.begin().await?;
        self.complete(&txn, request, details, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Access and portability: every service's records, then the archive.
    async fn export(&self, request: &Request, now: DateTime<Utc>) -> Result<bool> {
        let (parts, done) = self
            .ask_parts(request, &Service::ALL, &Ask::Export, now)
            .await?;
        if !done {
            return Ok(false);
        }
        let mut exported = Vec::new();
        for part in &parts {
            let sealed = part
                .result_ct
                .as_ref()
                .ok_or_else(|| Error::Internal("a done part without its answer".into()))?;
            let json = self.key.open(
                &aad(&format!("{}/{}", request.id, part.service), "part"),
                sealed,
            )?;
            let records: Vec<ExportedRecord> =
                serde_json::from_slice(&json).map_err(|e| Error::Internal(e.to_string()))?;
            exported.push((service_of(part)?, records));
        }
        let archive = crate::archive::build(&request.id, &request.subject_email, &exported, now)?;
        let size = archive.len();
        let sealed = self.key.seal(&aad(&request.id, "export"), &archive)?;
        let txn = self.db.begin().await?;
        store::put_export(&txn, &request.id, sealed, now, now + self.export_ttl).await?;
        store::clear_results(&txn, &request.id).await?;
        self.complete(
            &txn,
            request,
            format!(
                "{} archive of {size} bytes from five services",
                request.kind.as_str()
            ),
            now,
        )
        .await?;
        txn.commit().await?;
        tracing::info!(request_id = %request.id, bytes = size, "data-subject request carried out");
        Ok(true)
    }

    /// Erasure: the cascade started once, then followed until its receipt is issued.
    async fn erase(&self, request: &Request, now: DateTime<Utc>) -> Result<bool> {
        let Some(erasure) = erasures::get(&self.db, &request.id).await? else {
            let user = self
                .peers
                .account(request.tenant, &request.subject_email)
                .await?;
            let cascade = CascadeId::new();
            let envelope = crate::events::erasure_requested(
                &self.seal,
                request.tenant,
                cascade,
                &request.id,
                &request.subject_email,
                user,
            )?;
            // The intent is durable before anything is erased (DESIGN.md §5).
            let txn = self.db.begin().await?;
            erasures::start(&txn, &request.id, &cascade.to_string(), now).await?;
            outbox::enqueue(&txn, &envelope).await?;
            txn.commit().await?;
            self.relay.wake();
            tracing::info!(request_id = %request.id, cascade_id = %cascade, "erasure cascade started");
            return Ok(false);
        };
        let cascade: CascadeId = erasure
            .cascade_id
            .parse()
            .map_err(|_| Error::Internal("an erasure names no cascade".into()))?;
        let progress = match self.peers.cascade(request.tenant, cascade).await {
            Ok(progress) => progress,
            Err(e) => {
                tracing::warn!(request_id = %request.id, error = %e, "retention could not say where an erasure stands; asking again");
                return Ok(false);
            }
        };
        let Some(progress) = progress else {
            return Ok(false);
        };
        for part in &progress.parts {
            let row = PartRow {
                service: part.service.as_str().to_owned(),
                state: part.state.clone(),
                result_ct: None,
                error: part.error.clone(),
                attempts: part.attempts,
                next_try_at: now,
            };
            store::put_part(&self.db, &request.id, &row, now).await?;
        }
        let Some(receipt) = progress.receipt else {
            return Ok(false);
        };
        let txn = self.db.begin().await?;
        erasures::put_receipt(&txn, &request.id, receipt).await?;
        self.complete(
            &txn,
            request,
            format!("erased everywhere; cascade {cascade}, receipt attached"),
            now,
        )
        .await?;
        txn.commit().await?;
        tracing::info!(request_id = %request.id, cascade_id = %cascade, "erasure completed with its receipt");
        Ok(true)
    }

    /// Withdrawal of consent: the person's consents (to the purpose, or every one in
    /// force) recorded withdrawn and `consent.withdrawn` published, in one transaction.
    async fn withdraw_consent(&self, request: &Request, now: DateTime<Utc>) -> Result<bool> {
        let mut parts = self.parts_of(request, &[Service::Dsar], now).await?;
        let user = self
            .peers
            .account(request.tenant, &request.subject_email)
            .await;
        let user = match user {
            Ok(user) => user,
            Err(e) => {
                for part in &mut parts {
                    part.attempts += 1;
                    part.state = "failed".into();
                    part.error = format!("could not find the person's account: {e}");
                    store::put_part(&self.db, &request.id, part, now).await?;
                }
                return Ok(false);
            }
        };
        let by = Caller::service(Service::Dsar, request.tenant);
        let txn = self.db.begin().await?;
        let withdrawn = match user {
            Some(user) => {
                let purpose = (!request.purpose.is_empty()).then_some(request.purpose.as_str());
                self.consents
                    .withdraw(&txn, &by, request.tenant, user, purpose, &request.id, now)
                    .await?
            }
            // Without an account there is no consent on record to withdraw.
            None => Vec::new(),
        };
        for part in &mut parts {
            part.attempts += 1;
            part.state = "done".into();
            part.error.clear();
            store::put_part(&txn, &request.id, part, now).await?;
        }
        self.complete(
            &txn,
            request,
            format!("{} consents withdrawn", withdrawn.len()),
            now,
        )
        .await?;
        txn.commit().await?;
        self.relay.wake();
        Ok(true)
    }

    /// Marks `request` carried out, audited with `details`, in `txn`.
    async fn complete(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        request: &Request,
        details: String,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.requests.complete(txn, &request.id, now).await?;
        self.tell_subject(txn, request, now).await?;
        self.audit
            .append(
                txn,
                &AuditRecord::by_service(
                    Service::Dsar,
                    "dsar.complete",
                    Some(request.tenant),
                    request.id.clone(),
                )
                .with_details(details),
            )
            .await?;
        Ok(())
    }

    /// Queues a `dsar_update` (administrative) for the subject of `request`, when they
    /// have an account (after an erasure they have none), once per request. A lookup
    /// that fails skips the mail rather than hold the completion back.
    async fn tell_subject(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let Some(notifier) = &self.notifier else {
            return Ok(());
        };
        if request.kind == Kind::Erasure {
            return Ok(());
        }
        let user = match self
            .peers
            .account(request.tenant, &request.subject_email)
            .await
        {
            Ok(Some(user)) => user,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(request = %request.id, %error, "the subject's account cannot be looked up: no mail");
                return Ok(());
            }
        };
        let event_id = format!("dsar:{}:completed", request.id);
        let origin = crate::notifier::Origin {
            event_id: &event_id,
            tenant: request.tenant,
            breach_id: None,
        };
        let notice = crate::notifier::Notice {
            user_id: user.to_string(),
            template: "dsar_update".to_owned(),
            administrative: true,
            params: [
                ("request_id".to_owned(), request.id.clone()),
                ("status".to_owned(), "completed".to_owned()),
            ]
            .into(),
        };
        notifier.queue(txn, &origin, &notice, now).await?;
        notifier.wake();
        Ok(())
    }

    /// The archive of request `id`, opened, if it is kept.
    pub async fn archive(&self, id: &str) -> Result<Option<Vec<u8>>> {
        match store::export(&self.db, id).await? {
            Some((sealed, _)) => Ok(Some(self.key.open(&aad(id, "export"), &sealed)?)),
            None => Ok(None),
        }
    }

    /// Runs a round every second (and when woken) until `shutdown`.
    pub async fn run(self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            if let Err(e) = self.run_once(Utc::now()).await {
                tracing::warn!(error = %e, "carrying out data-subject requests failed; retrying");
            }
        }
    }
}
