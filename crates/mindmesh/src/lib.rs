//! The one Mindmesh binary's library side: everything `main.rs` hands over to.
//!
//! [`serve`] runs any subset of the five services in one process on one gRPC port:
//! all of them on SQLite and the embedded bus (embedded mode, the default), or the ones
//! named with `--service` on PostgreSQL and NATS JetStream (distributed mode). The same
//! handlers, stores and clients run in both; only configuration differs.

#![forbid(unsafe_code)]

pub mod backup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mindmesh_kit::Service;
use mindmesh_kit::api_service;
use mindmesh_kit::audit_api::AuditApi;
use mindmesh_kit::auth::{Role, TokenIssuer};
use mindmesh_kit::bus::EventBus;
use mindmesh_kit::bus::embedded::EmbeddedBus;
use mindmesh_kit::bus::nats::NatsBus;
use mindmesh_kit::config::{BusKind, Config, Mode};
use mindmesh_kit::context::{ServiceContext, Shared};
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::keys::{KeystoreMigrator, Rotation};
use mindmesh_kit::module::{ServiceModule, Started};
use mindmesh_kit::peers::InProcess;
use mindmesh_kit::subject_api::SubjectDataApi;
use mindmesh_proto::mindmesh::audit::v1::audit_server::{self, AuditServer};
use mindmesh_proto::mindmesh::subject::v1::subject_data_server::{self, SubjectDataServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

/// The mode `services` implies: none named means all five, embedded.
pub fn mode_for(services: &[Service]) -> Mode {
    if services.is_empty() {
        Mode::Embedded
    } else {
        Mode::Distributed
    }
}

async fn open_bus(config: &Config, mode: Mode) -> anyhow::Result<Arc<dyn EventBus>> {
    let kind = match mode {
        Mode::Distributed => BusKind::Nats,
        Mode::Embedded => config.bus.kind,
    };
    Ok(match kind {
        BusKind::Nats => Arc::new(NatsBus::connect(&config.bus).await?),
        BusKind::Embedded => {
            let url = mindmesh_kit::db::sqlite_url(&config.data_dir.join("events.db"));
            Arc::new(EmbeddedBus::open(&url, config.bus.ack_wait()).await?)
        }
    })
}

/// Every service this binary can run, in [`Service::ALL`]'s order.
pub const MODULES: [&dyn ServiceModule; 5] = [
    &mindmesh_ingest::Ingest,
    &mindmesh_permissions::Permissions,
    &mindmesh_storage::Storage,
    &mindmesh_retention::Retention,
    &mindmesh_dsar::Dsar,
];

/// The modules of `services`, in [`MODULES`]' order.
fn modules(services: &[Service]) -> impl Iterator<Item = &'static dyn ServiceModule> + '_ {
    MODULES
        .into_iter()
        .filter(move |m| services.contains(&m.service()))
}

/// Opens `module`'s databases, readies and starts it.
async fn start_service(
    module: &dyn ServiceModule,
    shared: &Shared,
    routes: &mut RoutesBuilder,
) -> anyhow::Result<(ServiceContext, Started)> {
    let ctx = ServiceContext::open_module(module, shared).await?;
    module.prepare(&ctx).await?;
    let started = module.start(&ctx, routes)?;
    Ok((ctx, started))
}

/// Runs `services` (all five when empty) on `listener` until `shutdown` is cancelled,
/// then drains in-flight calls, stops consumers and relays, and returns.
pub async fn serve(
    config: Config,
    services: Vec<Service>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mode = mode_for(&services);
    let services = if services.is_empty() {
        Service::ALL.to_vec()
    } else {
        services
    };
    if mode == Mode::Embedded {
        mindmesh_kit::db::prepare_data_dir(&config.data_dir)?;
    }
    let keys = Arc::new(KeyMaterial::load(&config, mode)?);
    let config = Arc::new(config);
    let bus = open_bus(&config, mode)
        .await
        .context("opening the event bus")?;
    let mut shared = Shared::new(config.clone(), bus, keys);
    shared.shutdown = shutdown.clone();
    // The peers this process runs are called in-process (unless a URL is configured).
    shared.in_process = InProcess::new(&services, shutdown.clone());

    let mut routes = RoutesBuilder::default();
    let mut audit_logs = Vec::new();
    let mut health_names = Vec::new();
    let mut subjects = HashMap::new();
    let mut consumers = Vec::new();
    for module in modules(&services) {
        let service = module.service();
        let (ctx, started) = start_service(module, &shared, &mut routes)
            .await
            .with_context(|| format!("starting the {service} service"))?;
        audit_logs.push(ctx.audit.clone());
        health_names.push(service.as_str().to_owned());
        health_names.extend(module.grpc_services().iter().map(|s| (*s).to_owned()));
        if let Some(subject) = started.subject {
            subjects.insert(service, subject);
        }
        if let Some(consumer) = started.consumer {
            consumers.push((service, consumer));
        }
        tracing::info!(service = %service, "service started");
    }
    // One Audit and one SubjectData per process, over the services it runs.
    routes.add_service(api_service!(
        AuditServer::new(AuditApi::new(audit_logs)),
        shared
    ));
    let subject_api = SubjectDataApi::new(services.iter().copied(), subjects);
    routes.add_service(api_service!(SubjectDataServer::new(subject_api), shared));
    health_names.push(audit_server::SERVICE_NAME.to_owned());
    health_names.push(subject_data_server::SERVICE_NAME.to_owned());

    let routes = routes.routes();
    shared.in_process.install(routes.clone());
    let grace = Duration::from_secs(config.limits.shutdown_grace_secs);
    let tls = mindmesh_kit::tls::ServerTls::from_config(&config.tls)?;
    let served =
        mindmesh_kit::server::serve(listener, routes, health_names, shutdown.clone(), grace, tls)
            .await;
    // Whatever ended the server, stop the background work and wait for it.
    shutdown.cancel();
    shared.tasks.close();
    if tokio::time::timeout(grace, shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within the grace period");
    }
    for (service, consumer) in consumers {
        use std::sync::atomic::Ordering::Relaxed;
        tracing::info!(
            service = %service,
            delivered = consumer.delivered.load(Relaxed),
            handled = consumer.handled.load(Relaxed),
            retried = consumer.retried.load(Relaxed),
            dead_lettered = consumer.dead_lettered.load(Relaxed),
            "events consumed while serving"
        );
    }
    served?;
    Ok(())
}

/// Rotates the keys in the keystores of `services` (all five when empty), or of one
/// `tenant`, while the services keep serving: see [`Keystore::rotate`]. Returns what
/// each keystore did.
///
/// [`Keystore::rotate`]: mindmesh_kit::keys::Keystore::rotate
pub async fn rotate_keys(
    config: &Config,
    services: &[Service],
    tenant: Option<TenantId>,
) -> anyhow::Result<Vec<(Service, Rotation)>> {
    let services = if services.is_empty() {
        Service::ALL.to_vec()
    } else {
        services.to_vec()
    };
    let mode = if config.database.url.is_some() {
        Mode::Distributed
    } else {
        Mode::Embedded
    };
    let keys = KeyMaterial::load(config, mode)?;
    let mut reports = Vec::new();
    for service in services {
        let db = mindmesh_kit::db::open_and_migrate::<KeystoreMigrator>(
            &config.keystore_url(service),
            2,
        )
        .await
        .with_context(|| format!("opening the {service} keystore"))?;
        let report = keys
            .keystore(db.clone())
            .rotate(tenant)
            .await
            .with_context(|| format!("rotating the {service} keystore"))?;
        db.close().await?;
        tracing::info!(service = %service, ?report, "keys rotated");
        reports.push((service, report));
    }
    Ok(reports)
}

/// Creates (if needed) and migrates the databases and keystores of `services`.
pub async fn migrate(config: &Config, services: &[Service]) -> anyhow::Result<()> {
    let services = if services.is_empty() {
        Service::ALL.to_vec()
    } else {
        services.to_vec()
    };
    let max = config.database.max_connections;
    for module in modules(&services) {
        let service = module.service();
        let url = config.database_url(service);
        let db = mindmesh_kit::db::open_creating(&url, max).await?;
        mindmesh_kit::db::with_migration_lock(&url, async {
            module.migrate(&db).await?;
            mindmesh_kit::region::stamp_or_check(&db, service, &config.region).await
        })
        .await?;
        db.close().await?;
        let keys = mindmesh_kit::db::open_and_migrate::<KeystoreMigrator>(
            &config.keystore_url(service),
            max,
        )
        .await?;
        keys.close().await?;
        tracing::info!(service = %service, "migrated");
    }
    Ok(())
}

/// The public key this process signs attestations and receipts with (base64), and the
/// receipt log's note verifier key (`name+id+base64`), as `mindmesh keys public` prints
/// them. Distributed when `database.url` is set, else embedded (keys generated in the
/// data directory on first use).
pub fn receipt_keys(config: &Config) -> anyhow::Result<(String, String)> {
    use base64::Engine;
    let mode = if config.database.url.is_some() {
        Mode::Distributed
    } else {
        Mode::Embedded
    };
    let public = KeyMaterial::load(config, mode)?.signing.public_key();
    let name = mindmesh_retention::receipt_log::LogName::new(&config.retention.log_name)?;
    Ok((
        base64::engine::general_purpose::STANDARD.encode(public),
        mindmesh_retention::receipt_log::verifier_key(&name, &public),
    ))
}

/// Issues a token from the configured (or, in embedded mode, generated) signing key.
pub fn issue_token(
    config: &Config,
    subject: &str,
    tenant: Option<TenantId>,
    roles: &[Role],
    ttl: Duration,
) -> anyhow::Result<String> {
    let keys = KeyMaterial::load(config, Mode::Embedded)?;
    let Some(private) = &keys.jwt_private else {
        bail!("keys.jwt_private_key_file is needed to issue tokens");
    };
    if roles.is_empty() {
        bail!("give at least one --role");
    }
    if ttl.as_secs() == 0 || ttl.as_secs() > config.auth.max_token_lifetime_secs {
        bail!(
            "--ttl must be between 1 and auth.max_token_lifetime_secs ({} s): servers refuse longer-lived tokens",
            config.auth.max_token_lifetime_secs
        );
    }
    let needs_tenant = roles
        .iter()
        .any(|r| !matches!(r, Role::Operator | Role::Service));
    if needs_tenant && tenant.is_none() {
        bail!("roles other than operator and service need --tenant");
    }
    Ok(TokenIssuer::new(private, config.auth.issuer.clone()).issue(subject, tenant, roles, ttl)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_one_module_in_order() {
        let services: Vec<Service> = MODULES.iter().map(|m| m.service()).collect();
        assert_eq!(services, Service::ALL);
    }

    #[test]
    fn the_modules_serve_every_api_service_but_the_per_process_ones() {
        let mut served: Vec<&str> = MODULES
            .iter()
            .flat_map(|m| m.grpc_services().iter().copied())
            .chain([
                audit_server::SERVICE_NAME,
                subject_data_server::SERVICE_NAME,
            ])
            .collect();
        served.sort_unstable();
        let mut api = mindmesh_proto::SERVICE_NAMES.to_vec();
        api.sort_unstable();
        assert_eq!(served, api);
    }
}
