//! `mindmesh.subject.v1.SubjectData`, served once per process: the data-subject rights
//! (P12) that every service implements for what it holds about one person, so that dsar
//! can fan out. The request names the service; each service plugs in a
//! [`SubjectProvider`]. A service without one answers UNIMPLEMENTED.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mindmesh_proto::mindmesh::subject::v1 as pb;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Role};
use crate::error::{Error, Result};
use crate::grpc::timestamp;
use crate::ids::TenantId;
use crate::service::Service;

/// One record a service holds about a person, ready for an export.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectRecord {
    /// The kind of record, e.g. `account`, `principal`.
    pub kind: String,
    /// The record's id in its service.
    pub id: String,
    /// The record, decrypted, as JSON.
    pub json: serde_json::Value,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Corrections to a person's fields; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct Rectification {
    /// New first name.
    pub first_name: Option<String>,
    /// New last name.
    pub last_name: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// New picture URL.
    pub picture_url: Option<String>,
}

/// What one service does for data-subject rights. Every method defaults to
/// UNIMPLEMENTED, so a service states honestly what it does not do yet.
#[async_trait::async_trait]
pub trait SubjectProvider: Send + Sync + 'static {
    /// Every record the service holds about the person with `email` in `tenant`.
    async fn export(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<SubjectRecord>> {
        let _ = (caller, tenant, email, request_id);
        Err(Error::Unimplemented("SubjectData.Export for this service"))
    }

    /// Applies `changes` to the person's fields; returns how many records changed.
    async fn rectify(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        changes: Rectification,
    ) -> Result<u64> {
        let _ = (caller, tenant, email, request_id, changes);
        Err(Error::Unimplemented("SubjectData.Rectify for this service"))
    }

    /// Restricts (or lifts the restriction of) processing of the person's data.
    async fn restrict(
        &self,
        caller: &Caller,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        restricted: bool,
    ) -> Result<u64> {
        let _ = (caller, tenant, email, request_id, restricted);
        Err(Error::Unimplemented(
            "SubjectData.Restrict for this service",
        ))
    }
}

/// For a service that holds nothing a right touches (no personal field to rectify,
/// nothing sent on to processors to restrict): records `action` by `caller` for request
/// `request_id` of `tenant` in `audit`, with `why`, and answers that no record changed.
pub async fn nothing_to_change(
    audit: &crate::audit::AuditLog,
    caller: &Caller,
    action: &str,
    tenant: TenantId,
    request_id: &str,
    why: &str,
) -> Result<u64> {
    audit
        .record(
            &crate::audit::AuditRecord::by(caller, action, Some(tenant), request_id)
                .with_details(why.to_owned()),
        )
        .await?;
    Ok(0)
}

/// The action a restriction (or its end) is audited as.
pub fn restrict_action(restricted: bool) -> &'static str {
    if restricted {
        "subject.restrict"
    } else {
        "subject.unrestrict"
    }
}

/// The SubjectData service of this process.
#[derive(Clone, Default)]
pub struct SubjectDataApi {
    running: HashSet<Service>,
    providers: HashMap<Service, Arc<dyn SubjectProvider>>,
}

impl SubjectDataApi {
    /// Serves the services in `running`, with the providers given.
    pub fn new(
        running: impl IntoIterator<Item = Service>,
        providers: HashMap<Service, Arc<dyn SubjectProvider>>,
    ) -> Self {
        SubjectDataApi {
            running: running.into_iter().collect(),
            providers,
        }
    }

    /// The caller's tenant and the provider of the requested service.
    fn route<T>(
        &self,
        request: &Request<T>,
        service: i32,
        email: &str,
    ) -> Result<(Caller, TenantId, &dyn SubjectProvider)> {
        let caller = Caller::from_request(request)?;
        // Data-subject requests are carried out by dsar (service) or a tenant admin.
        caller.require_any(&[Role::Service, Role::Admin])?;
        let tenant = caller.tenant()?;
        let service = Service::from_proto(service)
            .ok_or_else(|| Error::invalid("service", "must name one of the five services"))?;
        if !self.running.contains(&service) {
            return Err(Error::FailedPrecondition(format!(
                "the {service} service does not run in this process"
            )));
        }
        if email.trim().is_empty() || !email.contains('@') {
            return Err(Error::invalid("subject_email", "must be an email address"));
        }
        let provider = self
            .providers
            .get(&service)
            .ok_or(Error::Unimplemented("SubjectData for this service"))?;
        Ok((caller, tenant, provider.as_ref()))
    }
}

#[tonic::async_trait]
impl pb::subject_data_server::SubjectData for SubjectDataApi {
    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::SubjectRecord>>, Status> {
        let req = request.get_ref();
        let (caller, tenant, provider) = self.route(&request, req.service, &req.subject_email)?;
        let service = req.service;
        let records = provider
            .export(&caller, tenant, &req.subject_email, &req.request_id)
            .await?;
        let items: Vec<Result<pb::SubjectRecord, Status>> = records
            .into_iter()
            .map(|r| {
                Ok(pb::SubjectRecord {
                    service,
                    kind: r.kind,
                    id: r.id,
                    json: r.json.to_string(),
                    updated_at: Some(timestamp(r.updated_at)),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn rectify(
        &self,
        request: Request<pb::RectifyRequest>,
    ) -> Result<Response<pb::RectifyResponse>, Status> {
        let req = request.get_ref();
        let (caller, tenant, provider) = self.route(&request, req.service, &req.subject_email)?;
        let changes = Rectification {
            first_name: req.first_name.clone(),
            last_name: req.last_name.clone(),
            email: req.email.clone(),
            picture_url: req.picture_url.clone(),
        };
        let records_changed = provider
            .rectify(
                &caller,
                tenant,
                &req.subject_email,
                &req.request_id,
                changes,
            )
            .await?;
        Ok(Response::new(pb::RectifyResponse { records_changed }))
    }

    async fn restrict(
        &self,
        request: Request<pb::RestrictRequest>,
    ) -> Result<Response<pb::RestrictResponse>, Status> {
        let req = request.get_ref();
        let (caller, tenant, provider) = self.route(&request, req.service, &req.subject_email)?;
        let records_changed = provider
            .restrict(
                &caller,
                tenant,
                &req.subject_email,
                &req.request_id,
                req.restricted,
            )
            .await?;
        Ok(Response::new(pb::RestrictResponse { records_changed }))
    }
}
