//! Carrying a verified request out across the five services. Built so far: access and
//! portability — every service's `SubjectData.Export` ([`Exporter`]), each part
//! persisted as it answers, assembled into one sealed archive ([`crate::archive`]) once
//! every part is in. A service that fails or is down is asked again with backoff, and
//! the request names it meanwhile; an error is never taken for "no data", and the
//! request is never completed while a part is missing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result, Service};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::requests::{Request, Requests, Scope, Status};
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

/// Asks one service for what it holds about a person.
#[async_trait::async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// Every record `service` holds about the person with `email` in `tenant`.
    async fn export(
        &self,
        service: Service,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<ExportedRecord>>;
}

/// One service's part, as a request shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The service.
    pub service: Service,
    /// `pending`, `done` or `failed`.
    pub state: String,
    /// Why it failed, when it did.
    pub error: String,
    /// Tries so far.
    pub attempts: u32,
}

/// Carries verified requests out.
#[derive(Clone)]
pub struct Executor {
    db: DatabaseConnection,
    requests: Requests,
    exporter: Arc<dyn Exporter>,
    audit: AuditLog,
    /// Seals the services' answers and the archives.
    key: SecretKey,
    export_ttl: chrono::Duration,
    wake: Arc<Notify>,
}

fn aad(id: &str, what: &str) -> Vec<u8> {
    format!("mindmesh/dsar/{what}/{id}").into_bytes()
}

impl Executor {
    /// An executor over `db` and `requests`, asking services through `exporter`,
    /// archives kept `export_ttl`, sealed with a key of `master`.
    pub fn new(
        db: DatabaseConnection,
        requests: Requests,
        exporter: Arc<dyn Exporter>,
        audit: AuditLog,
        master: &SecretKey,
        export_ttl: chrono::Duration,
    ) -> Result<Self> {
        Ok(Executor {
            db,
            requests,
            exporter,
            audit,
            key: master.derive("mindmesh/dsar/exports/v1")?,
            export_ttl,
            wake: Arc::new(Notify::new()),
        })
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
                    service: p
                        .service
                        .parse()
                        .map_err(|_| Error::Internal("a part names no service".into()))?,
                    state: p.state,
                    error: p.error,
                    attempts: p.attempts,
                })
            })
            .collect()
    }

    /// One round at `now`: every request in progress gets its due parts asked, and
    /// those with every part in are completed; expired archives go. Returns how many
    /// requests completed.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut completed = 0;
        for id in store::with_status(&self.db, Status::InProgress.as_str()).await? {
            let request = self.requests.get(&Scope::All, &id).await?;
            if self.carry_out(&request, now).await? {
                completed += 1;
            }
        }
        store::delete_expired_exports(&self.db, now).await?;
        Ok(completed)
    }

    /// Asks the due parts of `request`; completes it once every part is in.
    async fn carry_out(&self, request: &Request, now: DateTime<Utc>) -> Result<bool> {
        let mut parts = store::parts(&self.db, &request.id).await?;
        if parts.is_empty() {
            for service in Service::ALL {
                let part = PartRow {
                    service: service.as_str().to_owned(),
                    state: "pending".into(),
                    result_ct: None,
                    error: String::new(),
                    attempts: 0,
                    next_try_at: now,
                };
                store::put_part(&self.db, &request.id, &part, now).await?;
                parts.push(part);
            }
        }
        for part in parts
            .iter_mut()
            .filter(|p| p.state != "done" && p.next_try_at <= now)
        {
            let service: Service = part
                .service
                .parse()
                .map_err(|_| Error::Internal("a part names no service".into()))?;
            part.attempts += 1;
            match self
                .exporter
                .export(service, request.tenant, &request.subject_email, &request.id)
                .await
            {
                Ok(records) => {
                    let json =
                        serde_json::to_vec(&records).map_err(|e| Error::Internal(e.to_string()))?;
                    part.result_ct = Some(self.key.seal(
                        &aad(&format!("{}/{}", request.id, part.service), "part"),
                        &json,
                    )?);
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
                    tracing::warn!(request_id = %request.id, service = %service, attempts = part.attempts, error = %e, "a service's part of a data-subject request failed; asking again later");
                }
            }
            store::put_part(&self.db, &request.id, part, now).await?;
        }
        if parts.iter().any(|p| p.state != "done") {
            return Ok(false);
        }
        let mut exported = Vec::new();
        for part in &parts {
            let service: Service = part
                .service
                .parse()
                .map_err(|_| Error::Internal("a part names no service".into()))?;
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
            exported.push((service, records));
        }
        let archive = crate::archive::build(&request.id, &request.subject_email, &exported, now)?;
        let size = archive.len();
        let sealed = self.key.seal(&aad(&request.id, "export"), &archive)?;
        let txn = self.db.begin().await?;
        store::put_export(&txn, &request.id, sealed, now, now + self.export_ttl).await?;
        store::clear_results(&txn, &request.id).await?;
        self.requests.complete(&txn, &request.id, now).await?;
        self.audit
            .append(
                &txn,
                &AuditRecord::by_service(
                    Service::Dsar,
                    "dsar.complete",
                    Some(request.tenant),
                    request.id.clone(),
                )
                .with_details(format!(
                    "{} archive of {size} bytes from five services",
                    request.kind.as_str()
                )),
            )
            .await?;
        txn.commit().await?;
        tracing::info!(request_id = %request.id, bytes = size, "data-subject request carried out");
        Ok(true)
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
