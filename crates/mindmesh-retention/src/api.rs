//! The gRPC face of the retention service.

use mindmesh_kit::Error;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::grpc::{from_timestamp, timestamp};
use mindmesh_kit::ids::{CascadeId, TenantId, UserId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::retention::v1 as pb;
use tonic::{Request, Response, Status};

use crate::activity::Activity;
use crate::ledger::{Cascade, CascadeKind, Ledger, ListPosition, Overall, Part, PartState};

/// `RetentionService`. Built: `RecordActivity`, `GetCascade`, `ListCascades`; the rest
/// answers UNIMPLEMENTED.
#[derive(Clone)]
pub struct RetentionApi {
    activity: Activity,
    ledger: Ledger,
    /// Activity is recorded only for a live tenant (P08).
    tenants: Tenants,
}

impl RetentionApi {
    /// The API over `activity` and the deletion `ledger`, for live `tenants`.
    pub fn new(activity: Activity, ledger: Ledger, tenants: Tenants) -> Self {
        RetentionApi {
            activity,
            ledger,
            tenants,
        }
    }
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
    }
}

fn cascade(c: &Cascade) -> pb::Cascade {
    let state = match c.overall() {
        Overall::Pending => CascadeState::Pending,
        Overall::Running => CascadeState::Running,
        Overall::Complete => CascadeState::Done,
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
        held_by: String::new(),
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

    async fn get_cascade(
        &self,
        request: Request<pb::GetCascadeRequest>,
    ) -> Result<Response<pb::GetCascadeResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let scope = ledger_scope(&caller)?;
        let id = CascadeId::parse_field("cascade_id", &request.get_ref().cascade_id)?;
        let found =
            self.ledger.get(scope, id).await?.ok_or_else(|| {
                Error::NotFound("cascade (not in the ledger, or not this tenant's)")
            })?;
        Ok(Response::new(pb::GetCascadeResponse {
            cascade: Some(cascade(&found)),
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
        let (page, next) = self.ledger.list(scope, limit, after).await?;
        Ok(Response::new(pb::ListCascadesResponse {
            cascades: page.iter().map(cascade).collect(),
            next_page_token: next.map(page_token).unwrap_or_default(),
        }))
    }
}
