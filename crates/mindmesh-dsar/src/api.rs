//! The gRPC face of the dsar service: `SubmitRequest`, `VerifyRequest`, `GetRequest`
//! (with each service's part, and an erasure's cascade and receipt), `ListRequests`,
//! `ExtendDeadline`, `DownloadExport`.

use mindmesh_kit::Error;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::grpc::timestamp;
use mindmesh_kit::tenants::{AskPermissions, Tenants};
use mindmesh_proto::mindmesh::dsar::v1 as pb;
use tonic::{Request, Response, Status};

use crate::execution::{Executor, Part};
use crate::requests::{self, Kind, NewRequest, Requests, Scope};

/// `DsarService`.
pub struct DsarApi {
    /// The requests.
    pub requests: Requests,
    /// Carries verified requests out, and keeps their archives.
    pub executor: Executor,
    /// Who an email belongs to (a member files only about themselves).
    pub people: AskPermissions,
    /// Requests are filed only in a live tenant (P08).
    pub tenants: Tenants,
}

fn kind(value: i32) -> mindmesh_kit::Result<Kind> {
    match pb::RequestKind::try_from(value) {
        Ok(pb::RequestKind::Access) => Ok(Kind::Access),
        Ok(pb::RequestKind::Rectification) => Ok(Kind::Rectification),
        Ok(pb::RequestKind::Erasure) => Ok(Kind::Erasure),
        Ok(pb::RequestKind::Restriction) => Ok(Kind::Restriction),
        Ok(pb::RequestKind::Portability) => Ok(Kind::Portability),
        Ok(pb::RequestKind::WithdrawConsent) => Ok(Kind::WithdrawConsent),
        _ => Err(Error::invalid(
            "kind",
            "must be access, rectification, erasure, restriction, portability or withdraw_consent",
        )),
    }
}

fn kind_pb(k: Kind) -> pb::RequestKind {
    match k {
        Kind::Access => pb::RequestKind::Access,
        Kind::Rectification => pb::RequestKind::Rectification,
        Kind::Erasure => pb::RequestKind::Erasure,
        Kind::Restriction => pb::RequestKind::Restriction,
        Kind::Portability => pb::RequestKind::Portability,
        Kind::WithdrawConsent => pb::RequestKind::WithdrawConsent,
    }
}

fn status_pb(s: requests::Status) -> pb::RequestStatus {
    use requests::Status as S;
    match s {
        S::Received => pb::RequestStatus::Received,
        S::AwaitingVerification => pb::RequestStatus::AwaitingVerification,
        S::Verified => pb::RequestStatus::Verified,
        S::InProgress => pb::RequestStatus::InProgress,
        S::Completed => pb::RequestStatus::Completed,
        S::Rejected => pb::RequestStatus::Rejected,
        S::Failed => pb::RequestStatus::Failed,
    }
}

fn request_pb(r: &requests::Request, now: chrono::DateTime<chrono::Utc>) -> pb::DataSubjectRequest {
    pb::DataSubjectRequest {
        id: r.id.clone(),
        kind: kind_pb(r.kind) as i32,
        status: status_pb(r.status) as i32,
        submitted_at: Some(timestamp(r.submitted_at)),
        due_at: Some(timestamp(r.due_at)),
        completed_at: r.completed_at.map(timestamp),
        overdue: r.overdue(now),
        extension_reason: r.extension_reason.clone(),
        rejection_reason: r.rejection_reason.clone(),
        subject_email: r.subject_email.clone(),
        attempts_left: r.attempts_left,
        code_expires_at: r.code_expires_at.map(timestamp),
        parts: Vec::new(),
        lift: r.lift,
        purpose: r.purpose.clone(),
        cascade_id: String::new(),
        receipt: None,
    }
}

fn part_pb(p: &Part) -> pb::ServicePart {
    pb::ServicePart {
        service: p.service.to_proto() as i32,
        state: p.state.clone(),
        error: p.error.clone(),
        attempts: p.attempts,
    }
}

/// Bytes of one `DownloadExport` chunk.
const CHUNK: usize = 64 * 1024;

fn rectification(p: Option<pb::RectificationPayload>) -> Option<serde_json::Value> {
    let p = p?;
    let mut fields = serde_json::Map::new();
    for (name, value) in [
        ("first_name", p.first_name),
        ("last_name", p.last_name),
        ("email", p.email),
        ("picture_url", p.picture_url),
    ] {
        if let Some(v) = value {
            fields.insert(name.to_owned(), serde_json::Value::String(v));
        }
    }
    Some(serde_json::Value::Object(fields))
}

fn id_field(value: &str) -> mindmesh_kit::Result<&str> {
    uuid::Uuid::parse_str(value)
        .map(|_| value)
        .map_err(|_| Error::invalid("request_id", "is not a request id"))
}

#[tonic::async_trait]
impl pb::dsar_service_server::DsarService for DsarApi {
    async fn submit_request(
        &self,
        request: Request<pb::SubmitRequestRequest>,
    ) -> Result<Response<pb::SubmitRequestResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Member, Role::Admin, Role::Operator])?;
        let req = request.into_inner();
        // An operator acting as the DPO names the tenant; anyone else files in their own.
        let tenant = caller.own_or_named_tenant(&req.tenant_id)?;
        let kind = kind(req.kind)?;
        if req.lift && kind != Kind::Restriction {
            return Err(Error::invalid("lift", "applies to a restriction request only").into());
        }
        if !req.purpose.is_empty() && kind != Kind::WithdrawConsent {
            return Err(
                Error::invalid("purpose", "applies to a withdrawal of consent only").into(),
            );
        }
        let new = NewRequest {
            kind,
            subject_email: req.subject_email,
            requester_email: req.requester_email,
            rectification: rectification(req.rectification),
            lift: req.lift,
            purpose: req.purpose,
        };
        let subject = requests::email("subject_email", &new.subject_email)?;
        self.tenants.require_live(tenant).await?;
        // A member files about themselves only: the subject is the account they sign in
        // with.
        if !caller.has_any(&[Role::Admin, Role::Operator]) {
            let owner = self.people.user_by_email(tenant, &subject).await?;
            if owner.map(|u| u.to_string()) != Some(caller.subject.clone()) {
                return Err(Error::PermissionDenied(
                    "subject_email: a member files requests about themselves only".into(),
                )
                .into());
            }
        }
        let now = chrono::Utc::now();
        let filed = self.requests.submit(&caller, tenant, new, now).await?;
        Ok(Response::new(pb::SubmitRequestResponse {
            request: Some(request_pb(&filed, now)),
        }))
    }

    async fn verify_request(
        &self,
        request: Request<pb::VerifyRequestRequest>,
    ) -> Result<Response<pb::VerifyRequestResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = Scope::of(&caller)?;
        let req = request.into_inner();
        if req.code.trim().is_empty() || req.code.len() > 32 {
            return Err(Error::invalid("code", "must be the code from the mail").into());
        }
        let now = chrono::Utc::now();
        let verified = self
            .requests
            .verify(&caller, &scope, id_field(&req.request_id)?, &req.code, now)
            .await?;
        self.executor.wake();
        Ok(Response::new(pb::VerifyRequestResponse {
            request: Some(request_pb(&verified, now)),
        }))
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::GetRequestResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = Scope::of(&caller)?;
        let found = self
            .requests
            .get(&scope, id_field(&request.get_ref().request_id)?)
            .await?;
        let mut answer = request_pb(&found, chrono::Utc::now());
        answer.parts = self
            .executor
            .parts(&found.id)
            .await?
            .iter()
            .map(part_pb)
            .collect();
        if let Some((cascade, receipt)) = self.executor.erasure(&found.id).await? {
            answer.cascade_id = cascade;
            answer.receipt = match receipt {
                Some(bytes) => Some(
                    <mindmesh_proto::mindmesh::retention::v1::Receipt as prost::Message>::decode(
                        bytes.as_slice(),
                    )
                    .map_err(|_| Error::Internal("a stored receipt does not decode".into()))?,
                ),
                None => None,
            };
        }
        Ok(Response::new(pb::GetRequestResponse {
            request: Some(answer),
        }))
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = Scope::of(&caller)?;
        let req = request.into_inner();
        let limit = mindmesh_kit::grpc::page_size(req.page_size, 100, 1000)?;
        let offset = match req.page_token.as_str() {
            "" => 0,
            token => token
                .strip_prefix("o")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::invalid("page_token", "is not a token this service issued")
                })?,
        };
        let now = chrono::Utc::now();
        let (page, next) = self
            .requests
            .list(&scope, now, offset, usize::try_from(limit).unwrap_or(1000))
            .await?;
        Ok(Response::new(pb::ListRequestsResponse {
            requests: page.iter().map(|r| request_pb(r, now)).collect(),
            next_page_token: next.map(|n| format!("o{n}")).unwrap_or_default(),
        }))
    }

    async fn extend_deadline(
        &self,
        request: Request<pb::ExtendDeadlineRequest>,
    ) -> Result<Response<pb::ExtendDeadlineResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = Scope::of(&caller)?;
        let req = request.into_inner();
        let now = chrono::Utc::now();
        let extended = self
            .requests
            .extend(
                &caller,
                &scope,
                id_field(&req.request_id)?,
                req.days,
                &req.reason,
                now,
            )
            .await?;
        Ok(Response::new(pb::ExtendDeadlineResponse {
            request: Some(request_pb(&extended, now)),
        }))
    }

    async fn download_export(
        &self,
        request: Request<pb::DownloadExportRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::ExportChunk>>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = Scope::of(&caller)?;
        let found = self
            .requests
            .get(&scope, id_field(&request.get_ref().request_id)?)
            .await?;
        // Only who filed it: the verified subject, or the admin or DPO for them.
        if found.submitted_by != caller.subject {
            return Err(Error::PermissionDenied(
                "only who filed the request downloads its export".into(),
            )
            .into());
        }
        if !matches!(found.kind, Kind::Access | Kind::Portability)
            || found.status != requests::Status::Completed
        {
            return Err(Error::FailedPrecondition(format!(
                "the request is a {} request, {}: only a completed access or portability \
                 request has an export",
                found.kind.as_str(),
                found.status.as_str()
            ))
            .into());
        }
        let archive = self
            .executor
            .archive(&found.id)
            .await?
            .ok_or(Error::NotFound(
                "export (deleted after dsar.export_ttl_secs)",
            ))?;
        self.requests
            .downloaded(&caller, &found, archive.len())
            .await?;
        let total = archive.len() as u64;
        let chunks: Vec<Result<pb::ExportChunk, Status>> = archive
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, data)| {
                Ok(pb::ExportChunk {
                    data: data.to_vec(),
                    offset: (i * CHUNK) as u64,
                    total_size: total,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}
