//! How dsar asks the other services to carry a request out: their `SubjectData`
//! (`Export`, `Rectify`, `Restrict`), the permissions service for the account with an
//! email, and retention for where an erasure's cascade stands — each over the peer
//! channel of the service (in-process when this process runs it, else the URL in
//! `peers.<service>_url`), with dsar's service token.

use futures::StreamExt as _;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::grpc::{from_timestamp, peer_error};
use mindmesh_kit::ids::{CascadeId, TenantId, UserId};
use mindmesh_kit::peers::PeerChannel;
use mindmesh_kit::subject_api::Rectification;
use mindmesh_kit::tenants::AskPermissions;
use mindmesh_kit::{Error, Result, Service};
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::retention::v1 as retention;
use mindmesh_proto::mindmesh::subject::v1 as pb;
use prost::Message as _;

use crate::execution::{CascadeProgress, ExportedRecord, Part, Peers};

/// Asks each service over gRPC.
pub struct PeerServices {
    ctx: ServiceContext,
    people: AskPermissions,
}

impl PeerServices {
    /// Asks with `ctx`'s service token.
    pub fn new(ctx: ServiceContext) -> Result<Self> {
        Ok(PeerServices {
            people: AskPermissions::new(ctx.clone())?,
            ctx,
        })
    }

    fn channel(&self, service: Service) -> Result<PeerChannel> {
        let peers = &self.ctx.config.peers;
        let (setting, url) = match service {
            Service::Ingest => ("peers.ingest_url", peers.ingest_url.as_deref()),
            Service::Permissions => ("peers.permissions_url", peers.permissions_url.as_deref()),
            Service::Storage => ("peers.storage_url", peers.storage_url.as_deref()),
            Service::Retention => ("peers.retention_url", peers.retention_url.as_deref()),
            Service::Dsar => ("(this process)", None),
        };
        self.ctx.peer(service, setting, url)
    }

    fn subject(
        &self,
        service: Service,
    ) -> Result<pb::subject_data_client::SubjectDataClient<PeerChannel>> {
        Ok(pb::subject_data_client::SubjectDataClient::new(
            self.channel(service)?,
        ))
    }
}

fn part_state(state: i32) -> &'static str {
    match CascadeState::try_from(state) {
        Ok(CascadeState::Done) => "done",
        Ok(CascadeState::RetainedWithGround) => "retained",
        Ok(CascadeState::Failed) => "failed",
        _ => "pending",
    }
}

#[async_trait::async_trait]
impl Peers for PeerServices {
    async fn export(
        &self,
        service: Service,
        tenant: TenantId,
        email: &str,
        request_id: &str,
    ) -> Result<Vec<ExportedRecord>> {
        let request = self.ctx.service_request(
            tenant,
            pb::ExportRequest {
                service: service.to_proto() as i32,
                subject_email: email.to_owned(),
                request_id: request_id.to_owned(),
            },
        )?;
        let name = service.as_str();
        let mut stream = self
            .subject(service)?
            .export(request)
            .await
            .map_err(|s| peer_error(name, &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(record) = stream.next().await {
            let record = record.map_err(|s| peer_error(name, &s))?;
            let json = serde_json::from_str(&record.json).map_err(|_| {
                Error::Internal(format!(
                    "the {name} service exported a record that is not JSON"
                ))
            })?;
            let updated_at = match &record.updated_at {
                Some(t) => from_timestamp("updated_at", t)?,
                None => chrono::Utc::now(),
            };
            out.push(ExportedRecord {
                kind: record.kind,
                id: record.id,
                json,
                updated_at,
            });
        }
        Ok(out)
    }

    async fn rectify(
        &self,
        service: Service,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        changes: &Rectification,
    ) -> Result<u64> {
        let request = self.ctx.service_request(
            tenant,
            pb::RectifyRequest {
                service: service.to_proto() as i32,
                subject_email: email.to_owned(),
                request_id: request_id.to_owned(),
                first_name: changes.first_name.clone(),
                last_name: changes.last_name.clone(),
                email: changes.email.clone(),
                picture_url: changes.picture_url.clone(),
            },
        )?;
        Ok(self
            .subject(service)?
            .rectify(request)
            .await
            .map_err(|s| peer_error(service.as_str(), &s))?
            .into_inner()
            .records_changed)
    }

    async fn restrict(
        &self,
        service: Service,
        tenant: TenantId,
        email: &str,
        request_id: &str,
        restricted: bool,
    ) -> Result<u64> {
        let request = self.ctx.service_request(
            tenant,
            pb::RestrictRequest {
                service: service.to_proto() as i32,
                subject_email: email.to_owned(),
                request_id: request_id.to_owned(),
                restricted,
            },
        )?;
        Ok(self
            .subject(service)?
            .restrict(request)
            .await
            .map_err(|s| peer_error(service.as_str(), &s))?
            .into_inner()
            .records_changed)
    }

    async fn account(&self, tenant: TenantId, email: &str) -> Result<Option<UserId>> {
        self.people.user_by_email(tenant, email).await
    }

    async fn cascade(
        &self,
        tenant: TenantId,
        cascade: CascadeId,
    ) -> Result<Option<CascadeProgress>> {
        let request = self.ctx.service_request(
            tenant,
            retention::GetCascadeRequest {
                cascade_id: cascade.to_string(),
            },
        )?;
        let answer = retention::retention_service_client::RetentionServiceClient::new(
            self.channel(Service::Retention)?,
        )
        .get_cascade(request)
        .await;
        let answer = match answer {
            Ok(answer) => answer.into_inner(),
            // Not in the ledger until its first event arrives there.
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(peer_error("retention", &s)),
        };
        let cascade = answer.cascade.ok_or_else(|| {
            Error::Internal("retention answered GetCascade without the cascade".into())
        })?;
        let parts = cascade
            .services
            .iter()
            .map(|c| {
                Ok(Part {
                    service: Service::from_proto(c.service).ok_or_else(|| {
                        Error::Internal("retention named a cascade part of no service".into())
                    })?,
                    state: part_state(c.state).to_owned(),
                    error: c.reason.clone(),
                    attempts: 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(CascadeProgress {
            parts,
            receipt: cascade.receipt.map(|r| r.encode_to_vec()),
        }))
    }
}
