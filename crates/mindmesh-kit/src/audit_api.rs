//! `mindmesh.audit.v1.Audit`, served once per process over the logs of every service
//! the process runs; the request names the service.

use std::collections::HashMap;

use mindmesh_proto::mindmesh::audit::v1 as pb;
use tonic::{Request, Response, Status};

use crate::audit::{AuditEntry, AuditLog};
use crate::auth::{Caller, Role};
use crate::error::Error;
use crate::grpc::{page_size, timestamp};
use crate::service::Service;

/// The Audit service over this process's logs.
#[derive(Clone)]
pub struct AuditApi {
    logs: HashMap<Service, AuditLog>,
}

impl AuditApi {
    /// Serves `logs`.
    pub fn new(logs: impl IntoIterator<Item = AuditLog>) -> Self {
        AuditApi {
            logs: logs.into_iter().map(|l| (l.service(), l)).collect(),
        }
    }

    fn log(&self, service: i32) -> Result<&AuditLog, Error> {
        let service = Service::from_proto(service)
            .ok_or_else(|| Error::invalid("service", "must name one of the five services"))?;
        self.logs.get(&service).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "the {service} service does not run in this process"
            ))
        })
    }
}

fn entry_to_proto(e: AuditEntry) -> pb::AuditEvent {
    pb::AuditEvent {
        sequence: e.seq,
        id: e.id,
        occurred_at: Some(timestamp(e.occurred_at)),
        actor: e.actor,
        actor_roles: e
            .actor_roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        action: e.action,
        tenant_id: e.tenant_id,
        subject_id: e.subject_id,
        details: e.details,
        prev_hash: e.prev_hash,
        hash: e.hash,
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        // Staff read tenant data only under consent (P11), which this shared service cannot
        // check; the tenant's admin can show them the log.
        caller.require_any(&[Role::Operator, Role::Admin])?;
        let req = request.into_inner();
        let log = self.log(req.service)?;
        let limit = page_size(req.page_size, 100, 1000)?;
        let after = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse::<u64>()
                .map_err(|_| Error::invalid("page_token", "is not a token this service issued"))?
        };
        // Operators see platform-wide entries (ids only); everyone else their tenant's.
        let tenant = if caller.has(Role::Operator) {
            None
        } else {
            Some(caller.tenant()?)
        };
        let entries = log.list(tenant, after, limit).await?;
        let next_page_token = match entries.last() {
            Some(last) if entries.len() as u64 == limit => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: entries.into_iter().map(entry_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        caller.require_any(&[Role::Operator, Role::Admin])?;
        let report = self.log(request.get_ref().service)?.verify().await?;
        Ok(Response::new(pb::VerifyAuditChainResponse {
            intact: report.first_broken.is_none(),
            entries_checked: report.entries_checked,
            first_broken_sequence: report.first_broken.unwrap_or(0),
        }))
    }
}
