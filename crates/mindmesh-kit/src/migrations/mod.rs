//! Tables every service database has: the transactional outbox, the inbox of handled
//! events, and the hash-chained audit log. Each service's migrator starts with
//! [`service_common`] and appends its own migrations.
//!
//! Migration names are written by hand: renaming a file must never rename a migration
//! that existing databases have already applied.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The kit's migrations, to run first in every service database.
pub fn service_common() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(OutboxInboxAudit), Box::new(DeploymentRegion)]
}

/// The tables that guard writes: `erased_tenants` (see [`crate::tenants`]) and
/// `known_integrations` (see [`crate::integrations`]). A service that takes
/// tenant-scoped writes appends it to its own migrations.
pub fn write_guards() -> Box<dyn MigrationTrait> {
    Box::new(WriteGuards)
}

/// The table [`crate::activity::ActivityReporter`] claims each user's day in. A service
/// that reports people's activity appends it to its own migrations.
pub fn activity_reports() -> Box<dyn MigrationTrait> {
    Box::new(ActivityReports)
}

/// The table [`crate::holds`] mirrors the legal holds in force into. A service that
/// erases data a hold may keep appends it to its own migrations.
pub fn legal_holds() -> Box<dyn MigrationTrait> {
    Box::new(LegalHolds)
}

/// The tables [`crate::processing`] mirrors each tenant's processor switches and each
/// person's processing limits into. A service that sends data to a processor appends it
/// to its own migrations.
pub fn processing_gate() -> Box<dyn MigrationTrait> {
    Box::new(ProcessingGate)
}

struct ProcessingGate;

impl MigrationName for ProcessingGate {
    fn name(&self) -> &str {
        "m20261204_000001_kit_processing_gate"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ProcessingGate {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("processor_switches")
                    .if_not_exists()
                    .col(string("tenant_id").primary_key())
                    .col(boolean("analytics"))
                    .col(boolean("llm"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("processing_limits")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("user_id"))
                    // "restricted", or "consent:<purpose>" for a withdrawn consent.
                    .col(string("reason"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("user_id")
                            .col("reason"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["processing_limits", "processor_switches"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

struct LegalHolds;

impl MigrationName for LegalHolds {
    fn name(&self) -> &str {
        "m20261203_000001_kit_legal_holds"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for LegalHolds {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("legal_holds")
                    .if_not_exists()
                    .col(string("hold_id").primary_key())
                    .col(string("tenant_id"))
                    // "tenant", "user" or "integration".
                    .col(string("scope_kind"))
                    .col(string("scope_id"))
                    .col(timestamp_with_time_zone("placed_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("legal_holds_by_tenant")
                    .table("legal_holds")
                    .col("tenant_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("legal_holds").if_exists().to_owned())
            .await
    }
}

struct ActivityReports;

impl MigrationName for ActivityReports {
    fn name(&self) -> &str {
        "m20261202_000001_kit_activity_reports"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ActivityReports {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("activity_reports")
                    .if_not_exists()
                    .col(string("tenant_id"))
                    .col(string("user_id"))
                    // The UTC day, `YYYY-MM-DD`.
                    .col(string("day"))
                    .primary_key(Index::create().col("tenant_id").col("user_id").col("day"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("activity_reports")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

/// A migration named `name` that fills `known_integrations` from what a service held
/// before it learned integrations from events: `disconnected_integrations` (then
/// dropped) as disconnected, and every `(integration_id, tenant_id)` pair the `sources`
/// (SQL `SELECT`s of those two columns) yield as connected.
pub fn adopt_known_integrations(
    name: &'static str,
    sources: &'static [&'static str],
) -> Box<dyn MigrationTrait> {
    Box::new(AdoptKnownIntegrations { name, sources })
}

struct AdoptKnownIntegrations {
    name: &'static str,
    sources: &'static [&'static str],
}

impl MigrationName for AdoptKnownIntegrations {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AdoptKnownIntegrations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO known_integrations (integration_id, tenant_id, state, changed_at) \
             SELECT integration_id, MIN(tenant_id), 'disconnected', CURRENT_TIMESTAMP \
             FROM disconnected_integrations GROUP BY integration_id",
        )
        .await?;
        if !self.sources.is_empty() {
            db.execute_unprepared(&format!(
                "INSERT INTO known_integrations (integration_id, tenant_id, state, changed_at) \
                 SELECT s.integration_id, MIN(s.tenant_id), 'connected', CURRENT_TIMESTAMP \
                 FROM ({}) s WHERE NOT EXISTS (SELECT 1 FROM known_integrations k \
                 WHERE k.integration_id = s.integration_id) GROUP BY s.integration_id",
                self.sources.join(" UNION ")
            ))
            .await?;
        }
        manager
            .drop_table(Table::drop().table("disconnected_integrations").to_owned())
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "known integrations cannot be turned back into disconnected_integrations".into(),
        ))
    }
}

struct WriteGuards;

impl MigrationName for WriteGuards {
    fn name(&self) -> &str {
        "m20261201_000001_kit_write_guards"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WriteGuards {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("erased_tenants")
                    .if_not_exists()
                    .col(string("tenant_id").primary_key())
                    .col(string("cascade_id"))
                    .col(timestamp_with_time_zone("erased_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("known_integrations")
                    .if_not_exists()
                    .col(string("integration_id").primary_key())
                    .col(string("tenant_id"))
                    // `connected` or `disconnected`.
                    .col(string("state"))
                    .col(timestamp_with_time_zone("changed_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("known_integrations_tenant")
                    .table("known_integrations")
                    .col("tenant_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["known_integrations", "erased_tenants"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

struct OutboxInboxAudit;

impl MigrationName for OutboxInboxAudit {
    fn name(&self) -> &str {
        "m20261129_000001_kit_outbox_inbox_audit"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutboxInboxAudit {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("outbox")
                    .if_not_exists()
                    .col(big_pk_auto("seq"))
                    .col(string_uniq("event_id"))
                    .col(string("subject"))
                    .col(blob("payload"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("inbox")
                    .if_not_exists()
                    .col(string("consumer"))
                    .col(string("event_id"))
                    .col(timestamp_with_time_zone("handled_at"))
                    .primary_key(Index::create().col("consumer").col("event_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("audit_log")
                    .if_not_exists()
                    .col(big_integer("seq").primary_key())
                    .col(string_uniq("id"))
                    .col(timestamp_with_time_zone("occurred_at"))
                    .col(string("actor"))
                    .col(string("actor_roles"))
                    .col(string("action"))
                    .col(string("tenant_id"))
                    .col(string("subject_id"))
                    .col(text("details"))
                    .col(string("prev_hash"))
                    .col(string("hash"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_log_tenant")
                    .table("audit_log")
                    .col("tenant_id")
                    .col("seq")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // One row holding the chain's head; updating it first serializes appends.
        manager
            .create_table(
                Table::create()
                    .table("audit_head")
                    .if_not_exists()
                    .col(integer("id").primary_key())
                    .col(big_integer("seq"))
                    .col(string("hash"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("audit_head")
                    .columns(["id", "seq", "hash"])
                    .values_panic([1.into(), 0i64.into(), "".into()])
                    .on_conflict(OnConflict::column("id").do_nothing().to_owned())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["audit_head", "audit_log", "inbox", "outbox"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// `deployment_region`: the region the database was first migrated in (P17, see
/// [`crate::region`]); one row.
struct DeploymentRegion;

impl MigrationName for DeploymentRegion {
    fn name(&self) -> &str {
        "m20261204_000002_kit_deployment_region"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DeploymentRegion {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("deployment_region")
                    .if_not_exists()
                    // Always 1: the table holds one row.
                    .col(integer("id").primary_key())
                    .col(string("region"))
                    .col(timestamp_with_time_zone("stamped_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("deployment_region")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The kit's tables and the activity claims, for the kit's own tests.
    pub struct WithActivityReports;

    impl MigratorTrait for WithActivityReports {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            let mut all = service_common();
            all.push(activity_reports());
            all
        }
    }
}
