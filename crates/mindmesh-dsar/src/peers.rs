//! How dsar asks the other services for what they hold about a person: their
//! `SubjectData.Export`, over the peer channel of each (in-process when this process
//! runs the service, else the URL in `peers.<service>_url`), with dsar's service token.

use futures::StreamExt as _;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::grpc::{from_timestamp, peer_error};
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result, Service};
use mindmesh_proto::mindmesh::subject::v1 as pb;

use crate::execution::{ExportedRecord, Exporter};

/// Asks each service over gRPC.
pub struct PeerExporter {
    ctx: ServiceContext,
}

impl PeerExporter {
    /// Asks with `ctx`'s service token.
    pub fn new(ctx: ServiceContext) -> Self {
        PeerExporter { ctx }
    }

    fn client(
        &self,
        service: Service,
    ) -> Result<pb::subject_data_client::SubjectDataClient<mindmesh_kit::peers::PeerChannel>> {
        let peers = &self.ctx.config.peers;
        let (setting, url) = match service {
            Service::Ingest => ("peers.ingest_url", peers.ingest_url.as_deref()),
            Service::Permissions => ("peers.permissions_url", peers.permissions_url.as_deref()),
            Service::Storage => ("peers.storage_url", peers.storage_url.as_deref()),
            Service::Retention => ("peers.retention_url", peers.retention_url.as_deref()),
            Service::Dsar => ("(this process)", None),
        };
        let channel = self.ctx.peer(service, setting, url)?;
        Ok(pb::subject_data_client::SubjectDataClient::new(channel))
    }
}

#[async_trait::async_trait]
impl Exporter for PeerExporter {
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
            .client(service)?
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
}
