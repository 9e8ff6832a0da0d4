//! The dsar service: data-subject requests, exports, consents, communication preferences, processor switches and breach notices (P12–P15).
//!
//! Reading order: [`api`] (the gRPC face) → [`requests`] (filing a request, verifying
//! the requester's identity with a mailed code, deadlines) → [`execution`] (carrying a
//! verified request out across the services, through [`peers`]) → [`archive`] (the
//! export) → [`privacy_api`] (the settings' gRPC face) → [`settings`] (processor switches,
//! mail preferences) → [`consents`] → [`mail`] (how mails leave) → [`subject`] (its own
//! data-subject part) → [`events`] (its part in deletion cascades) → [`store`] (schema
//! and every query).
//!
//! Built so far: requests of all six kinds, with identity checks and deadlines,
//! carried out across the five services; processor switches, mail preferences and
//! consents. `Unsubscribe` and `DeclareBreach` answer UNIMPLEMENTED until they are built
//! (issue 14).

#![forbid(unsafe_code)]

pub mod api;
pub mod archive;
pub mod consents;
pub mod events;
pub mod execution;
pub mod mail;
pub mod peers;
pub mod privacy_api;
pub mod requests;
pub mod settings;
pub mod store;
pub mod subject;

use std::sync::Arc;

use mindmesh_kit::api_service;
use mindmesh_kit::context::ServiceContext;
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
    let tenants = Tenants::new(ctx.db.clone(), Arc::new(AskPermissions::new(ctx.clone())?));
    let consumer = ctx.spawn_consumer(Arc::new(events::DsarEvents::new(
        ctx.clone(),
        tenants.clone(),
    )));
    let mailer = Arc::new(mail::Mailbox::new(
        ctx.config.mailbox_dir(),
        ctx.config.dsar.mail_from.clone(),
    ));
    let requests = requests::Requests::new(
        ctx.db.clone(),
        ctx.audit.clone(),
        mailer,
        &ctx.keys.master,
        chrono::Duration::seconds(i64::try_from(ctx.config.dsar.code_ttl_secs).unwrap_or(86_400)),
        ctx.config.dsar.max_code_attempts,
    )?;
    let consents = consents::Consents::new(ctx);
    let executor = execution::Executor::new(
        ctx,
        requests.clone(),
        consents.clone(),
        Arc::new(peers::PeerServices::new(ctx.clone())?),
        chrono::Duration::seconds(
            i64::try_from(ctx.config.dsar.export_ttl_secs).unwrap_or(7 * 86_400),
        ),
    )?;
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
    routes.add_service(api_service!(
        PrivacySettingsServiceServer::new(privacy_api::PrivacySettingsApi {
            settings: settings::Settings::new(ctx),
            consents,
            tenants,
        }),
        ctx
    ));
    Ok(Started {
        subject: Some(Arc::new(subject)),
        consumer: Some(consumer),
    })
}
