//! The gRPC face of the retention service.

use mindmesh_kit::Error;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::grpc::{from_timestamp, timestamp};
use mindmesh_kit::holds::HeldScope;
use mindmesh_kit::ids::{CascadeId, HoldId, TenantId, UserId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::retention::v1 as pb;
use tonic::{Request, Response, Status};

use crate::activity::Activity;
use crate::backups::{BackupInfo, Backups};
use crate::holds::LegalHolds;
use crate::ledger::{Cascade, CascadeKind, Ledger, ListPosition, Overall, Part, PartState};
use crate::policy::{Policies, Policy};
use crate::receipts::{self, Attestation, Inclusion, Receipt};
use crate::sweep::Sweeper;

fn policy_pb(p: &Policy) -> pb::Policy {
    pb::Policy {
        inactivity_days: p.inactivity_days,
        warning_days: p.warning_days.clone(),
        archive_purge_days: p.archive_purge_days,
    }
}

/// `RetentionService`: policies and sweeps, legal holds, the ledger and its receipts,
/// backups (`RestoreBackup` needs the server stopped: it answers FAILED_PRECONDITION
/// naming `mindmesh backup restore`).
#[derive(Clone)]
pub struct RetentionApi {
    /// Account activity (P09).
    pub activity: Activity,
    /// The deletion ledger and its receipts.
    pub ledger: Ledger,
    /// Legal holds.
    pub holds: LegalHolds,
    /// Backups (embedded mode).
    pub backups: Backups,
    /// Tenant policies.
    pub policies: Policies,
    /// The inactivity sweep.
    pub sweeper: Sweeper,
    /// How long a cascade waits before it counts as stalled.
    pub stall_after: chrono::Duration,
    /// Activity is recorded only for a live tenant (P08).
    pub tenants: Tenants,
}

/// Whose cascades the caller may read: an operator's token without a tenant reads every
/// tenant's (`None`); a tenant admin or service, their tenant's.
fn ledger_scope(caller: &Caller) -> mindmesh_kit::Result<Option<TenantId>> {
    caller.require_any(&[Role::Admin, Role::Operator, Role::Service])?;
    if caller.has(Role::Operator) && caller.tenant.is_none() {
        return Ok(None);
    }
    caller.tenant().map(Some)
}

fn part_state(state: PartState) -> CascadeState {
    match state {
        PartState::Pending => CascadeState::Pending,
        PartState::Done => CascadeState::Done,
        PartState::Retained => CascadeState::RetainedWithGround,
        PartState::Failed => CascadeState::Failed,
    }
}

fn completion(part: &Part) -> pb::ServiceCompletion {
    pb::ServiceCompletion {
        service: part.service.to_proto() as i32,
        state: part_state(part.state) as i32,
        counts: part.counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        destroyed_key_ids: part.destroyed_key_ids.clone(),
        completed_at: part.reported_at.map(timestamp),
        signature: part.signature.clone(),
        public_key: String::new(),
        reason: part.reason.clone(),
    }
}

fn attestation(a: &Attestation) -> pb::ServiceCompletion {
    let state = if a.state == "retained" {
        CascadeState::RetainedWithGround
    } else {
        CascadeState::Done
    };
    pb::ServiceCompletion {
        service: a
            .service
            .parse::<mindmesh_kit::Service>()
            .map(|s| s.to_proto() as i32)
            .unwrap_or_default(),
        state: state as i32,
        counts: a.counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        destroyed_key_ids: a.destroyed_key_ids.clone(),
        completed_at: Some(timestamp(a.reported_at)),
        signature: a.signature.clone(),
        public_key: a.public_key.clone(),
        reason: String::new(),
    }
}

fn receipt(r: &Receipt) -> pb::Receipt {
    pb::Receipt {
        cascade_id: r.cascade_id.clone(),
        scope_kind: r.kind.clone(),
        subject_hash: r.subject_hash.clone(),
        attestations: r.attestations.iter().map(attestation).collect(),
        backups_expire_at: Some(timestamp(r.backups_expire_at)),
        issued_at: Some(timestamp(r.completed_at)),
        signature: r.signature.clone(),
        log_index: r.log_index,
        tenant_id: r.tenant_id.clone(),
        scope_id: r.scope_id.clone(),
        requested_at: Some(timestamp(r.requested_at)),
        version: r.version,
    }
}

fn required_time(
    field: &'static str,
    t: &Option<prost_types::Timestamp>,
) -> mindmesh_kit::Result<chrono::DateTime<chrono::Utc>> {
    let t = t
        .as_ref()
        .ok_or_else(|| Error::invalid(field, "is required"))?;
    from_timestamp(field, t)
}

/// A receipt as a client sent it back, to verify.
fn receipt_from(r: &pb::Receipt) -> mindmesh_kit::Result<Receipt> {
    let attestations = r
        .attestations
        .iter()
        .map(|a| {
            let service = mindmesh_kit::Service::from_proto(a.service).ok_or_else(|| {
                Error::invalid("receipt.attestations.service", "must name a service")
            })?;
            let state = match CascadeState::try_from(a.state) {
                Ok(CascadeState::Done) => "done",
                Ok(CascadeState::RetainedWithGround) => "retained",
                _ => {
                    return Err(Error::invalid(
                        "receipt.attestations.state",
                        "must be done or retained with ground",
                    ));
                }
            };
            Ok(Attestation {
                service: service.as_str().to_owned(),
                state: state.to_owned(),
                counts: a.counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                destroyed_key_ids: a.destroyed_key_ids.clone(),
                reported_at: required_time("receipt.attestations.completed_at", &a.completed_at)?,
                signature: a.signature.clone(),
                public_key: a.public_key.clone(),
            })
        })
        .collect::<mindmesh_kit::Result<Vec<_>>>()?;
    Ok(Receipt {
        version: r.version,
        cascade_id: r.cascade_id.clone(),
        tenant_id: r.tenant_id.clone(),
        kind: r.scope_kind.clone(),
        scope_id: r.scope_id.clone(),
        subject_hash: r.subject_hash.clone(),
        requested_at: required_time("receipt.requested_at", &r.requested_at)?,
        completed_at: required_time("receipt.issued_at", &r.issued_at)?,
        backups_expire_at: required_time("receipt.backups_expire_at", &r.backups_expire_at)?,
        log_index: r.log_index,
        attestations,
        signature: r.signature.clone(),
    })
}

/// A receipt and its inclusion proof as `GetCascade` answers them, as the file a
/// customer keeps and checks offline ([`receipts::verify`]).
pub fn receipt_file(
    r: &pb::Receipt,
    proof: &pb::InclusionProof,
) -> mindmesh_kit::Result<receipts::ReceiptFile> {
    Ok(receipts::ReceiptFile {
        receipt: receipt_from(r)?,
        inclusion: Inclusion {
            log_name: proof.log_name.clone(),
            tree_size: proof.tree_size,
            root_hash: proof.root_hash.clone(),
            audit_path: proof.audit_path.clone(),
            checkpoint: proof.checkpoint.clone(),
        },
    })
}

fn inclusion(i: Inclusion) -> pb::InclusionProof {
    pb::InclusionProof {
        log_name: i.log_name,
        tree_size: i.tree_size,
        root_hash: i.root_hash,
        audit_path: i.audit_path,
        checkpoint: i.checkpoint,
    }
}

fn cascade(c: &Cascade, stall_after: chrono::Duration) -> pb::Cascade {
    let state = match c.overall() {
        Overall::Pending => CascadeState::Pending,
        Overall::Running => CascadeState::Running,
        Overall::Complete => CascadeState::Done,
        Overall::Held => CascadeState::RetainedWithGround,
        Overall::Failed => CascadeState::Failed,
    };
    pb::Cascade {
        id: c.id.to_string(),
        scope_kind: c
            .kind
            .map(CascadeKind::as_str)
            .unwrap_or_default()
            .to_owned(),
        scope_id: c.scope_id.clone(),
        state: state as i32,
        services: c.parts.iter().map(completion).collect(),
        started_at: Some(timestamp(c.requested_at.unwrap_or(c.first_seen_at))),
        receipt: None,
        waiting_for: c
            .waiting_for()
            .into_iter()
            .map(|s| s.to_proto() as i32)
            .collect(),
        held_by: c.held_by().map(|h| h.to_string()).unwrap_or_default(),
        waiting_since: c.waiting_since().map(timestamp),
        stalled: c
            .waiting_since()
            .is_some_and(|since| chrono::Utc::now() - since > stall_after),
    }
}

/// A listing position as the API carries it (`page_token`): `<µs>.<cascade id>`.
fn parse_page_token(token: &str) -> mindmesh_kit::Result<Option<ListPosition>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token this service issued");
    let (us, id) = token.split_once('.').ok_or_else(bad)?;
    let us: i64 = us.parse().map_err(|_| bad())?;
    let at = chrono::DateTime::from_timestamp_micros(us).ok_or_else(bad)?;
    let id: CascadeId = id.parse().map_err(|_| bad())?;
    Ok(Some((at, id)))
}

fn page_token((at, id): ListPosition) -> String {
    format!("{}.{id}", at.timestamp_micros())
}

#[tonic::async_trait]
impl pb::retention_service_server::RetentionService for RetentionApi {
    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Result<Response<pb::RecordActivityResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let tenant = caller.tenant()?;
        let req = request.into_inner();
        let user = UserId::parse_field("user_id", &req.user_id)?;
        // Members record their own activity; admins and services anyone's in the tenant.
        if !(caller.has_any(&[Role::Admin, Role::Service])
            || (caller.has(Role::Member) && caller.subject == user.to_string()))
        {
            return Err(Status::permission_denied(
                "members may only record their own activity",
            ));
        }
        let now = chrono::Utc::now();
        let at = match &req.at {
            Some(t) => from_timestamp("at", t)?,
            None => now,
        };
        if at > now + chrono::Duration::minutes(5) {
            return Err(mindmesh_kit::Error::invalid("at", "must not be in the future").into());
        }
        mindmesh_kit::validate::not_too_early("at", at)?;
        self.tenants.require_live(tenant).await?;
        self.activity
            .touch(self.activity.db(), tenant, user, at)
            .await?;
        Ok(Response::new(pb::RecordActivityResponse {}))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Admin, Role::Service])?;
        let tenant = caller.tenant()?;
        self.tenants.require_live(tenant).await?;
        let policy = self.policies.get(tenant).await?;
        Ok(Response::new(pb::GetPolicyResponse {
            policy: Some(policy_pb(&policy)),
        }))
    }

    async fn set_policy(
        &self,
        request: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Admin])?;
        let tenant = caller.tenant()?;
        let given = request
            .into_inner()
            .policy
            .ok_or_else(|| Error::invalid("policy", "is required"))?;
        self.tenants.require_live(tenant).await?;
        let stored = self
            .policies
            .set(
                &caller,
                tenant,
                Policy {
                    inactivity_days: given.inactivity_days,
                    warning_days: given.warning_days,
                    archive_purge_days: given.archive_purge_days,
                },
            )
            .await?;
        Ok(Response::new(pb::SetPolicyResponse {
            policy: Some(policy_pb(&stored)),
        }))
    }

    async fn run_sweep(
        &self,
        request: Request<pb::RunSweepRequest>,
    ) -> Result<Response<pb::RunSweepResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Operator, Role::Admin, Role::Service])?;
        let now = chrono::Utc::now();
        let as_of = match &request.get_ref().as_of {
            Some(t) => from_timestamp("as_of", t)?,
            None => now,
        };
        // An operator sweeps every tenant, and may run the clock forward; anyone else
        // only their own tenant, as of now or before.
        let only = if caller.has(Role::Operator) && caller.tenant.is_none() {
            None
        } else {
            let tenant = caller.tenant()?;
            if as_of > now + chrono::Duration::minutes(5) {
                return Err(Error::invalid(
                    "as_of",
                    "only an operator may sweep ahead of the clock",
                )
                .into());
            }
            self.tenants.require_live(tenant).await?;
            Some(tenant)
        };
        let report = self.sweeper.sweep(as_of, only).await?;
        // An operator's sweep of every tenant also deletes what expired by `as_of`.
        let backups_deleted = if only.is_none() {
            self.ledger.forget_replays(as_of).await?;
            self.backups.prune(as_of).await?
        } else {
            0
        };
        Ok(Response::new(pb::RunSweepResponse {
            backups_deleted,
            warnings_sent: report.warnings_sent,
            accounts_deleted: report.cascades.len() as u64,
            cascade_ids: report.cascades.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn place_legal_hold(
        &self,
        request: Request<pb::PlaceLegalHoldRequest>,
    ) -> Result<Response<pb::PlaceLegalHoldResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Admin, Role::Operator])?;
        let req = request.into_inner();
        // An admin holds in their own tenant; an operator names the tenant.
        let tenant = caller.own_or_named_tenant(&req.tenant_id)?;
        let scope = match req.scope_kind.as_str() {
            "tenant" | "user" | "integration" => {
                HeldScope::parse(tenant, &req.scope_kind, &req.scope_id).ok_or_else(|| {
                    Error::invalid(
                        "scope_id",
                        "must be the held user's or integration's id (a UUID), or for a \
                         tenant the tenant's own id",
                    )
                })?
            }
            _ => {
                return Err(Error::invalid(
                    "scope_kind",
                    "must be \"tenant\", \"user\" or \"integration\"",
                )
                .into());
            }
        };
        self.tenants.require_live(tenant).await?;
        let hold = self
            .holds
            .place(&caller, tenant, scope, &req.reason)
            .await?;
        let in_force = self
            .holds
            .in_force_within(hold, crate::holds::IN_FORCE_WITHIN)
            .await?;
        if !in_force {
            tracing::warn!(tenant_id = %tenant, hold_id = %hold, "legal hold placed, not yet confirmed by every service");
        }
        Ok(Response::new(pb::PlaceLegalHoldResponse {
            hold_id: hold.to_string(),
            in_force,
        }))
    }

    async fn release_legal_hold(
        &self,
        request: Request<pb::ReleaseLegalHoldRequest>,
    ) -> Result<Response<pb::ReleaseLegalHoldResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Admin, Role::Operator])?;
        let scope = if caller.has(Role::Operator) && caller.tenant.is_none() {
            None
        } else {
            Some(caller.tenant()?)
        };
        let id = HoldId::parse_field("hold_id", &request.get_ref().hold_id)?;
        self.holds.release(&caller, scope, id).await?;
        let released_everywhere = self
            .holds
            .released_within(id, crate::holds::IN_FORCE_WITHIN)
            .await?;
        Ok(Response::new(pb::ReleaseLegalHoldResponse {
            released_everywhere,
        }))
    }

    async fn get_cascade(
        &self,
        request: Request<pb::GetCascadeRequest>,
    ) -> Result<Response<pb::GetCascadeResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = ledger_scope(&caller)?;
        let id = CascadeId::parse_field("cascade_id", &request.get_ref().cascade_id)?;
        let found =
            self.ledger.get(scope, id).await?.ok_or_else(|| {
                Error::NotFound("cascade (not in the ledger yet — it appears when its first event arrives — or not this tenant's)")
            })?;
        let mut answer = cascade(&found, self.stall_after);
        let mut proof = None;
        if let Some(issued) = self.ledger.receipt(scope, id).await? {
            let notary = self.ledger.notary();
            proof = Some(inclusion(
                notary.inclusion(self.ledger.db(), &issued).await?,
            ));
            answer.receipt = Some(receipt(&issued));
        }
        Ok(Response::new(pb::GetCascadeResponse {
            cascade: Some(answer),
            inclusion: proof,
        }))
    }

    async fn list_cascades(
        &self,
        request: Request<pb::ListCascadesRequest>,
    ) -> Result<Response<pb::ListCascadesResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = ledger_scope(&caller)?;
        let req = request.into_inner();
        let limit = mindmesh_kit::grpc::page_size(req.page_size, 100, 1000)?;
        let after = parse_page_token(&req.page_token)?;
        let stalled_before = req
            .stalled_only
            .then(|| chrono::Utc::now() - self.stall_after);
        let (page, next) = self
            .ledger
            .list(scope, limit, after, stalled_before)
            .await?;
        Ok(Response::new(pb::ListCascadesResponse {
            cascades: page.iter().map(|c| cascade(c, self.stall_after)).collect(),
            next_page_token: next.map(page_token).unwrap_or_default(),
        }))
    }

    async fn verify_receipt(
        &self,
        request: Request<pb::VerifyReceiptRequest>,
    ) -> Result<Response<pb::VerifyReceiptResponse>, Status> {
        // Anyone signed in may check a receipt: it carries no personal data, and the
        // answer says only whether it is genuine.
        Caller::from_request(&request)?;
        let given = request
            .get_ref()
            .receipt
            .as_ref()
            .ok_or_else(|| Error::invalid("receipt", "is required"))?;
        let given = receipt_from(given)?;
        let notary = self.ledger.notary();
        let signature_valid = receipts::signature_valid(&given, &notary.public_key());
        let attestations_valid = receipts::attestations_valid(&given);
        let (included, proof) = notary.logged(self.ledger.db(), &given).await?;
        Ok(Response::new(pb::VerifyReceiptResponse {
            signature_valid,
            included,
            audit_path: proof.audit_path,
            root_hash: proof.root_hash,
            tree_size: proof.tree_size,
            attestations_valid,
            checkpoint: proof.checkpoint,
        }))
    }

    async fn create_backup(
        &self,
        request: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<pb::CreateBackupResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Operator])?;
        let backup = self
            .backups
            .create(AuditRecord::by(
                &caller,
                "backup.create",
                None,
                "on request",
            ))
            .await?;
        Ok(Response::new(pb::CreateBackupResponse {
            backup: Some(backup_pb(&backup)),
        }))
    }

    async fn list_backups(
        &self,
        request: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Operator])?;
        Ok(Response::new(pb::ListBackupsResponse {
            backups: self.backups.list().await?.iter().map(backup_pb).collect(),
        }))
    }

    async fn restore_backup(
        &self,
        request: Request<pb::RestoreBackupRequest>,
    ) -> Result<Response<pb::RestoreBackupResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Operator])?;
        let id = &request.get_ref().backup_id;
        if !self.backups.list().await?.iter().any(|b| &b.id == id) {
            return Err(Error::NotFound("backup").into());
        }
        Err(Error::FailedPrecondition(format!(
            "a backup is restored with the server stopped: stop it, run `mindmesh backup \
             restore {id}` (it restores, then erases again everything deleted since, before \
             anything serves), then start it"
        ))
        .into())
    }
}

fn backup_pb(b: &BackupInfo) -> pb::Backup {
    pb::Backup {
        id: b.id.clone(),
        created_at: Some(timestamp(b.created_at)),
        expires_at: Some(timestamp(b.expires_at)),
        size_bytes: b.size_bytes,
    }
}
