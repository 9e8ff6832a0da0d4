//! The dsar service: data-subject requests, exports, consents, communication preferences, processor switches and breach notices (P12–P15).
//!
//! Reading order: [`api`] (the gRPC face) → [`requests`] (filing a request, verifying
//! the requester's identity with a mailed code, deadlines) → [`execution`] (carrying a
//! verified request out across the services, through [`peers`]) → [`archive`] (the
//! export) → [`privacy_api`] (the settings' gRPC face) → [`settings`] (processor switches,
//! mail preferences) → [`consents`] → [`notifier`] (every mail the service sends, once)
//! → [`unsubscribe`] and [`unsubscribe_page`] (the link in marketing mail) → [`breach`]
//! (breach notices) → [`mail`] (how mails leave: a mailbox directory or SMTP) →
//! [`subject`] (its own data-subject part) → [`events`] (what it consumes) → [`store`]
//! (schema and every query).

#![forbid(unsafe_code)]

pub mod api;
pub mod archive;
pub mod breach;
pub mod consents;
pub mod events;
pub mod execution;
pub mod mail;
pub mod notifier;
pub mod peers;
pub mod privacy_api;
pub mod requests;
pub mod settings;
pub mod store;
pub mod subject;
pub mod unsubscribe;
pub mod unsubscribe_page;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::grpc::PublicMethods;
use mindmesh_kit::module::{ServiceModule, Started};
use mindmesh_kit::tenants::{AskPermissions, Tenants};
use mindmesh_kit::{Result, Service};
use mindmesh_proto::mindmesh::dsar::v1::{
    dsar_service_server::{self, DsarServiceServer},
    privacy_settings_service_server::{self, PrivacySettingsServiceServer},
};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tonic::service::RoutesBuilder;

pub use store::Migrator;

/// The dsar service, as the binary runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dsar;

#[async_trait::async_trait]
impl ServiceModule for Dsar {
    fn service(&self) -> Service {
        Service::Dsar
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[
            dsar_service_server::SERVICE_NAME,
            privacy_settings_service_server::SERVICE_NAME,
        ]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<()> {
        Ok(Migrator::up(db, None).await?)
    }

    /// Starts the outbox relay and the event consumer.
    fn start(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
        start(ctx, routes)
    }
}

fn start(ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started> {
    ctx.spawn_relay();
    let config = &ctx.config.dsar;
    // One client of the permissions service for everything here that asks it by trait.
    let permissions = Arc::new(AskPermissions::new(ctx.clone())?);
    let tenants = Tenants::new(ctx.db.clone(), permissions.clone());
    let mailer: Arc<dyn mail::Mailer> = match &config.smtp {
        Some(smtp) => Arc::new(mail::Smtp::new(smtp, config.mail_from.clone())?),
        None => Arc::new(mail::Mailbox::new(
            ctx.config.mailbox_dir(),
            config.mail_from.clone(),
        )),
    };
    let settings = settings::Settings::new(ctx);
    let tokens = unsubscribe::Tokens::new(
        &ctx.keys.master,
        chrono::Duration::seconds(i64::try_from(config.unsubscribe_ttl_secs).unwrap_or(i64::MAX)),
    )?;
    let page = serve_page(
        ctx,
        unsubscribe_page::Page {
            settings: settings.clone(),
            tokens: tokens.clone(),
        },
    )?;
    let notifier = notifier::Notifier::new(
        ctx.db.clone(),
        mailer.clone(),
        permissions.clone(),
        tokens.clone(),
        config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{page}")),
        &ctx.keys.master,
        config.notification_max_attempts,
    )?;
    ctx.tasks.spawn(notifier.clone().run(ctx.shutdown.clone()));
    let consumer = ctx.spawn_consumer(Arc::new(events::DsarEvents::new(
        ctx.clone(),
        tenants.clone(),
        notifier.clone(),
    )));
    let requests = requests::Requests::new(
        ctx.db.clone(),
        ctx.audit.clone(),
        mailer,
        &ctx.keys.master,
        chrono::Duration::seconds(i64::try_from(config.code_ttl_secs).unwrap_or(86_400)),
        config.max_code_attempts,
    )?;
    let consents = consents::Consents::new(ctx);
    let executor = execution::Executor::new(
        ctx,
        requests.clone(),
        consents.clone(),
        Arc::new(peers::PeerServices::new(ctx.clone())?),
        chrono::Duration::seconds(i64::try_from(config.export_ttl_secs).unwrap_or(7 * 86_400)),
    )?
    .with_notifier(notifier.clone());
    ctx.tasks.spawn(executor.clone().run(ctx.shutdown.clone()));
    let subject = subject::DsarSubject::new(
        ctx.clone(),
        requests.clone(),
        consents.clone(),
        AskPermissions::new(ctx.clone())?,
    );
    routes.add_service(api_service!(
        DsarServiceServer::new(api::DsarApi {
            requests,
            executor,
            people: AskPermissions::new(ctx.clone())?,
            tenants: tenants.clone(),
        }),
        ctx
    ));
    let breaches = breach::Breaches::new(
        ctx.db.clone(),
        ctx.audit.clone(),
        &ctx.keys.master,
        notifier,
        permissions,
    )?;
    routes.add_service(PublicMethods::new(
        api_service!(
            PrivacySettingsServiceServer::new(privacy_api::PrivacySettingsApi {
                settings,
                consents,
                tenants,
                tokens,
                breaches,
            }),
            ctx
        ),
        PUBLIC_METHODS,
    ));
    Ok(Started {
        subject: Some(Arc::new(subject)),
        consumer: Some(consumer),
    })
}

/// The methods that take no bearer token: the unsubscribe link's token is their
/// authority (P13).
pub const PUBLIC_METHODS: &[&str] = &["/mindmesh.dsar.v1.PrivacySettingsService/Unsubscribe"];

/// Serves the unsubscribe page on `dsar.http_listen` until shutdown; returns the
/// address it listens on.
fn serve_page(ctx: &ServiceContext, page: unsubscribe_page::Page) -> Result<std::net::SocketAddr> {
    let address = ctx.config.dsar.http_listen;
    let cannot = |e: std::io::Error| {
        mindmesh_kit::Error::Config(format!("dsar.http_listen {address} cannot be served: {e}"))
    };
    let listener = std::net::TcpListener::bind(address).map_err(cannot)?;
    listener.set_nonblocking(true).map_err(cannot)?;
    let bound = listener.local_addr().map_err(cannot)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(cannot)?;
    let shutdown = ctx.shutdown.clone();
    ctx.tasks.spawn(async move {
        let served = axum::serve(listener, unsubscribe_page::router(page))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the unsubscribe page stopped");
        }
    });
    tracing::info!(%bound, "unsubscribe page listening");
    Ok(bound)
}
