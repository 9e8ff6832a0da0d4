//! What a service gets when it starts: its databases, the bus, its audit log, the keys,
//! and an owner for the background tasks it spawns.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::auth::{AuthInterceptor, ServiceTokens, TokenIssuer, TokenVerifier};
use crate::bus::EventBus;
use crate::bus::consume::{ConsumerStats, EventHandler, run_consumer};
use crate::config::Config;
use crate::error::Result;
use crate::keyfiles::KeyMaterial;
use crate::keys::{Keystore, KeystoreMigrator};
use crate::module::ServiceModule;
use crate::outbox::OutboxRelay;
use crate::peers::{InProcess, PeerChannel};
use crate::service::Service;

/// Shared by every service in one process.
#[derive(Clone)]
pub struct Shared {
    /// The configuration.
    pub config: Arc<Config>,
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// The key material.
    pub keys: Arc<KeyMaterial>,
    /// The interceptor that authenticates every API call.
    pub interceptor: AuthInterceptor,
    /// Signs service tokens, where this process holds the token signing key.
    pub token_issuer: Option<Arc<TokenIssuer>>,
    /// Owner of every background task.
    pub tasks: TaskTracker,
    /// Cancelled when the process shuts down.
    pub shutdown: CancellationToken,
    /// The services this process runs, which its services call without a socket.
    pub in_process: InProcess,
}

impl Shared {
    /// Shared state over `config`, `bus` and `keys`.
    pub fn new(config: Arc<Config>, bus: Arc<dyn EventBus>, keys: Arc<KeyMaterial>) -> Self {
        let verifier = TokenVerifier::new(
            &keys.jwt_public,
            &config.auth.issuer,
            Duration::from_secs(config.auth.leeway_secs),
            Duration::from_secs(config.auth.max_token_lifetime_secs),
        );
        let token_issuer = keys
            .jwt_private
            .as_ref()
            .map(|key| Arc::new(TokenIssuer::new(key, config.auth.issuer.clone())));
        Shared {
            interceptor: AuthInterceptor::new(Arc::new(verifier)),
            token_issuer,
            config,
            bus,
            keys,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            in_process: InProcess::default(),
        }
    }
}

/// One running service's context.
#[derive(Clone)]
pub struct ServiceContext {
    /// Which service this is.
    pub service: Service,
    /// The configuration.
    pub config: Arc<Config>,
    /// The service's own database.
    pub db: DatabaseConnection,
    /// The service's keystore (a database apart from `db`).
    pub keystore: Keystore,
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// The service's audit log.
    pub audit: AuditLog,
    /// Publishes the service's outbox.
    pub relay: OutboxRelay,
    /// The key material.
    pub keys: Arc<KeyMaterial>,
    /// The API interceptor.
    pub interceptor: AuthInterceptor,
    /// This service's tokens for calling other services; `None` where the process does
    /// not hold the token signing key (`keys.jwt_private_key_file`).
    pub service_tokens: Option<Arc<ServiceTokens>>,
    /// Owner of the service's background tasks.
    pub tasks: TaskTracker,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// The services this process runs, which this one calls without a socket.
    pub in_process: InProcess,
    /// Seals the personal fields of the events this service publishes, and opens those
    /// it consumes.
    pub event_seal: crate::events::EventSeal,
}

impl ServiceContext {
    /// Opens `service`'s database (migrated with `M`) and keystore, ready to start.
    pub async fn open<M: MigratorTrait>(service: Service, shared: &Shared) -> Result<Self> {
        let config = &shared.config;
        let url = config.database_url(service);
        let db = crate::db::open_creating(&url, config.database.max_connections).await?;
        crate::db::with_migration_lock(&url, async {
            M::up(&db, None).await?;
            crate::region::stamp_or_check(&db, service, &config.region).await
        })
        .await?;
        Self::with_database(service, shared, db).await
    }

    /// Opens the database of `module`'s service (migrated by it) and its keystore.
    pub async fn open_module(module: &dyn ServiceModule, shared: &Shared) -> Result<Self> {
        let service = module.service();
        let config = &shared.config;
        let url = config.database_url(service);
        let db = crate::db::open_creating(&url, config.database.max_connections).await?;
        crate::db::with_migration_lock(&url, async {
            module.migrate(&db).await?;
            crate::region::stamp_or_check(&db, service, &config.region).await
        })
        .await?;
        Self::with_database(service, shared, db).await
    }

    /// The context of `service`, whose database `db` is open and migrated.
    async fn with_database(
        service: Service,
        shared: &Shared,
        db: DatabaseConnection,
    ) -> Result<Self> {
        let config = &shared.config;
        let key_db = crate::db::open_and_migrate::<KeystoreMigrator>(
            &config.keystore_url(service),
            config.database.max_connections,
        )
        .await?;
        let relay = OutboxRelay::new(
            db.clone(),
            shared.bus.clone(),
            Duration::from_millis(config.bus.relay_interval_ms),
        );
        Ok(ServiceContext {
            service,
            config: config.clone(),
            audit: AuditLog::new(db.clone(), &shared.keys.master, service)?,
            keystore: shared.keys.keystore(key_db),
            db,
            bus: shared.bus.clone(),
            relay,
            keys: shared.keys.clone(),
            interceptor: shared.interceptor.clone(),
            service_tokens: shared.token_issuer.clone().map(|issuer| {
                Arc::new(ServiceTokens::new(
                    issuer,
                    service.as_str(),
                    Duration::from_secs(300),
                ))
            }),
            tasks: shared.tasks.clone(),
            shutdown: shared.shutdown.clone(),
            in_process: shared.in_process.clone(),
            event_seal: crate::events::EventSeal::new(&shared.keys)?,
        })
    }

    /// After an erasure committed in this service's database: the erased rows gone from
    /// its files too ([`crate::db::settle_erasure`], `database.vacuum_after_rows`).
    pub async fn settle_erasure(&self, tables: &[&str], rows: u64) -> Result<()> {
        crate::db::settle_erasure(
            &self.db,
            tables,
            rows,
            self.config.database.vacuum_after_rows,
        )
        .await
    }

    /// Writes this service's signed attestation of its part of `cascade` (a
    /// `deletion.completed` event) into the outbox of `txn`, so that it commits with the
    /// deletion it attests.
    pub async fn attest<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        tenant: Option<crate::ids::TenantId>,
        cascade: crate::ids::CascadeId,
        counts: std::collections::HashMap<String, u64>,
        destroyed: &[crate::ids::KeyId],
    ) -> Result<()> {
        use mindmesh_proto::mindmesh::common::v1::CascadeState;
        let destroyed = destroyed.iter().map(ToString::to_string).collect();
        self.report(
            txn,
            tenant,
            cascade,
            CascadeState::Done,
            counts,
            destroyed,
            String::new(),
        )
        .await
    }

    /// Writes this service's signed word that it keeps its part of `cascade` under
    /// legal hold `hold` (state retained with ground, nothing erased) into the outbox of
    /// `txn`; retention asks again once the hold is released.
    pub async fn attest_retained<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        tenant: crate::ids::TenantId,
        cascade: crate::ids::CascadeId,
        hold: crate::ids::HoldId,
    ) -> Result<()> {
        use mindmesh_proto::mindmesh::common::v1::CascadeState;
        tracing::info!(tenant_id = %tenant, cascade_id = %cascade, hold_id = %hold, "part of a cascade kept under legal hold");
        self.report(
            txn,
            Some(tenant),
            cascade,
            CascadeState::RetainedWithGround,
            Default::default(),
            Vec::new(),
            crate::holds::ground(hold),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn report<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        tenant: Option<crate::ids::TenantId>,
        cascade: crate::ids::CascadeId,
        state: mindmesh_proto::mindmesh::common::v1::CascadeState,
        counts: std::collections::HashMap<String, u64>,
        destroyed_key_ids: Vec<String>,
        ground: String,
    ) -> Result<()> {
        use mindmesh_proto::mindmesh::events::v1::{DeletionCompleted, envelope::Payload};
        let completion = crate::events::signed_completion(
            &self.keys.signing,
            DeletionCompleted {
                cascade_id: cascade.to_string(),
                service: self.service.to_proto() as i32,
                counts,
                destroyed_key_ids,
                state: state as i32,
                signature: String::new(),
                ground,
            },
        );
        crate::outbox::enqueue(
            txn,
            &crate::events::envelope(self.service, tenant, Payload::DeletionCompleted(completion)),
        )
        .await
    }

    /// `message` with this service's bearer token for `tenant`, to call another service.
    /// Fails, naming the setting, where the process cannot mint service tokens.
    pub fn service_request<T>(
        &self,
        tenant: crate::ids::TenantId,
        message: T,
    ) -> Result<tonic::Request<T>> {
        self.service_tokens
            .as_ref()
            .ok_or_else(|| {
                crate::Error::Config(format!(
                    "the {} service calls other services and needs keys.jwt_private_key_file",
                    self.service
                ))
            })?
            .request(tenant, message)
    }

    /// The channel to the peer service `peer`, which this service calls with its own
    /// service tokens: to `url` (configured as `setting`) where one is set, else to the
    /// peer in this process without a socket, where this process runs it. Fails naming
    /// the setting when neither is so or the URL is malformed, or naming
    /// `keys.jwt_private_key_file` when this process cannot sign service tokens.
    pub fn peer(&self, peer: Service, setting: &str, url: Option<&str>) -> Result<PeerChannel> {
        let channel = match url {
            None if self.in_process.runs(peer) => self.in_process.channel(peer),
            url => crate::peers::remote(
                setting,
                url,
                crate::tls::client_config(&self.config.tls)?.as_ref(),
            )?,
        };
        if self.service_tokens.is_none() {
            return Err(crate::Error::Config(format!(
                "the {} service calls the service at {setting} and needs \
                 keys.jwt_private_key_file to sign its service tokens",
                self.service
            )));
        }
        Ok(channel)
    }

    /// Starts the outbox relay of this service.
    pub fn spawn_relay(&self) {
        let relay = self.relay.clone();
        self.tasks.spawn(relay.run(self.shutdown.clone()));
    }

    /// This service's usage-analytics exporter (`analytics.*`; off unless an endpoint
    /// is configured), gated by this service's processor gate.
    pub fn analytics(&self) -> Result<crate::analytics::Analytics> {
        crate::analytics::Analytics::start(
            &self.config.analytics,
            self.db.clone(),
            &self.keys.master,
            &self.tasks,
            self.shutdown.clone(),
        )
    }

    /// Starts this service's durable consumer (named after the service) with `handler`.
    pub fn spawn_consumer(&self, handler: Arc<dyn EventHandler>) -> Arc<ConsumerStats> {
        let stats = Arc::new(ConsumerStats::default());
        self.tasks.spawn(run_consumer(
            self.bus.clone(),
            self.service.as_str().to_owned(),
            handler,
            self.config.bus.max_deliver,
            stats.clone(),
            self.shutdown.clone(),
        ));
        stats
    }
}
