//! The gRPC face of the retention service.

use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::grpc::from_timestamp;
use mindmesh_kit::ids::UserId;
use mindmesh_kit::tenants::Tenants;
use mindmesh_proto::mindmesh::retention::v1 as pb;
use tonic::{Request, Response, Status};

use crate::activity::Activity;

/// `RetentionService`. Built: `RecordActivity`; the rest answers UNIMPLEMENTED.
#[derive(Clone)]
pub struct RetentionApi {
    activity: Activity,
    /// Activity is recorded only for a live tenant (P08).
    tenants: Tenants,
}

impl RetentionApi {
    /// The API over `activity`, for live `tenants`.
    pub fn new(activity: Activity, tenants: Tenants) -> Self {
        RetentionApi { activity, tenants }
    }
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
}
