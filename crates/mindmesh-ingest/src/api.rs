//! `IngestService`, the gRPC face: request validation, roles, and mapping between proto
//! messages and the store, the connectors and the sync engine.
//!
//! Roles: anyone signed in may list the connectors (P03: what each asks for is shown
//! before connecting); a tenant's admin connects, reads, syncs and disconnects its
//! integrations; the service role may also read, sync and notify (a webhook gateway).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use mindmesh_kit::activity::ActivityReporter;
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::grpc::{page_size, timestamp};
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result};
use mindmesh_proto::mindmesh::ingest::v1 as pb;
use pb::ingest_service_server::IngestService;
use tonic::{Request, Response, Status};

use crate::connectors::{self, Grant, Setup};
use crate::disconnect::Disconnection;
use crate::store::{Integration, Status as IntegrationStatus, Store};
use crate::sync::{Engine, Phase, Progress};

/// Most settings one integration may have.
const MAX_SETTINGS: usize = 32;
/// Longest setting value (a service-account key is a few KiB).
const MAX_SETTING_BYTES: usize = 16 * 1024;
/// Most skipped items `GetIntegration` shows.
const MAX_SKIPPED_SHOWN: usize = 100;
/// Longest credential handed over at connect time.
const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// The ingest service's gRPC face.
#[derive(Clone)]
pub struct IngestApi {
    ctx: ServiceContext,
    store: Store,
    engine: Arc<Engine>,
    setup: Setup,
    /// Integrations are connected and synced only for a live tenant (P08).
    tenants: Tenants,
    /// An admin connecting, syncing or disconnecting is activity (P09).
    activity: ActivityReporter,
    /// Syncs started, pseudonymized, for the analytics processor (P14).
    analytics: mindmesh_kit::analytics::Analytics,
}

impl IngestApi {
    /// The API over the service's store and sync engine, for live `tenants`, telling
    /// `analytics` of the syncs started.
    pub fn new(
        ctx: ServiceContext,
        store: Store,
        engine: Arc<Engine>,
        setup: Setup,
        tenants: Tenants,
        analytics: mindmesh_kit::analytics::Analytics,
    ) -> Self {
        IngestApi {
            analytics,
            activity: ActivityReporter::new(ctx.service, ctx.db.clone(), ctx.relay.clone()),
            ctx,
            store,
            engine,
            setup,
            tenants,
        }
    }
}

fn admin(caller: &Caller) -> Result<TenantId> {
    caller.require_any(&[Role::Admin])?;
    caller.tenant()
}

fn admin_or_service(caller: &Caller) -> Result<TenantId> {
    caller.require_any(&[Role::Admin, Role::Service])?;
    caller.tenant()
}

fn integration_id(value: &str) -> Result<IntegrationId> {
    IntegrationId::parse_field("integration_id", value)
}

fn to_proto(i: &Integration) -> pb::Integration {
    pb::Integration {
        id: i.id.to_string(),
        tenant_id: i.tenant.to_string(),
        kind: i.kind.clone(),
        display_name: i.display_name.clone(),
        status: match i.status {
            IntegrationStatus::Active => pb::IntegrationStatus::Active,
            IntegrationStatus::Failing => pb::IntegrationStatus::Failing,
            IntegrationStatus::Disconnected => pb::IntegrationStatus::Disconnected,
        } as i32,
        settings: i.settings.clone().into_iter().collect(),
        connected_at: Some(timestamp(i.connected_at)),
        last_synced_at: i.last_synced_at.map(timestamp),
        last_error: i.last_error.clone(),
    }
}

fn progress_to_proto(p: &Progress) -> pb::SyncProgress {
    pb::SyncProgress {
        phase: match p.phase {
            Phase::Queued => pb::SyncPhase::Unspecified,
            Phase::Principals => pb::SyncPhase::Principals,
            Phase::Documents => pb::SyncPhase::Documents,
            Phase::Deletions => pb::SyncPhase::Deletions,
            Phase::Done => pb::SyncPhase::Done,
            Phase::Failed => pb::SyncPhase::Failed,
        } as i32,
        done: p.done,
        total: p.total,
        created: p.created,
        updated: p.updated,
        deleted: p.deleted,
        skipped: p.skipped,
        error: p.error.clone(),
    }
}

fn check_connect(req: &pb::ConnectIntegrationRequest) -> Result<()> {
    mindmesh_kit::validate::line("display_name", &req.display_name, 200, true)?;
    if req.settings.len() > MAX_SETTINGS {
        return Err(Error::invalid(
            "settings",
            format!("at most {MAX_SETTINGS} settings"),
        ));
    }
    for (key, value) in &req.settings {
        if key.is_empty() || key.len() > 64 {
            return Err(Error::invalid("settings", "keys must be 1–64 bytes"));
        }
        if value.len() > MAX_SETTING_BYTES {
            return Err(Error::invalid(
                "settings",
                format!("values must be at most {MAX_SETTING_BYTES} bytes"),
            ));
        }
    }
    for (field, value) in [
        ("authorization_code", &req.authorization_code),
        ("redirect_uri", &req.redirect_uri),
        ("access_token", &req.access_token),
        ("refresh_token", &req.refresh_token),
    ] {
        if value.len() > MAX_CREDENTIAL_BYTES {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_CREDENTIAL_BYTES} bytes"),
            ));
        }
    }
    if !req.authorization_code.is_empty() && !req.access_token.is_empty() {
        return Err(Error::invalid(
            "authorization_code",
            "set either authorization_code or access_token, not both",
        ));
    }
    Ok(())
}

type ProgressStream =
    Pin<Box<dyn Stream<Item = std::result::Result<pb::SyncProgress, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn list_connectors(
        &self,
        request: Request<pb::ListConnectorsRequest>,
    ) -> std::result::Result<Response<pb::ListConnectorsResponse>, Status> {
        Caller::from_request(&request)?;
        Ok(Response::new(pb::ListConnectorsResponse {
            connectors: connectors::ALL
                .iter()
                .map(|c| pb::Connector {
                    kind: c.kind.to_owned(),
                    display_name: c.display_name.to_owned(),
                    scopes: c.scopes.iter().map(|s| (*s).to_owned()).collect(),
                    collects: c.collects.iter().map(|s| (*s).to_owned()).collect(),
                    setting_keys: c.setting_keys.iter().map(|s| (*s).to_owned()).collect(),
                    notes: c.notes.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
        }))
    }

    async fn connect_integration(
        &self,
        request: Request<pb::ConnectIntegrationRequest>,
    ) -> std::result::Result<Response<pb::ConnectIntegrationResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "write").await;
        let tenant = admin(&caller)?;
        self.tenants.require_live(tenant).await?;
        let req = request.into_inner();
        check_connect(&req)?;
        let info = connectors::info(&req.kind)?;
        let settings: BTreeMap<String, String> = req.settings.into_iter().collect();
        let grant = Grant {
            authorization_code: req.authorization_code,
            redirect_uri: req.redirect_uri,
            access_token: req.access_token,
            refresh_token: req.refresh_token,
        };
        let (settings, credentials) =
            connectors::connect(&self.setup, tenant, info, settings, grant).await?;
        let audit = AuditRecord::by(&caller, "integration.connect", Some(tenant), "")
            .with_details(format!("kind={}", info.kind));
        let integration = self
            .store
            .create(
                tenant,
                info.kind,
                req.display_name.trim(),
                &settings,
                &credentials,
                &audit,
            )
            .await?;
        // Its first sync is requested with it.
        self.engine.wake();
        tracing::info!(tenant_id = %tenant, integration_id = %integration.id, kind = info.kind, "integration connected");
        Ok(Response::new(pb::ConnectIntegrationResponse {
            integration: Some(to_proto(&integration)),
        }))
    }

    async fn get_integration(
        &self,
        request: Request<pb::GetIntegrationRequest>,
    ) -> std::result::Result<Response<pb::GetIntegrationResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let tenant = admin_or_service(&caller)?;
        let id = integration_id(&request.get_ref().integration_id)?;
        let integration = self.store.get(tenant, id).await?;
        let skipped = self.store.skipped(tenant, id, MAX_SKIPPED_SHOWN).await?;
        Ok(Response::new(pb::GetIntegrationResponse {
            integration: Some(to_proto(&integration)),
            skipped_items: skipped
                .into_iter()
                .map(|(external_id, reason)| pb::SkippedItem {
                    external_id,
                    reason,
                })
                .collect(),
        }))
    }

    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> std::result::Result<Response<pb::ListIntegrationsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "read").await;
        let tenant = admin_or_service(&caller)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size, 100, 1000)?;
        let after = if req.page_token.is_empty() {
            None
        } else {
            let id = IntegrationId::parse_field("page_token", &req.page_token)?;
            let last = self
                .store
                .get(tenant, id)
                .await
                .map_err(|_| Error::invalid("page_token", "does not come from this listing"))?;
            Some((last.connected_at, id))
        };
        let mut integrations = self.store.list(tenant, after, limit + 1).await?;
        let next_page_token = if integrations.len() as u64 > limit {
            integrations.truncate(limit as usize);
            integrations
                .last()
                .map(|i| i.id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListIntegrationsResponse {
            integrations: integrations.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn sync_integration(
        &self,
        request: Request<pb::SyncIntegrationRequest>,
    ) -> std::result::Result<Response<ProgressStream>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "write").await;
        let tenant = admin_or_service(&caller)?;
        self.tenants.require_live(tenant).await?;
        let req = request.into_inner();
        let id = integration_id(&req.integration_id)?;
        let integration = self.store.get(tenant, id).await?;
        if integration.status == IntegrationStatus::Disconnected {
            return Err(Error::FailedPrecondition("the integration is disconnected".into()).into());
        }
        let mut progress = self.engine.sync(tenant, id, req.full)?;
        if self.analytics.is_on() {
            // Who started it, when an account did (a service's sync has no actor).
            let actor = caller.subject.parse().ok();
            let analytics = self.analytics.clone();
            tokio::spawn(async move {
                analytics
                    .record(
                        tenant,
                        actor,
                        mindmesh_kit::analytics::Usage::SyncStarted,
                        chrono::Utc::now(),
                    )
                    .await;
            });
        }
        // Every change is sent; a slow reader sees the latest state, never a stale one.
        let stream = self.stream(move |tx| async move {
            loop {
                let current = progress.borrow_and_update().clone();
                if tx.send(Ok(progress_to_proto(&current))).await.is_err() || current.finished() {
                    return;
                }
                if progress.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn disconnect_integration(
        &self,
        request: Request<pb::DisconnectIntegrationRequest>,
    ) -> std::result::Result<Response<pb::DisconnectIntegrationResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        self.activity.saw(&caller, "write").await;
        let tenant = admin(&caller)?;
        let id = integration_id(&request.get_ref().integration_id)?;
        let cascade = Disconnection::new(&self.store, &self.engine, &self.setup)
            .run(&caller, tenant, id)
            .await?;
        Ok(Response::new(pb::DisconnectIntegrationResponse {
            cascade_id: cascade.to_string(),
        }))
    }

    async fn notify_change(
        &self,
        request: Request<pb::NotifyChangeRequest>,
    ) -> std::result::Result<Response<pb::NotifyChangeResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let tenant = admin_or_service(&caller)?;
        self.tenants.require_live(tenant).await?;
        let req = request.into_inner();
        let id = integration_id(&req.integration_id)?;
        if req.resource_id.len() > 1024 {
            return Err(Error::invalid("resource_id", "must be at most 1024 bytes").into());
        }
        let integration = self.store.get(tenant, id).await?;
        if integration.status == IntegrationStatus::Disconnected {
            return Err(Error::FailedPrecondition("the integration is disconnected".into()).into());
        }
        let scheduled = self.store.request_sync(tenant, id).await?;
        self.engine.wake();
        Ok(Response::new(pb::NotifyChangeResponse { scheduled }))
    }
}

impl IngestApi {
    /// A response stream fed by a tracked task writing into a small channel.
    fn stream<F, Fut>(&self, produce: F) -> ProgressStream
    where
        F: FnOnce(tokio::sync::mpsc::Sender<std::result::Result<pb::SyncProgress, Status>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        self.ctx.tasks.spawn(produce(tx));
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}
