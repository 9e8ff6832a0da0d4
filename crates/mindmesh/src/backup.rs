//! `mindmesh backup`: putting a backup back, and asking again every cascade completed
//! since (P10). The backups themselves are taken by the retention service
//! (`CreateBackup`, `retention.backup_schedule`; see `mindmesh_retention::backups`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use mindmesh_kit::Service;
use mindmesh_kit::config::{Config, Mode};
use mindmesh_kit::context::{ServiceContext, Shared};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::peers::InProcess;
use mindmesh_retention::events::Replayed;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::{modules, open_bus, start_service};

/// How long the services have to erase again what a restore brought back.
const REPLAY_WITHIN: Duration = Duration::from_secs(300);

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// When the backup was taken.
    pub taken_at: DateTime<Utc>,
    /// The database files put back.
    pub files: Vec<String>,
    /// The cascades completed since, asked again and carried out by every service.
    pub deletions_reapplied: usize,
}

/// Restores backup `id` (embedded mode, with the server stopped), then — before anything
/// serves — runs the five services without a listener, asks every cascade completed
/// since the backup again, and waits until every service has carried each out (shreds
/// first, then rows); then stops them. Start the server afterwards.
pub async fn restore_backup(config: Config, id: &str) -> anyhow::Result<RestoreReport> {
    if config.database.url.is_some() {
        bail!(
            "`mindmesh backup restore` restores embedded-mode backups; in distributed mode \
             restore PostgreSQL with its operator, then run `mindmesh backup replay-deletions \
             --since <backup time>`"
        );
    }
    mindmesh_kit::db::prepare_data_dir(&config.data_dir)?;
    let keys = KeyMaterial::load(&config, Mode::Embedded)?;
    let restored = mindmesh_retention::backups::restore_files(&config, &keys.master, id)
        .with_context(|| format!("restoring backup {id}"))?;
    let audit = mindmesh_kit::audit::AuditRecord::by_service(
        Service::Retention,
        "backup.restore",
        None,
        id,
    )
    .with_details(format!(
        "{} databases put back from the backup taken {}",
        restored.files.len(),
        restored.taken_at.to_rfc3339()
    ));
    let reapplied = replay_offline(config, keys, restored.taken_at, audit).await?;
    Ok(RestoreReport {
        taken_at: restored.taken_at,
        files: restored.files,
        deletions_reapplied: reapplied,
    })
}

/// Runs every service without a listener, asks the cascades completed after `since`
/// again, and waits until each service has handled each; returns how many.
/// Records `restored` in retention's audit log first.
async fn replay_offline(
    config: Config,
    keys: KeyMaterial,
    since: DateTime<Utc>,
    restored: mindmesh_kit::audit::AuditRecord,
) -> anyhow::Result<usize> {
    let shutdown = CancellationToken::new();
    let config = std::sync::Arc::new(config);
    let bus = open_bus(&config, Mode::Embedded)
        .await
        .context("opening the event bus")?;
    let mut shared = Shared::new(config.clone(), bus, std::sync::Arc::new(keys));
    shared.shutdown = shutdown.clone();
    shared.in_process = InProcess::new(&Service::ALL, shutdown.clone());
    let mut routes = RoutesBuilder::default();
    let mut contexts: HashMap<Service, ServiceContext> = HashMap::new();
    for module in modules(&Service::ALL) {
        let (ctx, _started) = start_service(module, &shared, &mut routes)
            .await
            .with_context(|| format!("starting the {} service", module.service()))?;
        contexts.insert(module.service(), ctx);
    }
    shared.in_process.install(routes.routes());
    let result = async {
        let retention = contexts
            .get(&Service::Retention)
            .context("the retention service did not start")?;
        retention.audit.record(&restored).await?;
        let (_, ledger) = mindmesh_retention::ledger_for(retention)?;
        let replayed =
            mindmesh_retention::events::replay_since(&ledger, &retention.audit, since).await?;
        retention.relay.wake();
        wait_until_handled(&contexts, &replayed).await?;
        Ok::<usize, anyhow::Error>(replayed.len())
    }
    .await;
    shutdown.cancel();
    shared.tasks.close();
    if tokio::time::timeout(Duration::from_secs(30), shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 30 s");
    }
    result
}

/// Waits until each participant of each of `replayed` has handled it (its inbox holds
/// the event).
async fn wait_until_handled(
    contexts: &HashMap<Service, ServiceContext>,
    replayed: &[Replayed],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + REPLAY_WITHIN;
    let mut pending: Vec<(Service, &Replayed)> = replayed
        .iter()
        .flat_map(|r| r.participants.iter().map(move |s| (*s, r)))
        .collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (service, r) in pending {
            let ctx = contexts
                .get(&service)
                .with_context(|| format!("the {service} service is not running"))?;
            if !mindmesh_kit::inbox::handled(&ctx.db, service.as_str(), &r.event_id).await? {
                still.push((service, r));
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let waiting: Vec<String> = pending
                .iter()
                .map(|(s, r)| format!("{s} (cascade {})", r.cascade))
                .collect();
            bail!(
                "the restore is in place, but these services did not erase again within {} s: \
                 {} — run `mindmesh backup restore` again before serving",
                REPLAY_WITHIN.as_secs(),
                waiting.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Distributed mode, after the database operator restored PostgreSQL: asks every cascade
/// completed after `since` again through retention's outbox (the running retention
/// service publishes them; every service erases what the restore brought back). Run it
/// before the services take traffic again. Returns the cascades asked.
pub async fn replay_deletions(
    config: Config,
    since: DateTime<Utc>,
) -> anyhow::Result<Vec<Replayed>> {
    let mode = if config.database.url.is_some() {
        Mode::Distributed
    } else {
        Mode::Embedded
    };
    let keys = KeyMaterial::load(&config, mode)?;
    let config = std::sync::Arc::new(config);
    let bus = open_bus(&config, mode)
        .await
        .context("opening the event bus")?;
    let shared = Shared::new(config.clone(), bus, std::sync::Arc::new(keys));
    let ctx = ServiceContext::open_module(&mindmesh_retention::Retention, &shared)
        .await
        .context("opening the retention database")?;
    let (_, ledger) = mindmesh_retention::ledger_for(&ctx)?;
    let replayed = mindmesh_retention::events::replay_since(&ledger, &ctx.audit, since).await?;
    // Published here too, in case no retention service runs yet.
    if let Err(e) = ctx.relay.flush().await {
        tracing::warn!(error = %e, "the requests wait in the outbox for the retention service");
    }
    Ok(replayed)
}
